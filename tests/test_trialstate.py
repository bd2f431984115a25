"""Failure causes read from the objects the API sends (camelCase dicts), and the journal/report."""

import json

from kubesweep.run import journal
from kubesweep.run import report
from kubesweep.run.trialstate import FAILED, SUCCEEDED, TrialRecord, job_outcome, pod_controller_uid, pod_lost, pod_problem


def pod(container_state=None, conditions=None, **status):
    cs = [{"name": "trial", "state": container_state}] if container_state else []
    return {"status": {"phase": status.pop("phase", "Pending"), "containerStatuses": cs,
                       "conditions": conditions or [], **status}}


def test_image_pull_failures_are_fatal_at_once():
    for reason in ("ErrImagePull", "ImagePullBackOff", "InvalidImageName"):
        r, msg, fatal = pod_problem(pod({"waiting": {"reason": reason, "message": "not found"}}))
        assert (r, msg, fatal) == (reason, "not found", True)
    assert pod_problem(pod({"waiting": {"reason": "ContainerCreating"}})) == (None, None, False)


def test_oom_and_exit_codes():
    r, msg, fatal = pod_problem(pod({"terminated": {"reason": "OOMKilled", "exitCode": 137}}))
    assert r == "OOMKilled" and "137" in msg and "resources.memory" in msg and not fatal
    assert pod_problem(pod({"terminated": {"reason": "Error", "exitCode": 3}}))[:2] == ("Error", "exit code 3")
    assert pod_problem(pod({"terminated": {"reason": "Completed", "exitCode": 0}})) == (None, None, False)


def test_unschedulable_and_disruption():
    cond = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
             "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."}]
    assert pod_problem(pod(conditions=cond))[:2] == ("Unschedulable", cond[0]["message"])
    cond = [{"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager", "message": "node gone"}]
    assert pod_problem(pod(conditions=cond))[0] == "DeletionByTaintManager"


def test_a_pod_evicted_but_not_stopped_is_lost_until_it_finishes():
    cond = [{"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager"}]
    evicted = {**pod(conditions=cond, phase="Running"), "metadata": {"deletionTimestamp": "2026-11-23T16:35:20Z"}}
    assert pod_lost(evicted)
    assert not pod_lost({**evicted, "status": {**evicted["status"], "phase": "Failed"}})  # the node answered
    assert not pod_lost({**evicted, "metadata": {}})  # marked, not (yet) deleted
    assert not pod_lost({**pod(phase="Running"), "metadata": {"deletionTimestamp": "x"}})  # an ordinary delete
    assert pod_controller_uid({"metadata": {"labels": {"batch.kubernetes.io/controller-uid": "u1"}}}) == "u1"
    assert pod_controller_uid({"metadata": {}}) is None


def test_job_conditions():
    ok = {"status": {"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1}}
    assert job_outcome(ok) == (SUCCEEDED, None, None)
    late = {"status": {"conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
                                       "message": "Job was active longer than specified deadline"}]}}
    assert job_outcome(late) == (FAILED, "DeadlineExceeded", "Job was active longer than specified deadline")
    assert job_outcome({"status": {"active": 1}}) == (None, None, None)


def test_journal_survives_a_torn_last_line_and_keeps_the_latest(tmp_path):
    journal.append(tmp_path, {"name": "a", "state": "failed"})
    journal.append(tmp_path, {"name": "b", "state": "succeeded"})
    journal.append(tmp_path, {"name": "a", "state": "succeeded"})
    with open(journal.path(tmp_path), "a") as f:
        f.write('{"name": "c", "sta')  # killed mid-write
    loaded = journal.load(tmp_path)
    assert {k: v["state"] for k, v in loaded.items()} == {"a": "succeeded", "b": "succeeded"}
    journal.forget(tmp_path, {"a"})
    assert set(journal.load(tmp_path)) == {"b"}


