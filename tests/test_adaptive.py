"""`search.algorithm: tpe`: Optuna's TPE asked one batch at a time, the study rebuilt from disk."""

from __future__ import annotations

import json
import math
import statistics

import pytest

from kubesweep.errors import Mark
from kubesweep.plan import search
from kubesweep.plan import adaptive
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


WHERE = Mark("grid.yaml", 4, 3)


def first_batch(exp):
    """The first batch, as planning makes it (search.expand), positions from a stand-in file."""
    from kubesweep.spec.yamlsource import loads

    return search.expand(exp, loads("parameters: {}\n", "grid.yaml")[1])


def run_study(exp, stop_after_batches=None):
    """Drive the study the way `invoke sweep` does: ask a batch, 'run' it, record, repeat."""
    trials, done = first_batch(exp), {}
    batches = 1
    while True:
        for t in trials:
            if t.name not in done:
                done[t.name] = {"state": "succeeded", "metrics": {"loss": loss(t.params)}}
        if stop_after_batches is not None and batches >= stop_after_batches:
            return trials, done
        following = search.next_batch(exp, trials, done, WHERE)
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
    first = search.next_batch(exp, trials, done, WHERE)
    again = search.next_batch(exp, list(trials), dict(done), WHERE)
    assert [t.name for t in first] == [t.name for t in again] and len(first) == 5
    # a trial still running counts as asked: the next batch avoids repeating it
    running = dict(done)
    del running[trials[-1].name]
    assert trials[-1].name not in {t.name for t in search.next_batch(exp, trials, running, WHERE)}


def test_failed_and_metricless_trials_are_told_as_failures_not_values(grid_file):
    exp = load_experiment(grid_file(TPE)).experiment
    trials = first_batch(exp)
    done = {t.name: {"state": "failed", "metrics": {}} for t in trials}
    hist = adaptive.history(trials, done, "loss")
    assert all(h["state"] == "failed" and h["value"] is None for h in hist)
    assert len(search.next_batch(exp, trials, done, WHERE)) == 5


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


def test_tpe_without_search_trials_asks_batch_after_batch_until_a_limit(grid_file):
    exp = load_experiment(grid_file(TPE.replace("trials: 40, ", ""))).experiment
    trials = first_batch(exp)
    assert len(trials) == 5
    done = {t.name: {"state": "succeeded", "metrics": {"loss": loss(t.params)}} for t in trials}
    for _ in range(3):  # no count: every batch is asked, none is refused for want of search.trials
        following = search.next_batch(exp, trials, done, WHERE)
        assert len(following) == 5
        trials = trials + following
        done.update({t.name: {"state": "succeeded", "metrics": {"loss": loss(t.params)}} for t in following})
    # --max-trials: the batch that would cross it is cut, the one after is empty
    assert len(search.next_batch(exp, trials, done, WHERE, limit=22)) == 2
    assert search.next_batch(exp, trials, done, WHERE, limit=20) == []


def test_katib_tpe_with_random_state_becomes_a_seeded_tpe_search(tmp_path):
    text = (ROOT_KATIB.read_text().replace("algorithmName: random", "algorithmName: tpe"))
    path = tmp_path / "katib.yaml"
    path.write_text(text)
    exp = load_experiment(path, image="localhost:5000/demo/trainer:1").experiment
    assert exp.search.algorithm == "tpe" and exp.search.trials


from .conftest import EXAMPLES  # noqa: E402

ROOT_KATIB = EXAMPLES / "katib.yaml"


def test_every_trial_is_made_one_way_and_a_name_taken_already_is_refused():
    """grid, random and tpe trials all come from trials.make: a parameter set whose name is taken
    (by an earlier batch of the study, here forged) is refused, never merged into that trial."""
    from kubesweep.plan import trials as trials_

    made = trials_.make("e", [{"x": 1}, {"x": 2}], first_index=5, batch=lambda i: 3, where=WHERE)
    assert [(t.index, t.batch, t.params) for t in made] == [(5, 3, {"x": 1}), (6, 3, {"x": 2})]
    assert made[0].name == trials_.trial_name("e", {"x": 1})
    forged = trials_.Trial(made[0].name, 0, 0, {"x": 9})
    with pytest.raises(SpecError, match=r"^grid.yaml:4:3: trials \{'x': 9\} and \{'x': 1\} hash to the same name"):
        trials_.make("e", [{"x": 1}], batch=lambda i: 0, where=WHERE, taken=[forged])
