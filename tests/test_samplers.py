"""The samplers asked batch by batch (plan/adaptive.py): multivariate-tpe, cmaes, sobol, gp, random
without a count; Katib's algorithms and settings, metric strategies and distributions."""

from __future__ import annotations

import json
import math
import random
import statistics

import pytest
from hypothesis import given, settings, strategies as st

from kubesweep.errors import Mark, SpecError
from kubesweep.plan import adaptive, search
from kubesweep.plan import planner as render
from kubesweep.spec.formats import load_experiment
from kubesweep.spec.space import domains
from kubesweep.spec.yamlsource import loads

from .conftest import EXAMPLES

WHERE = Mark("grid.yaml", 4, 3)

SWEEP = """\
name: demo
image: localhost:5000/demo/trainer:1
command: [python3, train.py, "${x}", "${y}", "${opt}"]
parameters:
  x: {min: -5.0, max: 5.0}
  y: {min: -5.0, max: 5.0}
  opt: [adam, sgd]
search: {algorithm: ALGORITHM, trials: 48, seed: 3}
batchSize: 6
objective: {metric: loss, direction: minimize}
"""


def loss(p):
    """A bowl with its bottom at x=1.5, y=-2 (opt adds a little)."""
    return (p["x"] - 1.5) ** 2 + (p["y"] + 2) ** 2 + (0.5 if p["opt"] == "sgd" else 0.0)


def experiment(grid_file, algorithm, text=SWEEP, **edits):
    for old, new in edits.items():
        text = text.replace(old, new)
    return load_experiment(grid_file(text.replace("ALGORITHM", algorithm))).experiment


def drive(exp, batches=None, value=loss):
    """Ask, 'run' and record batch after batch, as sweep.run does."""
    trials = search.expand(exp, loads("parameters: {}\n", "grid.yaml")[1])
    done, asked = {}, 1
    while True:
        for t in trials:
            done.setdefault(t.name, {"state": "succeeded", "metrics": {"loss": value(t.params)}})
        if batches is not None and asked >= batches:
            return trials, done
        following = search.next_batch(exp, trials, done, WHERE)
        if not following:
            return trials, done
        trials, asked = trials + following, asked + 1


@pytest.mark.parametrize("algorithm", ["tpe", "multivariate-tpe", "cmaes", "sobol", "nsga2"])
def test_the_same_seed_and_history_ask_the_same_batch_and_nothing_twice(grid_file, algorithm):
    exp = experiment(grid_file, algorithm)
    trials, done = drive(exp, batches=4)
    first = search.next_batch(exp, trials, done, WHERE)
    again = search.next_batch(exp, list(trials), dict(done), WHERE)
    assert len(first) == 6 and [t.params for t in first] == [t.params for t in again]
    everything = trials + first
    assert len({t.name for t in everything}) == len(everything)
    for t in everything:
        assert -5 <= t.params["x"] <= 5 and -5 <= t.params["y"] <= 5 and t.params["opt"] in ("adam", "sgd")
    # another seed asks another batch (the seed is used at all)
    other = experiment(grid_file, algorithm, **{"seed: 3": "seed: 4"})
    assert [t.params for t in drive(other, batches=1)[0]] != [t.params for t in trials[:6]]


@pytest.mark.parametrize("algorithm", ["tpe", "cmaes"])
def test_a_model_based_sampler_ends_nearer_the_optimum_than_random_search(grid_file, algorithm):
    model = experiment(grid_file, algorithm)
    trials, done = drive(model)
    assert len(trials) == 48
    rand = experiment(grid_file, "random")
    r_trials, r_done = drive(rand)
    late = statistics.median(done[t.name]["metrics"]["loss"] for t in trials[-12:])
    r_late = statistics.median(r_done[t.name]["metrics"]["loss"] for t in r_trials[-12:])
    assert late < r_late / 3, (late, r_late)


def test_cmaes_rebuilds_its_distribution_from_the_journal(grid_file):
    """CMA-ES's mean moves to the optimum: generations are replayed from finished trials."""
    exp = experiment(grid_file, "cmaes", **{"trials: 48": "trials: 120"})
    trials, done = drive(exp)
    last = trials[-12:]
    assert statistics.mean(abs(t.params["x"] - 1.5) + abs(t.params["y"] + 2) for t in last) < 0.5
    # failed trials are not told: a history of failures alone still asks a full batch
    first = trials[:6]
    failed = {t.name: {"state": "failed", "metrics": {}} for t in first}
    assert len(search.next_batch(exp, first, failed, WHERE)) == 6