def test_a_record_goes_to_the_journal_whole_and_detached_from_the_live_record(tmp_path):
    from dataclasses import asdict

    rec = TrialRecord("t1", "batch-000", {"lr": 0.1, "opt": "adam"}, state="succeeded", node="n1",
                      start="2026-01-01T00:00:00Z", end="2026-01-01T00:01:00Z", metrics={"acc": 0.9}, attempt=2)
    stored = rec.as_dict()
    assert stored == asdict(rec) and list(stored) == list(asdict(rec))  # every field, in order
    rec.params["lr"], rec.metrics["acc"] = 0.2, 0.1  # the sweep goes on changing its record
    assert stored["params"]["lr"] == 0.1 and stored["metrics"]["acc"] == 0.9
    journal.append(tmp_path, stored)
    assert journal.load(tmp_path)["t1"] == stored


def test_report_ranks_best_first_and_writes_every_file(tmp_path):
    recs = [
        {"name": "t1", "batch": "batch-000", "params": {"lr": 0.1, "opt": "sgd"}, "state": SUCCEEDED,
         "metrics": {"acc": 0.9}, "start": "2026-01-01T00:00:00Z", "end": "2026-01-01T00:00:30Z"},
        {"name": "t2", "batch": "batch-000", "params": {"lr": 0.01, "opt": "adam"}, "state": SUCCEEDED,
         "metrics": {"acc": 0.95}},
        {"name": "t3", "batch": "batch-001", "params": {"lr": 1.0, "opt": "sgd"}, "state": FAILED,
         "metrics": {"acc": None}, "reason": "OOMKilled", "message": "out of memory"},
    ]
    files = report.write(tmp_path, recs, experiment="e", metric="acc", direction="maximize", params=["lr", "opt"],
                         extra_metrics=[])
    lines = files["csv"].read_text().splitlines()
    assert lines[0].startswith("trial,batch,lr,opt,state")
    assert [l.split(",")[0] for l in lines[1:]] == ["t2", "t1", "t3"]
    assert ",30.0," in lines[2]  # duration
    best = json.loads(files["best"].read_text())["best"]
    assert best == {"trial": "t2", "value": 0.95, "params": {"lr": 0.01, "opt": "adam"}, "node": None}
    assert files["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "OOMKilled" in files["html"].read_text()
    down = report.write(tmp_path / "min", recs, experiment="e", metric="acc", direction="minimize",
                        params=["lr", "opt"], extra_metrics=[])
    assert json.loads(down["best"].read_text())["best"]["trial"] == "t1"


def test_a_lost_trial_is_resubmitted_once_and_its_old_pod_is_ignored(tmp_path):
    from kubesweep.plan import planner as render
    from kubesweep.run import runner
    from kubesweep.run.events import JobChanged, PodChanged
    from kubesweep.run.trialstate import PENDING, RUNNING

    grid = tmp_path / "g.yaml"
    grid.write_text("name: lost\nimage: localhost:5000/t:1\ncommand: [run, \"${i}\"]\nparameters: {i: [1]}\n"
                    "objective: {metric: acc}\n")
    sweep = runner.Sweep(render.plan(grid), tmp_path / "jobs", tmp_path / "results")
    name = next(iter(sweep.records))
    rec = sweep.records[name]
    labels = {"kubesweep.io/trial": name, "batch.kubernetes.io/controller-uid": "old"}
    sweep.handle(JobChanged("ADDED", {"metadata": {"name": name, "uid": "old"}, "status": {}}))
    running = {"metadata": {"name": "p1", "labels": labels}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}}
    sweep.book.set(rec, state=RUNNING)
    sweep.handle(PodChanged("MODIFIED", running))
    lost = {**running, "metadata": {**running["metadata"], "deletionTimestamp": "t"},
            "status": {"phase": "Running", "conditions": [{"type": "DisruptionTarget", "status": "True"}]}}
    sweep.handle(PodChanged("MODIFIED", lost))
    assert name in sweep.clocks.lost_since and rec.reason == "NodeLost"
    # the runner deleted the Job for a retry; its DELETED event puts the trial back in line
    sweep.clocks.found(name)
    sweep.retrying.add(name)
    sweep.handle(JobChanged("DELETED", {"metadata": {"name": name, "uid": "old"}}))
    assert rec.state == PENDING and name not in sweep.retrying
    # the old pod, still stuck on the lost node, no longer counts for the trial
    sweep.handle(PodChanged("MODIFIED", lost))
    assert name not in sweep.clocks.lost_since and name not in sweep.pods


