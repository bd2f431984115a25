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


def _recover(target: Path) -> None:
    old = target.parent / f".{target.name}.old"
    if old.exists() and not target.exists():
        os.rename(old, target)
    elif old.exists():
        shutil.rmtree(old)


def replace_tree(target: Path, files: Iterable[tuple[str, bytes]]) -> int:
    """Write ``files`` (relative path, content) as the new content of ``target``; return the count."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _recover(target)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
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