def test_cmaes_needs_two_numeric_ranges_as_katib_does(grid_file):
    with pytest.raises(SpecError, match="cmaes search needs at least two numeric range parameters"):
        experiment(grid_file, "cmaes", **{"y: {min: -5.0, max: 5.0}": "y: [-1.0, 1.0]"})


def test_sobol_fills_the_space_evenly_and_continues_its_sequence(grid_file):
    exp = experiment(grid_file, "sobol", **{"trials: 48": "trials: 64", "batchSize: 6": "batchSize: 8"})
    trials, _ = drive(exp)
    assert len(trials) == 64
    # the first 64 points of a (scrambled) Sobol sequence: each eighth of each range holds exactly 8
    for name in ("x", "y"):
        strips = [min(int((t.params[name] + 5) / 10 * 8), 7) for t in trials]
        assert sorted(strips.count(i) for i in range(8)) == [8] * 8, name
    # the same sequence whether asked in batches of 8 or at once
    whole = adaptive.suggest(exp, [], 0, 64)
    assert whole == [t.params for t in trials]


def test_random_search_without_a_count_is_the_seeded_stream_batch_by_batch(grid_file):
    unbounded = experiment(grid_file, "random", **{"trials: 48, ": ""})
    bounded = experiment(grid_file, "random", **{"trials: 48": "trials: 18"})
    plan = search.expand(bounded, loads("parameters: {}\n", "grid.yaml")[1])
    trials, _ = drive(unbounded, batches=3)
    assert [t.params for t in trials] == [t.params for t in plan] and [t.batch for t in trials] == [t.batch for t in plan]
    assert adaptive.incremental(unbounded) and not adaptive.incremental(bounded)
    # search.trialLimit still bounds it
    capped = experiment(grid_file, "random", **{"trials: 48, ": "trialLimit: 8, "})
    assert len(drive(capped)[0]) == 8


def test_gp_without_torch_is_refused_with_the_reason(grid_file):
    if adaptive.torch_missing() is None:
        pytest.skip("torch is installed here: gp runs (test_gp_asks_distinct_deterministic_batches)")
    with pytest.raises(SpecError, match="gp search needs torch"):
        experiment(grid_file, "gp")


def test_gp_asks_distinct_deterministic_batches(grid_file):
    pytest.importorskip("torch")
    exp = experiment(grid_file, "gp", **{"trials: 48": "trials: 18"})
    trials, done = drive(exp, batches=2)
    first = search.next_batch(exp, trials, done, WHERE)
    assert [t.params for t in first] == [t.params for t in search.next_batch(exp, trials, done, WHERE)]
    assert len({(t.params["x"], t.params["y"]) for t in first}) == 6


def test_settings_for_another_algorithm_are_refused_where_written(grid_file):
    with pytest.raises(SpecError) as info:
        experiment(grid_file, "cmaes", **{"seed: 3}": "seed: 3, startupTrials: 2, sigma: 0}"})
    text = str(info.value)
    assert "search.startupTrials applies to tpe and multivariate-tpe and gp search, not cmaes" in text
    assert "search.sigma must be above 0" in text
    with pytest.raises(SpecError, match=r"grid.yaml:8:\d+: search.gamma must be between 0 and 1"):
        experiment(grid_file, "tpe", **{"seed: 3}": "seed: 3, gamma: 1.5}"})


def test_tpe_settings_reach_the_sampler(grid_file):
    exp = experiment(grid_file, "tpe", **{"seed: 3}": "seed: 3, startupTrials: 0, eiCandidates: 2, gamma: 0.25}"})
    sampler = adaptive._sampler(exp, 0)
    assert sampler._n_startup_trials == 0 and sampler._n_ei_candidates == 2
    assert sampler._gamma(100) == math.ceil(0.25 * 10)  # hyperopt's split, as Katib's tpe
    trials, _ = drive(exp, batches=2)
    assert len(trials) == 12


# ---------------------------------------------------------------- Katib

