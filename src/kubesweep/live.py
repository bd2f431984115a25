"""What a person sees while a sweep runs: a live table on a terminal, plain lines elsewhere."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table

from .trialstate import FINAL, RUNNING, SUCCEEDED, TrialRecord

COLORS = {"pending": "dim", "submitted": "yellow", "running": "cyan", "succeeded": "green", "failed": "red",
          "cancelled": "magenta"}


class View:
    """Receives every trial change; shows it live (TTY) or as one line per change (CI, pipes)."""

    def __init__(self, experiment: str, metric: str, total: int, stream: TextIO | None = None, live: bool | None = None):
        self.experiment, self.metric, self.total = experiment, metric, total
        self.stream = stream or sys.stdout
        self.live_mode = self.stream.isatty() if live is None else live
        self.records: dict[str, TrialRecord] = {}
        self.started = time.monotonic()
        self._live: Live | None = None
        self._finished_times: list[float] = []

    def __enter__(self) -> View:
        if self.live_mode:
            self._live = Live(self._table(), console=Console(file=self.stream), refresh_per_second=2, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.update(self._table())
            self._live.__exit__(*exc)

    def change(self, rec: TrialRecord) -> None:
        before = self.records.get(rec.name)
        self.records[rec.name] = TrialRecord(**rec.as_dict())
        if rec.state in FINAL and (before is None or before.state not in FINAL):
            self._finished_times.append(time.monotonic())
        if self._live is not None:
            self._live.update(self._table())
        elif before is None or before.state != rec.state or (rec.reason and rec.reason != before.reason):
            self.stream.write(self._line(rec) + "\n")
            self.stream.flush()

    def _eta(self) -> str:
        done = len(self._finished_times)
        if not done:
            return "?"
        rate = done / max(time.monotonic() - self.started, 1e-6)
        left = self.total - sum(1 for r in self.records.values() if r.state in FINAL)
        return f"{left / rate:.0f}s" if rate > 0 else "?"

    def _line(self, rec: TrialRecord) -> str:
        stamp = time.strftime("%H:%M:%S")
        parts = [stamp, f"{rec.state:<9}", rec.name]
        if rec.node:
            parts.append(f"on {rec.node}")
        value = rec.metrics.get(self.metric) if rec.metrics else None
        if value is not None:
            parts.append(f"{self.metric}={value}")
        if rec.reason:
            msg = (rec.message or "").splitlines()[0] if rec.message else ""
            parts.append(f"[{rec.reason}{': ' + msg if msg else ''}]")
        counts = self.counts()
        parts.append(f"({counts['succeeded']}✓ {counts['failed']}✗ {counts['running']}▶ of {self.total})")
        return " ".join(parts)

    def counts(self) -> dict[str, int]:
        out = {k: 0 for k in COLORS}
        for r in self.records.values():
            out[r.state] = out.get(r.state, 0) + 1
        return out

    def _table(self) -> Table:
        c = self.counts()
        title = (f"{self.experiment}: {c['succeeded']} succeeded, {c['failed']} failed, {c['running']} running, "
                 f"{c['submitted']} waiting of {self.total} — {time.monotonic() - self.started:.0f}s, ETA {self._eta()}")
        table = Table(title=title)
        for col in ("trial", "state", "node", "duration", self.metric, "reason"):
            table.add_column(col)
        shown = sorted(self.records.values(), key=lambda r: (r.state in FINAL and r.state != RUNNING, r.name))
        for r in shown[-40:]:
            value = r.metrics.get(self.metric) if r.metrics else None
            table.add_row(r.name, f"[{COLORS.get(r.state, '')}]{r.state}[/]", r.node or "",
                          "" if not r.start else (r.end or "…")[11:19], "" if value is None else f"{value:.4g}",
                          (r.reason or "") if r.state != SUCCEEDED else "")
        return table
