"""Print the path of a CPython of the version asked (e.g. 3.13), building it once if need be.

CI runs the quick suite on the newest Python kubesweep supports as well as on the machine's own.
Only PyPI and Debian's mirror are reachable here, so the interpreter is built from the source
Debian ships (the orig tarball of Debian's python3.X package, its SHA-256 checked against the
entry of the suite's Sources index, whose own signature is not checked here) into ~/.cache/kubesweep-python/<version>, outside the clone,
and reused by every later run. Standard library only: it runs before any venv exists.

    python3 .ci/python.py 3.13
"""

from __future__ import annotations

import hashlib
import lzma
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

MIRROR = os.environ.get("KUBESWEEP_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SUITES = ("trixie", "forky", "sid")
CACHE = Path(os.environ.get("KUBESWEEP_PYTHON_CACHE", "~/.cache/kubesweep-python")).expanduser()
DONE = ".kubesweep-complete"


def log(text: str) -> None:
    print(f"ci/python: {text}", file=sys.stderr, flush=True)


def candidates(version: str) -> list[tuple[str, str, str]]:
    """(suite, orig tarball name, sha256) of python<version> in each suite's Sources index."""
    found = []
    for suite in SUITES:
        url = f"{MIRROR}/dists/{suite}/main/source/Sources.xz"
        try:
            with urllib.request.urlopen(url, timeout=60) as resp:
                index = lzma.decompress(resp.read()).decode("utf-8", "replace")
        except OSError as exc:
            log(f"{url}: {exc}")
            continue
        for stanza in index.split("\n\n"):
            if not stanza.startswith(f"Package: python{version}\n"):
                continue
            sums = stanza.split("Checksums-Sha256:", 1)[1] if "Checksums-Sha256:" in stanza else ""
            for digest, _size, name in re.findall(r"^ ([0-9a-f]{64}) (\d+) (\S+\.orig\.tar\.xz)$", sums, re.M):
                found.append((suite, name, digest))
    newest = lambda c: tuple(int(x) for x in re.findall(r"\d+", c[1].split("_", 1)[1]))  # noqa: E731
    return sorted(found, key=newest, reverse=True)


def fetch(version: str, into: Path) -> Path:
    for suite, name, digest in candidates(version):
        url = f"{MIRROR}/pool/main/p/python{version}/{name}"
        try:
            with urllib.request.urlopen(url, timeout=300) as resp:
                data = resp.read()
        except OSError as exc:
            log(f"{url} ({suite}): {exc}")
            continue
        if hashlib.sha256(data).hexdigest() != digest:
            raise SystemExit(f"ci/python: {url}: SHA-256 differs from {suite}'s Sources index")
        path = into / name
        path.write_bytes(data)
        log(f"{name} from {suite}, SHA-256 checked")
        return path
    raise SystemExit(f"ci/python: no source of python{version} could be fetched from {MIRROR} ({', '.join(SUITES)})")


def build(version: str, prefix: Path) -> None:
    subprocess.run(["apt-get", "install", "-y", "-qq", "build-essential", "pkg-config", "libssl-dev", "libffi-dev",
                    "zlib1g-dev", "libbz2-dev", "liblzma-dev", "libsqlite3-dev", "libreadline-dev", "uuid-dev",
                    "libgdbm-dev", "libgdbm-compat-dev", "libncurses-dev"], check=True, stdout=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory(prefix="kubesweep-python-") as tmp:
        tarball = fetch(version, Path(tmp))
        with tarfile.open(tarball) as tar:
            tar.extractall(tmp, filter="data")
        source = next(p for p in Path(tmp).iterdir() if p.is_dir() and p.name.startswith("Python-"))
        for step in (["./configure", f"--prefix={prefix}"], ["make", f"-j{os.cpu_count() or 2}"], ["make", "install"]):
            log(" ".join(step))
            subprocess.run(step, cwd=source, check=True, stdout=subprocess.DEVNULL)
    (prefix / DONE).write_text(version + "\n")  # only a finished install is ever used


def main() -> None:
    version = sys.argv[1]
    if not re.fullmatch(r"3\.\d+", version):
        raise SystemExit(f"ci/python: not a Python version: {version!r}")
    prefix = CACHE / version
    python = prefix / "bin" / f"python{version}"
    if not (prefix / DONE).exists():
        log(f"building Python {version} into {prefix} (once; cached)")
        CACHE.mkdir(parents=True, exist_ok=True)
        build(version, prefix)
    print(python)


if __name__ == "__main__":
    main()
