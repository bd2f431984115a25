"""The sweep's bookkeeping, driven with API-shaped pod events (no cluster needed)."""

from __future__ import annotations

import textwrap
import time

from kubesweep import manifest, render, runner
from kubesweep.trialstate import FAILED, SUCCEEDED


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
    assert sweep.pending_timeout == 30
    placed, queued, refused = (t.name for t in plan.trials)
    sweep._on_pod("ADDED", _pod(placed, node="gpu-1"))
    sweep._on_pod("ADDED", _pod(queued, unschedulable=True))
    sweep._on_pod("ADDED", _pod(refused, unschedulable=True))
    assert sweep.records[queued].reason == "Unschedulable" and "Insufficient nvidia.com/gpu" in sweep.records[queued].message
    waited = time.monotonic() - 25
    sweep.pending_since.update({queued: waited, refused: waited})

    # one that never had a node gives up nothing the others wait for: no clock restarts
    sweep._finish(sweep.records[refused], FAILED, "Unschedulable", "too big")
    assert sweep.pending_since[queued] == waited

    # a trial that ran frees its slot: the queued one waits afresh
    sweep._finish(sweep.records[placed], SUCCEEDED, None, None)
    assert time.monotonic() - sweep.pending_since[queued] < 5
    assert refused not in sweep.pending_since and placed not in sweep.pending_since


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
    assert sweep._manifest(untouched) == as_written[untouched.name]
    assert parsed == []  # not parsed: built, equal to the parsed file
    sent = sweep._manifest(edited)
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

    monkeypatch.setattr(runner.kube, "watch", watch)
    out: queue.Queue = queue.Queue()
    watcher = runner.Watcher(None, "ns", "a=b", out)
    # wide margins (a slow CI machine pauses anyway), and a different window per kind
    watcher.WAITED_S, watcher.GATHER_S = 0.05, {"pod": 0.01, "job": 0.02}
    pauses: dict[str, list[float]] = {"pod": [], "job": []}
    wait = watcher.stop.wait
    monkeypatch.setattr(watcher.stop, "wait",
                        lambda t=None: pauses[threading.current_thread().name.split("-")[1]].append(t) or wait(t))
    watcher.start("1", "1")
    got: dict[str, list[str]] = {"pod": [], "job": []}
    for _ in range(208):
        kind, _type, obj = out.get(timeout=10)
        got[kind].append(obj["metadata"]["name"])
    watcher.close()
    for kind in ("pod", "job"):
        assert got[kind] == [f"{kind}{i}" for i in range(104)]  # all of them, in order
        gathered = [t for t in pauses[kind] if t == watcher.GATHER_S[kind]]
        assert 4 <= len(gathered) <= 6, pauses  # after each trickled event, not after each of the burst


def test_a_job_deleted_by_invoke_cancel_is_recorded_as_cancelled_and_others_as_deleted(tmp_path):
    from kubesweep.trialstate import CANCELLED, SUBMITTED

    grid = tmp_path / "grid.yaml"
    grid.write_text(textwrap.dedent("""\
        name: cancelled
        image: localhost:5000/t:1
        command: [train, "${i}"]
        parameters: {i: [1, 2]}
        objective: {metric: acc}
        """))
    plan = render.plan(grid)
    sweep = runner.Sweep(plan, tmp_path / "jobs", tmp_path / "results")
    by_cancel, by_hand = (sweep.records[t.name] for t in plan.trials)
    for rec in (by_cancel, by_hand):
        sweep._set(rec, state=SUBMITTED)
    sweep._on_job(None, "DELETED", {"metadata": {"name": by_cancel.name, "uid": "u1",
                                                 "annotations": {manifest.A_CANCELLED: "2026-12-02T10:00:00Z"}}})
    sweep._on_job(None, "DELETED", {"metadata": {"name": by_hand.name, "uid": "u2"}})
    assert (by_cancel.state, by_cancel.reason) == (CANCELLED, "Cancelled") and "invoke cancel" in by_cancel.message
    assert (by_hand.state, by_hand.reason) == (CANCELLED, "Deleted")


def _staging_sweep(tmp_path, monkeypatch, **extra):
    from concurrent.futures import ThreadPoolExecutor

    from kubesweep import kube, submit

    grid = tmp_path / "grid.yaml"
    grid.write_text(textwrap.dedent("""\
        name: staged
        image: localhost:5000/t:1
        command: [train, "${i}"]
        parameters: {i: [1, 2, 3, 4, 5]}
        objective: {metric: acc}
        batchSize: 2
        stageAhead: 2
        """))
    plan = render.plan(grid)
    render.write(plan, tmp_path / "jobs")
    sweep = runner.Sweep(plan, tmp_path / "jobs", tmp_path / "results", **extra)
    sent: dict[str, list] = {"created": [], "ungated": [], "deleted": []}

    def create_jobs(c, namespace, bodies, pool=None):
        sent["created"] += [(name, manifest.gated(body["spec"]["template"])) for name, body in bodies]
        return {name: True for name, _ in bodies}

    monkeypatch.setattr(submit, "create_jobs", create_jobs)
    monkeypatch.setattr(kube, "merge_patch", lambda c, path, body: sent["ungated"].append((path.rsplit("/", 1)[1], body)))
    monkeypatch.setattr(sweep, "_delete_jobs", lambda c, names: sent["deleted"].extend(names))
    sweep._submit_pool = ThreadPoolExecutor(2)
    return sweep, [t.name for t in plan.trials], sent


