"""The repository keeps its promises: pinned collections installed, versions in one place."""

import json
import subprocess
import sys
from pathlib import Path

import yaml

from kubesweep.k8s.versions import KUBERNETES_VERSION

from .conftest import ROOT


def test_installed_collections_match_requirements_yml():
    wanted = {c["name"]: c["version"] for c in yaml.safe_load((ROOT / "requirements.yml").read_text())["collections"]}
    galaxy = Path(sys.executable).parent / "ansible-galaxy"
    proc = subprocess.run([str(galaxy), "collection", "list", "--format", "json"], capture_output=True, text=True, check=True)
    installed: dict[str, str] = {}
    for path_collections in json.loads(proc.stdout).values():
        for name, info in path_collections.items():
            installed.setdefault(name, info["version"])
    for name, version in wanted.items():
        assert installed.get(name) == version, f"{name}: requirements.yml pins {version}, installed {installed.get(name)}"


def test_kubernetes_version_is_pinned_once_for_cluster_and_schema():
    versions = yaml.safe_load((ROOT / "inventory" / "local" / "group_vars" / "all" / "versions.yml").read_text())
    assert versions["kube_version"] == KUBERNETES_VERSION
