"""Katib ``kubeflow.org/v1beta1`` Experiments (formats/katib.py): valid ones, then perturbed.

Katib writes feasibleSpace bounds and discrete lists as strings ("0.01", ["16", "32"]); a trial
receives ``${trialParameters.X}`` as that string. The strategy draws both spellings.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from .native import ODD_TOLERATIONS
from .perturb import Path, perturbed
from .values import EDGE_INTS, edge_floats, nasty_strings, nasty_values

IMAGE = "localhost:5000/fuzz/trainer:1"
VOCABULARY = [
    "apiVersion", "kind", "metadata", "name", "namespace", "spec", "objective", "type", "goal", "objectiveMetricName",
    "additionalMetricNames", "metricStrategies", "algorithm", "algorithmName", "algorithmSettings", "value",
    "parallelTrialCount", "maxTrialCount", "maxFailedTrialCount", "parameters", "parameterType", "feasibleSpace",
    "min", "max", "step", "list", "distribution", "trialTemplate", "primaryContainerName", "trialParameters",
    "reference", "description", "trialSpec", "template", "containers", "image", "command", "args", "env", "resources",
    "limits", "requests", "restartPolicy", "nodeSelector", "tolerations", "serviceAccountName", "backoffLimit",
    "activeDeadlineSeconds", "ttlSecondsAfterFinished", "labels", "annotations", "metricsCollectorSpec", "collector",
    "source", "filter", "metricsFormat", "earlyStopping", "resumePolicy", "status", "valueFrom", "configMap", "retain",
]
NAMES = ["lr", "epochs", "optimizer", "batch", "dropout", "layers"]


@st.composite
def parameter(draw: st.DrawFn, name: str, algorithm: str) -> dict[str, Any]:
    kind = draw(st.sampled_from(["double", "int", "discrete", "categorical"]))
    quoted = draw(st.booleans())  # Katib's own spelling: numbers as strings

    def num(x: float | int) -> Any:
        return str(x) if quoted else x

    if kind == "double":
        space: dict[str, Any] = {"min": num(0.01), "max": num(0.05)}
        if algorithm == "grid" or draw(st.booleans()):
            space["step"] = num(0.01)
        elif draw(st.booleans()):
            space["distribution"] = draw(st.sampled_from(["logUniform", "normal", "logNormal"]))
    elif kind == "int":
        lo = draw(st.integers(0, 5))
        space = {"min": num(lo), "max": num(lo + draw(st.integers(1, 4)))}
        if draw(st.booleans()):
            space["step"] = num(1)
    elif kind == "discrete":
        items = draw(st.lists(st.sampled_from([16, 32, 64, 0.5, 1e-3, 128]), min_size=1, max_size=3, unique=True))
        space = {"list": [str(v) for v in items] if quoted else items}
    else:
        space = {"list": draw(st.lists(st.sampled_from(["sgd", "adam", "ftrl"]) | nasty_strings(), min_size=1, max_size=3,
                                       unique=True))}
    return {"name": name, "parameterType": kind, "feasibleSpace": space}


@st.composite
def valid_document(draw: st.DrawFn) -> dict[str, Any]:
    algorithm = draw(st.sampled_from(["random", "grid", "tpe", "multivariate-tpe", "sobol"]))
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True))
    params = [draw(parameter(n, algorithm)) for n in names]
    refs = {n: draw(st.sampled_from([n, n + "Param", "p" + str(i)])) for i, n in enumerate(names)}
    flags = [f"--{n}=${{trialParameters.{refs[n]}}}" for n in names]
    style = draw(st.sampled_from(["command", "command", "args", "args-only"]))
    if style == "command":
        command, args = ["python3", "/app/train.py"] + flags, []
    elif style == "args":
        command, args = ["python3", "/app/train.py"], flags
    else:  # the image's ENTRYPOINT runs, with the flags as its arguments
        command, args = [], flags
    if draw(st.integers(0, 3)) == 0:
        args = args + ["--name=${trialSpec.Name}"]
    container: dict[str, Any] = {"name": "training-container", "image": IMAGE}
    if command:
        container["command"] = command
    if args:
        container["args"] = args
    if draw(st.booleans()):
        container["resources"] = {"limits": {"cpu": "1", "memory": "512Mi"}}
    if draw(st.integers(0, 3)) == 0:
        container["env"] = [{"name": "PYTHONUNBUFFERED", "value": "1"}, {"name": "NOTE", "value": "${trialSpec.Name}"}]
    pod: dict[str, Any] = {"containers": [container], "restartPolicy": "Never"}
    if draw(st.integers(0, 3)) == 0:
        pod["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    if draw(st.integers(0, 3)) == 0:
        pod["nodeSelector"] = {"nvidia.com/gpu.present": "true"}
    job_spec: dict[str, Any] = {"template": {"spec": pod}}
    if draw(st.integers(0, 3)) == 0:
        job_spec["backoffLimit"] = draw(st.integers(0, 3))
    spec: dict[str, Any] = {
        "objective": {"type": draw(st.sampled_from(["maximize", "minimize"])), "objectiveMetricName": "accuracy"},
        "algorithm": {"algorithmName": algorithm},
        "parallelTrialCount": draw(st.integers(1, 3)),
        "maxTrialCount": draw(st.integers(1, 3)),
        "parameters": params,
        "trialTemplate": {
            "primaryContainerName": "training-container",
            "trialParameters": [{"name": refs[n], "reference": n, "description": "d"} for n in names],
            "trialSpec": {"apiVersion": "batch/v1", "kind": "Job", "spec": job_spec},
        },
    }
    if algorithm not in ("grid", "sobol") and draw(st.booleans()):  # Katib's sobol takes no settings
        spec["algorithm"]["algorithmSettings"] = [{"name": "random_state", "value": str(draw(st.integers(0, 99)))}]
    if draw(st.integers(0, 3)) == 0:
        spec["objective"]["goal"] = 0.99
        spec["objective"]["additionalMetricNames"] = ["loss"]
    if draw(st.integers(0, 4)) == 0:
        spec["maxFailedTrialCount"] = 2
    return {"apiVersion": "kubeflow.org/v1beta1", "kind": "Experiment",
            "metadata": {"name": draw(st.sampled_from(["katib-fz", "k"])), "namespace": "default"}, "spec": spec}


def _semantic(count: int) -> st.SearchStrategy[tuple[Path, Any]]:
    param = st.integers(0, count - 1)
    bound = st.sampled_from(["0", "2147483647", "1e12", "1e400", "nan", "inf", "-inf", "1_000", "0x10", " 5", "5\n", "",
                             "1e-12", "9" * 400]) | st.sampled_from(EDGE_INTS) | edge_floats()
    space = ("spec", "trialTemplate", "trialSpec", "spec")
    pod = space + ("template", "spec")
    return st.one_of(
        st.tuples(param.map(lambda i: ("spec", "parameters", i, "feasibleSpace", "min")), bound),
        st.tuples(param.map(lambda i: ("spec", "parameters", i, "feasibleSpace", "max")), bound),
        st.tuples(param.map(lambda i: ("spec", "parameters", i, "feasibleSpace", "step")), bound),
        st.tuples(param.map(lambda i: ("spec", "parameters", i, "feasibleSpace", "list")),
                  st.sampled_from([["16", "32"], [True, False, None], ["nan"], ["inf", "1e400"], ["1_000"], ["16", "16.0"],
                                   [1, 1.0, "1"], [[1], {"a": 1}], [], ["$(HOME)", "a$$b"], ["x\n", "y"]])),
        st.tuples(param.map(lambda i: ("spec", "parameters", i, "parameterType")),
                  st.sampled_from(["double", "int", "discrete", "categorical", "Double", None])),
        st.tuples(st.sampled_from([("spec", "maxTrialCount"), ("spec", "parallelTrialCount"), ("spec", "maxFailedTrialCount"),
                                   space + ("backoffLimit",), space + ("activeDeadlineSeconds",),
                                   space + ("ttlSecondsAfterFinished",)]), st.sampled_from(EDGE_INTS) | edge_floats() | nasty_strings()),
        st.tuples(st.just(("spec", "algorithm", "algorithmSettings")),
                  st.sampled_from([[{"name": "random_state", "value": v}] for v in ["1e3", "9" * 30, "-1", " 7", "", None, 7]])),
        st.tuples(st.just(pod + ("tolerations",)), st.lists(st.sampled_from(ODD_TOLERATIONS), min_size=1, max_size=2)),
        st.tuples(st.sampled_from([("metadata", "name"), ("metadata", "namespace"), pod + ("serviceAccountName",),
                                   pod + ("containers", 0, "image"), pod + ("containers", 0, "name"),
                                   pod + ("containers", 0, "command", 0), pod + ("containers", 0, "imagePullPolicy"),
                                   ("spec", "objective", "objectiveMetricName")]), nasty_strings()),
        st.tuples(st.sampled_from([pod + ("nodeSelector",), space[:-1] + ("metadata", "labels"),
                                   space[:-1] + ("metadata", "annotations")]),
                  st.dictionaries(nasty_strings(), nasty_strings(), min_size=1, max_size=2)),
        st.tuples(st.just(pod + ("containers", 0, "env")),
                  st.lists(st.fixed_dictionaries({"name": nasty_strings(), "value": nasty_strings() | nasty_values()}), max_size=2)),
        st.tuples(st.just(pod + ("containers", 0, "resources")),
                  st.sampled_from([{"limits": {"cpu": "lots"}}, {"requests": {"nvidia.com/gpu": 2**63}}, {"limits": {"memory": 1e308}},
                                   {"limits": {"cpu": "1\n"}}, {"limits": {"cpu": "1"}, "requests": {"cpu": "2"}}])),
    )


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    doc = draw(valid_document())
    return draw(perturbed(doc, VOCABULARY, _semantic(len(doc["spec"]["parameters"]))))
