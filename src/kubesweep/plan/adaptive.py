"""Adaptive search: a sampler asked one batch at a time, the study rebuilt from disk each time.

``search.algorithm`` here: ``tpe`` and ``multivariate-tpe`` (Optuna's TPESampler, multivariate;
see below), ``gp`` (Optuna's GPSampler: needs torch), ``cmaes`` (Optuna's CmaEsSampler), ``nsga2``
(Optuna's NSGAIISampler, a genetic algorithm for several objectives), ``sobol``
(a scrambled Sobol sequence, as Optuna's QMCSampler draws it), ``hyperband`` (Katib's brackets of
successive halving on a budget parameter: plan/hyperband.py), and ``random`` without
``search.trials`` (the seeded stream of search.py's random search, one batch at a time).

There is no study database. The state is what kubesweep already keeps on disk:

- the trials asked so far are the rendered batches, listed in ``jobs/<experiment>/plan.json``;
- their outcomes are in ``results/<experiment>/trials.jsonl``.

Before each batch an in-memory Optuna study is rebuilt from those two (finished trials told with
their metric, failed ones as FAIL) and asked for the next ``batchSize`` trials. The sampler is
seeded with ``search.seed`` plus the batch number, so the same history always yields the same
next batch: a client killed anywhere — even between asking and writing the batch — asks again
for exactly the same trials (same names), and resume continues the same study.

What each sampler keeps besides the trials is rebuilt too: CMA-ES's distribution by replaying
every full generation of finished trials (in the order they were asked) through a fresh
optimizer (restarted where it should stop, under search.restartStrategy ipop or bipop);
NSGA-II's generation of each trial by the rule it assigned them by (a batch joins the
latest generation of finished trials until that one is full); Sobol's place in its sequence by
walking it from the start past every point asked.

``tpe`` is multivariate TPE with constant liar, as it has been since kubesweep added it (Optuna
recommends multivariate; a study resumed after an upgrade keeps its sampler); ``multivariate-tpe``
(Katib's name) is the same sampler. Katib's own ``tpe`` (hyperopt's, one parameter at a time) is
read as this one too.
"""

from __future__ import annotations

import json
import math
import pickle
from collections import Counter
import warnings
from pathlib import Path
from typing import Any

from kubesweep.errors import Collector, Issue, Mark, SpecError
from kubesweep.spec.space import Domain, Value, domains, tidy
from kubesweep.spec.model import Experiment, did_you_mean
from kubesweep.spec.yamlsource import Positions
from kubesweep.plan import trials as trials_
from kubesweep.plan import hyperband
from kubesweep.plan.trials import Trial, canonical_json

#: The algorithms asked batch by batch (random too when it has no search.trials).
ADAPTIVE = ("tpe", "multivariate-tpe", "gp", "cmaes", "sobol", "nsga2", "hyperband")
#: What each search setting applies to (rules: a setting given for another algorithm is refused).
SETTINGS = {"startupTrials": ("tpe", "multivariate-tpe", "gp"), "eiCandidates": ("tpe", "multivariate-tpe"),
            "priorWeight": ("tpe", "multivariate-tpe"), "gamma": ("tpe", "multivariate-tpe"), "sigma": ("cmaes",),
            "populationSize": ("nsga2",)}
# hyperband's settings (plan/hyperband.py)
SETTINGS.update({"resource": ("hyperband",), "eta": ("hyperband",), "maxResource": ("hyperband",)})
#: Samplers that model several objectives (a Pareto front); cmaes models one.
MULTI_OBJECTIVE = ("grid", "random", "tpe", "multivariate-tpe", "gp", "sobol", "nsga2")
#: NSGA-II's default generation: at least this many trials (a batch when batches are larger).
MIN_POPULATION = 8
# CMA-ES's restarts (search.restartStrategy ipop / bipop, search.incPopsize): see _Restarts
SETTINGS.update({"restartStrategy": ("cmaes",), "incPopsize": ("cmaes",)})
# Random trials before TPE models anything: Optuna's default is 10; a sweep of a few batches
# would then never leave the random phase, so take one batch's worth (at least 4).
MIN_STARTUP = 4
# Finite domains up to this many points are categorical for TPE; longer stepped ranges are ranges.
CATEGORICAL_MAX = 10_000
# Distinct trials asked per wanted one before giving up (a small discrete space is exhausted).
ASK_ATTEMPTS = 50
# hyperopt's cap on the "good" trials (its linear_forgetting default), for Katib's tpe gamma.
HYPEROPT_GAMMA_CAP = 25


