"""Reading trials' logs off the event loop, and what a finished trial's log says about it.

``Collector`` reads a finished trial's whole log, and running trials' logs as they grow (for
early stopping and the live view), on thread pools of its own and puts the answer on the sweep's
event queue (``LogRead``, ``LogFollowed``), so that the loop goes on filling slots meanwhile.
``judge`` turns a finished trial's Job outcome, pod and log into its final state: pure, so every
case is tested alone.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from calendar import timegm
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

from kubesweep.k8s import client as kube
from kubesweep.plan import job as manifest
from kubesweep.run.events import LogFollowed, LogRead
from kubesweep.run.metrics import read_objective
from kubesweep.run.trialstate import FAILED, SUCCEEDED, pod_problem

_STAMP = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)")


def stamp(text: str) -> tuple[int, int] | None:
    """(Unix seconds, nanoseconds) of an RFC 3339 time as the kubelet writes it, or None."""
    m = _STAMP.fullmatch(text)
    if m is None:
        return None
    y, mo, d, h, mi, sec, frac, zone = m.groups()
    seconds = timegm((int(y), int(mo), int(d), int(h), int(mi), int(sec)))
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return seconds, int((frac or "0").ljust(9, "0"))


@dataclass
class LogCursor:
    """How far a running trial's log has been read: the time of the last line read and how many
    lines carried exactly that time (lines written together share one)."""

    pod: str
    at: tuple[int, int] | None = None
    lines_at: int = 0

    def since(self) -> str | None:
        """The kubelet's sinceTime for the next read (whole seconds: it rereads part of a second)."""
        if self.at is None:
            return None
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.at[0]))

    def take(self, text: str) -> str:
        """The lines of a read (timestamped) that were not read before, without their times."""
        out: list[str] = []
        before, read_at = self.at, self.lines_at  # what earlier reads took
        again = 0
        for line in text.splitlines():
            head, _, rest = line.partition(" ")
            at = stamp(head)
            if at is None:  # not a timestamped line: kept as it is
                out.append(line)
                continue
            if before is not None and at <= before:
                again += at == before
                if at < before or again <= read_at:
                    continue
            if self.at is None or at > self.at:
                self.at, self.lines_at = at, 1
            elif at == self.at:
                self.lines_at += 1
            out.append(rest)
        return "".join(line + "\n" for line in out)


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
        if objective.metric is not None and metrics.get(objective.metric) is None:  # None: no metric asked
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
    reads stop retrying. ``container``: the container whose log holds the metrics
    (manifest.metrics_container: the trial's, or the sidecar that streams its metrics file)."""

    def __init__(self, c: kube.Clients, namespace: str, events: queue.Queue,
                 pods: Callable[[str], dict[str, Any] | None], closing: threading.Event, *, follow: bool = False,
                 container: str = manifest.CONTAINER):
        self.c, self.ns, self.events, self.pods, self.closing = c, namespace, events, pods, closing
        self.container = container
        self.logs = ThreadPoolExecutor(max_workers=4, thread_name_prefix="log")
        self.follows = ThreadPoolExecutor(max_workers=2, thread_name_prefix="follow") if follow else None
        self.following: set[str] = set()         # a read of its log is on its way
        self.cursors: dict[str, LogCursor] = {}  # trial -> how far its running pod's log was read

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
            return kube.pod_log(self.c, self.ns, pod["metadata"]["name"], self.container, timeout=15)

        try:
            return kube.patiently(read, c=self.c, stop=self.closing), None
        except ApiException as exc:
            if exc.status in (400, 404):
                return "", None  # the pod, and its log, are gone (404), or it never started (400)
            return "", f"{exc.status} {exc.reason}: {(exc.body or '').strip()[:300]}"
        except Exception as exc:  # noqa: BLE001 - no connection, a timeout, past the retries
            return "", f"{type(exc).__name__}: {str(exc)[:300]}"

    def follow(self, name: str, pod: str) -> None:
        """Read what a running trial's pod logged since the last read, unless a read is on its way;
        a ``LogFollowed`` comes back (text None: it could not be read this time)."""
        if self.follows is None or name in self.following:
            return
        cursor = self.cursors.get(name)
        if cursor is None or cursor.pod != pod:
            cursor = self.cursors[name] = LogCursor(pod)
        self.following.add(name)
        fut = self.follows.submit(self.read_new, cursor)

        def done(f: Any) -> None:
            self.events.put(LogFollowed(name, pod, None if f.cancelled() else f.result()))

        fut.add_done_callback(done)

    def followed(self, name: str, finished: bool = False) -> None:
        """The read's answer was taken; with ``finished``, the trial's cursor is dropped too."""
        self.following.discard(name)
        if finished:
            self.cursors.pop(name, None)

    def read_new(self, cursor: LogCursor) -> str | None:
        try:
            text = kube.pod_log(self.c, self.ns, cursor.pod, self.container, since_time=cursor.since(),
                                timestamps=True, timeout=15)
        except Exception:  # noqa: BLE001 - best effort: the next round reads it again
            return None
        return cursor.take(text)

    def close(self) -> None:
        self.logs.shutdown(wait=True, cancel_futures=True)
        if self.follows is not None:
            self.follows.shutdown(wait=True, cancel_futures=True)
