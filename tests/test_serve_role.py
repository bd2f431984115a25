"""roles/kubesweep_serve without a cluster: its settings check and the objects it renders
(tasks/manifests.yml run by ansible-playbook on this machine) — the Deployment runs the contract's
command as non-root with its probe on /api/health, the ServiceAccount's Role is a user's Role in
each sweep namespace and nothing cluster-wide, the Secret holds a tokens file `kubesweep serve`
itself accepts, a changed tokens file changes the pod template, and bad settings stop the role
with every problem named and no token shown."""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import ROOT

ROLE = ROOT / "roles" / "kubesweep_serve"
ADMIN = {"name": "ops", "token": "ops-0123456789abcdefghij", "admin": True}
ALICE = {"name": "alice", "token": "alice-0123456789abcdefghij", "team": "vision", "namespaces": ["vision"]}
IMAGE = "localhost:5000/kubesweep/serve:0123456789ab"

PLAY = """\
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - ansible.builtin.include_role:
        name: kubesweep_serve
        tasks_from: manifests
    - ansible.builtin.copy:
        content: "{{ __kubesweep_serve_objects | to_json }}"
        dest: "{{ playbook_dir }}/objects.json"
        mode: "0600"
"""


def _run(tmp_path: Path, extra: dict) -> subprocess.CompletedProcess[str]:
    play = tmp_path / "play.yml"
    play.write_text(PLAY)
    (tmp_path / "objects.json").unlink(missing_ok=True)
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", str(play),
            "-e", f"ansible_python_interpreter={sys.executable}",
            "-e", json.dumps({"kubesweep_cache_dir": str(tmp_path / "cache"), **extra})]
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
           "ANSIBLE_STDOUT_CALLBACK": "default", "ANSIBLE_FORCE_COLOR": "0"}
    return subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def _objects(tmp_path: Path, **extra) -> dict[tuple[str, str, str], dict]:
    proc = _run(tmp_path, {"kubesweep_serve_image": IMAGE, "kubesweep_serve_tokens": [ADMIN, ALICE], **extra})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    objects = json.loads((tmp_path / "objects.json").read_text())
    return {(o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objects}


def _deployment(objects: dict) -> dict:
    return objects["Deployment", "kubesweep", "kubesweep-serve"]


def test_the_deployment_runs_the_contracts_command_as_non_root_with_its_state_and_tokens_mounted(tmp_path):
    objects = _objects(tmp_path)
    assert set(objects) == {(kind, "kubesweep", "kubesweep-serve") for kind in
                            ("ServiceAccount", "Role", "RoleBinding", "PersistentVolumeClaim", "Deployment", "Service")} \
        | {("Secret", "kubesweep", "kubesweep-serve-tokens")}
    deployment = _deployment(objects)
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "kubesweep-serve"
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 1000
    (container,) = pod["containers"]
    assert container["image"] == IMAGE
    # the image's entrypoint is `python3 -S -m kubesweep`
    assert container["args"] == ["--project-dir", "/var/lib/kubesweep", "serve", "--host", "0.0.0.0", "--port", "8080",
                                 "--tokens", "/etc/kubesweep/tokens.yaml"]
    assert "command" not in container
    assert container["readinessProbe"]["httpGet"] == {"path": "/api/health", "port": "http"}
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/var/lib/kubesweep"]]["persistentVolumeClaim"] == {"claimName": "kubesweep-serve"}
    assert volumes[mounts["/etc/kubesweep"]]["secret"]["secretName"] == "kubesweep-serve-tokens"
    assert {"/work", "/tmp"} <= set(mounts)  # HOME and /tmp writable on a read-only root
    claim = objects["PersistentVolumeClaim", "kubesweep", "kubesweep-serve"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert "storageClassName" not in claim["spec"]  # the cluster's default class
    service = objects["Service", "kubesweep", "kubesweep-serve"]
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= \
        deployment["spec"]["template"]["metadata"]["labels"].items()


def test_the_service_account_gets_a_users_role_in_each_sweep_namespace_and_nothing_cluster_wide(tmp_path):
    user_rules = yaml.safe_load((ROOT / "roles" / "kubeconfig_user" / "defaults" / "main.yml").read_text())[
        "kubeconfig_user_rules"]
    objects = _objects(tmp_path, kubesweep_serve_sweep_namespaces=["kubesweep", "vision", "nlp"])
    assert not [k for k in objects if k[0].startswith("Cluster")]
    for ns in ("kubesweep", "vision", "nlp"):
        assert objects["Role", ns, "kubesweep-serve"]["rules"] == user_rules
        binding = objects["RoleBinding", ns, "kubesweep-serve"]
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "kubesweep-serve"}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "kubesweep-serve", "namespace": "kubesweep"}]
    # the server's own namespace is always among them, once
    objects = _objects(tmp_path, kubesweep_serve_sweep_namespaces=["vision"])
    assert {k[1] for k in objects if k[0] == "Role"} == {"kubesweep", "vision"}