def incremental(exp: Experiment) -> bool:
    """Whether the sweep asks its trials batch by batch (an adaptive sampler, or random search
    without a count) rather than planning all of them up front."""
    s = exp.search
    return s.algorithm in ADAPTIVE or (s.algorithm == "random" and s.trials is None)


def _optuna():  # noqa: ANN202 - imported lazily: optuna costs ~0.5 s to import
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def torch_missing() -> str | None:
    """Why ``gp`` cannot run here (Optuna's GPSampler needs torch), or None."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return ("gp search needs torch, which Optuna's GPSampler is built on, and it is not installed: "
                "`pip install torch` (about 3 GB with its CUDA libraries from PyPI), or use tpe")
    return None


def check(exp: Experiment, pos: Positions, out: Collector) -> None:
    """What the search settings must satisfy beyond their types (rules.check calls this)."""
    s = exp.search
    given = s.model_dump(by_alias=True, exclude_unset=True)
    for key, algorithms in SETTINGS.items():
        if key in given and given[key] is not None and s.algorithm not in algorithms:
            out.add(pos.key(("search", key)), f"search.{key} applies to {' and '.join(algorithms)} search, "
                    f"not {s.algorithm}")
    if s.startup_trials is not None and s.startup_trials < 0:
        out.add(pos.value(("search", "startupTrials")), "search.startupTrials must not be negative", s.startup_trials)
    if s.ei_candidates is not None and s.ei_candidates < 1:
        out.add(pos.value(("search", "eiCandidates")), "search.eiCandidates must be at least 1", s.ei_candidates)
    if s.prior_weight is not None and not s.prior_weight > 0:
        out.add(pos.value(("search", "priorWeight")), "search.priorWeight must be above 0", s.prior_weight)
    if s.gamma is not None and not 0 < s.gamma < 1:
        out.add(pos.value(("search", "gamma")), "search.gamma must be between 0 and 1 (hyperopt's share of good "
                "trials)", s.gamma)
    if s.population_size is not None and s.population_size < 2:
        out.add(pos.value(("search", "populationSize")), "search.populationSize must be at least 2 (parents for "
                "crossover)", s.population_size)
    if s.sigma is not None and not s.sigma > 0:
        out.add(pos.value(("search", "sigma")), "search.sigma must be above 0 (a share of each range)", s.sigma)
    if s.inc_popsize is not None and s.inc_popsize < 2:
        out.add(pos.value(("search", "incPopsize")), "search.incPopsize must be at least 2 (the population grows by "
                "this factor at each restart)", s.inc_popsize)
    if s.inc_popsize is not None and s.restart_strategy == "none" and s.algorithm == "cmaes":
        out.add(pos.key(("search", "incPopsize")), "search.incPopsize applies to restarts: set "
                "search.restartStrategy to ipop or bipop, or remove it")
    if s.algorithm == "cmaes":
        ranges = [p for p in exp.parameters.values() if p.values is None and p.count is None]
        if len(ranges) < 2:
            out.add(pos.value(("search", "algorithm")), "cmaes search needs at least two numeric range parameters "
                    "(min/max; listed values are sampled at random beside it), as Katib's cmaes does", s.algorithm)
    ob = exp.objective
    seen = {ob.metric: "objective.metric"}
    for i, o in enumerate(ob.additional_objectives):
        here = ("objective", "additionalObjectives", i, "metric")
        if o.metric in seen:
            out.add(pos.value(here), f"two objectives with the same metric {o.metric!r} ({seen[o.metric]} and this one)",
                    o.metric)
        seen.setdefault(o.metric, f"objective.additionalObjectives[{i}]")
    if ob.additional_objectives and s.algorithm not in MULTI_OBJECTIVE:
        out.add(pos.value(("search", "algorithm")), f"{s.algorithm} search optimises one objective; with "
                f"objective.additionalObjectives use {', '.join(a for a in MULTI_OBJECTIVE if a != 'grid')} or grid",
                s.algorithm)
    reported = [m for m, _ in ob.terms()] + list(ob.additional_metrics)
    for name in ob.strategies:
        if name not in reported:
            out.add(pos.key(("objective", "strategies", name)), f"objective.strategies names {name!r}, which is not an "
                    f"objective or additional metric{did_you_mean(name, reported)}")
    if s.algorithm == "hyperband":
        hyperband.check(exp, pos, out)
    if s.algorithm == "gp":
        missing = torch_missing()
        if missing:
            out.add(pos.value(("search", "algorithm")), missing)


def _ordered(exp: Experiment) -> bool:
    """Whether stepped ranges are kept as ordered ranges: CMA-ES and GP model distances, which a
    categorical hides; TPE keeps its categorical points (as since tpe was added)."""
    return exp.search.algorithm in ("cmaes", "gp")


def distributions(exp: Experiment) -> dict[str, Any]:
    """One Optuna distribution per parameter: listed points are categorical; stepped points are
    categorical for TPE while they are few (a stepped range for CMA-ES and GP, which model
    distances); ranges are float or int ranges (log-scaled when the parameter says so)."""
    dist = _optuna().distributions
    ordered = _ordered(exp)
    out: dict[str, Any] = {}
    for d in domains(exp.parameters):
        if d.size is not None and (d.step is None if ordered else (d.values is not None or d.size <= CATEGORICAL_MAX)):
            out[d.name] = dist.CategoricalDistribution(d.points())
        elif d.size is not None:  # a stepped range: Optuna's stepped distributions, snapped back by _value
            last = d.point(d.size - 1)
            if d.is_int:
                out[d.name] = dist.IntDistribution(int(d.lo), int(last), step=int(d.step or 1))
            else:
                out[d.name] = dist.FloatDistribution(float(d.lo), float(last), step=float(d.step or 1))
        elif d.is_int:
            out[d.name] = dist.IntDistribution(int(d.lo), int(d.hi), log=d.log)
        else:
            out[d.name] = dist.FloatDistribution(float(d.lo), float(d.hi), log=d.log)
    return out


def _value(d: Domain, raw: Any) -> Value:
    """A sampled value as trials carry it: range floats rounded (readable argv and names), kept in range."""
    if d.size is not None and d.step is not None and not isinstance(raw, (str, bool)):
        i = round((float(raw) - float(d.lo)) / float(d.step))  # a stepped range: its nearest point
        return d.point(min(max(i, 0), d.size - 1))
    if d.size is not None or d.is_int or not isinstance(raw, float):
        return raw
    return min(max(tidy(raw), d.lo), d.hi)


def directions(exp: Experiment) -> list[str]:
    """The direction of each objective, the objective metric's first (a sweep without a metric,
    random only, tells its study no values: any one direction)."""
    return [direction for _, direction in exp.objective.terms()] or ["minimize"]


def _seed(exp: Experiment, batch: int) -> int:
    # numpy takes seeds of 0..2^32-1: any search.seed, and any batch after it, is folded into that
    return (exp.search.seed + batch) % 2**32


def _sampler(exp: Experiment, batch: int):  # noqa: ANN202
    optuna = _optuna()
    s = exp.search
    seed = _seed(exp, batch)
    startup = s.startup_trials if s.startup_trials is not None else max(MIN_STARTUP, exp.batch_size)
    with warnings.catch_warnings():  # multivariate, constant_liar, GPSampler are "experimental"
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # gamma, prior_weight (TPE) and sigma0 (CMA-ES) are deprecated since Optuna 4.9, to be
        # removed in 6.0: they work throughout the 4.x that pyproject.toml allows
        warnings.simplefilter("ignore", FutureWarning)
        if s.algorithm == "gp":
            return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup,
                                             independent_sampler=optuna.samplers.RandomSampler(seed=seed))
        if s.algorithm == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=population(exp))
        if s.algorithm == "cmaes":
            # n_startup_trials=0 as Katib's goptuna cmaes: the first generation is CMA-ES's own
            return optuna.samplers.CmaEsSampler(seed=seed, sigma0=s.sigma, n_startup_trials=0,
                                                independent_sampler=optuna.samplers.RandomSampler(seed=seed),
                                                warn_independent_sampling=False)
        extra: dict[str, Any] = {}
        if s.ei_candidates is not None:
            extra["n_ei_candidates"] = s.ei_candidates
        if s.prior_weight is not None:
            extra["prior_weight"] = float(s.prior_weight)
        if s.gamma is not None:
            g = float(s.gamma)
            # hyperopt's split (Katib's tpe): the best ceil(gamma * sqrt(n)) trials, at most 25
            extra["gamma"] = lambda n: min(math.ceil(g * math.sqrt(n)), HYPEROPT_GAMMA_CAP)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, constant_liar=True,
                                          multivariate=True, **extra)


def _outcome(h: dict[str, Any], count: int) -> list[float] | None:
    """The objective values of a finished trial, or None (not finished, failed, a value missing)."""
    values = h.get("values")
    if values is None:
        values = [h.get("value")]
    if h.get("state") != "succeeded" or len(values) != count:
        return None
    if any(v is None or isinstance(v, bool) or not math.isfinite(v) for v in values):
        return None
    return [float(v) for v in values]


def whole_steps(points: list[list[float]]) -> dict[int, float]:
    """A curve as Optuna takes intermediate values: whole, rising steps (a fractional or repeated
    step becomes the report's place in the curve, 1-based; a point still not past the last step is
    dropped), finite values only."""
    out: dict[int, float] = {}
    for i, (step, value) in enumerate(points):
        whole = int(step) if float(step).is_integer() else i + 1
        if out and whole <= max(out):
            whole = i + 1
        if (not out or whole > max(out)) and isinstance(value, (int, float)) and math.isfinite(value):
            out[whole] = float(value)
    return out


def _pruned_curve(exp: Experiment, h: dict[str, Any]) -> dict[int, float] | None:
    """A pruned trial's intermediate values of the metric early stopping judged (whole_steps), or
    None: told PRUNED with them, TPE ranks the trial by its last value below every completed one,
    instead of leaving it out (FAIL) and asking near it again. One objective only (Optuna's pruned
    trials have one)."""
    if h.get("state") != "pruned" or len(directions(exp)) != 1:
        return None
    metric = (exp.early_stopping.metric if exp.early_stopping else None) or exp.objective.metric
    return whole_steps((h.get("curves") or {}).get(metric) or []) or None


def suggest(exp: Experiment, history: list[dict[str, Any]], batch: int, count: int) -> list[dict[str, Value]]:
    """The next ``count`` distinct parameter sets, given every trial asked so far.

    ``history`` holds one dict per asked trial: ``params`` and, once finished, ``state`` and
    ``values`` (one per objective; None when missing; ``value`` for one objective). Unfinished
    ones are told as running.
    """
    if exp.search.algorithm == "sobol":
        return _sobol(exp, history, count)
    optuna = _optuna()
    dists = distributions(exp)
    doms = {d.name: d for d in domains(exp.parameters)}
    dirs = directions(exp)
    study = optuna.create_study(directions=dirs, sampler=_sampler(exp, batch))
    seen: set[str] = set()
    TS = optuna.trial.TrialState
    told: list[tuple[dict[str, Any], Any, list[float] | None]] = []
    pruned_curves: list[dict[int, float] | None] = []  # a pruned trial's curve, as Optuna's PRUNED trials carry it
    for h in history:
        params = h["params"]
        seen.add(canonical_json(params))
        values = _outcome(h, len(dirs))
        pruned_curves.append(_pruned_curve(exp, h))
        if values is not None:
            state = TS.COMPLETE
        elif pruned_curves[-1] is not None:
            state = TS.PRUNED
        elif h.get("state") in ("failed", "cancelled", "succeeded", "pruned"):
            state = TS.FAIL
        else:
            state = TS.RUNNING
        told.append((params, state, values))
    liar = _liar(exp, told) if exp.search.algorithm == "gp" else None
    if exp.search.algorithm == "cmaes":
        attrs = _cma_attrs(exp, study, dists, told, [h.get("batch", 0) for h in history])
    elif exp.search.algorithm == "nsga2":
        attrs = _generations(study.sampler, [h.get("batch", 0) for h in history], told, population(exp))
    else:
        attrs = [{}] * len(told)
    for (params, state, values), system_attrs, pruned_curve in zip(told, attrs, pruned_curves):
        if state == TS.RUNNING and liar is not None:  # GP has no constant liar of its own
            state, values = TS.COMPLETE, liar
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, state=state, values=values,
                                                  system_attrs=system_attrs, intermediate_values=pruned_curve))
    out: list[dict[str, Value]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        for _ in range(count * ASK_ATTEMPTS):
            if len(out) == count:
                break
            t = study.ask(dists)
            params = {name: _value(doms[name], t.params[name]) for name in dists}
            key = canonical_json(params)
            if liar is not None:  # the batch spreads out: each point asked counts as a poor result
                study.tell(t, liar)
            if key in seen:
                # A repeat is not a trial. It stays RUNNING in this throwaway study, so constant_liar
                # counts it as a bad result there and steers later asks elsewhere (told as FAIL it
                # would be ignored, and TPE would keep proposing the same favourite point).
                continue
            seen.add(key)
            out.append(params)  # left RUNNING too: the rest of the batch spreads out around it
    return out


def _liar(exp: Experiment, told: list[tuple[dict[str, Any], Any, list[float] | None]]) -> list[float] | None:
    """The worst value seen per objective: what a trial still running (or just asked) is told as,
    so a GP's batch does not pile onto one point (the constant liar of batch Bayesian
    optimisation). None before any trial finished (GP then samples at random anyway)."""
    done = [v for _, _, v in told if v is not None]
    if not done:
        return None
    return [min(col) if d == "maximize" else max(col) for d, col in zip(directions(exp), zip(*done))]


def _cma_attrs(exp: Experiment, study: Any, dists: dict[str, Any],
               told: list[tuple[dict[str, Any], Any, list[float] | None]], batches: list[int]) -> list[dict[str, Any]]:
    """CMA-ES's state for the rebuilt study: every full generation of finished trials (in the
    order they were asked) is told to a fresh optimizer (restarted where search.restartStrategy
    says, see _cma_replay), which is stored on the last of them as Optuna's CmaEsSampler stores
    it; the finished trials after it are marked as the current generation, so the sampler tells
    them once a generation is full.

    Relies on CmaEsSampler's trial attributes (Optuna 4.x, pinned below 5)."""
    attrs: list[dict[str, Any]] = [{} for _ in told]
    replay = _cma_replay(exp, study.sampler, dists, told, batches)
    if replay is None:
        return attrs
    optimizer, runs = replay
    sampler = study.sampler
    for i in runs[-1].pending:
        attrs[i][sampler._attr_key_generation] = optimizer.generation
    last = next((run.told[-1] for run in reversed(runs) if run.told), None)  # the last trial told
    if last is not None:
        attrs[last].update(sampler._split_optimizer_str(pickle.dumps(optimizer).hex()))
    return attrs


