"""CMA-ES restarts (search.restartStrategy: ipop / bipop, Katib's cmaes restart_strategy): the
optimizer is restarted when it should stop, rebuilt batch by batch from the journal alone."""

from __future__ import annotations

import math
import statistics

import pytest

from kubesweep.errors import Mark, SpecError
from kubesweep.plan import adaptive, search
from kubesweep.plan import planner as render
from kubesweep.spec.formats import load_experiment
from kubesweep.spec.yamlsource import loads

WHERE = Mark("grid.yaml", 4, 3)

SWEEP = """\
name: demo
image: localhost:5000/demo/trainer:1
command: [python3, train.py, "${x}", "${y}"]
parameters:
  x: {min: -5.0, max: 5.0}
  y: {min: -5.0, max: 5.0}
search: {algorithm: cmaes, trials: TRIALS, seed: 3, restartStrategy: STRATEGY}
batchSize: BATCH
objective: {metric: loss, direction: minimize}
"""


def plateau(p):
    """A bowl with a flat bottom (loss 1 within a radius of 1 around x=1.5, y=-2): CMA-ES
    converges into it, the values stop changing, and the optimizer says it should stop."""
    return max(round((p["x"] - 1.5) ** 2 + (p["y"] + 2) ** 2, 1), 1.0)


def experiment(grid_file, strategy="ipop", trials=400, batch=6, extra="", seed=3):
    text = SWEEP.replace("STRATEGY", strategy).replace("TRIALS", str(trials)).replace("BATCH", str(batch))
    text = text.replace("seed: 3", f"seed: {seed}")
    return load_experiment(grid_file(text.replace("restartStrategy", extra + "restartStrategy"))).experiment


def drive(exp, value=plateau):
    """Ask, 'run' and record batch after batch through search.next_batch, as sweep.run does."""
    trials = search.expand(exp, loads("parameters: {}\n", "grid.yaml")[1])
    done = {}
    while True:
        for t in trials:
            done.setdefault(t.name, {"state": "succeeded", "metrics": {"loss": value(t.params)}})
        following = search.next_batch(exp, trials, done, WHERE)
        if not following:
            return trials, done
        trials = trials + following


def runs(exp, trials, done):
    return adaptive.cma_runs(exp, adaptive.history(trials, done, ["loss"]))


def spread(trials):
    """Mean distance of the trials from the bottom of the bowl."""
    return statistics.mean(math.hypot(t.params["x"] - 1.5, t.params["y"] + 2) for t in trials)


@pytest.fixture(scope="module")
def ipop(tmp_path_factory):
    def grid_file(text):
        path = tmp_path_factory.mktemp("ipop") / "grid.yaml"
        path.write_text(text)
        return path
    exp = experiment(grid_file, "ipop", trials=600)
    return exp, *drive(exp)


def test_ipop_restarts_a_converged_cmaes_with_twice_the_population(ipop):
    exp, trials, done = ipop
    got = runs(exp, trials, done)
    assert [r.popsize for r in got] == [6, 12, 24]  # 4 + floor(3 ln 2), then x2 per restart
    assert [r.stopped for r in got] == [True, True, False]
    assert all(len(r.told) == r.popsize * r.generations for r in got)
    # the first run converged into the flat bottom before it stopped ...
    first_end = got[0].told[-1] + 1
    assert spread(trials[first_end - 12:first_end]) < 1.0
    # ... and the batch asked right after the restart starts elsewhere (a random mean, sigma0 again)
    assert spread(trials[first_end:first_end + 6]) > 2 * spread(trials[first_end - 12:first_end])
    # the restarted optimizer the next batch is asked from has the grown population
    assert _replay(exp, trials, done).population_size == 24


def test_without_a_restart_strategy_cmaes_stays_in_the_converged_region(grid_file, ipop):
    exp, trials, _ = ipop
    plain = experiment(grid_file, "none", trials=300)
    p_trials, p_done = drive(plain)
    assert [(r.popsize, r.stopped) for r in runs(plain, p_trials, p_done)] == [(6, False)]
    assert [t.params for t in p_trials[:204]] == [t.params for t in trials[:204]]  # the same run until the restart
    assert spread(p_trials[204:210]) < 1.0 < spread(trials[204:210])


def test_the_same_history_asks_the_same_batch_and_resumes_anywhere(grid_file, ipop):
    exp, trials, done = ipop
    first = search.next_batch(exp.model_copy(update={"search": exp.search.model_copy(update={"trials": 700})}),
                              trials, done, WHERE)
    again = search.next_batch(exp.model_copy(update={"search": exp.search.model_copy(update={"trials": 700})}),
                              list(trials), dict(done), WHERE)
    assert len(first) == 6 and [t.params for t in first] == [t.params for t in again]
    # a client that stopped after any batch (before, at, after a restart) asks what was asked then
    restart_batches = [trials[r.told[0]].batch for r in runs(exp, trials, done)[1:]]
    for batch in (restart_batches[0] - 1, restart_batches[0], restart_batches[0] + 3, restart_batches[1] + 1):
        asked = [t for t in trials if t.batch < batch]
        partial = {t.name: done[t.name] for t in asked}
        assert [t.params for t in search.next_batch(exp, asked, partial, WHERE)] == \
            [t.params for t in trials if t.batch == batch]
    # the restart's random mean comes from search.seed: the same history restarts the same way under
    # the same seed, elsewhere under another
    upto = trials[:runs(exp, trials, done)[0].told[-1] + 1]
    means = [tuple(_replay(e, upto, done).mean) for e in (exp, exp, experiment(grid_file, "ipop", trials=600, seed=4))]
    assert means[0] == means[1] != means[2]


