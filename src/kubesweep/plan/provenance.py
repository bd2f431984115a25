"""Which trial template an experiment's trials ran with, so that a resumed sweep never mixes two.

A trial's name comes from its parameter values alone, so a grid rerun after its image, command,
env or resources changed would find the old trials' results in the journal (and their Jobs on the
cluster) under the same names, report them as this sweep's, and never run those trials again.
The first sweep of an experiment keeps its trial template (``manifest.trial_template``) in
``results/<experiment>/template.json``, and every Job carries the template's digest
(``manifest.A_TEMPLATE``). A later sweep whose template differs from either stops before it
creates anything and says what changed. Parameters may change freely: new values are new trials.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from kubesweep.errors import KubesweepError
from kubesweep.plan.job import A_TEMPLATE
from kubesweep.offline.cache import atomic_write
from kubesweep.plan.trials import canonical_json
from kubesweep.run.trialstate import CANCELLED, FAILED, SUCCEEDED

FILE = "template.json"
SHOWN = 5  # changed fields listed by name; the rest are counted


class TemplateChanged(KubesweepError):
    """The experiment's trials ran with another template than the grid now gives them."""


def path(results_dir: Path) -> Path:
    return Path(results_dir) / FILE


def _flat(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Leaves by path: ``spec.containers[0].image`` -> value."""
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for key, value in obj.items():
            out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
        return out or {prefix: {}}
    if isinstance(obj, list):
        out = {}
        for i, value in enumerate(obj):
            out.update(_flat(value, f"{prefix}[{i}]"))
        return out or {prefix: []}
    return {prefix: obj}


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 70 else text[:67] + "..."


def changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two templates, one line per field, in path order."""
    a, b = _flat(old), _flat(new)
    lines = []
    for key in sorted(a.keys() | b.keys()):
        if key not in b:
            lines.append(f"{key}: {_show(a[key])} -> (absent)")
        elif key not in a:
            lines.append(f"{key}: (absent) -> {_show(b[key])}")
        elif a[key] != b[key]:
            lines.append(f"{key}: {_show(a[key])} -> {_show(b[key])}")
    return lines


def _listed(lines: list[str]) -> str:
    shown = "".join(f"\n  {line}" for line in lines[:SHOWN])
    if len(lines) > SHOWN:
        shown += f"\n  ... and {len(lines) - SHOWN} more"
    return shown


def refusal(experiment: str, what: str, lines: list[str], hint: str = "") -> TemplateChanged:
    return TemplateChanged(
        f"{experiment}: {what} ran with another trial template than the grid gives now:{_listed(lines)}\n"
        "Their results would be reported as this sweep's, and trials with the same parameters would not "
        f"run again. Nothing was created.{hint} To keep both, give the experiment a new name (name: in the grid); "
        f"to drop the old trials, run `kubesweep clean -e {experiment} --outputs` (their Jobs, results/ and jobs/), "
        "then run the sweep again.")


def kept(done: dict[str, dict[str, Any]], retry_failed: bool) -> dict[str, dict[str, Any]]:
    """The journal's records that a sweep keeps: all, or with --retry-failed those that did not
    fail or get cancelled (those are run again)."""
    if not retry_failed:
        return done
    return {n: r for n, r in done.items() if r.get("state") not in (FAILED, CANCELLED)}


def _differs(results_dir: Path, experiment: str, template: dict[str, Any],
             records: dict[str, dict[str, Any]]) -> tuple[str, list[str], int] | None:
    """(what ran with another template, the changed fields, how many of them succeeded), or None
    when the finished ``records`` ran with ``template`` or cannot be checked."""
    p = path(results_dir)
    if not records or not p.exists():
        return None
    try:
        old = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise KubesweepError(f"{p}: cannot be read ({exc}); it records the trial template of "
                             f"{experiment}'s results: restore it, or remove it to skip this check") from None
    if canonical_json(old) == canonical_json(template):
        return None
    n = len(records)
    succeeded = sum(1 for r in records.values() if r.get("state") == SUCCEEDED)
    what = f"{n} finished trial{'' if n == 1 else 's'} ({succeeded} succeeded) in {Path(results_dir)}"
    return what, changes(old, template), succeeded


def check_results(results_dir: Path, experiment: str, template: dict[str, Any], records: dict[str, dict[str, Any]]) -> None:
    """Refuse when finished trials that the sweep would keep (``kept``) ran with another template.
    Without any there is nothing to mix up; a results directory from before templates were kept
    (finished trials, no template.json) cannot be checked."""
    found = _differs(results_dir, experiment, template, records)
    if found is None:
        return
    what, lines, succeeded = found
    hint = "" if succeeded else (" None of them succeeded: `kubesweep sweep --retry-failed` runs them again with "
                                 "the new template.")
    raise refusal(experiment, what, lines, hint)


def results_note(results_dir: Path, experiment: str, template: dict[str, Any],
                 records: dict[str, dict[str, Any]]) -> str | None:
    """For `kubesweep results`, which only reads: a note when the results it shows ran with another
    trial template than the grid gives now (a train.py edited since, say), or None."""
    found = _differs(results_dir, experiment, template, records)
    if found is None:
        return None
    what, lines, _ = found
    return (f"note: {experiment}: these results ({what}) ran with another trial template than the grid gives now:"
            + _listed(lines) + "\na sweep of this file stops rather than mix them with new ones (docs/grid.md).")


def check_jobs(jobs: Iterable[dict[str, Any]], experiment: str, digest: str, image: str | None) -> None:
    """Refuse when Jobs of the experiment on the cluster were made from another template (Jobs
    made before the digest was recorded carry none and are taken as they are)."""
    other = [j for j in jobs if (j["metadata"].get("annotations") or {}).get(A_TEMPLATE, digest) != digest]
    if not other:
        return
    images = sorted({c.get("image", "") for j in other
                     for c in (((j.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []})
    lines = [f"image: {', '.join(images)} -> {image}"] if image and images and images != [image] else \
        ["the command, env, resources or another field of the pod (the image is the same)"]
    n = len(other)
    raise refusal(experiment, f"{n} Job{'' if n == 1 else 's'} on the cluster", lines)


def keep(results_dir: Path, template: dict[str, Any], finished: int) -> None:
    """Record the template the experiment's trials run with: once its first trial has finished,
    later sweeps must match it (before that, a changed grid simply replaces it)."""
    p = path(results_dir)
    if finished and p.exists():
        return
    atomic_write(p, json.dumps(template, indent=2, sort_keys=True) + "\n")
