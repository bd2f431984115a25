"""Atomic replacement of a directory tree: on any error, the old tree is left exactly as it was.

Files are written into a hidden sibling directory; only when every file is written is the old
directory moved aside and the new one renamed into place (two renames on the same filesystem).
A crash between the two renames leaves the old tree under ``.<name>.old``; the next write puts
it back before starting, so a tree is never lost.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterable

from kubesweep.errors import KubesweepError


class NotADirectory(KubesweepError):
    """The place to write is taken by something kubesweep did not make; nothing was written."""


def _remove(path: Path) -> None:
    """Remove what kubesweep left at ``path``: a tree, or a stray file or link."""
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path)


def _recover(target: Path) -> None:
    old = target.parent / f".{target.name}.old"
    if os.path.lexists(old) and not os.path.lexists(target):
        os.rename(old, target)
    elif os.path.lexists(old):
        _remove(old)


def resolve_target(target: Path) -> Path:
    """Where the tree for ``target`` goes: ``target`` itself, or the directory it links to (a
    jobs/<experiment> linked to a bigger disk stays a link, and its directory is replaced).
    NotADirectory when a file, a dangling link or a non-directory parent is in the way."""
    target = Path(target)
    for parent in reversed(target.parents):
        if os.path.lexists(parent) and not parent.is_dir():
            raise NotADirectory(f"{parent} is not a directory, so {target} cannot be written: move it away or choose another --jobs-dir")
    if target.is_symlink():
        real = target.resolve()
        if not real.is_dir():
            raise NotADirectory(f"{target} is a link to {real}, which is not a directory: remove the link or make the directory")
        return real
    if os.path.lexists(target) and not target.is_dir():
        raise NotADirectory(f"{target} exists and is not a directory; kubesweep writes the experiment's manifests there: "
                            "move it away or choose another --jobs-dir")
    return target


def replace_tree(target: Path, files: Iterable[tuple[str, bytes]]) -> int:
    """Write ``files`` (relative path, content) as the new content of ``target``; return the count.
    ``target`` may be a link to a directory (the directory is replaced, the link kept)."""
    target = resolve_target(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _recover(target)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    if os.path.lexists(tmp):
        _remove(tmp)
    made: set[str] = set()
    count = 0
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        tmp.mkdir()
        for rel, data in files:
            folder = os.path.dirname(rel)
            if folder and folder not in made:
                os.makedirs(tmp / folder, exist_ok=True)
                made.add(folder)
            fd = os.open(tmp / rel, flags, 0o644)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            count += 1
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = target.parent / f".{target.name}.old"
    if target.exists():
        os.rename(target, old)
    os.rename(tmp, target)
    if old.exists():
        shutil.rmtree(old)
    return count