def _katib(tmp_path, algorithm, settings="", extra=""):
    text = (EXAMPLES / "katib.yaml").read_text()
    text = text.replace("""    algorithmName: random
    algorithmSettings:
      - name: random_state
        value: "7"
""", f"    algorithmName: {algorithm}\n" + (f"    algorithmSettings:\n{settings}" if settings else ""))
    text = text.replace('feasibleSpace: {min: "2", max: "8"}', 'feasibleSpace: {min: "2", max: "8"}' + extra)
    path = tmp_path / "katib.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("katib, native, settings, search", [
    ("tpe", "tpe", '      - {name: n_EI_candidates, value: "12"}\n      - {name: gamma, value: "0.3"}\n'
     '      - {name: prior_weight, value: "2"}\n      - {name: random_state, value: "5"}\n',
     {"eiCandidates": 12, "gamma": 0.3, "priorWeight": 2.0, "seed": 5}),
    ("multivariate-tpe", "multivariate-tpe", '      - {name: n_startup_trials, value: "3"}\n'
     '      - {name: n_ei_candidates, value: "30"}\n', {"startupTrials": 3, "eiCandidates": 30}),
    ("cmaes", "cmaes", '      - {name: sigma, value: "0.2"}\n      - {name: restart_strategy, value: none}\n'
     '      - {name: random_state, value: "1"}\n', {"sigma": 0.2, "seed": 1}),
    ("cmaes", "cmaes", '      - {name: restart_strategy, value: bipop}\n', {"restartStrategy": "bipop"}),
    ("sobol", "sobol", "", {}),
])
def test_katib_algorithms_and_settings_become_the_native_search(tmp_path, katib, native, settings, search):
    exp = load_experiment(_katib(tmp_path, katib, settings)).experiment
    got = exp.search.model_dump(by_alias=True, exclude_defaults=True)
    assert got == {"algorithm": native, "trials": 9, **search}
    assert len(render.plan(_katib(tmp_path, katib, settings)).trials) == 3


@pytest.mark.parametrize("algorithm, settings, message", [
    ("cmaes", "      - {name: restart_strategy, value: always}\n",
     "algorithm setting restart_strategy must be none, ipop or bipop"),
    ("bayesianoptimization", "      - {name: base_estimator, value: RF}\n",
     "algorithm setting base_estimator of bayesianoptimization is not supported: kubesweep's bayesian optimisation"),
    ("bayesianoptimization", "      - {name: acq_func, value: gp_hedge}\n", "only EI"),
    ("sobol", "      - {name: random_state, value: \"1\"}\n",
     "unknown setting 'random_state' for Katib's sobol (it takes no settings)"),
    ("multivariate-tpe", "      - {name: gamma, value: \"0.2\"}\n", "unknown setting 'gamma' for Katib's multivariate-tpe"),
    ("enas", "", "algorithm enas is not supported: neural architecture search is out of scope"),
    ("tpe-ish", "", "unknown Katib algorithm (known: random, grid, tpe, multivariate-tpe, bayesianoptimization"),
])
def test_katib_settings_without_an_optuna_equivalent_or_unknown_are_refused(tmp_path, algorithm, settings, message):
    with pytest.raises(SpecError) as info:
        render.plan(_katib(tmp_path, algorithm, settings))
    assert message in str(info.value)
    assert "katib.yaml:1" in str(info.value)  # file:line of the setting (lines 12-17)


def test_katib_bayesianoptimization_is_gp(tmp_path):
    path = _katib(tmp_path, "bayesianoptimization", '      - {name: n_initial_points, value: "4"}\n'
                  '      - {name: base_estimator, value: GP}\n      - {name: acq_func, value: EI}\n')
    if adaptive.torch_missing():
        with pytest.raises(SpecError, match=r"katib.yaml:15:\d+: gp search needs torch"):
            load_experiment(path)
    else:
        exp = load_experiment(path).experiment
        assert exp.search.algorithm == "gp" and exp.search.startup_trials == 4


