"""Weights & Biases sweep configs read as they are, into the native spec.

Supported: method grid/random/bayes (bayes: Optuna's GPSampler, search.algorithm gp), metric
(name, goal, target), parameters with values / value / min+max and the distributions constant,
categorical, int_uniform, uniform, q_uniform, log_uniform_values, log_uniform,
inv_log_uniform_values, inv_log_uniform, normal, q_normal and log_normal (mu, sigma: truncated at
mu ± 3 sigma), run_cap (none: random and bayes run until stopped), program, command with the macros ${env},
${interpreter}, ${program}, ${args}, ${args_no_hyphens}, ${args_json}, early_terminate hyperband
(→ earlyStopping asha); project and entity become
WANDB_PROJECT / WANDB_ENTITY in each trial. A sweep config names no container image, so the
image comes from ``--image``; nor does it name the API key: ``--wandb-secret NAME[:KEY]`` gives each
trial WANDB_API_KEY from that Secret's key (default ``api-key``), as a reference the kubelet reads.
Everything else is refused with the reason.
"""

from __future__ import annotations

import re
from typing import Any

from kubesweep.errors import Mark
from kubesweep.spec.model import MAX_EXPERIMENT_NAME
from .base import Translator

DEFAULT_COMMAND = ["${env}", "${interpreter}", "${program}", "${args}"]
#: The key of the --wandb-secret Secret that holds the API key when the option names none.
DEFAULT_SECRET_KEY = "api-key"
SECRET_FLAG = "--wandb-secret"


def api_key_ref(secret: str) -> dict[str, Any]:
    """``NAME[:KEY]`` (the --wandb-secret option) as the env value of WANDB_API_KEY: a reference to
    the Secret's key, never its value (the names are checked with the rest of the env)."""
    name, _, key = secret.partition(":")
    return {"secretKeyRef": {"name": name, "key": key or DEFAULT_SECRET_KEY}}
_MACRO = re.compile(r"\$\{([^}]*)\}")
#: W&B distributions without a native form, and why.
_UNSUPPORTED_DIST = {
    "q_log_uniform_values": "a log range with a step (q) has no native form; use log_uniform_values, or values",
    "q_log_uniform": "a log range with a step (q) has no native form; use log_uniform, or values",
    "q_log_normal": "a log range with a step (q) has no native form; use log_normal, or values",
    "beta": "the beta distribution has no native form; use uniform, normal, or values",
    "q_beta": "the beta distribution has no native form; use q_uniform, or values",
}
#: normal and log_normal are truncated at mu ± this many sigma (the range that samplers see).
NORMAL_SIGMAS = 3


