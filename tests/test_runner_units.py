"""The sweep's bookkeeping, driven with API-shaped pod events (no cluster needed)."""

from __future__ import annotations

import textwrap
import threading
import time

from kubesweep.k8s import client as kube
from kubesweep.plan import job as manifest
from kubesweep.plan import planner as render
from kubesweep.run import policy, runner
from kubesweep.run.collector import Collector
from kubesweep.run.events import JobChanged, LogRead, PodChanged
from kubesweep.run.trialstate import FAILED, SUCCEEDED
from kubesweep.run.watcher import Watcher

from .conftest import ProgressSeen


def _pod(trial: str, *, node: str | None = None, unschedulable: bool = False) -> dict:
    status: dict = {"phase": "Running" if node else "Pending"}
    if unschedulable:
        status["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                 "message": "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."}]
    return {"metadata": {"name": f"{trial}-pod", "labels": {manifest.L_TRIAL: trial}},
            "spec": {"nodeName": node} if node else {}, "status": status}


def test_a_trial_queued_behind_the_sweep_waits_while_placed_trials_finish(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text(textwrap.dedent("""\
        name: queued
        image: localhost:5000/t:1
        command: [train, "${i}"]
        parameters: {i: [1, 2, 3]}
        objective: {metric: acc}
        unschedulableSeconds: 30
        """))
    plan = render.plan(grid)
    sweep = runner.Sweep(plan, tmp_path / "jobs", tmp_path / "results")
    assert sweep.clocks.pending_timeout_s == 30
    placed, queued, refused = (t.name for t in plan.trials)
    sweep.handle(PodChanged("ADDED", _pod(placed, node="gpu-1")))
    sweep.handle(PodChanged("ADDED", _pod(queued, unschedulable=True)))
    sweep.handle(PodChanged("ADDED", _pod(refused, unschedulable=True)))
    assert sweep.records[queued].reason == "Unschedulable" and "Insufficient nvidia.com/gpu" in sweep.records[queued].message
    waited = time.monotonic() - 25
    sweep.clocks.pending_since.update({queued: waited, refused: waited})
    assert sweep.clocks.overdue(time.monotonic()) == ([], [])  # 25 s of the 30 allowed

    # one that never had a node gives up nothing the others wait for: no clock restarts
    sweep.handle(LogRead(refused, FAILED, "Unschedulable", "too big", ""))
    assert sweep.records[refused].state == FAILED and sweep.clocks.pending_since[queued] == waited

    # a trial that ran frees its slot: the queued one waits afresh
    sweep.handle(LogRead(placed, SUCCEEDED, None, None, "acc=0.9\n"))
    assert sweep.records[placed].metrics == {"acc": 0.9}
    assert time.monotonic() - sweep.clocks.pending_since[queued] < 5
    assert refused not in sweep.clocks.pending_since and placed not in sweep.clocks.pending_since
    assert sweep.clocks.overdue(time.monotonic() + 31) == ([queued], [])  # then it has waited too long


def test_the_job_sent_is_the_file_as_it_is_on_disk(tmp_path, monkeypatch):
    """A rendered file is sent as render wrote it without being parsed again (the YAML parse was a
    tenth of the client's CPU); a file edited by hand is parsed and sent with the edit."""
    grid = tmp_path / "grid.yaml"
    grid.write_text(textwrap.dedent("""\
        name: sent
        image: localhost:5000/t:1
        command: [train, "--lr", "${lr}"]
        parameters: {lr: [0.1, 0.01]}
        env: {SEED: "7"}
        objective: {metric: acc}
        """))
    plan = render.plan(grid)
    render.write(plan, tmp_path / "jobs")
    sweep = runner.Sweep(plan, tmp_path / "jobs", tmp_path / "results")
    untouched, edited = (sweep.records[t.name] for t in plan.trials)
    files = {r.name: tmp_path / "jobs" / "sent" / r.batch / f"{r.name}.yaml" for r in (untouched, edited)}
    as_written = {name: manifest.load(f.read_bytes()) for name, f in files.items()}
    text = files[edited.name].read_text()
    assert "value: '7'" in text
    files[edited.name].write_text(text.replace("value: '7'", "value: '8'"))

    parsed = []
    real_load = manifest.load
    monkeypatch.setattr(manifest, "load", lambda data: parsed.append(data) or real_load(data))
    assert sweep.manifest(untouched) == as_written[untouched.name]
    assert parsed == []  # not parsed: built, equal to the parsed file
    sent = sweep.manifest(edited)
    assert len(parsed) == 1
    env = sent["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "SEED", "value": "8"} in env and sent != as_written[edited.name]


def test_the_watcher_passes_a_burst_on_without_pausing_and_gathers_a_trickle(monkeypatch):
    """Events already buffered go straight to the queue; one that ended a wait on the socket is
    followed by a pause (Watcher.GATHER_S, per kind) so the next ones arrive together."""
    import queue
    import threading

    served = {"pod": threading.Event(), "job": threading.Event()}

    def event(kind: str, i: int) -> dict:
        return {"type": "MODIFIED", "object": {"kind": kind, "metadata": {"name": f"{kind}{i}", "resourceVersion": str(i)}}}

    def watch(c, path, query, timeout=30):
        kind = "pod" if "/pods" in path else "job"
        if served[kind].is_set():
            watcher.stop.wait(5)  # served: nothing more
            return
        for i in range(100):  # a burst, as after a relist or a batch of creates
            yield event(kind, i)
        for i in range(100, 104):  # a trickle: each event ends a wait
            time.sleep(0.1)
            yield event(kind, i)
        served[kind].set()

    monkeypatch.setattr(kube, "watch", watch)
    out: queue.Queue = queue.Queue()
    watcher = Watcher(None, "ns", "a=b", out)
    # wide margins (a slow CI machine pauses anyway), and a different window per kind
    watcher.WAITED_S, watcher.GATHER_S = 0.05, {"pod": 0.01, "job": 0.02}
    pauses: dict[str, list[float]] = {"pod": [], "job": []}
    wait = watcher.stop.wait
    monkeypatch.setattr(watcher.stop, "wait",
                        lambda t=None: pauses[threading.current_thread().name.split("-")[1]].append(t) or wait(t))
    watcher.start({"metadata": {"resourceVersion": "1"}}, {"metadata": {"resourceVersion": "1"}})
    got: dict[str, list[str]] = {"pod": [], "job": []}
    for _ in range(208):
        ev = out.get(timeout=10)
        kind, obj = ("pod", ev.pod) if isinstance(ev, PodChanged) else ("job", ev.job)
        got[kind].append(obj["metadata"]["name"])
    watcher.close()
    for kind in ("pod", "job"):
        assert got[kind] == [f"{kind}{i}" for i in range(104)]  # all of them, in order
        gathered = [t for t in pauses[kind] if t == watcher.GATHER_S[kind]]
        assert 4 <= len(gathered) <= 6, pauses  # after each trickled event, not after each of the burst


def _two_trials(tmp_path) -> runner.Sweep:
    grid = tmp_path / "grid.yaml"
    grid.write_text(textwrap.dedent("""\
        name: two
        image: localhost:5000/t:1
        command: [train, "${i}"]
        parameters: {i: [1, 2]}
        objective: {metric: acc}
        """))
    return runner.Sweep(render.plan(grid), tmp_path / "jobs", tmp_path / "results")


def test_a_job_deleted_by_invoke_cancel_is_recorded_as_cancelled_and_others_as_deleted(tmp_path):
    from kubesweep.run.trialstate import CANCELLED, SUBMITTED

    sweep = _two_trials(tmp_path)
    by_cancel, by_hand = sweep.records.values()
    for rec in (by_cancel, by_hand):
        sweep.book.set(rec, state=SUBMITTED)
    sweep.handle(JobChanged("DELETED", {"metadata": {"name": by_cancel.name, "uid": "u1",
                                                     "annotations": {manifest.A_CANCELLED: "2026-12-02T10:00:00Z"}}}))
    assert sweep.cancels.seen  # the sweep stops at its next turn
    sweep.handle(JobChanged("DELETED", {"metadata": {"name": by_hand.name, "uid": "u2"}}))
    assert (by_cancel.state, by_cancel.reason) == (CANCELLED, "Cancelled") and "kubesweep cancel" in by_cancel.message
    assert (by_hand.state, by_hand.reason) == (CANCELLED, "Deleted")


def test_only_a_cancel_mark_made_while_the_sweep_runs_stops_it():
    def job(name, mark=None):
        return {"metadata": {"name": name, "annotations": {manifest.A_CANCELLED: mark} if mark else {}}}

    watch = policy.CancelWatch([job("old", "2026-12-02T10:00:00Z"), job("new")])  # as listed when it started
    assert not watch.check(job("old", "2026-12-02T10:00:00Z"))  # marked before: a rerun resumes
    assert not watch.check(job("new"))
    assert watch.check(job("old", "2026-12-02T10:05:00Z"))  # cancelled again
    assert watch.check(job("new")) and watch.seen  # and it stays seen
    assert policy.CancelWatch([job("new")]).check(job("new", "2026-12-02T10:05:00Z"))


def test_a_relist_after_410_reports_the_jobs_deleted_while_the_watch_was_away(tmp_path):
    """After 410 Gone the watcher lists again. A list shows only what exists, so a Job deleted in
    the gap (or deleted and made again) must come out as DELETED, or its trial holds its slot and
    the sweep never ends. Through the stand-in API server: real requests, real watch parsing."""
    import queue

    from .fakeapi import serve

    from kubesweep.k8s import client as kube
    from kubesweep.run.trialstate import CANCELLED, SUBMITTED

    sweep = _two_trials(tmp_path)
    gone, remade = sweep.order

    def meta(name: str, uid: str) -> dict:
        return {"name": name, "uid": uid, "resourceVersion": "7", "labels": {manifest.L_TRIAL: name}}

    watches = {"pod": 0, "job": 0}

    def answer(method: str, path: str, body):
        if "/events" in path:  # the FailedCreate watch: nothing to say
            if "watch=true" in path:
                time.sleep(0.2)
                return 200, {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}}
            return 200, {"metadata": {"resourceVersion": "9"}, "items": []}
        kind = "pod" if "/pods" in path else "job"
        if "watch=true" not in path:  # the relist: one Job gone, the other made again (a new uid)
            items = [] if kind == "pod" else [{"metadata": meta(remade, "new")}]
            return 200, {"metadata": {"resourceVersion": "9"}, "items": items}
        watches[kind] += 1
        if kind == "job" and watches[kind] == 1:
            return 200, {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}
        time.sleep(0.2)  # an idle watch that the server ends
        return 200, {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}}

    out: queue.Queue = queue.Queue()
    with serve(answer, tmp_path / "config"):
        watcher = Watcher(kube.clients(tmp_path / "config"), "ns", "a=b", out)
        watcher.start({"metadata": {"resourceVersion": "5"}, "items": []},
                      {"metadata": {"resourceVersion": "5"},
                       "items": [{"metadata": meta(gone, "old1")}, {"metadata": meta(remade, "old2")}]})
        events = [out.get(timeout=10) for _ in range(3)]
        watcher.close()
    assert [(type(e), e.change, e.job["metadata"]["name"], e.job["metadata"]["uid"]) for e in events] == [
        (JobChanged, "DELETED", gone, "old1"), (JobChanged, "DELETED", remade, "old2"),
        (JobChanged, "MODIFIED", remade, "new")]
    # what is kept of each object is what a DELETED event needs, not its whole metadata
    assert watcher.known["job"] == {remade: {"name": remade, "uid": "new", "labels": {manifest.L_TRIAL: remade}}}

    for rec in sweep.records.values():
        sweep.book.set(rec, state=SUBMITTED)
    sweep.job_uid = {gone: "old1", remade: "new"}
    for ev in events:
        sweep.handle(ev)
    assert (sweep.records[gone].state, sweep.records[gone].reason) == (CANCELLED, "Deleted")
    assert sweep.records[remade].state == SUBMITTED  # the old Job's delete is not this one's
    assert {r.name for r in sweep.in_flight()} == {remade}


def test_a_log_read_that_fails_is_tried_again_and_a_lasting_failure_is_not_a_missing_metric(tmp_path, monkeypatch):
    """A finished trial's log read failing with 5xx (the kubelet or API server restarting) is
    tried again; a failure that lasts makes the trial LogUnavailable, not MetricMissing (what it
    printed is unknown); a 404 (the pod is gone) is an empty log at once."""
    from .fakeapi import serve

    from kubesweep.k8s import client as kube
    from kubesweep.run.trialstate import FAILED, SUCCEEDED

    monkeypatch.setattr(kube, "FIRST_WAIT_S", 0.01)
    monkeypatch.setattr(kube, "MAX_WAIT_S", 0.05)
    monkeypatch.setattr(kube, "OUTAGE_S", 0.5)
    script = {"flaky": [503, 500, 200], "down": [500] * 100, "gone": [404], "denied": [403]}
    asked = {pod: 0 for pod in script}

    def answer(method: str, path: str, body):
        if path == "/readyz":
            return 200, b"ok"
        pod = path.split("/pods/")[1].split("/")[0]
        status = script[pod][asked[pod]]
        asked[pod] += 1
        if status == 200:
            return 200, b"epoch 1\nacc=0.93\n"
        return status, {"kind": "Status", "code": status, "message": f"kubelet of {pod}: connection refused"}

    sweep = _two_trials(tmp_path)
    closing = threading.Event()
    with serve(answer, tmp_path / "config"):
        collector = Collector(kube.clients(tmp_path / "config"), "ns", sweep.events, sweep.pods.get, closing)
        got = {}
        for pod in script:
            sweep.pods[pod] = {"metadata": {"name": pod}}
            got[pod] = collector.read_log(pod)
    assert got["flaky"] == ("epoch 1\nacc=0.93\n", None) and asked["flaky"] == 3
    assert got["down"][0] == "" and got["down"][1].startswith("500") and asked["down"] >= 4  # tried for OUTAGE_S
    assert got["gone"] == ("", None) and asked["gone"] == 1
    assert got["denied"][1].startswith("403") and asked["denied"] == 1  # a Role without pods/log: said so, once

    down, gone = sweep.records.values()
    sweep.handle(LogRead(down.name, SUCCEEDED, None, None, *got["down"]))
    sweep.handle(LogRead(gone.name, SUCCEEDED, None, None, *got["gone"]))
    assert (down.state, down.reason) == (FAILED, "LogUnavailable") and "connection refused" in down.message
    assert f"kubesweep logs {down.name}" in down.message
    assert (gone.state, gone.reason) == (FAILED, "MetricMissing")

    script["ending"], asked["ending"] = [500] * 100, 0  # the sweep is ending: no waiting on retries
    closing.set()
    with serve(answer, tmp_path / "config"):
        sweep.pods["ending"] = {"metadata": {"name": "ending"}}
        collector.c = kube.clients(tmp_path / "config")
        assert collector.read_log("ending")[1] and asked["ending"] == 1


def test_a_running_trial_s_metric_so_far_is_read_from_what_its_log_adds(tmp_path, monkeypatch):
    """A sweep re-attached to a running trial reads its log every PROGRESS_EVERY_S (only for
    trials the listener wants), each time only what was logged since the last read (sinceTime, and
    the lines of that second already read are skipped), and passes the metric's latest value and
    step on; nothing is journaled from it, and a sweep without a listener reads no log at all."""
    from kubesweep.run import journal

    from .fakeapi import serve

    monkeypatch.setattr(runner, "PROGRESS_EVERY_S", 0.1)
    grid = tmp_path / "g.yaml"
    grid.write_text("name: prog\nimage: localhost:5000/t:1\ncommand: [run, \"${i}\"]\nparameters: {i: [1]}\n"
                    "objective: {metric: score}\n")
    plan = render.plan(grid)
    name = plan.trials[0].name
    job = {"metadata": {"name": name, "uid": "u1", "labels": {manifest.L_TRIAL: name}}, "status": {}}
    pod = {"metadata": {"name": f"{name}-x", "labels": {manifest.L_TRIAL: name, "job-name": name,
                                                          "batch.kubernetes.io/controller-uid": "u1"}},
           "spec": {"nodeName": "n1"}, "status": {"phase": "Running", "startTime": "2026-01-01T00:00:00Z"}}
    logs: list[str] = []

    def answer(method: str, path: str, body):
        if method in ("POST", "DELETE"):
            return 201, body or {}
        if "/log" in path:
            logs.append(path)
            # the log grows by one epoch per read; two lines share each second
            lines = [f"2026-01-01T00:00:{e:02d}.5Z epoch={e} score={e / 10}\n2026-01-01T00:00:{e:02d}.5Z done {e}\n"
                     for e in range(1, len(logs) + 1)]
            return 200, "".join(lines).encode()
        if "watch=true" in path:
            time.sleep(0.2)
            return 200, {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "1"}}}
        items = [pod] if "/pods" in path else [job]
        return 200, {"metadata": {"resourceVersion": "1"}, "items": items}

    shown = ProgressSeen()
    with serve(answer, tmp_path / "config"):
        silent = runner.Sweep(plan, tmp_path / "jobs", tmp_path / "results", kubeconfig=tmp_path / "config",
                              stop_after=lambda: time.sleep(0.5) or True)
        silent.run()
        assert not logs  # no listener, no reads
        shown.names = [name]
        deadline = time.monotonic() + 10
        sweep = runner.Sweep(plan, tmp_path / "jobs", tmp_path / "results2", kubeconfig=tmp_path / "config",
                             progress=shown, stop_after=lambda: len(shown.values) >= 3 or time.monotonic() > deadline)
        sweep.run()
    # each new line once, with its step: the second read's repeat of the first second is skipped
    assert shown.values[:3] == [(name, 0.1), (name, 0.2), (name, 0.3)]
    assert shown.steps[:3] == [(name, 1), (name, 2), (name, 3)]
    assert all("timestamps=true" in p and f"/pods/{name}-x/log" in p for p in logs)
    assert "sinceTime" not in logs[0] and "sinceTime=2026-01-01T00%3A00%3A01Z" in logs[1]
    # stopped while it ran (stop_after): recorded as cancelled, with no metric taken from the progress reads
    assert [(r["state"], r["metrics"]) for r in journal.load(tmp_path / "results2" / "prog").values()] == [("cancelled", {})]