def test_katib_metric_strategies_default_as_katib_and_are_read_as_given(tmp_path):
    exp = load_experiment(_katib(tmp_path, "random")).experiment
    assert exp.objective.strategies == {"accuracy": "max", "loss": "max"}  # Katib's defaults for type: maximize
    text = _katib(tmp_path, "random").read_text().replace(
        "    additionalMetricNames: [loss]\n",
        "    additionalMetricNames: [loss]\n    metricStrategies:\n      - {name: loss, value: min}\n"
        "      - {name: accuracy, value: latest}\n")
    (tmp_path / "katib.yaml").write_text(text)
    exp = load_experiment(tmp_path / "katib.yaml").experiment
    assert exp.objective.strategies == {"accuracy": "latest", "loss": "min"}
    (tmp_path / "katib.yaml").write_text(text.replace("{name: loss, value: min}", "{name: los, value: min}"))
    with pytest.raises(SpecError, match=r"katib.yaml:15:\d+: a metric strategy names the objective metric or an "
                       r"additional metric \(accuracy, loss\) \(got 'los'\)"):
        load_experiment(tmp_path / "katib.yaml")


def test_katib_normal_and_lognormal_take_mu_and_sigma_from_the_range(tmp_path):
    text = _katib(tmp_path, "random").read_text().replace(
        'feasibleSpace: {min: "0.001", max: "0.1", distribution: logUniform}',
        'feasibleSpace: {min: "0.001", max: "0.1", distribution: logNormal}').replace(
        'feasibleSpace: {min: "2", max: "8"}', 'feasibleSpace: {min: "2", max: "8", distribution: normal}')
    (tmp_path / "katib.yaml").write_text(text)
    exp = load_experiment(tmp_path / "katib.yaml").experiment
    doms = {d.name: d for d in domains(exp.parameters)}
    assert doms["epochs"].mu == 5.0 and doms["epochs"].sigma == 1.0
    assert doms["lr"].log and doms["lr"].mu == pytest.approx(math.log(0.01)) and doms["lr"].sigma == pytest.approx(
        (math.log(0.1) - math.log(0.001)) / 6)
    draws = [doms["lr"].sample(random.Random(i)) for i in range(400)]
    assert all(0.001 <= x <= 0.1 for x in draws)
    # log-normal around 0.01: about two thirds within one sigma (a factor of 10^(1/3)) of it
    near = sum(0.01 / 10 ** (1 / 3) <= x <= 0.01 * 10 ** (1 / 3) for x in draws) / len(draws)
    assert 0.58 < near < 0.78, near


# ---------------------------------------------------------------- distributions

@settings(max_examples=40, deadline=None)
@given(lo=st.floats(-1e3, 1e3), width=st.floats(1e-3, 1e3), mu_at=st.floats(0, 1), sigma=st.floats(1e-3, 1e3),
       seed=st.integers(0, 2**32 - 1))
def test_normal_draws_stay_in_the_range(lo, width, mu_at, sigma, seed):
    from kubesweep.spec.model import Parameter
    from kubesweep.spec.space import domain

    p = Parameter(min=lo, max=lo + width, distribution="normal", mu=lo + mu_at * width, sigma=sigma)
    d = domain("x", p)
    rng = random.Random(seed)
    for _ in range(20):
        assert lo <= d.sample(rng) <= lo + width


def test_normal_draws_cluster_around_mu(grid_file):
    exp = experiment(grid_file, "random", **{"x: {min: -5.0, max: 5.0}": "x: {min: -5.0, max: 5.0, distribution: normal, mu: 2.0, sigma: 0.5}",
                                              "trials: 48": "trials: 200"})
    xs = [t.params["x"] for t in drive(exp)[0]]
    assert abs(statistics.mean(xs) - 2.0) < 0.15 and 0.35 < statistics.stdev(xs) < 0.65


def test_a_distribution_on_listed_values_or_a_grid_is_refused(grid_file):
    with pytest.raises(SpecError, match="distribution shapes how a min/max range is drawn, not listed values"):
        experiment(grid_file, "random", **{"opt: [adam, sgd]": "opt: {values: [adam, sgd], distribution: normal}"})
    with pytest.raises(SpecError, match="grid search walks every point; distribution normal is how random search draws"):
        experiment(grid_file, "grid", **{"x: {min: -5.0, max: 5.0}": "x: {min: -5.0, max: 5.0, step: 1.0, distribution: normal}",
                                          "y: {min: -5.0, max: 5.0}": "y: [1, 2]", "trials: 48, ": ""})


# ---------------------------------------------------------------- several objectives

