"""Hyperband as a search algorithm (``search.algorithm: hyperband``), as Katib's suggestion
service runs it (kubeflow/katib pkg/suggestion/v1beta1/hyperband/service.py).

One outer loop of brackets ``s = s_max … 0`` with ``s_max = int(log(R) / log(eta))`` (R:
``search.maxResource``, Katib's ``r_l``). Bracket ``s`` starts ``n = ceil((s_max + 1) * eta**s /
(s + 1))`` random configurations at the budget ``r = R * eta**-s``; each of its rounds ``i = 1 … s``
reruns the best ``ceil(ceil(n * eta**-(i-1)) / eta)`` configurations of the round before (all of
their parameters but the resource) with the budget ``int(r * eta**i)``. The budget goes into the
parameter ``search.resource`` (its own range is not sampled: Katib overwrites it too). Katib's
float arithmetic is kept as it is, so ``R = 1000, eta = 10`` has s_max 2 there and here.

There is no state besides the trials: the schedule is a function of the settings, and the history
(every trial asked, in order, with its result) says how far it has come. A round is asked only
once the round before it has finished (a round larger than batchSize takes several batches; a batch
never spans two rounds). The first round of a bracket is drawn with a generator seeded by
``search.seed`` and the bracket, skipping configurations asked before (a finite space that runs
out gives a bracket fewer), so a killed client asks exactly the same trials again.

As in Katib, a round is promoted only when every trial of it succeeded with a value: Katib's
service raises "There are some trials which are not completed yet" and asks nothing more. Here the
sweep stops with that reason, naming the trials (``--retry-failed`` reruns them, then the brackets
go on).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from kubesweep.errors import Collector, Issue, Mark, SpecError
from kubesweep.plan.trials import canonical_json
from kubesweep.spec.model import Experiment, did_you_mean
from kubesweep.spec.space import Value, domains
from kubesweep.spec.yamlsource import Positions

#: Katib's default eta (its service falls back to 3 when eta is unset or not above 0).
DEFAULT_ETA = 3
#: Draws per wanted configuration before a small space counts as exhausted.
ATTEMPTS = 100


@dataclass(frozen=True)
class Round:
    bracket: int  # s, from s_max down to 0
    index: int  # i, 0 … s
    size: int  # trials in the round
    budget: int  # the resource every trial of the round gets


def eta(exp: Experiment) -> int:
    return exp.search.eta or DEFAULT_ETA


def max_resource(exp: Experiment) -> float:
    s = exp.search
    if s.max_resource is not None:
        return float(s.max_resource)
    p = exp.parameters.get(s.resource or "")
    return float(p.max) if p is not None and p.max is not None else 0.0


def s_max(r_l: float, e: float) -> int:
    """Katib's ``int(math.log(r_l) / math.log(eta))``, float rounding included."""
    return int(math.log(r_l) / math.log(e))


def schedule(r_l: float, e: int) -> list[Round]:
    """Every round of the outer loop, in the order Katib asks them (its formulas, verbatim: n and r
    from ``_new_hbParameters``, the promoted count from ``_make_child_bracket``)."""
    e_ = float(e)
    r_l = float(r_l)
    top = s_max(r_l, e_)
    out: list[Round] = []
    for s in range(top, -1, -1):
        n = int(math.ceil(float(top + 1) * (float(e_**s) / float(s + 1))))
        r = r_l * e_ ** (-s)
        out.append(Round(s, 0, n, int(r)))
        for i in range(1, s + 1):
            n_prev = math.ceil(n * e_ ** (-(i - 1)))
            out.append(Round(s, i, int(math.ceil(n_prev / e_)), int(r * e_**i)))
    return out


def check(exp: Experiment, pos: Positions, out: Collector) -> None:
    """hyperband's settings (adaptive.check calls this for hyperband search)."""
    s = exp.search
    here = pos.value(("search", "algorithm"))
    if s.resource is None:
        out.add(here, "hyperband search needs search.resource: the parameter each trial's budget goes into "
                "(epochs, steps)", s.algorithm)
        return
    p = exp.parameters.get(s.resource)
    if p is None:
        out.add(pos.value(("search", "resource")), f"search.resource names {s.resource!r}, which is not a parameter"
                f"{did_you_mean(s.resource, sorted(exp.parameters))}", s.resource)
        return
    if p.values is not None or p.min is None or p.max is None:
        out.add(pos.value(("search", "resource")), f"search.resource {s.resource!r} must be an int or float range "
                "(min/max) parameter: hyperband sets it to each round's budget", s.resource)
        return
    if s.eta is not None and s.eta < 2:
        out.add(pos.value(("search", "eta")), "search.eta must be at least 2 (with 1 Katib's s_max divides by "
                "log(1) = 0)", s.eta)
        return
    r_l = max_resource(exp)
    where = pos.value(("search", "maxResource")) if s.max_resource is not None else pos.value(("parameters", s.resource, "max"))
    if not r_l >= 1 or not math.isfinite(r_l):
        out.add(where, f"search.maxResource must be at least 1 (the smallest budget, int(maxResource / eta^s_max), "
                f"would be 0), not {r_l:g}", s.max_resource if s.max_resource is not None else p.max)
        return
    if min(r.budget for r in schedule(r_l, eta(exp))) < 1:
        out.add(where, f"with eta {eta(exp)} Katib's float arithmetic gives a budget of 0 to the first bracket "
                f"(int({r_l:g} * {eta(exp)}^-s_max) rounds down below 1): take a slightly larger maxResource",
                s.max_resource if s.max_resource is not None else p.max)


