"""Intermediate values from logs and early stopping: the curve reader, the log cursor, the pruners."""

from __future__ import annotations

import json
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubesweep.plan import planner as render
from kubesweep.run.collector import LogCursor
from kubesweep.run.metrics import MAX_POINTS, CurveReader, read_curves
from kubesweep.run.pruning import Pruning
from kubesweep.run.trialstate import FAILED, PRUNED, SUCCEEDED, TrialRecord


# ---------------------------------------------------------------------------- curves


def test_katib_text_lines_json_lines_and_the_trainer_s_own_lines_make_one_curve_each():
    log = textwrap.dedent("""\
        argv: ["3"]
        epoch=1 loss=0.9 train_accuracy=0.61
        epoch=2 loss=0.5 train_accuracy=0.80
        {"epoch": 3, "train_accuracy": "0.85", "loss": 0.41, "timestamp": 1765000000.5}
        {"epoch": 4, "train_accuracy": NaN}
        Test accuracy: 0.91
        """)
    r = read_curves(log, ["train_accuracy", "loss", "Test accuracy"])
    assert r.points["train_accuracy"] == [[1, 0.61], [2, 0.80], [3, 0.85]]  # NaN is no report
    assert r.points["loss"] == [[1, 0.9], [2, 0.5], [3, 0.41]]
    # printed once, with no step: a single point, not worth keeping as a curve
    assert r.points["Test accuracy"] == [[1, 0.91]] and "Test accuracy" not in r.curves()
    assert r.last("train_accuracy") == (3, 0.85)


def test_without_a_step_key_a_report_s_place_is_its_step_and_a_repeated_step_replaces_its_value():
    r = read_curves("acc=0.1\nacc=0.2\nstep=2 acc=0.25\nstep=5 acc=0.3\n", ["acc"])
    assert r.points["acc"] == [[1, 0.1], [2, 0.25], [5, 0.3]]


def test_a_configured_step_key_the_trainer_never_prints_is_counted_not_guessed():
    r = read_curves("epoch=1 acc=0.1\nacc=0.2\n", ["acc"], step="iteration")
    assert r.unnumbered == {"acc": 2} and r.points["acc"] == [[1, 0.1], [2, 0.2]]
    # per metric: a final metric printed once without the step does not mark the judged one
    r = read_curves("iteration=7 acc=0.1\nTest accuracy: 0.9\n", ["acc", "Test accuracy"], step="iteration")
    assert r.unnumbered == {"Test accuracy": 1}


def test_katib_s_metrics_format_regex_reads_the_step_like_any_other_name():
    regex = r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"
    r = read_curves("epoch = 1 ; acc = 0.5\nepoch = 2 ; acc = 0.75\n", ["acc"], regex=regex)
    assert r.points["acc"] == [[1, 0.5], [2, 0.75]]


def test_a_long_curve_is_thinned_evenly_and_keeps_its_last_point():
    r = read_curves("".join(f"step={i} acc={i}\n" for i in range(1, 10_001)), ["acc"])
    kept = r.curves()["acc"]
    assert len(kept) == MAX_POINTS and kept[0] == [1, 1.0] and kept[-1] == [10_000, 10_000.0]
    assert [p[0] for p in kept] == sorted(p[0] for p in kept)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 50), st.floats(-1e6, 1e6)), min_size=1, max_size=40), st.data())
def test_a_log_fed_in_pieces_reads_as_the_whole_log(reports, data):
    lines = [json.dumps({"epoch": s, "acc": v}) if i % 2 else f"epoch={s} acc={v!r}" for i, (s, v) in enumerate(reports)]
    whole = read_curves("\n".join(lines) + "\n", ["acc"])
    cuts = sorted(data.draw(st.lists(st.integers(0, len(lines)), max_size=5)))
    piecewise = CurveReader(["acc"])
    start = 0
    for cut in [*cuts, len(lines)]:
        piecewise.feed("".join(line + "\n" for line in lines[start:cut]))
        start = max(start, cut)
    assert piecewise.points == whole.points


# ---------------------------------------------------------------------------- the log cursor


