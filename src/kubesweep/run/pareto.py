"""The Pareto front of a multi-objective sweep: what best.json, the report and the command show
instead of one best trial when objective.additionalObjectives is given. Pure: records in, records out."""

from __future__ import annotations

import math
from typing import Any, Sequence

from kubesweep.run.trialstate import SUCCEEDED


def _point(record: dict[str, Any], objectives: Sequence[tuple[str, str]]) -> tuple[float, ...] | None:
    """The record's objective values, each turned so that smaller is better; None unless it
    succeeded with a finite value for every objective."""
    if record.get("state") != SUCCEEDED:
        return None
    metrics = record.get("metrics") or {}
    out = []
    for metric, direction in objectives:
        v = metrics.get(metric)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return None
        out.append(-float(v) if direction == "maximize" else float(v))
    return tuple(out)


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether ``a`` is at least as good as ``b`` in every objective and better in one (smaller is better)."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def pareto_front(records: list[dict[str, Any]], objectives: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """The succeeded records no other succeeded record dominates, in the given order; trials
    with the same values all stay. ``objectives``: (metric, "maximize" | "minimize") pairs."""
    scored = [(r, p) for r in records if (p := _point(r, objectives)) is not None]
    # sorted by the values, a record can only be dominated by one before it: n log n + n * front
    order = sorted(range(len(scored)), key=lambda i: scored[i][1])
    front: list[int] = []
    for i in order:
        p = scored[i][1]
        if not any(dominates(scored[j][1], p) for j in front):
            front.append(i)
    keep = set(front)
    return [r for i, (r, _) in enumerate(scored) if i in keep]


def describe(record: dict[str, Any], objectives: Sequence[tuple[str, str]]) -> str:
    """``acc = 0.9, latency = 12`` for one point of the front."""
    metrics = record.get("metrics") or {}
    return ", ".join(f"{m} = {metrics.get(m)}" for m, _ in objectives)
