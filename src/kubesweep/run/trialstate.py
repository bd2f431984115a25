"""What a trial's Job and pod say about it: state, node, timings, and why it failed.

Pure functions over the API objects as camelCase dicts (what the API sends), so every
failure cause can be tested without a cluster: non-zero exit, OOMKilled, ImagePullBackOff /
ErrImagePull (seen as soon as the kubelet reports it, not after a timeout), Unschedulable with
the scheduler's message, DeadlineExceeded, and node loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

PENDING, SUBMITTED, RUNNING, SUCCEEDED, FAILED, CANCELLED, PRUNED = (
    "pending", "submitted", "running", "succeeded", "failed", "cancelled", "pruned")
#: A pruned trial was stopped by early stopping: final, not a failure, never run again.
FINAL = (SUCCEEDED, FAILED, CANCELLED, PRUNED)
#: waiting reasons that will not fix themselves: the trial fails at once
FATAL_WAITING = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
                 "CreateContainerConfigError", "CreateContainerError", "RunContainerError"}


@dataclass
class TrialRecord:
    name: str
    batch: str
    params: dict[str, Any]
    state: str = PENDING
    node: str | None = None
    start: str | None = None
    end: str | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)
    reason: str | None = None
    message: str | None = None
    attempt: int = 0
    #: Intermediate values by metric: [[step, value], ...] in the order printed (early stopping,
    #: learning curves). Kept in the journal with the rest of the record.
    curves: dict[str, list[list[float]]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The record as the journal stores it. Its dicts are copied one level deep, which is all
        they have (parameter values and metrics are scalars): dataclasses.asdict's recursive copy
        was the largest part of writing the journal line."""
        out = {f.name: getattr(self, f.name) for f in _FIELDS}
        out["params"], out["metrics"] = dict(self.params), dict(self.metrics)
        out["curves"] = {k: [list(p) for p in v] for k, v in self.curves.items()}
        return out


_FIELDS = fields(TrialRecord)


def reached(rec: TrialRecord | dict[str, Any]) -> float | None:
    """The last step a trial reported (the largest in its curves), or None without curves."""
    curves = rec.get("curves") if isinstance(rec, dict) else rec.curves
    steps = [c[-1][0] for c in (curves or {}).values() if c]
    return max(steps) if steps else None


def elapsed(start: str | None, end: str | None) -> float | None:
    """Seconds from start to end (or to now when end is None); None without a (readable) start."""
    if not start:
        return None
    try:
        t0 = datetime.fromisoformat(start.replace("Z", "+00:00"))
        t1 = datetime.fromisoformat(end.replace("Z", "+00:00")) if end else datetime.now(timezone.utc)
    except ValueError:
        return None
    return max((t1 - t0).total_seconds(), 0.0)


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if obj is None:
            return None
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj


def job_outcome(job: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(SUCCEEDED|FAILED|None, reason, message) from a Job's conditions."""
    for cond in _get(job, "status", "conditions") or []:
        if _get(cond, "status") != "True":
            continue
        kind = _get(cond, "type")
        if kind == "Complete":
            return SUCCEEDED, None, None
        if kind == "Failed":
            return FAILED, _get(cond, "reason"), _get(cond, "message")
    if _get(job, "status", "succeeded"):
        return SUCCEEDED, None, None
    return None, None, None


def pod_problem(pod: dict[str, Any]) -> tuple[str | None, str | None, bool]:
    """(reason, message, fatal) for a pod that is stuck or failed; fatal means fail the trial now."""
    status = _get(pod, "status") or {}
    for cs in _get(status, "containerStatuses") or []:
        waiting = _get(cs, "state", "waiting")
        if waiting and _get(waiting, "reason") in FATAL_WAITING:
            return _get(waiting, "reason"), _get(waiting, "message"), True
        term = _get(cs, "state", "terminated") or _get(cs, "lastState", "terminated")
        if term and _get(term, "exitCode"):
            code = _get(term, "exitCode")
            reason = _get(term, "reason") or "Error"
            if reason == "OOMKilled":
                return "OOMKilled", f"the container ran out of memory (exit code {code}); raise resources.memory", False
            return "Error", f"exit code {code}", False
    for cond in _get(status, "conditions") or []:
        if _get(cond, "type") == "PodScheduled" and _get(cond, "status") == "False" and _get(cond, "reason") == "Unschedulable":
            return "Unschedulable", _get(cond, "message"), False
        if _get(cond, "type") == "DisruptionTarget" and _get(cond, "status") == "True":
            return _get(cond, "reason") or "Disrupted", _get(cond, "message"), False
    if _get(status, "reason") in ("NodeLost", "Evicted", "NodeAffinity", "Terminated"):
        return _get(status, "reason"), _get(status, "message"), False
    return None, None, False


def pod_lost(pod: dict[str, Any]) -> bool:
    """Evicted (DisruptionTarget) and being deleted, but not finished: on a node that stopped
    answering, such a pod stays so until the node returns or is removed."""
    if not _get(pod, "metadata", "deletionTimestamp") or pod_phase(pod) in ("Succeeded", "Failed"):
        return False
    return any(_get(c, "type") == "DisruptionTarget" and _get(c, "status") == "True"
               for c in _get(pod, "status", "conditions") or [])


def pod_controller_uid(pod: dict[str, Any]) -> str | None:
    labels = _get(pod, "metadata", "labels") or {}
    return labels.get("batch.kubernetes.io/controller-uid") or labels.get("controller-uid")


def pod_phase(pod: dict[str, Any]) -> str:
    return _get(pod, "status", "phase") or "Pending"


def pod_node(pod: dict[str, Any]) -> str | None:
    return _get(pod, "spec", "nodeName")