def _stamped(seconds: int, nanos: int) -> str:
    return f"2026-12-07T08:{seconds // 60:02d}:{seconds % 60:02d}.{nanos:09d}Z"


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 3)), min_size=1, max_size=30), st.data())
def test_reads_from_the_second_of_the_last_line_give_every_line_exactly_once(gaps, data):
    """The kubelet reads sinceTime to the second, so each read repeats part of the last second read;
    lines written together share a timestamp. Whatever the log and wherever the reads fall, every
    line comes out once and in order."""
    lines, tenths = [], 0
    for i, (ds, dn) in enumerate(gaps):  # time never goes back; equal times are lines written together
        tenths += ds * 10 + dn
        lines.append(((tenths // 10, tenths % 10 * 100_000_000), f"line {i}"))
    reads = sorted(data.draw(st.lists(st.integers(1, len(lines)), max_size=6))) + [len(lines)]
    cursor, got = LogCursor("pod"), []
    for upto in reads:
        since = cursor.since()
        floor = None if since is None else int(since[17:19]) + 60 * int(since[14:16])
        text = "".join(f"{_stamped(*at)} {line}\n" for at, line in lines[:upto] if floor is None or at[0] >= floor)
        got += cursor.take(text).splitlines()
    assert got == [line for _, line in lines]


# ---------------------------------------------------------------------------- pruners


def _experiment(tmp_path, early: str, direction: str = "maximize"):
    grid = tmp_path / "grid.yaml"
    grid.write_text(textwrap.dedent(f"""\
        name: prune
        image: localhost:5000/t:1
        command: [train, "${{i}}"]
        parameters: {{i: {{min: 1, max: 40}}}}
        objective: {{metric: acc, direction: {direction}}}
        earlyStopping: {early}
        """))
    return render.plan(grid).experiment


def _finished(name: str, curve: list[float], state: str = SUCCEEDED) -> TrialRecord:
    rec = TrialRecord(name, "batch-0", {"i": 1}, state=state, end="2026-12-07T08:00:00Z")
    rec.curves = {"acc": [[s + 1, v] for s, v in enumerate(curve)]}
    rec.metrics = {"acc": curve[-1]}
    return rec


def _curve(values: list[float]) -> list[list[float]]:
    return [[s + 1, v] for s, v in enumerate(values)]


def test_median_stops_a_trial_worse_than_the_finished_ones_median_only_after_its_warmup(tmp_path):
    exp = _experiment(tmp_path, "{pruner: median, minTrials: 3, startStep: 2}")
    p = Pruning(exp, [_finished(f"t{i}", [0.5, 0.6, 0.7, 0.8]) for i in range(3)])
    assert p.check("good", _curve([0.5, 0.6, 0.7])) is None
    assert p.check("bad", _curve([0.1])) is None          # step 1: before its startStep
    why = p.check("bad", _curve([0.1, 0.1]))              # from startStep on (Katib's start_step counts so too)
    assert why is not None and why.startswith("pruned at step 2 (median)") and "0.6" in why and "3 finished" in why


def test_median_waits_for_min_trials_finished(tmp_path):
    exp = _experiment(tmp_path, "{pruner: median, minTrials: 3, startStep: 0}")
    p = Pruning(exp, [_finished(f"t{i}", [0.9, 0.9, 0.9]) for i in range(2)])
    assert p.check("bad", _curve([0.1, 0.1])) is None
    p.finish(_finished("t2", [0.9, 0.9, 0.9]))
    assert p.check("bad", _curve([0.1, 0.1, 0.1])) is not None


def test_median_minimizes_when_the_objective_does(tmp_path):
    exp = _experiment(tmp_path, "{pruner: median, minTrials: 1, startStep: 0}", direction="minimize")
    p = Pruning(exp, [_finished("t0", [1.0, 0.5])])
    assert p.check("lower", _curve([0.9, 0.4])) is None
    assert p.check("higher", _curve([2.0, 2.0])) is not None


def test_katib_medianstop_uses_the_mean_of_succeeded_trials_averages_over_their_first_reports(tmp_path):
    exp = _experiment(tmp_path, "{pruner: medianstop, minTrials: 2, startStep: 2}")
    # averages over the first 2 reports: 0.5 and 0.7; the bar is their mean, 0.6 (later reports ignored)
    p = Pruning(exp, [_finished("a", [0.4, 0.6, 0.99]), _finished("b", [0.6, 0.8, 0.99]),
                      _finished("pruned-one", [0.0, 0.0], state=PRUNED), _finished("failed-one", [0.0], state=FAILED)])
    assert p.check("x", _curve([0.1])) is None                 # fewer than startStep reports
    assert p.check("equal", _curve([0.1, 0.6])) is None        # not strictly worse
    why = p.check("y", _curve([0.9, 0.59]))
    assert why is not None and "below 0.6" in why and "2 succeeded" in why


def test_medianstop_needs_min_trials_succeeded_ones(tmp_path):
    exp = _experiment(tmp_path, "{pruner: medianstop, minTrials: 2, startStep: 1}")
    p = Pruning(exp, [_finished("a", [0.9]), _finished("p", [0.95], state=PRUNED)])
    assert p.check("x", _curve([0.1, 0.1])) is None


def test_asha_keeps_only_the_best_of_a_rung_and_a_resumed_study_decides_the_same(tmp_path):
    exp = _experiment(tmp_path, "{pruner: asha, minResource: 1, reductionFactor: 2}")
    finished = [_finished(f"t{i}", [0.1 * i, 0.1 * i + 0.05, 0.1 * i + 0.1]) for i in range(1, 7)]
    live = Pruning(exp)
    for rec in finished:  # as a sweep runs them: reported, judged, finished
        live.check(rec.name, rec.curves["acc"])
        live.finish(rec)
    resumed = Pruning(exp, finished)  # from the journal
    for p in (live, resumed):
        assert p.check("best", _curve([0.9, 0.95, 1.0])) is None
        why = p.check("worst", _curve([0.0]))
        assert why is not None and why.startswith("pruned at step 1 (asha, reduction factor 2)")


def test_hyperband_prunes_a_trial_far_below_the_rest(tmp_path):
    exp = _experiment(tmp_path, "{pruner: hyperband, minResource: 1, maxResource: 9, reductionFactor: 3}")
    p = Pruning(exp, [_finished(f"t{i}", [0.5 + 0.01 * i] * 9) for i in range(30)])
    verdicts = [p.check(f"bad{i}", _curve([0.0] * 9)) for i in range(6)]
    assert any(v is not None for v in verdicts)  # each trial's bracket depends on its number


@pytest.mark.parametrize("bad, message", [
    ("{pruner: halving}", "earlyStopping.pruner must be one of"),
    ("{pruner: median, startStep: -1}", "earlyStopping.startStep"),
    ("{pruner: asha, reductionFactor: 1}", "earlyStopping.reductionFactor"),
    ("{pruner: median, minTrial: 3}", "did you mean 'minTrials'"),
    ("{pruner: median, reductionFactor: 3}", "earlyStopping.reductionFactor has no meaning for the median pruner"),
    ("{pruner: asha, maxResource: 9}", "earlyStopping.maxResource has no meaning for the asha pruner"),
    ("{pruner: medianstop, startStep: 0}", "earlyStopping.startStep must be at least 1 for medianstop"),
    ("{pruner: hyperband, minResource: 10, maxResource: 9}", "minResource (10) is past maxResource (9)"),
    ("{pruner: median, metric: ' '}", "earlyStopping.metric must name the metric"),
])
def test_bad_early_stopping_settings_are_refused_where_they_are_written(tmp_path, bad, message):
    from kubesweep.errors import SpecError

    with pytest.raises(SpecError) as err:
        _experiment(tmp_path, bad)
    assert message in str(err.value) and "grid.yaml:6" in str(err.value)


# ---------------------------------------------------------------------------- in the sweep


def test_a_lagging_trial_is_pruned_its_job_deleted_and_a_rerun_keeps_it_pruned(tmp_path):
    """One trial finishes with a good curve; the other's log grows with bad values: once the rule
    has its finished trial, the next report prunes it. Its Job is deleted, the journal says Pruned
    with its curve, it is no failure, and a rerun neither submits it again nor leaves its Job."""
    import time as time_

    from kubesweep.plan import job as manifest
    from kubesweep.run import journal, runner

    from .fakeapi import serve

    grid = tmp_path / "grid.yaml"
    grid.write_text(textwrap.dedent("""\
        name: prune
        image: localhost:5000/t:1
        command: [train, "${i}"]
        parameters: {i: [1, 2]}
        objective: {metric: acc}
        maxFailedTrials: 0
        earlyStopping: {pruner: medianstop, minTrials: 1, startStep: 2, intervalSeconds: 0.1}
        """))
    plan = render.plan(grid)
    good, bad = (t.name for t in plan.trials)

    def job(name: str, done: bool) -> dict:
        status = {"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1} if done else {}
        return {"metadata": {"name": name, "uid": f"u-{name}", "labels": {manifest.L_TRIAL: name}}, "status": status}

    def pod(name: str, phase: str) -> dict:
        return {"metadata": {"name": f"{name}-x", "labels": {manifest.L_TRIAL: name, "job-name": name,
                                                             "batch.kubernetes.io/controller-uid": f"u-{name}"}},
                "spec": {"nodeName": "n1"}, "status": {"phase": phase, "startTime": "2026-01-01T00:00:00Z"}}

    reads, deleted, created = [], [], []

    def answer(method: str, path: str, body):
        if method == "DELETE":
            deleted.append(path)
            return 200, {}
        if method == "POST":
            created.append(path)
            return 201, body or {}
        if f"/pods/{good}-x/log" in path:
            return 200, b"acc=0.8\nacc=0.9\nacc=0.95\n"
        if f"/pods/{bad}-x/log" in path:
            reads.append(path)
            return 200, "".join(f"2026-01-01T00:00:{n:02d}Z acc=0.1{n}\n" for n in range(len(reads) + 1)).encode()
        if "watch=true" in path:
            time_.sleep(0.2)
            return 200, {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "1"}}}
        if "/pods" in path:
            return 200, {"metadata": {"resourceVersion": "1"}, "items": [pod(good, "Succeeded"), pod(bad, "Running")]}
        return 200, {"metadata": {"resourceVersion": "1"}, "items": [job(good, True), job(bad, False)]}

    deadline = time_.monotonic() + 20
    with serve(answer, tmp_path / "config"):
        out = runner.Sweep(plan, tmp_path / "jobs", tmp_path / "results", kubeconfig=tmp_path / "config",
                           stop_after=lambda: time_.monotonic() > deadline).run()
        assert out.stopped is None  # pruning is no failure: maxFailedTrials 0 is not exceeded
        recs = journal.load(tmp_path / "results" / "prune")
        assert recs[good]["state"] == SUCCEEDED and recs[good]["curves"]["acc"] == [[1, 0.8], [2, 0.9], [3, 0.95]]
        assert recs[bad]["state"] == PRUNED and recs[bad]["reason"] == "Pruned"
        assert "medianstop" in recs[bad]["message"] and "below 0.85," in recs[bad]["message"]
        assert len(recs[bad]["curves"]["acc"]) >= 2 and recs[bad]["metrics"]["acc"] == recs[bad]["curves"]["acc"][-1][1]
        assert [p for p in deleted if bad in p] and not created
        deleted.clear()
        again = runner.Sweep(plan, tmp_path / "jobs", tmp_path / "results", kubeconfig=tmp_path / "config").run()
    assert again.records[bad].state == PRUNED and not created  # never revived
    assert [p for p in deleted if bad in p]  # its Job, still listed as running, is deleted on resume


def test_a_trial_printing_its_metric_without_the_configured_step_key_is_marked_and_runs_on(tmp_path):
    """objective.step names a key the trainer never prints: early stopping cannot judge the trial.
    It is not pruned (nor failed): the running trial is marked StepMissing, with the key named."""
    import time as time_

    from kubesweep.plan import job as manifest
    from kubesweep.run import runner
    from kubesweep.run.trialstate import RUNNING

    from .fakeapi import serve

    grid = tmp_path / "grid.yaml"
    grid.write_text(textwrap.dedent("""\
        name: nostep
        image: localhost:5000/t:1
        command: [train, "${i}"]
        parameters: {i: [1]}
        objective: {metric: acc, step: epoch}
        earlyStopping: {pruner: median, minTrials: 0, startStep: 0, intervalSeconds: 0.1}
        """))
    plan = render.plan(grid)
    name = plan.trials[0].name
    job = {"metadata": {"name": name, "uid": "u1", "labels": {manifest.L_TRIAL: name}}, "status": {}}
    pod = {"metadata": {"name": f"{name}-x", "labels": {manifest.L_TRIAL: name, "job-name": name,
                                                          "batch.kubernetes.io/controller-uid": "u1"}},
           "spec": {"nodeName": "n1"}, "status": {"phase": "Running", "startTime": "2026-01-01T00:00:00Z"}}

    def answer(method: str, path: str, body):
        if method in ("POST", "DELETE"):
            return 201, body or {}
        if "/log" in path:
            return 200, b"2026-01-01T00:00:01Z step 1: acc=0.5\n2026-01-01T00:00:02Z iteration=2 acc=0.1\n"
        if "watch=true" in path:
            time_.sleep(0.2)
            return 200, {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "1"}}}
        return 200, {"metadata": {"resourceVersion": "1"}, "items": [pod] if "/pods" in path else [job]}

    seen: list = []
    with serve(answer, tmp_path / "config"):
        sweep = runner.Sweep(plan, tmp_path / "jobs", tmp_path / "results", kubeconfig=tmp_path / "config",
                             on_change=lambda rec: seen.append((rec.state, rec.reason, rec.message)),
                             stop_after=lambda: any(r == "StepMissing" for _, r, _ in seen))
        sweep.run()
    state, _, message = next(s for s in seen if s[1] == "StepMissing")
    assert state == RUNNING and "without the step key 'epoch'" in message
    assert PRUNED not in [s for s, _, _ in seen]