MULTI = SWEEP.replace("objective: {metric: loss, direction: minimize}",
                      "objective:\n  metric: loss\n  direction: minimize\n"
                      "  additionalObjectives: [{metric: cost, direction: minimize}]")


def cost(p):
    """Competes with loss: cheapest at x=-4, y=3."""
    return (p["x"] + 4) ** 2 + (p["y"] - 3) ** 2


def drive_two(exp, batches=None):
    trials = search.expand(exp, loads("parameters: {}\n", "grid.yaml")[1])
    done, asked = {}, 1
    while True:
        for t in trials:
            done.setdefault(t.name, {"name": t.name, "params": t.params, "state": "succeeded",
                                     "metrics": {"loss": loss(t.params), "cost": cost(t.params)}})
        if batches is not None and asked >= batches:
            return trials, done
        following = search.next_batch(exp, trials, done, WHERE)
        if not following:
            return trials, done
        trials, asked = trials + following, asked + 1


@pytest.mark.parametrize("algorithm", ["tpe", "sobol"])
def test_two_objectives_are_asked_of_a_multi_objective_study_deterministically(grid_file, algorithm):
    exp = experiment(grid_file, algorithm, MULTI)
    trials, done = drive_two(exp, batches=3)
    assert [t.params for t in search.next_batch(exp, trials, done, WHERE)] == \
        [t.params for t in search.next_batch(exp, list(trials), dict(done), WHERE)]
    assert len({t.name for t in trials}) == len(trials)


def test_multi_objective_tpe_spreads_along_the_front_better_than_random(grid_file):
    """Points on the segment between the two optima are Pareto-optimal; TPE's later trials lie
    nearer to it than random search's."""
    from kubesweep.run.pareto import pareto_front

    model_trials, model_done = drive_two(experiment(grid_file, "tpe", MULTI))
    rand_trials, _ = drive_two(experiment(grid_file, "random", MULTI))
    late = statistics.median(off_front(t.params) for t in model_trials[-12:])
    r_late = statistics.median(off_front(t.params) for t in rand_trials[-12:])
    assert late < r_late / 2, (late, r_late)
    front = pareto_front(list(model_done.values()), [("loss", "minimize"), ("cost", "minimize")])
    assert len(front) >= 3


def test_two_objectives_with_one_metric_or_on_cmaes_are_refused(grid_file):
    with pytest.raises(SpecError, match=r"grid.yaml:13:\d+: two objectives with the same metric 'loss' "
                       r"\(objective.metric and this one\)"):
        experiment(grid_file, "tpe", MULTI.replace("{metric: cost,", "{metric: loss,"))
    with pytest.raises(SpecError, match="cmaes search optimises one objective"):
        experiment(grid_file, "cmaes", MULTI)


def test_a_goal_on_several_objectives_is_met_when_one_trial_meets_them_all(grid_file):
    from kubesweep.run.book import meets_goal

    exp = experiment(grid_file, "tpe", MULTI.replace("direction: minimize\n  additional", "direction: minimize\n"
                     "  goal: 1.0\n  additional").replace("direction: minimize}]", "direction: minimize, goal: 5}]"))
    assert meets_goal(exp.objective, {"loss": 0.5, "cost": 4.0})
    assert not meets_goal(exp.objective, {"loss": 0.5, "cost": 6.0})
    assert not meets_goal(exp.objective, {"loss": 0.5})


def test_strategies_in_the_sweep_file_choose_the_value_read(grid_file):
    from kubesweep.run.metrics import read_metric, read_objective

    log = "epoch=1 loss=0.9 acc=0.5\nepoch=2 loss=0.4 acc=0.8\nepoch=3 loss=0.6 acc=0.7\n"
    assert [read_metric(log, "loss", strategy=s) for s in ("min", "max", "latest")] == [0.4, 0.9, 0.6]
    exp = experiment(grid_file, "tpe", SWEEP.replace(
        "objective: {metric: loss, direction: minimize}",
        "objective: {metric: loss, direction: minimize, additionalMetrics: [acc], strategies: {loss: min, acc: max}}"))
    assert read_objective(log, exp.objective) == {"loss": 0.4, "acc": 0.8}
    with pytest.raises(SpecError, match=r"objective.strategies.loss must be one of 'min', 'max' or 'latest'"):
        experiment(grid_file, "tpe", SWEEP.replace("direction: minimize}", "direction: minimize, strategies: {loss: mean}}"))
    with pytest.raises(SpecError, match=r"objective.strategies names 'los', which is not an objective or additional "
                       r"metric \(did you mean 'loss'\?\)"):
        experiment(grid_file, "tpe", SWEEP.replace("direction: minimize}", "direction: minimize, strategies: {los: min}}"))


