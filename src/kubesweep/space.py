"""Parameter domains: the finite points a grid walks, and the distributions random search samples.

Stepped ranges are computed in decimal arithmetic, so ``min: 0.1, max: 0.5, step: 0.2`` gives
0.1, 0.3, 0.5 and not 0.30000000000000004 — the values end up in trial names and argv.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from decimal import Decimal
from typing import Union

from .spec import Parameter

Value = Union[bool, int, float, str]


def _dec(x: float | int) -> Decimal:
    return Decimal(repr(x)) if isinstance(x, float) else Decimal(x)


def _tidy(x: float, digits: int = 6) -> float:
    """Round to ``digits`` significant digits: readable argv and names, stable across machines."""
    return float(f"{x:.{digits}g}")


@dataclass(frozen=True)
class Domain:
    name: str
    points: tuple[Value, ...] | None  # None: continuous (random search only)
    lo: float = 0.0
    hi: float = 0.0
    log: bool = False
    is_int: bool = False

    @property
    def size(self) -> int | None:
        return None if self.points is None else len(self.points)

    def sample(self, rng: random.Random) -> Value:
        if self.points is not None:
            return self.points[rng.randrange(len(self.points))]
        if self.log:
            x = math.exp(rng.uniform(math.log(self.lo), math.log(self.hi)))
        else:
            x = rng.uniform(self.lo, self.hi)
        return int(round(x)) if self.is_int else _tidy(x)


def stepped(lo: float | int, hi: float | int, step: float | int, is_int: bool) -> list[Value]:
    start, stop, inc = _dec(lo), _dec(hi), _dec(step)
    count = int((stop - start) / inc) + 1
    values = [start + inc * i for i in range(count)]
    return [int(v) if is_int else float(v) for v in values]


def counted(lo: float, hi: float, count: int, log: bool, is_int: bool) -> list[Value]:
    if count == 1:
        raw = [lo]
    elif log:
        a, b = math.log(lo), math.log(hi)
        raw = [math.exp(a + (b - a) * i / (count - 1)) for i in range(count)]
    else:
        raw = [lo + (hi - lo) * i / (count - 1) for i in range(count)]
    if is_int:
        out: list[Value] = []
        for x in raw:
            v = int(round(x))
            if v not in out:
                out.append(v)
        return out
    return [_tidy(x) for x in raw]


def domain(name: str, p: Parameter) -> Domain:
    """The domain of one (already checked) parameter."""
    if p.values is not None:
        return Domain(name, tuple(p.values))
    assert p.min is not None and p.max is not None
    is_int = p.is_int
    log = p.scale == "log"
    if p.step is not None:
        return Domain(name, tuple(stepped(p.min, p.max, p.step, is_int)), p.min, p.max, log, is_int)
    if p.count is not None:
        return Domain(name, tuple(counted(p.min, p.max, p.count, log, is_int)), p.min, p.max, log, is_int)
    if is_int and not log:
        return Domain(name, tuple(range(int(p.min), int(p.max) + 1)), p.min, p.max, log, is_int)
    return Domain(name, None, float(p.min), float(p.max), log, is_int)


def domains(parameters: dict[str, Parameter]) -> list[Domain]:
    return [domain(name, p) for name, p in parameters.items()]


def grid_size(doms: list[Domain]) -> int | None:
    """Number of grid points, or None when a domain is continuous."""
    sizes = [d.size for d in doms]
    if any(s is None for s in sizes):
        return None
    return math.prod(s for s in sizes if s is not None)


def space_size(doms: list[Domain]) -> float:
    """Distinct points of the whole space (inf when anything is continuous)."""
    total = grid_size(doms)
    return math.inf if total is None else float(total)
