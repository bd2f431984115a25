"""Adaptive search (``search.algorithm: tpe``): Optuna's TPE sampler asked one batch at a time.

There is no study database. The state is what kubesweep already keeps on disk:

- the trials asked so far are the rendered batches, listed in ``jobs/<experiment>/plan.json``;
- their outcomes are in ``results/<experiment>/trials.jsonl``.

Before each batch an in-memory Optuna study is rebuilt from those two (finished trials told with
their metric, failed ones as FAIL) and asked for the next ``batchSize`` trials. The sampler is
seeded with ``search.seed`` plus the batch number, so the same history always yields the same
next batch: a client killed anywhere — even between asking and writing the batch — asks again
for exactly the same trials (same names), and resume continues the same study.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

from kubesweep.errors import Issue, Mark, SpecError
from kubesweep.spec.space import Domain, Value, domains, tidy
from kubesweep.spec.model import Experiment
from kubesweep.plan import trials as trials_
from kubesweep.plan.trials import Trial, canonical_json

# Random trials before TPE models anything: Optuna's default is 10; a sweep of a few batches
# would then never leave the random phase, so take one batch's worth (at least 4).
MIN_STARTUP = 4
# Finite domains up to this many points are categorical for TPE; longer stepped ranges are ranges.
CATEGORICAL_MAX = 10_000
# Distinct trials asked per wanted one before giving up (a small discrete space is exhausted).
ASK_ATTEMPTS = 50


def _optuna():  # noqa: ANN202 - imported lazily: optuna costs ~0.5 s to import
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def distributions(exp: Experiment) -> dict[str, Any]:
    """One Optuna distribution per parameter: listed or stepped points are categorical, ranges
    are float or int ranges (log-scaled when the parameter says so)."""
    dist = _optuna().distributions
    out: dict[str, Any] = {}
    for d in domains(exp.parameters):
        if d.size is not None and (d.values is not None or d.size <= CATEGORICAL_MAX):
            out[d.name] = dist.CategoricalDistribution(d.points())
        elif d.size is not None:  # a long stepped range: Optuna's stepped distributions, snapped back by _value
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
    if d.size is not None and d.values is None and d.step is not None:  # a stepped range: its nearest point
        i = round((float(raw) - float(d.lo)) / float(d.step))
        return d.point(min(max(i, 0), d.size - 1))
    if d.size is not None or d.is_int or not isinstance(raw, float):
        return raw
    return min(max(tidy(raw), d.lo), d.hi)


def _sampler(exp: Experiment, batch: int):  # noqa: ANN202
    optuna = _optuna()
    startup = max(MIN_STARTUP, exp.batch_size)
    with warnings.catch_warnings():  # multivariate and constant_liar are "experimental" since 2.x/3.x
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # numpy takes seeds of 0..2^32-1: any search.seed, and any batch after it, is folded into that
        return optuna.samplers.TPESampler(seed=(exp.search.seed + batch) % 2**32, n_startup_trials=startup,
                                          constant_liar=True, multivariate=True)


def suggest(exp: Experiment, history: list[dict[str, Any]], batch: int, count: int) -> list[dict[str, Value]]:
    """The next ``count`` distinct parameter sets, given every trial asked so far.

    ``history`` holds one dict per asked trial: ``params`` and, once finished, ``state`` and
    ``value`` (the objective metric; None when missing). Unfinished ones are told as running.
    """
    optuna = _optuna()
    dists = distributions(exp)
    doms = {d.name: d for d in domains(exp.parameters)}
    direction = "maximize" if exp.objective.direction == "maximize" else "minimize"
    study = optuna.create_study(direction=direction, sampler=_sampler(exp, batch))
    seen: set[str] = set()
    TS = optuna.trial.TrialState
    for h in history:
        params = h["params"]
        seen.add(canonical_json(params))
        value = h.get("value")
        if h.get("state") == "succeeded" and value is not None and math.isfinite(value):
            state, values = TS.COMPLETE, [float(value)]
        elif h.get("state") in ("failed", "cancelled", "succeeded"):
            state, values = TS.FAIL, None
        else:
            state, values = TS.RUNNING, None
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, state=state, values=values))
    out: list[dict[str, Value]] = []
    for _ in range(count * ASK_ATTEMPTS):
        if len(out) == count:
            break
        t = study.ask(dists)
        params = {name: _value(doms[name], t.params[name]) for name in dists}
        key = canonical_json(params)
        if key in seen:
            # A repeat is not a trial. It stays RUNNING in this throwaway study, so constant_liar
            # counts it as a bad result there and steers later asks elsewhere (told as FAIL it
            # would be ignored, and TPE would keep proposing the same favourite point).
            continue
        seen.add(key)
        out.append(params)  # left RUNNING too: the rest of the batch spreads out around it
    return out


def first_batch(exp: Experiment, where: Mark) -> list[Trial]:
    n = exp.search.trials or 0
    return trials_.make(exp.name, suggest(exp, [], 0, min(exp.batch_size, n)), batch=lambda i: 0, where=where)


def asked(exp: Experiment, jobs_dir: Path, plan_file: str) -> list[Trial] | None:
    """The trials earlier runs asked for (from the rendered plan.json), or None if there are none.

    Raise SpecError when they no longer fit the search space (the file changed under a study).
    """
    index = Path(jobs_dir) / exp.name / plan_file
    try:
        data = json.loads(index.read_text())
    except (OSError, ValueError):
        return None
    if data.get("search", {}).get("algorithm") != "tpe" or data.get("experiment") != exp.name:
        return None
    dists = distributions(exp)
    trials: list[Trial] = []
    for i, row in enumerate(data.get("trials", [])):
        params = row["params"]
        if set(params) != set(dists):
            bad = sorted(set(params) ^ set(dists))
        else:
            bad = [k for k in dists if not _fits(dists[k], params[k])]
        if bad:
            # plan.json holds one trial per line, after the header line
            raise SpecError([Issue(Mark(str(index), i + 2, 3), f"trial {row['name']} was asked for a different search "
                                   f"space (parameters {', '.join(bad)}); run `kubesweep clean -e {exp.name}` and remove "
                                   f"{index.parent} to start a new study, or give the sweep a new name")])
        batch = int(str(row["batch"]).rsplit("-", 1)[-1])
        trials.append(Trial(row["name"], i, batch, params, canonical_json(params)))
    return trials or None


def _fits(dist: Any, value: Any) -> bool:
    """Whether ``value`` is a point of ``dist`` (Optuna's own check is private)."""
    if isinstance(dist, _optuna().distributions.CategoricalDistribution):
        return value in dist.choices
    return isinstance(value, (int, float)) and not isinstance(value, bool) and dist.low <= value <= dist.high


def history(trials: list[Trial], done: dict[str, dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    out = []
    for t in trials:
        rec = done.get(t.name) or {}
        out.append({"params": t.params, "state": rec.get("state"), "value": (rec.get("metrics") or {}).get(metric)})
    return out


def next_batch(exp: Experiment, trials: list[Trial], done: dict[str, dict[str, Any]], where: Mark) -> list[Trial]:
    """The batch after ``trials`` (empty when search.trials are asked or the space is exhausted)."""
    want = min(exp.batch_size, (exp.search.trials or 0) - len(trials))
    if want <= 0:
        return []
    batch = max((t.batch for t in trials), default=-1) + 1
    params = suggest(exp, history(trials, done, exp.objective.metric), batch, want)
    return trials_.make(exp.name, params, first_index=len(trials), batch=lambda i: batch, taken=trials, where=where)
