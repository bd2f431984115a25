"""results/<experiment>/trials.jsonl: an append-only journal of finished trials.

The cluster is the truth about Jobs that exist; the journal is the truth about trials whose
result was read (logs vanish with their pods). Each line is written with one write() and
fsync'd, so a client killed at any moment leaves at worst a missing last line — never a torn
one that a resume would misread — and the trial is then simply collected again from its Job.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

FILE = "trials.jsonl"


def path(results_dir: Path) -> Path:
    return Path(results_dir) / FILE


def append(results_dir: Path, record: dict[str, Any]) -> None:
    Path(results_dir).mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    fd = os.open(path(results_dir), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def load(results_dir: Path) -> dict[str, dict[str, Any]]:
    """The latest record per trial (a retried trial appears more than once)."""
    records: dict[str, dict[str, Any]] = {}
    p = path(results_dir)
    if not p.exists():
        return records
    for line in p.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a crash
        records[rec["name"]] = rec
    return records


def forget(results_dir: Path, names: set[str]) -> None:
    """Drop trials from the journal (for --retry-failed), atomically."""
    p = path(results_dir)
    if not p.exists():
        return
    kept = []
    for line in p.read_text().splitlines():
        try:
            if json.loads(line)["name"] not in names:
                kept.append(line)
        except (json.JSONDecodeError, KeyError):
            continue
    tmp = p.with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in kept))
    os.replace(tmp, p)
