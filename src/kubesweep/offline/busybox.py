"""BusyBox built from its upstream source, for the conformance tests' busybox image.

Why not Debian's busybox package: Debian patches its ash to drop environment variables whose
names no shell accepts (``data-1=...``) before it runs a command, and several conformance tests
pass such variables through ``sh -c env`` (ConfigMap/Secret "env var names with various
prefixes"). Upstream's ash keeps them, and upstream's busybox image is what the tests were
written against: other tests match ash's own messages (``/bin/sh: can't create /file:
Read-only file system``), so no other shell stands in for it.

The source is upstream's release tarball, fetched from the Debian archive apt uses here (Debian
ships it unchanged as ``busybox_<version>.orig.tar.bz2``; its digest is pinned below), and built
with BusyBox's default configuration, linked statically, with gcc and make. The binary is cached
under ``CACHE/build/busybox-<version>/`` and rebuilt only when the recipe changes.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from .cache import (
    GiB, Cache, OfflineError, Stamp, raise_disk_error, remove_quietly, require_free_space, run, sha256_file,
    temp_sibling,
)
from .gobuild import Built

VERSION = "1.37.0"
# sha256 of busybox-1.37.0.tar.bz2 (busybox.net), which Debian ships as busybox_1.37.0.orig.tar.bz2
SOURCE_SHA256 = "3311dff32e746499f4df0d5df04d7eb396382d7e108bb9250e7b519b837043a4"
# .config lines changed from `make defconfig`: one static binary, nothing to install beside it
CONFIG = {"CONFIG_STATIC": "y"}
RECIPE_VERSION = 1
TOOLS_HINT = "apt-get install -y --no-install-recommends gcc make libc6-dev bzip2"


def source_url(debian_mirror: str, version: str = VERSION) -> str:
    return f"{debian_mirror.rstrip('/')}/pool/main/b/busybox/busybox_{version}.orig.tar.bz2"


def build(cache: Cache, debian_mirror: str, progress: Callable[[str], None], *,
          version: str = VERSION, source_sha256: str = SOURCE_SHA256) -> Built:
    """CACHE/build/busybox-<version>/bin/busybox, built from upstream's source unless the stamp
    says the binary there was built from this recipe."""
    folder = cache.build_dir("busybox", version)
    out = folder / "bin" / "busybox"
    stamp = Stamp(folder / "stamps" / "busybox.json")
    inputs = {"version": version, "source_sha256": source_sha256, "config": CONFIG, "recipe": RECIPE_VERSION}
    if stamp.is_fresh(inputs, out):
        return Built("busybox", "busybox", version, out, stamp.get("sha256"), True, 0.0)
    started = time.monotonic()
    require_free_space(folder.parent, 1 * GiB, "build busybox")
    for tool in ("gcc", "make"):
        if shutil.which(tool) is None:
            raise OfflineError(f"cannot build busybox {version}: `{tool}` is not installed: {TOOLS_HINT}")
    tarball = folder / f"busybox-{version}.tar.bz2"
    if not tarball.is_file() or sha256_file(tarball) != source_sha256:
        _download(source_url(debian_mirror, version), tarball, source_sha256, progress)
    progress(f"  building busybox {version} (make defconfig, static) ...")
    work = folder / "src"
    log = cache.log("busybox")
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_quietly(out.parent.glob(f".{out.name}.tmp-*"))  # left by a build that was killed
    shutil.rmtree(work, ignore_errors=True)
    tmp = temp_sibling(out)
    try:
        work.mkdir(parents=True)
        with tarfile.open(tarball, mode="r:bz2") as tar:
            tar.extractall(work, filter="data")
        tree = work / f"busybox-{version}"
        run(["make", "defconfig"], cwd=tree, log=log, what=f"configure busybox {version}", hint=TOOLS_HINT)
        set_config(tree / ".config", CONFIG)  # the build's own silent oldconfig settles the rest
        run(["make", f"-j{os.cpu_count() or 1}", "busybox"], cwd=tree, log=log, what=f"build busybox {version}",
            hint=TOOLS_HINT)
        shutil.copyfile(tree / "busybox", tmp)
        os.chmod(tmp, 0o755)
        digest = sha256_file(tmp)
        os.replace(tmp, out)
    except OSError as exc:
        raise_disk_error(exc, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        remove_quietly([tmp])
    seconds = time.monotonic() - started
    stamp.record(inputs, out, sha256=digest)
    progress(f"  busybox {version}: {out.stat().st_size // 1024} KiB in {seconds:.0f}s")
    return Built("busybox", "busybox", version, out, digest, False, seconds)


def set_config(path: Path, values: dict[str, str]) -> None:
    """Set ``values`` in a kconfig file: replace each key's line (set or `# ... is not set`)."""
    lines = path.read_text().splitlines()
    seen: set[str] = set()
    for i, line in enumerate(lines):
        for key, value in values.items():
            if line.startswith(f"{key}=") or line == f"# {key} is not set":
                lines[i] = f"{key}={value}"
                seen.add(key)
    lines += [f"{key}={value}" for key, value in values.items() if key not in seen]
    path.write_text("\n".join(lines) + "\n")


def _download(url: str, dest: Path, sha256: str, progress: Callable[[str], None]) -> None:
    progress(f"  fetching {url} ...")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(dest)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as f:
            shutil.copyfileobj(response, f)
        got = sha256_file(tmp)
        if got != sha256:
            raise OfflineError(f"{url} has sha256 {got}, not the pinned {sha256}: the mirror serves another file")
        os.replace(tmp, dest)
    except urllib.error.URLError as exc:
        raise OfflineError(f"cannot fetch the busybox source {url}: {exc.reason}") from None
    except OSError as exc:
        raise_disk_error(exc, dest)
    finally:
        remove_quietly([tmp])
