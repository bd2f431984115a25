"""Reading a trial's metric from its output, Katib StdOut style.

By default a metric named ``accuracy`` is read from lines such as ``accuracy=0.97`` (Katib's
default format), ``Test accuracy: 0.98`` (seed 000's trainer) or ``val/accuracy = 9.7e-1``;
the last value printed wins (Katib's "latest" strategy) unless objective.strategies says min or
max. A configured regex replaces the default: one group (or a group named ``value``) is the
value; two groups are (name, value) pairs.
"""

from __future__ import annotations

import functools
import json
import math
import re
from typing import Any

from kubesweep.spec.model import Objective

NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf)"


@functools.lru_cache(maxsize=64)
def default_pattern(metric: str) -> re.Pattern[str]:
    # The name must not be glued to a longer word: "accuracy" matches "Test accuracy: 0.9" and
    # "accuracy=0.9" but not "val_accuracy=0.9".
    return re.compile(rf"(?<![\w/.-]){re.escape(metric)}\s*[:=]\s*({NUMBER})(?![\w.])", re.IGNORECASE)


def _values(text: str, metric: str, regex: str | None) -> list[float]:
    if regex is None:
        return [float(m.group(1)) for m in default_pattern(metric).finditer(text)]
    rx = re.compile(regex)
    found: list[float] = []
    for m in rx.finditer(text):
        try:
            if "value" in rx.groupindex:
                if "name" in rx.groupindex and m.group("name") != metric:
                    continue
                found.append(float(m.group("value")))
            elif rx.groups >= 2:  # Katib's rule: the first group is the name, the second the value
                if m.group(1) == metric:
                    found.append(float(m.group(2)))
            else:
                found.append(float(m.group(1)))
        except (TypeError, ValueError):
            continue
    return found


def read_metric(text: str, metric: str, regex: str | None = None, strategy: str = "latest") -> float | None:
    """The value of ``metric`` in ``text`` by its strategy (Katib's metricStrategies): the last
    finite value printed (latest), or the least (min) or greatest (max) of them; None if it was
    never printed."""
    values = [v for v in _values(text, metric, regex) if not math.isnan(v)]
    if not values:
        return None
    return min(values) if strategy == "min" else max(values) if strategy == "max" else values[-1]


def objective_metrics(objective: Objective) -> list[str]:
    """Every metric a trial reports: the objective's, the other objectives', the additional ones."""
    names = [m for m, _ in objective.terms()] + list(objective.additional_metrics)
    return list(dict.fromkeys(names))


def read_objective(text: str, objective: Objective) -> dict[str, float | None]:
    """The objective metrics and every additional metric read from a trial's output, each by its
    strategy (objective.strategies; latest by default)."""
    return {name: read_metric(text, name, objective.regex, objective.strategies.get(name, "latest"))
            for name in objective_metrics(objective)}


#: The keys that number a report when objective.step names none: the first one a report carries.
STEP_KEYS = ("step", "epoch", "iteration", "timestamp")
#: The most points a curve keeps per metric; a longer one is thinned evenly (its last point kept).
MAX_POINTS = 2_000


def _number(value: Any) -> float | None:
    """A JSON value as a metric: a number, or a string spelling one (Katib's JSON lines quote them)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _json_line(line: str) -> dict[str, Any] | None:
    text = line.strip()
    if not (text.startswith("{") and text.endswith("}")):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


class CurveReader:
    """Intermediate values of ``metrics`` from a trial's log, fed as it grows (``feed``).

    Each line is one report: a JSON object (``{"epoch": 3, "accuracy": 0.91}``, Katib's JSON
    format, values may be quoted) or text read as ``read_metric`` reads it (``epoch=3
    accuracy=0.91``, Katib's default; the objective's regex when it has one). A report's step is
    its ``step`` key's value (objective.step), or the first of STEP_KEYS on the line, or else its
    place among that metric's reports (1, 2, 3, ...). NaN is skipped; a step seen again replaces
    its value. ``unnumbered`` counts, per metric, the reports that lacked a configured step key.
    """

    def __init__(self, metrics: list[str], regex: str | None = None, step: str | None = None):
        self.metrics = list(dict.fromkeys(metrics))
        self.regex, self.step = regex, step
        self.points: dict[str, list[list[float]]] = {m: [] for m in self.metrics}
        self.unnumbered: dict[str, int] = {}

    def feed(self, text: str) -> bool:
        """Read more of the log; whether any metric got a new point."""
        grew = False
        for line in text.splitlines():
            grew |= self._line(line)
        return grew

    def _line(self, line: str) -> bool:
        data = _json_line(line)
        found: dict[str, float] = {}
        for m in self.metrics:
            if data is not None:
                value = _number(data.get(m))
            else:
                values = _values(line, m, self.regex)
                value = values[-1] if values else None
            if value is not None and not math.isnan(value):
                found[m] = value
        if not found:
            return False
        step = self._step(line, data)
        for m, value in found.items():
            if step is None and self.step:
                self.unnumbered[m] = self.unnumbered.get(m, 0) + 1
            curve = self.points[m]
            at = step if step is not None else (curve[-1][0] + 1 if curve else 1)
            if curve and curve[-1][0] == at:
                curve[-1][1] = value
            else:
                curve.append([at, value])
        return True

    def _step(self, line: str, data: dict[str, Any] | None) -> float | None:
        keys = (self.step,) if self.step else STEP_KEYS
        for key in keys:
            if data is not None:
                value = _number(data.get(key))
            else:
                values = _values(line, key, self.regex)
                value = values[-1] if values else None
            if value is not None and math.isfinite(value):
                return int(value) if value.is_integer() else value
        return None

    def curves(self) -> dict[str, list[list[float]]]:
        """The curves worth keeping: two points or more, each thinned to MAX_POINTS."""
        return {m: _thin(c) for m, c in self.points.items() if len(c) >= 2}

    def last(self, metric: str) -> tuple[float, float] | None:
        """(step, value) of the metric's latest report, or None."""
        curve = self.points.get(metric)
        return (curve[-1][0], curve[-1][1]) if curve else None


def _thin(curve: list[list[float]]) -> list[list[float]]:
    if len(curve) <= MAX_POINTS:
        return [list(p) for p in curve]
    stride = len(curve) / (MAX_POINTS - 1)
    picked = [curve[int(i * stride)] for i in range(MAX_POINTS - 1)] + [curve[-1]]
    return [list(p) for p in picked]


def read_curves(text: str, metrics: list[str], regex: str | None = None, step: str | None = None) -> CurveReader:
    reader = CurveReader(metrics, regex, step)
    reader.feed(text)
    return reader


def curve_metrics(exp: Any) -> list[str]:
    """The metrics whose curves a sweep keeps: the objective's, the additional ones, and the one
    early stopping judges."""
    names = [m for m in (exp.objective.metric, *exp.objective.additional_metrics) if m is not None]
    if exp.early_stopping is not None and exp.early_stopping.metric:
        names.append(exp.early_stopping.metric)
    return list(dict.fromkeys(names))
