"""Katib ``Experiment`` (kubeflow.org/v1beta1) read as it is, into the native spec.

Supported: parameters (double, int, discrete, categorical; feasibleSpace min/max/step/list and
distribution uniform/logUniform/normal/logNormal), objective (type, goal, objectiveMetricName,
additionalMetricNames, metricStrategies), the algorithms random, grid, tpe, multivariate-tpe,
cmaes, sobol and bayesianoptimization with their settings (katib_search.py),
parallelTrialCount, maxTrialCount, maxFailedTrialCount, the StdOut, File and (file-reading) Custom metrics collectors,
earlyStopping medianstop, resumePolicy (all three values: kubesweep always resumes from its Jobs
and journal), and a trialTemplate whose trialSpec is a batch/v1 Job with one container (inline, or read from
a ConfigMap in the cluster: trialTemplate.configMap).
Everything else is refused with the reason, never ignored.

The trial template and the metrics collector are read by katib_trial.py.
"""

from __future__ import annotations

import math
import re
from typing import Any

from .base import Translator
from . import katib_search
from .katib_trial import ConfigMaps, metrics_collector, trial_template

API_VERSION = "kubeflow.org/v1beta1"

_SPEC_MEANINGLESS = {
    "nasConfig": "neural architecture search is out of scope",
}
#: Katib's resumePolicy values. kubesweep keeps no suggestion service: what it knows of a sweep is
#: in the cluster's Jobs and its journal (results/<experiment>/trials.jsonl), so every value means
#: what FromVolume means in Katib: run it again (with a larger maxTrialCount) and it goes on.
RESUME_POLICIES = ("Never", "LongRunning", "FromVolume")
#: Katib's medianstop settings → the native earlyStopping keys.
_MEDIANSTOP = {"min_trials_required": "minTrials", "start_step": "startStep"}


def _number(t: Translator, path: tuple, text: Any, is_int: bool) -> Any:
    """Katib writes feasibleSpace bounds as strings ("0.01"); they must parse as numbers."""
    try:
        if isinstance(text, bool):
            raise ValueError
        if is_int:
            if isinstance(text, int) or (isinstance(text, str) and re.fullmatch(r"[-+]?[0-9]{1,4000}", text.strip())):
                return int(text)  # exactly: float("9007199254740993") would round it
            value = float(text)
            if not value.is_integer() or not math.isfinite(value):
                raise ValueError
            return int(value)
        value = float(text)
        if not math.isfinite(value):
            raise ValueError
        return value
    except (TypeError, ValueError, OverflowError):
        t.error(path, f"{t.name(path)} must be {'an integer' if is_int else 'a number'}", text)
        return None


