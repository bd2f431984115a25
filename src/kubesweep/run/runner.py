"""Run a rendered sweep on the cluster: submit, watch, collect, stop early, resume.

The client may die at any moment; the cluster and the journal carry the state:

- a trial's Job name is derived from its parameters, so creating it twice is impossible: a
  second create is answered 409 AlreadyExists and the trial is re-attached instead;
- Jobs that exist are found with one label selector, results already read are in
  results/<experiment>/trials.jsonl — so a rerun skips finished trials, re-attaches running
  ones and submits only the rest;
- one watch on the experiment's pods and one on its Jobs drive everything; nothing polls per Job.
  (The one read that is repeated is optional: with ``progress``, the live view's running trials
  have their log's tail read every ``PROGRESS_EVERY_S`` for their metric so far.)

At most ``batchSize`` trials are in flight. By default a freed slot is refilled with the next
trial at once (``refill="trial"``); ``refill="batch"`` waits for the whole batch directory,
which is what applying batch directories one by one means.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Protocol

from kubesweep.run import journal
from kubesweep.k8s import client as kube
from kubesweep.plan import job as manifest
from kubesweep.plan import provenance
from kubesweep.run import submit
from kubesweep.errors import KubesweepError
from kubesweep.run.metrics import read_metric, read_objective
from kubesweep.plan.planner import Plan
from .trialstate import (CANCELLED, FAILED, FINAL, PENDING, RUNNING, SUBMITTED, SUCCEEDED, TrialRecord, job_outcome,
                         pod_controller_uid, pod_lost, pod_node, pod_phase, pod_problem)

# A trial whose pod was evicted from a lost node is submitted again this long after the pod's
# own grace period ran out without it stopping (a node that answers stops it within the period).
NODE_LOSS_MARGIN_S = 10.0

CANCELLED_MESSAGE = "the experiment was cancelled (invoke cancel) before this trial finished"

# A running trial's metric so far: how often its log's tail is read, and how many lines of it.
# Only for the trials that a live view shows (Progress.wanted), on a thread of its own, so that
# collecting finished trials never waits behind it; a read that fails is skipped, not retried.
PROGRESS_EVERY_S = 10.0
PROGRESS_TAIL_LINES = 200


class Progress(Protocol):
    """Who shows running trials' metric so far (the live view)."""

    def wanted(self) -> list[str]:
        """The trials whose metric so far is worth a log read now (those on screen)."""

    def seen(self, name: str, value: float | None) -> None:
        """The metric's last value in the trial's log so far (None: not printed yet)."""


class SweepError(KubesweepError):
    pass


def _cancel_mark(job: dict[str, Any]) -> str | None:
    """The mark `invoke cancel` put on a Job (lifecycle.cancel), if any."""
    return (job["metadata"].get("annotations") or {}).get(manifest.A_CANCELLED)


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Outcome:
    records: dict[str, TrialRecord]
    stopped: str | None  # None, "goal", "max-failed", "cancelled"
    seconds: float
    created: int = 0
    attached: int = 0
    events: list[str] = field(default_factory=list)


def _slim(meta: dict[str, Any]) -> dict[str, Any]:
    """The metadata the sweep reads from a deleted pod or Job: which trial, which Job, whether
    cancelled. Kept for every object watched, so without the rest (managed fields above all)."""
    return {k: meta[k] for k in ("name", "uid", "labels", "annotations", "ownerReferences") if k in meta}


