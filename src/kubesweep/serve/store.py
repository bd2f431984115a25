"""Experiments and trials as the API shows them, read from the workspace.

An experiment is what jobs/<exp>/plan.json (its plan: namespace, objective, trials) and
results/<exp>/trials.jsonl (its journal: every finished trial) say, merged with the rows of the
trials in flight that the sweeps this server drives report (``Manager.live``). Nothing is kept
but caches: each file is parsed again only when its size or modification time changed, and the
journal, which only grows while a sweep runs, is read on from where the last read stopped; so
listing an experiment of thousands of trials costs a stat of two files, not a parse.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import orjson

from kubesweep.plan.planner import PLAN_FILE
from kubesweep.run import journal, lease
from kubesweep.run import report as reports
from kubesweep.run.trialstate import CANCELLED, FAILED, FINAL, PENDING, PRUNED, RUNNING, SUBMITTED, SUCCEEDED
from kubesweep.run.trialstate import elapsed, reached
from kubesweep.spec.rules import DNS_SUBDOMAIN

COUNTED = (PENDING, RUNNING, SUCCEEDED, FAILED, PRUNED, CANCELLED)
_EPOCHS = itertools.count()


def valid_name(name: str) -> bool:
    """An experiment's name as kubesweep writes it (a DNS subdomain): never a path."""
    return bool(DNS_SUBDOMAIN.fullmatch(name)) and len(name) <= 253


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


@dataclass
class _Journal:
    """A journal read so far: the latest record per trial and where the read stopped."""

    inode: int = -1
    offset: int = 0
    mtime: int = 0
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    read: list[str] = field(default_factory=list)  # trial of each line read, in order
    epoch: int = field(default_factory=lambda: next(_EPOCHS))  # a new one for each read from the start


@dataclass
class _Plan:
    stamp: tuple[int, int, int]
    index: dict[str, Any]


@dataclass
class _Base:
    """An experiment's rows from its plan and journal alone, and what they were made from."""

    key: tuple[Any, ...]
    meta: dict[str, Any]
    rows: dict[str, dict[str, Any]]
    best: dict[str, Any] | None


