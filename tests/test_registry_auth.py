"""An authenticated TLS registry end to end (marker: cluster): the registry role with registry_tls
and htpasswd users on an extra host, the nodes trusting its CA through the containerd role,
`docker login` and `kubesweep image` pushing to it, the existence check with and without
credentials, a wrong password as one line, and a sweep whose trials pull through the pull secret
`--pull-secret` makes.

The tests run in order on one extra host, ks-registry, which exists only here; the module's
fixture removes it and everything the tests put on the nodes."""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from kubesweep.local import cluster
from kubesweep.local import nodes
from kubesweep.local import registry
from kubesweep.plan import job as manifest

from .conftest import EXAMPLES, INVENTORY

pytestmark = pytest.mark.cluster

NEW = "ks-registry"
SSH_PORT = 2225
PORT = 5443
USER = "sweeper"
NAMESPACE = "ks-registry-auth"
SECRET = "regcred"
OLD = ["ks-control-plane", "ks-gpu-1", "ks-worker-1"]
CERTS_D = Path("/etc/docker/certs.d")


def _in_node(name: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", "exec", name, *argv], capture_output=True, text=True)


@pytest.fixture(scope="module")
def tls(local_cluster, tmp_path_factory):
    """inventory/local plus ks-registry in group `registry` (TLS, its own port and storage), the
    htpasswd user's password in its host_vars file (0600), the CA fetched under the test's
    directory, and a DOCKER_CONFIG of the module's own. Afterwards: the namespace, the image on
    the nodes and in docker, the nodes' hosts.toml and CA for the registry, docker's certs.d
    entry and the host container are removed."""
    import yaml

    base = tmp_path_factory.mktemp("registry-auth")
    inv = base / "inv" / INVENTORY.name  # same directory name: the same SSH key and kubeconfig
    inv.mkdir(parents=True)
    hosts = yaml.safe_load((INVENTORY / "hosts.yml").read_text())
    hosts["all"]["children"]["registry"]["hosts"][NEW] = {
        "ansible_host": "127.0.0.1", "ansible_port": SSH_PORT, "registry_port": PORT, "registry_tls": True,
        "local_node_registry_port": PORT, "local_node_registry_data_dir": str(base / "registry-data")}
    (inv / "hosts.yml").write_text(yaml.safe_dump(hosts, sort_keys=False))
    (inv / "group_vars").symlink_to(INVENTORY / "group_vars")
    password = secrets.token_urlsafe(18)  # in the host's vars file, as a vault would give it
    (inv / "host_vars").mkdir()
    users = inv / "host_vars" / f"{NEW}.yml"
    users.touch(mode=0o600)
    users.write_text(yaml.safe_dump({"registry_htpasswd_users": [{"name": USER, "password": password}]}))
    docker_config = base / "docker"
    docker_config.mkdir()
    state = {"inv": inv, "password": password, "ca_dir": base / "ca", "docker_config": docker_config,
             "extra": ["-e", f"registry_ca_local_dir={base / 'ca'}"], "address": None,
             "images": [], "made_certs_d": not CERTS_D.exists()}
    saved = os.environ.get("DOCKER_CONFIG")
    os.environ["DOCKER_CONFIG"] = str(docker_config)
    try:
        yield state
    finally:
        if saved is None:
            os.environ.pop("DOCKER_CONFIG", None)
        else:
            os.environ["DOCKER_CONFIG"] = saved
        subprocess.run(["kubectl", "--kubeconfig", str(local_cluster["kubeconfig"]), "delete", "namespace", NAMESPACE,
                        "--ignore-not-found", "--wait=true", "--timeout=120s"], capture_output=True)
        address = state["address"]
        if address:
            for node in OLD:
                for ref in state["images"]:
                    _in_node(node, "crictl", "rmi", ref)
                _in_node(node, "rm", "-rf", f"/etc/containerd/certs.d/{address}")
            for ref in state["images"]:
                subprocess.run(["docker", "rmi", ref], capture_output=True)
            shutil.rmtree(CERTS_D / address, ignore_errors=True)
            if state["made_certs_d"] and CERTS_D.is_dir() and not any(CERTS_D.iterdir()):
                CERTS_D.rmdir()
        nodes.down([NEW])


def _address(name: str) -> str:
    out = subprocess.run(["docker", "inspect", "-f", '{{(index .NetworkSettings.Networks "kubesweep").IPAddress}}', name],
                         capture_output=True, text=True, check=True).stdout.strip()
    return f"{out}:{PORT}"


def _grid(path: Path, address: str, *, name: str = "regauth", optimizers: tuple[str, ...] = ("sgd",)) -> Path:
    path.write_text(textwrap.dedent(f"""\
        name: {name}
        namespace: {NAMESPACE}
        image: {address}/kubesweep/mnist
        build: {{context: {EXAMPLES}, args: {{BASE: "kubesweep/python-base:bookworm"}}}}
        command: [python3, /app/train.py, "${{epochs}}", "${{optimizer}}", "0.2"]
        parameters: {json.dumps({"epochs": [1], "optimizer": list(optimizers)})}
        batchSize: 2
        maxFailedTrials: 0
        objective: {{metric: Test accuracy, direction: maximize}}
        resources: {{cpu: 250m, memory: 256Mi}}
        activeDeadlineSeconds: 300
        """))
    return path


def _kubesweep(*args: str, env: dict[str, str] | None = None, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kubesweep.cli.app", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def test_the_registry_role_serves_tls_with_htpasswd_and_every_node_trusts_its_ca(tls):
    inv = tls["inv"]
    made = cluster.playbook(inv, "playbooks/local_nodes.yml", ["--limit", NEW], echo=False)
    assert made.ok and set(made.recap) == {NEW}, cluster.failure_excerpt(made.output)
    address = tls["address"] = _address(NEW)

    started = time.monotonic()
    serve = cluster.playbook(inv, "playbooks/cluster.yml", ["--tags", "registry", "--limit", NEW, *tls["extra"]], echo=False)
    assert serve.ok and set(serve.recap) == {NEW}, cluster.failure_excerpt(serve.output)
    trust = cluster.playbook(inv, "playbooks/cluster.yml", ["--tags", "container-runtime", *tls["extra"]], echo=False)
    assert trust.ok, cluster.failure_excerpt(trust.output)
    # the nodes changed only for the new registry: its directory, its CA and its hosts.toml
    assert {h: r["changed"] for h, r in trust.recap.items() if r["changed"]} == {node: 3 for node in OLD}, trust.recap
    first = time.monotonic() - started
    for run in (serve, trust):
        assert tls["password"] not in run.output

    # a rerun of both changes nothing: keys, CA, certificate, hashes and the nodes' files are kept
    again = [cluster.playbook(inv, "playbooks/cluster.yml", args, echo=False)
             for args in (["--tags", "registry", "--limit", NEW, *tls["extra"]], ["--tags", "container-runtime", *tls["extra"]])]
    for run in again:
        assert run.ok and run.changed == 0, {h: r for h, r in run.recap.items() if r["changed"]}
        assert tls["password"] not in run.output

    ca = tls["ca_dir"] / address / "ca.crt"
    assert ca.read_text().startswith("-----BEGIN CERTIFICATE-----")
    for node in OLD:
        toml = _in_node(node, "cat", f"/etc/containerd/certs.d/{address}/hosts.toml").stdout
        assert f'server = "https://{address}"' in toml and f'ca = "/etc/containerd/certs.d/{address}/ca.crt"' in toml
        assert _in_node(node, "cat", f"/etc/containerd/certs.d/{address}/ca.crt").stdout == ca.read_text()
    # the registry itself: https with that CA, and 401 without credentials
    certs = tls["ca_dir"]
    with pytest.raises(registry.AuthError, match="wants credentials"):
        registry.Client(address, None, certs_dirs=(certs,)).manifest_exists("kubesweep/mnist", "x")
    right = registry.Credentials(USER, tls["password"], source="test")
    assert registry.Client(address, right, certs_dirs=(certs,)).request("/v2/").status == 200
    print(f"\nTLS registry with htpasswd and the nodes' trust in {first:.0f}s; reruns "
          f"{again[0].seconds:.0f}s + {again[1].seconds:.0f}s")


def test_docker_login_then_kubesweep_image_pushes_and_the_check_authenticates(tls, tmp_path):
    address = tls["address"]
    assert address, "the previous test made the registry"
    (CERTS_D / address).mkdir(parents=True, exist_ok=True)  # docker trusts the registry's CA
    shutil.copyfile(tls["ca_dir"] / address / "ca.crt", CERTS_D / address / "ca.crt")
    login = subprocess.run(["docker", "login", address, "-u", USER, "--password-stdin"], input=tls["password"],
                           capture_output=True, text=True)
    assert login.returncode == 0, login.stderr
    grid = _grid(tmp_path / "grid.yaml", address)
    from kubesweep import sweep

    ref = sweep.plan(str(grid)).image
    tag = ref.rsplit(":", 1)[1]
    tls["images"].append(ref)

    # the existence check with the login's credentials: not there yet
    assert registry.manifest_exists(address, "kubesweep/mnist", tag) is False
    # without credentials: one line saying to log in
    empty = tmp_path / "no-login"
    empty.mkdir()
    with pytest.raises(registry.AuthError) as err:
        registry.manifest_exists(address, "kubesweep/mnist", tag, config_dir=empty)
    assert "\n" not in str(err.value) and f"`docker login {address}`" in str(err.value)

    started = time.monotonic()
    pushed = _kubesweep("image", str(grid))
    push_s = time.monotonic() - started
    assert pushed.returncode == 0 and f"image {ref}: built and pushed" in pushed.stdout, pushed.stdout + pushed.stderr
    assert registry.manifest_exists(address, "kubesweep/mnist", tag) is True
    started = time.monotonic()
    again = _kubesweep("image", str(grid))
    check_s = time.monotonic() - started
    assert again.returncode == 0 and f"image {ref}: already in the registry" in again.stdout, again.stdout + again.stderr

    # a wrong password: exit 2, one line naming the registry and `docker login`, no secret
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "config.json").write_text(json.dumps(
        {"auths": {address: {"auth": base64.b64encode(f"{USER}:not-the-password".encode()).decode()}}}))
    refused = _kubesweep("image", str(grid), env={"DOCKER_CONFIG": str(wrong)})
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode == 2 and len(lines) == 1, refused.stderr
    assert f"registry {address} refused the user {USER}" in lines[0] and f"`docker login {address}` again" in lines[0]
    assert "not-the-password" not in refused.stdout + refused.stderr
    print(f"\nkubesweep image: build + push {push_s:.1f}s, authenticated 'already pushed' check {check_s:.1f}s")


def test_a_sweep_pulls_from_the_tls_registry_through_the_pull_secret_it_makes(tls, local_cluster, api, tmp_path):
    address = tls["address"]
    assert tls["images"], "the previous test pushed the image"
    ref = tls["images"][0]
    grid = _grid(tmp_path / "grid.yaml", address, optimizers=("sgd", "adam"))
    project = tmp_path / "project"
    args = ["--kubeconfig", str(local_cluster["kubeconfig"]), "--project-dir", str(project), "sweep", str(grid),
            "--pull-secret", SECRET]
    started = time.monotonic()
    run = _kubesweep(*args)
    seconds = time.monotonic() - started
    out = run.stdout + run.stderr
    assert run.returncode == 0 and "regauth: 2 succeeded, 0 failed" in run.stdout, out[-3000:]
    assert f"pull secret {SECRET} in namespace {NAMESPACE}: created from the docker credentials for {address}" in run.stderr

    secret = api["core"].read_namespaced_secret(SECRET, NAMESPACE)
    assert secret.type == "kubernetes.io/dockerconfigjson"
    auths = json.loads(base64.b64decode(secret.data[".dockerconfigjson"]))["auths"]
    assert auths[address]["username"] == USER and auths[address]["password"] == tls["password"]
    pods = api["core"].list_namespaced_pod(NAMESPACE, label_selector=f"{manifest.L_EXPERIMENT}=regauth").items
    assert len(pods) == 2
    for pod in pods:
        assert [s.name for s in pod.spec.image_pull_secrets] == [SECRET] and pod.spec.containers[0].image == ref
        assert pod.status.phase == "Succeeded"
    # nothing secret in what the sweep wrote or said
    written = "".join(p.read_text(errors="replace") for p in project.rglob("*") if p.is_file())
    for secret_text in (tls["password"], base64.b64encode(f"{USER}:{tls['password']}".encode()).decode()):
        assert secret_text not in written and secret_text not in out

    # the rerun finds everything done; the Secret exists and is patched (to the same credentials)
    rerun = _kubesweep(*args)
    assert rerun.returncode == 0 and f"pull secret {SECRET} in namespace {NAMESPACE}: updated" in rerun.stderr, \
        rerun.stdout + rerun.stderr

    # without the secret the kubelet is refused: the registry really asks for the login
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "no-secret"},
           "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": ref, "imagePullPolicy": "Always",
                                                              "command": ["true"]}]}}
    api["core"].create_namespaced_pod(NAMESPACE, pod)
    deadline, waiting = time.monotonic() + 90, None
    while time.monotonic() < deadline:
        statuses = api["core"].read_namespaced_pod("no-secret", NAMESPACE).status.container_statuses or []
        waiting = statuses[0].state.waiting if statuses and statuses[0].state else None
        if waiting and waiting.reason in ("ErrImagePull", "ImagePullBackOff") and waiting.message:
            break
        time.sleep(1)
    assert waiting is not None and "401 Unauthorized" in (waiting.message or ""), waiting
    print(f"\nsweep of 2 trials pulling from the TLS registry with --pull-secret: {seconds:.0f}s")