def test_the_secret_holds_a_tokens_file_the_server_accepts_and_its_digest_rolls_the_pod(tmp_path):
    from kubesweep.serve import auth

    objects = _objects(tmp_path)
    secret = objects["Secret", "kubesweep", "kubesweep-serve-tokens"]
    text = base64.b64decode(secret["data"]["tokens.yaml"]).decode()
    path = tmp_path / "tokens.yaml"
    path.write_text(text)
    tokens = auth.load(path)
    assert tokens.match(ALICE["token"]).namespaces == frozenset(["vision"])
    assert tokens.match(ADMIN["token"]).namespaces is None
    digest = _deployment(objects)["spec"]["template"]["metadata"]["annotations"]["kubesweep.io/tokens-sha256"]
    assert digest == _deployment(_objects(tmp_path))["spec"]["template"]["metadata"]["annotations"][
        "kubesweep.io/tokens-sha256"]
    other = _objects(tmp_path, kubesweep_serve_tokens=[ADMIN])
    assert _deployment(other)["spec"]["template"]["metadata"]["annotations"]["kubesweep.io/tokens-sha256"] != digest


def test_the_image_defaults_to_the_reference_invoke_serve_image_wrote(tmp_path):
    reference = tmp_path / "cache" / "serve-image" / "reference"
    reference.parent.mkdir(parents=True)
    reference.write_text("localhost:5000/kubesweep/serve:feedfacecafe\n")
    proc = _run(tmp_path, {"kubesweep_serve_tokens": [ADMIN]})
    assert proc.returncode == 0, proc.stdout[-3000:]
    objects = json.loads((tmp_path / "objects.json").read_text())
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "localhost:5000/kubesweep/serve:feedfacecafe"


def test_a_tensorboard_image_is_passed_to_the_server_and_adds_tensorboards_rights_to_its_role(tmp_path):
    user_rules = yaml.safe_load((ROOT / "roles" / "kubeconfig_user" / "defaults" / "main.yml").read_text())[
        "kubeconfig_user_rules"]
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    reference = tmp_path / "cache" / "tensorboard" / "reference"
    reference.parent.mkdir(parents=True)
    reference.write_text("localhost:5000/kubesweep/tensorboard:0badc0ffee00\n")  # what `invoke serve-image` wrote
    objects = _objects(tmp_path, kubesweep_serve_sweep_namespaces=["kubesweep", "vision"])
    args = _deployment(objects)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[-2:] == ["--tensorboard-image", "localhost:5000/kubesweep/tensorboard:0badc0ffee00"]
    for ns in ("kubesweep", "vision"):
        rules = objects["Role", ns, "kubesweep-serve"]["rules"]
        assert rules == user_rules + defaults["kubesweep_serve_tensorboard_rules"]
        assert {"apiGroups": ["apps"], "resources": ["deployments"],
                "verbs": ["get", "list", "create", "update", "delete"]} in rules
    # none: no TensorBoard, and no rights on Deployments or Services
    objects = _objects(tmp_path, kubesweep_serve_tensorboard_image="")
    assert "--tensorboard-image" not in _deployment(objects)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert objects["Role", "kubesweep", "kubesweep-serve"]["rules"] == user_rules


def test_bad_settings_stop_the_role_naming_every_problem_and_no_token(tmp_path):
    short = "not-long-enough"
    proc = _run(tmp_path, {
        "kubesweep_serve_namespace": "kube-system",
        "kubesweep_serve_storage_size": "lots",
        "kubesweep_serve_run_as_user": 0,
        "kubesweep_serve_tokens": [ADMIN, {"name": "ops", "token": short, "tokn": 1}, {"name": "x", "token": ADMIN["token"]}],
    })
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert not (tmp_path / "objects.json").exists()
    for said in ("kubesweep_serve_namespace kube-system is a system namespace",
                 "kubesweep_serve_image is empty: build and push the image with `invoke serve-image`",
                 "kubesweep_serve_storage_size must be a Kubernetes quantity",
                 "kubesweep_serve_run_as_user must be a user id above 0",
                 "kubesweep_serve_tokens[1] (ops): name ops is also kubesweep_serve_tokens[0]'s",
                 "kubesweep_serve_tokens[1] (ops): unknown key(s) tokn",
                 "kubesweep_serve_tokens[1] (ops): token must be a string of at least 16 characters",
                 "kubesweep_serve_tokens[2] (x): token is also kubesweep_serve_tokens[0]'s",
                 "kubesweep_serve_tokens[2] (x): give namespaces", "nothing was applied"):
        assert said in " ".join(out.split()), out[-4000:]
    assert short not in out and ADMIN["token"] not in out


