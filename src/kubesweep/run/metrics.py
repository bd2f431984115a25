"""Reading a trial's metric from its output, Katib StdOut style.

By default a metric named ``accuracy`` is read from lines such as ``accuracy=0.97`` (Katib's
default format), ``Test accuracy: 0.98`` (seed 000's trainer) or ``val/accuracy = 9.7e-1``;
the last value printed wins (Katib's "latest" strategy). A configured regex replaces the default:
one group (or a group named ``value``) is the value; two groups are (name, value) pairs.
"""

from __future__ import annotations

import functools
import math
import re

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


def read_metric(text: str, metric: str, regex: str | None = None) -> float | None:
    """The last finite value of ``metric`` in ``text``, or None if it was never printed."""
    values = [v for v in _values(text, metric, regex) if not math.isnan(v)]
    return values[-1] if values else None


def read_objective(text: str, objective: Objective) -> dict[str, float | None]:
    """The objective metric and every additional metric read from a trial's output."""
    names = [objective.metric, *objective.additional_metrics]
    return {name: read_metric(text, name, objective.regex) for name in names}
