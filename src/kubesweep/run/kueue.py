"""Sweeps through Kueue: which LocalQueue a sweep's Jobs go to, and what Kueue says about them.

When the sweep's namespace has a Kueue LocalQueue (or the sweep file names one with ``queue:``),
each trial's Job is created suspended and labelled ``kueue.x-k8s.io/queue-name`` (plan/job.py);
Kueue admits it (unsuspends it) when its ClusterQueue has quota, and may evict it again
(preemption, a deactivated Workload), which suspends the Job: the trial waits in the queue again
and is not failed. kubesweep's ``batchSize`` stays a cap on how many Jobs exist at once; which of
them run is Kueue's decision.

Kueue keeps its view of each Job in a Workload (owned by the Job): its conditions say why it waits
(``QuotaReserved`` False with Kueue's message: "couldn't assign flavors to pod set main:
insufficient unused quota for cpu in flavor default, 1 more needed") and why it was evicted
(``Evicted``: Preempted, InactiveWorkload, ...). The visibility API gives its position in the
LocalQueue and ClusterQueue. Everything here is read as plain JSON, and every read is best
effort: an identity that may not read Workloads or positions sees the trials as queued without
the detail.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kubesweep.errors import KubesweepError
from kubesweep.k8s import client as kube
from kubesweep.spec.model import QUEUE_LABEL

__all__ = ["QUEUE_LABEL", "Choice", "QueueMissing", "choose", "owner_job", "positions", "waiting", "workloads_by_job"]
#: The LocalQueue Kueue itself falls back to (its LocalQueueDefaulting feature) when a namespace has several.
DEFAULT_QUEUE = "default"
VISIBILITY = "/apis/visibility.kueue.x-k8s.io/v1beta2"

QUEUED, EVICTED = "Queued", "Evicted"


class QueueMissing(KubesweepError):
    """The sweep names a queue its namespace does not have (or the cluster has no Kueue)."""


@dataclass(frozen=True)
class Choice:
    """The LocalQueue a sweep's Jobs go to (None: none, Kueue does not see them) and what is worth saying."""

    queue: str | None
    note: str | None = None


def local_queues(c: kube.Clients, namespace: str) -> list[str] | None:
    """The LocalQueues of ``namespace``, by name; None when the cluster has no Kueue (the API is
    not served). A refusal (403) raises the ApiException: the caller decides what it means."""
    from kubernetes.client.exceptions import ApiException

    try:
        listed = kube.request(c, "GET", kube.path("localqueues", namespace), timeout=(10, 30))
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return sorted(item["metadata"]["name"] for item in listed.get("items") or [])


def choose(c: kube.Clients, namespace: str, named: str | None) -> Choice:
    """The queue of a sweep in ``namespace``: the one it names (which must exist), else the
    namespace's only LocalQueue, else its LocalQueue ``default``; none when the namespace has no
    LocalQueue or the cluster no Kueue. Several LocalQueues and none named ``default``: refused,
    naming them (a Job without a queue would pass Kueue's quotas by). An identity that may not list
    LocalQueues gets the queue it names, or none. Raises ``QueueMissing``."""
    from kubernetes.client.exceptions import ApiException

    try:
        queues = local_queues(c, namespace)
    except ApiException as exc:
        if exc.status in (401, 403):
            if named:  # cannot look: trust the file; Kueue itself says if it is wrong (the trials stay queued)
                return Choice(named, f"queue {named}: cannot check that namespace {namespace} has this LocalQueue "
                                     f"({kube.api_error(exc)}); the trials are sent to it as named")
            # Said nowhere: RBAC answers 403 before knowing whether Kueue is installed at all, so an
            # identity whose Role predates Kueue would hear it on every sweep of a cluster without one.
            # (Kueue itself still queues the Jobs of a namespace whose LocalQueue is named default.)
            return Choice(None)
        raise
    if queues is None:
        if named:
            raise QueueMissing(f"queue: {named}: this cluster has no Kueue (the LocalQueue API kueue.x-k8s.io/v1beta2 is "
                               "not served). Install it (the kueue role: ansible-playbook site.yml --tags kueue) or remove "
                               "queue: from the sweep file. Nothing was created.")
        return Choice(None)
    if named:
        if named not in queues:
            have = f"it has {', '.join(queues)}" if queues else "it has none"
            raise QueueMissing(f"queue: {named}: namespace {namespace} has no LocalQueue {named} ({have}). "
                               "Nothing was created.")
        return Choice(named)
    if not queues:
        return Choice(None)
    if len(queues) == 1:
        return Choice(queues[0], f"namespace {namespace} has Kueue LocalQueue {queues[0]}: the trials are queued there "
                                 "and Kueue admits them")
    if DEFAULT_QUEUE in queues:
        return Choice(DEFAULT_QUEUE, f"namespace {namespace} has LocalQueues {', '.join(queues)}: the trials go to "
                                     f"{DEFAULT_QUEUE} (name another with queue:)")
    raise QueueMissing(f"namespace {namespace} has LocalQueues {', '.join(queues)} and none named {DEFAULT_QUEUE}: "
                       "name the one the trials go to with queue: in the sweep file. Nothing was created.")


