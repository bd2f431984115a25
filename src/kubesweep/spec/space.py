"""Parameter domains: the finite points a grid walks, and the distributions random search samples.

Sizes are computed arithmetically and points are made on demand (``point(i)``), never by listing
a range: ``{min: 0, max: 2147483647}`` is a domain of 2,147,483,648 points that costs nothing
until a trial asks for one, so a random search over it, or a grid refused for its size, is
decided at once. Only explicit ``values`` and ``count`` points (at most ``MAX_COUNT``) are held.

Stepped ranges are computed in decimal arithmetic, so ``min: 0.1, max: 0.5, step: 0.2`` gives
0.1, 0.3, 0.5 and not 0.30000000000000004 — the values end up in trial names and argv.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from decimal import Decimal, localcontext
from typing import Union

from kubesweep.spec.model import Parameter

Value = Union[bool, int, float, str]

#: The most points ``count`` may ask of one range (they are computed up front and deduplicated).
MAX_COUNT = 100_000


def _dec(x: float | int) -> Decimal:
    return Decimal(repr(x)) if isinstance(x, float) else Decimal(x)


def tidy(x: float, digits: int = 6) -> float:
    """Round to ``digits`` significant digits: readable argv and names, stable across machines."""
    return float(f"{x:.{digits}g}")


@dataclass(frozen=True)
class Domain:
    """One parameter's points: listed (``values``), stepped (``lo + i * step``), or continuous
    (``size`` None: random and tpe search sample ``lo``..``hi``)."""

    name: str
    size: int | None
    lo: float | int = 0.0
    hi: float | int = 0.0
    log: bool = False
    is_int: bool = False
    values: tuple[Value, ...] | None = None
    step: Decimal | int | None = None
    #: distribution normal: mean and standard deviation (of the log for log ranges); None: uniform.
    mu: float | None = None
    sigma: float | None = None

    @property
    def finite(self) -> bool:
        return self.size is not None

    def point(self, i: int) -> Value:
        """The i-th point (0 <= i < size) of a finite domain."""
        if self.values is not None:
            return self.values[i]
        assert self.step is not None
        if self.is_int:
            return int(self.lo) + int(self.step) * i
        with localcontext() as ctx:
            ctx.prec = 60
            return float(_dec(self.lo) + Decimal(self.step) * i)

    def points(self) -> list[Value]:
        """Every point; only for domains known to be small (callers check ``size``)."""
        assert self.size is not None
        return [self.point(i) for i in range(self.size)]

    def sample(self, rng: random.Random) -> Value:
        if self.sigma is not None and self.mu is not None:
            return self._normal(rng)
        if self.size is not None:
            return self.point(rng.randrange(self.size))
        if self.log:
            x = math.exp(rng.uniform(math.log(self.lo), math.log(self.hi)))
        else:
            x = rng.uniform(self.lo, self.hi)
        return int(round(x)) if self.is_int else tidy(x)


    def _normal(self, rng: random.Random) -> Value:
        """A draw of the normal (log-normal) distribution inside lo..hi: one outside is drawn again
        (after 100 misses, the nearest bound); stepped and int ranges take the nearest point."""
        assert self.mu is not None and self.sigma is not None
        lo, hi = (math.log(self.lo), math.log(self.hi)) if self.log else (float(self.lo), float(self.hi))
        for _ in range(100):
            z = rng.gauss(self.mu, self.sigma)
            if lo <= z <= hi:
                break
        else:
            z = min(max(z, lo), hi)
        x = min(max(math.exp(z) if self.log else z, float(self.lo)), float(self.hi))
        if self.size is not None and self.step is not None:
            i = round((x - float(self.lo)) / float(self.step))
            return self.point(min(max(i, 0), self.size - 1))
        return int(round(x)) if self.is_int else min(max(tidy(x), self.lo), self.hi)


def stepped_size(lo: float | int, hi: float | int, step: float | int, is_int: bool) -> int:
    """How many points ``lo, lo + step, ...`` up to ``hi`` (inclusive when reached), by arithmetic."""
    if is_int and all(isinstance(v, int) or float(v).is_integer() for v in (lo, hi, step)):
        return (int(hi) - int(lo)) // int(step) + 1
    with localcontext() as ctx:
        ctx.prec = 60
        return int((_dec(hi) - _dec(lo)) / _dec(step)) + 1


def stepped(lo: float | int, hi: float | int, step: float | int, is_int: bool) -> list[Value]:
    d = Domain("", stepped_size(lo, hi, step, is_int), lo, hi, False, is_int, step=int(step) if is_int else _dec(step))
    return d.points()


def counted(lo: float, hi: float, count: int, log: bool, is_int: bool) -> list[Value]:
    if count == 1:
        raw = [lo]
    elif log:
        a, b = math.log(lo), math.log(hi)
        raw = [math.exp(a + (b - a) * i / (count - 1)) for i in range(count)]
    else:
        raw = [lo + (hi - lo) * i / (count - 1) for i in range(count)]
    if is_int:
        return list(dict.fromkeys(int(round(x)) for x in raw))
    return list(dict.fromkeys(tidy(x) for x in raw))


def _small(d: Domain) -> Domain:
    """``d`` with its points listed when there are few (as many as ``count`` may ask): a grid
    then reads each point from a tuple instead of computing it for every trial."""
    if d.values is None and d.size is not None and d.size <= MAX_COUNT:
        return replace(d, values=tuple(d.points()))
    return d


def domain(name: str, p: Parameter) -> Domain:
    """The domain of one (already checked) parameter."""
    d = _small(_domain(name, p))
    if p.distribution == "normal" and p.values is None and p.min is not None and p.max is not None:
        # Katib's normal and logNormal: mu the middle of the range, sigma a sixth of it (log scale for log)
        lo, hi = (math.log(p.min), math.log(p.max)) if p.scale == "log" and p.min > 0 else (float(p.min), float(p.max))
        d = replace(d, mu=float(p.mu) if p.mu is not None else (lo + hi) / 2,
                    sigma=float(p.sigma) if p.sigma is not None else (hi - lo) / 6)
    return d


def _domain(name: str, p: Parameter) -> Domain:
    if p.values is not None:
        return Domain(name, len(p.values), values=tuple(p.values))
    assert p.min is not None and p.max is not None
    is_int = p.is_int
    log = p.scale == "log"
    if p.step is not None:
        step = int(p.step) if is_int else _dec(p.step)
        return Domain(name, stepped_size(p.min, p.max, p.step, is_int), p.min, p.max, log, is_int, step=step)
    if p.count is not None:
        values = tuple(counted(p.min, p.max, p.count, log, is_int))
        return Domain(name, len(values), p.min, p.max, log, is_int, values=values)
    if is_int and not log:
        return Domain(name, int(p.max) - int(p.min) + 1, int(p.min), int(p.max), log, is_int, step=1)
    return Domain(name, None, float(p.min), float(p.max), log, is_int)


def domains(parameters: dict[str, Parameter]) -> list[Domain]:
    return [domain(name, p) for name, p in parameters.items()]


def grid_size(doms: list[Domain]) -> int | None:
    """Number of grid points (an exact, possibly huge, integer), or None when a domain is continuous."""
    if any(d.size is None for d in doms):
        return None
    return math.prod(d.size for d in doms if d.size is not None)


def space_size(doms: list[Domain]) -> int | float:
    """Distinct points of the whole space (inf when anything is continuous)."""
    total = grid_size(doms)
    return math.inf if total is None else total


def grid_point(doms: list[Domain], index: int) -> dict[str, Value]:
    """The ``index``-th point of the grid, in the order of itertools.product over the domains
    (the last parameter varies fastest), without listing the grid."""
    values: list[Value] = []
    for d in reversed(doms):
        assert d.size is not None
        index, i = divmod(index, d.size)
        values.append(d.point(i))
    return dict(zip((d.name for d in doms), reversed(values)))
