"""A namespace-scoped kubeconfig for a named user (playbooks/kubeconfig-user.yml, role
kubeconfig_user): names are refused before anything reaches the API; on the real local cluster
(marker: cluster) the written kubeconfig creates Jobs in its namespace and nothing else, is
private, and a rerun changes nothing."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from kubesweep.local import cluster
from kubesweep.k8s import client as kube

from .conftest import INVENTORY, ROOT
from .fakeapi import serve

PLAYBOOK = "playbooks/kubeconfig-user.yml"
BIN = Path(sys.executable).parent


def cluster_inventory(tmp_path: Path) -> Path:
    """An inventory whose control-plane host does not exist (TEST-NET-1): the playbook must never
    contact it."""
    path = tmp_path / "inventory" / "hosts.yml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump({"all": {"children": {"kube_control_plane": {"hosts": {
        "cp-test": {"ansible_host": "192.0.2.10", "ansible_connection": "ssh"}}}}}}))
    return path


def run_playbook(extra_vars: dict, inventory: Path = INVENTORY) -> subprocess.CompletedProcess[str]:
    env = {"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
           "ANSIBLE_LOCALHOST_WARNING": "0", "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin", "HOME": str(Path.home()),
           "LANG": "C.UTF-8"}
    return subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inventory), str(ROOT / PLAYBOOK),
                           "-e", json.dumps(extra_vars)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    return " ".join((proc.stdout + proc.stderr).split())


# ------------------------------------------------------------------- no cluster needed

LABEL = "a DNS-1123 label (lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters)"


@pytest.mark.parametrize(("names", "phrases"), [
    pytest.param({}, ["kubeconfig_user_name is empty: name the user, e.g. -e kubeconfig_user_name=alice",
                      "kubeconfig_user_namespace is empty: name the namespace"], id="none-given"),
    pytest.param({"kubeconfig_user_name": "Alice", "kubeconfig_user_namespace": "team-a"},
                 [f'kubeconfig_user_name must be {LABEL}, e.g. alice (got "Alice")'], id="uppercase-user"),
    pytest.param({"kubeconfig_user_name": "alice", "kubeconfig_user_namespace": "team_a"},
                 [f'kubeconfig_user_namespace must be {LABEL}, e.g. team-a (got "team_a")'], id="underscore-namespace"),
    pytest.param({"kubeconfig_user_name": "../../etc/x", "kubeconfig_user_namespace": "team-a"},
                 ['kubeconfig_user_name must be', '(got "../../etc/x")'], id="path-in-user"),
    pytest.param({"kubeconfig_user_name": "a" * 64, "kubeconfig_user_namespace": "team-a"},
                 ["kubeconfig_user_name must be", "at most 63 characters"], id="user-too-long"),
    pytest.param({"kubeconfig_user_name": "alice-", "kubeconfig_user_namespace": "-team"},
                 ['(got "alice-")', '(got "-team")'], id="dash-at-the-ends"),
    pytest.param({"kubeconfig_user_name": "alice", "kubeconfig_user_namespace": "kube-system"},
                 ["kubeconfig_user_namespace kube-system is a system namespace (kube-*)"], id="system-namespace"),
    pytest.param({"kubeconfig_user_name": "alice", "kubeconfig_user_namespace": "team-a", "same_path": True},
                 ["kubeconfig_user_path is the admin kubeconfig"], id="would-overwrite-the-admin-kubeconfig"),
])
def test_bad_names_are_refused_before_anything_is_applied(tmp_path, names, phrases):
    """The admin kubeconfig points at a stand-in API server: a refusal must leave it without a
    single request, and write no kubeconfig."""
    seen: list[tuple[str, str]] = []

    def answer(method, path, body):
        seen.append((method, path))
        return 500, {"kind": "Status", "code": 500, "message": "no request was expected"}

    admin = tmp_path / "admin.conf"
    out = tmp_path / "kube" / "user.conf"
    names = dict(names)
    if names.pop("same_path", False):
        out = admin
    with serve(answer, admin):
        proc = run_playbook({**names, "kubeconfig_local_path": str(admin), "kubeconfig_user_path": str(out)},
                            cluster_inventory(tmp_path))
    text = one_line(proc)
    assert proc.returncode == 2, text
    assert "TASK [kubeconfig_user : Check the user and namespace names]" in text
    assert "failed=1" in proc.stdout and "changed=0" in proc.stdout and "unreachable=0" in proc.stdout, proc.stdout
    for phrase in phrases:
        assert phrase in text, f"{phrase!r} not in:\n{proc.stdout}{proc.stderr}"
    assert seen == [], f"the API was called after a refusal: {seen}"
    assert "TASK [kubeconfig_user : Create the" not in text
    assert not (tmp_path / "kube").exists()
    assert json.loads(admin.read_text())["kind"] == "Config"  # the admin kubeconfig is as it was


def test_good_names_pass_and_a_missing_admin_kubeconfig_is_named(tmp_path):
    proc = run_playbook({"kubeconfig_user_name": "alice", "kubeconfig_user_namespace": "team-a",
                         "kubeconfig_local_path": str(tmp_path / "missing.conf"),
                         "kubeconfig_user_path": str(tmp_path / "alice.conf")}, cluster_inventory(tmp_path))
    text = one_line(proc)
    assert proc.returncode == 2, text
    assert f"no admin kubeconfig at {tmp_path / 'missing.conf'}: run site.yml with this inventory first" in text
    # the argument spec and the name check passed, the admin kubeconfig was looked for on this
    # machine (the control-plane host in the inventory was not contacted), and that stopped it
    assert "ok=3" in proc.stdout and "failed=1" in proc.stdout and "unreachable=0" in proc.stdout, proc.stdout
    assert "[cp-test -> localhost]" in proc.stdout
    assert "TASK [kubeconfig_user : Stop without an admin kubeconfig]" in text
    assert not (tmp_path / "alice.conf").exists()


def test_default_paths_follow_the_inventory(tmp_path):
    """~/.kube/kubesweep-<inventory>-<user>.conf, next to the admin ~/.kube/kubesweep-<inventory>.conf."""
    play = tmp_path / "paths.yml"
    play.write_text(yaml.safe_dump([{
        "name": "Paths", "hosts": "kube_control_plane[0]", "gather_facts": False,
        "tasks": [{"name": "Defaults", "ansible.builtin.include_vars": str(ROOT / "roles/kubeconfig_user/defaults/main.yml")},
                  {"name": "Internals", "ansible.builtin.include_vars": str(ROOT / "roles/kubeconfig_user/vars/main.yml")},
                  {"name": "Dump", "delegate_to": "localhost", "become": False, "ansible.builtin.copy": {
                      "content": "{{ [kubeconfig_user_path, kubeconfig_user_admin_kubeconfig] | to_json }}",
                      "dest": str(tmp_path / "paths.json"), "mode": "0644"}}]}]))
    home = Path.home()
    for inventory in ("single", "baremetal"):
        proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(ROOT / "inventory" / inventory), str(play),
                               "-e", "kubeconfig_user_name=alice"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                              env={"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(home), "ANSIBLE_LOCALHOST_WARNING": "0",
                                   "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "LANG": "C.UTF-8"})
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert json.loads((tmp_path / "paths.json").read_text()) == [
            f"{home}/.kube/kubesweep-{inventory}-alice.conf", f"{home}/.kube/kubesweep-{inventory}.conf"]


def _namespace_answers(namespace: int, service_account: int = 200, create: int = 201):
    """A stand-in API server answering reads of namespace team-a and ServiceAccount trainer with
    these statuses (readyz: ready), recording what it is sent."""
    sent: list[tuple[str, str]] = []
    status = {"kind": "Status", "apiVersion": "v1", "status": "Failure"}

    def answer(method, path, body):
        sent.append((method, path))
        if path == "/readyz":
            return 200, {}
        code = {("GET", "/api/v1/namespaces/team-a"): namespace, ("POST", "/api/v1/namespaces"): create,
                ("GET", "/api/v1/namespaces/team-a/serviceaccounts/trainer"): service_account}[(method, path)]
        reply = {"kind": "Namespace", "metadata": {"name": "team-a"}} if code < 300 else {**status, "code": code}
        return code, reply

    return sent, answer


def test_a_sweep_creates_only_a_missing_namespace_and_asks_nothing_it_may_not(tmp_path):
    """kube.prepare_namespace: an existing namespace gets nothing; a missing one (404) is created;
    an identity that may not read namespaces (403, a kubeconfig scoped to one) is not stopped and
    creates nothing; no ServiceAccount, Role or RoleBinding is ever made."""
    config = tmp_path / "config"
    for code, made, requests in [(200, [], [("GET", "/api/v1/namespaces/team-a")]),
                                 (403, [], [("GET", "/api/v1/namespaces/team-a")]),
                                 (404, ["namespace/team-a"], [("GET", "/api/v1/namespaces/team-a"),
                                                              ("POST", "/api/v1/namespaces")])]:
        sent, answer = _namespace_answers(code)
        with serve(answer, config):
            assert kube.prepare_namespace(kube.clients(config), "team-a", None) == made, code
        assert [r for r in sent if r[1] != "/readyz"] == requests, code


def test_a_named_service_account_that_is_missing_stops_the_sweep_before_anything_is_created(tmp_path):
    from kubesweep.errors import KubesweepError

    config = tmp_path / "config"
    sent, answer = _namespace_answers(200, service_account=404)
    with serve(answer, config), pytest.raises(KubesweepError, match="serviceAccount 'trainer' does not exist in namespace team-a"):
        kube.prepare_namespace(kube.clients(config), "team-a", "trainer")
    sent, answer = _namespace_answers(404)
    with serve(answer, config), pytest.raises(KubesweepError, match="namespace team-a does not exist, so neither"):
        kube.prepare_namespace(kube.clients(config), "team-a", "trainer")
    assert ("POST", "/api/v1/namespaces") not in sent
    sent, answer = _namespace_answers(200, service_account=403)  # may not read it: taken at its word
    with serve(answer, config):
        assert kube.prepare_namespace(kube.clients(config), "team-a", "trainer") == []


def test_any_other_failure_is_an_error(tmp_path):
    from kubernetes.client.exceptions import ApiException

    config = tmp_path / "config"
    with serve(lambda m, p, b: (200, {}) if p == "/readyz" else (400, {"kind": "Status", "code": 400, "message": "bad"}),
               config):
        with pytest.raises(ApiException) as err:
            kube.prepare_namespace(kube.clients(config), "team-a", None)
    assert err.value.status == 400


# ------------------------------------------------------------------ the real cluster

NAMESPACE = "kubesweep-user-test"
OTHER = "kubesweep-user-other"


@pytest.fixture(scope="module")
def user_kubeconfig(local_cluster, tmp_path_factory):
    """playbooks/kubeconfig-user.yml run twice against the local cluster for user `alice`; the
    namespaces it and the test made are deleted afterwards."""
    from kubernetes import client, config

    from kubernetes.client.exceptions import ApiException

    admin = client.CoreV1Api(config.new_client_from_config(str(local_cluster["kubeconfig"])))
    try:
        admin.create_namespace({"metadata": {"name": OTHER}})
    except ApiException as exc:
        if exc.status != 409:  # left by an earlier run that stopped
            raise
    path = tmp_path_factory.mktemp("user") / "kube" / "alice.conf"  # the kube directory is made by the role
    extra = ["-e", json.dumps({"kubeconfig_user_name": "alice", "kubeconfig_user_namespace": NAMESPACE,
                               "kubeconfig_user_path": str(path)})]
    first = cluster.playbook(INVENTORY, PLAYBOOK, extra, echo=False)
    rerun = cluster.playbook(INVENTORY, PLAYBOOK, extra, echo=False) if first.ok else None
    yield {"path": path, "first": first, "rerun": rerun, "admin_kubeconfig": local_cluster["kubeconfig"]}
    for ns in (NAMESPACE, OTHER):
        try:
            admin.delete_namespace(ns)
        except ApiException as exc:
            if exc.status != 404:
                raise


def _user_api(path: Path):
    from kubernetes import client, config

    api = config.new_client_from_config(str(path))
    return client.CoreV1Api(api), client.BatchV1Api(api)


def _job(name: str) -> dict:
    # suspended: the test needs the API's answer, not a pod
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"suspend": True, "template": {"spec": {"restartPolicy": "Never", "containers": [
                {"name": "trial", "image": "localhost:5000/none:1", "command": ["true"]}]}}}}


@pytest.mark.cluster
def test_user_kubeconfig_is_written_private_and_a_rerun_changes_nothing(user_kubeconfig):
    first, rerun, path = user_kubeconfig["first"], user_kubeconfig["rerun"], user_kubeconfig["path"]
    assert first.ok, cluster.failure_excerpt(first.output)
    # one host in the recap, the first control-plane host the play names (its tasks ran here)
    assert list(first.recap) == ["ks-control-plane"] and first.changed > 0, first.recap
    assert rerun is not None and rerun.ok, cluster.failure_excerpt(rerun.output)
    assert list(rerun.recap) == ["ks-control-plane"] and rerun.changed == 0, rerun.output[-3000:]
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    config = yaml.safe_load(path.read_text())
    token = config["users"][0]["user"]["token"]
    assert token.startswith("eyJ")  # a JWT
    for run in (first, rerun):  # the token is never printed, as it is or as the Secret holds it
        assert token not in run.output and base64.b64encode(token.encode()).decode() not in run.output
    admin = yaml.safe_load(Path(user_kubeconfig["admin_kubeconfig"]).read_text())
    context = next(c["context"] for c in config["contexts"] if c["name"] == config["current-context"])
    assert context["namespace"] == NAMESPACE
    assert config["clusters"][0]["cluster"] == {
        "server": admin["clusters"][0]["cluster"]["server"],
        "certificate-authority-data": admin["clusters"][0]["cluster"]["certificate-authority-data"]}
    assert list(config["users"][0]["user"]) == ["token"]  # no client certificate of the admin's


@pytest.mark.cluster
def test_user_kubeconfig_works_in_its_namespace_and_nowhere_else(user_kubeconfig):
    from kubernetes.client.exceptions import ApiException

    assert user_kubeconfig["first"].ok, cluster.failure_excerpt(user_kubeconfig["first"].output)
    core, batch = _user_api(user_kubeconfig["path"])
    name = f"alice-{uuid.uuid4().hex[:6]}"
    created = batch.create_namespaced_job(NAMESPACE, _job(name))
    assert created.metadata.namespace == NAMESPACE
    assert name in [j.metadata.name for j in batch.list_namespaced_job(NAMESPACE).items]
    batch.patch_namespaced_job(name, NAMESPACE, {"metadata": {"annotations": {"kubesweep.io/cancelled": "now"}}})
    core.list_namespaced_pod(NAMESPACE)
    batch.delete_namespaced_job(name, NAMESPACE, propagation_policy="Background")

    refused = {
        "list Jobs in another namespace": lambda: batch.list_namespaced_job(OTHER),
        "create a Job in another namespace": lambda: batch.create_namespaced_job(OTHER, _job(name)),
        "list Jobs in all namespaces": lambda: batch.list_job_for_all_namespaces(),
        "list nodes": lambda: core.list_node(),
        "read Secrets in its namespace": lambda: core.list_namespaced_secret(NAMESPACE),
        "create a namespace": lambda: core.create_namespace({"metadata": {"name": f"x-{name}"}}),
    }
    for what, call in refused.items():
        with pytest.raises(ApiException) as err:
            call()
        assert err.value.status == 403, f"{what}: {err.value.status} {err.value.reason}"

    # what a sweep does first with this kubeconfig: it may not read the namespace, and creates nothing
    assert kube.prepare_namespace(kube.clients(user_kubeconfig["path"]), NAMESPACE, None) == []


def test_the_in_cluster_examples_role_is_the_playbooks_default_role():
    """examples/in-cluster/kubesweep-job.yaml grants its ServiceAccount what a user's kubeconfig
    gets (roles/kubeconfig_user/defaults/main.yml): the one minimal Role, written twice."""
    defaults = yaml.safe_load((ROOT / "roles" / "kubeconfig_user" / "defaults" / "main.yml").read_text())
    docs = list(yaml.safe_load_all((ROOT / "examples" / "in-cluster" / "kubesweep-job.yaml").read_text()))
    (role,) = [d for d in docs if d and d["kind"] == "Role"]
    assert role["rules"] == defaults["kubeconfig_user_rules"]
