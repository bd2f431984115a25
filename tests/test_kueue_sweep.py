"""Sweeps through Kueue without a cluster: which LocalQueue a sweep takes (against a stand-in API
server), what a Workload says, how the runner shows a queued trial and takes back an evicted one,
and the Job as rendered. tests/test_kueue_cluster.py runs the same paths on the real cluster."""

from __future__ import annotations

import textwrap

import pytest

from kubesweep.k8s import client as kube
from kubesweep.plan import job as manifest
from kubesweep.plan import planner as render
from kubesweep.run import kueue, lifecycle, runner
from kubesweep.run.events import JobChanged, PodChanged, WorkloadChanged
from kubesweep.run.trialstate import RUNNING, SUBMITTED
from kubesweep.errors import SpecError

from .fakeapi import serve

LQ_PATH = "/apis/kueue.x-k8s.io/v1beta2/namespaces/team-a/localqueues"


def _lq(*names: str) -> dict:
    return {"kind": "LocalQueueList", "items": [{"metadata": {"name": n, "namespace": "team-a"}} for n in names]}


def _choose(tmp_path, answer, named=None):
    with serve(answer, tmp_path / "kubeconfig"):
        return kueue.choose(kube.clients(str(tmp_path / "kubeconfig")), "team-a", named)


@pytest.mark.parametrize(("queues", "named", "queue", "note"), [
    (["only"], None, "only", "has Kueue LocalQueue only"),
    (["a", "default"], None, "default", "the trials go to default"),
    (["a", "b"], "b", "b", None),
    ([], None, None, None),
])
def test_a_sweep_takes_the_queue_named_or_its_namespace_s_own(tmp_path, queues, named, queue, note):
    def answer(method, path, body):
        assert (method, path.split("?")[0]) == ("GET", LQ_PATH)
        return 200, _lq(*queues)

    choice = _choose(tmp_path, answer, named)
    assert choice.queue == queue
    assert (choice.note is None) if note is None else (note in choice.note)


@pytest.mark.parametrize(("status", "queues", "named", "message"), [
    (200, ["a", "b"], None, "namespace team-a has LocalQueues a, b and none named default: name the one"),
    (200, ["a"], "b", "queue: b: namespace team-a has no LocalQueue b (it has a). Nothing was created."),
    (200, [], "b", "namespace team-a has no LocalQueue b (it has none)"),
    (404, [], "b", "queue: b: this cluster has no Kueue"),
])
def test_a_queue_that_is_not_there_is_refused_before_anything_is_created(tmp_path, status, queues, named, message):
    with pytest.raises(kueue.QueueMissing) as err:
        _choose(tmp_path, lambda m, p, b: (status, _lq(*queues) if status == 200 else {"kind": "Status", "code": 404}),
                named)
    assert message in str(err.value)


def test_no_kueue_and_no_queue_named_is_a_sweep_as_before(tmp_path):
    assert _choose(tmp_path, lambda m, p, b: (404, {"kind": "Status", "code": 404})) == kueue.Choice(None)


def test_an_identity_that_may_not_list_queues_sends_to_the_queue_named_or_to_none(tmp_path):
    denied = {"kind": "Status", "code": 403, "message": 'localqueues.kueue.x-k8s.io is forbidden: User "alice" cannot '
              'list resource "localqueues" in API group "kueue.x-k8s.io" in the namespace "team-a"'}
    named = _choose(tmp_path, lambda m, p, b: (403, denied) if "localqueues" in p else (200, {}), "q")
    assert named.queue == "q" and "cannot check" in named.note and "alice may not list localqueues" in named.note
    # unnamed: nothing said (RBAC refuses before it knows whether Kueue is there at all)
    assert _choose(tmp_path, lambda m, p, b: (403, denied) if "localqueues" in p else (200, {})) == kueue.Choice(None)


# ------------------------------------------------------------------------------ the sweep file


def _grid(tmp_path, extra: str = "queue: team-a-queue\n"):
    grid = tmp_path / "grid.yaml"
    grid.write_text(textwrap.dedent("""\
        name: q
        namespace: team-a
        image: localhost:5000/t:1
        command: [train, "${i}"]
        parameters: {i: [1, 2]}
        objective: {metric: acc}
        """) + extra)
    return grid