class Store:
    """The workspace's experiments; thread-safe (the API's routes run in a thread pool)."""

    def __init__(self, jobs_dir: Path, results_dir: Path,
                 live: Callable[[str], dict[str, dict[str, Any]]] = lambda name: {},
                 driven: Callable[[], set[str]] = set):
        self.jobs_dir, self.results_dir = Path(jobs_dir), Path(results_dir)
        self.live, self.driven = live, driven
        self._lock = threading.Lock()
        self._journals: dict[str, _Journal] = {}
        self._plans: dict[str, _Plan | None] = {}
        self._bases: dict[str, _Base] = {}

    # --- files ------------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Every experiment with a plan or a journal in the workspace."""
        found = set()
        for root, marker in ((self.jobs_dir, PLAN_FILE), (self.results_dir, journal.FILE)):
            try:
                entries = os.scandir(root)
            except OSError:
                continue
            with entries:
                found.update(e.name for e in entries if e.is_dir() and valid_name(e.name)
                             and os.path.exists(os.path.join(e.path, marker)))
        return sorted(found)

    def _plan(self, name: str) -> dict[str, Any] | None:
        path = self.jobs_dir / name / PLAN_FILE
        stamp = _stamp(path)
        cached = self._plans.get(name)
        if stamp is None:
            self._plans.pop(name, None)
            return None
        if cached is None or cached.stamp != stamp:
            try:
                index = orjson.loads(path.read_bytes())
            except (OSError, orjson.JSONDecodeError):
                return None  # being replaced (writer.replace_tree swaps it atomically): next request
            cached = self._plans[name] = _Plan(stamp, index)
        return cached.index

    def _journal(self, name: str) -> _Journal:
        """The journal's records, reading only what was appended since the last call (a file that
        shrank or was replaced, as --retry-failed's ``journal.forget`` does, is read again)."""
        path = journal.path(self.results_dir / name)
        stamp = _stamp(path)
        j = self._journals.get(name)
        if stamp is None:
            self._journals.pop(name, None)
            return _Journal()
        inode, size, mtime = stamp
        if j is None or j.inode != inode or size < j.offset or (size == j.offset and mtime != j.mtime):
            j = self._journals[name] = _Journal(inode=inode)
        if size > j.offset:
            with open(path, "rb") as f:
                f.seek(j.offset)
                data = f.read(size - j.offset)
            end = data.rfind(b"\n") + 1  # a line being written is read next time, whole
            for line in data[:end].splitlines():
                try:
                    rec = orjson.loads(line)
                    j.records[rec["name"]] = rec
                    j.read.append(rec["name"])
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    continue  # a line cut short by a crash (journal.load skips it too)
            j.offset += end
        j.mtime = mtime
        return j

    # --- experiments ------------------------------------------------------------------------

    def _base(self, name: str) -> _Base | None:
        index = self._plan(name)
        j = self._journal(name)
        if index is None and not j.records:
            return None
        key = (self._plans[name].stamp if index is not None else None, j.epoch, len(j.read))
        cached = self._bases.get(name)
        if cached is not None and cached.key == key:
            return cached
        if cached is not None and cached.key[:2] == key[:2] and cached.key[2] < key[2]:
            return self._appended(name, cached, j, key)
        objective = (index or {}).get("objective") or {}
        metric, direction = objective.get("metric"), objective.get("direction", "maximize")
        if index is None:  # a journal without its plan (jobs/ cleaned): what best.json says
            metric, direction = _best_file(self.results_dir / name, metric, direction)
        rows: dict[str, dict[str, Any]] = {}
        params: list[str] = []
        for t in (index or {}).get("trials") or []:
            rows[t["name"]] = {"name": t["name"], "batch": t.get("batch"), "state": PENDING, "params": t.get("params") or {},
                               "node": None, "metric": None, "metrics": {}, "step": None, "start": None, "end": None,
                               "duration": None, "message": None}
            if not params:
                params = list(t.get("params") or {})
        for rec in j.records.values():
            rows[rec["name"]] = row(rec, metric)
            if not params:
                params = list(rec.get("params") or {})
        top = best(j.records.values(), metric, direction) if metric else None
        meta = {"name": name, "namespace": (index or {}).get("namespace"), "metric": metric, "direction": direction,
                "parameters": params}
        base = self._bases[name] = _Base(key, meta, rows, _shown(top, metric))
        return base

    def _appended(self, name: str, cached: _Base, j: _Journal, key: tuple[Any, ...]) -> _Base:
        """The rows of ``cached`` with the journal lines read since it was made (a sweep running):
        only those rows are made again, into a copy (a request may be reading the old one)."""
        metric, direction = cached.meta["metric"], cached.meta["direction"]
        rows = dict(cached.rows)
        new = dict.fromkeys(j.read[cached.key[2]:])  # in the order read, once each
        for trial in new:
            rows[trial] = row(j.records[trial], metric)
        top: dict[str, Any] | None = None
        if metric and cached.best is not None and cached.best["trial"] in new:  # the best was run again
            top = best(j.records.values(), metric, direction)
        elif metric:
            # of equals the first in the journal's order of trials, as a whole read picks
            candidates = {*new, *([cached.best["trial"]] if cached.best is not None else [])}
            first = {t: i for i, t in enumerate(j.records) if t in candidates} if len(candidates) > 1 else {}
            top = best(sorted((j.records[t] for t in candidates), key=lambda r: first.get(r["name"], 0)),
                       metric, direction)
        base = self._bases[name] = _Base(key, cached.meta, rows, _shown(top, metric))
        return base

    def _merged(self, name: str) -> tuple[_Base, dict[str, dict[str, Any]], bool] | None:
        with self._lock:
            base = self._base(name)
        if base is None:
            return None
        live = self.live(name) or {}
        rows = base.rows
        if live:
            rows = dict(rows)
            for trial, r in live.items():
                done = rows.get(trial)
                if done is not None and done["state"] in FINAL:
                    continue  # the journal has its end: a late hook does not bring it back
                rows[trial] = {**(done or {}), **r}
        return base, rows, name in self.driven()

    def _elsewhere(self, name: str, driven: bool) -> dict[str, Any] | None:
        # a sweep of this project run from a shell (or another server): its lock says so
        return None if driven else lease.held_by(self.results_dir, name)

    def summary(self, name: str) -> dict[str, Any] | None:
        merged = self._merged(name)
        return None if merged is None else _summary(*merged, self._elsewhere(name, merged[2]))

    def experiment(self, name: str) -> dict[str, Any] | None:
        """The summary and every trial's row, in plan order (trials asked later after)."""
        merged = self._merged(name)
        if merged is None:
            return None
        return {**_summary(*merged, self._elsewhere(name, merged[2])), "trials": list(merged[1].values())}

    def namespace(self, name: str) -> str | None:
        with self._lock:
            index = self._plan(name)
        return (index or {}).get("namespace")

    def exists(self, name: str) -> bool:
        return valid_name(name) and ((self.jobs_dir / name / PLAN_FILE).exists()
                                     or journal.path(self.results_dir / name).exists())

    def records(self, name: str) -> dict[str, dict[str, Any]]:
        """The journal's records (trial -> its latest record), cached."""
        with self._lock:
            return dict(self._journal(name).records)

    def curves(self, name: str) -> dict[str, Any] | None:
        """The learning curves of the objective (or of what early stopping judged, where the
        journal has it), finished trials from the journal and running ones from the live rows."""
        from kubesweep.run import plots

        merged = self._merged(name)
        if merged is None:
            return None
        base, rows, _ = merged
        metric = base.meta["metric"]
        records = list(self.records(name).values())
        drawn = plots.curve_metric(records, metric, None) or metric
        curves = {r["name"]: [list(p) for p in plots.curve(r, drawn)] for r in records}
        for trial, r in (self.live(name) or {}).items():
            if trial not in curves and r.get("curve"):
                curves[trial] = r["curve"]
        return {"metric": drawn, "curves": {t: c for t, c in curves.items() if c}}


