"""Reading trials' logs off the event loop, and what a finished trial's log says about it.

``Collector`` reads a finished trial's whole log (and, for the live view, running trials' tails)
on thread pools of its own and puts the answer on the sweep's event queue (``LogRead``,
``TailRead``), so that the loop goes on filling slots meanwhile. ``judge`` turns a finished
trial's Job outcome, pod and log into its final state: pure, so every case is tested alone.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from kubesweep.k8s import client as kube
from kubesweep.plan import job as manifest
from kubesweep.run.events import LogRead, TailRead
from kubesweep.run.metrics import read_objective
from kubesweep.run.trialstate import FAILED, SUCCEEDED, pod_problem

# A running trial's metric so far: how many lines of its log's tail are read.
PROGRESS_TAIL_LINES = 200


def judge(objective: Any, name: str, outcome: str, reason: str | None, message: str | None, log: str,
          log_error: str | None, pod: dict[str, Any]) -> tuple[str, str | None, str | None, dict[str, float | None] | None]:
    """(state, reason, message, metrics) of a finished trial, from how its Job ended, its pod
    (possibly {}) and its log (or why the log could not be read)."""
    if outcome == SUCCEEDED and log_error:  # not MetricMissing: what it printed is unknown
        return (FAILED, "LogUnavailable",
                f"the trial succeeded, but its log could not be read ({log_error}); `kubesweep logs {name}` "
                "reads it while the pod exists, `kubesweep sweep --retry-failed` runs the trial again", None)
    if outcome == SUCCEEDED:
        metrics = read_objective(log, objective)
        if metrics.get(objective.metric) is None:
            tail = "\n".join(log.splitlines()[-5:])
            return (FAILED, "MetricMissing",
                    f"the trial succeeded but never printed {objective.metric!r}; last lines:\n{tail}", metrics)
        return SUCCEEDED, None, None, metrics
    pod_reason, pod_message, _ = pod_problem(pod)
    detail = pod_message or message
    if log_error:
        detail = f"{detail}; its log could not be read ({log_error})"
    elif pod_reason in ("Error", "OOMKilled") or reason == "BackoffLimitExceeded":
        tail = "\n".join(log.splitlines()[-10:])
        detail = f"{pod_message or message}; last lines:\n{tail}" if tail else (pod_message or message)
    return (FAILED, pod_reason if pod_reason in ("Error", "OOMKilled") else (reason or pod_reason), detail,
            read_objective(log, objective) if log else {})


class Collector:
    """Log reads for one sweep, answered through ``events``. ``pods`` gives a trial's pod as last
    watched (None: looked up by its Job's name); ``closing`` set means the sweep is ending, and
    reads stop retrying."""

    def __init__(self, c: kube.Clients, namespace: str, events: queue.Queue,
                 pods: Callable[[str], dict[str, Any] | None], closing: threading.Event, *, tails: bool = False):
        self.c, self.ns, self.events, self.pods, self.closing = c, namespace, events, pods, closing
        self.logs = ThreadPoolExecutor(max_workers=4, thread_name_prefix="log")
        self.tails = ThreadPoolExecutor(max_workers=1, thread_name_prefix="progress") if tails else None
        self.tailing: set[str] = set()  # a tail read for it is on its way

    def collect(self, name: str, outcome: str, reason: str | None, message: str | None) -> None:
        """Read the finished trial's log; a ``LogRead`` comes back through the queue (none when the
        sweep stops first: the next run collects the trial again)."""
        fut = self.logs.submit(self.read_log, name)

        def done(f: Any) -> None:
            if not f.cancelled():
                log, error = f.result()
                self.events.put(LogRead(name, outcome, reason, message, log, error))

        fut.add_done_callback(done)

    def read_log(self, name: str) -> tuple[str, str | None]:
        """The trial's log and, when it could not be read, why. No pod, a 404 or a 400 is no log
        (an empty one); a failure that may pass (the node's kubelet or the API server restarting)
        is tried again for up to kube.OUTAGE_S, unless the sweep is ending; any other refusal (a
        Role without pods/log) is a reason the log could not be read, not an empty log."""
        from kubernetes.client.exceptions import ApiException

        def read() -> str:
            pod = self.pods(name)
            if pod is None:
                items = kube.request(self.c, "GET", kube.path("pods", self.ns),
                                     query={"labelSelector": f"job-name={name}"}).get("items") or []
                if not items:
                    return ""
                pod = items[-1]
            return kube.pod_log(self.c, self.ns, pod["metadata"]["name"], manifest.CONTAINER, timeout=15)

        try:
            return kube.patiently(read, c=self.c, stop=self.closing), None
        except ApiException as exc:
            if exc.status in (400, 404):
                return "", None  # the pod, and its log, are gone (404), or it never started (400)
            return "", f"{exc.status} {exc.reason}: {(exc.body or '').strip()[:300]}"
        except Exception as exc:  # noqa: BLE001 - no connection, a timeout, past the retries
            return "", f"{type(exc).__name__}: {str(exc)[:300]}"

    def tail(self, name: str, pod: str) -> None:
        """Read a running trial's log tail unless one is on its way; a ``TailRead`` comes back."""
        if self.tails is None or name in self.tailing:
            return
        self.tailing.add(name)
        fut = self.tails.submit(self.read_tail, pod)

        def done(f: Any) -> None:
            self.events.put(TailRead(name, None if f.cancelled() else f.result()))

        fut.add_done_callback(done)

    def tailed(self, name: str) -> None:
        self.tailing.discard(name)

    def read_tail(self, pod: str) -> str | None:
        try:
            return kube.pod_log(self.c, self.ns, pod, manifest.CONTAINER, tail=PROGRESS_TAIL_LINES, timeout=5)
        except Exception:  # noqa: BLE001 - best effort: the next round reads it again
            return None

    def close(self) -> None:
        self.logs.shutdown(wait=True, cancel_futures=True)
        if self.tails is not None:
            self.tails.shutdown(wait=True, cancel_futures=True)