class CmaRun:
    """One run of CMA-ES between restarts, as the replay rebuilt it."""

    def __init__(self, popsize: int, poptype: str) -> None:
        self.popsize = popsize
        #: bipop: "large" (the IPOP regime) or "small" (a small population, a short budget); the
        #: first run counts as small, as BIPOP-CMA-ES (Hansen 2009) and goptuna have it.
        self.poptype = poptype
        #: indices (into the history) of the trials told to it, generation after generation.
        self.told: list[int] = []
        #: its finished trials of a generation not yet full (the last run's are told when it is).
        self.pending: list[int] = []
        self.generations = 0
        #: whether it asked for a restart (should_stop: converged, stagnant or diverging).
        self.stopped = False


class _Restarts:
    """IPOP and BIPOP restarts of CMA-ES as Optuna's CmaEsSampler made them until Optuna 4.4, and
    goptuna (Katib's cmaes) makes them: when the optimizer should stop, a new one starts from a
    random mean with the initial sigma. IPOP: the population grows by inc_popsize each restart.
    BIPOP: the evaluations spent in the large and in the small regime are counted; while the
    small regime has spent less, the next run is small (popsize0 * (inc^large_restarts)^(u^2),
    u uniform in 0..1), else large (popsize0 * inc^(large_restarts + 1)).

    Its random numbers (BIPOP's u, the new mean) come from search.seed alone, in a fixed order,
    so replaying the same history restarts at the same trials with the same populations."""

    def __init__(self, exp: Experiment, popsize0: int) -> None:
        import numpy as np

        self.strategy = exp.search.restart_strategy
        self.inc = exp.search.inc_popsize or DEFAULT_INC_POPSIZE
        self.popsize0 = popsize0
        self.rng = np.random.RandomState(exp.search.seed % 2**32)
        self.large_restarts = 0
        self.small_eval = self.large_eval = 0

    def next(self, run: CmaRun) -> CmaRun:
        if self.strategy == "ipop":
            return CmaRun(run.popsize * self.inc, "large")
        spent = run.popsize * run.generations
        if run.poptype == "small":
            self.small_eval += spent
        else:
            self.large_eval += spent
        if self.small_eval < self.large_eval:
            u = self.rng.uniform()
            return CmaRun(math.floor(self.popsize0 * (self.inc ** self.large_restarts) ** (u ** 2)), "small")
        self.large_restarts += 1
        return CmaRun(self.popsize0 * self.inc ** self.large_restarts, "large")