# ------------------------------------------------------------------------------- Workloads


def owner_job(workload: dict[str, Any]) -> str | None:
    """The name of the Job a Workload stands for (its controller owner), or None."""
    for ref in (workload.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("kind") == "Job" and str(ref.get("apiVersion", "")).startswith("batch/"):
            return ref.get("name")
    return None


def _condition(workload: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in (workload.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return None


def _true(cond: dict[str, Any] | None) -> bool:
    return bool(cond) and cond.get("status") == "True"  # type: ignore[union-attr]


def _words(text: Any) -> str:
    return " ".join(str(text or "").split())


def waiting(workload: dict[str, Any]) -> tuple[str, str] | None:
    """Why Kueue holds a Workload's Job: (``Evicted`` or ``Queued``, Kueue's own words), or None
    when it is admitted or finished."""
    if _true(_condition(workload, "Finished")):
        return None
    admitted, reserved = _condition(workload, "Admitted"), _condition(workload, "QuotaReserved")
    if _true(admitted):
        return None
    evicted = _condition(workload, "Evicted")
    if _true(evicted) and not _true(reserved):
        why = evicted.get("reason") or "evicted"  # type: ignore[union-attr]
        return EVICTED, f"evicted by Kueue ({why}): {_words(evicted.get('message'))}".rstrip(": ")  # type: ignore[union-attr]
    if not (workload.get("spec") or {}).get("active", True):
        return QUEUED, "its Kueue Workload is deactivated (spec.active: false): it is not admitted until reactivated"
    if _true(reserved):
        return QUEUED, "quota reserved; waiting for Kueue's admission checks"
    message = _words((reserved or {}).get("message")) or "waiting for Kueue to admit it"
    return QUEUED, message


@dataclass(frozen=True)
class Position:
    local: int  # 0 is next
    cluster: int
    queue: str

    def text(self) -> str:
        return f"position {self.local + 1} in LocalQueue {self.queue}, {self.cluster + 1} in its ClusterQueue"


def positions(c: kube.Clients, namespace: str, queue: str) -> dict[str, Position]:
    """Workload name -> its place in line (Kueue's visibility API). Empty when that API is not
    served or may not be read: a position is a detail, never a reason to stop."""
    try:
        listed = kube.request(c, "GET", f"{VISIBILITY}/namespaces/{namespace}/localqueues/{queue}/pendingworkloads",
                              timeout=(5, 15))
    except Exception:  # noqa: BLE001 - best effort (404: no visibility server; 403: not allowed)
        return {}
    out: dict[str, Position] = {}
    for item in listed.get("items") or []:
        name = (item.get("metadata") or {}).get("name")
        if name:
            out[name] = Position(int(item.get("positionInLocalQueue") or 0), int(item.get("positionInClusterQueue") or 0),
                                 queue)
    return out


def described(why: tuple[str, str], position: Position | None) -> str:
    """The message a queued trial shows: Kueue's words, with its place in line when known."""
    kind, message = why
    return f"{position.text()}: {message}" if position is not None and kind == QUEUED else message


def workloads_by_job(c: kube.Clients, namespaces: Iterable[str]) -> dict[tuple[str, str], dict[str, Any]]:
    """(namespace, Job name) -> its Workload, for ``status`` (one list per namespace; best effort)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for ns in sorted(set(namespaces)):
        try:
            items = kube.request(c, "GET", kube.path("workloads", ns)).get("items") or []
        except Exception:  # noqa: BLE001 - no Kueue, or may not read Workloads: the trials show as queued
            continue
        for wl in items:
            job = owner_job(wl)
            if job:
                out[(ns, job)] = wl
    return out


def suspended(job: dict[str, Any]) -> bool:
    return bool((job.get("spec") or {}).get("suspend"))


def queue_of(job: dict[str, Any]) -> str | None:
    return ((job.get("metadata") or {}).get("labels") or {}).get(QUEUE_LABEL)
