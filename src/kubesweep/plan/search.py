"""Which trials a sweep runs: the one place that dispatches on ``search.algorithm``.

grid: the product of the parameters' points, in written order (the first ``search.trials`` of it
when given); random: a seeded sample of distinct points (without search.trials: the same seeded
stream, one batch at a time, until the sweep is stopped); tpe, multivariate-tpe, gp, cmaes, sobol:
batch by batch, asked of a sampler given the results so far (adaptive.py). Each count is checked
against ``search.trialLimit`` before a single trial is made, and every trial is made by
``trials.make``.
"""

from __future__ import annotations

import itertools
import math
import random
from typing import Any, Iterable, Iterator

from kubesweep.errors import Collector, Issue, Mark, SpecError
from kubesweep.plan import adaptive
from kubesweep.plan.trials import Trial, canonical_json, make
from kubesweep.spec.model import Experiment
from kubesweep.spec.space import Domain, Value, domains, grid_point, grid_size, space_size
from kubesweep.spec.yamlsource import Positions


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
    elif s.trials is None:  # asked batch by batch until stopped (adaptive.incremental)
        n = min(exp.batch_size, s.trial_limit)
    else:
        n = s.trials
        space = space_size(doms)
        if n > s.trial_limit:
            out.add(pos.value(("search", "trials")), f"{s.algorithm} search asks for {_fmt(n)} trials, over the limit of {_fmt(s.trial_limit)} (raise search.trialLimit)", n)
        elif n > space and s.algorithm != "hyperband":  # hyperband reruns a configuration on larger budgets
            out.add(pos.value(("search", "trials")), f"{s.algorithm} search asks for {_fmt(n)} distinct trials but the space has only {_fmt(space)} points", n)
    out.raise_if_any()
    return n


def expand(exp: Experiment, pos: Positions) -> list[Trial]:
    """The experiment's trials, in a deterministic order, assigned to batches: every grid point or
    random sample; for an adaptive sampler or random search without a count, the first batch
    (later ones are asked from results: ``next_batch``)."""
    n = count_trials(exp, pos)
    doms = domains(exp.parameters)
    if exp.search.algorithm in adaptive.ADAPTIVE:
        return adaptive.first_batch(exp, pos.key(("parameters",)))
    if adaptive.incremental(exp):
        return make(exp.name, _random(doms, exp.search.seed, n), batch=lambda i: 0, where=pos.key(("parameters",)))
    if exp.search.algorithm == "grid":
        source: Iterable[dict[str, Value]] = _grid(doms, n)
    else:
        source = _random(doms, exp.search.seed, n)
    if exp.search.longest_first:  # longest processing time first; stable, so ties keep plan order
        keys = exp.search.longest_first
        source = sorted(source, key=lambda params: -math.prod(float(params[k]) for k in keys))  # type: ignore[arg-type]
    bs = exp.batch_size
    trials = make(exp.name, source, batch=lambda i: i // bs, where=pos.key(("parameters",)))
    if len(trials) < n:
        raise SpecError([Issue(pos.value(("search",)), f"random search found only {len(trials)} distinct trials of {n} asked; the space is too small for that many")])
    return trials


def next_batch(exp: Experiment, trials: list[Trial], done: dict[str, dict[str, Any]], where: Mark,
               limit: int | None = None) -> list[Trial]:
    """The batch after ``trials``, asked of the sampler given every result so far (``done``, the
    journal); empty when search.trials (or ``limit``: --max-trials; or search.trialLimit) are
    asked, the space is exhausted, or the search is planned up front (grid, random with a count)."""
    if not adaptive.incremental(exp):
        return []
    cap = min(c for c in (limit, exp.search.trial_limit) if c is not None)
    if exp.search.algorithm in adaptive.ADAPTIVE:
        return adaptive.next_batch(exp, trials, done, where, cap)  # a name collision is reported at ``where``
    want = min(exp.batch_size, cap - len(trials))
    if want <= 0:
        return []
    # random without a count: the same seeded stream as planned random search, continued
    stream = list(itertools.islice(_random(domains(exp.parameters), exp.search.seed, len(trials) + want), len(trials), None))
    batch = max((t.batch for t in trials), default=-1) + 1
    return make(exp.name, stream, first_index=len(trials), batch=lambda i: batch, taken=trials, where=where)