def test_without_tokens_the_secret_made_by_hand_is_needed(tmp_path):
    proc = _run(tmp_path, {"kubesweep_serve_image": IMAGE})
    out = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode != 0
    assert "no tokens: kubesweep_serve_tokens is empty and Secret kubesweep/kubesweep-serve-tokens does not exist" in out


def _filter():
    spec = importlib.util.spec_from_file_location("kubesweep_serve_filter", ROLE / "filter_plugins" / "kubesweep_serve.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SETTINGS = {"kubesweep_serve_namespace": "kubesweep", "kubesweep_serve_name": "kubesweep-serve",
            "kubesweep_serve_sweep_namespaces": ["kubesweep"], "kubesweep_serve_image": IMAGE,
            "kubesweep_serve_tokens": [], "kubesweep_serve_tokens_secret": "kubesweep-serve-tokens",
            "kubesweep_serve_storage_class": "", "kubesweep_serve_storage_size": "1Gi",
            "kubesweep_serve_run_as_user": 1000, "kubesweep_serve_service_port": 8080}


@pytest.mark.parametrize("secret, problem", [
    ({"data": {"tokens.yaml": "dG9rZW5zOiBbXQ=="}}, None),
    ({"data": {"other": "eA=="}}, "has no tokens.yaml key"),
    ({}, "does not exist"),
])
def test_a_secret_made_by_hand_must_hold_tokens_yaml(secret, problem):
    found = _filter().kubesweep_serve_problems(SETTINGS, secret)
    assert (found == []) if problem is None else (len(found) == 1 and problem in found[0]), found


@pytest.mark.parametrize("key, value, problem", [
    ("kubesweep_serve_storage_class", "local-path", None),
    ("kubesweep_serve_storage_class", "Local Path", "kubesweep_serve_storage_class must be a StorageClass name"),
    ("kubesweep_serve_sweep_namespaces", ["kubesweep", "kube-public"], "kubesweep_serve_sweep_namespaces[1] kube-public is a system namespace"),
    ("kubesweep_serve_sweep_namespaces", "vision", "kubesweep_serve_sweep_namespaces must be a list"),
    ("kubesweep_serve_image", "localhost:5000/x y", "kubesweep_serve_image must be an image reference"),
    ("kubesweep_serve_service_port", 70000, "kubesweep_serve_service_port must be a port number"),
    ("kubesweep_serve_tensorboard_image", "", None),
    ("kubesweep_serve_tensorboard_image", "localhost:5000/kubesweep/tensorboard:abc", None),
    ("kubesweep_serve_tensorboard_image", "--help", "kubesweep_serve_tensorboard_image must be an image reference"),
    ("kubesweep_serve_name", "Serve", "kubesweep_serve_name must be a DNS-1123 label"),
])
def test_each_setting_is_checked(key, value, problem):
    found = _filter().kubesweep_serve_problems({**SETTINGS, key: value}, {"data": {"tokens.yaml": "eA=="}})
    assert (found == []) if problem is None else (len(found) == 1 and problem in found[0]), found


def test_site_yml_runs_it_under_the_serve_tag_and_it_is_off_by_default():
    site = yaml.safe_load((ROOT / "site.yml").read_text())
    (entry,) = [p for p in site if p.get("ansible.builtin.import_playbook") == "playbooks/serve.yml"]
    assert entry["tags"] == ["serve"]
    (play,) = yaml.safe_load((ROOT / "playbooks" / "serve.yml").read_text())
    assert play["roles"] == [{"role": "kubesweep_serve", "when": "kubesweep_serve_enabled | default(false) | bool"}]
    for inventory in ("local", "single", "baremetal", "gcp"):
        settings = yaml.safe_load((ROOT / "inventory" / inventory / "group_vars" / "all" / "serve.yml").read_text())
        assert settings["kubesweep_serve_enabled"] is False
    assert yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())["kubesweep_serve_enabled"] is False
