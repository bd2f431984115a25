"""search.algorithm: hyperband (plan/hyperband.py) and Katib's algorithmName: hyperband.

The schedule is checked against a port of Katib's own state machine (kubeflow/katib
pkg/suggestion/v1beta1/hyperband/service.py: HyperBandParam.convert, _new_hbParameters,
_make_child_bracket), and against Katib's numbers for R = 81, eta = 3 written out."""

from __future__ import annotations

import math

import pytest

from kubesweep.errors import Mark, SpecError
from kubesweep.plan import adaptive, hyperband, search
from kubesweep.plan import planner
from kubesweep.spec.formats import load_experiment
from kubesweep.spec.yamlsource import loads

WHERE = Mark("grid.yaml", 4, 3)
CORPUS = "tests/corpus/katib/examples/v1beta1/hp-tuning/hyperband.yaml"

SWEEP = """\
name: hb
image: localhost:5000/demo/trainer:1
command: [python3, train.py, "${lr}", "${opt}", "--epochs=${epochs}"]
parameters:
  lr: {min: 0.001, max: 0.1, scale: log}
  opt: [adam, sgd]
  epochs: {min: 1, max: 9}
search: {algorithm: hyperband, resource: epochs, eta: 3, seed: 1}
batchSize: 9
objective: {metric: loss, direction: DIRECTION}
"""


def katib_rounds(r_l: float, eta: float) -> list[tuple[int, int, int, int]]:
    """(s, i, trials, budget) of every round, as Katib's service walks them when each request is
    answered in full (its request number equal to the bracket's n)."""
    eta = float(eta)
    r_l = float(r_l)
    s_max = int(math.log(r_l) / math.log(eta))
    current_s, current_i = s_max, 0
    n = int(math.ceil(float(s_max + 1) * (float(eta**current_s) / float(current_s + 1))))
    r = r_l * eta ** (-current_s)
    evaluating = 0
    out = []
    while current_s >= 0:
        if evaluating == 0:  # _make_master_bracket
            size, budget = n, int(r)
        else:  # _make_child_bracket
            n_i = math.ceil(n * eta ** (-current_i))
            size = int(math.ceil(n_i / eta))
            current_i += 1
            budget = int(r * eta**current_i)
        out.append((current_s, current_i, size, budget))
        evaluating = size if current_i < current_s else 0
        if evaluating == 0:  # _new_hbParameters
            current_s -= 1
            current_i = 0
            if current_s >= 0:
                n = int(math.ceil(float(s_max + 1) * (float(eta**current_s) / float(current_s + 1))))
                r = r_l * eta ** (-current_s)
    return out


@pytest.mark.parametrize("r_l, eta", [(81, 3), (9, 3), (2, 2), (10, 3), (100, 3), (8, 2), (1000, 10), (30, 4), (1, 3)])
def test_the_schedule_is_katibs(r_l, eta):
    got = [(r.bracket, r.index, r.size, r.budget) for r in hyperband.schedule(r_l, eta)]
    assert got == katib_rounds(r_l, eta)


def test_the_schedule_for_r81_eta3_in_katibs_numbers():
    rounds = hyperband.schedule(81, 3)
    by_bracket: dict[int, list[tuple[int, int]]] = {}
    for r in rounds:
        by_bracket.setdefault(r.bracket, []).append((r.size, r.budget))
    # Katib rounds the promoted count up (ceil(n_i / eta)); the paper's table rounds down (34, 11, 3, 1)
    assert by_bracket == {4: [(81, 1), (27, 3), (9, 9), (3, 27), (1, 81)],
                          3: [(34, 3), (12, 9), (4, 27), (2, 81)],
                          2: [(15, 9), (5, 27), (2, 81)],
                          1: [(8, 27), (3, 81)],
                          0: [(5, 81)]}
    assert [r.bracket for r in rounds] == [4] * 5 + [3] * 4 + [2] * 3 + [1] * 2 + [0]
    # Katib's float arithmetic, kept: log(1000) / log(10) is 2.9999999999999996, so s_max is 2
    assert [(r.size, r.budget) for r in hyperband.schedule(1000, 10) if r.bracket == 2] == [(100, 10), (10, 100), (1, 1000)]


def experiment(grid_file, direction="minimize", **edits):
    text = SWEEP.replace("DIRECTION", direction)
    for old, new in edits.items():
        text = text.replace(old, new)
    return load_experiment(grid_file(text)).experiment


