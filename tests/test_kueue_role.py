"""roles/kueue without a cluster: its manifests step (tasks/manifests.yml) run by ansible-playbook on
this machine against a release-shaped manifests.yaml served as a file:// URL — the controller image
follows kube_image_repo, and a file that is not Kueue's release (another image, no Deployment)
stops the role before anything would be applied."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from .conftest import ROOT
from .test_offline_kueue import _rendered

PLAY = """\
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - ansible.builtin.include_role:
        name: kueue
        tasks_from: manifests
    - ansible.builtin.debug:
        msg: "KUEUE_IMAGES={{ __kueue_objects | selectattr('kind', 'equalto', 'Deployment')
              | map(attribute='spec.template.spec.containers') | flatten | map(attribute='image') | list | to_json }}"
"""


def _run(tmp_path: Path, manifests: str, *extra: str) -> subprocess.CompletedProcess[str]:
    src = tmp_path / "release" / "manifests.yaml"
    src.parent.mkdir(exist_ok=True)
    src.write_text(manifests)
    play = tmp_path / "play.yml"
    play.write_text(PLAY)
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