def test_the_live_view_shows_a_running_trial_s_metric_so_far_and_wants_only_what_it_shows():
    import io

    from rich.console import Console

    from kubesweep.cli.live import IN_FLIGHT_ROWS, View
    from kubesweep.run.trialstate import TrialRecord

    console = Console(file=io.StringIO(), width=200, force_terminal=True)
    view = View("exp", "acc", 100, console=console)
    assert view.wanted() == []  # not drawn live: nothing to read logs for
    with view:
        for i in range(IN_FLIGHT_ROWS + 5):
            view.change(TrialRecord(f"exp-run-{i:02d}", "batch-000", {}, state="running", node="n1",
                                    start="2026-01-01T00:00:00Z"))
        view.change(TrialRecord("exp-wait", "batch-000", {}, state="submitted"))
        assert view.wanted() == [f"exp-run-{i:02d}" for i in range(IN_FLIGHT_ROWS)]  # on screen, running
        view.seen("exp-run-00", 0.8125)
        view.seen("exp-run-01", None)
        out = Console(file=io.StringIO(), width=200)
        out.print(view.table())
        rows = {line.split()[0]: line for line in out.file.getvalue().splitlines()[2:] if line.startswith("exp-")}
        assert "  0.8125…  n1" in rows["exp-run-00"]  # marked as a value so far
        assert len(rows["exp-run-01"].split()) == 4  # name, state, node, duration so far: no value yet
        view.change(TrialRecord("exp-run-00", "batch-000", {}, state="succeeded", node="n1", metrics={"acc": 0.9},
                                start="2026-01-01T00:00:00Z", end="2026-01-01T00:01:00Z"))
        out = Console(file=io.StringIO(), width=200)
        out.print(view.table())
        done = [line for line in out.file.getvalue().splitlines() if line.startswith("exp-run-00 ")]
        assert done and "0.9" in done[0] and "…" not in done[0].split("0.9")[1]  # the final value replaces it

    # an 80-column terminal with a trial name as long as the example's still shows the metric
    narrow = View("mnist", "Test accuracy", 12, console=Console(file=io.StringIO(), width=80, force_terminal=True))
    with narrow:
        narrow.change(TrialRecord("mnist-8-rmsprop-0p5-cd937dfcc1f0", "batch-000", {}, state="running", node="ks-single",
                                  start="2026-01-01T00:00:00Z"))
        narrow.seen("mnist-8-rmsprop-0p5-cd937dfcc1f0", 0.9489)
        lines = ["".join(seg.text for seg in line) for line in narrow.console.render_lines(narrow.table(), pad=False)]
    row = next(line for line in lines if line.startswith("mnist-8-"))
    assert len(row) <= 80 and "0.9489…" in row, row


