"""A sweep's trials and their states: the one place a trial's record changes.

Pure bookkeeping, no I/O: which trials wait, which hold a slot (submitted or running, not yet
collected), how many failed, whether one reached the goal. Kept up to date on every change, so
that nothing in the event loop walks all trials (at thousands of trials that walk was the
client's CPU).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from kubesweep.plan.job import batch_name
from kubesweep.plan.trials import Trial
from kubesweep.run.trialstate import CANCELLED, FAILED, FINAL, PENDING, PRUNED, RUNNING, SUBMITTED, SUCCEEDED, TrialRecord

RESTORED = ("state", "node", "start", "end", "metrics", "reason", "message", "attempt", "curves")


def meets_goal(objective: Any, metrics: dict[str, float | None] | None) -> bool:
    """Whether ``metrics`` reach the objective's goal (never, when it has none); with several
    objectives, every goal given, in one trial (a point of the Pareto front good enough)."""
    goals = objective.goals()
    got = metrics or {}
    return bool(goals) and all(got.get(m) is not None and (got[m] >= g if d == "maximize" else got[m] <= g)
                               for m, d, g in goals)


class TrialBook:
    def __init__(self, trials: Iterable[Trial], objective: Any,
                 on_change: Callable[[TrialRecord], None] | None = None):
        trials = list(trials)
        self.objective = objective
        self.on_change = on_change or (lambda rec: None)
        self.records = {t.name: TrialRecord(t.name, batch_name(t.batch), dict(t.params)) for t in trials}
        self.order = [t.name for t in trials]
        self.collecting: set[str] = set()  # finished; its log is being read
        self._inflight: set[str] = set()   # submitted or running, holding a slot
        self._failed = 0
        self._goal_hit = False
        self._next = 0                     # index into order: no PENDING trial before it...
        self._requeued: list[str] = []     # ...except these, put back in line (node loss)

    # ---------------------------------------------------------------- changes
    def set(self, rec: TrialRecord, **changes: Any) -> None:
        """Change a record; the counts follow, and ``on_change`` hears of it if anything changed."""
        old = rec.state
        changed = any(getattr(rec, k) != v for k, v in changes.items())
        for k, v in changes.items():
            setattr(rec, k, v)
        if rec.state != old:
            self._moved(rec, old)
        if changed:
            self.on_change(rec)

    def _moved(self, rec: TrialRecord, old: str) -> None:
        name = rec.name
        if rec.state in (SUBMITTED, RUNNING) and name not in self.collecting:
            self._inflight.add(name)
        else:
            self._inflight.discard(name)
        self._failed += (rec.state == FAILED) - (old == FAILED)
        if rec.state == PENDING:
            self._requeued.append(name)
        if rec.state == SUCCEEDED and meets_goal(self.objective, rec.metrics):
            self._goal_hit = True

    def requeue(self, rec: TrialRecord, **changes: Any) -> None:
        """A trial taken to run that was not submitted after all (a full quota refused its create):
        back in line, first, with ``changes`` (why it waits)."""
        self.set(rec, state=PENDING, **changes)
        if rec.name not in self._requeued:
            self._requeued.append(rec.name)

    def collect(self, name: str) -> None:
        """The trial finished and its log is being read: it no longer holds a slot."""
        self.collecting.add(name)
        self._inflight.discard(name)

    def collected(self, name: str) -> None:
        self.collecting.discard(name)

    def restore(self, done: dict[str, dict[str, Any]]) -> list[TrialRecord]:
        """Take what earlier runs journaled (resume); return the finished records of this plan."""
        for name, saved in done.items():
            rec = self.records.get(name)
            if rec is not None:
                for key in RESTORED:
                    setattr(rec, key, saved.get(key, getattr(rec, key)))
        self.recount()
        return [r for r in self.records.values() if r.state in FINAL]

    def attach(self, names: Iterable[str]) -> int:
        """Trials whose Jobs exist already (an earlier run submitted them): SUBMITTED, not pending."""
        attached = 0
        for name in names:
            rec = self.records.get(name)
            if rec is not None and rec.state == PENDING:
                rec.state = SUBMITTED
                attached += 1
        self.recount()
        return attached

    def recount(self) -> None:
        """Recount after records were set directly (resume)."""
        self._inflight = {n for n, r in self.records.items() if r.state in (SUBMITTED, RUNNING) and n not in self.collecting}
        self._failed = sum(r.state == FAILED for r in self.records.values())
        self._goal_hit = any(r.state == SUCCEEDED and meets_goal(self.objective, r.metrics) for r in self.records.values())
        self._next, self._requeued = 0, []

    # ---------------------------------------------------------------- questions
    @property
    def failed(self) -> int:
        return self._failed

    @property
    def goal_reached(self) -> bool:
        return self._goal_hit

    def in_flight(self) -> list[TrialRecord]:
        """Trials holding a slot: submitted or running, not yet finished."""
        return [self.records[n] for n in self._inflight]

    def in_flight_names(self) -> frozenset[str]:
        return frozenset(self._inflight)

    def busy(self) -> bool:
        """Whether any trial holds a slot or is being collected."""
        return bool(self._inflight or self.collecting)

    def holding(self, sending: set[str]) -> tuple[int, int]:
        """(running, waiting): the trials that hold a place on the cluster or wait for one,
        counting those whose creates were ``sending`` and not yet answered."""
        flying = self.in_flight()
        running = sum(r.state == RUNNING for r in flying)
        return running, len(flying) - running + len(sending - {r.name for r in flying})

    def has_pending(self) -> bool:
        while self._next < len(self.order) and self.records[self.order[self._next]].state != PENDING:
            self._next += 1
        return self._next < len(self.order) or any(self.records[n].state == PENDING for n in self._requeued)

    def take_pending(self, limit: int, one_batch: bool) -> list[TrialRecord]:
        """Up to ``limit`` trials waiting to run, requeued ones first, then in plan order (one
        batch directory at most when ``one_batch``)."""
        out: list[TrialRecord] = []
        taken: set[str] = set()  # by name: a dataclass == compares every field
        while self._requeued and len(out) < limit:
            rec = self.records[self._requeued.pop(0)]
            if rec.state == PENDING and rec.name not in taken:
                out.append(rec)
                taken.add(rec.name)
        while self._next < len(self.order) and len(out) < limit:
            rec = self.records[self.order[self._next]]
            if rec.state == PENDING and rec.name not in taken:
                if one_batch and out and rec.batch != out[0].batch:
                    break
                out.append(rec)
                taken.add(rec.name)
            self._next += 1
        return out

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in (PENDING, SUBMITTED, RUNNING, SUCCEEDED, FAILED, PRUNED, CANCELLED)}
        for r in self.records.values():
            out[r.state] += 1
        return out
