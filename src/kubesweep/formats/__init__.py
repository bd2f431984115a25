"""Input formats: native grid.yaml, Katib Experiment, W&B sweep config — detected by content."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
import re

from .. import checks, spec
from ..errors import Mark, SpecError
from ..spec import Experiment
from ..yamlsource import Positions, load
from . import katib, wandb
from .base import Translator

NATIVE, KATIB, WANDB = "grid", "katib", "wandb"


@dataclass(frozen=True)
class Source:
    """A validated experiment and where it came from (for error positions later on)."""

    experiment: Experiment
    positions: Positions
    format: str
    path: str
    names: dict[str, str] | None = None  # native field name → the user's, for foreign formats

    def explain(self, exc: SpecError) -> SpecError:
        """The same errors, in the words of the file the user wrote."""
        return in_their_words(exc, self.names or {})


def in_their_words(exc: SpecError, names: dict[str, str]) -> SpecError:
    if not names:
        return exc
    words = sorted(names, key=len, reverse=True)
    rx = re.compile(r"(?<![\w.$])(" + "|".join(re.escape(w) for w in words) + r")(?![\w])")
    issues = [replace(i, message=rx.sub(lambda m: names[m.group(1)], i.message)) for i in exc.issues]
    return SpecError(issues)


def detect(data: Any) -> str:
    if isinstance(data, dict):
        if data.get("kind") == "Experiment" or str(data.get("apiVersion", "")).startswith("kubeflow.org/"):
            return KATIB
        if "method" in data and "image" not in data:
            return WANDB
    return NATIVE


def _override(data: dict[str, Any], pos: Positions, key: str, value: str | None, flag: str) -> None:
    if value is not None:
        data[key] = value
        pos.values[(key,)] = pos.keys[(key,)] = Mark(f"<{flag}>", 1, 1)


def load_experiment(path: str | Path, *, image: str | None = None, name: str | None = None,
                    namespace: str | None = None, trial_limit: int | None = None) -> Source:
    """Read any supported format, validate it fully, and return the native experiment."""
    data, pos = load(path)
    fmt = detect(data)
    names: dict[str, str] = {}
    if fmt != NATIVE:
        t = Translator(data, pos, "Katib" if fmt == KATIB else "W&B")
        (katib if fmt == KATIB else wandb).read(data, t, image=image)
        if t.problems:
            # Also surface type errors of what did translate, so one run shows everything.
            try:
                spec.parse(t.out, t.out_pos)
            except SpecError as exc:
                t.problems.issues.extend(i for i in exc.issues if "needs" not in i.message)
            t.problems.raise_if_any()
        data, pos = t.out, t.out_pos
        names = {**t.names, "search.trialLimit": "--trial-limit"}
    elif isinstance(data, dict):
        _override(data, pos, "image", image, "--image")
    if isinstance(data, dict):
        _override(data, pos, "name", name, "--name")
        _override(data, pos, "namespace", namespace, "--namespace")
        if trial_limit is not None:
            search = data["search"] = dict(data.get("search") or {})
            search["trialLimit"] = trial_limit
            pos.values[("search", "trialLimit")] = Mark("<--trial-limit>", 1, 1)
    try:
        experiment = spec.parse(data, pos)
        checks.check(experiment, pos)
    except SpecError as exc:
        raise in_their_words(exc, names) from None
    return Source(experiment, pos, fmt, str(path), names)