def test_a_resumed_sweep_reports_what_earlier_runs_finished_once_and_its_view_counts_it(tmp_path):
    """The journal's finished trials go to on_resume when the sweep starts (not line by line):
    the live view's totals start from them, and a tpe batch's second report counts nothing twice."""
    import io

    from kubesweep.run import journal
    from kubesweep.cli.live import View
    from kubesweep.run.trialstate import SUBMITTED, TrialRecord

    from .fakeapi import serve

    grid = tmp_path / "g.yaml"
    grid.write_text("name: again\nimage: localhost:5000/t:1\ncommand: [run, \"${i}\"]\nparameters: {i: [1, 2]}\n"
                    "objective: {metric: acc}\n")
    plan = render.plan(grid)
    done, todo = (t.name for t in plan.trials)
    journal.append(tmp_path / "results" / "again", {"name": done, "batch": "batch-000", "params": {"i": 1},
                                                    "state": "succeeded", "metrics": {"acc": 0.5}})

    def answer(method: str, path: str, body):
        if "watch=true" in path:
            time.sleep(0.2)
            return 200, {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "1"}}}
        return (201, body) if method == "POST" else (200, {"metadata": {"resourceVersion": "1"}, "items": []})

    view = View("again", "acc", 2, stream=io.StringIO(), live=False)
    reported: list[list[str]] = []

    def resumed(records):
        reported.append([r.name for r in records])
        view.resumed(records)

    with serve(answer, tmp_path / "config"):
        runner.Sweep(plan, tmp_path / "jobs", tmp_path / "results", kubeconfig=tmp_path / "config",
                     on_resume=resumed, stop_after=lambda: True).run()
    assert reported == [[done]]
    assert view.counts()["succeeded"] == 1 and view.stream.getvalue() == ""  # counted, not printed
    view.resumed([TrialRecord(done, "batch-000", {"i": 1}, state="succeeded")])  # reported again: not counted twice
    view.change(TrialRecord(todo, "batch-000", {"i": 2}, state=SUBMITTED))
    assert view.stream.getvalue().rstrip().endswith("(1✓ 0✗ 0▶ of 2)")