def _rank(exp: Experiment, values: list[tuple[int, float]]) -> list[int]:
    """Indexes of history, best first (stable: ties keep the order they were asked in, as Katib's
    sort keeps its start-time order)."""
    reverse = exp.objective.direction == "maximize"
    return [i for i, _ in sorted(values, key=lambda iv: iv[1], reverse=reverse)]


def _value(h: dict[str, Any]) -> float | None:
    v = h.get("value")
    if h.get("state") != "succeeded" or v is None or isinstance(v, bool) or not math.isfinite(v):
        return None
    return float(v)


def suggest(exp: Experiment, history: list[dict[str, Any]], count: int, where: Mark) -> list[dict[str, Value]]:
    """The next at most ``count`` trials of the schedule, given every trial asked so far (in the
    order asked: ``params``, ``state``, ``value``, ``name``); empty once the last bracket is asked.

    Raise SpecError (at ``where``) when the round to promote from has a trial that did not succeed
    with a value (Katib's service stops there), or when the history does not follow this schedule
    (the settings changed under the sweep)."""
    res = exp.search.resource
    assert res is not None
    rounds = schedule(max_resource(exp), eta(exp))
    start = prev_start = 0  # indexes in history: this round's first trial, the round before's
    prev_size = 0  # trials the round before had (fewer than the schedule's where the space ran out)
    for k, rd in enumerate(rounds):
        if rd.index == 0:
            # a finite space may hold fewer new configurations than the bracket wants: it gets those
            configs = _first_round(exp, history[:start], rd)
            size = len(configs)
        else:
            configs, size = None, min(rd.size, prev_size)
        asked = history[start:start + size]
        for h in asked:
            if h["params"].get(res) != rd.budget:
                raise SpecError([Issue(where, f"trial {h.get('name') or h['params']} was asked with {res} = "
                                       f"{h['params'].get(res)}, not the budget {rd.budget} of hyperband's bracket "
                                       f"{rd.bracket} round {rd.index}: the hyperband settings changed under the sweep; "
                                       f"run `kubesweep clean -e {exp.name}` to start a new study, or give the sweep a new name")])
        if len(asked) == size:
            prev_start, prev_size = start, size
            start += size
            continue
        take = min(count, size - len(asked))
        if configs is None:
            configs = _promoted(exp, history[prev_start:prev_start + prev_size], rounds[k - 1], rd, where)
        return [{**c, res: rd.budget} for c in configs[len(asked):len(asked) + take]]
    return []


def _first_round(exp: Experiment, before: list[dict[str, Any]], rd: Round) -> list[dict[str, Value]]:
    """Bracket ``rd.bracket``'s random configurations (Katib: uniform over each feasible space),
    drawn with a generator of ``search.seed`` and the bracket, skipping those asked ``before`` it
    (so no trial repeats one, and no promotion meets one)."""
    res = exp.search.resource
    doms = [d for d in domains(exp.parameters) if d.name != res]
    rng = random.Random(f"kubesweep-hyperband-{exp.search.seed}-{rd.bracket}")
    seen = {canonical_json({k: v for k, v in h["params"].items() if k != res}) for h in before}
    out: list[dict[str, Value]] = []
    for _ in range(rd.size * ATTEMPTS):
        if len(out) == rd.size:
            break
        params = {d.name: d.sample(rng) for d in doms}
        key = canonical_json(params)
        if key not in seen:
            seen.add(key)
            out.append(params)
    return out


def _promoted(exp: Experiment, previous: list[dict[str, Any]], prev: Round, rd: Round,
              where: Mark) -> list[dict[str, Value]]:
    """The best ``rd.size`` of the round before (all of them, if it had fewer), as Katib's
    ``_get_top_trial`` takes them."""
    res = exp.search.resource
    values = [(i, v) for i, v in enumerate(_value(h) for h in previous) if v is not None]
    if len(values) < len(previous):
        names = ", ".join(f"{h.get('name') or h['params']} ({h.get('state') or 'not finished'})"
                          for h in previous if _value(h) is None)
        raise SpecError([Issue(where, f"hyperband stops before bracket {rd.bracket} round {rd.index}: the round before "
                               f"it (budget {prev.budget}) has trials that did not succeed with a value of "
                               f"{exp.objective.metric}: {names}. Katib's hyperband promotes only from a round whose "
                               "trials all succeeded (\"There are some trials which are not completed yet\"); run the "
                               "sweep again with --retry-failed to rerun them, and the brackets go on")])
    return [{k: v for k, v in previous[i]["params"].items() if k != res} for i in _rank(exp, values)[:rd.size]]
