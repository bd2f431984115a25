"""results/<experiment>/sweep.lock: one sweep of an experiment at a time per project.

Two sweeps of one experiment from the same project (two shells, or a shell and `kubesweep
serve`) would race: a Job's name is the trial's, so each trial still runs once (the second create
is answered 409), but both would ask an adaptive search for its next batch (two batches where one
was meant), journal the same trials and write the report at once. The sweep holds an exclusive
``flock`` on this file while it runs; the kernel lets go of it when the process ends, however it
ends (Ctrl-C, kill -9, a lost SSH session), so a stale lock never blocks a resume. The file says who holds it, for the message a second sweep gets and for
`kubesweep serve`'s page, which shows such an experiment running though this server is not
driving it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kubesweep.errors import KubesweepError

FILE = "sweep.lock"


def _holder(fd: int) -> dict[str, Any]:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:  # being written this moment
        return {}
    return data if isinstance(data, dict) else {}


def _lock(fd: int) -> bool:
    # held_by's shared lock lasts microseconds: tries for two seconds tell it from a sweep's
    for _ in range(40):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            time.sleep(0.05)
    return False


@contextmanager
def hold(results_dir: Path, experiment: str) -> Iterator[None]:
    """Hold the experiment's lock for the ``with`` block; KubesweepError (nothing done) if another
    process holds it."""
    folder = Path(results_dir) / experiment
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not _lock(fd):
            who = _holder(fd)
            by = f"process {who.get('pid', '?')} on {who.get('host', '?')}, since {who.get('since', '?')}"
            raise KubesweepError(
                f"{experiment} is being swept already ({by}; {folder / FILE}): two sweeps of one experiment "
                f"would race (an adaptive search would be asked twice). Wait for that one, stop it (Ctrl-C: it "
                f"resumes later), or `kubesweep cancel -e {experiment}`.") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                  "since": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}).encode(), 0)
        yield
    finally:
        os.close(fd)  # lets go of the lock


def held_by(results_dir: Path, experiment: str) -> dict[str, Any] | None:
    """Who sweeps the experiment now ({pid, host, since}), or None when no process does."""
    try:
        fd = os.open(Path(results_dir) / experiment / FILE, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _holder(fd)
        return None
    finally:
        os.close(fd)