def test_the_report_of_two_objectives_holds_the_pareto_front(grid_file, tmp_path):
    from kubesweep import sweep as sweeps

    plan = render.plan(grid_file(MULTI.replace("ALGORITHM", "tpe")))
    trials, done = drive_two(plan.experiment, batches=2)
    plan.trials = trials
    files = sweeps.report(plan, tmp_path, {n: {**r, "batch": "batch-000"} for n, r in done.items()})
    summary = json.loads(files["best"].read_text())
    front = summary["pareto_front"]
    points = {t.name: (loss(t.params), cost(t.params)) for t in trials}
    expected = sorted(n for n, p in points.items()
                      if not any(q[0] <= p[0] and q[1] <= p[1] and q != p for q in points.values()))
    assert sorted(p["trial"] for p in front) == expected and expected
    assert set(front[0]["values"]) == {"loss", "cost"}
    assert "cost" in (tmp_path / "demo" / "trials.csv").read_text().splitlines()[0]


# ---------------------------------------------------------------- W&B

def _wandb(tmp_path, method="random", params=None, cap="run_cap: 8\n"):
    text = (EXAMPLES / "wandb.yaml").read_text().replace("method: random\nrun_cap: 8\n", f"method: {method}\n{cap}")
    if params is not None:
        text = text.replace("""  lr:
    distribution: log_uniform_values
    min: 0.001
    max: 0.1
""", params)
    path = tmp_path / "wandb.yaml"
    path.write_text(text)
    return path


IMAGE = "localhost:5000/kubesweep/mnist:latest"


@pytest.mark.parametrize("spec, native", [
    ("distribution: normal\n    mu: 0.5\n    sigma: 0.1\n",
     {"type": "float", "distribution": "normal", "mu": 0.5, "sigma": 0.1, "min": 0.5 - 0.3, "max": 0.5 + 0.3}),
    ("distribution: log_normal\n    mu: -4.0\n    sigma: 1.0\n",
     {"type": "float", "distribution": "normal", "mu": -4.0, "sigma": 1.0, "scale": "log",
      "min": math.exp(-7.0), "max": math.exp(-1.0)}),
    ("distribution: q_normal\n    mu: 32\n    sigma: 8\n    q: 4\n",
     {"type": "int", "distribution": "normal", "mu": 32, "sigma": 8, "min": 8, "max": 56, "step": 4}),
    ("distribution: inv_log_uniform_values\n    min: 0.001\n    max: 0.1\n",
     {"type": "float", "scale": "log", "min": 0.001, "max": 0.1}),
    ("distribution: inv_log_uniform\n    min: 1\n    max: 5\n",
     {"type": "float", "scale": "log", "min": math.exp(-5), "max": math.exp(-1)}),
])
def test_wandb_distributions_become_native_parameters(tmp_path, spec, native):
    exp = load_experiment(_wandb(tmp_path, params="  lr:\n    " + spec), image=IMAGE).experiment
    got = exp.parameters["lr"].model_dump(by_alias=True, exclude_defaults=True)
    assert got == pytest.approx(native)
    lr = [t.params["lr"] for t in render.plan(_wandb(tmp_path, params="  lr:\n    " + spec), image=IMAGE).trials]
    assert all(native["min"] <= x <= native["max"] for x in lr) and len(lr) == 8


def test_wandb_q_normal_draws_multiples_of_q_around_mu(tmp_path):
    path = _wandb(tmp_path, params="  lr:\n    distribution: q_normal\n    mu: 32\n    sigma: 8\n    q: 4\n",
                  cap="run_cap: 100\n")
    lr = [t.params["lr"] for t in render.plan(path, image=IMAGE).trials]
    assert all(x % 4 == 0 for x in lr) and abs(statistics.mean(lr) - 32) < 2.5