def _gated(trial: str) -> dict:
    pod = _pod(trial)
    pod["spec"]["schedulingGates"] = [{"name": manifest.SLOT_GATE}]
    pod["status"]["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]
    return pod


def test_staged_trials_wait_gated_and_take_freed_slots_in_plan_order(tmp_path, monkeypatch):
    from kubesweep.trialstate import CANCELLED, PENDING, RUNNING, SUBMITTED

    sweep, (t1, t2, t3, t4, t5), sent = _staging_sweep(tmp_path, monkeypatch)
    rec = sweep.records
    sweep._fill(None)
    assert sent["created"] == [(t1, False), (t2, False)]  # no staging while a start is under way
    sweep._on_pod("ADDED", _pod(t1, node="n1"))
    sweep._fill(None)
    assert len(sent["created"]) == 2
    sweep._on_pod("ADDED", _pod(t2, node="n1"))
    sweep._fill(None)  # every trial in flight runs: the next two are staged, gated
    assert sent["created"][2:] == [(t3, True), (t4, True)]
    assert rec[t3].state == rec[t4].state == PENDING and {r.name for r in sweep.in_flight()} == {t1, t2}
    sweep._on_pod("ADDED", _gated(t3))
    assert rec[t3].reason is None and t3 not in sweep.pending_since  # gated is not Unschedulable
    sweep._fill(None)
    assert sent["ungated"] == [] and len(sent["created"]) == 4  # no slot free, no room to stage

    sweep._finish(rec[t1], SUCCEEDED, None, None)
    sweep._fill(None)  # t3 takes the slot: its pod's gate goes, no Job is created
    assert rec[t3].state == SUBMITTED and sent["ungated"] == [(f"{t3}-pod", {"spec": {"schedulingGates": None}})]
    assert len(sent["created"]) == 4
    sweep._finish(rec[t2], SUCCEEDED, None, None)
    sweep._fill(None)  # t4 takes the next one before its pod exists...
    assert rec[t4].state == SUBMITTED and len(sent["ungated"]) == 1
    sweep._on_pod("ADDED", _gated(t4))  # ...and its gate goes when the pod shows up
    sweep._on_pod("MODIFIED", _gated(t4))
    sweep._fill(None)
    assert [name for name, _ in sent["ungated"]] == [f"{t3}-pod", f"{t4}-pod"]
    assert len(sweep.in_flight()) == 2 and len(sent["created"]) == 4

    sweep._on_pod("MODIFIED", _pod(t3, node="n1"))
    sweep._on_pod("MODIFIED", _pod(t4, node="n1"))
    assert rec[t3].state == rec[t4].state == RUNNING
    sweep._fill(None)
    assert sent["created"][4:] == [(t5, True)] and sweep._has_pending()
    sweep._cancel_pending(None, running_too=True)  # a stop deletes the staged Job as well
    assert rec[t5].state == CANCELLED and sorted(sent["deleted"]) == sorted([t3, t4, t5])
    assert not sweep._has_pending() and not sweep.in_flight()


def test_a_staged_job_deleted_by_hand_is_cancelled_and_not_sent_again(tmp_path, monkeypatch):
    from kubesweep.trialstate import CANCELLED

    sweep, (t1, t2, t3, t4, t5), sent = _staging_sweep(tmp_path, monkeypatch)
    sweep._fill(None)
    for t in (t1, t2):
        sweep._on_pod("ADDED", _pod(t, node="n1"))
    sweep._fill(None)
    sweep._on_job(None, "DELETED", {"metadata": {"name": t3, "uid": "u3"}})
    assert sweep.records[t3].state == CANCELLED and sweep.records[t3].reason == "Deleted"
    sweep._finish(sweep.records[t1], SUCCEEDED, None, None)
    sweep._fill(None)  # the slot goes to t4, staged after t3
    assert sweep.records[t4].state == "submitted" and [n for n, _ in sent["created"]].count(t3) == 1


def test_staging_needs_the_direct_apply_path(tmp_path, monkeypatch):
    import pytest

    with pytest.raises(runner.SweepError, match="stageAhead: 2 needs the direct apply path"):
        _staging_sweep(tmp_path, monkeypatch, apply="ansible")

