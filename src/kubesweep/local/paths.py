"""Where kubesweep finds what is not Python: the checkout (playbooks, inventories, roles) that the
local-cluster commands run, and the cache of what outlives a clone.

A sweep needs neither: the package works installed as a wheel, from any directory. The cluster
commands need a kubesweep checkout: ``$KUBESWEEP_CHECKOUT``, else the current directory or one
above it, else the checkout an editable install (``pip install -e .``) points at.

Built artifacts, images, caches and pid files go under one cache root outside the repository
(``$KUBESWEEP_CACHE``, default ``~/.cache/kubesweep``), so a fresh clone — CI's included — reuses
what an earlier one built.
"""

from __future__ import annotations

import os
from pathlib import Path

from kubesweep.errors import KubesweepError

MARKERS = ("site.yml", "playbooks", "roles", "inventory")


class NoCheckout(KubesweepError):
    pass


def is_checkout(path: Path) -> bool:
    return all((path / m).exists() for m in MARKERS)


def checkout() -> Path:
    """The kubesweep checkout the playbooks are run from; NoCheckout when there is none."""
    given = os.environ.get("KUBESWEEP_CHECKOUT")
    if given:
        if not is_checkout(Path(given)):
            raise NoCheckout(f"KUBESWEEP_CHECKOUT={given} is not a kubesweep checkout (no {', '.join(MARKERS)})")
        return Path(given).resolve()
    here = Path.cwd().resolve()
    editable = Path(__file__).resolve().parents[3]  # src/kubesweep/local/paths.py in a checkout
    for candidate in (here, *here.parents, editable):
        if is_checkout(candidate):
            return candidate
    raise NoCheckout("this command runs the playbooks of a kubesweep checkout: run it inside one, or set "
                     "KUBESWEEP_CHECKOUT (a sweep on a cluster you have needs none: pass --kubeconfig)")


def cache_root() -> Path:
    return Path(os.environ.get("KUBESWEEP_CACHE", "~/.cache/kubesweep")).expanduser()