#: IPOP's and BIPOP's population factor per restart (Optuna's and goptuna's default; Katib's fixed value).
DEFAULT_INC_POPSIZE = 2


def _cma_replay(exp: Experiment, sampler: Any, dists: dict[str, Any],
                told: list[tuple[dict[str, Any], Any, list[float] | None]],
                batches: list[int]) -> tuple[Any, list[CmaRun]] | None:
    """The optimizer after every full generation of finished trials, and its runs (one without
    restarts). None when no parameter is a CMA-ES dimension.

    Trials are taken batch by batch in the order they were asked. A restart is decided where the
    generation that converged is told; a batch asked before that (its run, the run the replay
    had reached when the batch began, is an earlier one) holds samples of the old distribution,
    and its trials are not told to the new run, as Optuna and goptuna tag each trial with the
    run that asked it."""
    from optuna._transform import _SearchSpaceTransform

    optuna = _optuna()
    space = {k: d for k, d in dists.items()
             if not isinstance(d, optuna.distributions.CategoricalDistribution) and not d.single()}
    if not space:
        return None
    trans = _SearchSpaceTransform(space, transform_step=True, transform_0_1=True)
    optimizer = sampler._init_optimizer(trans, optuna.study.StudyDirection.MINIMIZE)  # (only read for warm starts)
    sign = -1.0 if exp.objective.direction == "maximize" else 1.0
    runs = [CmaRun(optimizer.population_size, "small")]
    restarts = _Restarts(exp, optimizer.population_size) if exp.search.restart_strategy != "none" else None
    run_of_batch: dict[int, int] = {}
    for i in sorted(range(len(told)), key=lambda i: (batches[i], i)):
        asked_by = run_of_batch.setdefault(batches[i], len(runs) - 1)
        if told[i][2] is None or asked_by != len(runs) - 1:
            continue
        run = runs[-1]
        run.pending.append(i)
        if len(run.pending) < run.popsize:
            continue
        optimizer.tell([(trans.transform({k: told[j][0][k] for k in space}), sign * told[j][2][0])
                        for j in run.pending])
        run.told += run.pending
        run.pending = []
        run.generations += 1
        if restarts is not None and optimizer.should_stop():
            run.stopped = True
            runs.append(restarts.next(run))
            optimizer = _restarted(exp, trans, runs[-1].popsize, restarts.rng)
    return optimizer, runs