def test_a_queued_trial_s_job_is_created_suspended_with_the_queue_on_the_job_only(tmp_path):
    plan = render.plan(_grid(tmp_path))
    job = manifest.build_job(plan.experiment, plan.trials[0], image=plan.image)
    assert job["metadata"]["labels"][kueue.QUEUE_LABEL] == "team-a-queue" and job["spec"]["suspend"] is True
    assert kueue.QUEUE_LABEL not in job["spec"]["template"]["metadata"]["labels"]  # pods are not Kueue's to queue
    # the rendered file (the fast text template) says the same as the Job built in full
    text = manifest.JobTemplate(plan.experiment, image=plan.image).render(plan.trials[0])
    assert manifest.load(text) == job
    plain = render.plan(_grid(tmp_path, ""))
    assert "suspend" not in manifest.build_job(plain.experiment, plain.trials[0])["spec"]


@pytest.mark.parametrize(("extra", "where", "says"), [
    ("queue: Team_A\n", "grid.yaml:7:8", "queue must name a Kueue LocalQueue"),
    ("queue: " + "q" * 64 + "\n", "grid.yaml:7:8", "at most 63"),
    ("labels: {kueue.x-k8s.io/queue-name: x}\n", "grid.yaml:7:10", "name the Kueue queue with queue: instead"),
])
def test_a_bad_queue_is_refused_at_its_line(tmp_path, extra, where, says):
    with pytest.raises(SpecError) as err:
        render.plan(_grid(tmp_path, extra))
    assert f"{where}: " in str(err.value) and says in str(err.value)


# ------------------------------------------------------------------------------ Workloads


