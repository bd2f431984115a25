"""The build cache: where things go, how a rebuild is avoided, and how files are written safely.

Layout under the cache root (``$KUBESWEEP_CACHE``, default ``~/.cache/kubesweep``)::

    build/<name>-<version>/     a generated Go wrapper module, its bin/ and stamps/
    images/<name>.tar           debootstrap root filesystems (with a <name>.json stamp)
    mirror/                     the files_repo served over HTTP (see mirror_layout.py)
    kwok-stages/                kwok's stage YAMLs
    images.json                 the container images built into the local docker daemon
    logs/                       the output of every command run, one file per step
    state/                      digests of mirror files, stamps of generated archives

Why stamps and not timestamps: an artifact depends on more than its source (version, linker
flags, the wrapper's go.mod and go.sum, the Go toolchain). Each build writes a small JSON stamp
next to its output with exactly those inputs, the output's size, mtime and SHA-256. An artifact
is rebuilt only when the stamp is missing, the inputs differ, or the file on disk is not the one
the stamp describes (deleted, truncated, replaced). That is what makes a second ``invoke
artifacts`` finish in seconds: no compiler, no hashing of hundreds of megabytes.

Why temp names: every output is written under a hidden temporary name in its final directory
and moved into place with ``os.replace`` (atomic on one filesystem), so an interrupted build
never leaves a truncated binary where a later step, or the HTTP mirror, would pick it up.

Commands are always run from argument lists (never a shell string), and their output goes to
``logs/<step>.log``; a failure quotes the end of that log and says what to do.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from kubesweep.errors import KubesweepError
from kubesweep.local.paths import cache_root

STAMP_FORMAT = 1
GiB = 1 << 30


# ------------------------------------------------------------------------------------- errors


class OfflineError(KubesweepError):
    """Building the offline mirror or its images failed; the message says what to do."""


class MissingToolError(OfflineError):
    """A program the build needs is not installed (or too old)."""


class DiskFullError(OfflineError):
    """The disk filled up (or is about to)."""


class BuildError(OfflineError):
    """A build command failed; the message quotes the end of its log."""


# -------------------------------------------------------------------------------------- paths


@dataclass(frozen=True)
class Cache:
    """Every path the offline build reads or writes, under one root."""

    root: Path

    @classmethod
    def default(cls) -> Cache:
        return cls(cache_root())

    def build_dir(self, name: str, version: str) -> Path:
        return self.root / "build" / f"{name}-{version}"

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    @property
    def mirror(self) -> Path:
        return self.root / "mirror"

    @property
    def kwok_stages(self) -> Path:
        return self.root / "kwok-stages"

    @property
    def images_json(self) -> Path:
        return self.root / "images.json"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def state(self) -> Path:
        return self.root / "state"

    def log(self, step: str) -> Path:
        self.logs.mkdir(parents=True, exist_ok=True)
        return self.logs / f"{step}.log"


# ----------------------------------------------------------------------------- safe writing


def temp_sibling(path: Path) -> Path:
    """A hidden name next to ``path`` (same filesystem, so os.replace is atomic)."""
    return path.parent / f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}"


def is_temp_name(name: str) -> bool:
    return name.startswith(".") and ".tmp-" in name


def atomic_write(path: Path, data: bytes | str, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode() if isinstance(data, str) else data
    tmp = temp_sibling(path)
    try:
        with open(tmp, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise_disk_error(exc, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_if_changed(path: Path, data: bytes | str, mode: int = 0o644) -> bool:
    """atomic_write unless the file already holds exactly ``data``; True when it wrote."""
    raw = data.encode() if isinstance(data, str) else data
    try:
        if path.read_bytes() == raw:
            return False
    except OSError:
        pass
    atomic_write(path, raw, mode)
    return True


def disk_error(exc: OSError, path: Path) -> OSError | DiskFullError:
    """Turn ENOSPC/EDQUOT into a DiskFullError that names the place; other errors unchanged."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(f"the disk is full while writing {path} ({free_text(path)}): free some space "
                             "(e.g. `go clean -cache`, `docker image prune`) and rerun `invoke artifacts`")
    return exc


def raise_disk_error(exc: OSError, path: Path) -> NoReturn:
    """Re-raise ``exc``, as a DiskFullError when it means the disk is full."""
    err = disk_error(exc, path)
    if err is exc:
        raise exc
    raise err from exc


def free_text(path: Path) -> str:
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return f"{shutil.disk_usage(probe).free / GiB:.1f} GiB free on {probe}"
    except OSError:
        return "free space unknown"


def require_free_space(path: Path, need_bytes: int, what: str) -> None:
    """Refuse to start ``what`` when the filesystem of ``path`` has less than ``need_bytes`` free."""
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < need_bytes:
        raise DiskFullError(f"not enough disk space to {what}: {free / GiB:.1f} GiB free on {probe}, "
                            f"need about {need_bytes / GiB:.1f} GiB; free some space (e.g. `go clean -cache`, "
                            "`docker image prune`) and rerun")


