"""The nvidia_device_plugin role's manifests, rendered by Ansible from the role's own defaults (no
cluster): a valid DaemonSet for the pinned plugin on the GPU nodes, and an image name that the
offline cluster registry and containerd's nvcr.io mirror agree on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from kubesweep.offline import debootstrap, image_recipes
from kubesweep.k8s.versions import KUBERNETES_VERSION, pins

from .conftest import ROOT

ROLE = ROOT / "roles" / "nvidia_device_plugin"
VERSIONS = ROOT / "inventory" / "local" / "group_vars" / "all" / "versions.yml"

PLAYBOOK = """\
- name: Render the device plugin's manifests
  hosts: localhost
  connection: local
  gather_facts: false
  vars_files: [{defaults}, {versions}, {containerd_vars}]
  vars:
    containerd_cluster_registry: "10.0.0.2:5000"
  tasks:
    - name: Defaults
      ansible.builtin.template: {{src: {template}, dest: {out}/default.yaml, mode: "0644"}}
    - name: Every knob turned
      ansible.builtin.template: {{src: {template}, dest: {out}/custom.yaml, mode: "0644"}}
      vars:
        nvidia_device_plugin_image_repo: registry.example/nv
        nvidia_device_plugin_fail_on_init_error: true
        nvidia_device_plugin_extra_env: {{DEVICE_LIST_STRATEGY: volume-mounts, PASS_DEVICE_SPECS: true}}
        nvidia_device_plugin_pod_runtime_class_name: nvidia
    - name: containerd's offline mirrors
      ansible.builtin.copy: {{content: "{{{{ __containerd_offline_mirrors | to_json }}}}", dest: {out}/mirrors.json,
                             mode: "0644"}}
"""


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("device-plugin")
    play = out / "render.yml"
    play.write_text(PLAYBOOK.format(defaults=ROLE / "defaults" / "main.yml", versions=VERSIONS,
                                    containerd_vars=ROOT / "roles" / "containerd" / "vars" / "main.yml",
                                    template=ROLE / "templates" / "daemonset.yaml.j2", out=out))
    playbook = Path(sys.executable).parent / "ansible-playbook"
    proc = subprocess.run([str(playbook), "-i", "localhost,", "-e", f"ansible_python_interpreter={sys.executable}",
                           str(play)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def _container(ds: dict) -> dict:
    return ds["spec"]["template"]["spec"]["containers"][0]


def test_default_daemonset_is_valid_and_runs_the_pinned_plugin_on_gpu_nodes_only(rendered):
    ds = yaml.safe_load((rendered / "default.yaml").read_text())
    kubernetes_validate.validate(ds, KUBERNETES_VERSION, strict=True)
    version = pins()["nvidia_device_plugin_version"]
    pod = ds["spec"]["template"]["spec"]
    assert (ds["kind"], ds["metadata"]["namespace"]) == ("DaemonSet", "kube-system")
    assert _container(ds)["image"] == f"nvcr.io/nvidia/k8s-device-plugin:v{version}"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["priorityClassName"] == "system-node-critical"
    assert "runtimeClassName" not in pod
    # a node without a usable GPU keeps the plugin running instead of crash-looping
    assert _container(ds)["env"] == [{"name": "FAIL_ON_INIT_ERROR", "value": "false"}]
    assert pod["volumes"][0]["hostPath"]["path"] == "/var/lib/kubelet/device-plugins"


def test_knobs_reach_the_daemonset(rendered):
    ds = yaml.safe_load((rendered / "custom.yaml").read_text())
    kubernetes_validate.validate(ds, KUBERNETES_VERSION, strict=True)
    assert _container(ds)["image"].startswith("registry.example/nv/k8s-device-plugin:v")
    assert _container(ds)["env"] == [{"name": "FAIL_ON_INIT_ERROR", "value": "true"},
                                     {"name": "DEVICE_LIST_STRATEGY", "value": "volume-mounts"},
                                     {"name": "PASS_DEVICE_SPECS", "value": "true"}]  # not Python's "True"
    assert ds["spec"]["template"]["spec"]["runtimeClassName"] == "nvidia"


def test_offline_the_image_name_resolves_to_the_pushed_path(rendered):
    # containerd asks a mirror of nvcr.io for /v2/<path>/manifests/<tag>, path as in the image name
    ds = yaml.safe_load((rendered / "default.yaml").read_text())
    registry, path = _container(ds)["image"].split("/", 1)
    mirrors = {m["registry"]: m for m in json.loads((rendered / "mirrors.json").read_text())}
    assert mirrors[registry]["mirrors"] == ["http://10.0.0.2:5000"]
    assert mirrors[registry]["server"] == "https://nvcr.io"
    spec = image_recipes.nvidia_image("k8s-device-plugin", path.rsplit(":", 1)[1],
                               debootstrap.Rootfs(image_recipes.MINBASE_ROOTFS, Path("/x.tar"), "a" * 64, True, 0), [], [])
    assert spec.upstream == _container(ds)["image"] and spec.path == path