def drive(exp, value=lambda p: p["lr"], states=None, batches=None):
    """Ask, 'run' and record batch after batch, as sweep.run does; ``states`` gives a trial's state."""
    trials = search.expand(exp, loads("parameters: {}\n", "grid.yaml")[1])
    done: dict = {}
    asked = 1
    while True:
        for t in trials:
            state = (states or {}).get(t.name, "succeeded")
            done.setdefault(t.name, {"state": state, "metrics": {"loss": value(t.params)} if state == "succeeded" else {}})
        if batches is not None and asked >= batches:
            return trials, done
        following = search.next_batch(exp, trials, done, WHERE)
        if not following:
            return trials, done
        trials, asked = trials + following, asked + 1


def rounds_of(trials, exp):
    """The asked trials cut into the schedule's rounds."""
    out, start = [], 0
    for r in hyperband.schedule(hyperband.max_resource(exp), hyperband.eta(exp)):
        out.append((r, trials[start:start + r.size]))
        start += r.size
    assert start == len(trials)
    return out


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_every_round_runs_its_budget_and_promotes_the_best_of_the_round_before(grid_file, direction):
    exp = experiment(grid_file, direction)
    trials, done = drive(exp)
    assert len(trials) == 9 + 3 + 1 + 5 + 2 + 3  # R = 9 (epochs' max), eta 3: brackets 9-3-1, 5-2, 3
    rounds = rounds_of(trials, exp)
    assert [(r.bracket, r.index, r.size, r.budget) for r, _ in rounds] == katib_rounds(9, 3)
    for (r, ts), (prev_r, prev) in zip(rounds[1:], rounds):
        assert {t.params["epochs"] for t in ts} == {r.budget}
        assert len({t.batch for t in ts}) == 1  # a round fits the batch here: one batch each
        if r.index == 0:
            continue
        ranked = sorted(prev, key=lambda t: done[t.name]["metrics"]["loss"], reverse=direction == "maximize")
        expected = [{**t.params, "epochs": r.budget} for t in ranked[:r.size]]
        assert [t.params for t in ts] == expected  # best first, as Katib's _get_top_trial sorts them
    assert {t.params["epochs"] for t in rounds[0][1]} == {1}
    # the first rounds of the three brackets draw distinct configurations
    firsts = [(t.params["lr"], t.params["opt"]) for r, ts in rounds if r.index == 0 for t in ts]
    assert len(firsts) == len(set(firsts)) == 9 + 5 + 3


def test_promotion_follows_the_results_not_the_order(grid_file):
    exp = experiment(grid_file)
    first = search.expand(exp, loads("parameters: {}\n", "grid.yaml")[1])
    worst_first = {t.name: {"state": "succeeded", "metrics": {"loss": -i}} for i, t in enumerate(first)}
    promoted = search.next_batch(exp, first, worst_first, WHERE)
    assert [t.params["lr"] for t in promoted] == [t.params["lr"] for t in first[::-1][:3]]
    assert {t.params["epochs"] for t in promoted} == {3}


def test_the_same_seed_and_history_ask_the_same_trials_and_a_partial_history_resumes(grid_file):
    exp = experiment(grid_file, **{"batchSize: 9": "batchSize: 4"})  # a round of 9 takes three batches
    trials, done = drive(exp)
    again, _ = drive(exp)
    assert [t.name for t in trials] == [t.name for t in again]
    batches = sorted({t.batch for t in trials})
    for b in batches[:-1]:  # killed after batch b: the same next batch, from the journal
        before = [t for t in trials if t.batch <= b]
        journal = {t.name: done[t.name] for t in before}
        assert search.next_batch(exp, before, journal, WHERE) == [t for t in trials if t.batch == b + 1]
    assert search.next_batch(exp, trials, done, WHERE) == []  # the last bracket is the end
    sizes = [len([t for t in trials if t.batch == b]) for b in batches]
    assert sizes == [4, 4, 1, 3, 1, 4, 1, 2, 3]  # a batch never spans two rounds
    other = experiment(grid_file, **{"seed: 1": "seed: 2"})
    assert search.expand(other, loads("parameters: {}\n", "grid.yaml")[1])[0].params != trials[0].params