def test_a_pod_the_job_controller_cannot_create_waits_on_a_quota_and_fails_on_a_refusal(tmp_path):
    """FailedCreate events of the sweep's own Jobs: a full quota keeps the trial waiting (shown, not
    failed); an admission refusal of the pod fails it with the API server's message; an event of an
    earlier Job of the same name (events outlive their Jobs) or of another Job is ignored."""
    from kubesweep.run.events import CreateFailed
    from kubesweep.run.trialstate import SUBMITTED

    grid = tmp_path / "grid.yaml"
    grid.write_text("name: q\nimage: r/t:1\ncommand: [t, \"${i}\"]\nparameters: {i: [1, 2, 3]}\nobjective: {metric: acc}\n")
    plan = render.plan(grid)
    sweep = runner.Sweep(plan, tmp_path / "jobs", tmp_path / "results")
    waiting, refused, stale = (t.name for t in plan.trials)
    for i, name in enumerate((waiting, refused, stale)):
        sweep.book.set(sweep.records[name], state=SUBMITTED)
        sweep.handle(JobChanged("ADDED", {"metadata": {"name": name, "uid": f"u{i}"}, "status": {}}))
    quota = ('pods "q-1-x" is forbidden: exceeded quota: cpu, requested: requests.cpu=200m, used: '
             'requests.cpu=200m, limited: requests.cpu=250m')
    sweep.handle(CreateFailed(waiting, "u0", quota))
    sweep.handle(CreateFailed(refused, "u1", 'pods "q-2-x" is forbidden: violates PodSecurity "restricted:latest": '
                                             'runAsNonRoot != true'))
    sweep.handle(CreateFailed(stale, "an-earlier-job", 'pods "q-3-x" is forbidden: violates PodSecurity'))
    sweep.handle(CreateFailed("someone-elses-job", "u9", quota))
    rec = sweep.records[waiting]
    assert rec.state == SUBMITTED and rec.reason == runner.WAITING_QUOTA and rec.message == quota
    assert sweep.records[refused].state == FAILED and sweep.records[refused].reason == "FailedCreate"
    assert "violates PodSecurity" in sweep.records[refused].message and refused in sweep.to_delete
    assert sweep.records[stale].state == SUBMITTED and sweep.records[stale].reason is None
    assert sweep.book.failed == 1  # the quota wait does not count against maxFailedTrials