def _restarted(exp: Experiment, trans: Any, popsize: int, rng: Any) -> Any:
    """A new CMA-ES run as Optuna's sampler started one (randomize_start_point): a mean drawn
    uniformly in the (0..1-scaled) space, the initial sigma, the given population."""
    import cmaes
    import numpy as np

    lower, upper = trans.bounds[:, 0], trans.bounds[:, 1]
    mean = lower + (upper - lower) * rng.rand(len(trans.bounds))
    sigma0 = exp.search.sigma if exp.search.sigma is not None else float(np.min((upper - lower) / 6))
    return cmaes.CMA(mean=mean, sigma=max(float(sigma0), 1e-10), bounds=trans.bounds, seed=rng.randint(1, 2**31 - 2),
                     n_max_resampling=10 * len(trans.bounds), population_size=popsize)


def cma_runs(exp: Experiment, history: list[dict[str, Any]]) -> list[CmaRun]:
    """CMA-ES's runs between restarts for this history (``suggest``'s): what the next batch is
    asked from is the last one's optimizer."""
    dirs = directions(exp)
    told = [(h["params"], None, _outcome(h, len(dirs))) for h in history]
    replay = _cma_replay(exp, _sampler(exp, 0), distributions(exp), told, [h.get("batch", 0) for h in history])
    return replay[1] if replay is not None else []