def test_a_failed_trial_stops_the_promotion_as_katib_does_until_it_is_rerun(grid_file):
    exp = experiment(grid_file)
    first = search.expand(exp, loads("parameters: {}\n", "grid.yaml")[1])
    done = {t.name: {"state": "succeeded", "metrics": {"loss": t.params["lr"]}} for t in first}
    done[first[4].name] = {"state": "failed", "metrics": {}}
    done[first[6].name] = {"state": "succeeded", "metrics": {}}  # exited 0 without the metric
    with pytest.raises(SpecError) as info:
        search.next_batch(exp, first, done, WHERE)
    message = str(info.value)
    assert "grid.yaml:4:3: hyperband stops before bracket 2 round 1" in message
    assert f"{first[4].name} (failed)" in message and f"{first[6].name} (succeeded)" in message
    assert first[0].name not in message and "--retry-failed" in message
    # rerun (--retry-failed): the round is promoted as if it had never failed
    done[first[4].name] = {"state": "succeeded", "metrics": {"loss": 0.5}}
    done[first[6].name] = {"state": "succeeded", "metrics": {"loss": 0.0001}}
    promoted = search.next_batch(exp, first, done, WHERE)
    assert promoted[0].params["lr"] == first[6].params["lr"]
    assert first[4].params["lr"] not in [t.params["lr"] for t in promoted]


def test_a_failed_trial_in_a_brackets_last_round_does_not_stop_the_next_bracket(grid_file):
    exp = experiment(grid_file)
    trials, done = drive(exp, batches=3)  # bracket 2: 9, 3, then its last round of 1
    last = trials[-1]
    assert last.params["epochs"] == 9
    done[last.name] = {"state": "failed", "metrics": {}}
    following = search.next_batch(exp, trials, done, WHERE)  # Katib's master bracket checks nothing
    assert len(following) == 5 and {t.params["epochs"] for t in following} == {3}


def test_settings_changed_under_the_sweep_are_refused(grid_file):
    exp = experiment(grid_file)
    trials, done = drive(exp, batches=2)
    changed = experiment(grid_file, **{"eta: 3": "eta: 2"})
    with pytest.raises(SpecError, match="the hyperband settings changed under the sweep"):
        search.next_batch(changed, trials, done, WHERE)


def test_a_resumed_sweep_reads_budgets_outside_the_resource_range_from_plan_json(grid_file, tmp_path):
    path = grid_file(SWEEP.replace("DIRECTION", "minimize").replace("epochs: {min: 1, max: 9}",
                                                                   "epochs: {min: 1, max: 2}")
                     .replace("seed: 1}", "seed: 1, maxResource: 9}"))
    p = planner.plan(path)
    trials, done = drive(p.experiment, batches=2)
    p.trials = trials
    planner.write(p, tmp_path / "jobs")
    back = adaptive.asked(p.experiment, tmp_path / "jobs", planner.PLAN_FILE)
    assert [t.params for t in back] == [t.params for t in trials]
    assert {t.params["epochs"] for t in back} == {1, 3}


@pytest.mark.parametrize("edit, message", [
    ({", resource: epochs": ""}, "grid.yaml:8:21: hyperband search needs search.resource"),
    ({"resource: epochs": "resource: epoch"}, "search.resource names 'epoch', which is not a parameter"),
    ({"resource: epochs": "resource: opt"}, "search.resource 'opt' must be an int or float range"),
    ({"eta: 3": "eta: 1"}, "grid.yaml:8:55: search.eta must be at least 2"),
    ({"seed: 1}": "seed: 1, maxResource: 0.5}"}, "search.maxResource must be at least 1"),
    ({"algorithm: hyperband, resource: epochs, eta: 3": "algorithm: tpe, eta: 3"}, "search.eta applies to hyperband"),
    ({"objective: {metric: loss, direction: minimize}": "objective: {}"}, "hyperband search needs objective.metric"),
])
def test_bad_native_settings_are_refused_where_written(grid_file, edit, message):
    with pytest.raises(SpecError) as info:
        experiment(grid_file, **edit)
    assert message in str(info.value)


def test_katibs_hyperband_example_renders_as_katib_runs_it(tmp_path):
    p = planner.plan(CORPUS)
    s = p.experiment.search
    assert (s.algorithm, s.resource, s.eta, s.max_resource, s.trials, p.experiment.batch_size) == (
        "hyperband", "num-epochs", 2, 2, 2, 2)
    # r_l 2, eta 2: s_max 1, the first bracket's 2 trials at int(2 * 2^-1) = 1 epoch; maxTrialCount 2 ends there
    assert [t.params["num-epochs"] for t in p.trials] == [1, 1]
    assert all(0.01 <= t.params["lr"] <= 0.05 and 0.5 <= t.params["momentum"] <= 0.9 for t in p.trials)
    planner.write(p, tmp_path / "jobs")
    job = next((tmp_path / "jobs").rglob("batch-000/*.yaml")).read_text()
    assert "--epochs=1" in job


