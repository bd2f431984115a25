"""Ops on a running cluster with real node containers: add a node by rerun, pod traffic between
nodes over flannel's routes, remove a node, reset a host (marker: cluster).

The tests run in order on one extra host, ks-worker-2, which exists only here."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from kubesweep.local import cluster
from kubesweep.local import image
from kubesweep.local import nodes

from .conftest import EXAMPLES, INVENTORY

pytestmark = pytest.mark.cluster

NEW = "ks-worker-2"
OLD = ["ks-control-plane", "ks-gpu-1", "ks-worker-1"]


@pytest.fixture(scope="module")
def bigger(local_cluster, tmp_path_factory):
    """inventory/local plus ks-worker-2 under kube_node (same group_vars, same kubeconfig name)."""
    import yaml

    inv = tmp_path_factory.mktemp("inv") / INVENTORY.name
    inv.mkdir()
    hosts = yaml.safe_load((INVENTORY / "hosts.yml").read_text())
    hosts["all"]["children"]["k8s_cluster"]["children"]["kube_node"]["hosts"][NEW] = {
        "ansible_host": "127.0.0.1", "ansible_port": 2224}
    (inv / "hosts.yml").write_text(yaml.safe_dump(hosts))
    (inv / "group_vars").symlink_to(INVENTORY / "group_vars")
    assert cluster.kubeconfig_path(inv) == local_cluster["kubeconfig"]
    yield inv
    nodes.down([NEW])


def in_node(name: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", "exec", name, *argv], capture_output=True, text=True)


def ready(api, name: str) -> bool:
    try:
        node = api["core"].read_node(name)
    except Exception:  # noqa: BLE001 - not there (yet)
        return False
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])


def _with_new_host_vars(bigger, tmp_path, **hostvars):
    """The bigger inventory with ``hostvars`` set on the new host only (the other hosts, the one
    scale.yml gathers facts from included, keep theirs); same directory name, so the same key."""
    import yaml

    inv = tmp_path / f"variant-{len(list(tmp_path.iterdir()))}" / bigger.name
    inv.mkdir(parents=True)
    hosts = yaml.safe_load((bigger / "hosts.yml").read_text())
    hosts["all"]["children"]["k8s_cluster"]["children"]["kube_node"]["hosts"][NEW].update(hostvars)
    (inv / "hosts.yml").write_text(yaml.safe_dump(hosts))
    (inv / "group_vars").symlink_to((bigger / "group_vars").resolve())
    return inv


def _said(run) -> str:
    return " ".join(run.output.split())  # the callback folds long messages over lines


def test_a_host_with_a_wrong_port_key_or_sudo_fails_alone_with_its_name_and_cause(bigger, api, tmp_path):
    """Bad input on one host: the play stops there, naming the host and the cause; the hosts that
    were already right are not touched (scale.yml --limit), and the next test's run converges.
    The new host is first made like a server (local_nodes.yml, limited to it), then treated as one
    that exists already (local_node false): nothing puts its port, key or sudo right back."""
    made = cluster.playbook(bigger, "playbooks/local_nodes.yml", ["--limit", NEW], echo=False)
    assert made.ok and set(made.recap) == {NEW}, cluster.failure_excerpt(made.output)
    assert NEW in nodes.existing()

    wrong_port = cluster.playbook(_with_new_host_vars(bigger, tmp_path, local_node=False, ansible_port=2299),
                                  "playbooks/scale.yml", ["--limit", NEW], echo=False)
    assert not wrong_port.ok and wrong_port.recap[NEW]["unreachable"] == 1, wrong_port.recap
    assert f"fatal: [{NEW}]: UNREACHABLE!" in _said(wrong_port) and "port 2299: Connection refused" in _said(wrong_port)

    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    wrong_key = cluster.playbook(_with_new_host_vars(bigger, tmp_path, local_node=False,
                                                     ansible_ssh_private_key_file=str(other)),
                                 "playbooks/scale.yml", ["--limit", NEW], echo=False)
    assert not wrong_key.ok and wrong_key.recap[NEW]["unreachable"] == 1, wrong_key.recap
    assert f"fatal: [{NEW}]: UNREACHABLE!" in _said(wrong_key) and "Permission denied (publickey)" in _said(wrong_key)

    in_node(NEW, "rm", "/etc/sudoers.d/kubesweep")
    no_sudo = cluster.playbook(_with_new_host_vars(bigger, tmp_path, local_node=False),
                               "playbooks/scale.yml", ["--limit", NEW], echo=False)
    assert not no_sudo.ok and no_sudo.recap[NEW]["failed"] == 1, no_sudo.recap
    assert f"fatal: [{NEW}]" in _said(no_sudo) and "Missing sudo password" in _said(no_sudo), no_sudo.output[-2000:]
    for run in (wrong_port, wrong_key, no_sudo):
        assert set(run.recap) <= {NEW, "localhost"}, run.recap  # no other host was touched

    # none of the three runs touched the cluster (no node joined); the fix, the user back in
    # sudoers, is the node_login role's, which the next test's scale.yml runs first
    assert NEW not in [n.metadata.name for n in api["core"].list_node().items]


def test_a_new_node_joins_with_scale_and_a_full_rerun_changes_nothing(bigger, api):
    scale = cluster.playbook(bigger, "playbooks/scale.yml", ["--limit", NEW], echo=False)
    assert scale.ok, cluster.failure_excerpt(scale.output)
    assert set(scale.recap) <= {NEW, "localhost"}, scale.recap  # nothing ran on the other hosts
    assert ready(api, NEW)
    assert in_node(NEW, "test", "-f", "/etc/sudoers.d/kubesweep").returncode == 0  # put back by node_login
    rerun = cluster.playbook(bigger, echo=False)
    assert rerun.ok, cluster.failure_excerpt(rerun.output)
    changed = {h: r["changed"] for h, r in rerun.recap.items() if r["changed"]}
    assert set(rerun.recap) >= {*OLD, NEW} and changed == {}, changed
    print(f"\nscale.yml for one node {scale.seconds:.0f}s; site.yml rerun on 4 hosts {rerun.seconds:.0f}s")


def _pod(name: str, node: str, image_ref: str, command: list[str]) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "fleet-test"}},
            "spec": {"nodeName": node, "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "main", "image": image_ref, "command": command}]}}


def _wait_pod(api, name: str, phases: tuple[str, ...], timeout: float = 120) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pod = api["core"].read_namespaced_pod(name, "default")
        if pod.status.phase in phases:
            return pod
        time.sleep(1)
    raise AssertionError(f"pod {name} is {pod.status.phase}, not {phases}, after {timeout:.0f}s")


def test_pods_on_different_nodes_reach_each_other_over_flannels_routes(bigger, api):
    ref = image.ensure(EXAMPLES, "kubesweep/mnist", build_args={"BASE": "kubesweep/python-base:bookworm"}).reference
    core = api["core"]
    core.create_namespaced_pod("default", _pod("fleet-server", NEW, ref, ["python3", "-m", "http.server", "8080"]))
    server = _wait_pod(api, "fleet-server", ("Running",))
    fetch = f"import urllib.request; print(urllib.request.urlopen('http://{server.status.pod_ip}:8080/', timeout=10).status)"
    core.create_namespaced_pod("default", _pod("fleet-client", "ks-worker-1", ref, ["python3", "-c", fetch]))
    client = _wait_pod(api, "fleet-client", ("Succeeded", "Failed"))
    log = core.read_namespaced_pod_log("fleet-client", "default")
    assert client.status.phase == "Succeeded" and log.strip() == "200", log
    podcidr = core.read_node(NEW).spec.pod_cidr
    routes = json.loads(in_node("ks-worker-1", "ip", "-4", "-json", "route", "show").stdout)
    assert any(r["dst"] == podcidr for r in routes), routes
    core.delete_namespaced_pod("fleet-client", "default", grace_period_seconds=0)


def test_remove_node_drains_deletes_and_resets_it(bigger, api):
    podcidr = api["core"].read_node(NEW).spec.pod_cidr
    assert "table ip kube-proxy" in in_node(NEW, "nft", "list", "tables").stdout  # kube-proxy's nftables mode
    run = cluster.playbook(bigger, "playbooks/remove-node.yml", ["-e", f"node={NEW}", "-e", "node_reset_flush_iptables=true"],
                           echo=False)
    assert run.ok, cluster.failure_excerpt(run.output)
    names = [n.metadata.name for n in api["core"].list_node().items]
    assert NEW not in names and set(OLD) <= set(names)
    # the bare server pod on it was drained away
    assert not api["core"].list_namespaced_pod("default", label_selector="app=fleet-test").items
    assert in_node(NEW, "systemctl", "is-active", "kubelet").stdout.strip() != "active"
    for path in ("/etc/kubernetes", "/var/lib/kubelet", "/usr/local/bin/kubelet", "/etc/cni/net.d"):
        assert in_node(NEW, "test", "-e", path).returncode != 0, f"{path} is still on {NEW}"
    assert in_node(NEW, "ip", "link", "show", "cni0").returncode != 0
    assert "kube-proxy" not in in_node(NEW, "nft", "list", "tables").stdout  # its rules went with the flush
    # flannel on the remaining nodes forgets the deleted node's route
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        routes = json.loads(in_node("ks-worker-1", "ip", "-4", "-json", "route", "show").stdout)
        if not any(r["dst"] == podcidr for r in routes):
            break
        time.sleep(1)
    assert not any(r["dst"] == podcidr for r in routes), routes


def test_reset_asks_for_confirmation_and_leaves_a_clean_host_unchanged(bigger):
    refused = cluster.playbook(bigger, "playbooks/reset.yml", ["--limit", NEW], echo=False)
    assert not refused.ok and "reset_confirm=yes" in refused.output
    again = cluster.playbook(bigger, "playbooks/reset.yml", ["--limit", NEW, "-e", "reset_confirm=yes"], echo=False)
    assert again.ok, cluster.failure_excerpt(again.output)
    assert again.recap[NEW]["changed"] == 0, again.recap