def test_a_create_held_by_a_full_quota_waits_in_line_until_a_trial_finishes_or_the_retry_time(tmp_path, monkeypatch):
    from kubesweep.run import submit
    from kubesweep.run.trialstate import PENDING, SUBMITTED

    grid = tmp_path / "grid.yaml"
    grid.write_text("name: h\nimage: r/t:1\ncommand: [t, \"${i}\"]\nparameters: {i: [1, 2]}\nobjective: {metric: acc}\n")
    plan = render.plan(grid)
    render.write(plan, tmp_path / "jobs")
    sweep = runner.Sweep(plan, tmp_path / "jobs", tmp_path / "results")
    made, held = (t.name for t in plan.trials)
    sent: list[list[str]] = []

    def create_jobs(c, namespace, bodies, **kwargs):
        sent.append([n for n, _ in bodies])
        return {n: (True if n == made else "exceeded quota: jobs, requested: count/jobs.batch=1, ...") for n, _ in bodies}

    monkeypatch.setattr(submit, "create_jobs", create_jobs)
    assert sweep._fill(None) == 1
    assert sweep.records[made].state == SUBMITTED
    rec = sweep.records[held]
    assert rec.state == PENDING and rec.reason == runner.WAITING_QUOTA and "exceeded quota" in rec.message
    assert sweep._fill(None) == 0 and len(sent) == 1  # not sent again at once
    sweep.handle(LogRead(made, SUCCEEDED, None, None, "acc=0.5\n"))  # a finished trial frees its share
    sweep._fill(None)
    assert sent[-1] == [held]


