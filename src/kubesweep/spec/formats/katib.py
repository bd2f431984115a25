"""Katib ``Experiment`` (kubeflow.org/v1beta1) read as it is, into the native spec.

Supported: parameters (double, int, discrete, categorical; feasibleSpace min/max/step/list and
distribution uniform/logUniform), objective (type, goal, objectiveMetricName,
additionalMetricNames), algorithm random and tpe (algorithmSettings random_state) and grid,
parallelTrialCount, maxTrialCount, maxFailedTrialCount, the StdOut metrics collector with one
metricsFormat regex, and a trialTemplate whose trialSpec is a batch/v1 Job with one container.
Everything else is refused with the reason, never ignored.
"""

from __future__ import annotations

import math
import re
from typing import Any

from .base import Translator

API_VERSION = "kubeflow.org/v1beta1"
_REF = re.compile(r"\$\{(trialParameters|trialSpec)\.([^}]*)\}")

_SPEC_MEANINGLESS = {
    "earlyStopping": "early stopping (medianstop) needs Katib's suggestion service; use objective.goal to stop early",
    "nasConfig": "neural architecture search is out of scope",
    "resumePolicy": "kubesweep always resumes from the Jobs in the cluster; remove this field",
}
# Valid Kubernetes fields of the trial Job that kubesweep does not carry, with the reason.
_WHY = "kubesweep's trial Job sets this itself"
_JOB_METADATA = {"name": "trial Jobs are named by kubesweep from the experiment and the parameters",
                 "generateName": "trial Jobs are named by kubesweep from the experiment and the parameters",
                 "namespace": "trials run in the Experiment's namespace"}
_JOB_SPEC = {key: _WHY for key in ("parallelism", "completions", "completionMode", "suspend", "selector",
                                    "manualSelector", "podFailurePolicy", "podReplacementPolicy", "successPolicy",
                                    "backoffLimitPerIndex", "maxFailedIndexes", "managedBy")}
_POD_SPEC = {
    **{key: "a trial pod runs one container and mounts only its output volume (see output in docs/grid.md)"
       for key in ("volumes", "initContainers", "ephemeralContainers")},
    **{key: "not carried into trial pods; schedule with nodeSelector and tolerations"
       for key in ("affinity", "topologySpreadConstraints", "nodeName", "priorityClassName", "priority",
                   "schedulerName", "runtimeClassName", "preemptionPolicy", "overhead", "schedulingGates",
                   "resourceClaims")},
    **{key: "not carried into trial pods" for key in ("hostNetwork", "hostPID", "hostIPC", "dnsPolicy", "dnsConfig",
                                                     "hostAliases", "imagePullSecrets", "securityContext",
                                                     "terminationGracePeriodSeconds", "activeDeadlineSeconds",
                                                     "automountServiceAccountToken", "enableServiceLinks",
                                                     "shareProcessNamespace", "hostname", "subdomain", "os",
                                                     "readinessGates", "serviceAccount", "setHostnameAsFQDN",
                                                     "hostUsers")},
}
_CONTAINER = {
    **{key: "a trial writes to its output volume, mounted by kubesweep (see output in docs/grid.md)"
       for key in ("volumeMounts", "volumeDevices")},
    **{key: "values from ConfigMaps and Secrets are not supported; set env values inline" for key in ("envFrom",)},
    **{key: "not carried into the trial container" for key in ("workingDir", "ports", "securityContext",
                                                               "livenessProbe", "readinessProbe", "startupProbe",
                                                               "lifecycle", "stdin", "stdinOnce", "tty",
                                                               "terminationMessagePath", "terminationMessagePolicy",
                                                               "resizePolicy", "restartPolicy")},
}
_ALGORITHMS = {"random": "random", "grid": "grid", "tpe": "tpe"}  # tpe: Optuna's, where Katib uses hyperopt's


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
        else:
            t.error(fs + ("distribution",), f"distribution {dist!r} is not supported (uniform, logUniform)", dist)
    return types