def test_wandb_random_without_run_cap_runs_batch_by_batch(tmp_path):
    exp = load_experiment(_wandb(tmp_path, cap=""), image=IMAGE).experiment
    assert exp.search.trials is None and adaptive.incremental(exp)
    assert len(render.plan(_wandb(tmp_path, cap=""), image=IMAGE).trials) == exp.batch_size


def test_wandb_bayes_is_gp(tmp_path):
    path = _wandb(tmp_path, method="bayes")
    if adaptive.torch_missing():
        with pytest.raises(SpecError, match=r"wandb.yaml:5:9: gp search needs torch"):
            load_experiment(path, image=IMAGE)
    else:
        assert load_experiment(path, image=IMAGE).experiment.search.algorithm == "gp"


def test_wandb_normal_takes_mu_and_sigma_not_a_range(tmp_path):
    with pytest.raises(SpecError, match="distribution normal takes mu and sigma, not min"):
        load_experiment(_wandb(tmp_path, params="  lr:\n    distribution: normal\n    min: 0\n    max: 1\n"), image=IMAGE)
    with pytest.raises(SpecError, match="sigma must be above 0"):
        load_experiment(_wandb(tmp_path, params="  lr:\n    distribution: normal\n    sigma: -1\n"), image=IMAGE)
    with pytest.raises(SpecError, match="mu belongs to the normal, q_normal and log_normal distributions"):
        load_experiment(_wandb(tmp_path, params="  lr:\n    min: 0.0\n    max: 1.0\n    mu: 0.5\n"), image=IMAGE)


def test_gp_plumbing_with_a_stand_in_for_the_gaussian_process(grid_file, monkeypatch):
    """Without torch, GPSampler itself cannot run here; a stand-in with its signature checks what
    kubesweep hands it: the options, and trials still running told as the worst value so far."""
    import inspect

    import optuna

    real = inspect.signature(optuna.samplers.GPSampler.__init__)
    told = []

    class StandIn(optuna.samplers.RandomSampler):
        def __init__(self, **kwargs):
            real.bind(None, **kwargs)  # only options the real GPSampler takes
            assert kwargs["n_startup_trials"] == 2
            super().__init__(seed=kwargs["seed"])

        def sample_independent(self, study, trial, name, dist):
            if name == "x":
                told.append(sorted(t.values[0] for t in study.get_trials(deepcopy=False)
                                   if t.state == optuna.trial.TrialState.COMPLETE))
            return super().sample_independent(study, trial, name, dist)

    monkeypatch.setattr(adaptive, "torch_missing", lambda: None)
    monkeypatch.setattr(optuna.samplers, "GPSampler", StandIn)
    exp = experiment(grid_file, "gp", **{"seed: 3}": "seed: 3, startupTrials: 2}"})
    trials = search.expand(exp, loads("parameters: {}\n", "grid.yaml")[1])
    done = {t.name: {"state": "succeeded", "metrics": {"loss": float(i)}} for i, t in enumerate(trials[:4])}
    told.clear()
    following = search.next_batch(exp, trials, done, WHERE)  # trials 4 and 5 still running
    assert len(following) == 6 and [t.params for t in following] == [
        t.params for t in search.next_batch(exp, trials, done, WHERE)]
    # first ask: 4 results and the 2 running told as the worst (3.0); each later ask adds its predecessor
    assert told[0] == [0.0, 1.0, 2.0, 3.0, 3.0, 3.0] and len(told[5]) == 11


# ---------------------------------------------------------------- the command

def test_max_trials_cuts_a_dry_run_and_is_refused_for_a_plan_made_in_advance(grid_file, tmp_path, capsys):
    from kubesweep.cli import commands
    from kubesweep.sweep import Workspace

    path = grid_file(SWEEP.replace("ALGORITHM", "sobol").replace("trials: 48, ", ""))
    where = Workspace.under(tmp_path)
    assert commands.guard(commands.sweep, str(path), where=where, dry_run=True, max_trials=4) == 0
    assert len(list((tmp_path / "jobs" / "demo").glob("batch-*/*.yaml"))) == 4
    assert "asked batch by batch until stopped" in capsys.readouterr().out
    grid = grid_file(SWEEP.replace("ALGORITHM", "grid").replace("x: {min: -5.0, max: 5.0}", "x: [1, 2]")
                     .replace("y: {min: -5.0, max: 5.0}", "y: [1, 2]").replace("trials: 48, ", ""), name="g.yaml")
    assert commands.guard(commands.sweep, str(grid), where=where, dry_run=True, max_trials=4) == 2
    assert "--max-trials limits a search asked batch by batch; grid search plans its 8 trials in advance" in \
        capsys.readouterr().err