def _shown(top: dict[str, Any] | None, metric: str | None) -> dict[str, Any] | None:
    return None if top is None else {"trial": top["name"], "value": top["metrics"][metric], "params": top["params"]}


def best(records: Iterable[dict[str, Any]], metric: str, direction: str) -> dict[str, Any] | None:
    """The best trial as run/report.py's ``best`` picks it (succeeded with a number; the first of
    equals), in one pass: its ``ranked`` sorts every record, which for a listing is wasted."""
    top, top_value = None, None
    sign = 1 if direction == "maximize" else -1
    for r in records:
        v = (r.get("metrics") or {}).get(metric)
        if r.get("state") != SUCCEEDED or not isinstance(v, (int, float)) or isinstance(v, bool) or math.isnan(v):
            continue
        if top_value is None or sign * v > sign * top_value:
            top, top_value = r, v
    return top


def row(rec: dict[str, Any], metric: str | None) -> dict[str, Any]:
    """A journal record as the API's trial row."""
    metrics = rec.get("metrics") or {}
    took = elapsed(rec.get("start"), rec.get("end")) if rec.get("end") else None
    return {"name": rec["name"], "batch": rec.get("batch"), "state": rec.get("state") or PENDING,
            "params": rec.get("params") or {}, "node": rec.get("node"),
            "metric": metrics.get(metric) if metric else None, "metrics": metrics, "step": reached(rec),
            "start": rec.get("start"), "end": rec.get("end"), "duration": None if took is None else round(took, 1),
            "message": rec.get("message")}


def _summary(base: _Base, rows: dict[str, dict[str, Any]], driven: bool,
             elsewhere: dict[str, Any] | None = None) -> dict[str, Any]:
    """``elsewhere``: the process that sweeps it, where this server does not (None when it does;
    run/lease.py)."""
    counts = dict.fromkeys(COUNTED, 0)
    for r in rows.values():
        state = PENDING if r["state"] == SUBMITTED else r["state"]
        if state in counts:
            counts[state] += 1
    total = len(rows)
    final = sum(counts[s] for s in FINAL)
    if driven or elsewhere is not None:
        state = "running"
    elif total and final == total:
        state = "finished"
    elif final:
        state = "stopped"
    else:
        state = "idle"
    return {**base.meta, "total": total, "counts": counts, "best": base.best, "driven": driven, "state": state,
            **({"swept_by": elsewhere} if elsewhere is not None else {})}


def _best_file(results: Path, metric: str | None, direction: str) -> tuple[str | None, str]:
    try:
        kept = json.loads((results / reports.BEST).read_text())
    except (OSError, ValueError):
        return metric, direction
    return kept.get("metric") or metric, kept.get("direction") or direction