def _substitute(t: Translator, path: tuple, text: Any, refs: dict[str, str | None]) -> Any:
    """Katib's references in ``text`` as kubesweep placeholders; every other ``$`` (``${HOME}``,
    ``$(VAR)``, ``$$``) is the user's own text and is escaped so that it stays exactly as written."""
    if not isinstance(text, str):
        return text

    def swap(m: re.Match[str]) -> str:
        scope, key = m.group(1), m.group(2)
        if scope == "trialParameters":
            if key not in refs:
                t.error(path, f"${{trialParameters.{key}}} is not declared in trialTemplate.trialParameters", text)
                return m.group(0)
            ref = refs[key]
            return m.group(0) if ref is None else "${" + ref + "}"  # None: its declaration is already reported
        mapped = {"Name": "trial", "Namespace": "namespace"}.get(key)
        if mapped is None:
            t.error(path, f"${{trialSpec.{key}}} is not supported (only Name and Namespace)", text)
            return m.group(0)
        return "${" + mapped + "}"

    out, last = [], 0
    for m in _REF.finditer(text):
        out.append(text[last : m.start()].replace("$", "$$"))
        out.append(swap(m))
        last = m.end()
    out.append(text[last:].replace("$", "$$"))
    return "".join(out)


def _pod_metadata(t: Translator, js: tuple) -> None:
    """The pod template's labels and annotations: kubesweep puts labels and annotations on both the
    Job and its pods, so the two are merged; the same key with two values is refused."""
    pm = js + ("spec", "template", "metadata")
    t.known_keys(pm, ["labels", "annotations"], {"name": "pods of a Job are named by the Job controller",
                                                 "namespace": "pods run in the Experiment's namespace"})
    for part in ("labels", "annotations"):
        job_side = t.mapping(js + ("metadata", part))
        pod_side = t.mapping(pm + (part,))
        if not pod_side:
            continue
        merged = dict(t.out.get(part) or {})
        for key, value in pod_side.items():
            if key in job_side and job_side[key] != value:
                t.error(pm + (part, key), f"{part[:-1]} {key!r} has another value on the Job ({job_side[key]!r}); "
                        "kubesweep sets one value on both the Job and its pods", value)
                continue
            merged[key] = value
            t.at((part, key), pm + (part, key))
        t.out[part] = merged
        t.out_pos.values.setdefault((part,), t.pos.value(pm + (part,)))


