"""roles/kueue without a cluster: its manifests step (tasks/manifests.yml) run by ansible-playbook on
this machine against a release-shaped manifests.yaml served as a file:// URL — the controller image
follows kube_image_repo, and a file that is not Kueue's release (another image, no Deployment)
stops the role before anything would be applied."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import ROOT
from .test_offline_kueue import _rendered

# the role's manifests step on this machine, then a task that shows what it made
MANIFESTS = """\
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - ansible.builtin.include_role:
        name: kueue
        tasks_from: manifests
"""
PLAY = MANIFESTS + """\
    - ansible.builtin.debug:
        msg: "KUEUE_IMAGES={{ __kueue_objects | selectattr('kind', 'equalto', 'Deployment')
              | map(attribute='spec.template.spec.containers') | flatten | map(attribute='image') | list | to_json }}"
"""


def _run(tmp_path: Path, manifests: str, *extra: str, play_text: str = PLAY) -> subprocess.CompletedProcess[str]:
    src = tmp_path / "release" / "manifests.yaml"
    src.parent.mkdir(exist_ok=True)
    src.write_text(manifests)
    play = tmp_path / "play.yml"
    play.write_text(play_text)
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", str(play),
            "-e", f"kueue_manifests_url=file://{src}", "-e", f"kueue_download_dir={tmp_path / 'downloads'}",
            "-e", "kueue_version=0.17.0", "-e", f"ansible_python_interpreter={sys.executable}", *extra]
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
           "ANSIBLE_STDOUT_CALLBACK": "default", "ANSIBLE_FORCE_COLOR": "0"}
    return subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_the_controller_image_follows_kube_image_repo(tmp_path):
    release = _rendered("registry.k8s.io/kueue/kueue:v0.17.0")
    default = _run(tmp_path, release)
    assert default.returncode == 0, default.stdout[-3000:]
    assert 'KUEUE_IMAGES=["registry.k8s.io/kueue/kueue:v0.17.0"]' in default.stdout, default.stdout[-2000:]
    mirrored = _run(tmp_path, release, "-e", "kube_image_repo=registry.example:5000")
    assert mirrored.returncode == 0, mirrored.stdout[-3000:]
    assert 'KUEUE_IMAGES=["registry.example:5000/kueue/kueue:v0.17.0"]' in mirrored.stdout, mirrored.stdout[-2000:]
    # the downloaded file itself is upstream's, byte for byte (a rerun downloads nothing)
    saved = tmp_path / "downloads" / "kueue-v0.17.0-manifests.yaml"
    assert saved.read_text() == release
    assert "changed=0" in _run(tmp_path, release).stdout


def test_manifests_that_are_not_kueues_release_stop_the_role(tmp_path):
    staging = _run(tmp_path, _rendered("us-central1-docker.pkg.dev/k8s-staging-images/kueue/kueue:main"))
    assert staging.returncode != 0
    assert "is not Kueue 0.17.0's release manifests" in staging.stdout and "kueue:main" in staging.stdout, \
        staging.stdout[-3000:]
    (tmp_path / "downloads" / "kueue-v0.17.0-manifests.yaml").unlink()
    no_deployment = yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kueue-system"}})
    other = _run(tmp_path, no_deployment)
    assert other.returncode != 0 and "is not Kueue 0.17.0's release manifests" in other.stdout, other.stdout[-3000:]


# --------------------------------------------------------------- the controller's Configuration

UPSTREAM_CONFIG = """\
apiVersion: config.kueue.x-k8s.io/v1beta2
kind: Configuration
health:
  healthProbeBindAddress: :8081
controller:
  groupKindConcurrency:
    Job.batch: 5
    Workload.kueue.x-k8s.io: 5
clientConnection:
  qps: 50
  burst: 100
integrations:
  frameworks:
  - batch/job
  - kubeflow.org/mpijob
"""


def _release_with_config() -> str:
    configmap = {"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": "kueue-manager-config", "namespace": "kueue-system"},
                 "data": {"controller_manager_config.yaml": UPSTREAM_CONFIG}}
    return _rendered("registry.k8s.io/kueue/kueue:v0.17.0") + "---\n" + yaml.safe_dump(configmap)


def _filters():
    import importlib.util

    spec = importlib.util.spec_from_file_location("kueue_filters", ROOT / "roles" / "kueue" / "filter_plugins" / "kueue.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CONFIGURED = MANIFESTS + """\
    - ansible.builtin.copy:
        content: "{{ __kueue_objects | to_json }}"
        dest: "{{ playbook_dir }}/objects.json"
        mode: "0600"
