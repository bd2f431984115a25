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
    """Every inventory's versions.yml is the package's file (a link), which the schema version is read from."""
    package = ROOT / "src" / "kubesweep" / "versions.yml"
    for inventory in ("local", "single", "baremetal", "gcp"):
        linked = ROOT / "inventory" / inventory / "group_vars" / "all" / "versions.yml"
        assert linked.is_symlink() or linked.parent.is_symlink() or linked.parent.parent.is_symlink(), linked
        assert linked.resolve() == package.resolve(), inventory
    assert yaml.safe_load(package.read_text())["kube_version"] == KUBERNETES_VERSION


def test_the_lock_file_pins_every_dependency_within_pyproject_s_bounds():
    """CI installs requirements.lock: it must hold a version of each dependency that pyproject.toml
    allows (a bound changed without regenerating the lock fails here, not on a user's machine)."""
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith((" ", "#")):
            req = Requirement(line)
            pinned[req.name.lower().replace("_", "-")] = next(iter(req.specifier)).version
    wanted = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]
              + project["optional-dependencies"]["cluster"]]
    for req in wanted:
        if req.name == "kubesweep":
            continue
        name = req.name.lower().replace("_", "-")
        assert name in pinned, f"{req.name} is not in requirements.lock"
        assert req.specifier.contains(pinned[name]), f"requirements.lock pins {name}=={pinned[name]}, pyproject wants {req}"


def test_sweeping_needs_no_ansible():
    """The sweep-only install (no [cluster] extra) must not import Ansible on any sweep path."""
    code = ("import sys, kubesweep.sweep, kubesweep.cli.app, kubesweep.cli.commands, kubesweep.run.runner, "
            "kubesweep.plan.adaptive; assert not [m for m in sys.modules if m.startswith('ansible')], 'ansible imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
