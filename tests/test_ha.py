"""An HA control plane for real: three control-plane node containers (stacked etcd) and a worker
from site.yml. Opt-in (KUBESWEEP_HA=1; about 5 minutes and 3 more kubelets, etcds and API
servers on this machine): it needs the local cluster to be down, since it brings up its own
registry host on the same port. Run (after `invoke artifacts`):
KUBESWEEP_HA=1 python -m pytest -q tests/test_ha.py"""

from __future__ import annotations

import os
import subprocess
import time

import pytest
import yaml

from kubesweep.local import cluster
from kubesweep.local import nodes

from .conftest import INVENTORY

pytestmark = [pytest.mark.cluster,
              pytest.mark.skipif(not os.environ.get("KUBESWEEP_HA"), reason="opt-in: KUBESWEEP_HA=1")]

CONTROL_PLANES = ["ks-ha-cp-1", "ks-ha-cp-2", "ks-ha-cp-3"]
WORKER = "ks-ha-worker-1"


@pytest.fixture(scope="module")
def ha(tmp_path_factory):
    inv = tmp_path_factory.mktemp("inv") / "ha"
    inv.mkdir()
    ssh = {name: {"ansible_host": "127.0.0.1", "ansible_port": 2231 + i}
           for i, name in enumerate([*CONTROL_PLANES, WORKER])}  # reached over SSH like the other clusters
    hosts = {"all": {"children": {
        "k8s_cluster": {"children": {"kube_control_plane": {"hosts": {n: ssh[n] for n in CONTROL_PLANES}},
                                     "kube_node": {"hosts": {WORKER: ssh[WORKER]}}}},
        "registry": {"hosts": {CONTROL_PLANES[0]: None}}}}}
    (inv / "hosts.yml").write_text(yaml.safe_dump(hosts))
    (inv / "group_vars").symlink_to(INVENTORY / "group_vars")
    if set(nodes.existing()) - {*CONTROL_PLANES, WORKER}:
        pytest.fail(f"other node containers are running ({nodes.existing()}): `invoke cluster --down` first")
    try:
        run = cluster.up(inv, echo=False)
        yield inv, run
    finally:
        cluster.down()


def used_memory_mib() -> int:
    info = dict(line.split(":", 1) for line in open("/proc/meminfo"))
    kib = lambda key: int(info[key].split()[0])  # noqa: E731
    return (kib("MemTotal") - kib("MemAvailable")) // 1024


def test_three_control_planes_with_stacked_etcd_and_a_worker(ha):
    from kubernetes import client, config

    inv, run = ha
    api = client.CoreV1Api(config.new_client_from_config(str(cluster.kubeconfig_path(inv))))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        items = api.list_node().items
        ready = {n.metadata.name for n in items
                 if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])}
        if ready == {*CONTROL_PLANES, WORKER}:
            break
        time.sleep(2)
    assert ready == {*CONTROL_PLANES, WORKER}
    for cp in CONTROL_PLANES:
        for component in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"):
            pod = api.read_namespaced_pod(f"{component}-{cp}", "kube-system")
            assert pod.status.phase == "Running", (component, cp)
    members = subprocess.run(
        ["docker", "exec", CONTROL_PLANES[0], "sh", "-c",
         "crictl exec $(crictl ps -q --name etcd) etcdctl --endpoints https://127.0.0.1:2379 "
         "--cacert /etc/kubernetes/pki/etcd/ca.crt --cert /etc/kubernetes/pki/etcd/server.crt "
         "--key /etc/kubernetes/pki/etcd/server.key member list"],
        capture_output=True, text=True)
    assert members.returncode == 0 and sorted(line.split(", ")[2] for line in members.stdout.splitlines()) == CONTROL_PLANES
    rerun = cluster.playbook(inv, echo=False)
    assert rerun.ok and not {h: r["changed"] for h, r in rerun.recap.items() if r["changed"]}, rerun.recap
    print(f"\nHA: site.yml {run.seconds:.0f}s, rerun {rerun.seconds:.0f}s; memory in use on this machine "
          f"{used_memory_mib()} MiB with 4 nodes up")


def test_a_changed_setting_reaches_every_control_plane_host(ha):
    """A rerun with a new controller-manager setting regenerates the first host (kubeadm init
    phase) and then the hosts that joined earlier (kubeadm upgrade node phase control-plane, from
    the stored configuration); a rerun with the old value puts all three back, and the one after
    changes nothing."""
    from kubernetes import client, config

    inv, _ = ha
    api = client.CoreV1Api(config.new_client_from_config(str(cluster.kubeconfig_path(inv))))

    def wait_flags(qps: int) -> None:
        want = f"--kube-api-qps={qps}"
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            flags = {}
            for cp in CONTROL_PLANES:
                try:
                    pod = api.read_namespaced_pod(f"kube-controller-manager-{cp}", "kube-system")
                except client.ApiException:
                    continue  # the mirror pod is being replaced
                if pod.status.phase == "Running":
                    flags[cp] = pod.spec.containers[0].command
            if len(flags) == 3 and all(want in f for f in flags.values()):
                return
            time.sleep(3)
        raise AssertionError(f"not every control plane runs with {want}: {flags}")

    try:
        changed = cluster.playbook(inv, extra=["-e", "control_plane_controllers_api_qps=402"], echo=False)
        assert changed.ok, changed.output[-3000:]
        task = changed.output.split("Regenerate this host's control plane from the stored configuration", 1)[-1]
        task = task.split("TASK [", 1)[0]  # the output of that task alone
        assert all(f"changed: [{cp}]" in task for cp in CONTROL_PLANES[1:]), task
        wait_flags(402)
    finally:
        restore = cluster.playbook(inv, echo=False)
        assert restore.ok, restore.output[-3000:]
    wait_flags(400)
    rerun = cluster.playbook(inv, echo=False)
    assert rerun.ok and not {h: r["changed"] for h, r in rerun.recap.items() if r["changed"]}, rerun.recap