def population(exp: Experiment) -> int:
    return exp.search.population_size or max(MIN_POPULATION, exp.batch_size)


def _generations(sampler: Any, batches: list[int], told: list[tuple[dict[str, Any], Any, list[float] | None]],
                 size: int) -> list[dict[str, Any]]:
    """NSGA-II's generation of each asked trial, as its sampler assigned them: every trial of a
    batch joins the latest generation of the trials finished before the batch was asked, or the
    next one once that generation has ``size`` finished trials (Optuna's BaseGASampler rule;
    within a batch nothing finishes)."""
    key = sampler._get_generation_key()
    generation: dict[int, int] = {}
    order = sorted(range(len(told)), key=lambda i: (batches[i], i))
    finished: Counter[int] = Counter()  # finished trials per generation, of the batches before this one
    current_batch, current, previous = None, 0, []  # type: ignore[var-annotated]
    for i in order:
        if batches[i] != current_batch:
            finished.update(generation[j] for j in previous if told[j][2] is not None)
            current_batch, previous = batches[i], []
            latest = max(finished, default=0)
            current = latest if finished[latest] < size else latest + 1
        generation[i] = current
        previous.append(i)
    return [{key: generation[i]} for i in range(len(told))]


def _sobol(exp: Experiment, history: list[dict[str, Any]], count: int) -> list[dict[str, Value]]:
    """The next ``count`` points of a Sobol sequence scrambled by search.seed (scipy's, as Optuna's
    QMCSampler draws it), skipping every point already asked: the sequence is walked from its
    start, so its place needs no state. Each parameter is one dimension: a range maps the unit
    interval onto itself (log-scaled where it says so), listed and stepped points take the
    point at that share of their list."""
    from scipy.stats import qmc

    doms = domains(exp.parameters)
    seen = {canonical_json(h["params"]) for h in history}
    engine = qmc.Sobol(len(doms), scramble=True, seed=exp.search.seed % 2**32)
    out: list[dict[str, Value]] = []
    budget = (len(seen) + count) * ASK_ATTEMPTS
    drawn = 0
    with warnings.catch_warnings():  # "balance properties": a batch is seldom a power of two
        warnings.simplefilter("ignore")
        while len(out) < count and drawn < budget:
            block = engine.random(min(1024, budget - drawn))
            drawn += len(block)
            for row in block:
                params = {d.name: _unit(d, float(u)) for d, u in zip(doms, row)}
                key = canonical_json(params)
                if key not in seen:
                    seen.add(key)
                    out.append(params)
                    if len(out) == count:
                        break
    return out