def _workload(job: str, *conditions: dict, active: bool = True, name: str | None = None) -> dict:
    return {"metadata": {"name": name or f"job-{job}-1a2b3", "namespace": "team-a",
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": job, "uid": "u"}]},
            "spec": {"active": active, "queueName": "team-a-queue"}, "status": {"conditions": list(conditions)}}


def _cond(kind: str, status: str, reason: str = "", message: str = "") -> dict:
    return {"type": kind, "status": status, "reason": reason, "message": message}


PENDING_MSG = "couldn't assign flavors to pod set main: insufficient unused quota for cpu in flavor default, 1 more needed"


def test_what_a_workload_says_about_its_job():
    assert kueue.owner_job(_workload("j1")) == "j1"
    assert kueue.waiting(_workload("j1")) == (kueue.QUEUED, "waiting for Kueue to admit it")
    assert kueue.waiting(_workload("j1", _cond("QuotaReserved", "False", "Pending", PENDING_MSG))) == (kueue.QUEUED, PENDING_MSG)
    assert kueue.waiting(_workload("j1", _cond("QuotaReserved", "True"), _cond("Admitted", "True"))) is None
    assert kueue.waiting(_workload("j1", _cond("QuotaReserved", "True"))) == (
        kueue.QUEUED, "quota reserved; waiting for Kueue's admission checks")
    evicted = _workload("j1", _cond("QuotaReserved", "False"), _cond("Evicted", "True", "Preempted", "Preempted to "
                                                                      "accommodate a workload in team-b"))
    assert kueue.waiting(evicted) == (kueue.EVICTED, "evicted by Kueue (Preempted): Preempted to accommodate a workload in team-b")
    assert "deactivated" in kueue.waiting(_workload("j1", active=False))[1]
    assert kueue.waiting(_workload("j1", _cond("Finished", "True"))) is None
    assert kueue.owner_job({"metadata": {"ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "p"}]}}) is None


def _pod(trial: str, name: str, phase: str = "Running") -> dict:
    return {"metadata": {"name": name, "labels": {manifest.L_TRIAL: trial}}, "spec": {"nodeName": "ks-worker-1"},
            "status": {"phase": phase, "startTime": "2026-12-07T10:00:00Z"}}


def _job(name: str, suspend: bool) -> dict:
    return {"metadata": {"name": name, "uid": f"uid-{name}", "labels": {kueue.QUEUE_LABEL: "team-a-queue"}},
            "spec": {"suspend": suspend}, "status": {}}


def test_a_queued_trial_shows_kueue_s_reason_and_place_and_an_evicted_one_waits_again_unfailed(tmp_path):
    plan = render.plan(_grid(tmp_path))
    sweep = runner.Sweep(plan, tmp_path / "jobs", tmp_path / "results")
    first, second = (sweep.records[t.name] for t in plan.trials)
    for rec in (first, second):
        sweep.book.set(rec, state=SUBMITTED)
        sweep.handle(JobChanged("ADDED", _job(rec.name, True)))
    wl = _workload(second.name, _cond("QuotaReserved", "False", "Pending", PENDING_MSG))
    sweep.handle(WorkloadChanged("ADDED", wl))
    assert (second.state, second.reason, second.message) == (SUBMITTED, kueue.QUEUED, PENDING_MSG)
    sweep.places = {wl["metadata"]["name"]: kueue.Position(2, 5, "team-a-queue")}
    sweep._show_queued(second)
    assert second.message == f"position 3 in LocalQueue team-a-queue, 6 in its ClusterQueue: {PENDING_MSG}"

    # admitted: the reason goes, the Job is unsuspended, its pod runs
    sweep.handle(WorkloadChanged("MODIFIED", _workload(first.name, _cond("QuotaReserved", "True"), _cond("Admitted", "True"))))
    sweep.handle(JobChanged("MODIFIED", _job(first.name, False)))
    sweep.handle(PodChanged("ADDED", _pod(first.name, "p1")))
    assert first.state == RUNNING and first.reason is None and first.node == "ks-worker-1"

    # preempted: Kueue suspends the Job again; the pod's last events are the evicted run's, not the trial's
    sweep.handle(WorkloadChanged("MODIFIED", _workload(first.name, _cond("QuotaReserved", "False"),
                                                       _cond("Evicted", "True", "Preempted", "Preempted by team-b"))))
    sweep.handle(JobChanged("MODIFIED", _job(first.name, True)))
    assert (first.state, first.reason, first.node, first.start) == (SUBMITTED, kueue.EVICTED, None, None)
    assert first.message == "evicted by Kueue (Preempted): Preempted by team-b; it waits in queue team-a-queue to run again"
    terminated = _pod(first.name, "p1", "Failed")
    terminated["status"]["containerStatuses"] = [{"state": {"terminated": {"exitCode": 143, "reason": "Error"}}}]
    sweep.handle(PodChanged("MODIFIED", terminated))
    sweep.handle(PodChanged("MODIFIED", _pod(first.name, "p1")))  # late, still Running while it stops
    assert (first.state, first.reason) == (SUBMITTED, kueue.EVICTED) and sweep.book.failed == 0
    assert sweep.evictions == 1 and first.name in sweep.book.in_flight_names()  # still holds its place
    sweep.handle(PodChanged("DELETED", terminated))

    # admitted again: a new pod of the same Job runs the trial from the start
    sweep.handle(WorkloadChanged("MODIFIED", _workload(first.name, _cond("QuotaReserved", "True"), _cond("Admitted", "True"))))
    sweep.handle(JobChanged("MODIFIED", _job(first.name, False)))
    assert first.reason is None
    sweep.handle(PodChanged("ADDED", _pod(first.name, "p2")))
    assert first.state == RUNNING and sweep.pods[first.name]["metadata"]["name"] == "p2"


def test_a_sweep_without_a_queue_never_reads_a_suspended_job_as_an_eviction(tmp_path):
    plan = render.plan(_grid(tmp_path, ""))
    sweep = runner.Sweep(plan, tmp_path / "jobs", tmp_path / "results")
    rec = sweep.records[plan.trials[0].name]
    sweep.book.set(rec, state=SUBMITTED)
    sweep.handle(PodChanged("ADDED", _pod(rec.name, "p1")))
    sweep.handle(JobChanged("MODIFIED", {**_job(rec.name, True), "metadata": {"name": rec.name, "uid": "u"}}))
    assert rec.state == RUNNING and sweep.evictions == 0


def test_status_shows_a_job_kueue_holds_as_queued_with_its_reason_and_place(tmp_path):
    job = {"metadata": {"name": "q-1", "namespace": "team-a", "uid": "u1", "creationTimestamp": "2026-12-07T10:00:00Z",
                        "labels": {manifest.L_EXPERIMENT: "q", manifest.L_TRIAL: "q-1", kueue.QUEUE_LABEL: "lq"}},
           "spec": {"suspend": True}, "status": {}}
    wl = _workload("q-1", _cond("QuotaReserved", "False", "Pending", PENDING_MSG), name="job-q-1-x")

    def answer(method, path, body):
        route = path.split("?")[0]
        if route == "/apis/batch/v1/namespaces/team-a/jobs":
            return 200, {"items": [job]}
        if route == "/api/v1/namespaces/team-a/pods":
            return 200, {"items": []}
        if route == "/apis/kueue.x-k8s.io/v1beta2/namespaces/team-a/workloads":
            return 200, {"items": [wl]}
        if route == "/apis/visibility.kueue.x-k8s.io/v1beta2/namespaces/team-a/localqueues/lq/pendingworkloads":
            return 200, {"items": [{"metadata": {"name": "job-q-1-x"}, "positionInLocalQueue": 0,
                                    "positionInClusterQueue": 3}]}
        return 404, {"kind": "Status", "code": 404}

    with serve(answer, tmp_path / "kubeconfig"):
        got = lifecycle.status(kube.clients(str(tmp_path / "kubeconfig")), "q", "team-a")
    flight = got["team-a/q"].in_flight[0]
    assert got["team-a/q"].counts["pending"] == 1
    assert flight.waiting == f"queued in lq: position 1 in LocalQueue lq, 4 in its ClusterQueue: {PENDING_MSG}"


def test_a_katib_trial_job_labelled_with_a_queue_goes_through_that_queue(tmp_path):
    """Katib users reach Kueue by labelling the trial's Job; kubesweep reads it as queue:."""
    src = (tmp_path.parent / "corpus-random.yaml")
    from .test_corpus import CORPUS

    text = (CORPUS / "katib/examples/v1beta1/hp-tuning/random.yaml").read_text()
    text = text.replace("      kind: Job\n      spec:\n", "      kind: Job\n      metadata:\n        labels:\n"
                        "          kueue.x-k8s.io/queue-name: team-a-queue\n      spec:\n", 1)
    src.write_text(text)
    plan = render.plan(src)
    assert plan.experiment.queue == "team-a-queue" and kueue.QUEUE_LABEL not in plan.experiment.labels
    job = manifest.build_job(plan.experiment, plan.trials[0], image=plan.image)
    assert job["metadata"]["labels"][kueue.QUEUE_LABEL] == "team-a-queue" and job["spec"]["suspend"] is True
    bad = text.replace("kueue.x-k8s.io/queue-name: team-a-queue", "kueue.x-k8s.io/queue-name: Team_A")
    src.write_text(bad)
    with pytest.raises(SpecError) as err:
        render.plan(src)
    line = bad.splitlines().index("          kueue.x-k8s.io/queue-name: Team_A") + 1
    assert f"corpus-random.yaml:{line}:38: queue must name a Kueue LocalQueue" in str(err.value)


def test_through_a_queue_kueue_is_the_scheduler_unless_the_file_sets_batch_size(tmp_path):
    from kubesweep.run import policy

    queued = render.plan(_grid(tmp_path)).experiment
    assert policy.in_flight_cap(queued, "trial") == policy.KUEUE_IN_FLIGHT  # no batchSize: Kueue's quotas decide
    assert policy.in_flight_cap(queued, "batch") == queued.batch_size        # batch refill waits on batch directories
    capped = render.plan(_grid(tmp_path, "queue: team-a-queue\nbatchSize: 5\n")).experiment
    assert policy.in_flight_cap(capped, "trial") == 5
    plain = render.plan(_grid(tmp_path, "")).experiment
    assert policy.in_flight_cap(plain, "trial") == plain.batch_size == 3
    found = plain.model_copy(update={"queue": "lq"})  # the namespace's own queue, found by the sweep
    assert policy.in_flight_cap(found, "trial") == policy.KUEUE_IN_FLIGHT


def test_a_suspended_job_event_that_arrives_after_its_pod_runs_is_not_an_eviction(tmp_path):
    """The Job and pod watches are not ordered with each other: the Job as created (suspended) may
    be read after its admitted pod was seen running. Only the Job's own stream going from
    unsuspended back to suspended is an eviction."""
    plan = render.plan(_grid(tmp_path))
    sweep = runner.Sweep(plan, tmp_path / "jobs", tmp_path / "results")
    rec = sweep.records[plan.trials[0].name]
    sweep.book.set(rec, state=SUBMITTED)
    sweep.handle(PodChanged("ADDED", _pod(rec.name, "p1")))           # admitted, running
    sweep.handle(JobChanged("ADDED", _job(rec.name, True)))           # ...the Job as it was created, read late
    assert rec.state == RUNNING and sweep.evictions == 0 and rec.start is not None
    sweep.handle(JobChanged("MODIFIED", _job(rec.name, False)))       # its admission
    sweep.handle(PodChanged("MODIFIED", _pod(rec.name, "p1")))
    assert rec.state == RUNNING and sweep.evictions == 0
    sweep.handle(JobChanged("MODIFIED", _job(rec.name, True)))        # now a real eviction
    assert (rec.state, rec.reason, sweep.evictions) == (SUBMITTED, kueue.EVICTED, 1)
