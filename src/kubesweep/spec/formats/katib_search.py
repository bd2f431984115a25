"""Katib's search, read into the native one: spec.algorithm (its suggestion services' algorithms
and settings), spec.objective.metricStrategies, and feasibleSpace.distribution normal/logNormal.

What each Katib algorithm and setting becomes is taken from Katib's suggestion services
(pkg/suggestion/v1beta1: hyperopt for random and tpe, optuna for multivariate-tpe and grid,
goptuna for cmaes and sobol, skopt for bayesianoptimization; their ValidateAlgorithmSettings say
which settings each defines). A setting Katib defines that Optuna has no equivalent for is refused
with the reason; one Katib does not define is refused as unknown, as Katib's validation would.
"""

from __future__ import annotations

import math  # hyperband
from typing import Any, Callable

from .base import Translator

#: Katib's algorithm names → the native search.algorithm.
ALGORITHMS = {"random": "random", "grid": "grid", "tpe": "tpe", "multivariate-tpe": "multivariate-tpe",
              "bayesianoptimization": "gp", "cmaes": "cmaes", "sobol": "sobol", "hyperband": "hyperband"}
#: Katib algorithms that need something kubesweep is not.
UNSUPPORTED = {
    "enas": "neural architecture search is out of scope",
    "darts": "neural architecture search is out of scope",
    "pbt": "population based training exchanges checkpoints between running trials, which plain Jobs do not",
}


