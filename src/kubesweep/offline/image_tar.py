"""What goes into an image (ImageSpec, FileEntry), and the tar stream that holds it.

An ImageSpec is one image: a root filesystem tarball (debootstrap.py) and/or files (our
binaries, with their digests), directories and symlinks added on top; the ``docker import
--change`` instructions; its tag in the local docker and its path under the local registry
(REGISTRY). ``stamp()`` hashes all of that (and IMAGE_SCRIPT_VERSION): an image whose stamp
label matches is not rebuilt (image_import.py). write_tar streams the image's one layer: the
base's members, then what is added on top, which replaces the base's entry of the same path.
tar_names lists the paths in a tarball.
"""

from __future__ import annotations

import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .cache import OfflineError, sha256_file, sha256_json

IMAGE_SCRIPT_VERSION = 1    # bump when the way images are assembled changes
REGISTRY = "127.0.0.1:5000"


@dataclass(frozen=True)
class FileEntry:
    """A file to put into an image: where it goes, where it comes from, its digest."""

    dest: str
    source: Path
    sha256: str
    mode: int = 0o755


@dataclass(frozen=True)
class ImageSpec:
    upstream: str               # "registry.k8s.io/kube-apiserver:v1.35.8", or "" for our own images
    path: str                   # repository:tag under the local registry
    local: str                  # tag in the local docker
    changes: tuple[str, ...]    # docker import --change instructions (LABEL added automatically)
    base: Path | None = None    # a root filesystem tarball ...
    base_sha256: str = ""
    files: tuple[FileEntry, ...] = ()  # ... and/or files added on top
    dirs: tuple[tuple[str, int], ...] = ()  # directories (path, mode) created in a files-only image
    links: tuple[tuple[str, str], ...] = ()  # symlinks (path, target) added on top

    @property
    def registry_ref(self) -> str:
        return f"{REGISTRY}/{self.path}"

    def stamp(self) -> str:
        recipe = {"script": IMAGE_SCRIPT_VERSION, "path": self.path, "local": self.local,
                  "changes": list(self.changes), "base": self.base_sha256,
                  "files": [[f.dest, f.sha256, f.mode] for f in self.files],
                  "dirs": [list(d) for d in self.dirs]}
        if self.links:  # only when set: the images without links keep their stamps
            recipe["links"] = [list(link) for link in self.links]
        return sha256_json(recipe)

    def entry(self) -> dict[str, str]:
        return {"upstream": self.upstream, "local": self.local, "path": self.path}


def tar_names(path: Path) -> set[str]:
    """The paths in a root filesystem tarball, as ``usr/bin/env`` (no ``./``, no trailing ``/``)."""
    try:
        with tarfile.open(path, mode="r|") as tar:
            return {_tar_path(member.name) for member in tar}
    except (OSError, tarfile.TarError) as exc:
        raise OfflineError(f"cannot read {path} ({exc}): rerun `invoke artifacts`") from None


def _tar_path(name: str) -> str:
    return name.removeprefix("./").rstrip("/")


def write_tar(stream: IO[bytes], spec: ImageSpec) -> None:
    # a file or link added on top replaces the base's entry of that path (not a second entry)
    replaced = {f.dest for f in spec.files} | {path for path, _ in spec.links}
    with tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        have: set[str] = set()
        if spec.base is not None:
            with tarfile.open(spec.base, mode="r|") as base:
                for member in base:
                    name = _tar_path(member.name)
                    if name in replaced and not member.isdir():
                        continue
                    have.add(name)
                    tar.addfile(member, base.extractfile(member) if member.isreg() else None)
        else:
            tar.addfile(_dir_info(".", 0o755))
        for path, mode in spec.dirs:
            if path not in have:
                tar.addfile(_dir_info(f"./{path}", mode))
                have.add(path)
        for f in spec.files:
            parent = os.path.dirname(f.dest)
            if parent and parent not in have:
                raise OfflineError(f"image {spec.local}: no directory {parent!r} for {f.dest}")
            if sha256_file(f.source) != f.sha256:
                raise OfflineError(f"{f.source} changed while building {spec.local}; rerun `invoke artifacts`")
            info = tarfile.TarInfo(f"./{f.dest}")
            info.size = f.source.stat().st_size
            info.mode = f.mode
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = 0
            with open(f.source, "rb") as src:
                tar.addfile(info, src)
        for path, target in spec.links:
            info = tarfile.TarInfo(f"./{path}")
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = 0
            tar.addfile(info)


def _dir_info(name: str, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = 0
    return info
