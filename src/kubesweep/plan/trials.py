"""Trials: the grid product or a seeded random sample, each with a name derived from its values.

A trial's name is ``<experiment>-<slug>-<hash>``: the hash is the first 12 hex digits of the
SHA-256 of the parameters as canonical JSON, so the same parameters give the same name on any
machine and in any run (resume depends on it); the slug makes ``kubectl get jobs`` readable and
is shortened to keep the name a DNS-1123 label of at most 63 characters.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
import re
from dataclasses import dataclass
from typing import Iterable, Iterator

from kubesweep.errors import Collector, Issue, SpecError
from kubesweep.spec.space import Domain, Value, domains, grid_point, grid_size, space_size
from kubesweep.spec.model import Experiment
from kubesweep.spec.yamlsource import Positions

HASH_LEN = 12
NAME_MAX = 63
_SLUG_JUNK = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True, slots=True)
class Trial:
    name: str
    index: int
    batch: int
    params: dict[str, Value]
    key: str = ""  # canonical JSON of params (computed once; names and annotations use it)


def canonical_json(params: dict[str, Value]) -> str:
    return json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def param_hash(params: dict[str, Value], key: str | None = None) -> str:
    return hashlib.sha256((key or canonical_json(params)).encode()).hexdigest()[:HASH_LEN]


def format_value(v: Value) -> str:
    """How a value appears in argv and env: JSON spelling for booleans, repr for floats."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def trial_name(experiment: str, params: dict[str, Value], key: str | None = None) -> str:
    digest = param_hash(params, key)
    room = NAME_MAX - len(experiment) - HASH_LEN - 2
    slug = _SLUG_JUNK.sub("-", "-".join(format_value(v).lower().replace(".", "p") for v in params.values()))
    slug = slug[: max(room, 0)].strip("-")
    return f"{experiment}-{slug}-{digest}" if slug else f"{experiment}-{digest}"


def _grid(doms: list[Domain], count: int) -> Iterator[dict[str, Value]]:
    """The first ``count`` grid points, in product order: from the listed points when every
    domain is small, else computed one by one from their index."""
    if all(d.values is not None for d in doms):
        names = [d.name for d in doms]
        for combo in itertools.islice(itertools.product(*(d.values or () for d in doms)), count):
            yield dict(zip(names, combo))
        return
    for index in range(count):
        yield grid_point(doms, index)


def _random(doms: list[Domain], seed: int, count: int) -> Iterator[dict[str, Value]]:
    rng = random.Random(seed)
    seen: set[str] = set()
    attempts = 0
    while len(seen) < count:
        attempts += 1
        if attempts > count * 100:
            return
        params = {d.name: d.sample(rng) for d in doms}
        key = canonical_json(params)
        if key not in seen:
            seen.add(key)
            yield params


def _fmt(n: int | float) -> str:
    """A count for a message: exact up to a quadrillion, then its order of magnitude (a product of
    ranges can have thousands of digits)."""
    if n < 10**15:
        return f"{int(n):,}"
    return f"about 10^{int(math.log10(n))}"


def count_trials(exp: Experiment, pos: Positions) -> int:
    """How many trials the spec asks for; raise SpecError for empty or exploding sweeps."""
    doms = domains(exp.parameters)
    s = exp.search
    out = Collector()
    if s.algorithm == "grid":
        total = grid_size(doms)
        assert total is not None  # checks.check refuses continuous grid parameters
        n = min(total, s.trials) if s.trials else total
        sizes = " × ".join(_fmt(d.size or 0) for d in doms)
        if total == 0:
            out.add(pos.key(("parameters",)), "the grid is empty: some parameter has no values")
        elif n > s.trial_limit:
            out.add(pos.key(("parameters",)), f"the grid expands to {_fmt(total)} trials ({sizes}), over the limit of {_fmt(s.trial_limit)}: narrow the parameters, take the first N with search.trials, or raise search.trialLimit")
    else:
        n = s.trials or 0
        space = space_size(doms)
        if n > s.trial_limit:
            out.add(pos.value(("search", "trials")), f"{s.algorithm} search asks for {_fmt(n)} trials, over the limit of {_fmt(s.trial_limit)} (raise search.trialLimit)", n)
        elif n > space:
            out.add(pos.value(("search", "trials")), f"{s.algorithm} search asks for {_fmt(n)} distinct trials but the space has only {_fmt(space)} points", n)
    out.raise_if_any()
    return n


def expand(exp: Experiment, pos: Positions) -> list[Trial]:
    """All trials of the experiment (tpe: of its first batch), in a deterministic order, assigned to batches."""
    n = count_trials(exp, pos)
    if exp.search.algorithm == "tpe":  # the first batch; later ones are asked from results
        from kubesweep.plan.tpe import first_batch

        return first_batch(exp)
    doms = domains(exp.parameters)
    if exp.search.algorithm == "grid":
        source: Iterable[dict[str, Value]] = _grid(doms, n)
    else:
        source = _random(doms, exp.search.seed, n)
    if exp.search.longest_first:  # longest processing time first; stable, so ties keep plan order
        keys = exp.search.longest_first
        source = sorted(source, key=lambda params: -math.prod(float(params[k]) for k in keys))  # type: ignore[arg-type]
    trials: list[Trial] = []
    names: dict[str, dict[str, Value]] = {}
    bs = exp.batch_size
    for i, params in enumerate(source):
        key = canonical_json(params)
        name = trial_name(exp.name, params, key)
        if name in names:  # a 48-bit hash collision: refuse rather than merge two trials
            raise SpecError([Issue(pos.key(("parameters",)), f"trials {names[name]} and {params} hash to the same name {name}; change a value slightly")])
        names[name] = params
        trials.append(Trial(name, i, i // bs, params, key))
    if len(trials) < n:
        raise SpecError([Issue(pos.value(("search",)), f"random search found only {len(trials)} distinct trials of {n} asked; the space is too small for that many")])
    return trials