def _discrete(t: Translator, path: tuple, value: Any) -> Any:
    """A discrete value as Katib substitutes it: the text as written ("16" stays 16, not 16.0;
    "1e-3" stays "1e-3"), held as a number where the number spells the same."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if not isinstance(value, str):
        t.error(path, f"{t.name(path)} must be a number", value)
        return None
    try:
        number = float(value)
    except ValueError:
        t.error(path, f"{t.name(path)} must be a number", value)
        return None
    if not math.isfinite(number):
        t.error(path, f"{t.name(path)} must be a finite number", value)
        return None
    if re.fullmatch(r"-?[0-9]+", value) and str(int(value)) == value:
        return int(value)
    if repr(number) == value:
        return number
    return value  # e.g. "1e-3" or "016": passed on exactly as written


def _categorical(t: Translator, path: tuple, value: Any) -> Any:
    """A categorical value is a string in Katib; YAML's true, false and numbers are spelled as YAML
    (and JSON) spell them, never as Python does (True, None)."""
    if value is None or isinstance(value, (list, dict)):
        t.error(path, f"{t.name(path)} must be a string (quote it: null, lists and mappings are not values)", value)
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _parameters(t: Translator, search: str) -> dict[str, str]:
    """Translate spec.parameters; return the parameter types by name."""
    types: dict[str, str] = {}
    items = t.sequence(("spec", "parameters"))
    if not items:
        t.error(("spec",), "spec.parameters must list at least one parameter")
    t.put(("parameters",), {}, ("spec", "parameters"))
    for i, item in enumerate(items):
        p = ("spec", "parameters", i)
        if not isinstance(item, dict):
            t.error(p, f"{t.name(p)} must be a mapping with name, parameterType and feasibleSpace", item)
            continue
        t.known_keys(p, ["name", "parameterType", "feasibleSpace"])
        name, kind = item.get("name"), item.get("parameterType")
        if not isinstance(name, str) or not name:
            t.error(p, f"{t.name(p)} needs a name")
            continue
        if name in t.out["parameters"]:
            t.error(p + ("name",), f"parameter {name!r} is defined twice")
            continue
        if kind not in ("double", "int", "discrete", "categorical"):
            t.error(p + ("parameterType",), f"{t.name(p + ('parameterType',))} must be one of double, int, discrete, categorical", kind)
            t.out["parameters"][name] = {}  # declared, so references to it are not reported as well
            types[name] = "invalid"
            continue
        types[name] = kind
        fs = p + ("feasibleSpace",)
        space = t.mapping(fs, required=True)
        t.known_keys(fs, ["min", "max", "step", "list", "distribution"])
        dst = ("parameters", name)
        t.at(dst, p)
        if kind in ("discrete", "categorical"):
            values = space.get("list")
            if not isinstance(values, list):
                t.error(fs, f"{kind} parameter {name!r} needs feasibleSpace.list")
                continue
            if kind == "discrete":
                values = [_discrete(t, fs + ("list", j), v) for j, v in enumerate(values)]
            else:
                values = [_categorical(t, fs + ("list", j), v) for j, v in enumerate(values)]
            t.put(dst + ("values",), values, fs + ("list",))
            for key in ("min", "max", "step"):
                if key in space:
                    t.error_key(fs + (key,), f"{kind} parameter {name!r} takes a list, not {key}")
            continue
        is_int = kind == "int"
        param: dict[str, Any] = {"type": "int" if is_int else "float"}
        t.put(dst, param, p)
        for key in ("min", "max", "step"):
            if key in space:
                value = _number(t, fs + (key,), space[key], is_int)
                if value is not None:
                    t.put(dst + (key,), value, fs + (key,))
        if "list" in space:
            t.error_key(fs + ("list",), f"{kind} parameter {name!r} takes min/max/step, not a list")
        if search == "grid" and kind == "double" and "step" not in space and "min" in space and "max" in space:
            t.error(p, f"grid search needs feasibleSpace.step for the double parameter {name!r} "
                    "(or make it discrete with a list; random and tpe sample the range as is)")
        dist = space.get("distribution")
        if dist is None or dist == "uniform":
            pass
        elif dist == "logUniform":
            t.put(dst + ("scale",), "log", fs + ("distribution",))
            if "step" in space:
                t.error_key(fs + ("step",), f"parameter {name!r}: a logUniform range with a step has no grid meaning; remove step (random search samples log-uniformly)")
        elif dist in ("normal", "logNormal"):
            katib_search.distribution(t, fs, space, dst, name)
        else:
            t.error(fs + ("distribution",), f"distribution {dist!r} is not supported (uniform, logUniform, normal, logNormal)", dist)
    return types


def _early_stopping(t: Translator) -> None:
    """spec.earlyStopping: Katib's medianstop (min_trials_required, start_step) → the native medianstop pruner
    (Katib's rule, run in the client: run/pruning.py)."""
    es = ("spec", "earlyStopping")
    if t.get(es) is None:
        return
    given = t.mapping(es)
    t.known_keys(es, ["algorithmName", "algorithmSettings"])
    name = given.get("algorithmName")
    if name != "medianstop":
        t.error(es + ("algorithmName",) if "algorithmName" in given else es,
                "spec.earlyStopping.algorithmName must be medianstop (Katib's one early-stopping algorithm)", name)
        return
    out: dict[str, Any] = {"pruner": "medianstop"}
    t.put(("earlyStopping",), out, es)
    t.at(("earlyStopping", "pruner"), es + ("algorithmName",))
    for i, setting in enumerate(t.sequence(es + ("algorithmSettings",))):
        sp = es + ("algorithmSettings", i)
        key = setting.get("name") if isinstance(setting, dict) else None
        if key not in _MEDIANSTOP:
            t.error(sp, f"medianstop has no setting {key!r} (its settings: {', '.join(_MEDIANSTOP)})", key)
            continue
        t.known_keys(sp, ["name", "value"])
        try:
            out[_MEDIANSTOP[key]] = int(str(setting.get("value")))
            t.at(("earlyStopping", _MEDIANSTOP[key]), sp + ("value",))
        except ValueError:
            t.error(sp + ("value",), f"medianstop {key} must be an integer", setting.get("value"))


def read(data: dict[str, Any], t: Translator, image: str | None = None, configmaps: ConfigMaps | None = None) -> None:
    t.names.update({"earlyStopping.minTrials": "min_trials_required", "earlyStopping.startStep": "start_step",
                    "search.trials": "spec.maxTrialCount", "batchSize": "spec.parallelTrialCount",
                    "maxFailedTrials": "spec.maxFailedTrialCount", "search.seed": "random_state",
                    "objective.metric": "spec.objective.objectiveMetricName",
                    "objective.direction": "spec.objective.type", "objective.goal": "spec.objective.goal"})
    t.known_keys((), ["apiVersion", "kind", "metadata", "spec"], {"status": "it is written by Katib's controller; remove it"})
    if data.get("apiVersion") != API_VERSION:
        t.error(("apiVersion",), f"only Katib {API_VERSION} Experiments are read", data.get("apiVersion"))
    t.known_keys(("metadata",), ["name", "namespace", "labels", "annotations"])
    t.copy(("metadata", "name"), ("name",))
    t.copy(("metadata", "namespace"), ("namespace",))
    spec = t.mapping(("spec",), required=True)
    t.known_keys(("spec",), ["objective", "algorithm", "parallelTrialCount", "maxTrialCount", "maxFailedTrialCount",
                              "parameters", "trialTemplate", "metricsCollectorSpec", "resumePolicy", "earlyStopping"],
                 _SPEC_MEANINGLESS)
    policy = spec.get("resumePolicy")
    if policy is not None and policy not in RESUME_POLICIES:
        t.error(("spec", "resumePolicy"), f"spec.resumePolicy must be one of {', '.join(RESUME_POLICIES)}", policy)
    _early_stopping(t)

    search = katib_search.algorithm(t, spec)
    t.copy(("spec", "parallelTrialCount"), ("batchSize",))
    t.copy(("spec", "maxFailedTrialCount"), ("maxFailedTrials",))

    ob = ("spec", "objective")
    objective = t.mapping(ob, required=True)
    t.known_keys(ob, ["type", "goal", "objectiveMetricName", "additionalMetricNames", "metricStrategies"])
    t.put(("objective",), {}, ob)
    if objective and "objectiveMetricName" not in objective:
        t.error(ob, "spec.objective needs objectiveMetricName (the metric to optimise)")
    t.copy(ob + ("objectiveMetricName",), ("objective", "metric"))
    t.copy(ob + ("type",), ("objective", "direction"))
    t.copy(ob + ("goal",), ("objective", "goal"))
    t.copy(ob + ("additionalMetricNames",), ("objective", "additionalMetrics"))
    katib_search.metric_strategies(t, objective)

    metrics_collector(t)

    params = _parameters(t, search.get("algorithm", "grid"))
    trial_template(t, params, configmaps)
    if image is not None:
        t.out["image"] = image