def _plan(tmp_path, params="{i: [1, 2, 3]}", batch=3, objective="{metric: acc}"):
    from kubesweep.plan import planner as render

    grid = tmp_path / "g.yaml"
    grid.write_text(f"name: fast\nimage: localhost:5000/t:1\ncommand: [run, \"${{i}}\"]\nparameters: {params}\n"
                    f"batchSize: {batch}\nobjective: {objective}\n")
    return render.plan(grid)


def _book(tmp_path, **kwargs):
    from kubesweep.run.book import TrialBook

    plan = _plan(tmp_path, **kwargs)
    return TrialBook(plan.trials, plan.experiment.objective)


def test_a_succeeded_pod_frees_its_slot_before_the_job_is_marked_complete(tmp_path):
    """The pod's success is the trial's: its log is read off the event loop, the slot is free at
    once, and the Job's later Complete event does not record the trial a second time."""
    import threading

    from kubesweep.run import journal, runner
    from kubesweep.run.collector import Collector
    from kubesweep.run.events import JobChanged, LogRead, PodChanged
    from kubesweep.run.trialstate import SUBMITTED, SUCCEEDED

    sweep = runner.Sweep(_plan(tmp_path), tmp_path / "jobs", tmp_path / "results")
    name = sweep.order[0]
    rec = sweep.records[name]
    sweep.book.set(rec, state=SUBMITTED)
    assert [r.name for r in sweep.in_flight()] == [name]
    collector = Collector(None, "default", sweep.events, sweep.pods.get, threading.Event())
    collector.read_log = lambda trial: ("epoch 1\nacc=0.93\n", None)  # the boundary: the one API read
    sweep.collector = collector
    labels = {"kubesweep.io/trial": name, "batch.kubernetes.io/controller-uid": "u1"}
    pod = {"metadata": {"name": "p1", "labels": labels}, "spec": {"nodeName": "n1"},
           "status": {"phase": "Succeeded", "startTime": "2026-01-01T00:00:00Z",
                      "containerStatuses": [{"state": {"terminated": {"exitCode": 0, "finishedAt": "2026-01-01T00:01:00Z"}}}]}}
    sweep.handle(PodChanged("MODIFIED", pod))
    assert name in sweep.book.collecting and not sweep.in_flight()  # the slot is free before the log is even read
    collector.logs.shutdown(wait=True)
    read = sweep.events.get(timeout=5)
    assert read == LogRead(name, SUCCEEDED, None, None, "epoch 1\nacc=0.93\n", None)
    sweep.handle(read)
    assert rec.state == SUCCEEDED and rec.metrics == {"acc": 0.93} and rec.end == "2026-01-01T00:01:00Z"
    sweep.handle(JobChanged("MODIFIED", {"metadata": {"name": name, "uid": "u1"},
                                         "status": {"conditions": [{"type": "Complete", "status": "True"}]}}))
    assert list(journal.load(tmp_path / "results" / "fast")) == [name]
    assert journal.path(tmp_path / "results" / "fast").read_text().count("\n") == 1
    assert sweep.events.empty()  # the Complete event asked for no second log read


def test_pending_trials_are_taken_in_plan_order_and_a_requeued_one_goes_first(tmp_path):
    from kubesweep.run.trialstate import PENDING, RUNNING, SUBMITTED

    book = _book(tmp_path, params="{i: [1, 2, 3, 4, 5]}", batch=2)
    first = book.take_pending(2, one_batch=False)
    assert [r.name for r in first] == book.order[:2]
    for r in first:
        book.set(r, state=SUBMITTED)
    book.set(first[0], state=RUNNING)
    book.set(first[0], state=PENDING)  # its node was lost: back in line, ahead of the rest
    assert [r.name for r in book.take_pending(2, one_batch=False)] == [book.order[0], book.order[2]]
    assert book.has_pending()
    assert [r.name for r in book.take_pending(5, one_batch=False)] == book.order[3:]
    assert not book.take_pending(5, one_batch=False) and not book.has_pending()


def test_batch_refill_takes_one_batch_directory_at_a_time(tmp_path):
    book = _book(tmp_path, params="{i: [1, 2, 3, 4, 5]}", batch=2)
    batches = [book.records[n].batch for n in book.order]
    assert batches == ["batch-000", "batch-000", "batch-001", "batch-001", "batch-002"]
    assert [r.batch for r in book.take_pending(10, one_batch=True)] == ["batch-000", "batch-000"]
    assert [r.batch for r in book.take_pending(10, one_batch=True)] == ["batch-001", "batch-001"]