def _int(low: int) -> Callable[[str], Any]:
    def read(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError("must be an integer") from None
        if value < low:
            raise ValueError(f"must be at least {low}")
        return value
    return read


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("must be a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError("must be a finite number")
    return value


def _positive(text: str) -> float:
    value = _float(text)
    if not value > 0:
        raise ValueError("must be above 0")
    return value


def _fraction(text: str) -> float:
    value = _float(text)
    if not 0 < value < 1:
        raise ValueError("must be between 0 and 1")
    return value


def _one_of(*accepted: str) -> Callable[[str], Any]:
    def read(text: str) -> None:
        if text not in accepted:
            raise ValueError(f"must be {' or '.join(accepted)}")
    return read


def _restart_strategy(text: str) -> str:
    """Katib's cmaes restart_strategy (goptuna's: none, ipop, bipop; its optuna service also reads
    None), with the population factor Katib fixes at 2 (search.incPopsize's default)."""
    if text not in ("none", "None", "ipop", "bipop"):
        raise ValueError("must be none, ipop or bipop (goptuna's restart strategies)")
    return text.lower()


#: Per Katib algorithm: setting → (native search key or None when it only has to be valid, reader).
#: tpe takes hyperopt's settings (Katib's default tpe service) and Optuna's (its optuna service).
SETTINGS: dict[str, dict[str, tuple[str | None, Callable[[str], Any]]]] = {
    "random": {"random_state": ("seed", _int(0))},
    "tpe": {"random_state": ("seed", _int(0)), "n_EI_candidates": ("eiCandidates", _int(1)),
            "n_ei_candidates": ("eiCandidates", _int(1)), "n_startup_trials": ("startupTrials", _int(0)),
            "prior_weight": ("priorWeight", _positive), "gamma": ("gamma", _fraction)},
    "multivariate-tpe": {"random_state": ("seed", _int(0)), "n_startup_trials": ("startupTrials", _int(0)),
                         "n_ei_candidates": ("eiCandidates", _int(1))},
    "cmaes": {"random_state": ("seed", _int(0)), "sigma": ("sigma", _positive),
              "restart_strategy": ("restartStrategy", _restart_strategy)},
    "sobol": {},
    "grid": {},
    "bayesianoptimization": {"random_state": ("seed", _int(0)), "n_initial_points": ("startupTrials", _int(0)),
                             "base_estimator": (None, _one_of("GP")), "acq_func": (None, _one_of("EI")),
                             "acq_optimizer": (None, _one_of("auto"))},
}
#: Settings Katib defines that have no Optuna equivalent: why each is refused.
NO_EQUIVALENT = {
    ("bayesianoptimization", "base_estimator"): "kubesweep's bayesian optimisation is Optuna's GPSampler, a Gaussian "
                                                "process: only GP (scikit-optimize's RF, ET and GBRT have no equivalent)",
    ("bayesianoptimization", "acq_func"): "Optuna's GPSampler maximises (log) expected improvement: only EI "
                                          "(gp_hedge, LCB, PI, EIps and PIps have no equivalent)",
    ("bayesianoptimization", "acq_optimizer"): "Optuna's GPSampler optimises the acquisition its own way (sampling, "
                                               "then L-BFGS-B from the best points): only auto",
    ("grid", "random_state"): "Katib's grid shuffles its order with it; kubesweep walks the grid in the written order",
}


def _hyperband_eta(text: str) -> int:
    """Katib's hyperband eta: its validation reads int(float(eta)) and its service float(eta), each
    taking 3 for a value not above 0; a fraction would be read two ways, so it is refused."""
    value = _float(text)
    if value <= 0:
        return 3
    if not value.is_integer():
        raise ValueError("must be a whole number (Katib's hyperband validation reads int(eta), its service the "
                         "fraction)")
    return int(value)


def _hyperband_r_l(text: str) -> int | float:
    value = _float(text)
    if value < 0:
        raise ValueError("must be a positive float number (Katib's hyperband validation)")
    return int(value) if value.is_integer() else value


#: Katib's hyperband settings (pkg/suggestion/v1beta1/hyperband/service.py, ValidateAlgorithmSettings).
SETTINGS["hyperband"] = {"resource_name": ("resource", str), "eta": ("eta", _hyperband_eta),
                         "r_l": ("maxResource", _hyperband_r_l)}


def _hyperband(t: Translator, spec: dict[str, Any], search: dict[str, Any]) -> None:
    """What Katib's hyperband validation asks beyond each setting: r_l and resource_name set,
    resource_name one of the parameters (an int or double one: its service writes int budgets into
    it), and parallelTrialCount at least eta^s_max, the first bracket's size."""
    from kubesweep.plan import hyperband

    base = ("spec", "algorithm")
    where = base + (("algorithmSettings",) if "algorithmSettings" in (spec.get("algorithm") or {}) else ("algorithmName",))
    settings = (spec.get("algorithm") or {}).get("algorithmSettings") or []
    given = {st.get("name") for st in settings if isinstance(st, dict)}
    missing = [k for k in ("r_l", "resource_name") if k not in given]
    if missing:
        t.error(where, f"Katib's hyperband needs the settings r_l and resource_name (\"r_l and resource_name must be "
                f"set.\"): {' and '.join(missing)} missing")
        return
    if "maxResource" not in search or "resource" not in search:
        return  # a setting that is not valid: refused where it is written
    params = {p.get("name"): p for p in spec.get("parameters") or [] if isinstance(p, dict)}
    resource = search["resource"]
    at = next((base + ("algorithmSettings", i, "value") for i, st in enumerate(settings)
               if isinstance(st, dict) and st.get("name") == "resource_name"), where)
    if resource not in params:
        t.error(at, f"resource_name {resource!r} is not a parameter (\"value of resource_name setting "
                f"must be in parameters.\"; parameters: {', '.join(map(str, params))})", resource)
        return
    if params[resource].get("parameterType") not in ("int", "double"):
        t.error(at, f"resource_name {resource!r} is a {params[resource].get('parameterType')} parameter: Katib's "
                "hyperband writes an integer budget into it, so it must be int or double", resource)
        return
    eta, r_l = search.get("eta", hyperband.DEFAULT_ETA), float(search["maxResource"])
    if eta < 2 or r_l < 1:
        return  # refused with the native settings (search.eta, search.maxResource), where they are written
    need = int(math.ceil(eta ** hyperband.s_max(r_l, eta)))
    parallel = spec.get("parallelTrialCount", 3)  # Katib's default
    if isinstance(parallel, int) and parallel < need:
        t.error(("spec", "parallelTrialCount") if "parallelTrialCount" in spec else where,
                f"Katib's hyperband needs parallelTrialCount of at least eta^s_max = {need} (its first bracket, run at "
                f"once; \"parallelTrialCount must be not less than {need}.\")", parallel)


def algorithm(t: Translator, spec: dict[str, Any]) -> dict[str, Any]:
    """spec.algorithm → the native search mapping (also spec.maxTrialCount)."""
    base = ("spec", "algorithm")
    algo = t.mapping(base, required=True)
    t.known_keys(base, ["algorithmName", "algorithmSettings"])
    name = algo.get("algorithmName")
    search: dict[str, Any] = {}
    t.put(("search",), search, base)
    if isinstance(name, str) and name in ALGORITHMS:
        search["algorithm"] = ALGORITHMS[name]
        t.at(("search", "algorithm"), base + ("algorithmName",))
    elif isinstance(name, str) and name in UNSUPPORTED:
        t.error(base + ("algorithmName",), f"algorithm {name} is not supported: {UNSUPPORTED[name]}", name)
    elif algo and not isinstance(name, str):
        t.error(base + ("algorithmName",), "spec.algorithm.algorithmName must be a string", name)
    elif algo:
        t.error(base + ("algorithmName",), f"unknown Katib algorithm (known: {', '.join(ALGORITHMS)})", name)
    known = SETTINGS.get(name, {}) if isinstance(name, str) else {}
    for i, setting in enumerate(t.sequence(base + ("algorithmSettings",))):
        sp = base + ("algorithmSettings", i)
        if not isinstance(setting, dict) or not isinstance(setting.get("name"), str):
            t.error(sp, "an algorithm setting is a mapping with name and value", setting)
            continue
        t.known_keys(sp, ["name", "value"])
        key, value = setting["name"], setting.get("value")
        if not isinstance(name, str) or name not in SETTINGS:
            continue  # the algorithm is reported above
        if (name, key) in NO_EQUIVALENT and key not in known:
            t.error(sp + ("name",), f"algorithm setting {key} of {name} is not supported: {NO_EQUIVALENT[name, key]}", key)
            continue
        if key not in known:
            takes = f"its settings: {', '.join(known)}" if known else "it takes no settings"
            t.error(sp + ("name",), f"unknown setting {key!r} for Katib's {name} ({takes})", key)
            continue
        dst, read = known[key]
        try:
            parsed = read(str(value).strip())
        except ValueError as exc:
            reason = NO_EQUIVALENT.get((name, key))
            t.error(sp + ("value",), f"algorithm setting {key} of {name} is not supported: {reason}"
                    if reason and dst is None else f"algorithm setting {key} {exc}", value)
            continue
        if dst is not None:
            search[dst] = parsed
            t.at(("search", dst), sp + ("value",))
    if name == "hyperband":
        _hyperband(t, spec, search)
    if "maxTrialCount" in spec:
        search["trials"] = spec["maxTrialCount"]
        t.at(("search", "trials"), ("spec", "maxTrialCount"))
    return search


#: Katib's metric strategies: the value a trial reports for a metric it printed several times.
STRATEGIES = ("min", "max", "latest")


def metric_strategies(t: Translator, objective: dict[str, Any]) -> None:
    """spec.objective.metricStrategies → objective.strategies, with Katib's defaults: a metric
    without a strategy takes min when the objective minimizes and max when it maximizes (Katib's
    experiment defaults, for the objective metric and the additional ones alike)."""
    ob = ("spec", "objective")
    names = [objective.get("objectiveMetricName"), *(objective.get("additionalMetricNames") or [])]
    names = [n for n in names if isinstance(n, str)]
    default = {"minimize": "min", "maximize": "max"}.get(objective.get("type"), "latest")
    out: dict[str, str] = {n: default for n in names}
    seen: set[str] = set()
    for i, strategy in enumerate(t.sequence(ob + ("metricStrategies",))):
        sp = ob + ("metricStrategies", i)
        if not isinstance(strategy, dict):
            t.error(sp, "a metric strategy is a mapping with name and value", strategy)
            continue
        t.known_keys(sp, ["name", "value"])
        name, value = strategy.get("name"), strategy.get("value")
        if not isinstance(name, str) or name not in names:
            t.error(sp + ("name",), "a metric strategy names the objective metric or an additional metric "
                    f"({', '.join(names) or 'none'})", name)
        elif name in seen:
            t.error(sp + ("name",), f"metric {name!r} has two strategies", name)
        elif value not in STRATEGIES:
            t.error(sp + ("value",), "a metric strategy is min, max or latest", value)
        else:
            seen.add(name)
            out[name] = value
            t.at(("objective", "strategies", name), sp + ("value",))
    if out:
        t.out.setdefault("objective", {})["strategies"] = out


def distribution(t: Translator, fs: tuple, space: dict[str, Any], dst: tuple, name: str) -> None:
    """feasibleSpace.distribution normal / logNormal: Katib's hyperopt service draws from a normal
    of mu = the middle of min and max and sigma = a sixth of the range (on the log scale for
    logNormal); the native parameter says the same with distribution: normal."""
    dist = space.get("distribution")
    t.put(dst + ("distribution",), "normal", fs + ("distribution",))
    if dist == "logNormal":
        t.put(dst + ("scale",), "log", fs + ("distribution",))
        if "step" in space:
            t.error_key(fs + ("step",), f"parameter {name!r}: a logNormal range with a step has no grid meaning; "
                        "remove step")