# ---------------------------------------------------------------------------------- hashing


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256_json(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def file_identity(path: Path) -> dict[str, int]:
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


class DigestCache:
    """SHA-256 of files, remembered by (inode, size, mtime) so unchanged files are not re-read."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.entries: dict[str, dict[str, Any]] = json.loads(path.read_text())
        except (OSError, ValueError):
            self.entries = {}
        self.hashed = 0  # files actually read this run

    def digest(self, file: Path, known: str | None = None) -> str:
        st = os.stat(file)
        key = str(file)
        ident = {"ino": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
        entry = self.entries.get(key)
        if entry and all(entry.get(k) == v for k, v in ident.items()):
            return str(entry["sha256"])
        if known is None:
            known = sha256_file(file)
            self.hashed += 1
        self.entries[key] = {**ident, "sha256": known}
        return known

    def forget_missing(self) -> None:
        self.entries = {k: v for k, v in self.entries.items() if os.path.exists(k)}

    def save(self) -> None:
        write_if_changed(self.path, json.dumps(self.entries, sort_keys=True, indent=0) + "\n")


# ----------------------------------------------------------------------------------- stamps


class Stamp:
    """What an output was built from, so that it is rebuilt only when that changes.

    ``inputs`` is any JSON-able mapping (versions, flags, hashes of the files that went in).
    The stamp is fresh when the output exists with the size and mtime recorded at build time
    and the recorded inputs equal the current ones.
    """

    def __init__(self, path: Path):
        self.path = Path(path)

    def load(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and data.get("format") == STAMP_FORMAT else None

    def is_fresh(self, inputs: Mapping[str, Any], output: Path | None = None) -> bool:
        data = self.load()
        if data is None or data.get("inputs") != json.loads(json.dumps(inputs)):
            return False
        if output is None:
            return True
        try:
            return file_identity(output) == data.get("output")
        except OSError:
            return False

    def record(self, inputs: Mapping[str, Any], output: Path | None = None, **extra: Any) -> dict[str, Any]:
        data: dict[str, Any] = {"format": STAMP_FORMAT, "inputs": dict(inputs), **extra}
        if output is not None:
            data["output"] = file_identity(output)
        atomic_write(self.path, json.dumps(data, sort_keys=True, indent=2) + "\n")
        return data

    def get(self, key: str, default: Any = None) -> Any:
        data = self.load() or {}
        return data.get(key, default)


# ---------------------------------------------------------------------------------- SHA256SUMS


def sha256sums_text(digests: Mapping[str, str]) -> str:
    """``sha256sum``'s format: "<hex>  <relative path>" per line, sorted by path."""
    for rel, hexdigest in digests.items():
        if len(hexdigest) != 64 or any(c not in "0123456789abcdef" for c in hexdigest):
            raise ValueError(f"not a SHA-256 hex digest for {rel}: {hexdigest!r}")
        if rel.startswith("/") or "\n" in rel or ".." in rel.split("/"):
            raise ValueError(f"not a relative path inside the mirror: {rel!r}")
    return "".join(f"{digests[rel]}  {rel}\n" for rel in sorted(digests))


def mirror_files(root: Path) -> list[str]:
    """Relative paths of the regular files under ``root`` (temporary files and SHA256SUMS excluded)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames:
            if is_temp_name(name):
                continue
            rel = os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/")
            if rel != "SHA256SUMS":
                found.append(rel)
    return sorted(found)


def write_sha256sums(root: Path, digests: DigestCache) -> dict[str, str]:
    """Write ``root/SHA256SUMS`` listing every file under ``root``; return {path: digest}."""
    listing = {rel: digests.digest(root / rel) for rel in mirror_files(root)}
    write_if_changed(root / "SHA256SUMS", sha256sums_text(listing))
    return listing


# ---------------------------------------------------------------------------------- commands


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def run(argv: Sequence[str], *, log: Path, what: str, cwd: Path | None = None,
        env: Mapping[str, str] | None = None, hint: str = "", stdin: Any = subprocess.DEVNULL,
        check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` (a list, never a shell string) with its output appended to ``log``.

    A failure raises BuildError quoting the end of the log (DiskFullError when the log says the
    disk is full); a missing program raises MissingToolError.
    """
    args = [os.fspath(a) for a in argv]
    if not all(isinstance(a, str) for a in args):
        raise TypeError(f"arguments must be strings: {args!r}")
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        out.write(f"\n$ {subprocess.list2cmdline(args)}\n".encode())
        out.flush()
        try:
            proc = subprocess.run(args, cwd=cwd, env=dict(env) if env is not None else None,
                                  stdout=out, stderr=subprocess.STDOUT, stdin=stdin, check=False)
        except FileNotFoundError:
            raise MissingToolError(f"cannot {what}: `{args[0]}` is not installed{': ' + hint if hint else ''}") from None
        except OSError as exc:
            raise_disk_error(exc, log)
    if check and proc.returncode != 0:
        raise command_failed(what, args, proc.returncode, log)
    return proc


def command_failed(what: str, args: Sequence[str], code: int, log: Path) -> OfflineError:
    tail = _tail(log)
    if "no space left on device" in tail.lower():
        return DiskFullError(f"the disk filled up while trying to {what} ({free_text(log)}); free some space "
                             f"(e.g. `go clean -cache`, `docker image prune`) and rerun.\nlog: {log}\n{tail}")
    return BuildError(f"could not {what}: `{args[0]}` exited with status {code}. End of {log}:\n{tail}")


def remove_quietly(paths: Iterable[Path]) -> None:
    for p in paths:
        try:
            p.unlink()
        except FileNotFoundError:
            pass