"""


def _configured(tmp_path: Path, config: object) -> tuple[subprocess.CompletedProcess[str], dict | None, dict | None]:
    import json

    (tmp_path / "objects.json").unlink(missing_ok=True)
    proc = _run(tmp_path, _release_with_config(), "-e", json.dumps({"kueue_controller_config": config}),
                play_text=CONFIGURED)
    if proc.returncode != 0:
        return proc, None, None
    objects = json.loads((tmp_path / "objects.json").read_text())
    (cm,) = [o for o in objects if o["kind"] == "ConfigMap"]
    (dep,) = [o for o in objects if o["kind"] == "Deployment"]
    return proc, yaml.safe_load(cm["data"]["controller_manager_config.yaml"]), dep


def test_the_controller_configuration_is_merged_over_the_releases_and_its_digest_rolls_the_controller(tmp_path):
    proc, config, dep = _configured(tmp_path, {"clientConnection": {"qps": 200, "burst": 400},
                                               "controller": {"groupKindConcurrency": {"Job.batch": 20}},
                                               "integrations": {"frameworks": ["batch/job"]}})
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert config["clientConnection"] == {"qps": 200, "burst": 400}
    # mappings merge key by key; a list replaces upstream's; the rest is upstream's as it was
    assert config["controller"]["groupKindConcurrency"] == {"Job.batch": 20, "Workload.kueue.x-k8s.io": 5}
    assert config["integrations"]["frameworks"] == ["batch/job"]
    assert config["health"] == {"healthProbeBindAddress": ":8081"}
    assert (config["apiVersion"], config["kind"]) == ("config.kueue.x-k8s.io/v1beta2", "Configuration")
    digest = dep["spec"]["template"]["metadata"]["annotations"]["kubesweep.io/kueue-config-sha256"]
    assert _configured(tmp_path, {"clientConnection": {"qps": 200, "burst": 400},
                                  "controller": {"groupKindConcurrency": {"Job.batch": 20}},
                                  "integrations": {"frameworks": ["batch/job"]}})[2]["spec"]["template"][
        "metadata"]["annotations"]["kubesweep.io/kueue-config-sha256"] == digest
    other = _configured(tmp_path, {"clientConnection": {"qps": 100}})
    assert other[1]["clientConnection"] == {"qps": 100, "burst": 100}
    assert other[2]["spec"]["template"]["metadata"]["annotations"]["kubesweep.io/kueue-config-sha256"] != digest
    # none: the release's objects as they are, no annotation
    proc, config, dep = _configured(tmp_path, {})
    assert config == yaml.safe_load(UPSTREAM_CONFIG) and "metadata" not in dep["spec"]["template"]
    # a bad one stops the role before anything, naming the key
    proc, _, _ = _configured(tmp_path, {"clientConnection": {"qps": 0, "rate": 1}, "kind": "X", "qsp": 1})
    assert proc.returncode != 0
    for said in ("clientConnection.qps must be a number above 0", "clientConnection.rate is not qps or burst",
                 "kueue_controller_config.kind: the Configuration's kind is Kueue's own",
                 "kueue_controller_config.qsp is not a field of Kueue's Configuration", "nothing was applied"):
        assert said in proc.stdout, proc.stdout[-3000:]


def test_configuring_needs_the_releases_configmap():
    filters = _filters()
    objects = list(yaml.safe_load_all(_rendered("registry.k8s.io/kueue/kueue:v0.17.0")))
    assert filters.kueue_configured(objects, {}) is objects
    with pytest.raises(ValueError, match="no ConfigMap kueue-manager-config"):
        filters.kueue_configured(objects, {"clientConnection": {"qps": 100}})
    assert filters.kueue_config_problems({"clientConnection": {"burst": 1.5}}) == [
        "kueue_controller_config.clientConnection.burst must be a whole number above 0 (got 1.5)"]
    assert filters.kueue_config_problems([1]) and filters.kueue_config_problems(None) == []
