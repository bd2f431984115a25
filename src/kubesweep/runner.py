"""Run a rendered sweep on the cluster: submit, watch, collect, stop early, resume.

The client may die at any moment; the cluster and the journal carry the state:

- a trial's Job name is derived from its parameters, so creating it twice is impossible: a
  second create is answered 409 AlreadyExists and the trial is re-attached instead;
- Jobs that exist are found with one label selector, results already read are in
  results/<experiment>/trials.jsonl — so a rerun skips finished trials, re-attaches running
  ones and submits only the rest;
- one watch on the experiment's pods and one on its Jobs drive everything; nothing polls per Job.

At most ``batchSize`` trials are in flight. By default a freed slot is refilled with the next
trial at once (``refill="trial"``); ``refill="batch"`` waits for the whole batch directory,
which is what applying batch directories one by one means.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import yaml

from . import journal, kube, manifest
from .errors import KubesweepError
from .metrics import read_objective
from .render import Plan
from .trialstate import (CANCELLED, FAILED, FINAL, PENDING, RUNNING, SUBMITTED, SUCCEEDED, TrialRecord, job_outcome,
                         pod_controller_uid, pod_lost, pod_node, pod_phase, pod_problem)

# A trial whose pod was evicted from a lost node is submitted again this long after the pod's
# own grace period ran out without it stopping (a node that answers stops it within the period).
NODE_LOSS_MARGIN_S = 10.0

Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class SweepError(KubesweepError):
    pass


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


class Watcher:
    """One watch per resource kind on the experiment's label selector, feeding a queue."""

    def __init__(self, c: kube.Clients, namespace: str, selector: str, out: queue.Queue):
        self.c, self.ns, self.selector, self.out = c, namespace, selector, out
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self, pods_rv: str, jobs_rv: str) -> None:
        for kind, fn, rv in (("pod", self.c.core.list_namespaced_pod, pods_rv),
                             ("job", self.c.batch.list_namespaced_job, jobs_rv)):
            t = threading.Thread(target=self._run, args=(kind, fn, rv), daemon=True, name=f"watch-{kind}")
            t.start()
            self.threads.append(t)

    def _run(self, kind: str, fn: Callable[..., Any], rv: str) -> None:
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        while not self.stop.is_set():
            w = watch.Watch()
            try:
                for ev in w.stream(fn, self.ns, label_selector=self.selector, resource_version=rv,
                                   timeout_seconds=30, allow_watch_bookmarks=True):
                    if self.stop.is_set():
                        break
                    obj = self.c.plain(ev["object"])
                    rv = obj.get("metadata", {}).get("resourceVersion", rv)
                    if ev["type"] != "BOOKMARK":
                        self.out.put((kind, ev["type"], obj))
            except ApiException as exc:
                if exc.status == 410:  # too old: relist and carry on from the new version
                    listed = fn(self.ns, label_selector=self.selector)
                    rv = listed.metadata.resource_version
                    for item in listed.items:
                        self.out.put((kind, "MODIFIED", self.c.plain(item)))
                else:
                    time.sleep(1)
            except Exception:  # noqa: BLE001 - connection drops: reconnect
                time.sleep(1)
            finally:
                w.stop()

    def close(self) -> None:
        self.stop.set()