def test_tpe_is_told_a_pruned_trial_as_pruned_with_its_curve_not_as_a_failure(tmp_path, monkeypatch):
    """The next batch's study sees a pruned trial as Optuna's PRUNED, with the judged metric's
    intermediate values (TPE ranks it by its last one), not as a failure it would leave out."""
    import optuna

    from kubesweep.plan import adaptive

    grid = tmp_path / "grid.yaml"
    grid.write_text(textwrap.dedent("""\
        name: tpeprune
        image: localhost:5000/t:1
        command: [train, "${x}"]
        parameters: {x: {min: 0.0, max: 1.0}}
        search: {algorithm: tpe, trials: 12}
        batchSize: 2
        objective: {metric: acc}
        earlyStopping: {pruner: median, metric: val}
        """))
    exp = render.plan(grid).experiment
    told = []
    real = optuna.study.Study.add_trial
    monkeypatch.setattr(optuna.study.Study, "add_trial", lambda self, t: told.append(t) or real(self, t))
    history = [{"params": {"x": 0.5}, "state": "succeeded", "value": 0.9},
               {"params": {"x": 0.1}, "state": "pruned", "value": 0.2,
                "curves": {"val": [[1, 0.1], [2, 0.2], [2.5, 0.25]], "acc": [[1, 0.0], [2, 0.0]]}},
               {"params": {"x": 0.2}, "state": "pruned", "value": None, "curves": {}}]
    first = adaptive.suggest(exp, history, 1, 2)
    assert [t.state.name for t in told] == ["COMPLETE", "PRUNED", "FAIL"]  # no curve to tell: a failure
    assert told[1].intermediate_values == {1: 0.1, 2: 0.2, 3: 0.25}  # the fractional step becomes its place
    told.clear()
    assert adaptive.suggest(exp, history, 1, 2) == first and len(first) == 2  # deterministic, distinct