def _unit(d: Domain, u: float) -> Value:
    """The point of domain ``d`` at share ``u`` (0 <= u < 1)."""
    if d.size is not None:
        return d.point(min(int(u * d.size), d.size - 1))
    if d.log:
        x = math.exp(math.log(d.lo) + u * (math.log(d.hi) - math.log(d.lo)))
    else:
        x = d.lo + u * (d.hi - d.lo)
    return min(max(int(round(x)), int(d.lo)), int(d.hi)) if d.is_int else min(max(tidy(x), d.lo), d.hi)


def first_batch(exp: Experiment, where: Mark) -> list[Trial]:
    want = min(n for n in (exp.batch_size, exp.search.trials, exp.search.trial_limit) if n is not None)
    if exp.search.algorithm == "hyperband":  # a schedule of rounds, not a sampler
        return trials_.make(exp.name, hyperband.suggest(exp, [], want, where), batch=lambda i: 0, where=where)
    return trials_.make(exp.name, suggest(exp, [], 0, want), batch=lambda i: 0, where=where)


def asked(exp: Experiment, jobs_dir: Path, plan_file: str) -> list[Trial] | None:
    """The trials earlier runs asked for (from the rendered plan.json), or None if there are none.

    Raise SpecError when they no longer fit the search space (the file changed under a study).
    """
    index = Path(jobs_dir) / exp.name / plan_file
    try:
        data = json.loads(index.read_text())
    except (OSError, ValueError):
        return None
    if data.get("search", {}).get("algorithm") != exp.search.algorithm or data.get("experiment") != exp.name:
        return None
    doms = {d.name: d for d in domains(exp.parameters)}
    trials: list[Trial] = []
    for i, row in enumerate(data.get("trials", [])):
        params = row["params"]
        if set(params) != set(doms):
            bad = sorted(set(params) ^ set(doms))
        else:
            # hyperband's resource holds the round's budget, not a point of its range (as in Katib)
            bad = [k for k in doms if not _fits(doms[k], params[k])
                   and not (exp.search.algorithm == "hyperband" and k == exp.search.resource)]
        if bad:
            # plan.json holds one trial per line, after the header line
            raise SpecError([Issue(Mark(str(index), i + 2, 3), f"trial {row['name']} was asked for a different search "
                                   f"space (parameters {', '.join(bad)}); run `kubesweep clean -e {exp.name}` and remove "
                                   f"{index.parent} to start a new study, or give the sweep a new name")])
        batch = int(str(row["batch"]).rsplit("-", 1)[-1])
        trials.append(Trial(row["name"], i, batch, params, canonical_json(params)))
    return trials or None