def test_a_watch_the_identity_may_not_do_stops_the_sweep_with_one_line(tmp_path):
    """A Role without watch on pods: the watch is answered 403 at once, every time. It used to be
    retried each second, silently, for ever; now the sweep stops, naming the missing permission.
    A refused watch of events only leaves the quota waits unexplained: no event, no stop."""
    import queue

    import pytest

    from .fakeapi import serve

    from kubesweep.errors import KubesweepError
    from kubesweep.k8s import client as kube
    from kubesweep.run.events import WatchRefused

    def forbidden(resource: str) -> dict:
        return {"kind": "Status", "code": 403, "reason": "Forbidden", "message": (
            f'{resource} is forbidden: User "system:serviceaccount:ns:bob" cannot watch resource "{resource}" '
            'in API group "" in the namespace "ns"')}

    def answer(method: str, path: str, body):
        if "/events" in path:
            return 403, forbidden("events")
        if "/pods" in path and "watch=true" in path:
            return 403, forbidden("pods")
        time.sleep(0.2)
        return 200, {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}}

    out: queue.Queue = queue.Queue()
    with serve(answer, tmp_path / "config"):
        watcher = Watcher(kube.clients(tmp_path / "config"), "ns", "a=b", out)
        watcher.start({"metadata": {"resourceVersion": "5"}, "items": []}, {"metadata": {"resourceVersion": "5"}, "items": []})
        ev = out.get(timeout=10)
        time.sleep(0.5)
        watcher.close()
    assert isinstance(ev, WatchRefused) and ev.what == "pods" and out.empty()
    assert ev.message.startswith("permission denied: system:serviceaccount:ns:bob may not watch pods in namespace ns.")
    sweep = _two_trials(tmp_path)
    with pytest.raises(KubesweepError, match=r"cannot watch its pods, so the sweep stops .*: permission denied"):
        sweep.handle(ev)