def _trial_template(t: Translator, params: dict[str, str]) -> None:
    tt = ("spec", "trialTemplate")
    t.mapping(tt, required=True)
    t.known_keys(tt, ["primaryContainerName", "trialParameters", "trialSpec", "successCondition", "failureCondition", "retain"],
                 {"configMap": "trial templates from a ConfigMap need the cluster; inline the Job as trialSpec",
                  "primaryPodLabels": "only Job trials are supported; their pods are labelled by kubesweep"})
    for key, default in (("successCondition", "status.conditions.#(type==\"Complete\")#|#(status==\"True\")#"),
                         ("failureCondition", "status.conditions.#(type==\"Failed\")#|#(status==\"True\")#")):
        value = t.get(tt + (key,))
        if value is not None and value != default:
            t.error(tt + (key,), f"{key} other than Katib's default for Jobs is not supported: kubesweep reads the Job's Complete/Failed condition", value)
    refs: dict[str, str | None] = {}
    for i, item in enumerate(t.sequence(tt + ("trialParameters",))):
        p = tt + ("trialParameters", i)
        t.known_keys(p, ["name", "description", "reference"])
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not isinstance(item.get("reference"), str):
            t.error(p, f"{t.name(p)} needs a name and a reference")
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                refs[item["name"]] = None  # reported here; its uses are not reported again
            continue
        if item["reference"] not in params:
            t.error(p + ("reference",), f"trialParameter {item['name']!r} references {item['reference']!r}, which is not in spec.parameters", item["reference"])
            refs[item["name"]] = None
            continue
        refs[item["name"]] = item["reference"]

    js = tt + ("trialSpec",)
    job = t.mapping(js, required=True)
    if not job:
        return
    if job.get("apiVersion") != "batch/v1" or job.get("kind") != "Job":
        t.error(js, "trialSpec must be a batch/v1 Job (other trial kinds need their operators)", f"{job.get('apiVersion')}/{job.get('kind')}")
        return
    t.known_keys(js, ["apiVersion", "kind", "metadata", "spec"])
    t.known_keys(js + ("metadata",), ["labels", "annotations"], _JOB_METADATA)
    t.copy(js + ("metadata", "labels"), ("labels",))
    t.copy(js + ("metadata", "annotations"), ("annotations",))
    t.known_keys(js + ("spec",), ["template", "backoffLimit", "activeDeadlineSeconds", "ttlSecondsAfterFinished"], _JOB_SPEC)
    for key in ("backoffLimit", "activeDeadlineSeconds", "ttlSecondsAfterFinished"):
        t.copy(js + ("spec", key), (key,))
    ps = js + ("spec", "template", "spec")
    t.known_keys(js + ("spec", "template"), ["metadata", "spec"])
    _pod_metadata(t, js)
    t.known_keys(ps, ["containers", "restartPolicy", "nodeSelector", "tolerations", "serviceAccountName"], _POD_SPEC)
    restart = t.get(ps + ("restartPolicy",))
    if restart not in (None, "Never"):
        t.error(ps + ("restartPolicy",), "restartPolicy must be Never: a trial that fails is a failed trial, retried only by backoffLimit", restart)
    t.copy(ps + ("nodeSelector",), ("nodeSelector",))
    t.copy(ps + ("tolerations",), ("tolerations",))
    t.copy(ps + ("serviceAccountName",), ("serviceAccount",))

    containers = t.sequence(ps + ("containers",))
    primary = t.get(tt + ("primaryContainerName",))
    index = next((i for i, c in enumerate(containers) if isinstance(c, dict) and c.get("name") == primary), None)
    if index is None:
        if len(containers) == 1 and primary is None:
            index = 0
        else:
            t.error(ps + ("containers",), f"no container named {primary!r} (trialTemplate.primaryContainerName) in the trialSpec", primary)
            return
    if len(containers) > 1:
        t.error(ps + ("containers",), "only the primary container is supported; sidecars have no place in a kubesweep trial", len(containers))
    c = ps + ("containers", index)
    t.known_keys(c, ["name", "image", "command", "args", "env", "resources", "imagePullPolicy"], _CONTAINER)
    container = t.mapping(c)
    t.copy(c + ("image",), ("image",))
    t.copy(c + ("imagePullPolicy",), ("imagePullPolicy",))
    command = t.get(c + ("command",)) or []
    args = t.get(c + ("args",)) or []
    for key, value in (("command", command), ("args", args)):
        if not isinstance(value, list):
            t.error(c + (key,), f"{t.name(c + (key,))} must be a list of strings", value)
    if not isinstance(command, list) or not isinstance(args, list):
        return
    argv = [_substitute(t, c + ("command", i), x, refs) for i, x in enumerate(command)]
    argv += [_substitute(t, c + ("args", i), x, refs) for i, x in enumerate(args)]
    t.put(("command",), argv, c + ("command",) if command else c)
    for i in range(len(command)):
        t.at(("command", i), c + ("command", i))
    for i in range(len(args)):
        t.at(("command", len(command) + i), c + ("args", i))
    if not container.get("command") and not container.get("args"):
        t.error(c, "the primary container needs a command (kubesweep passes parameters as arguments)")
    elif not container.get("command"):
        t.error(c + ("args",), "a container with args but no command runs the image's ENTRYPOINT, which kubesweep "
                "does not carry (it writes the trial's whole argv as the command): write the entrypoint as command")
    env: dict[str, Any] = {}
    for i, item in enumerate(t.sequence(c + ("env",))):
        e = c + ("env", i)
        t.known_keys(e, ["name", "value"], {"valueFrom": "values from Secrets or fields are not supported; set the value inline"})
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            env[item["name"]] = _substitute(t, e + ("value",), item.get("value", ""), refs)
            t.at(("env", item["name"]), e + ("value",))
            t.out_pos.keys[("env", item["name"])] = t.pos.value(e + ("name",))  # a bad name is reported at the name
    if env:
        t.out["env"] = env
    _resources(t, c + ("resources",))


