"""Root filesystems from ``debootstrap --variant=minbase``, the base of the images built here.

A RootfsSpec is a recipe: suite, packages, masked and disabled units, directories, files and
links written into the tree, paths removed. build_rootfs runs debootstrap from the Debian
archive apt uses here (debian_mirror), makes the container-specific changes (customize) and
packs the tree into ``CACHE/images/<name>.tar``. That takes minutes, so each tarball is cached,
keyed by a hash of its recipe (RootfsSpec.key, which includes ROOTFS_SCRIPT_VERSION), and rebuilt
only when the recipe changes. The recipes themselves are in image_recipes.py and e2e_images.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .cache import (
    GiB, Cache, MissingToolError, OfflineError, Stamp, command_failed, remove_quietly, require_free_space, run,
    sha256_file, sha256_json, temp_sibling,
)

ROOTFS_SCRIPT_VERSION = 1   # bump when build_rootfs changes what ends up in a tarball
DEFAULT_MIRROR = "http://deb.debian.org/debian"


@dataclass(frozen=True)
class RootfsSpec:
    """A debootstrap recipe. Everything here is part of the tarball's cache key."""

    name: str
    suite: str
    packages: tuple[str, ...]
    masked: tuple[str, ...] = ()
    disabled: tuple[str, ...] = ()
    dirs: tuple[str, ...] = ()
    empty_machine_id: bool = False
    files: tuple[tuple[str, str], ...] = ()     # (path, text) written into the tree (0644)
    links: tuple[tuple[str, str], ...] = ()     # (path, target) symlinks, e.g. enabling a unit
    removed: tuple[str, ...] = ()               # glob patterns deleted (keys every node must not share)

    def key(self) -> str:
        recipe = {"name": self.name, "suite": self.suite, "variant": "minbase",
                  "packages": sorted(self.packages), "masked": sorted(self.masked),
                  "disabled": sorted(self.disabled), "dirs": sorted(self.dirs),
                  "empty_machine_id": self.empty_machine_id, "script": ROOTFS_SCRIPT_VERSION}
        # only when set, so the recipes that use none keep the keys (and cached tarballs) they had
        for name, value in (("files", self.files), ("links", self.links), ("removed", self.removed)):
            if value:
                recipe[name] = sorted(map(list, value)) if name != "removed" else sorted(value)
        return sha256_json(recipe)


@dataclass
class Rootfs:
    spec: RootfsSpec
    path: Path
    sha256: str
    cached: bool
    seconds: float


def debian_mirror(apt_dir: Path = Path("/etc/apt"), suite: str = "bookworm") -> str:
    """The Debian archive apt uses here (deb822 .sources or sources.list), for ``suite``."""
    candidates: list[tuple[list[str], list[str]]] = []  # (uris, suites)
    files = [apt_dir / "sources.list"] if (apt_dir / "sources.list").is_file() else []
    folder = apt_dir / "sources.list.d"
    if folder.is_dir():
        files += sorted(folder.iterdir())
    for path in files:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        if path.suffix == ".sources":
            for stanza in text.split("\n\n"):
                fields: dict[str, str] = {}
                for line in stanza.splitlines():
                    if line.startswith("#") or ":" not in line or line[:1].isspace():
                        continue
                    key, value = line.split(":", 1)
                    fields[key.strip().lower()] = value.strip()
                if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes").lower() != "no":
                    candidates.append((fields.get("uris", "").split(), fields.get("suites", "").split()))
        elif path.name == "sources.list" or path.suffix == ".list":
            for line in text.splitlines():
                words = line.split("#", 1)[0].split()
                if len(words) >= 3 and words[0] == "deb":
                    rest = words[1:]
                    if rest[0].startswith("["):  # options: [arch=amd64 signed-by=...]
                        while rest and not rest[0].endswith("]"):
                            rest = rest[1:]
                        rest = rest[1:]
                    if len(rest) >= 2:
                        candidates.append(([rest[0]], [rest[1]]))
    for uris, suites in candidates:
        if suite in suites:
            for uri in uris:
                if uri.startswith(("http://", "https://")):
                    return uri.rstrip("/")
    return DEFAULT_MIRROR