def test_a_retried_trial_is_not_taken_for_the_pod_of_its_deleted_job_still_terminating(tmp_path):
    """`kubesweep cancel` deletes a Job; its pod may run on for the grace period (a trainer as PID 1
    ignores SIGTERM). A sweep resumed with --retry-failed right then must create the trial's Job
    again, not take that pod (Running, then Failed) for the trial's new run."""
    from kubesweep.run import journal

    from .fakeapi import serve

    grid = tmp_path / "g.yaml"
    grid.write_text("name: again\nimage: localhost:5000/t:1\ncommand: [run, \"${i}\"]\nparameters: {i: [1]}\n"
                    "objective: {metric: acc}\n")
    plan = render.plan(grid)
    render.write(plan, tmp_path / "jobs")
    (trial,) = (t.name for t in plan.trials)
    journal.append(tmp_path / "results" / "again", {"name": trial, "batch": "batch-000", "params": {"i": 1},
                                                    "state": "cancelled", "reason": "Cancelled", "metrics": {}})
    ending = {"metadata": {"name": f"{trial}-old", "deletionTimestamp": "2026-01-01T00:00:00Z",
                           "labels": {manifest.L_TRIAL: trial, manifest.L_EXPERIMENT: "again",
                                      "batch.kubernetes.io/controller-uid": "deleted-job-uid"}},
              "spec": {"nodeName": "n1"}, "status": {"phase": "Running", "startTime": "2026-01-01T00:00:00Z"}}
    created: list[str] = []

    def answer(method: str, path: str, body):
        if "watch=true" in path:
            time.sleep(0.2)
            return 200, {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "1"}}}
        if method == "POST":
            if "dryRun" not in path:  # admission's check of one trial before the first create
                created.append(body["metadata"]["name"])
            return 201, {**body, "metadata": {**body["metadata"], "uid": "new-job-uid"}}
        items = [ending] if "/pods" in path else []
        return 200, {"metadata": {"resourceVersion": "1"}, "items": items}

    states: list[str] = []
    deadline = time.monotonic() + 10  # taken for the old pod's run, the trial would wait on it, creating nothing
    with serve(answer, tmp_path / "config"):
        runner.Sweep(plan, tmp_path / "jobs", tmp_path / "results", kubeconfig=tmp_path / "config", retry_failed=True,
                     on_change=lambda rec: states.append(rec.state),
                     stop_after=lambda: bool(created) or time.monotonic() > deadline).run()
    assert created == [trial]
    assert "running" not in states  # the old pod never made it running



