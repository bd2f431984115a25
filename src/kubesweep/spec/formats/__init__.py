"""Input formats: native grid.yaml, Katib Experiment, W&B sweep config — detected by content."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
import re

from kubesweep.spec import rules as checks
from kubesweep.spec import model as spec
from kubesweep.errors import Issue, Mark, SpecError
from kubesweep.spec.model import Experiment
from kubesweep.spec.yamlsource import Positions, load
from . import katib, wandb
from .base import Translator
from .katib_trial import ConfigMaps

NATIVE, KATIB, WANDB = "grid", "katib", "wandb"


@dataclass(frozen=True)
class Source:
    """A validated experiment and where it came from (for error positions later on)."""

    experiment: Experiment
    positions: Positions
    format: str
    path: str
    names: dict[str, str] | None = None  # native field name → the user's, for foreign formats
    #: trial templates read from the cluster (Katib's trialTemplate.configMap): the name their
    #: marks carry as file → (the mark of the configMap reference, the template's text)
    configmaps: dict[str, tuple[Mark, str]] | None = None
    #: what the translation of a foreign format did that the user should hear of (not errors)
    notes: tuple[str, ...] = ()

    def explain(self, exc: SpecError) -> SpecError:
        """The same errors, in the words of the file the user wrote."""
        return from_configmap(in_their_words(exc, self.names or {}), self.configmaps)


def from_configmap(exc: SpecError, configmaps: dict[str, tuple[Mark, str]] | None) -> SpecError:
    """Errors inside a trial template read from a ConfigMap, each also naming the Experiment's
    file:line:col of the configMap reference."""
    if not configmaps or not any(i.mark.file in configmaps for i in exc.issues):
        return exc
    return SpecError([replace(i, message=f"{i.message} (the trial template that spec.trialTemplate.configMap at "
                                         f"{configmaps[i.mark.file][0]} names)") if i.mark.file in configmaps else i
                      for i in exc.issues])


def in_their_words(exc: SpecError, names: dict[str, str]) -> SpecError:
    if not names:
        return exc
    words = sorted(names, key=len, reverse=True)
    rx = re.compile(r"(?<![\w.$])(" + "|".join(re.escape(w) for w in words) + r")(?![\w])")
    issues = [replace(i, message=rx.sub(lambda m: names[m.group(1)], i.message)) for i in exc.issues]
    return SpecError(issues)


#: Top-level keys only a W&B sweep config has, and keys only grid.yaml has.
_WANDB_ONLY = {"method", "metric", "program", "run_cap", "early_terminate", "project", "entity"}
_NATIVE_ONLY = {"objective", "search", "batchSize", "resources", "build", "output"}


def detect(data: Any) -> str:
    """Which format a document is in, by its keys: Katib's apiVersion/kind; W&B's method (or other
    W&B-only keys) without grid.yaml's own sections; grid.yaml otherwise. A W&B config that also
    has an ``image:`` key is still W&B, and is told that the image comes from --image."""
    if isinstance(data, dict):
        if data.get("kind") == "Experiment" or str(data.get("apiVersion", "")).startswith("kubeflow.org/"):
            return KATIB
        keys = set(data)
        if keys & _WANDB_ONLY and not keys & _NATIVE_ONLY:
            return WANDB
    return NATIVE


def _override(data: dict[str, Any], pos: Positions, key: str, value: str | None, flag: str) -> None:
    if value is not None:
        data[key] = value
        pos.values[(key,)] = pos.keys[(key,)] = Mark(f"<{flag}>", 1, 1)


def load_experiment(path: str | Path, *, image: str | None = None, name: str | None = None,
                    namespace: str | None = None, trial_limit: int | None = None,
                    default_namespace: str | None = None, wandb_secret: str | None = None,
                    configmaps: ConfigMaps | None = None) -> Source:
    """Read any supported format, validate it fully, and return the native experiment. A file
    that names no namespace gets ``default_namespace`` (the kubeconfig context's), if given.
    ``configmaps`` reads a ConfigMap from the cluster, for a Katib trialTemplate.configMap (None:
    no cluster; such a file is refused saying how to give one)."""
    data, pos = load(path)
    fmt = detect(data)
    names: dict[str, str] = {}
    fetched: dict[str, tuple[Mark, str]] = {}
    notes: tuple[str, ...] = ()
    if fmt != NATIVE:
        t = Translator(data, pos, "Katib" if fmt == KATIB else "W&B")
        fetched = t.configmaps
        if fmt == KATIB:
            katib.read(data, t, image=image, configmaps=configmaps)
        else:
            wandb.read(data, t, image=image, api_key_secret=wandb_secret)
        if t.problems:
            # Also surface type errors of what did translate, so one run shows everything, but
            # not a second message at a place already reported, nor what is missing because its
            # source was refused.
            reported = {i.mark for i in t.problems.issues}
            try:
                spec.parse(t.out, t.out_pos)
            except SpecError as exc:
                t.problems.issues.extend(i for i in exc.issues if "needs" not in i.message and i.mark not in reported)
            if t.problems:
                raise from_configmap(SpecError(t.problems.issues), fetched)
        data, pos = t.out, t.out_pos
        notes = tuple(t.notes)
        names = {**t.names, "search.trialLimit": "--trial-limit"}
    elif isinstance(data, dict):
        _override(data, pos, "image", image, "--image")
    if wandb_secret is not None and fmt != WANDB:
        raise SpecError([Issue(Mark(f"<{wandb.SECRET_FLAG}>", 1, 1), f"{wandb.SECRET_FLAG} is for W&B sweep configs; "
                               f"in {'a Katib trialSpec write env[].valueFrom.secretKeyRef' if fmt == KATIB else 'grid.yaml write env: {WANDB_API_KEY: {secretKeyRef: {name: NAME, key: KEY}}}'}")])
    if isinstance(data, dict):
        _override(data, pos, "name", name, "--name")
        _override(data, pos, "namespace", namespace, "--namespace")
        if "namespace" not in data:
            _override(data, pos, "namespace", default_namespace, "the kubeconfig context's namespace")
        if trial_limit is not None:
            search = data["search"] = dict(data.get("search") or {})
            search["trialLimit"] = trial_limit
            pos.values[("search", "trialLimit")] = Mark("<--trial-limit>", 1, 1)
    try:
        experiment = spec.parse(data, pos)
        checks.check(experiment, pos)
    except SpecError as exc:
        raise from_configmap(in_their_words(exc, names), fetched) from None
    return Source(experiment, pos, fmt, str(path), names, fetched or None, notes)
