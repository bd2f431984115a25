"""Run a rendered sweep on the cluster: submit, watch, collect, stop early, resume.

The client may die at any moment; the cluster and the journal carry the state:

- a trial's Job name is derived from its parameters, so creating it twice is impossible: a
  second create is answered 409 AlreadyExists and the trial is re-attached instead;
- Jobs that exist are found with one label selector, results already read are in
  results/<experiment>/trials.jsonl — so a rerun skips finished trials, re-attaches running
  ones and submits only the rest;
- one watch on the experiment's pods and one on its Jobs drive everything (watcher.py); nothing
  polls per Job. (The one read that is repeated: running trials' logs are read as they grow —
  only what is new each time — every earlyStopping.intervalSeconds for early stopping, and every
  ``PROGRESS_EVERY_S`` for the live view's running trials, for their metric so far.)

With earlyStopping, each running trial's intermediate values go to the pruner (pruning.py); a
trial it stops is journaled Pruned and its Job deleted at once. Pruned is final: a rerun keeps it.

At most ``batchSize`` trials are in flight. By default a freed slot is refilled with the next
trial at once (``refill="trial"``); ``refill="batch"`` waits for the whole batch directory,
which is what applying batch directories one by one means.

Through Kueue (the sweep's ``queue``, kueue.py), the Jobs are created suspended and Kueue admits
them: a trial waits as submitted with Kueue's reason and place in line, and one Kueue evicts
(preemption, a deactivated Workload) goes back to waiting in the queue — not a failure, and the
same Job, so nothing is created twice. batchSize is then only a cap on the Jobs that exist, and
without one in the sweep file Kueue's quotas alone decide (policy.in_flight_cap).

The parts: the trial book (book.py) holds every record and count; the watcher turns the watches
into typed events (events.py); the collector reads logs off the loop and ``judge`` says what a
finished trial's log means (collector.py); the stop rules and per-trial clocks are policy.py.
``Sweep`` only orchestrates them.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Protocol

from kubesweep.k8s import client as kube
from kubesweep.plan import job as manifest
from kubesweep.plan import provenance
from kubesweep.plan.planner import Plan
from kubesweep.errors import KubesweepError
from kubesweep.run import admission, journal, kueue, policy, submit
from kubesweep.run.book import TrialBook
from kubesweep.run.collector import Collector, judge
from kubesweep.run.events import (CreateFailed, Event, JobChanged, LogFollowed, LogRead, PodChanged, WatchRefused,
                                  WorkloadChanged)
from kubesweep.run.metrics import CurveReader, curve_metrics, read_curves
from kubesweep.run.trialstate import (CANCELLED, FAILED, FINAL, PENDING, PRUNED, RUNNING, SUBMITTED, SUCCEEDED,
                                      TrialRecord, job_outcome, pod_controller_uid, pod_lost, pod_node, pod_phase,
                                      pod_problem)
from kubesweep.run.watcher import Watcher

CANCELLED_MESSAGE = "the experiment was cancelled (kubesweep cancel) before this trial finished"

# How often the live view's running trials have their log's tail read for their metric so far.
# Only for the trials that a live view shows (Progress.wanted), on a thread of its own, so that
# collecting finished trials never waits behind it; a read that fails is skipped, not retried.
PROGRESS_EVERY_S = 10.0

# A Job create refused because the namespace's quota is full (count/jobs.batch) is tried again
# after this long, or as soon as one of the sweep's trials finishes and frees its share.
QUOTA_RETRY_S = 10.0
WAITING_QUOTA = "waiting: quota"

# How often a sweep through Kueue asks for its queued trials' places in line (the visibility API).
QUEUE_POSITIONS_EVERY_S = 10.0


class Progress(Protocol):
    """Who shows running trials' metric so far (the live view)."""

    def wanted(self) -> list[str]:
        """The trials whose metric so far is worth a log read now (those on screen)."""

    def seen(self, name: str, value: float | None, step: float | None = None) -> None:
        """The metric's last value in the trial's log so far (None: not printed yet), and the step
        of that report when the log numbers its reports."""


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Outcome:
    """One run of the loop: the records, why it stopped early (None, "goal", "max-failed",
    "cancelled"), how long it took, and how many Jobs it created and re-attached."""

    records: dict[str, TrialRecord]
    stopped: str | None
    seconds: float
    created: int = 0
    attached: int = 0