def test_a_front_end_s_cancel_stops_the_sweep_though_its_job_watch_never_brings_the_mark(tmp_path):
    """kubesweep serve cancels through the API and tells the sweep through Hooks.cancelled: the
    sweep stops at its next look and records its running trial cancelled, even when its Job watch
    is slow to bring the cancel mark (here: it never does)."""
    from kubesweep import sweep as sweeps
    from kubesweep.run import journal
    from kubesweep.run.trialstate import CANCELLED

    from .fakeapi import serve

    grid = tmp_path / "g.yaml"
    grid.write_text("name: told\nimage: localhost:5000/t:1\ncommand: [run, \"${i}\"]\nparameters: {i: [1, 2, 3]}\n"
                    "objective: {metric: score}\nbatchSize: 1\n")
    plan = sweeps.plan(grid)
    created: list[str] = []
    deleted: list[str] = []

    def answer(method: str, path: str, body):
        if method == "POST" and path.split("?")[0].endswith("/jobs"):
            if "dryRun=All" not in path:  # the admission check's dry run is no Job
                created.append(body["metadata"]["name"])
            return 201, {**body, "metadata": {**body["metadata"], "uid": "u" + str(len(created))}}
        if method == "DELETE":
            deleted.append(path.split("?")[0].rsplit("/", 1)[-1])
            return 200, {"kind": "Status", "status": "Success"}
        if "watch=true" in path:
            time.sleep(0.2)
            if "/jobs" in path and len(created) > len(gone) and told.is_set() and time.monotonic() > told_at[0] + 20:
                # were the sweep deaf to Hooks.cancelled, it would end so: each trial "Deleted"
                gone.append(created[len(gone)])
                return 200, {"type": "DELETED", "object": {"metadata": {"name": gone[-1], "uid": f"u{len(gone)}",
                                                                         "resourceVersion": "2"}}}
            return 200, {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "1"}}}
        return 200, {"metadata": {"resourceVersion": "1"}, "items": []}

    told = threading.Event()
    told_at = [0.0]
    gone: list[str] = []

    def cancel() -> None:
        told_at[0] = time.monotonic()
        told.set()

    with serve(answer, tmp_path / "config"):
        target = sweeps.Target(kubeconfig=str(tmp_path / "config"))
        where = sweeps.Workspace(tmp_path / "jobs", tmp_path / "results")
        timer = threading.Timer(1.5, cancel)  # the cancel, made while the first trial is in flight
        timer.start()
        try:
            outcome = sweeps.run(plan, target, where, hooks=sweeps.Hooks(cancelled=told.is_set))
        finally:
            timer.cancel()
    assert outcome.stopped == policy.CANCELLED
    assert created == [plan.trials[0].name] and deleted == created  # no second trial; the first deleted
    first = journal.load(tmp_path / "results" / "told")[plan.trials[0].name]
    assert (first["state"], first["reason"]) == (CANCELLED, "Cancelled")