def build_rootfs(cache: Cache, spec: RootfsSpec, mirror: str, progress: Callable[[str], None]) -> Rootfs:
    """CACHE/images/<name>.tar from debootstrap, unless the tarball for this recipe is there."""
    out = cache.images_dir / f"{spec.name}.tar"
    stamp = Stamp(cache.images_dir / f"{spec.name}.json")
    inputs = {"key": spec.key()}
    if stamp.is_fresh(inputs, out):
        return Rootfs(spec, out, stamp.get("sha256"), True, 0.0)
    if os.geteuid() != 0:
        raise OfflineError(f"building the {spec.name} root filesystem runs debootstrap, which needs root: "
                           "rerun `invoke artifacts` as root (or with sudo)")
    for tool, pkg in (("debootstrap", "debootstrap"), ("tar", "tar")):
        if shutil.which(tool) is None:
            raise MissingToolError(f"`{tool}` is not installed, and the {spec.name} image is built with it: "
                                   f"apt-get install -y {pkg}")
    progress(f"  debootstrap {spec.suite} ({spec.name}, {len(spec.packages)} packages) from {mirror} ...")
    started = time.monotonic()
    work = cache.root / "build" / f"rootfs-{spec.name}"
    debs = cache.root / "build" / "debs"
    log = cache.log(f"rootfs-{spec.name}")
    log.write_text("")
    require_free_space(cache.root, 3 * GiB, f"build the {spec.name} root filesystem")
    remove_tree(work)
    work.mkdir(parents=True)
    debs.mkdir(parents=True, exist_ok=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_quietly(out.parent.glob(f".{out.name}.tmp-*"))  # left by a build that was killed
    tmp = temp_sibling(out)
    try:
        proc = run(debootstrap_args(spec, work, debs, mirror), log=log,
                   what=f"debootstrap {spec.suite} for {spec.name}", check=False)
        if proc.returncode != 0:
            inner = work / "debootstrap" / "debootstrap.log"
            if inner.exists():
                with open(log, "a") as f:
                    f.write("\n--- debootstrap/debootstrap.log (end) ---\n")
                    f.write("\n".join(inner.read_text(errors="replace").splitlines()[-30:]) + "\n")
            err = command_failed(f"debootstrap {spec.suite} for {spec.name} from {mirror} (is the Debian "
                                 "mirror reachable? `apt-get update` must work)", ["debootstrap"], proc.returncode, log)
            raise err
        customize(work, spec)
        run(["tar", "--numeric-owner", "--xattrs", "-C", str(work), "-cf", str(tmp), "."], log=log,
            what=f"pack the {spec.name} root filesystem into {out}")
        digest = sha256_file(tmp)
        os.replace(tmp, out)
    finally:
        remove_quietly([tmp])
        remove_tree(work)
    seconds = time.monotonic() - started
    stamp.record(inputs, out, sha256=digest, seconds=round(seconds, 1), mirror=mirror, spec=spec.__dict__)
    progress(f"  {spec.name}.tar: {out.stat().st_size / (1 << 20):.0f} MiB in {seconds:.0f}s")
    return Rootfs(spec, out, digest, False, seconds)


def debootstrap_args(spec: RootfsSpec, work: Path, debs: Path, mirror: str) -> list[str]:
    include = [f"--include={','.join(spec.packages)}"] if spec.packages else []  # none: bare minbase
    return ["nice", "-n", "10", "debootstrap", "--variant=minbase", *include, f"--cache-dir={debs}", spec.suite,
            str(work), mirror]


def customize(root: Path, spec: RootfsSpec) -> None:
    """The container-specific changes to a fresh debootstrap tree (all paths stay inside ``root``)."""
    systemd = root / "etc" / "systemd" / "system"
    systemd.mkdir(parents=True, exist_ok=True)
    for unit in spec.masked:  # what `systemctl mask` does, without needing a chroot
        link = systemd / unit
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to("/dev/null")
    for unit in spec.disabled:  # what `systemctl disable` does: drop the .wants/ links
        for wants in systemd.glob("*.wants"):
            target = wants / unit
            if target.is_symlink():
                target.unlink()
    for d in spec.dirs:
        (root / d).mkdir(parents=True, exist_ok=True)
    for rel, text in spec.files:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o644)
    for rel, target in spec.links:
        link = root / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target)
    for pattern in spec.removed:
        for path in root.glob(pattern):
            if path.is_file() or path.is_symlink():
                path.unlink()
    if spec.empty_machine_id:
        (root / "etc" / "machine-id").write_text("")
    for pattern in ("var/lib/apt/lists/*_*", "var/cache/apt/*.bin", "var/cache/apt/archives/*.deb"):
        for p in root.glob(pattern):
            if p.is_file() and not p.is_symlink():
                p.unlink()


def mounts_under(path: Path, mountinfo: str | None = None) -> list[str]:
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            return []
    prefix = str(path.resolve() if path.exists() else path).rstrip("/") + "/"
    found = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 4:
            point = fields[4].replace("\\040", " ")
            if point.startswith(prefix) or point + "/" == prefix:
                found.append(point)
    return sorted(found, key=len, reverse=True)


def remove_tree(path: Path) -> None:
    """Delete a debootstrap tree, first unmounting what a failed run left mounted inside it."""
    if not path.exists():
        return
    for point in mounts_under(path):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)
    left = mounts_under(path)
    if left:
        raise OfflineError(f"{path} still has mounts ({', '.join(left)}); unmount them and delete it by hand")
    shutil.rmtree(path)