class Sweep:
    def __init__(self, plan: Plan, jobs_dir: Path, results_dir: Path, *, kubeconfig: str | Path | None = None,
                 context: str | None = None, apply: str = "direct", refill: str = "trial",
                 retry_failed: bool = False, on_change: Callable[[TrialRecord], None] | None = None,
                 on_resume: Callable[[list[TrialRecord]], None] | None = None,
                 progress: Progress | None = None, stop_after: Callable[[], bool] | None = None,
                 notice: Callable[[str], None] | None = None):
        self.plan = plan
        self.exp = plan.experiment
        self.jobs_dir = Path(jobs_dir) / self.exp.name
        self.results_dir = Path(results_dir) / self.exp.name
        self.kubeconfig, self.context = kubeconfig, context
        self.apply, self.refill, self.retry_failed = apply, refill, retry_failed
        self.on_resume = on_resume or (lambda recs: None)  # the trials earlier runs finished, once at the start
        self.progress = progress
        self.stop_after = stop_after
        self.notice = notice or (lambda text: None)  # what the admission dry run has to say
        self.quota_wait_until = 0.0                 # creates held back by a full quota until then
        self.book = TrialBook(plan.trials, self.exp.objective, on_change)
        self.records, self.order = self.book.records, self.book.order
        self.manifests = submit.Manifests(plan, self.jobs_dir)
        self.clocks = policy.Clocks(float(self.exp.unschedulable_seconds))
        self.cancels = policy.CancelWatch([])
        self.pods: dict[str, dict[str, Any]] = {}  # trial -> its pod as last watched
        self.job_uid: dict[str, str] = {}
        self.retrying: set[str] = set()             # Jobs deleted after their node was lost
        self.stale_uids: set[str] = set()           # ...whose pods may linger
        self.node_loss_retries = 0
        self.events: queue.Queue[Event] = queue.Queue()
        self.selector = f"{manifest.L_EXPERIMENT}={self.exp.name}"
        self.collector: Collector | None = None     # made by run(), with the clients
        self.pruning: Any = None                    # pruning.Pruning, made at resume with earlyStopping
        self.curves: dict[str, CurveReader] = {}    # running trial -> its intermediate values so far
        self.curve_pod: dict[str, str] = {}         # ...read from this pod's log
        self.closing = threading.Event()            # the sweep is ending: log reads stop retrying
        self.sending: set[str] = set()              # creates sent, not yet answered
        self.to_delete: list[str] = []
        self._submit_pool: ThreadPoolExecutor | None = None
        self._progress_due = 0.0
        self._prune_due = 0.0
        # Kueue (only with a queue): why each trial waits there, its Workload, Jobs held suspended,
        # pods of runs Kueue evicted (their last events are not the trial's), places in line
        self.queue_why: dict[str, tuple[str, str]] = {}
        self.workload_of: dict[str, str] = {}       # trial -> its Workload's name
        self.suspended: set[str] = set()            # Jobs whose latest event shows them suspended
        self.admitted: set[str] = set()             # ...and those it shows unsuspended (admitted)
        self.evicted_pods: set[str] = set()
        self.evictions = 0
        self.places: dict[str, kueue.Position] = {}  # Workload name -> place
        self._places_due = 0.0
        self._places: Any = None                     # the read under way (a Future)

    # ---------------------------------------------------------------- what a front end asks
    def in_flight(self) -> list[TrialRecord]:
        return self.book.in_flight()

    def holding(self) -> tuple[int, int]:
        """(running, waiting) trials on the cluster: what an interrupt leaves there."""
        return self.book.holding(self.sending)

    def counts(self) -> dict[str, int]:
        return self.book.counts()

    # ---------------------------------------------------------------- submission
    def manifest(self, rec: TrialRecord) -> dict[str, Any]:
        """The trial's Job as it is sent: its file, as render wrote it or as edited (submit.Manifests)."""
        return self.manifests.job(rec.batch, rec.name)

    def _submit(self, c: kube.Clients, recs: list[TrialRecord]) -> int:
        # Until the creates are answered these trials are PENDING here but may exist on the
        # cluster: an interrupt in between counts them as waiting (holding()).
        self.sending = {r.name for r in recs}
        if self.apply == "ansible":
            from kubesweep.run import submit_ansible

            submit_ansible.apply([self.manifests.path(r.batch, r.name) for r in recs], self.kubeconfig,
                                 context=self.context)
            result = dict.fromkeys((r.name for r in recs), True)
        else:
            result = submit.create_jobs(c, self.exp.namespace, [(r.name, self.manifest(r)) for r in recs],
                                        pool=self._submit_pool, stop=self.closing)
        held = 0
        for rec in recs:
            outcome = result.get(rec.name)
            if isinstance(outcome, str):  # the quota is full: the trial waits in line, not failed
                held += 1
                self.book.requeue(rec, reason=WAITING_QUOTA, message=outcome)
            else:
                self.book.set(rec, state=SUBMITTED, attempt=rec.attempt + 1, reason=None, message=None)
        if held:
            self.quota_wait_until = time.monotonic() + QUOTA_RETRY_S
        self.sending = set()
        return sum(v is True for v in result.values())

    def _fill(self, c: kube.Clients) -> int:
        if time.monotonic() < self.quota_wait_until:
            return 0
        free = policy.in_flight_cap(self.exp, self.refill) - len(self.book.in_flight_names())
        if free <= 0 or (self.refill == "batch" and self.book.busy()):
            return 0
        pending = self.book.take_pending(free, one_batch=self.refill == "batch")
        return self._submit(c, pending) if pending else 0

    # ---------------------------------------------------------------- events
    def handle(self, ev: Event) -> None:
        """Apply one event to the trials."""
        if isinstance(ev, PodChanged):
            self._on_pod(ev.change, ev.pod)
        elif isinstance(ev, JobChanged):
            self.cancels.check(ev.job)
            self._on_job(ev.change, ev.job)
        elif isinstance(ev, LogRead):
            self._on_log(ev)
        elif isinstance(ev, LogFollowed):
            self._on_followed(ev)
        elif isinstance(ev, CreateFailed):
            self._on_create_failed(ev)
        elif isinstance(ev, WorkloadChanged):
            self._on_workload(ev.change, ev.workload)
        elif isinstance(ev, WatchRefused):
            raise KubesweepError(f"{self.exp.name}: cannot watch its {ev.what}, so the sweep stops (its trials in flight "
                                 f"go on; the same command resumes once this is allowed): {ev.message}")

    def _on_create_failed(self, ev: CreateFailed) -> None:
        """The Job controller could not make a trial's pod. A full quota: the trial waits (its
        Job holds its place, the controller retries). An admission refusal of the pod (PodSecurity,
        LimitRange, a webhook): it would be refused every time, so the trial fails with the reason.
        Anything else is shown and waited out."""
        rec = self.records.get(ev.job)
        if rec is None or rec.state != SUBMITTED or not ev.uid or self.job_uid.get(ev.job) != ev.uid:
            # Not ours, finished, running after all, or of an earlier Job of that name (events outlive
            # their Jobs by an hour). One that came before its Job's watch event is not lost: the
            # controller keeps failing and the event is updated (MODIFIED) each time.
            return
        if admission.quota_exceeded(ev.message):
            self.book.set(rec, reason=WAITING_QUOTA, message=ev.message)
        elif " is forbidden: " in ev.message:
            self._finish(rec, FAILED, "FailedCreate", ev.message, delete=True)
        else:
            self.book.set(rec, reason="FailedCreate", message=ev.message)

    def _on_pod(self, change: str, pod: dict[str, Any]) -> None:
        name = pod["metadata"].get("labels", {}).get(manifest.L_TRIAL)
        rec = self.records.get(name or "")
        if rec is None or rec.state in FINAL or name in self.book.collecting:
            return
        uid = pod_controller_uid(pod)
        if uid and (uid in self.stale_uids or self.job_uid.get(name, uid) != uid):
            return  # a pod of an earlier Job of this trial (left on a lost node)
        if pod["metadata"]["name"] in self.evicted_pods or (
                name in self.suspended and pod["metadata"].get("deletionTimestamp") and change != "DELETED"):
            if change == "DELETED":
                self.evicted_pods.discard(pod["metadata"]["name"])
            return  # a run Kueue evicted, ending: the trial waits in the queue again
        if change == "DELETED":
            if self.pods.get(name, {}).get("metadata", {}).get("name") == pod["metadata"]["name"]:
                self.pods.pop(name, None)
            return
        if pod_lost(pod):
            grace = float((pod.get("spec") or {}).get("terminationGracePeriodSeconds") or 30)
            if self.clocks.lost(name, time.monotonic(), grace):
                self.book.set(rec, reason="NodeLost", message=(
                    f"evicted from node {pod_node(pod)}, which stopped answering; the trial is submitted again if "
                    f"the pod does not stop within {grace + policy.NODE_LOSS_MARGIN_S:.0f}s"))
            return
        self.clocks.found(name)
        self.pods[name] = pod
        node = pod_node(pod) or rec.node
        phase = pod_phase(pod)
        reason, message, fatal = pod_problem(pod)
        if phase == "Running" and rec.state != RUNNING:
            started = (pod.get("status") or {}).get("startTime") or now()
            self.book.set(rec, state=RUNNING, node=node, start=rec.start or started, reason=None, message=None)
        elif node != rec.node:
            self.book.set(rec, node=node)
        if reason and (reason, message) != (rec.reason, rec.message):
            self.book.set(rec, reason=reason, message=message)
        if reason == "Unschedulable":
            self.clocks.unschedulable(name, time.monotonic())
        else:
            self.clocks.placed(name)
        if fatal:
            self._finish(rec, FAILED, reason, message, delete=True)
        elif phase == "Succeeded" and rec.state in (SUBMITTED, RUNNING) and self.collector is not None:
            # One container, completions 1: the pod's success is the Job's. Reading the result now,
            # instead of after the Job controller's status update, frees the slot a second or more
            # sooner; the Job's own Complete event then finds the trial already collected.
            status = pod.get("status") or {}
            finished = [((cs.get("state") or {}).get("terminated") or {}).get("finishedAt")
                        for cs in status.get("containerStatuses") or []]
            self.book.set(rec, start=rec.start or status.get("startTime"), end=next((f for f in finished if f), None) or now())
            self._collect(rec, SUCCEEDED, None, None)

    def _on_job(self, change: str, job: dict[str, Any]) -> None:
        name = job["metadata"]["name"]
        rec = self.records.get(name)
        if rec is None or rec.state in FINAL or name in self.book.collecting:
            return
        if change == "DELETED":
            if self.job_uid.get(name) not in (None, job["metadata"].get("uid")):
                return  # an earlier Job of this trial
            self.job_uid.pop(name, None)
            if name in self.retrying:  # deleted by us after its node was lost: submit it again
                self.retrying.discard(name)
                self.stale_uids.add(job["metadata"].get("uid", ""))
                self.pods.pop(name, None)
                self.book.set(rec, state=PENDING, reason="NodeLost",
                              message=f"node {rec.node} was lost; the trial was submitted again (attempt {rec.attempt + 1})")
            elif rec.state in (SUBMITTED, RUNNING):
                if policy.cancel_mark(job):
                    self._finish(rec, CANCELLED, "Cancelled", CANCELLED_MESSAGE)
                else:
                    self._finish(rec, CANCELLED, "Deleted", "the Job was deleted before it finished")
            return
        self.job_uid[name] = job["metadata"].get("uid", "")
        if self.exp.queue and kueue.suspended(job):
            # An eviction is the Job suspended again after its own stream showed it admitted: a
            # suspended Job event that merely arrives after the pod was seen running (the two
            # watches are not ordered with each other) is the Job as it was before admission.
            evicted = name in self.admitted
            self.suspended.add(name)
            self.admitted.discard(name)
            if evicted and rec.state == RUNNING:
                self._evicted(rec)
        else:
            self.suspended.discard(name)
            self.admitted.add(name)
        outcome, reason, message = job_outcome(job)
        if outcome is None:
            return
        status = job.get("status") or {}
        self.book.set(rec, start=rec.start or status.get("startTime"), end=status.get("completionTime") or now())
        self._collect(rec, outcome, reason, message)

    # ---------------------------------------------------------------- Kueue
    def _on_workload(self, change: str, workload: dict[str, Any]) -> None:
        name = kueue.owner_job(workload)
        rec = self.records.get(name or "")
        if rec is None or name is None:
            return  # another Job's Workload (they carry no kubesweep labels)
        wl_name = workload["metadata"]["name"]
        if change == "DELETED":
            if self.workload_of.get(name) == wl_name:  # not a newer Workload of the same Job
                del self.workload_of[name]
                self.queue_why.pop(name, None)
            return
        self.workload_of[name] = wl_name
        why = kueue.waiting(workload)
        if why is None:
            self.queue_why.pop(name, None)
        else:
            self.queue_why[name] = why
        self._show_queued(rec)

    def _show_queued(self, rec: TrialRecord) -> None:
        """A waiting trial's reason: Kueue's, with its place in line; cleared once admitted."""
        if rec.state != SUBMITTED or rec.name in self.book.collecting:
            return
        why = self.queue_why.get(rec.name)
        if why is None:
            if rec.reason in (kueue.QUEUED, kueue.EVICTED):
                self.book.set(rec, reason=None, message=None)
            return
        place = self.places.get(self.workload_of.get(rec.name, ""))
        message = kueue.described(why, place)
        if (rec.reason, rec.message) != (why[0], message):
            self.book.set(rec, reason=why[0], message=message)

    def _evicted(self, rec: TrialRecord) -> None:
        """Kueue suspended a running trial's Job (preempted, deactivated): its pod is being
        stopped and the trial waits in the queue again, on the same Job. Not a failure; the
        next run starts over, so its clocks, curve so far and start are reset."""
        pod = self.pods.pop(rec.name, None)
        if pod is not None:
            self.evicted_pods.add(pod["metadata"]["name"])
        self.curves.pop(rec.name, None)
        self.curve_pod.pop(rec.name, None)
        self.clocks.placed(rec.name)
        self.clocks.found(rec.name)
        self.evictions += 1
        why = self.queue_why.get(rec.name)
        message = why[1] if why and why[0] == kueue.EVICTED else "evicted by Kueue: its Job was suspended again"
        self.book.set(rec, state=SUBMITTED, node=None, start=None, reason=kueue.EVICTED,
                      message=f"{message}; it waits in queue {self.exp.queue} to run again")

    def _queue_places(self, c: kube.Clients) -> None:
        """Every QUEUE_POSITIONS_EVERY_S, the queued trials' places in line, read off the loop."""
        if not self.exp.queue or self._submit_pool is None:
            return
        if self._places is not None and self._places.done():
            try:
                self.places = self._places.result()
            except Exception:  # noqa: BLE001 - a detail: kept as it was
                pass
            self._places = None
            for name in list(self.queue_why):
                if (rec := self.records.get(name)) is not None:
                    self._show_queued(rec)
        at = time.monotonic()
        if self._places is None and at >= self._places_due and self.queue_why:
            self._places_due = at + QUEUE_POSITIONS_EVERY_S
            self._places = self._submit_pool.submit(kueue.positions, c, self.exp.namespace, self.exp.queue)

    def _collect(self, rec: TrialRecord, outcome: str, reason: str | None, message: str | None) -> None:
        self.book.collect(rec.name)  # its slot is free while the log is read
        assert self.collector is not None
        self.collector.collect(rec.name, outcome, reason, message)

    def _on_log(self, ev: LogRead) -> None:
        self.book.collected(ev.trial)
        rec = self.records[ev.trial]
        if rec.state in FINAL:
            return
        state, reason, message, metrics = judge(self.exp.objective, ev.trial, ev.outcome, ev.reason, ev.message, ev.log,
                                                ev.log_error, self.pods.get(ev.trial, {}))
        if ev.log:
            o = self.exp.objective
            self.book.set(rec, curves=read_curves(ev.log, curve_metrics(self.exp), o.regex, o.step).curves())
        self._finish(rec, state, reason, message, metrics=metrics)

    def _on_followed(self, ev: LogFollowed) -> None:
        """New lines of a running trial's log: its curves grow, the live view hears of its metric so
        far, and the pruner judges it."""
        assert self.collector is not None
        rec = self.records.get(ev.trial)
        running = rec is not None and rec.state == RUNNING and ev.trial not in self.book.collecting
        self.collector.followed(ev.trial, finished=not running)
        if not running or ev.text is None:
            return  # finished meanwhile: its whole log, read at collection, is what counts
        assert rec is not None
        reader = self.curves.get(ev.trial)
        if reader is None or self.curve_pod.get(ev.trial) != ev.pod:  # a new pod (node loss): a new log
            o = self.exp.objective
            reader = self.curves[ev.trial] = CurveReader(curve_metrics(self.exp), o.regex, o.step)
            self.curve_pod[ev.trial] = ev.pod
        if not reader.feed(ev.text):
            return
        if self.progress is not None:
            last = reader.last(self.exp.objective.metric)
            self.progress.seen(ev.trial, *(last[::-1] if last else (None, None)))
        if self.pruning is not None:
            if reader.unnumbered.get(self.pruning.metric):  # only the judged metric's reports matter
                if rec.reason != "StepMissing":
                    self.book.set(rec, reason="StepMissing", message=(
                        f"it prints {self.pruning.metric!r} without the step key {self.exp.objective.step!r} "
                        "(objective.step), so early stopping cannot judge it; it runs to the end"))
                return
            why = self.pruning.check(ev.trial, reader.points.get(self.pruning.metric) or [])
            if why is not None:
                self._prune(rec, reader, why)

    def _prune(self, rec: TrialRecord, reader: CurveReader, why: str) -> None:
        metrics = {m: last[1] for m in (self.exp.objective.metric, *self.exp.objective.additional_metrics)
                   if (last := reader.last(m)) is not None}
        self.book.set(rec, end=now(), curves=reader.curves())
        self._finish(rec, PRUNED, "Pruned", why, metrics=metrics, delete=True)

    def _follow(self, everyone: bool) -> None:
        """A read of the new part of the log of each running trial: all of them for early
        stopping (``everyone``), else those the progress listener wants."""
        assert self.collector is not None
        names = self.book.in_flight_names() if everyone else (self.progress.wanted() if self.progress else [])
        for name in names:
            rec, pod = self.records.get(name), self.pods.get(name)
            if rec is not None and rec.state == RUNNING and pod is not None:
                self.collector.follow(name, pod["metadata"]["name"])

    def _finish(self, rec: TrialRecord, state: str, reason: str | None, message: str | None, *,
                metrics: dict[str, float | None] | None = None, delete: bool = False) -> None:
        reader = self.curves.pop(rec.name, None)
        self.curve_pod.pop(rec.name, None)
        if reader is not None and not rec.curves:  # no whole log was read: the curves so far are kept
            rec.curves = reader.curves()
        self.book.set(rec, state=state, reason=reason, message=message, end=rec.end or now(),
                      metrics=metrics if metrics is not None else rec.metrics)
        if self.pruning is not None:
            self.pruning.finish(rec)
        self.clocks.forget(rec.name, time.monotonic(), freed_a_node=bool(rec.node))
        self.quota_wait_until = 0.0  # whatever it held of a quota is free: held creates may go now
        self.pods.pop(rec.name, None)  # a finished trial's pod is not looked at again
        journal.append(self.results_dir, rec.as_dict())
        if delete:
            self.to_delete.append(rec.name)

    # ---------------------------------------------------------------- the cluster
    def _delete_jobs(self, c: kube.Clients, names: list[str]) -> None:
        submit.delete_jobs(c, self.exp.namespace, names, self.closing)

    def _list(self, c: kube.Clients, resource: str) -> dict[str, Any]:
        return kube.request(c, "GET", kube.path(resource, self.exp.namespace), query={"labelSelector": self.selector})

    def _resume(self, c: kube.Clients) -> tuple[dict[str, Any], dict[str, Any], int]:
        """Check and take what earlier runs left (journal, Jobs, pods); return the Jobs and pods
        listed (the watches start from their versions) and how many trials were re-attached.
        Nothing is written before both checks: trials that ran with another image, command or
        resources must not be taken for this grid's (provenance.py)."""
        done = journal.load(self.results_dir)
        kept = provenance.kept(done, self.retry_failed)
        failed = set(done) - set(kept)  # run again (--retry-failed)
        template = manifest.trial_template(self.exp, self.plan.image)
        provenance.check_results(self.results_dir, self.exp.name, template, kept)
        jobs = self._list(c, "jobs")
        provenance.check_jobs([j for j in jobs.get("items") or [] if j["metadata"]["name"] not in failed], self.exp.name,
                              manifest.template_digest(self.exp, self.plan.image), self.plan.image)
        kube.prepare_namespace(c, self.exp.namespace, self.exp.service_account)
        provenance.keep(self.results_dir, template, len(kept))
        if failed:
            retried = sorted(failed & set(self.records))
            self._delete_jobs(c, retried)
            journal.forget(self.results_dir, failed)
            done = kept
            if retried:  # the listing above still has them
                jobs = self._list(c, "jobs")
        finished = self.book.restore(done)
        if self.exp.early_stopping is not None:
            from kubesweep.run.pruning import Pruning

            self.pruning = Pruning(self.exp, sorted(finished, key=lambda r: (r.end or "", r.name)))
        self.on_resume(finished)
        pods = self._list(c, "pods")
        items = jobs.get("items") or []
        self.cancels = policy.CancelWatch(items)
        for job in items:  # before the pods: a pod of an earlier Job of a trial is told apart by uid
            self.job_uid[job["metadata"]["name"]] = job["metadata"]["uid"]
        listed = {job["metadata"]["uid"] for job in items}
        for pod in pods.get("items") or []:  # a pod whose Job is gone (cancelled, or deleted for --retry-failed)
            uid = pod_controller_uid(pod)    # may still be terminating: it is not the trial's next run
            if uid and uid not in listed:
                self.stale_uids.add(uid)
        for pod in pods.get("items") or []:
            self._on_pod("ADDED", pod)
        attached = self.book.attach(job["metadata"]["name"] for job in items)
        # a trial pruned by a run killed before it deleted the Job: deleted now
        self.to_delete += [n for job in items if (rec := self.records.get(n := job["metadata"]["name"])) is not None
                           and rec.state == PRUNED and job_outcome(job)[0] is None]
        for pod in pods.get("items") or []:  # now that attached trials are SUBMITTED, let running pods mark them
            self._on_pod("MODIFIED", pod)
        for job in items:
            self._on_job("MODIFIED", job)
        return jobs, pods, attached

    # ---------------------------------------------------------------- main loop
    def run(self) -> Outcome:
        started = time.monotonic()
        c = kube.clients(self.kubeconfig, self.context)
        self.collector = Collector(c, self.exp.namespace, self.events, self.pods.get, self.closing,
                                   follow=self.progress is not None or self.exp.early_stopping is not None,
                                   container=manifest.metrics_container(self.exp))
        self._submit_pool = ThreadPoolExecutor(max_workers=submit.WORKERS, thread_name_prefix="submit")
        watcher = Watcher(c, self.exp.namespace, self.selector, self.events, workloads=bool(self.exp.queue))
        stopped: str | None = None
        created = 0
        try:
            jobs, pods, attached = self._resume(c)
            if self.book.has_pending() and self.apply == "direct":
                first = self.manifests.trials[self._first_pending().name]
                for note in admission.check(c, self.exp.namespace, manifest.build_job(self.exp, first, image=self.plan.image)):
                    self.notice(note)
            watcher.start(pods, jobs)
            while True:
                if stopped is None:
                    stopped = policy.stop_reason(self.book, self.exp.max_failed_trials, self.node_loss_retries,
                                                 self.cancels.seen or bool(self.stop_after and self.stop_after()))
                    if stopped:
                        self._cancel_pending(c, running_too=stopped != policy.GOAL,
                                             cancelled=stopped == policy.CANCELLED)
                    else:
                        created += self._fill(c)
                self._tick(c)
                self._queue_places(c)
                if not self.book.busy() and not self.retrying and (stopped or not self.book.has_pending()):
                    break
                self._read_logs()
                self._drain()
        finally:
            watcher.close()
            self.closing.set()
            self.collector.close()
            self._submit_pool.shutdown(wait=True, cancel_futures=True)
        return Outcome(self.records, stopped, time.monotonic() - started, created, attached)

    def _read_logs(self) -> None:
        """Running trials' new log lines, when due: every trial's for early stopping, else those
        the live view shows."""
        at = time.monotonic()
        if self.pruning is not None and self.exp.early_stopping is not None:
            if at >= self._prune_due:
                self._prune_due = at + float(self.exp.early_stopping.interval_seconds)
                self._follow(everyone=True)
        elif self.progress is not None and at >= self._progress_due:
            self._progress_due = at + PROGRESS_EVERY_S
            self._follow(everyone=False)

    def _first_pending(self) -> TrialRecord:
        return next(r for n in self.order if (r := self.records[n]).state == PENDING)

    def _tick(self, c: kube.Clients) -> None:
        """Deletes asked for, and the per-trial clocks: a lost node's trial is submitted again, one
        waiting Unschedulable too long fails."""
        if self.to_delete:
            names, self.to_delete = self.to_delete, []
            self._delete_jobs(c, names)
        waited, lost = self.clocks.overdue(time.monotonic())
        for name in lost:
            if self.records[name].state not in FINAL:
                self.retrying.add(name)
                self.node_loss_retries += 1
                self._delete_jobs(c, [name])
        for name in waited:
            rec = self.records[name]
            if rec.state not in FINAL:
                self._finish(rec, FAILED, "Unschedulable", rec.message, delete=True)

    def _drain(self) -> None:
        """Wait up to half a second for an event, then apply it and every one queued behind it."""
        try:
            ev = self.events.get(timeout=0.5)
        except queue.Empty:
            return
        while True:
            self.handle(ev)
            try:
                ev = self.events.get_nowait()
            except queue.Empty:
                return

    def _cancel_pending(self, c: kube.Clients, running_too: bool, cancelled: bool = False) -> None:
        reason, message = ("Cancelled", CANCELLED_MESSAGE) if cancelled else (
            "Stopped", "the experiment stopped before this trial ran")
        names = []
        for name in sorted(self.book.in_flight_names()):
            rec = self.records[name]
            if rec.state == SUBMITTED or (running_too and rec.state == RUNNING):
                names.append(rec.name)
                self._finish(rec, CANCELLED, reason, message)
        self._delete_jobs(c, names)
