"""Every version kubesweep pins, read from one file: kubesweep/versions.yml.

The file is package data (an installed wheel has it), and each inventory's
group_vars/all/versions.yml is a link to it, so the cluster the playbooks build, the offline
build (offline/versions.py) and the schema rendered Jobs are validated against
(KUBERNETES_VERSION) are pinned in one place.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

import yaml


def read(path: Path | None = None) -> dict[str, str]:
    """The pins of ``path`` (default: the package's versions.yml) as strings; OSError if unreadable."""
    text = Path(path).read_text() if path else resources.files("kubesweep").joinpath("versions.yml").read_text()
    return {k: str(v) for k, v in (yaml.safe_load(text) or {}).items()}


@functools.cache
def pins() -> dict[str, str]:
    """Every pinned version of the package's versions.yml."""
    return read()


KUBERNETES_VERSION = pins()["kube_version"]
