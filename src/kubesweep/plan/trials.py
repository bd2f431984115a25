"""Trials: a parameter set with its name, index and batch, made in one place (``make``).

A trial's name is ``<experiment>-<slug>-<hash>``: the hash is the first 12 hex digits of the
SHA-256 of the parameters as canonical JSON, so the same parameters give the same name on any
machine and in any run (resume depends on it); the slug makes ``kubectl get jobs`` readable and
is shortened to keep the name a DNS-1123 label of at most 63 characters.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Callable, Iterable

from kubesweep.errors import Issue, Mark, SpecError
from kubesweep.spec.space import Value

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


def make(experiment: str, params_list: Iterable[dict[str, Value]], *, first_index: int = 0,
         batch: Callable[[int], int], where: Mark, taken: Iterable[Trial] = ()) -> list[Trial]:
    """Trials of these parameter sets, numbered from ``first_index``, in the batch ``batch(index)``
    says. Two parameter sets whose names collide (a 48-bit hash collision), with each other or with
    a trial already ``taken``, are refused (at ``where``) rather than merged into one trial."""
    names: dict[str, dict[str, Value]] = {t.name: t.params for t in taken}
    out: list[Trial] = []
    for i, params in enumerate(params_list, start=first_index):
        key = canonical_json(params)
        name = trial_name(experiment, params, key)
        if name in names:
            raise SpecError([Issue(where, f"trials {names[name]} and {params} hash to the same name {name}; "
                                          "change a value slightly")])
        names[name] = params
        out.append(Trial(name, i, batch(i), params, key))
    return out