class Watcher:
    """One watch per resource kind on the experiment's label selector, feeding a queue.

    Events are parsed as plain JSON (kube.watch), not into the generated models: at thousands
    of trials the model round trip was most of the client's CPU.
    """

    PATHS = {"pod": "/api/v1/namespaces/{ns}/pods", "job": "/apis/batch/v1/namespaces/{ns}/jobs"}
    # An event that ended a wait on the socket is followed by a pause of GATHER_S[kind], so that
    # the next read finds the events of that time together instead of waking both this thread and
    # the event loop once per event: on this VM each wake-up cost more CPU than parsing the event.
    # Events already buffered (a burst) are passed on without pausing. A pod's events free and
    # fill slots (a trial is collected when its pod succeeds), so that watch pauses briefly. A
    # Job's events only tell of failures, deletions and its uid, which cost no slot time when
    # seen a second later, and they are half of all events (the Job controller's status updates).
    GATHER_S = {"pod": 0.1, "job": 1.0}
    WAITED_S = 0.002

    def __init__(self, c: kube.Clients, namespace: str, selector: str, out: queue.Queue):
        self.c, self.ns, self.selector, self.out = c, namespace, selector, out
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        # kind -> object name -> what a DELETED event of it needs of its metadata (``_slim``), as
        # last seen; each kind's own thread keeps its map. A relist compares with it to tell which
        # objects were deleted while the watch was away.
        self.known: dict[str, dict[str, dict[str, Any]]] = {"pod": {}, "job": {}}

    def start(self, pods: dict[str, Any], jobs: dict[str, Any]) -> None:
        """Watch from the versions of these two lists (the sweep's own, just read)."""
        for kind, listed in (("pod", pods), ("job", jobs)):
            self.known[kind] = {o["metadata"]["name"]: _slim(o["metadata"]) for o in listed.get("items") or []}
            t = threading.Thread(target=self._run, args=(kind, listed["metadata"]["resourceVersion"]),
                                 daemon=True, name=f"watch-{kind}")
            t.start()
            self.threads.append(t)

    def _relist(self, kind: str, path: str) -> str:
        """After 410 Gone: every object again as MODIFIED, each one deleted meanwhile as DELETED first
        (with its metadata as last seen: a relist shows only what exists, and a trial whose Job
        vanished unseen would hold its slot for good), and the version to watch from."""
        listed = kube.request(self.c, "GET", path, query={"labelSelector": self.selector})
        items = listed.get("items") or []
        now_there = {o["metadata"]["name"]: _slim(o["metadata"]) for o in items}
        for name, meta in self.known[kind].items():
            if (now_there.get(name) or {}).get("uid") != meta.get("uid"):  # gone, or made again since
                self.out.put((kind, "DELETED", {"metadata": meta}))
        self.known[kind] = now_there
        for item in items:
            self.out.put((kind, "MODIFIED", item))
        return listed["metadata"]["resourceVersion"]

    def _run(self, kind: str, rv: str) -> None:
        from kubernetes.client.exceptions import ApiException

        path = self.PATHS[kind].format(ns=self.ns)
        while not self.stop.is_set():
            try:
                before = time.monotonic()
                for ev in kube.watch(self.c, path, {"labelSelector": self.selector, "resourceVersion": rv}):
                    if self.stop.is_set():
                        break
                    etype, obj = ev.get("type"), ev.get("object") or {}
                    if etype == "ERROR":  # a Status; 410: our version is too old, relist and carry on
                        if obj.get("code") == 410:
                            rv = self._relist(kind, path)
                        else:
                            time.sleep(1)
                        break
                    meta = obj.get("metadata") or {}
                    rv = meta.get("resourceVersion", rv)
                    if etype != "BOOKMARK":
                        if etype == "DELETED":
                            self.known[kind].pop(meta.get("name"), None)
                        else:
                            self.known[kind][meta.get("name")] = _slim(meta)
                        self.out.put((kind, etype, obj))
                    after = time.monotonic()
                    if after - before > self.WAITED_S:
                        self.stop.wait(self.GATHER_S[kind])
                        after = time.monotonic()
                    before = after
            except ApiException as exc:
                if exc.status == 410:
                    rv = self._relist(kind, path)
                else:
                    time.sleep(1)
            except Exception:  # noqa: BLE001 - connection drops: reconnect
                time.sleep(1)

    def close(self) -> None:
        self.stop.set()