def test_results_of_two_objectives_name_the_pareto_front(grid_file, tmp_path, capsys):
    from kubesweep.cli import commands
    from kubesweep.run import journal
    from kubesweep.sweep import Workspace

    path = grid_file(MULTI.replace("ALGORITHM", "tpe"))
    plan = render.plan(path)
    trials, done = drive_two(plan.experiment, batches=1)
    for t in trials:
        journal.append(tmp_path / "results" / "demo", {**done[t.name], "batch": "batch-000"})
    commands.results(str(path), Workspace.under(tmp_path))
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("Pareto front"))
    front = json.loads((tmp_path / "results" / "demo" / "best.json").read_text())["pareto_front"]
    assert front and line == "Pareto front (min loss, min cost): " + ", ".join(p["trial"] for p in front)


# ---------------------------------------------------------------- nsga2

def test_nsga2_generations_rebuilt_from_batches_match_what_the_sampler_assigned(grid_file):
    """Asking with one live study (the sampler assigns generations itself) and asking batch by
    batch from rebuilt studies give the same generations: the rebuild applies the sampler's rule."""
    import optuna

    exp = experiment(grid_file, "nsga2", MULTI, **{"seed: 3}": "seed: 3, populationSize: 8}"})
    trials, done = drive_two(exp, batches=6)
    history = adaptive.history(trials, done, ["loss", "cost"])
    sampler = adaptive._sampler(exp, 0)
    attrs = adaptive._generations(sampler, [h["batch"] for h in history],
                                  [(h["params"], None, h["values"]) for h in history], 8)
    key = sampler._get_generation_key()
    got = [a[key] for a in attrs]
    # live: a study told each batch's results before the next batch is asked
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    live = []
    for _ in range(6):
        asked = [study.ask() for _ in range(6)]
        for t in asked:
            t.suggest_float("x", -5, 5)
        live += [study._storage.get_trial(t._trial_id).system_attrs[key] for t in asked]
        for t in asked:
            study.tell(t, [0.0, 0.0])
    assert got == live == [0] * 12 + [1] * 12 + [2] * 12


def off_front(p):
    """Distance from the Pareto set of loss and cost: the segment (1.5, -2) .. (-4, 3)."""
    ax, ay, bx, by = 1.5, -2.0, -4.0, 3.0
    t = max(0.0, min(1.0, ((p["x"] - ax) * (bx - ax) + (p["y"] - ay) * (by - ay)) / ((bx - ax) ** 2 + (by - ay) ** 2)))
    return math.hypot(p["x"] - (ax + t * (bx - ax)), p["y"] - (ay + t * (by - ay)))


def test_nsga2_asks_distinct_deterministic_batches_nearer_the_front_than_random(grid_file):
    exp = experiment(grid_file, "nsga2", MULTI, **{"trials: 48": "trials: 96"})
    trials, done = drive_two(exp, batches=8)
    assert [t.params for t in search.next_batch(exp, trials, done, WHERE)] == \
        [t.params for t in search.next_batch(exp, list(trials), dict(done), WHERE)]
    trials, _ = drive_two(exp)
    assert len({t.name for t in trials}) == len(trials) == 96
    rand, _ = drive_two(experiment(grid_file, "random", MULTI, **{"trials: 48": "trials: 96"}))
    late = statistics.median(off_front(t.params) for t in trials[-24:])
    r_late = statistics.median(off_front(t.params) for t in rand[-24:])
    assert late < 0.8 * r_late, (late, r_late)


def test_nsga2_takes_a_population_size_of_two_or_more(grid_file):
    with pytest.raises(SpecError, match="search.populationSize must be at least 2"):
        experiment(grid_file, "nsga2", MULTI, **{"seed: 3}": "seed: 3, populationSize: 1}"})
    with pytest.raises(SpecError, match="search.populationSize applies to nsga2 search, not tpe"):
        experiment(grid_file, "tpe", MULTI, **{"seed: 3}": "seed: 3, populationSize: 4}"})
