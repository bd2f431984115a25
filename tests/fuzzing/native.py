"""Native grid.yaml documents (docs/grid.md): valid sweeps drawn from every key, then perturbed."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st

from .perturb import Path, perturbed
from .values import EDGE_INTS, edge_floats, nasty_strings, nasty_values

IMAGE = "localhost:5000/fuzz/trainer:1"
PARAM_NAMES = ["lr", "epochs", "optimizer", "dropout", "batch_size", "x", "model.depth", "_p", "a-b", "L2"]
VOCABULARY = [
    "name", "namespace", "image", "imagePullPolicy", "command", "parameters", "search", "algorithm", "seed", "trials",
    "trialLimit", "longestFirst", "batchSize", "maxFailedTrials", "objective", "metric", "direction", "goal", "regex",
    "additionalMetrics", "resources", "cpu", "memory", "nvidia.com/gpu", "nodeSelector", "tolerations", "env",
    "output", "hostPath", "pvc", "mountPath", "backoffLimit", "activeDeadlineSeconds", "ttlSecondsAfterFinished",
    "nodeLossGraceSeconds", "unschedulableSeconds", "serviceAccount", "securityContext", "runAsUser", "runAsGroup",
    "fsGroup", "labels", "annotations", "build", "values", "min", "max", "step", "count", "scale", "type", "<<",
]

#: Values a parameter's list may hold: mostly plain, some adversarial (they must reach argv verbatim).
_VALUE = st.one_of(st.sampled_from(["sgd", "adam", "rmsprop", "relu"]), st.integers(-5, 50),
                   st.sampled_from([0.1, 0.5, 1e-3, 2.5e-5, 1e-12, 1e308]), st.booleans(), nasty_strings())

#: Parameter ranges that are valid YAML but ask for absurd amounts of work.
HOSTILE_RANGES: list[dict[str, Any]] = [
    {"min": 0, "max": 2147483647}, {"min": 1, "max": 1e12, "type": "int"}, {"min": 0, "max": 10**30},
    {"min": 0.0, "max": 1.0, "step": 1e-12}, {"min": 0, "max": 1, "step": 5e-324}, {"min": 0.1, "max": 1.0, "count": 10**9},
    {"min": 1e-300, "max": 1e300, "scale": "log", "count": 3}, {"min": -1e308, "max": 1e308}, {"min": 1, "max": 2, "count": 2**63},
    {"min": 0, "max": 1e308, "step": 1e-308}, {"min": 5e-324, "max": 1e308, "scale": "log"}, {"min": 1, "max": 10**20, "step": 1},
    {"min": -(2**63), "max": 2**63 - 1}, {"min": 0, "max": 1, "count": 10**6}, {"values": list(range(20_000))},
    {"min": 1, "max": 3, "step": 1e-12, "type": "int"}, {"min": 0.5, "max": 2**31 + 0.5, "type": "int"},
    {"min": 1.0, "max": 2.0, "count": 3, "type": "int"}, {"min": 1e-4, "max": 1e-1, "scale": "log", "type": "int"},
]
ODD_TOLERATIONS: list[dict[str, Any]] = [
    {"key": "", "operator": "Equal", "value": "x", "effect": "NoSchedule"}, {"key": "a", "operator": "Exists", "value": "v"},
    {"key": "a", "operator": "Lt", "value": "5"}, {"key": "a", "operator": "Bogus"}, {"key": "a", "effect": "Bogus"},
    {"key": "a", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 60},
    {"key": "a", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2**63},
    {"key": "a", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": -5},
    {"key": "a\n", "operator": "Exists"}, {"key": "a", "value": "v\n"}, {"key": "a b"}, {"key": "a", "value": "x" * 64},
    {"operator": "Exists"}, {}, {"key": "a", "operator": "Exists", "unknownField": 1},
    {"key": "kubesweep.io/x", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 3e9},
]


@st.composite
def parameter(draw: st.DrawFn, algorithm: str) -> tuple[Any, int | None]:
    """(a parameter, its number of points or None when continuous)."""
    kind = draw(st.sampled_from(["values", "values", "single", "int", "step", "count", "continuous"]))
    if kind == "values":
        values = draw(st.lists(_VALUE, min_size=1, max_size=4, unique_by=lambda v: (type(v), v)))
        return (values if draw(st.booleans()) else {"values": values}), len(values)
    if kind == "single":
        return draw(_VALUE), 1
    if kind == "int":
        lo = draw(st.integers(-5, 5))
        span = draw(st.integers(1, 4))
        return {"min": lo, "max": lo + span}, span + 1
    if kind == "step":
        step = draw(st.sampled_from([0.1, 0.2, 0.4]))
        return {"min": 0.1, "max": 0.5, "step": step}, {0.1: 5, 0.2: 3, 0.4: 2}[step]
    if kind == "count":
        count = draw(st.integers(1, 4))
        if draw(st.booleans()):
            return {"min": 1e-4, "max": 1e-1, "scale": "log", "count": count}, count
        return {"min": 0.0, "max": 1.0, "count": count}, count
    if algorithm == "grid":
        return {"min": 1, "max": 3}, 3
    shape = {"distribution": "normal"} if algorithm == "random" and draw(st.booleans()) else {}
    if draw(st.booleans()):
        return {"min": 1e-5, "max": 1e-1, "scale": "log", **shape}, None
    return {"min": 0.0, "max": 1.0, **shape}, None


def _command(draw: st.DrawFn, names: list[str]) -> list[str]:
    head = draw(st.sampled_from([["python3", "/app/train.py"], ["/usr/bin/env", "python"], ["trainer"]]))
    style = draw(st.sampled_from(["items", "items", "flags", "args", "args_no_hyphens", "json"]))
    if style == "items":
        body = [f"${{{n}}}" for n in names]
    elif style == "flags":
        body = [f"--{n}=${{{n}}}" for n in names]
    elif style == "json":
        body = ["--config", "${args_json}"]
    else:
        body = [f"${{{style}}}"]
    extra = draw(st.lists(st.sampled_from(["--trial=${trial}", "${output}", "--exp=${experiment}", "--ns=${namespace}",
                                           "cost$$5", "$$HOME", "--flag"]), max_size=2))
    return head + body + extra


@st.composite
def valid_document(draw: st.DrawFn) -> dict[str, Any]:
    """A native sweep that kubesweep should accept (small: a few trials)."""
    algorithm = draw(st.sampled_from(["grid", "grid", "random", "tpe", "multivariate-tpe", "sobol"]))
    names = draw(st.lists(st.sampled_from(PARAM_NAMES), min_size=1, max_size=3, unique=True))
    params: dict[str, Any] = {}
    sizes: list[int | None] = []
    for n in names:
        p, size = draw(parameter(algorithm))
        params[n] = p
        sizes.append(size)
    doc: dict[str, Any] = {"name": draw(st.sampled_from(["fz", "fuzz-sweep", "a" * 40])), "image": IMAGE,
                           "command": _command(draw, names), "parameters": params}
    search: dict[str, Any] = {"algorithm": algorithm}
    space = math.inf if any(s is None for s in sizes) else math.prod(s or 1 for s in sizes)
    if algorithm != "grid":
        if draw(st.integers(0, 3)):  # else none: asked batch by batch until stopped
            search["trials"] = int(min(draw(st.integers(1, 6)), space))
        search["seed"] = draw(st.integers(0, 2**32))  # 2**32 included: numpy seeds stop at 2**32 - 1
    elif draw(st.booleans()):
        search["trials"] = draw(st.integers(1, 5))
    numeric = [n for n, p in params.items() if isinstance(p, dict) and "min" in p]
    if numeric and algorithm in ("grid", "random") and (algorithm == "grid" or "trials" in search) and draw(st.booleans()):
        search["longestFirst"] = numeric[:1]
    doc["search"] = search
    doc["objective"] = {"metric": draw(st.sampled_from(["accuracy", "Test accuracy", "loss"]))}
    optional = {
        "namespace": st.sampled_from(["default", "team-a"]),
        "imagePullPolicy": st.sampled_from(["Always", "IfNotPresent", "Never"]),
        "batchSize": st.integers(1, 4),
        "maxFailedTrials": st.integers(0, 3),
        "resources": st.fixed_dictionaries({"cpu": st.sampled_from(["500m", "1", "2.5"]), "memory": st.sampled_from(["512Mi", "1G"])},
                                           optional={"nvidia.com/gpu": st.integers(0, 2)}),
        "nodeSelector": st.just({"nvidia.com/gpu.present": "true"}),
        "tolerations": st.just([{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]),
        "env": st.dictionaries(st.sampled_from(["PYTHONUNBUFFERED", "SEED", "TRIAL", "NOTE"]),
                               st.sampled_from(["1", "${trial}", f"${{{names[0]}}}", "a$$b", "plain", 3, 0.5, True]), max_size=3),
        "output": st.sampled_from([{"hostPath": "/share/kubesweep"}, {"pvc": "claim", "mountPath": "/data"}]),
        "backoffLimit": st.integers(0, 3),
        "activeDeadlineSeconds": st.integers(1, 7200),
        "ttlSecondsAfterFinished": st.integers(0, 86400),
        "nodeLossGraceSeconds": st.integers(0, 300),
        "unschedulableSeconds": st.integers(1, 600),
        "serviceAccount": st.just("trainer"),
        "securityContext": st.just({"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000}),
        "labels": st.just({"team": "vision"}),
        "annotations": st.just({"note": "sweep ${experiment}", "example.com/trial": "${trial}"}),
    }
    for key, strategy in optional.items():
        if draw(st.integers(0, 3)) == 0:
            doc[key] = draw(strategy)
    if "objective" in doc and draw(st.integers(0, 3)) == 0:
        doc["objective"].update({"direction": "minimize", "goal": 0.01, "additionalMetrics": ["loss"]})
    return doc


def _semantic(names: list[str]) -> st.SearchStrategy[tuple[Path, Any]]:
    """Edge cases that only mean something at a particular place of a native sweep."""
    param = st.sampled_from(names * 4 + ["extra"])  # mostly a parameter the command uses
    return st.one_of(
        st.tuples(param.map(lambda n: ("parameters", n)), st.sampled_from(HOSTILE_RANGES)),
        st.tuples(param.map(lambda n: ("parameters", n)), st.lists(_VALUE, min_size=1, max_size=3)),
        st.tuples(st.sampled_from([("search", "trials"), ("search", "trialLimit"), ("search", "seed"), ("batchSize",),
                                   ("maxFailedTrials",), ("backoffLimit",), ("activeDeadlineSeconds",),
                                   ("ttlSecondsAfterFinished",), ("nodeLossGraceSeconds",), ("unschedulableSeconds",),
                                   ("securityContext", "runAsUser"), ("securityContext", "runAsGroup"),
                                   ("securityContext", "fsGroup"), ("resources", "nvidia.com/gpu")]),
                  st.sampled_from(EDGE_INTS) | edge_floats()),
        st.tuples(st.just(("search", "algorithm")), st.sampled_from(["random", "tpe", "grid", "bayes"])),
        st.tuples(st.just(("tolerations",)), st.lists(st.sampled_from(ODD_TOLERATIONS), min_size=1, max_size=2)),
        st.tuples(st.sampled_from([("name",), ("namespace",), ("image",), ("serviceAccount",), ("output", "hostPath"),
                                   ("output", "mountPath"), ("objective", "metric"), ("objective", "regex"),
                                   ("resources", "cpu"), ("resources", "memory"), ("imagePullPolicy",)]), nasty_strings()),
        st.tuples(st.sampled_from([("labels",), ("annotations",), ("nodeSelector",), ("env",)]),
                  st.dictionaries(nasty_strings(), nasty_strings() | nasty_values(), min_size=1, max_size=2)),
        st.tuples(st.just(("annotations",)), st.just({"big": "x" * 270_000})),
        st.tuples(st.sampled_from([("command", 0), ("command", -1), ("command",)]), nasty_strings() | nasty_values()),
        st.tuples(st.just(("build",)), st.sampled_from([{"context": "."}, {"context": "/nonexistent"}, "x", None])),
    )


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    doc = draw(valid_document())
    names = list(doc["parameters"])
    return draw(perturbed(doc, VOCABULARY, _semantic(names)))