class Sweep:
    def __init__(self, plan: Plan, jobs_dir: Path, results_dir: Path, *, kubeconfig: str | Path | None = None,
                 context: str | None = None, apply: str = "direct", refill: str = "trial",
                 retry_failed: bool = False, on_change: Callable[[TrialRecord], None] | None = None,
                 on_resume: Callable[[list[TrialRecord]], None] | None = None,
                 progress: Progress | None = None, stop_after: Callable[[], bool] | None = None):
        self.plan = plan
        self.exp = plan.experiment
        self.jobs_dir = Path(jobs_dir) / self.exp.name
        self.results_dir = Path(results_dir) / self.exp.name
        self.kubeconfig = kubeconfig
        self.context = context
        self.apply = apply
        self.refill = refill
        self.pending_timeout = float(self.exp.unschedulable_seconds)
        self.retry_failed = retry_failed
        self.on_change = on_change or (lambda r: None)
        self.on_resume = on_resume or (lambda recs: None)  # the trials earlier runs finished, once at the start
        self.progress = progress
        self._progress_due = 0.0
        self._progress_reading: set[str] = set()  # a tail read for it is on its way
        self._progress_pool: ThreadPoolExecutor | None = None
        self.stop_after = stop_after
        self.records = {t.name: TrialRecord(t.name, manifest.batch_name(t.batch), dict(t.params)) for t in plan.trials}
        self.order = [t.name for t in plan.trials]
        self._trials = {t.name: t for t in plan.trials}
        self._template: manifest.JobTemplate | None = None  # made on the first submit
        self.pods: dict[str, dict[str, Any]] = {}
        self.pending_since: dict[str, float] = {}
        self.job_uid: dict[str, str] = {}
        self.lost_since: dict[str, tuple[float, float]] = {}  # trial -> (since, grace period)
        self.retrying: set[str] = set()
        self.stale_uids: set[str] = set()  # Jobs deleted for a retry: their pods may linger
        self.node_loss_retries = 0
        self.events: queue.Queue = queue.Queue()
        self.selector = f"{manifest.L_EXPERIMENT}={self.exp.name}"
        self.c: kube.Clients | None = None
        # Bookkeeping kept up to date on every state change, so that nothing in the event loop
        # walks all trials (at thousands of trials that walk was the client's CPU):
        self.collecting: set[str] = set()  # finished; its log is being read off the event loop
        self._inflight: set[str] = set()   # submitted or running, holding a slot
        self._sending: set[str] = set()    # their creates sent, not yet answered
        self._failed = 0
        self._goal_hit = False
        self._cancel_seen = False          # a Job marked by `invoke cancel` came through the watch
        self._old_marks: dict[str, str] = {}  # Job -> its cancel mark when this sweep started
        self._next = 0                     # index into self.order: no PENDING trial before it...
        self._requeued: list[str] = []     # ...except these, put back in line (node loss)
        self._log_pool: ThreadPoolExecutor | None = None
        self._submit_pool: ThreadPoolExecutor | None = None
        self._closing = threading.Event()  # the sweep is ending: log reads stop retrying

    # ------------------------------------------------------------------ bookkeeping
    def _set(self, rec: TrialRecord, **changes: Any) -> None:
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
        if rec.state == SUCCEEDED and self._meets_goal(rec):
            self._goal_hit = True

    def _reindex(self) -> None:
        """Recount after records were set directly (resume)."""
        self._inflight = {n for n, r in self.records.items() if r.state in (SUBMITTED, RUNNING) and n not in self.collecting}
        self._failed = sum(r.state == FAILED for r in self.records.values())
        self._goal_hit = any(r.state == SUCCEEDED and self._meets_goal(r) for r in self.records.values())
        self._next, self._requeued = 0, []

    def in_flight(self) -> list[TrialRecord]:
        """Trials holding a slot: submitted or running, not yet finished."""
        return [self.records[n] for n in self._inflight]

    def holding(self) -> tuple[int, int]:
        """(running, waiting): the trials that hold a place on the cluster or wait for one,
        counting creates sent and not yet answered (what an interrupt leaves there)."""
        flying = self.in_flight()
        running = sum(r.state == RUNNING for r in flying)
        return running, len(flying) - running + len(self._sending - {r.name for r in flying})

    def _has_pending(self) -> bool:
        while self._next < len(self.order) and self.records[self.order[self._next]].state != PENDING:
            self._next += 1
        return self._next < len(self.order) or any(self.records[n].state == PENDING for n in self._requeued)

    def _take_pending(self, limit: int, one_batch: bool) -> list[TrialRecord]:
        """Up to ``limit`` trials waiting to run, in plan order (one batch directory at most)."""
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
        out = {s: 0 for s in (PENDING, SUBMITTED, RUNNING, SUCCEEDED, FAILED, CANCELLED)}
        for r in self.records.values():
            out[r.state] += 1
        return out

    # ------------------------------------------------------------------ submission
    def _manifest(self, rec: TrialRecord) -> dict[str, Any]:
        """The rendered Job as written (and validated) by render. It goes to the API server as
        JSON: the server parses JSON in less CPU than YAML, and on a small control plane that is
        what bounds the create rate (bench/submit.py).

        The file is what is sent. Parsing it with PyYAML cost about 1.2 ms of client CPU per
        trial, so when it holds exactly the bytes render writes for this trial (the usual case:
        a sweep renders before it runs), the same data is built directly instead (about 40 µs;
        tests/test_manifest.py holds the parsed file and the built Job equal). A file edited by
        hand is parsed, and sent, as it is."""
        data = (self.jobs_dir / rec.batch / f"{rec.name}.yaml").read_bytes()
        trial = self._trials.get(rec.name)
        if trial is not None:
            if self._template is None:
                self._template = manifest.JobTemplate(self.exp, image=self.plan.image)
            if data == self._template.render(trial).encode():
                return manifest.build_job(self.exp, trial, image=self.plan.image)
        return manifest.load(data)

    def _submit(self, c: kube.Clients, recs: list[TrialRecord]) -> tuple[int, int]:
        # Until the creates are answered these trials are PENDING here but may exist on the
        # cluster: an interrupt in between counts them as waiting (holding()).
        self._sending = {r.name for r in recs}
        if self.apply == "ansible":
            from kubesweep.run import submit_ansible

            submit_ansible.apply([self.jobs_dir / r.batch / f"{r.name}.yaml" for r in recs], self.kubeconfig,
                                 context=self.context)
            result = dict.fromkeys((r.name for r in recs), True)
        else:
            result = submit.create_jobs(c, self.exp.namespace, [(r.name, self._manifest(r)) for r in recs],
                                        pool=self._submit_pool, stop=self._closing)
        for rec in recs:
            self._set(rec, state=SUBMITTED, attempt=rec.attempt + 1)
        self._sending = set()
        created = sum(result.values())
        return created, len(result) - created

    # ------------------------------------------------------------------ events
    def _on_pod(self, kind: str, pod: dict[str, Any]) -> None:
        name = pod["metadata"].get("labels", {}).get(manifest.L_TRIAL)
        rec = self.records.get(name or "")
        if rec is None or rec.state in FINAL or name in self.collecting:
            return
        uid = pod_controller_uid(pod)
        if uid and (uid in self.stale_uids or self.job_uid.get(name, uid) != uid):
            return  # a pod of an earlier Job of this trial (left on a lost node)
        if kind == "DELETED":
            if self.pods.get(name, {}).get("metadata", {}).get("name") == pod["metadata"]["name"]:
                self.pods.pop(name, None)
            return
        if pod_lost(pod):
            grace = float((pod.get("spec") or {}).get("terminationGracePeriodSeconds") or 30)
            if name not in self.lost_since:
                self.lost_since[name] = (time.monotonic(), grace)
                self._set(rec, reason="NodeLost", message=f"evicted from node {pod_node(pod)}, which stopped answering; "
                                                          f"the trial is submitted again if the pod does not stop within {grace + NODE_LOSS_MARGIN_S:.0f}s")
            return
        self.lost_since.pop(name, None)
        self.pods[name] = pod
        node = pod_node(pod) or rec.node
        phase = pod_phase(pod)
        reason, message, fatal = pod_problem(pod)
        if phase == "Running" and rec.state != RUNNING:
            started = (pod.get("status") or {}).get("startTime") or now()
            self._set(rec, state=RUNNING, node=node, start=rec.start or started, reason=None, message=None)
        elif node != rec.node:
            self._set(rec, node=node)
        if reason and (reason, message) != (rec.reason, rec.message):
            self._set(rec, reason=reason, message=message)
        if reason == "Unschedulable":
            self.pending_since.setdefault(name, time.monotonic())
        else:
            self.pending_since.pop(name, None)
        if fatal:
            self._finish(rec, FAILED, reason, message, delete=True)
        elif phase == "Succeeded" and rec.state in (SUBMITTED, RUNNING) and self._log_pool is not None:
            # One container, completions 1: the pod's success is the Job's. Reading the result now,
            # instead of after the Job controller's status update, frees the slot a second or more
            # sooner; the Job's own Complete event then finds the trial already collected.
            status = pod.get("status") or {}
            finished = [((cs.get("state") or {}).get("terminated") or {}).get("finishedAt")
                        for cs in status.get("containerStatuses") or []]
            self._set(rec, start=rec.start or status.get("startTime"), end=next((f for f in finished if f), None) or now())
            self._collect(rec, SUCCEEDED, None, None)

    def _on_job(self, c: kube.Clients, kind: str, job: dict[str, Any]) -> None:
        name = job["metadata"]["name"]
        rec = self.records.get(name)
        if rec is None or rec.state in FINAL or name in self.collecting:
            return
        if kind == "DELETED":
            if self.job_uid.get(name) not in (None, job["metadata"].get("uid")):
                return  # an earlier Job of this trial
            self.job_uid.pop(name, None)
            by_cancel = bool(_cancel_mark(job))
            if name in self.retrying:  # deleted by us after its node was lost: submit it again
                self.retrying.discard(name)
                self.stale_uids.add(job["metadata"].get("uid", ""))
                self.pods.pop(name, None)
                self._set(rec, state=PENDING, reason="NodeLost",
                          message=f"node {rec.node} was lost; the trial was submitted again (attempt {rec.attempt + 1})")
                return
            if rec.state in (SUBMITTED, RUNNING):
                if by_cancel:
                    self._finish(rec, CANCELLED, "Cancelled", CANCELLED_MESSAGE)
                else:
                    self._finish(rec, CANCELLED, "Deleted", "the Job was deleted before it finished")
            return
        self.job_uid[name] = job["metadata"].get("uid", "")
        outcome, reason, message = job_outcome(job)
        if outcome is None:
            return
        status = job.get("status") or {}
        start = rec.start or status.get("startTime")
        end = status.get("completionTime") or now()
        self._set(rec, start=start, end=end)
        self._collect(rec, outcome, reason, message)

    def _cancelled_now(self, job: dict[str, Any]) -> bool:
        """Whether the Job carries a cancel mark made while this sweep runs. A mark it already had
        when the sweep started (a rerun while an earlier cancel's deletes were under way, or after
        one that failed part way) is not a cancel of this run: the rerun resumes."""
        mark = _cancel_mark(job)
        return bool(mark) and self._old_marks.get(job["metadata"]["name"]) != mark

    def _collect(self, rec: TrialRecord, outcome: str, reason: str | None, message: str | None) -> None:
        """Read the finished trial's log on the log pool; the event loop goes on filling slots
        and records the result when ("collected", ...) comes back through the queue."""
        name = rec.name
        self.collecting.add(name)
        self._inflight.discard(name)
        c, pool = self.c, self._log_pool
        assert c is not None and pool is not None
        fut = pool.submit(self._log, c, name)

        def done(f: Any) -> None:
            if not f.cancelled():  # cancelled when the sweep is stopping: the next run collects it again
                self.events.put(("collected", name, (outcome, reason, message, *f.result())))

        fut.add_done_callback(done)

    def _collected(self, name: str, outcome: str, reason: str | None, message: str | None, log: str,
                   log_error: str | None = None) -> None:
        self.collecting.discard(name)
        rec = self.records[name]
        if rec.state in FINAL:
            return
        if outcome == SUCCEEDED and log_error:  # not MetricMissing: what it printed is unknown
            self._finish(rec, FAILED, "LogUnavailable",
                         f"the trial succeeded, but its log could not be read ({log_error}); `invoke logs {name}` "
                         "reads it while the pod exists, `invoke sweep --retry-failed` runs the trial again")
        elif outcome == SUCCEEDED:
            metrics = read_objective(log, self.exp.objective)
            if metrics.get(self.exp.objective.metric) is None:
                tail = "\n".join(log.splitlines()[-5:])
                self._finish(rec, FAILED, "MetricMissing",
                             f"the trial succeeded but never printed {self.exp.objective.metric!r}; last lines:\n{tail}",
                             metrics=metrics)
            else:
                self._finish(rec, SUCCEEDED, None, None, metrics=metrics)
        else:
            pod_reason, pod_message, _ = pod_problem(self.pods.get(name, {}))
            detail = pod_message or message
            if log_error:
                detail = f"{detail}; its log could not be read ({log_error})"
            elif pod_reason in ("Error", "OOMKilled") or reason == "BackoffLimitExceeded":
                tail = "\n".join(log.splitlines()[-10:])
                detail = f"{pod_message or message}; last lines:\n{tail}" if tail else (pod_message or message)
            self._finish(rec, FAILED, pod_reason if pod_reason in ("Error", "OOMKilled") else (reason or pod_reason), detail,
                         metrics=read_objective(log, self.exp.objective) if log else {})

    def _log(self, c: kube.Clients, name: str) -> tuple[str, str | None]:
        """The trial's log and, when it could not be read, why. No pod, a 404 or a 400 is no log
        (an empty one); a failure that may pass (the node's kubelet or the API server restarting)
        is tried again for up to kube.OUTAGE_S, unless the sweep is ending; any other refusal (a
        Role without pods/log) is a reason the log could not be read, not an empty log."""
        from kubernetes.client.exceptions import ApiException

        def read() -> str:
            pod = self.pods.get(name)
            if pod is None:
                items = kube.request(c, "GET", Watcher.PATHS["pod"].format(ns=self.exp.namespace),
                                     query={"labelSelector": f"job-name={name}"}).get("items") or []
                if not items:
                    return ""
                pod = items[-1]
            return kube.pod_log(c, self.exp.namespace, pod["metadata"]["name"], manifest.CONTAINER, timeout=15)

        try:
            return kube.patiently(read, c=c, stop=self._closing), None
        except ApiException as exc:
            if exc.status in (400, 404):
                return "", None  # the pod, and its log, are gone (404), or it never started (400)
            return "", f"{exc.status} {exc.reason}: {(exc.body or '').strip()[:300]}"
        except Exception as exc:  # noqa: BLE001 - no connection, a timeout, past the retries
            return "", f"{type(exc).__name__}: {str(exc)[:300]}"

    def _read_progress(self, c: kube.Clients) -> None:
        """Start a tail read for each running trial that the progress listener wants and that has
        none on its way; each comes back through the event queue as ("progress", trial, text)."""
        assert self.progress is not None and self._progress_pool is not None
        for name in self.progress.wanted():
            rec, pod = self.records.get(name), self.pods.get(name)
            if rec is None or rec.state != RUNNING or pod is None or name in self._progress_reading:
                continue
            self._progress_reading.add(name)
            fut = self._progress_pool.submit(self._tail, c, pod["metadata"]["name"])

            def done(f: Any, name: str = name) -> None:
                self.events.put(("progress", name, None if f.cancelled() else f.result()))

            fut.add_done_callback(done)

    def _tail(self, c: kube.Clients, pod: str) -> str | None:
        try:
            return kube.pod_log(c, self.exp.namespace, pod, manifest.CONTAINER, tail=PROGRESS_TAIL_LINES, timeout=5)
        except Exception:  # noqa: BLE001 - best effort: the next round reads it again
            return None

    def _progressed(self, name: str, text: str | None) -> None:
        self._progress_reading.discard(name)
        rec = self.records.get(name)
        if self.progress is None or text is None or rec is None or rec.state != RUNNING:
            return  # finished meanwhile: its collected metric is what counts
        self.progress.seen(name, read_metric(text, self.exp.objective.metric, self.exp.objective.regex))

    def _finish(self, rec: TrialRecord, state: str, reason: str | None, message: str | None, *,
                metrics: dict[str, float | None] | None = None, delete: bool = False) -> None:
        self._set(rec, state=state, reason=reason, message=message, end=rec.end or now(),
                  metrics=metrics if metrics is not None else rec.metrics)
        self.pending_since.pop(rec.name, None)
        self.lost_since.pop(rec.name, None)
        if rec.node:
            # A trial that held a node let go of it: the trials waiting for a place are queued
            # behind the sweep, not refused by the cluster, so their clocks start again.
            restart = time.monotonic()
            self.pending_since.update(dict.fromkeys(self.pending_since, restart))
        self.pods.pop(rec.name, None)  # a finished trial's pod is not looked at again
        journal.append(self.results_dir, rec.as_dict())
        if delete:
            self._delete.append(rec.name)

    # ------------------------------------------------------------------ stopping
    def _meets_goal(self, rec: TrialRecord) -> bool:
        o = self.exp.objective
        v = (rec.metrics or {}).get(o.metric)
        return o.goal is not None and v is not None and (v >= o.goal if o.direction == "maximize" else v <= o.goal)

    def _goal_reached(self) -> bool:
        return self._goal_hit

    def _too_many_failures(self) -> bool:
        limit = self.exp.max_failed_trials
        return limit is not None and self._failed + self.node_loss_retries > limit

    def _delete_jobs(self, c: kube.Clients, names: list[str]) -> None:
        from kubernetes.client.exceptions import ApiException

        for name in names:
            try:
                kube.patiently(lambda n=name: c.batch.delete_namespaced_job(n, self.exp.namespace,
                                                                            propagation_policy="Background"),
                               c=c, stop=self._closing)
            except ApiException as exc:
                if exc.status != 404:
                    raise

    # ------------------------------------------------------------------ main loop
    def run(self) -> Outcome:
        started = time.monotonic()
        c = self.c = kube.clients(self.kubeconfig, self.context)
        self._delete: list[str] = []
        done = journal.load(self.results_dir)
        kept = provenance.kept(done, self.retry_failed)
        failed = set(done) - set(kept)  # run again (--retry-failed)
        ns = self.exp.namespace
        # Nothing is written before both checks: trials that ran with another image, command or
        # resources must not be taken for this grid's (provenance.py).
        template = manifest.trial_template(self.exp, self.plan.image)
        provenance.check_results(self.results_dir, self.exp.name, template, kept)
        jobs = kube.request(c, "GET", Watcher.PATHS["job"].format(ns=ns), query={"labelSelector": self.selector})
        provenance.check_jobs([j for j in jobs.get("items") or [] if j["metadata"]["name"] not in failed], self.exp.name,
                              manifest.template_digest(self.exp, self.plan.image), self.plan.image)
        kube.ensure_namespace(c, ns, self.exp.service_account)
        provenance.keep(self.results_dir, template, len(kept))
        if failed:
            retried = sorted(failed & set(self.records))
            self._delete_jobs(c, retried)
            journal.forget(self.results_dir, failed)
            done = kept
            if retried:  # the listing above still has them
                jobs = kube.request(c, "GET", Watcher.PATHS["job"].format(ns=ns), query={"labelSelector": self.selector})
        for name, rec in done.items():
            if name in self.records:
                r = self.records[name]
                for key in ("state", "node", "start", "end", "metrics", "reason", "message", "attempt"):
                    setattr(r, key, rec.get(key, getattr(r, key)))
        self._reindex()
        self.on_resume([r for r in self.records.values() if r.state in FINAL])

        self._log_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="log")
        self._submit_pool = ThreadPoolExecutor(max_workers=submit.WORKERS, thread_name_prefix="submit")
        if self.progress is not None:
            self._progress_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="progress")
        pods = kube.request(c, "GET", Watcher.PATHS["pod"].format(ns=ns), query={"labelSelector": self.selector})
        attached = 0
        for job in jobs.get("items") or []:  # before the pods: a pod of an earlier Job of a trial is told apart by uid
            self.job_uid[job["metadata"]["name"]] = job["metadata"]["uid"]
            mark = _cancel_mark(job)
            if mark:
                self._old_marks[job["metadata"]["name"]] = mark
        for pod in pods.get("items") or []:
            self._on_pod("ADDED", pod)
        for job in jobs.get("items") or []:
            rec = self.records.get(job["metadata"]["name"])
            if rec is not None and rec.state == PENDING:
                rec.state = SUBMITTED
                attached += 1
        self._reindex()
        for pod in pods.get("items") or []:  # now that attached trials are SUBMITTED, let running pods mark them
            self._on_pod("MODIFIED", pod)
        for job in jobs.get("items") or []:
            self._on_job(c, "MODIFIED", job)

        watcher = Watcher(c, ns, self.selector, self.events)
        watcher.start(pods, jobs)
        stopped: str | None = None
        created = 0
        try:
            while True:
                if stopped is None:
                    if self._goal_reached():
                        stopped = "goal"
                    elif self._too_many_failures():
                        stopped = "max-failed"
                    elif self._cancel_seen or (self.stop_after is not None and self.stop_after()):
                        stopped = "cancelled"
                    if stopped:
                        self._cancel_pending(c, running_too=stopped != "goal", cancelled=stopped == "cancelled")
                if stopped is None:
                    created += self._fill(c)
                if self._delete:
                    names, self._delete = self._delete, []
                    self._delete_jobs(c, names)
                for name, (since, grace) in list(self.lost_since.items()):
                    if time.monotonic() - since > grace + NODE_LOSS_MARGIN_S and self.records[name].state not in FINAL:
                        del self.lost_since[name]
                        self.retrying.add(name)
                        self.node_loss_retries += 1
                        self._delete_jobs(c, [name])
                for name, since in list(self.pending_since.items()):
                    rec = self.records[name]
                    if rec.state not in FINAL and time.monotonic() - since > self.pending_timeout:
                        self._finish(rec, FAILED, "Unschedulable", rec.message, delete=True)
                if not self._inflight and not self.collecting and not self.retrying and (
                        stopped or not self._has_pending()):
                    break
                if self._progress_pool is not None and time.monotonic() >= self._progress_due:
                    self._progress_due = time.monotonic() + PROGRESS_EVERY_S
                    self._read_progress(c)
                try:
                    kind, etype, obj = self.events.get(timeout=0.5)
                except queue.Empty:
                    continue
                while True:
                    if kind == "pod":
                        self._on_pod(etype, obj)
                    elif kind == "job":
                        self._cancel_seen = self._cancel_seen or self._cancelled_now(obj)
                        self._on_job(c, etype, obj)
                    elif kind == "progress":  # etype is the trial, obj its log's tail (None: unread)
                        self._progressed(etype, obj)
                    else:  # "collected": etype is the trial, obj what its log said
                        self._collected(etype, *obj)
                    try:
                        kind, etype, obj = self.events.get_nowait()
                    except queue.Empty:
                        break
        finally:
            watcher.close()
            self._closing.set()
            self._log_pool.shutdown(wait=True, cancel_futures=True)
            self._submit_pool.shutdown(wait=True, cancel_futures=True)
            if self._progress_pool is not None:
                self._progress_pool.shutdown(wait=True, cancel_futures=True)
        return Outcome(self.records, stopped, time.monotonic() - started, created, attached)

    def _fill(self, c: kube.Clients) -> int:
        free = self.exp.batch_size - len(self._inflight)
        if free <= 0 or (self.refill == "batch" and (self._inflight or self.collecting)):
            return 0
        pending = self._take_pending(free, one_batch=self.refill == "batch")
        if not pending:
            return 0
        created, _ = self._submit(c, pending)
        return created

    def _cancel_pending(self, c: kube.Clients, running_too: bool, cancelled: bool = False) -> None:
        reason, message = ("Cancelled", CANCELLED_MESSAGE) if cancelled else (
            "Stopped", "the experiment stopped before this trial ran")
        names = []
        for name in sorted(self._inflight):
            rec = self.records[name]
            if rec.state == SUBMITTED or (running_too and rec.state == RUNNING):
                names.append(rec.name)
                self._finish(rec, CANCELLED, reason, message)
        self._delete_jobs(c, names)