def _resources(t: Translator, res: tuple) -> None:
    """Requests and limits as Kubernetes reads them: a resource with only a limit requests that
    much; one with only a request has no limit; the two may differ (native resources.limits)."""
    t.known_keys(res, ["limits", "requests"])
    requests, limits = t.mapping(res + ("requests",)), t.mapping(res + ("limits",))
    for part in ("requests", "limits"):
        t.known_keys(res + (part,), ["cpu", "memory", "nvidia.com/gpu"],
                     {"ephemeral-storage": "trials write to their output volume; local storage is not requested"})
    out: dict[str, Any] = {}
    native_limits: dict[str, Any] = {}
    for key in ("cpu", "memory", "nvidia.com/gpu"):
        if key in requests or key in limits:
            source = "requests" if key in requests else "limits"
            out[key] = requests.get(key, limits.get(key))
            t.at(("resources", key), res + (source, key))
        if key in limits and key != "nvidia.com/gpu":
            native_limits[key] = limits[key]
            t.at(("resources", "limits", key), res + ("limits", key))
    if not out:
        return
    requested = {k: out[k] for k in ("cpu", "memory") if k in out}
    if native_limits != requested:  # limits that differ, or requests without limits
        out["limits"] = native_limits
        t.out_pos.values.setdefault(("resources", "limits"), t.pos.value(res + ("limits",) if limits else res))
    t.out["resources"] = out


def read(data: dict[str, Any], t: Translator, image: str | None = None) -> None:
    t.names.update({"search.trials": "spec.maxTrialCount", "batchSize": "spec.parallelTrialCount",
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
                              "parameters", "trialTemplate", "metricsCollectorSpec"], _SPEC_MEANINGLESS)

    algo = t.mapping(("spec", "algorithm"), required=True)
    t.known_keys(("spec", "algorithm"), ["algorithmName", "algorithmSettings"])
    name = algo.get("algorithmName")
    search: dict[str, Any] = {}
    t.put(("search",), search, ("spec", "algorithm"))
    if isinstance(name, str) and name in _ALGORITHMS:
        search["algorithm"] = _ALGORITHMS[name]
        t.at(("search", "algorithm"), ("spec", "algorithm", "algorithmName"))
    elif algo:
        t.error(("spec", "algorithm", "algorithmName"), "algorithm must be random, grid or tpe (other adaptive algorithms need Katib's suggestion services)", name)
    for i, setting in enumerate(t.sequence(("spec", "algorithm", "algorithmSettings"))):
        sp = ("spec", "algorithm", "algorithmSettings", i)
        if isinstance(setting, dict) and setting.get("name") == "random_state" and name in ("random", "tpe"):
            try:
                search["seed"] = int(str(setting.get("value")))
                t.at(("search", "seed"), sp + ("value",))
            except ValueError:
                t.error(sp + ("value",), "random_state must be an integer", setting.get("value"))
        else:
            setting_name = setting.get("name") if isinstance(setting, dict) else setting
            t.error(sp, f"algorithm setting {setting_name!r} is not supported for {name} (only random_state)"
                    if name in ("random", "tpe") else f"algorithm setting {setting_name!r} has no meaning for {name}")
    if "maxTrialCount" in spec:
        search["trials"] = spec["maxTrialCount"]
        t.at(("search", "trials"), ("spec", "maxTrialCount"))
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
    for i, strategy in enumerate(objective.get("metricStrategies") or []):
        if not isinstance(strategy, dict) or strategy.get("value") != "latest":
            t.error(ob + ("metricStrategies", i), "only the 'latest' metric strategy is supported (kubesweep reads the last value printed)", strategy)

    mc = ("spec", "metricsCollectorSpec")
    t.known_keys(mc, ["collector", "source"])
    kind = t.get(mc + ("collector", "kind"), "StdOut")
    if kind != "StdOut":
        t.error(mc + ("collector", "kind"), "only the StdOut metrics collector is supported (metrics are read from the trial's log)", kind)
    t.known_keys(mc + ("source",), ["filter"], {"fileSystemPath": "metrics are read from the trial's log, not a file",
                                               "httpGet": "metrics are read from the trial's log"})
    formats = t.get(mc + ("source", "filter", "metricsFormat")) or []
    if len(formats) > 1:
        t.error(mc + ("source", "filter", "metricsFormat"), "only one metricsFormat regex is supported", len(formats))
    elif formats:
        t.put(("objective", "regex"), formats[0], mc + ("source", "filter", "metricsFormat", 0))

    params = _parameters(t, search.get("algorithm", "grid"))
    _trial_template(t, params)
    if image is not None:
        t.out["image"] = image