def katib(tmp_path, settings: str, parallel: str = "2", parameter: str = "int") -> str:
    text = open(CORPUS).read()
    text = text.replace("""      - name: "resource_name"
        value: "num-epochs"
      - name: "eta"
        value: "2"
      - name: "r_l"
        value: "2"
""", settings).replace("parallelTrialCount: 2", f"parallelTrialCount: {parallel}")
    text = text.replace("""    - name: num-epochs
      parameterType: int
      feasibleSpace:
        min: "1"
        max: "1\"""", f"""    - name: num-epochs
      parameterType: {parameter}
      feasibleSpace:
        {'list: ["1", "2"]' if parameter in ('discrete', 'categorical') else 'min: "1"'}
        {'' if parameter in ('discrete', 'categorical') else 'max: "1"'}""")
    path = tmp_path / "katib.yaml"
    path.write_text(text)
    return str(path)


RN = '      - {name: resource_name, value: num-epochs}\n'


@pytest.mark.parametrize("settings, parallel, parameter, message", [
    (RN, "2", "int", "katib.yaml:17:7: Katib's hyperband needs the settings r_l and resource_name"),
    ('      - {name: r_l, value: "9"}\n', "9", "int", "r_l and resource_name must be set"),
    ('      - {name: resource_name, value: epochs}\n      - {name: r_l, value: "2"}\n', "2", "int",
     "katib.yaml:17:38: resource_name 'epochs' is not a parameter"),
    (RN + '      - {name: r_l, value: "2"}\n', "2", "categorical", "katib.yaml:17:38: resource_name 'num-epochs' is a "
     "categorical parameter"),
    (RN + '      - {name: r_l, value: "-1"}\n', "2", "int", "katib.yaml:18:28: algorithm setting r_l must be a positive"),
    (RN + '      - {name: r_l, value: "0.5"}\n', "2", "int", "katib.yaml:18:28: search.maxResource must be at least 1"),
    (RN + '      - {name: r_l, value: "9"}\n      - {name: eta, value: "2.5"}\n', "9", "int",
     "katib.yaml:19:28: algorithm setting eta must be a whole number"),
    (RN + '      - {name: r_l, value: "9"}\n      - {name: eta, value: "1"}\n', "9", "int",
     "katib.yaml:19:28: search.eta must be at least 2"),
    (RN + '      - {name: r_l, value: "9"}\n', "8", "int",
     "katib.yaml:8:23: Katib's hyperband needs parallelTrialCount of at least eta^s_max = 9"),
    (RN + '      - {name: r_l, value: "9"}\n      - {name: s_max, value: "2"}\n', "9", "int",
     "unknown setting 's_max' for Katib's hyperband"),
])
def test_katib_hyperband_settings_are_validated_as_katib_does(tmp_path, settings, parallel, parameter, message):
    with pytest.raises(SpecError) as info:
        planner.plan(katib(tmp_path, settings, parallel, parameter))
    assert message in str(info.value)


def test_katib_hyperband_defaults_eta_to_3_and_takes_a_double_resource(tmp_path):
    p = planner.plan(katib(tmp_path, RN + '      - {name: r_l, value: "9"}\n      - {name: eta, value: "0"}\n',
                           "9", "double"))
    assert (p.experiment.search.eta, p.experiment.search.max_resource) == (3, 9)  # Katib: eta <= 0 is 3
    assert len(p.trials) == 2 and {t.params["num-epochs"] for t in p.trials} == {1}  # maxTrialCount 2 of the 9


def test_a_small_space_gives_a_bracket_the_configurations_it_has(grid_file):
    exp = experiment(grid_file, **{"lr: {min: 0.001, max: 0.1, scale: log}": "lr: [0.01, 0.1]",
                                   "seed: 1}": "seed: 1, trials: 20}"})  # 20 trials, 4 configurations
    trials, done = drive(exp)
    # bracket 2 starts the 4 configurations there are (of 9), promotes 3 and 1; brackets 1 and 0 find none new
    assert [t.params["epochs"] for t in trials] == [1, 1, 1, 1, 3, 3, 3, 9]
    assert len({(t.params["lr"], t.params["opt"]) for t in trials[:4]}) == 4
    assert sorted(t.params["lr"] for t in trials[4:7]) == [0.01, 0.01, 0.1]
