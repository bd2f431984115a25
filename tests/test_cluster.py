"""The real local cluster, from our own playbooks, offline (marker: cluster).

One session brings up inventory/local (a control plane and a worker in node containers), runs
real workloads on it, checks idempotence, adds 100 kwok GPU nodes, and tears everything down,
checking that nothing is left behind.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid

import pytest

from kubesweep.local import cluster
from kubesweep.local.paths import checkout
from kubesweep.local import fake_nodes
from kubesweep.local import image
from kubesweep.local import nodes
from kubesweep.run.metrics import read_metric
from kubesweep.k8s.versions import KUBERNETES_VERSION, pins

from .conftest import EXAMPLES, INVENTORY

pytestmark = pytest.mark.cluster


def _ready(node) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])


NODES = ["ks-control-plane", "ks-gpu-1", "ks-worker-1"]


def test_three_nodes_ready_at_the_pinned_version_and_the_gpu_worker_is_marked(api):
    deadline = time.monotonic() + 120
    while True:
        items = [n for n in api["core"].list_node().items if fake_nodes.LABEL not in (n.metadata.labels or {})]
        if len(items) == len(NODES) and all(_ready(n) for n in items) or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert sorted(n.metadata.name for n in items) == NODES
    assert all(_ready(n) for n in items)
    assert {n.status.node_info.kubelet_version for n in items} == {f"v{KUBERNETES_VERSION}"}
    gpu = next(n for n in items if n.metadata.name == "ks-gpu-1")
    assert gpu.metadata.labels.get("nvidia.com/gpu.present") == "true"
    assert [(t.key, t.value, t.effect) for t in gpu.spec.taints or []] == [("nvidia.com/gpu", "present", "NoSchedule")]
    worker = next(n for n in items if n.metadata.name == "ks-worker-1")
    assert "nvidia.com/gpu.present" not in worker.metadata.labels and not worker.spec.taints


def test_gpu_worker_gets_the_device_plugin_and_the_driver_roles_skip_it_without_a_gpu(api, local_cluster):
    out = local_cluster["first_run"].output
    assert "no NVIDIA GPU on ks-gpu-1: skipping the driver" in out
    assert "no NVIDIA GPU on ks-gpu-1: skipping the container toolkit" in out
    pods = api["core"].list_namespaced_pod("kube-system", label_selector="name=nvidia-device-plugin-ds").items
    assert [(p.spec.node_name, p.status.phase) for p in pods] == [("ks-gpu-1", "Running")]  # GPU workers only
    log = api["core"].read_namespaced_pod_log(pods[0].metadata.name, "kube-system")
    assert "No devices found" in log, log[-2000:]
    # no GPU here: the plugin registers nothing, so no nvidia.com/gpu capacity appears
    assert "nvidia.com/gpu" not in (api["core"].read_node("ks-gpu-1").status.capacity or {})


def test_kubeconfig_is_private(local_cluster):
    assert local_cluster["kubeconfig"].stat().st_mode & 0o777 == 0o600


def test_second_run_changes_nothing(local_cluster):
    rerun = cluster.playbook(INVENTORY, echo=False)
    assert rerun.ok, rerun.output[-3000:]
    assert set(rerun.recap) >= set(NODES)
    changed = {h: r["changed"] for h, r in rerun.recap.items() if r["changed"]}
    assert changed == {}, f"rerun changed something: {changed}"
    first = local_cluster["first_run"].seconds
    print(f"\nfirst site.yml {first:.0f}s, rerun {rerun.seconds:.0f}s ({rerun.seconds / first:.0%} of the first)")


def _controller_flags(api) -> list[str]:
    pods = api["core"].list_namespaced_pod("kube-system", label_selector="component=kube-controller-manager").items
    return [arg for p in pods if p.status.phase == "Running" for c in p.spec.containers for arg in c.command or []]


def test_a_changed_setting_reaches_the_running_control_plane_and_the_next_rerun_is_clean(api, local_cluster):
    """Ops change a role variable and rerun site.yml: kubeadm's static pods are regenerated (a
    handler), the controller-manager comes back with the new flag; rerunning with the old value
    restores it, and then nothing changes. A run that died between writing the configuration
    and regenerating does not leave the next run believing all is well."""
    assert "--kube-api-qps=400" in _controller_flags(api)
    try:
        for qps in (401, 400):  # -e gives a string: the role must still compute the burst as a number
            run = cluster.playbook(INVENTORY, extra=["-e", f"control_plane_controllers_api_qps={qps}"], echo=False)
            assert run.ok, run.output[-3000:]
            assert "RUNNING HANDLER [control_plane : Regenerate the control-plane static pods]" in run.output
            _wait_flags(api, qps)
        # A run that died after writing the new configuration and before its handler ran: the
        # file on the host says 402, the running control plane still 400. The next run (same
        # setting, so the file is already as rendered) must still regenerate.
        config = "/etc/kubernetes/kubeadm-config.yaml"
        died = subprocess.run(["docker", "exec", NODES[0], "sed", "-i", "-e", 's/value: "400"/value: "402"/',
                               "-e", 's/value: "800"/value: "804"/', config], capture_output=True, text=True)
        assert died.returncode == 0, died.stderr
        edited = subprocess.run(["docker", "exec", NODES[0], "grep", "-c", 'value: "402"\\|value: "804"', config],
                                capture_output=True, text=True)
        assert edited.stdout.strip() == "4", edited.stdout + edited.stderr  # qps and burst, controllers and scheduler
        assert "--kube-api-qps=400" in _controller_flags(api)
        run = cluster.playbook(INVENTORY, extra=["-e", "control_plane_controllers_api_qps=402"], echo=False)
        assert run.ok, run.output[-3000:]
        assert "RUNNING HANDLER [control_plane : Regenerate the control-plane static pods]" in run.output
        _wait_flags(api, 402)
    finally:  # whatever failed above, later tests get the control plane site.yml describes
        restore = cluster.playbook(INVENTORY, extra=["-e", "control_plane_controllers_api_qps=400"], echo=False)
        assert restore.ok, restore.output[-3000:]
    _wait_flags(api, 400)
    rerun = cluster.playbook(INVENTORY, echo=False)
    assert rerun.ok and not {h: r["changed"] for h, r in rerun.recap.items() if r["changed"]}, rerun.output[-3000:]


def _wait_flags(api, qps: int) -> None:
    deadline = time.monotonic() + 180
    while f"--kube-api-qps={qps}" not in _controller_flags(api) and time.monotonic() < deadline:
        time.sleep(2)
    assert f"--kube-api-qps={qps}" in _controller_flags(api)
    assert f"--kube-api-burst={2 * qps}" in _controller_flags(api)


def _fake_node_leases(api, count: int) -> dict:
    """The fake nodes' Leases in kube-node-lease, once there is one per node, each renewed within
    its duration and held by kwok."""
    deadline = time.monotonic() + fake_nodes.NODE_LEASE_SECONDS
    while True:
        leases = {lease.metadata.name: lease for lease in api["coordination"].list_namespaced_lease("kube-node-lease").items
                  if lease.metadata.name.startswith(fake_nodes.PREFIX)}
        if len(leases) == count or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert len(leases) == count, sorted(leases)
    now = time.time()
    stale = {n: lease.spec.renew_time for n, lease in leases.items()
             if now - lease.spec.renew_time.timestamp() > lease.spec.lease_duration_seconds}
    assert not stale, stale
    assert all((lease.spec.holder_identity or "").startswith(os.uname().nodename) for lease in leases.values())
    return leases


def _wait_job(api, name, namespace="default", timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = api["batch"].read_namespaced_job_status(name, namespace)
        if any(c.type in ("Complete", "Failed") and c.status == "True" for c in job.status.conditions or []):
            return job
        time.sleep(2)
    pods = api["core"].list_namespaced_pod(namespace, label_selector=f"job-name={name}").items
    states = [(p.metadata.name, p.spec.node_name, p.status.phase,
               [(c.type, c.status, c.reason) for c in p.status.conditions or []]) for p in pods]
    raise AssertionError(f"job {name} did not finish in {timeout}s; its pods: {states}")


def test_trainer_job_runs_on_the_worker_and_logs_come_through_the_api(api):
    built = image.ensure(EXAMPLES, "kubesweep/mnist", build_args={"BASE": "kubesweep/python-base:bookworm"})
    again = image.ensure(EXAMPLES, "kubesweep/mnist", build_args={"BASE": "kubesweep/python-base:bookworm"})
    assert again.reference == built.reference and not again.built and not again.pushed
    name = f"trainer-{uuid.uuid4().hex[:6]}"
    job = {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never",
            "nodeSelector": {"kubernetes.io/hostname": "ks-worker-1"},
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000},
            "containers": [{"name": "trial", "image": built.reference,
                            "command": ["python3", "/app/train.py", "2", "adam", "0.2"],
                            "env": [{"name": "OUTPUT_DIR", "value": "/tmp/out"}],
                            "resources": {"limits": {"cpu": "1", "memory": "512Mi"}}}]}}},
    }
    api["batch"].create_namespaced_job("default", job)
    done = _wait_job(api, name)
    pods = api["core"].list_namespaced_pod("default", label_selector=f"job-name={name}").items
    assert done.status.succeeded == 1, [p.status for p in pods]
    assert pods[0].spec.node_name == "ks-worker-1"
    log = api["core"].read_namespaced_pod_log(pods[0].metadata.name, "default")
    accuracy = read_metric(log, "Test accuracy")
    assert accuracy is not None and accuracy > 0.8, log
    api["batch"].delete_namespaced_job(name, "default", propagation_policy="Background")


def test_pod_too_big_for_any_node_stays_pending_with_the_schedulers_reason(api):
    name = f"too-big-{uuid.uuid4().hex[:6]}"
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
           "spec": {"containers": [{"name": "c", "image": f"registry.k8s.io/pause:{pins()['pause_version']}",
                                    "resources": {"requests": {"memory": "4Ti"}}}]}}
    api["core"].create_namespaced_pod("default", pod)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            p = api["core"].read_namespaced_pod_status(name, "default")
            cond = [c for c in p.status.conditions or [] if c.type == "PodScheduled"]
            if cond and cond[0].reason == "Unschedulable":
                break
            time.sleep(1)
        assert p.status.phase == "Pending"
        assert cond[0].reason == "Unschedulable" and "Insufficient memory" in cond[0].message
    finally:
        api["core"].delete_namespaced_pod(name, "default", grace_period_seconds=0)


def test_hundred_fake_gpu_nodes_and_a_gpu_job_succeeds_on_them(api, local_cluster):
    counts = fake_nodes.ensure(local_cluster["kubeconfig"], 100, 8, version=pins()["kwok_version"])
    assert counts["ready"] == 100
    gpus = sum(int(n.status.allocatable.get("nvidia.com/gpu", 0))
               for n in api["core"].list_node(label_selector=f"{fake_nodes.LABEL}=true").items)
    assert gpus == 800
    # kwok holds each fake node's Lease as a kubelet does; without leases the node-lifecycle
    # controller found every fake node unresponsive within a minute and tainted it
    first = _fake_node_leases(api, 100)
    name = f"gpu-{uuid.uuid4().hex[:6]}"
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
           "spec": {"completions": 4, "parallelism": 4, "backoffLimit": 0, "template": {"spec": {
               "restartPolicy": "Never",
               "nodeSelector": {"nvidia.com/gpu.present": "true"},
               "tolerations": [{"key": fake_nodes.ANNOTATION, "operator": "Exists", "effect": "NoSchedule"}],
               "containers": [{"name": "c", "image": "fake", "resources": {"limits": {"nvidia.com/gpu": "8"}}}]}}}}
    api["batch"].create_namespaced_job("default", job)
    done = _wait_job(api, name, timeout=120)
    assert done.status.succeeded == 4
    placed = {p.spec.node_name for p in api["core"].list_namespaced_pod("default", label_selector=f"job-name={name}").items}
    assert len(placed) == 4 and all(n.startswith(fake_nodes.PREFIX) for n in placed)  # 8 GPUs each: one pod per node
    # no DaemonSet followed the nodes in (kube-proxy tolerates every taint): only the Job ran there
    others = [f"{p.metadata.namespace}/{p.metadata.name}" for p in api["core"].list_pod_for_all_namespaces().items
              if (p.spec.node_name or "").startswith(fake_nodes.PREFIX) and (p.metadata.labels or {}).get("job-name") != name]
    assert others == []
    # and renews them (every quarter of NODE_LEASE_SECONDS, from each lease's last renewal)
    latest = max(lease.spec.renew_time for lease in first.values()).timestamp()
    time.sleep(max(0.0, latest + fake_nodes.NODE_LEASE_SECONDS / 4 + 5 - time.time()))
    renewed = _fake_node_leases(api, 100)
    assert all(renewed[n].spec.renew_time > first[n].spec.renew_time for n in first), \
        {n: (first[n].spec.renew_time, renewed[n].spec.renew_time) for n in first}
    api["batch"].delete_namespaced_job(name, "default", propagation_policy="Background")
    assert fake_nodes.ensure(local_cluster["kubeconfig"], 0, 8, version=pins()["kwok_version"])["deleted"] == 100


def test_nodes_are_reached_over_ssh_as_a_non_root_user_with_sudo_on_loopback_ports(local_cluster):
    """The local inventory has the baremetal inventory's shape; Ansible logs in over SSH."""
    tool = os.path.join(os.path.dirname(sys.executable), "ansible")
    base = [tool, "-i", str(INVENTORY), "k8s_cluster", "-o", "-m", "ansible.builtin.command", "-a", "id -un"]
    env = {**os.environ, "ANSIBLE_CONFIG": str(checkout() / "ansible.cfg")}
    plain = subprocess.run(base, capture_output=True, text=True, cwd=checkout(), env=env)
    root = subprocess.run([*base, "--become"], capture_output=True, text=True, cwd=checkout(), env=env)
    assert plain.returncode == 0 and root.returncode == 0, plain.stdout + plain.stderr + root.stdout + root.stderr
    for node in NODES:
        assert re.search(rf"^{node} \| CHANGED \| rc=0 \| \(stdout\) kubesweep$", plain.stdout, re.M), plain.stdout
        assert re.search(rf"^{node} \| CHANGED \| rc=0 \| \(stdout\) root$", root.stdout, re.M), root.stdout
    assert nodes.existing() == sorted(NODES)  # labelled as kubesweep's: `invoke cluster --down` finds them
    hosts = {h.name: h for h in nodes.inventory_hosts(INVENTORY)}
    key = nodes.ssh_key(INVENTORY)  # made by the local_node role, for this cluster only
    assert key.stat().st_mode & 0o777 == 0o600 and key.parent.stat().st_mode & 0o777 == 0o700
    assert key.with_suffix(".pub").read_text().startswith("ssh-ed25519 ")
    fingerprints = set()
    for node in NODES:
        port = hosts[node].vars["ansible_port"]
        published = subprocess.run(["docker", "port", node, "22/tcp"], capture_output=True, text=True).stdout.split()
        assert published == [f"127.0.0.1:{port}"]  # loopback only
        ssh = ["ssh", "-p", str(port), "-i", str(key), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
               "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
        refused = subprocess.run([*ssh, "root@127.0.0.1", "true"], capture_output=True, text=True)
        assert refused.returncode == 255 and "Permission denied" in refused.stderr  # no root login
        scan = subprocess.run(["ssh-keyscan", "-p", str(port), "-t", "ed25519", "127.0.0.1"],
                              capture_output=True, text=True)
        fingerprints.add(scan.stdout.split()[-1])
    assert len(fingerprints) == len(NODES)  # each node made its own host key
    authorized = subprocess.run(["docker", "exec", NODES[0], "cat", "/home/kubesweep/.ssh/authorized_keys"],
                                capture_output=True, text=True).stdout
    assert authorized.split()[:2] == key.with_suffix(".pub").read_text().split()[:2]  # the cluster's key, only it
    assert len(authorized.strip().splitlines()) == 1


def test_another_local_cluster_is_refused_in_one_line_before_anything_is_made(local_cluster):
    """The one-node inventory's site.yml while the three-node cluster runs: both want the registry's
    port and the node network. The play stops at once, says which containers and what to run."""
    run = cluster.playbook(checkout() / "inventory" / "single", echo=False)
    assert not run.ok
    said = " ".join(run.output.split())
    assert ("node containers of another local cluster exist (ks-control-plane, ks-gpu-1, ks-worker-1)" in said
            and "`invoke cluster --down` removes them" in said), run.output[-3000:]
    assert "TASK [registry" not in run.output and "ks-single" not in nodes.existing()
    assert not nodes.ssh_key(checkout() / "inventory" / "single").exists()