def test_failures_and_a_reached_goal_are_counted_as_trials_finish(tmp_path):
    from kubesweep.run import policy
    from kubesweep.run.trialstate import FAILED, SUBMITTED, SUCCEEDED

    book = _book(tmp_path, objective="{metric: acc, goal: 0.9}")
    a, b, c = (book.records[n] for n in book.order)
    for r in (a, b, c):
        book.set(r, state=SUBMITTED)
    book.set(a, state=FAILED, reason="Error")
    assert book.failed == 1 and not book.goal_reached
    assert policy.stop_reason(book, 0, 0, False) == "max-failed"  # more than maxFailedTrials: 0
    assert policy.stop_reason(book, 1, 0, False) is None
    assert policy.stop_reason(book, 1, 1, False) == "max-failed"  # node-loss retries count too
    book.set(b, state=SUCCEEDED, metrics={"acc": 0.5})
    assert not book.goal_reached and policy.stop_reason(book, None, 0, True) == "cancelled"
    book.set(c, state=SUCCEEDED, metrics={"acc": 0.95})
    assert book.goal_reached and not book.in_flight() and policy.stop_reason(book, 0, 0, True) == "goal"
    book.recount()  # a resume recounts from the records: the same answers
    assert book.failed == 1 and book.goal_reached
    assert book.counts() == {"pending": 0, "submitted": 0, "running": 0, "succeeded": 2, "failed": 1, "pruned": 0, "cancelled": 0}


def test_the_live_view_shows_trials_in_flight_first_and_keeps_counts(tmp_path):
    import io

    from rich.console import Console

    from kubesweep.cli.live import ROWS, View

    view = View("exp", "acc", 100, console=Console(file=io.StringIO(), width=200), live=False)
    view.stream = io.StringIO()
    for i in range(60):
        view.change(TrialRecord(f"exp-done-{i:02d}", "batch-000", {}, state="succeeded", metrics={"acc": i / 100},
                                start="2026-01-01T00:00:00Z", end=f"2026-01-01T00:01:{i:02d}Z"))
    for i in range(30):
        view.change(TrialRecord(f"exp-run-{i:02d}", "batch-000", {}, state="running", node=f"n{i}", start="2026-01-01T00:00:00Z"))
    assert view.counts()["succeeded"] == 60 and view.counts()["running"] == 30
    out = Console(file=io.StringIO(), width=200)
    out.print(view.table())
    lines = out.file.getvalue().splitlines()
    assert lines[0].startswith("exp: 60 succeeded, 0 failed, 30 running")
    rows = [line for line in lines[2:] if line.startswith("exp-")]
    assert len(rows) == ROWS
    assert all("running" in r for r in rows[:ROWS * 3 // 4])
    assert rows[ROWS * 3 // 4].startswith("exp-done-59")  # then the latest finished
    assert " 119s " in rows[ROWS * 3 // 4] and "0.59" in rows[ROWS * 3 // 4]  # its duration and metric
    assert "s…" in rows[0]  # a running trial's duration so far
    assert "more in flight" in lines[-1]
    # a trial that finishes leaves the rows in flight (kept incrementally, not by a walk per redraw)
    view.change(TrialRecord("exp-run-00", "batch-000", {}, state="succeeded", metrics={"acc": 0.99}, node="n0",
                            start="2026-01-01T00:00:00Z", end="2026-01-01T00:02:00Z"))
    narrow = Console(file=io.StringIO(), width=60)  # rendered as rich's Live renders it
    cropped = ["".join(seg.text for seg in line) for line in narrow.render_lines(view.table(), pad=False)]
    assert len(cropped) == len(lines) and all(len(line) <= 60 for line in cropped)  # cropped, never wrapped
    running = [line for line in cropped[2:] if " running " in line]
    assert len(running) == ROWS * 3 // 4 and not any(line.startswith("exp-run-00 ") for line in running)
    assert any(line.startswith("exp-run-00 ") and "succeeded" in line for line in cropped)
