"""W&B sweep configs (formats/wandb.py): valid ones, then perturbed. They name no image, so the
cases pass ``image=`` (as ``--image`` does) — except, now and then, a bad one or none at all."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from .perturb import Path, perturbed
from .values import EDGE_INTS, edge_floats, nasty_strings, nasty_values

IMAGE = "localhost:5000/fuzz/trainer:1"
VOCABULARY = ["program", "method", "metric", "name", "goal", "target", "parameters", "values", "value", "min", "max",
              "distribution", "q", "probabilities", "command", "description", "project", "entity", "run_cap",
              "early_terminate", "controller", "image", "mu", "sigma", "parameters"]
NAMES = ["lr", "epochs", "optimizer", "dropout", "batch_size"]
DISTRIBUTIONS = ["constant", "categorical", "int_uniform", "uniform", "q_uniform", "log_uniform_values", "log_uniform",
                 "normal", "q_log_uniform_values", "inv_log_uniform", "beta", "bogus"]


@st.composite
def parameter(draw: st.DrawFn, method: str) -> dict[str, Any]:
    kinds = ["values", "value", "int_uniform", "q_uniform"] + (["uniform", "log_uniform_values", "log_uniform", "normal",
                                                                "q_normal", "log_normal", "inv_log_uniform_values"]
                                                               if method == "random" else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "values":
        values = draw(st.lists(st.sampled_from(["sgd", "adam", 16, 32, 0.5, True]) | nasty_strings(), min_size=1,
                               max_size=3, unique_by=lambda v: (type(v), v)))
        return {"values": values}
    if kind == "value":
        return {"value": draw(st.sampled_from([5, "adam", 0.1]) | nasty_strings())}
    if kind == "int_uniform":
        lo = draw(st.integers(0, 5))
        return {"distribution": "int_uniform", "min": lo, "max": lo + draw(st.integers(1, 4))}
    if kind == "q_uniform":
        return {"distribution": "q_uniform", "min": 0.0, "max": 0.5, "q": 0.1}
    if kind == "uniform":
        return {"distribution": "uniform", "min": 0.0, "max": 1.0} if draw(st.booleans()) else {"min": 0.0, "max": 1.0}
    if kind in ("log_uniform_values", "inv_log_uniform_values"):
        return {"distribution": kind, "min": 1e-4, "max": 1e-1}
    if kind == "normal":
        return {"distribution": "normal", "mu": draw(st.sampled_from([0, 0.5, -3])), "sigma": 0.2}
    if kind == "q_normal":
        return {"distribution": "q_normal", "mu": 32, "sigma": 8, "q": draw(st.sampled_from([1, 4, 0.5]))}
    if kind == "log_normal":
        return {"distribution": "log_normal", "mu": -4.6, "sigma": 1.0}
    return {"distribution": "log_uniform", "min": -9.2, "max": -2.3}


@st.composite
def valid_document(draw: st.DrawFn) -> dict[str, Any]:
    method = draw(st.sampled_from(["grid", "random"]))
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True))
    doc: dict[str, Any] = {
        "program": draw(st.sampled_from(["/app/train.py", "train.py"])),
        "method": method,
        "metric": {"name": "accuracy", "goal": draw(st.sampled_from(["maximize", "minimize"]))},
        "parameters": {n: draw(parameter(method)) for n in names},
    }
    if draw(st.booleans()):
        doc["name"] = draw(st.sampled_from(["wandb-fz", "w"]))
    command = draw(st.sampled_from([None, ["${env}", "${interpreter}", "${program}", "${args}"],
                                    ["python3", "${program}", "${args}"], ["python3", "${program}", "${args_no_hyphens}"],
                                    ["python3", "${program}", "--config", "${args_json}"]]))
    if command is not None:
        doc["command"] = command
    if method == "random" or draw(st.booleans()):
        doc["run_cap"] = draw(st.integers(1, 4))
    if draw(st.integers(0, 3)) == 0:
        doc["project"] = "proj"
        doc["entity"] = "team"
    if draw(st.integers(0, 4)) == 0:
        doc["metric"]["target"] = 0.99
    return doc


def _semantic(names: list[str]) -> st.SearchStrategy[tuple[Path, Any]]:
    param = st.sampled_from(names * 4 + ["extra"]).map(lambda n: ("parameters", n))
    number = st.sampled_from(EDGE_INTS) | edge_floats()
    return st.one_of(
        st.tuples(param, st.sampled_from([
            {"distribution": "int_uniform", "min": 0, "max": 2147483647}, {"distribution": "int_uniform", "min": 1, "max": 10**12},
            {"distribution": "q_uniform", "min": 0, "max": 1, "q": 1e-12}, {"distribution": "q_uniform", "min": 0, "max": 1, "q": 0},
            {"distribution": "log_uniform", "min": -1000, "max": 1000}, {"distribution": "log_uniform", "min": 700, "max": 709.7},
            {"distribution": "log_uniform_values", "min": 5e-324, "max": 1e308}, {"distribution": "constant", "min": 1, "max": 2},
            {"distribution": "constant", "value": "$(HOME)"}, {"distribution": "categorical", "values": []},
            {"values": [True, False, None]}, {"values": ["16", "32"]}, {"value": [1, 2]}, {"min": 0, "max": 10**30},
            {"min": 0.0, "max": 1.0, "q": 0.1}, {"parameters": {"inner": {"values": [1]}}}, {"values": [1], "probabilities": [1]},
        ])),
        st.tuples(param.map(lambda p: p + ("distribution",)), st.sampled_from(DISTRIBUTIONS)),
        st.tuples(param.map(lambda p: p + ("min",)), number),
        st.tuples(param.map(lambda p: p + ("max",)), number),
        st.tuples(param.map(lambda p: p + ("q",)), number),
        st.tuples(param.map(lambda p: p + ("values",)), st.lists(nasty_strings() | nasty_values(), min_size=1, max_size=3)),
        st.tuples(st.sampled_from([("run_cap",), ("metric", "target")]), number | nasty_strings()),
        st.tuples(st.sampled_from([("method",), ("metric", "goal")]), st.sampled_from(["bayes", "grid", "random", "Grid", "max"])),
        st.tuples(st.sampled_from([("program",), ("name",), ("project",), ("entity",), ("metric", "name")]),
                  nasty_strings() | nasty_values()),
        st.tuples(st.just(("command",)), st.lists(nasty_strings() | st.sampled_from(["${program}", "${args}", "${args_json_file}",
                                                                                    "${unknown}", "${env}"]), max_size=4)),
    )


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    doc = draw(valid_document())
    return draw(perturbed(doc, VOCABULARY, _semantic(list(doc["parameters"]))))


def images() -> st.SearchStrategy[str | None]:
    """What ``--image`` is given: nearly always a good reference."""
    return st.one_of(st.just(IMAGE), st.just(IMAGE), st.just(IMAGE), st.none(), nasty_strings())