def _replay(exp, trials, done):
    told = [(t.params, None, [done[t.name]["metrics"]["loss"]]) for t in trials]
    optimizer, _ = adaptive._cma_replay(exp, adaptive._sampler(exp, 0), adaptive.distributions(exp), told,
                                        [t.batch for t in trials])
    return optimizer


def test_bipop_alternates_large_and_small_populations_by_their_budgets(grid_file):
    exp = experiment(grid_file, "bipop", trials=756)
    trials, done = drive(exp)
    got = runs(exp, trials, done)
    assert [r.poptype for r in got] == ["small", "large", "small", "large"]
    assert [r.stopped for r in got] == [True, True, True, False]
    small0, large1, small2, large3 = got
    assert large1.popsize == 12 and large3.popsize == 24  # 6 * 2^1, 6 * 2^2: the IPOP regime
    # a small run: floor(6 * 2^(u^2)) for the large restarts so far (one), u uniform
    assert 6 <= small2.popsize < 12
    # small after large: the small regime had spent fewer evaluations; large after it: no longer
    small_eval, large_eval = small0.popsize * small0.generations, large1.popsize * large1.generations
    assert small_eval < large_eval <= small_eval + small2.popsize * small2.generations
    # IPOP on the same history does not alternate
    ipop = experiment(grid_file, "ipop", trials=756)
    assert [r.poptype for r in runs(ipop, trials, done)][:3] == ["small", "large", "large"]


def test_trials_asked_by_a_run_that_restarted_are_not_told_to_the_next(grid_file):
    """Batches of 4 and generations of 6: the generation that stops ends inside a batch, whose
    remaining trials were drawn from the old distribution; the new run takes none of them."""
    exp = experiment(grid_file, "ipop", trials=160, batch=4)
    trials, done = drive(exp, value=lambda p: 1.0)  # flat: the values stop changing at once
    first, second = runs(exp, trials, done)[:2]
    assert first.stopped and first.generations == 21  # cmaes' tolfun: 10 + ceil(30 * 2 / 6) generations
    stop_batch = trials[first.told[-1]].batch
    assert first.told[-1] % 4 != 3  # the generation ended inside its batch
    assert all(trials[i].batch > stop_batch for i in second.told + second.pending)
    assert second.told[0] == (stop_batch + 1) * 4


@pytest.mark.parametrize("extra, strategy, message", [
    ("", "sometimes", "restartStrategy"),
    ("incPopsize: 1, ", "ipop", "search.incPopsize must be at least 2"),
    ("incPopsize: 3, ", "none", "search.incPopsize applies to restarts"),
])
def test_bad_restart_settings_are_refused_where_written(grid_file, extra, strategy, message):
    with pytest.raises(SpecError) as info:
        experiment(grid_file, strategy, extra=extra)
    assert message in str(info.value) and "grid.yaml:7" in str(info.value), str(info.value)


def test_restart_settings_belong_to_cmaes(grid_file):
    text = SWEEP.replace("cmaes", "tpe").replace("STRATEGY", "ipop").replace("TRIALS", "12").replace("BATCH", "3")
    with pytest.raises(SpecError, match="search.restartStrategy applies to cmaes search, not tpe"):
        load_experiment(grid_file(text))


def test_inc_popsize_sets_the_growth(grid_file):
    exp = experiment(grid_file, "ipop", trials=300, extra="incPopsize: 3, ")
    trials, done = drive(exp)
    assert [r.popsize for r in runs(exp, trials, done)][:2] == [6, 18]


KATIB = """\
apiVersion: kubeflow.org/v1beta1
kind: Experiment
metadata: {name: cmaes}
spec:
  objective: {type: minimize, objectiveMetricName: loss}
  algorithm:
    algorithmName: cmaes
    algorithmSettings:
      - {name: restart_strategy, value: VALUE}
  parallelTrialCount: 3
  maxTrialCount: 12
  parameters:
    - {name: lr, parameterType: double, feasibleSpace: {min: "0.01", max: "0.05"}}
    - {name: momentum, parameterType: double, feasibleSpace: {min: "0.5", max: "0.9"}}
  trialTemplate:
    primaryContainerName: main
    trialParameters:
      - {name: lr, reference: lr}
      - {name: momentum, reference: momentum}
    trialSpec:
      apiVersion: batch/v1
      kind: Job
      spec:
        template:
          spec:
            containers:
              - {name: main, image: "python:3.12", command: [python3, "-c", "print('loss=1')", "${trialParameters.lr}",
                                                          "${trialParameters.momentum}"]}
            restartPolicy: Never
"""


@pytest.mark.parametrize("value, native", [("ipop", "ipop"), ("bipop", "bipop"), ("none", "none"), ("None", "none")])
def test_katib_restart_strategy_maps_onto_the_native_one(tmp_path, value, native):
    path = tmp_path / "katib.yaml"
    path.write_text(KATIB.replace("VALUE", value))
    exp = load_experiment(path).experiment
    assert (exp.search.algorithm, exp.search.restart_strategy, exp.search.inc_popsize) == ("cmaes", native, None)
    assert len(render.plan(path).trials) == 3


def test_katib_unknown_restart_strategy_is_refused_at_its_line(tmp_path):
    path = tmp_path / "katib.yaml"
    path.write_text(KATIB.replace("VALUE", "lpop"))
    with pytest.raises(SpecError) as info:
        load_experiment(path)
    assert "katib.yaml:9" in str(info.value) and "restart_strategy must be none, ipop or bipop" in str(info.value)