class Sweep:
    def __init__(self, plan: Plan, jobs_dir: Path, results_dir: Path, *, kubeconfig: Path | None = None,
                 apply: str = "direct", refill: str = "trial", pending_timeout: float = 600.0,
                 retry_failed: bool = False, on_change: Callable[[TrialRecord], None] | None = None,
                 stop_after: Callable[[], bool] | None = None):
        self.plan = plan
        self.exp = plan.experiment
        self.jobs_dir = Path(jobs_dir) / self.exp.name
        self.results_dir = Path(results_dir) / self.exp.name
        self.kubeconfig = kubeconfig
        self.apply = apply
        self.refill = refill
        self.pending_timeout = pending_timeout
        self.retry_failed = retry_failed
        self.on_change = on_change or (lambda r: None)
        self.stop_after = stop_after
        self.records = {t.name: TrialRecord(t.name, manifest.batch_name(t.batch), dict(t.params)) for t in plan.trials}
        self.order = [t.name for t in plan.trials]
        self.pods: dict[str, dict[str, Any]] = {}
        self.pending_since: dict[str, float] = {}
        self.job_uid: dict[str, str] = {}
        self.lost_since: dict[str, tuple[float, float]] = {}  # trial -> (since, grace period)
        self.retrying: set[str] = set()
        self.stale_uids: set[str] = set()  # Jobs deleted for a retry: their pods may linger
        self.node_loss_retries = 0
        self.events: queue.Queue = queue.Queue()
        self.selector = f"{manifest.L_EXPERIMENT}={self.exp.name}"

    # ------------------------------------------------------------------ bookkeeping
    def _set(self, rec: TrialRecord, **changes: Any) -> None:
        changed = any(getattr(rec, k) != v for k, v in changes.items())
        for k, v in changes.items():
            setattr(rec, k, v)
        if changed:
            self.on_change(rec)

    def in_flight(self) -> list[TrialRecord]:
        return [r for r in self.records.values() if r.state in (SUBMITTED, RUNNING)]

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in (PENDING, SUBMITTED, RUNNING, SUCCEEDED, FAILED, CANCELLED)}
        for r in self.records.values():
            out[r.state] += 1
        return out

    # ------------------------------------------------------------------ submission
    def _manifest(self, rec: TrialRecord) -> dict[str, Any]:
        path = self.jobs_dir / rec.batch / f"{rec.name}.yaml"
        return yaml.load(path.read_text(), Loader=Loader)

    def _submit(self, c: kube.Clients, recs: list[TrialRecord]) -> tuple[int, int]:
        if self.apply == "ansible":
            from . import submit_ansible

            submit_ansible.apply([self.jobs_dir / r.batch / f"{r.name}.yaml" for r in recs], self.kubeconfig)
            for rec in recs:
                self._set(rec, state=SUBMITTED, attempt=rec.attempt + 1)
            return len(recs), 0
        from .submit import create_jobs

        result = create_jobs(c.batch, self.exp.namespace, [self._manifest(r) for r in recs])
        for rec in recs:
            self._set(rec, state=SUBMITTED, attempt=rec.attempt + 1)
        created = sum(result.values())
        return created, len(result) - created

    # ------------------------------------------------------------------ events
    def _on_pod(self, kind: str, pod: dict[str, Any]) -> None:
        name = pod["metadata"].get("labels", {}).get(manifest.L_TRIAL)
        rec = self.records.get(name or "")
        if rec is None or rec.state in FINAL:
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

    def _on_job(self, c: kube.Clients, kind: str, job: dict[str, Any]) -> None:
        name = job["metadata"]["name"]
        rec = self.records.get(name)
        if rec is None or rec.state in FINAL:
            return
        if kind == "DELETED":
            if self.job_uid.get(name) not in (None, job["metadata"].get("uid")):
                return  # an earlier Job of this trial
            self.job_uid.pop(name, None)
            if name in self.retrying:  # deleted by us after its node was lost: submit it again
                self.retrying.discard(name)
                self.stale_uids.add(job["metadata"].get("uid", ""))
                self.pods.pop(name, None)
                self._set(rec, state=PENDING, reason="NodeLost",
                          message=f"node {rec.node} was lost; the trial was submitted again (attempt {rec.attempt + 1})")
                return
            if rec.state in (SUBMITTED, RUNNING):
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
        log = self._log(c, name)
        if outcome == SUCCEEDED:
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
            if pod_reason in ("Error", "OOMKilled") or reason == "BackoffLimitExceeded":
                tail = "\n".join(log.splitlines()[-10:])
                detail = f"{pod_message or message}; last lines:\n{tail}" if tail else (pod_message or message)
            self._finish(rec, FAILED, pod_reason if pod_reason in ("Error", "OOMKilled") else (reason or pod_reason), detail,
                         metrics=read_objective(log, self.exp.objective) if log else {})

    def _log(self, c: kube.Clients, name: str) -> str:
        from kubernetes.client.exceptions import ApiException

        pod = self.pods.get(name)
        try:
            if pod is None:
                items = c.core.list_namespaced_pod(self.exp.namespace, label_selector=f"job-name={name}").items
                if not items:
                    return ""
                pod = c.plain(items[-1])
            return c.core.read_namespaced_pod_log(pod["metadata"]["name"], self.exp.namespace, container=manifest.CONTAINER,
                                                  _request_timeout=15)
        except (ApiException, OSError, Exception):  # noqa: BLE001 - no log is a missing metric, not a crash
            return ""

    def _finish(self, rec: TrialRecord, state: str, reason: str | None, message: str | None, *,
                metrics: dict[str, float | None] | None = None, delete: bool = False) -> None:
        self._set(rec, state=state, reason=reason, message=message, end=rec.end or now(),
                  metrics=metrics if metrics is not None else rec.metrics)
        self.pending_since.pop(rec.name, None)
        self.lost_since.pop(rec.name, None)
        journal.append(self.results_dir, rec.as_dict())
        if delete:
            self._delete.append(rec.name)

    # ------------------------------------------------------------------ stopping
    def _goal_reached(self) -> bool:
        o = self.exp.objective
        if o.goal is None:
            return False
        for r in self.records.values():
            v = r.metrics.get(o.metric) if r.state == SUCCEEDED else None
            if v is not None and (v >= o.goal if o.direction == "maximize" else v <= o.goal):
                return True
        return False

    def _too_many_failures(self) -> bool:
        limit = self.exp.max_failed_trials
        failures = sum(r.state == FAILED for r in self.records.values()) + self.node_loss_retries
        return limit is not None and failures > limit

    def _delete_jobs(self, c: kube.Clients, names: list[str]) -> None:
        from kubernetes.client.exceptions import ApiException

        for name in names:
            try:
                c.batch.delete_namespaced_job(name, self.exp.namespace, propagation_policy="Background")
            except ApiException as exc:
                if exc.status != 404:
                    raise

    # ------------------------------------------------------------------ main loop
    def run(self) -> Outcome:
        started = time.monotonic()
        c = kube.clients(self.kubeconfig)
        kube.ensure_namespace(c, self.exp.namespace, self.exp.service_account)
        self._delete: list[str] = []
        done = journal.load(self.results_dir)
        if self.retry_failed:
            failed = {n for n, r in done.items() if r["state"] in (FAILED, CANCELLED)}
            self._delete_jobs(c, sorted(failed & set(self.records)))
            journal.forget(self.results_dir, failed)
            done = {n: r for n, r in done.items() if n not in failed}
        for name, rec in done.items():
            if name in self.records:
                r = self.records[name]
                for key in ("state", "node", "start", "end", "metrics", "reason", "message", "attempt"):
                    setattr(r, key, rec.get(key, getattr(r, key)))

        jobs = c.batch.list_namespaced_job(self.exp.namespace, label_selector=self.selector)
        pods = c.core.list_namespaced_pod(self.exp.namespace, label_selector=self.selector)
        attached = 0
        for job in jobs.items:  # before the pods: a pod of an earlier Job of a trial is told apart by uid
            self.job_uid[job.metadata.name] = job.metadata.uid
        for pod in pods.items:
            self._on_pod("ADDED", c.plain(pod))
        for job in jobs.items:
            rec = self.records.get(job.metadata.name)
            if rec is not None and rec.state == PENDING:
                rec.state = SUBMITTED
                attached += 1
        for pod in pods.items:  # now that attached trials are SUBMITTED, let running pods mark them
            self._on_pod("MODIFIED", c.plain(pod))
        for job in jobs.items:
            self._on_job(c, "MODIFIED", c.plain(job))

        watcher = Watcher(c, self.exp.namespace, self.selector, self.events)
        watcher.start(pods.metadata.resource_version, jobs.metadata.resource_version)
        stopped: str | None = None
        created = 0
        try:
            while True:
                if stopped is None:
                    if self._goal_reached():
                        stopped = "goal"
                    elif self._too_many_failures():
                        stopped = "max-failed"
                    elif self.stop_after is not None and self.stop_after():
                        stopped = "cancelled"
                    if stopped:
                        self._cancel_pending(c, running_too=stopped != "goal")
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
                if not self.in_flight() and not self.retrying and (
                        stopped or not any(r.state == PENDING for r in self.records.values())):
                    break
                try:
                    kind, etype, obj = self.events.get(timeout=0.5)
                except queue.Empty:
                    continue
                while True:
                    if kind == "pod":
                        self._on_pod(etype, obj)
                    else:
                        self._on_job(c, etype, obj)
                    try:
                        kind, etype, obj = self.events.get_nowait()
                    except queue.Empty:
                        break
        finally:
            watcher.close()
        return Outcome(self.records, stopped, time.monotonic() - started, created, attached)

    def _fill(self, c: kube.Clients) -> int:
        free = self.exp.batch_size - len(self.in_flight())
        if free <= 0:
            return 0
        pending = [self.records[n] for n in self.order if self.records[n].state == PENDING]
        if not pending:
            return 0
        if self.refill == "batch":
            if self.in_flight():
                return 0
            batch = pending[0].batch
            pending = [r for r in pending if r.batch == batch]
        created, _ = self._submit(c, pending[:free])
        return created

    def _cancel_pending(self, c: kube.Clients, running_too: bool) -> None:
        names = []
        for rec in self.records.values():
            if rec.state == SUBMITTED or (running_too and rec.state == RUNNING):
                names.append(rec.name)
                self._finish(rec, CANCELLED, "Stopped", "the experiment stopped before this trial ran")
        self._delete_jobs(c, names)
