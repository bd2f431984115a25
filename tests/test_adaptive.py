"""`search.algorithm: tpe`: Optuna's TPE asked one batch at a time, the study rebuilt from disk."""

from __future__ import annotations

import json
import math
import statistics

import pytest

from kubesweep.plan import tpe as adaptive
from kubesweep.plan import planner as render
from kubesweep.errors import SpecError
from kubesweep.spec.formats import load_experiment

TPE = """\
name: tpe-demo
image: localhost:5000/demo/trainer:1
command: [python3, train.py, "${lr}", "${layers}", "${opt}"]
parameters:
  lr: {min: 1e-4, max: 1.0, scale: log}
  layers: {min: 1, max: 8}
  opt: [adam, sgd, momentum]
search: {algorithm: tpe, trials: 40, seed: 7}
batchSize: 5
objective: {metric: loss, direction: minimize}
"""


def loss(params):
    """A smooth objective with its optimum at lr=0.01, layers=4, opt=adam."""
    penalty = {"adam": 0.0, "momentum": 0.5, "sgd": 1.0}[params["opt"]]
    return (math.log10(params["lr"]) + 2) ** 2 + 0.2 * (params["layers"] - 4) ** 2 + penalty


def run_study(exp, stop_after_batches=None):
    """Drive the study the way `invoke sweep` does: ask a batch, 'run' it, record, repeat."""
    trials, done = adaptive.first_batch(exp), {}
    batches = 1
    while True:
        for t in trials:
            if t.name not in done:
                done[t.name] = {"state": "succeeded", "metrics": {"loss": loss(t.params)}}
        if stop_after_batches is not None and batches >= stop_after_batches:
            return trials, done
        following = adaptive.next_batch(exp, trials, done)
        if not following:
            return trials, done
        trials = trials + following
        batches += 1


def test_first_batch_is_batch_size_distinct_trials_in_the_space(grid_file):
    plan = render.plan(grid_file(TPE))
    assert len(plan.trials) == 5 and {t.batch for t in plan.trials} == {0}
    assert len({t.name for t in plan.trials}) == 5
    for t in plan.trials:
        assert 1e-4 <= t.params["lr"] <= 1.0 and 1 <= t.params["layers"] <= 8 and t.params["opt"] in ("adam", "sgd", "momentum")
        assert isinstance(t.params["layers"], int)
    assert [t.name for t in render.plan(grid_file(TPE)).trials] == [t.name for t in plan.trials]


def test_tpe_asks_up_to_search_trials_and_later_batches_beat_the_random_start(grid_file):
    exp = load_experiment(grid_file(TPE)).experiment
    trials, done = run_study(exp)
    assert len(trials) == 40 and len({t.name for t in trials}) == 40
    assert [t.batch for t in trials] == [i // 5 for i in range(40)]
    losses = [done[t.name]["metrics"]["loss"] for t in trials]
    startup, last = losses[:5], losses[-10:]
    # the model steers toward the optimum: the last two batches are better than the random start
    assert statistics.median(last) < statistics.median(startup) / 2, (startup, last)
    assert min(losses) < 0.6


def test_same_history_asks_the_same_batch_so_a_killed_client_resumes_the_same_study(grid_file):
    exp = load_experiment(grid_file(TPE)).experiment
    trials, done = run_study(exp, stop_after_batches=3)
    first = adaptive.next_batch(exp, trials, done)
    again = adaptive.next_batch(exp, list(trials), dict(done))
    assert [t.name for t in first] == [t.name for t in again] and len(first) == 5
    # a trial still running counts as asked: the next batch avoids repeating it
    running = dict(done)
    del running[trials[-1].name]
    assert trials[-1].name not in {t.name for t in adaptive.next_batch(exp, trials, running)}


def test_failed_and_metricless_trials_are_told_as_failures_not_values(grid_file):
    exp = load_experiment(grid_file(TPE)).experiment
    trials = adaptive.first_batch(exp)
    done = {t.name: {"state": "failed", "metrics": {}} for t in trials}
    hist = adaptive.history(trials, done, "loss")
    assert all(h["state"] == "failed" and h["value"] is None for h in hist)
    assert len(adaptive.next_batch(exp, trials, done)) == 5


def test_a_small_discrete_space_is_exhausted_without_repeats(grid_file):
    exp = load_experiment(grid_file(TPE.replace("lr: {min: 1e-4, max: 1.0, scale: log}", "lr: [0.1, 0.01]")
                                    .replace("layers: {min: 1, max: 8}", "layers: [1, 2]")
                                    .replace("trials: 40", "trials: 12"))).experiment
    trials, _ = run_study(exp)
    assert len(trials) == 12 and len({t.name for t in trials}) == 12  # the whole 2×2×3 space, once each


def test_asked_trials_are_read_back_from_plan_json_and_a_changed_space_is_refused(grid_file, tmp_path):
    path = grid_file(TPE)
    plan = render.plan(path)
    exp = plan.experiment
    trials, done = run_study(exp, stop_after_batches=2)
    plan.trials = trials
    render.write(plan, tmp_path / "jobs")
    back = adaptive.asked(exp, tmp_path / "jobs", render.PLAN_FILE)
    assert [(t.name, t.batch, t.params) for t in back] == [(t.name, t.batch, t.params) for t in trials]
    assert sorted(p.name for p in (tmp_path / "jobs" / "tpe-demo").glob("batch-*")) == ["batch-000", "batch-001"]

    narrower = load_experiment(grid_file(TPE.replace("max: 8}", "max: 2}"), name="narrow.yaml")).experiment
    outside = next(i for i, t in enumerate(trials) if t.params["layers"] > 2)
    with pytest.raises(SpecError) as info:
        adaptive.asked(narrower, tmp_path / "jobs", render.PLAN_FILE)
    where = f"{tmp_path / 'jobs' / 'tpe-demo' / render.PLAN_FILE}:{outside + 2}:3"
    assert where in str(info.value) and "different search space (parameters layers)" in str(info.value)
    line = (tmp_path / "jobs" / "tpe-demo" / render.PLAN_FILE).read_text().splitlines()[outside + 1]
    assert json.loads(line.rstrip(","))["name"] == trials[outside].name


def test_tpe_needs_search_trials(grid_file):
    with pytest.raises(SpecError, match="tpe search needs search.trials"):
        render.plan(grid_file(TPE.replace("search: {algorithm: tpe, trials: 40, seed: 7}", "search: {algorithm: tpe}")))


def test_katib_tpe_with_random_state_becomes_a_seeded_tpe_search(tmp_path):
    text = (ROOT_KATIB.read_text().replace("algorithmName: random", "algorithmName: tpe"))
    path = tmp_path / "katib.yaml"
    path.write_text(text)
    exp = load_experiment(path, image="localhost:5000/demo/trainer:1").experiment
    assert exp.search.algorithm == "tpe" and exp.search.trials


from .conftest import EXAMPLES  # noqa: E402

ROOT_KATIB = EXAMPLES / "katib.yaml"