def _fits(d: Domain, value: Any) -> bool:
    """Whether ``value`` is a point of domain ``d``."""
    if d.values is not None:
        return value in d.values
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not d.lo <= value <= d.hi:
        return False
    if d.size is not None and d.step is not None:
        i = round((float(value) - float(d.lo)) / float(d.step))
        return 0 <= i < d.size and d.point(i) == value
    return not d.is_int or float(value).is_integer()


def history(trials: list[Trial], done: dict[str, dict[str, Any]], metrics: str | list[str]) -> list[dict[str, Any]]:
    """One entry per asked trial: its params, state and objective values (``value`` is the first)."""
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    out = []
    for t in trials:
        rec = done.get(t.name) or {}
        got = rec.get("metrics") or {}
        values = [got.get(m) for m in names]
        out.append({"params": t.params, "state": rec.get("state"), "value": values[0], "values": values,
                    "batch": t.batch, "curves": rec.get("curves") or {}})
    return out


def next_batch(exp: Experiment, trials: list[Trial], done: dict[str, dict[str, Any]], where: Mark,
               limit: int | None = None) -> list[Trial]:
    """The batch after ``trials`` (empty once search.trials, or ``limit``, are asked, or the
    space is exhausted)."""
    caps = [c for c in (exp.search.trials, limit) if c is not None]
    want = min([exp.batch_size, *(c - len(trials) for c in caps)])
    if want <= 0:
        return []
    batch = max((t.batch for t in trials), default=-1) + 1
    metrics = [m for m, _ in exp.objective.terms()] or [""]  # no metric: no values to tell
    if exp.search.algorithm == "hyperband":  # a schedule of rounds, not a sampler (plan/hyperband.py)
        asked = [{**h, "name": t.name} for h, t in zip(history(trials, done, metrics), trials)]
        params = hyperband.suggest(exp, asked, want, where)
    else:
        params = suggest(exp, history(trials, done, metrics), batch, want)
    return trials_.make(exp.name, params, first_index=len(trials), batch=lambda i: batch, taken=trials, where=where)