def _parameter(t: Translator, name: str, method: str) -> None:
    p = ("parameters", name)
    spec = t.get(p)
    dst = ("parameters", name)
    if not isinstance(spec, dict):
        t.error(p, f"parameter {name!r} must be a mapping (values, value, or min/max)", spec)
        return
    t.known_keys(p, ["values", "value", "min", "max", "distribution", "q", "probabilities", "mu", "sigma"],
                 {"parameters": "nested parameters are not supported; flatten them (e.g. model.lr)",
                  "a": "beta distributions are not supported", "b": "beta distributions are not supported"})
    if "parameters" in spec:
        return  # nested parameters: reported by known_keys above
    dist = spec.get("distribution")
    if "probabilities" in spec:
        t.error_key(p + ("probabilities",), f"parameter {name!r}: weighted categorical sampling is not supported")
    if isinstance(dist, str) and dist in _UNSUPPORTED_DIST:
        t.error(p + ("distribution",), f"parameter {name!r}: distribution {dist!r} is not supported: "
                f"{_UNSUPPORTED_DIST[dist]}", dist)
        return
    for key in ("mu", "sigma"):
        if key in spec and dist not in _NORMAL:
            t.error_key(p + (key,), f"parameter {name!r}: {key} belongs to the normal, q_normal and log_normal "
                        "distributions")
            return
    if dist in _NORMAL:
        _normal(t, name, spec, dist, method)
        return
    if dist == "constant" and "value" not in spec:
        t.error(p + ("distribution",), f"parameter {name!r}: distribution constant needs 'value' (the one value)", dist)
        return
    if dist == "categorical" and "values" not in spec:
        t.error(p + ("distribution",), f"parameter {name!r}: distribution categorical needs 'values' (the list)", dist)
        return
    given = [k for k in ("value", "values") if k in spec]
    if given and dist not in (None, "constant", "categorical"):
        t.error_key(p + (given[0],), f"parameter {name!r}: distribution {dist!r} takes min and max, not {given[0]}")
        return
    if given and ("min" in spec or "max" in spec):
        t.error_key(p + ("min" if "min" in spec else "max",), f"parameter {name!r}: give {given[0]} or min/max, not both")
        return
    if "value" in spec:
        if isinstance(spec["value"], (list, dict)):
            t.error(p + ("value",), f"parameter {name!r}: value takes one value; for several write values", spec["value"])
            return
        t.put(dst, {"values": [spec["value"]]}, p)
        t.at(dst + ("values", 0), p + ("value",))
        return
    if "values" in spec:
        t.put(dst, {}, p)
        t.copy(p + ("values",), dst + ("values",))
        return
    if "min" not in spec or "max" not in spec:
        t.error(p, f"parameter {name!r} needs values, value, or both min and max")
        return
    lo, hi = spec["min"], spec["max"]
    if dist is None:  # W&B infers the distribution from the bounds' types
        dist = "int_uniform" if isinstance(lo, int) and isinstance(hi, int) else "uniform"
    out: dict[str, Any] = {}
    t.put(dst, out, p)
    t.copy(p + ("min",), dst + ("min",))
    t.copy(p + ("max",), dst + ("max",))
    if dist == "int_uniform":
        out["type"] = "int"
    elif dist == "uniform":
        out["type"] = "float"
    elif dist == "q_uniform":
        out["step"] = spec.get("q", 1.0)
        t.at(dst + ("step",), p + ("q",) if "q" in spec else p)
    elif dist == "log_uniform_values":
        out["scale"] = "log"
        out["type"] = "float"
    elif dist == "inv_log_uniform_values":  # 1/X log-uniform on [1/max, 1/min]: X log-uniform on [min, max]
        out["scale"] = "log"
        out["type"] = "float"
    elif dist == "inv_log_uniform":  # log(1/X) uniform on [min, max]: X log-uniform on [e^-max, e^-min]
        import math

        try:
            out["min"], out["max"] = math.exp(-float(hi)), math.exp(-float(lo))
        except (TypeError, ValueError, OverflowError):
            t.error(p, f"parameter {name!r}: inv_log_uniform bounds must be numbers (natural-log exponents)")
        out["scale"] = "log"
        out["type"] = "float"
    elif dist == "log_uniform":  # bounds are natural-log exponents
        import math

        try:
            out["min"], out["max"] = math.exp(float(lo)), math.exp(float(hi))
        except (TypeError, ValueError, OverflowError):
            t.error(p, f"parameter {name!r}: log_uniform bounds must be numbers (natural-log exponents)")
        out["scale"] = "log"
        out["type"] = "float"
    else:
        t.error(p + ("distribution",), f"parameter {name!r}: unknown distribution {dist!r}", dist)
    if method == "grid" and dist in ("uniform", "log_uniform_values", "log_uniform", "inv_log_uniform_values",
                                     "inv_log_uniform"):
        t.error(p, f"parameter {name!r}: grid search cannot walk the continuous {dist} range; give values, "
                "or use q_uniform with q (random search samples it as is)")
    if "q" in spec and dist != "q_uniform":
        t.error_key(p + ("q",), f"parameter {name!r}: q only applies to the q_uniform distribution")


_NORMAL = ("normal", "q_normal", "log_normal")


