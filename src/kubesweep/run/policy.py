"""When a sweep stops, and when a trial is given up on: pure rules over the trial book and the
clock, so each is tested alone.

A sweep stops early when a trial reached the objective's goal, when more trials failed than
maxFailedTrials allows (node-loss retries count), or when `kubesweep cancel` marked one of its
Jobs while it ran. A trial that waits Unschedulable longer than unschedulableSeconds fails; one
whose node stopped answering is submitted again once its pod's grace period ran out.
"""

from __future__ import annotations

from typing import Any

from kubesweep.plan import job as manifest
from kubesweep.run.book import TrialBook

# A trial whose pod was evicted from a lost node is submitted again this long after the pod's
# own grace period ran out without it stopping (a node that answers stops it within the period).
NODE_LOSS_MARGIN_S = 10.0

GOAL, MAX_FAILED, CANCELLED = "goal", "max-failed", "cancelled"

#: Through Kueue, with no batchSize in the sweep file, Kueue decides how many trials run: the
#: sweep keeps up to this many of its Jobs in the queue at once (batchSize, when given, caps it).
KUEUE_IN_FLIGHT = 1000


def in_flight_cap(exp: Any, refill: str) -> int:
    """How many of the sweep's Jobs may exist at once: batchSize, except through a Kueue queue
    when the file does not set it (trial refill): then Kueue's quotas are the scheduler, and
    KUEUE_IN_FLIGHT only keeps a huge grid from being created in one go."""
    if exp.queue and "batch_size" not in exp.model_fields_set and refill == "trial":
        return max(exp.batch_size, KUEUE_IN_FLIGHT)
    return exp.batch_size


def stop_reason(book: TrialBook, max_failed: int | None, node_loss_retries: int, cancelled: bool) -> str | None:
    """Why the sweep stops now (None: it goes on)."""
    if book.goal_reached:
        return GOAL
    if max_failed is not None and book.failed + node_loss_retries > max_failed:
        return MAX_FAILED
    if cancelled:
        return CANCELLED
    return None


def cancel_mark(job: dict[str, Any]) -> str | None:
    """The mark `kubesweep cancel` put on a Job (lifecycle.cancel), if any."""
    return (job["metadata"].get("annotations") or {}).get(manifest.A_CANCELLED)


class CancelWatch:
    """Whether a Job tells of a cancel made while this sweep runs. A mark a Job already had when
    the sweep started (a rerun while an earlier cancel's deletes were under way, or after one that
    failed part way) is not a cancel of this run: the rerun resumes."""

    def __init__(self, jobs_at_start: list[dict[str, Any]]):
        self.old = {j["metadata"]["name"]: m for j in jobs_at_start if (m := cancel_mark(j))}
        self.seen = False

    def check(self, job: dict[str, Any]) -> bool:
        mark = cancel_mark(job)
        if mark and self.old.get(job["metadata"]["name"]) != mark:
            self.seen = True
        return self.seen


class Clocks:
    """Per-trial deadlines: how long a trial has waited Unschedulable, and since when a trial's
    node has been lost (with its pod's grace period)."""

    def __init__(self, pending_timeout_s: float):
        self.pending_timeout_s = pending_timeout_s
        self.pending_since: dict[str, float] = {}
        self.lost_since: dict[str, tuple[float, float]] = {}  # trial -> (since, grace period)

    def unschedulable(self, name: str, now: float) -> None:
        self.pending_since.setdefault(name, now)

    def placed(self, name: str) -> None:
        self.pending_since.pop(name, None)

    def lost(self, name: str, now: float, grace_s: float) -> bool:
        """Start the lost-node clock of a trial; False when it runs already."""
        if name in self.lost_since:
            return False
        self.lost_since[name] = (now, grace_s)
        return True

    def found(self, name: str) -> None:
        self.lost_since.pop(name, None)

    def forget(self, name: str, now: float, freed_a_node: bool) -> None:
        """The trial finished. One that held a node let go of it: the trials waiting for a place
        are queued behind the sweep, not refused by the cluster, so their clocks start again."""
        self.pending_since.pop(name, None)
        self.lost_since.pop(name, None)
        if freed_a_node:
            self.pending_since.update(dict.fromkeys(self.pending_since, now))

    def overdue(self, now: float) -> tuple[list[str], list[str]]:
        """(trials waiting Unschedulable too long, trials whose lost node's grace ran out); the
        latter's clocks stop here."""
        waited = [n for n, since in self.pending_since.items() if now - since > self.pending_timeout_s]
        lost = [n for n, (since, grace) in self.lost_since.items() if now - since > grace + NODE_LOSS_MARGIN_S]
        for name in lost:
            del self.lost_since[name]
        return waited, lost