def _normal(t: Translator, name: str, spec: dict[str, Any], dist: str, method: str) -> None:
    """normal (mu, sigma; default 0 and 1), q_normal (rounded to multiples of q) and log_normal
    (e^X, X normal): the native distribution: normal, over mu ± 3 sigma (on the log scale for
    log_normal), which is also the range the adaptive samplers see."""
    import math

    p = dst = ("parameters", name)
    for key in ("min", "max", "value", "values"):
        if key in spec:
            t.error_key(p + (key,), f"parameter {name!r}: distribution {dist} takes mu and sigma, not {key}")
            return
    mu, sigma = spec.get("mu", 0), spec.get("sigma", 1)
    for key, v in (("mu", mu), ("sigma", sigma)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            t.error(p + (key,), f"parameter {name!r}: {key} must be a number", v)
            return
    if sigma <= 0:
        t.error(p + ("sigma",), f"parameter {name!r}: sigma must be above 0", sigma)
        return
    if method == "grid":
        t.error(p + ("distribution",), f"parameter {name!r}: grid search cannot walk the {dist} distribution; "
                "give values (random search draws it)", dist)
        return
    lo, hi = mu - NORMAL_SIGMAS * sigma, mu + NORMAL_SIGMAS * sigma
    out: dict[str, Any] = {"type": "float", "distribution": "normal", "mu": mu, "sigma": sigma}
    if dist == "log_normal":
        try:
            out.update(min=math.exp(lo), max=math.exp(hi), scale="log")
        except OverflowError:
            t.error(p, f"parameter {name!r}: log_normal with mu {mu} and sigma {sigma} overflows")
            return
    elif dist == "q_normal":
        q = spec.get("q", 1.0)
        if isinstance(q, bool) or not isinstance(q, (int, float)) or not q > 0:
            t.error(p + ("q",), f"parameter {name!r}: q must be a number above 0", q)
            return
        out.update(min=math.ceil(lo / q) * q, max=math.floor(hi / q) * q, step=q)
        if all(isinstance(v, int) for v in (mu, sigma, q)):
            out.update(type="int", min=int(out["min"]), max=int(out["max"]))
    else:
        out.update(min=lo, max=hi)
    if "q" in spec and dist != "q_normal":
        t.error_key(p + ("q",), f"parameter {name!r}: q only applies to q_uniform and q_normal")
        return
    t.put(dst, out, p)
    for key in ("mu", "sigma", "q"):
        if key in spec:
            t.at(dst + ({"q": "step"}.get(key, key),), p + (key,))
    for key in ("min", "max", "type", "distribution", "scale"):
        t.at(dst + (key,), p + ("distribution",))


def _verbatim(text: str) -> str:
    """W&B text (program, project, command words) as native text that reaches the container as
    written. The W&B agent runs the program itself, so nothing expands ``$`` there; in a Job,
    kubesweep reads ``$$`` as ``$`` and Kubernetes then expands ``$(VAR)`` and ``$$``, so each
    ``$`` becomes ``$$$$``."""
    return text.replace("$", "$$$$")


def _escape_text(item: str) -> str:
    """A command item with its W&B macros kept and every other ``$`` kept as written."""
    out, last = [], 0
    for m in _MACRO.finditer(item):
        out.append(_verbatim(item[last : m.start()]))
        out.append(m.group(0))
        last = m.end()
    out.append(_verbatim(item[last:]))
    return "".join(out)


def _command(t: Translator, program: str | None, program_given: bool) -> None:
    raw = t.get(("command",))
    if raw is None:
        items, src = list(DEFAULT_COMMAND), None
    elif isinstance(raw, list) and all(isinstance(x, str) for x in raw):
        items, src = raw, ("command",)
    else:
        t.error(("command",), "command must be a list of strings", raw)
        return
    argv: list[str] = []
    for i, item in enumerate(items):
        here = ("command", i) if src else ("program",)
        if item == "${env}":
            argv.append("/usr/bin/env")
        elif item == "${interpreter}":
            argv.append("python")
        elif item == "${program}":
            if program is None:
                if not program_given:  # a program of the wrong type is reported where it is written
                    t.error(here if src else (), "the command uses ${program} but the config names no program")
                continue
            argv.append(_verbatim(program))
        elif item in ("${args}", "${args_no_hyphens}", "${args_json}"):
            argv.append(item)
        else:
            for m in _MACRO.finditer(item):
                if m.group(1) == "args_json_file":
                    t.error(here, "${args_json_file} is not supported: use ${args_json}", item)
                elif f"${{{m.group(1)}}}" not in DEFAULT_COMMAND + ["${args_no_hyphens}", "${args_json}"]:
                    t.error(here, f"unknown W&B command macro ${{{m.group(1)}}}", item)
            argv.append(_escape_text(item))
        t.at(("command", len(argv) - 1), here)
    t.out["command"] = argv
    t.at(("command",), src or ())


def _early_terminate(t: Translator) -> None:
    """early_terminate: W&B's hyperband (min_iter, or max_iter with s; eta; strict) → the native
    asha pruner. W&B's brackets are min_iter, min_iter*eta, ...; given max_iter and s they are
    max_iter/eta, ..., max_iter/eta^s, so the first is max_iter/eta^s (a step: rounded up)."""
    et = ("early_terminate",)
    if t.get(et) is None:
        return
    given = t.mapping(et)
    t.known_keys(et, ["type", "min_iter", "max_iter", "s", "eta", "strict"])
    if given.get("type") != "hyperband":
        t.error(et + ("type",) if "type" in given else et,
                "early_terminate.type must be hyperband (W&B's one early-termination type)", given.get("type"))
        return
    for key in ("min_iter", "max_iter", "s", "eta"):
        value = given.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < (2 if key == "eta" else 1)):
            t.error(et + (key,), f"early_terminate.{key} must be an integer of at least {2 if key == 'eta' else 1}", value)
            return
    if given.get("strict") not in (None, False):
        t.error(et + ("strict",), "early_terminate.strict: true is not supported: W&B's strict mode prunes "
                "past what successive halving (asha) does; leave it out or set it to false", given.get("strict"))
        return
    eta = given.get("eta", 3)
    out: dict[str, Any] = {"pruner": "asha", "reductionFactor": eta}
    t.put(("earlyStopping",), out, et)
    t.at(("earlyStopping", "pruner"), et + ("type",))
    t.at(("earlyStopping", "reductionFactor"), et + ("eta",) if "eta" in given else et)
    if "min_iter" in given:
        if "max_iter" in given or "s" in given:
            t.error_key(et + ("max_iter" if "max_iter" in given else "s",),
                        "early_terminate takes min_iter, or max_iter with s, not both")
        out["minResource"] = given["min_iter"]
        t.at(("earlyStopping", "minResource"), et + ("min_iter",))
    elif "max_iter" in given and "s" in given:
        out["minResource"] = max(1, -(-given["max_iter"] // eta ** given["s"]))
        t.at(("earlyStopping", "minResource"), et + ("max_iter",))
    else:
        t.error(et, "early_terminate needs min_iter, or max_iter with s (W&B's two ways to place the first bracket)")


def read(data: dict[str, Any], t: Translator, image: str | None = None, api_key_secret: str | None = None) -> None:
    t.names.update({"search.trials": "run_cap", "objective.direction": "metric.goal",
                    "objective.metric": "metric.name", "objective.goal": "metric.target"})
    t.known_keys((), ["program", "method", "metric", "parameters", "command", "name", "description",
                      "project", "entity", "run_cap", "early_terminate"],
                 {"controller": "kubesweep is the controller", "image": "give the image with --image",
                  "job": "a W&B Launch job is run by W&B Launch; name the script as program and pass the image with --image",
                  "scheduler": "W&B Launch's sweep scheduler; kubesweep schedules the trials (batchSize)"})
    _early_terminate(t)
    method = data.get("method")
    if method not in ("grid", "random", "bayes"):
        t.error(("method",), "method must be grid, random or bayes", method)
    # bayes: W&B's Gaussian-process model; here Optuna's GPSampler (search.algorithm: gp)
    native = {"grid": "grid", "random": "random", "bayes": "gp"}.get(method, "grid") if isinstance(method, str) else "grid"
    t.put(("search",), {"algorithm": native}, ("method",))
    if "run_cap" in data:
        t.put(("search", "trials"), data["run_cap"], ("run_cap",))

    name = data.get("name")
    if name is None:
        # the file's name, made a DNS label as trial and Job names need (sweep_config.yaml: sweep-config)
        stem = re.sub(r"\.ya?ml$", "", t.pos.file.rsplit("/", 1)[-1])
        stem = re.sub(r"[^a-z0-9]+", "-", stem.lower())[:MAX_EXPERIMENT_NAME].strip("-") or "sweep"
        t.put(("name",), stem, mark=Mark(t.pos.file, 1, 1))
    else:
        t.copy(("name",), ("name",))

    t.known_keys(("metric",), ["name", "goal", "target"])
    metric = t.mapping(("metric",))
    if "metric" not in data:  # W&B runs a grid or random sweep without one: every point, none best
        t.put(("objective",), {}, mark=Mark(t.pos.file, 1, 1))
    else:
        t.put(("objective",), {}, ("metric",))
        if metric and "name" not in metric:
            t.error(("metric",), "metric needs name (the metric to optimise)")
        t.copy(("metric", "name"), ("objective", "metric"))
        # W&B's default goal is minimize; the native default is maximize, so always write it.
        goal = metric.get("goal", "minimize")
        t.put(("objective", "direction"), goal, ("metric", "goal") if "goal" in metric else ("metric",))
        t.copy(("metric", "target"), ("objective", "goal"))

    params = t.mapping(("parameters",), required=True)
    t.put(("parameters",), {}, ("parameters",))
    for pname in params:
        _parameter(t, pname, method)

    program = data.get("program")
    if program is not None and not isinstance(program, str):
        t.error(("program",), "program must be a path string", program)
        program = None
    _command(t, program, "program" in data)

    env: dict[str, Any] = {}
    for key, var in (("project", "WANDB_PROJECT"), ("entity", "WANDB_ENTITY")):
        if key in data:
            env[var] = _verbatim(str(data[key]))
            t.at(("env", var), (key,))
    if api_key_secret is not None:
        env["WANDB_API_KEY"] = api_key_ref(api_key_secret)
        t.names.update({"env.WANDB_API_KEY.secretKeyRef.name": f"the Secret of {SECRET_FLAG} NAME[:KEY]",
                        "env.WANDB_API_KEY.secretKeyRef.key": f"the KEY of {SECRET_FLAG} NAME[:KEY]"})
        flag = Mark(f"<{SECRET_FLAG}>", 1, 1)
        for path in (("env", "WANDB_API_KEY"), ("env", "WANDB_API_KEY", "secretKeyRef"),
                     ("env", "WANDB_API_KEY", "secretKeyRef", "name"), ("env", "WANDB_API_KEY", "secretKeyRef", "key")):
            t.out_pos.values[path] = t.out_pos.keys[path] = flag
    if env:
        t.out["env"] = env
    if image is None:
        t.error((), "a W&B sweep config names no container image: pass --image REPOSITORY:TAG")
    else:
        t.out["image"] = image
