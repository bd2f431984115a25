"""Kueue as site.yml installs it (roles/kueue), on the real local cluster (marker: cluster): the
controller from the image built here, the ResourceFlavors matching the nodes' labels and taints,
a suspended Job admitted through a ClusterQueue and LocalQueue and run to completion, a Job over
the quota held back, a GPU Job given the GPU nodes' selector and toleration, a rerun of the play
that changes nothing and bad flavors refused before anything is applied."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from kubesweep.k8s.versions import pins
from kubesweep.local import cluster

from .conftest import INVENTORY

pytestmark = pytest.mark.cluster

GROUP, VERSION = "kueue.x-k8s.io", "v1beta2"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
IMAGE = "localhost:5000/kubesweep/python-base:bookworm"  # built by `invoke artifacts`, pushed by site.yml


@pytest.fixture(scope="module")
def kueue(api):
    return client.CustomObjectsApi(api["core"].api_client)


def _wait(what, probe, timeout=120.0, every=1.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"{what} did not happen in {timeout:.0f}s (last: {last!r})")


def test_the_controller_runs_the_image_built_here_and_its_visibility_api_answers(api, kueue):
    deployment = api["apps"].read_namespaced_deployment("kueue-controller-manager", "kueue-system")
    assert deployment.status.available_replicas == deployment.spec.replicas == 1
    assert [c.image for c in deployment.spec.template.spec.containers] == [
        f"registry.k8s.io/kueue/kueue:v{pins()['kueue_version']}"]
    apis = client.ApiregistrationV1Api(api["core"].api_client)
    for version in ("v1beta1", "v1beta2"):
        conditions = apis.read_api_service(f"{version}.visibility.kueue.x-k8s.io").status.conditions
        assert any(c.type == "Available" and c.status == "True" for c in conditions), conditions


def _tolerates(tolerations, taint) -> bool:
    return any(t.get("key") == taint.key and t.get("effect", taint.effect) == taint.effect
               and (t.get("operator") == "Exists" or t.get("value") == taint.value) for t in tolerations)


def test_the_flavors_match_the_gpu_workers_labels_and_taints(api, kueue):
    flavors = {f["metadata"]["name"]: f["spec"] for f in kueue.list_cluster_custom_object(GROUP, VERSION,
                                                                                         "resourceflavors")["items"]}
    assert {"default", "gpu"} <= set(flavors)
    assert not flavors["default"].get("nodeLabels") and not flavors["default"].get("tolerations")
    gpu_labels = flavors["gpu"]["nodeLabels"]
    nodes = api["core"].list_node().items
    gpu_nodes = [n for n in nodes if all(n.metadata.labels.get(k) == v for k, v in gpu_labels.items())]
    # the flavor's labels pick exactly the inventory's GPU worker, and its tolerations pass its taints
    assert [n.metadata.name for n in gpu_nodes] == ["ks-gpu-1"]
    taints = gpu_nodes[0].spec.taints or []
    assert taints and all(_tolerates(flavors["gpu"]["tolerations"], t) for t in taints)


@pytest.fixture
def queue(api, kueue):
    """A namespace with a LocalQueue on a ClusterQueue of 1 CPU / 1 GiB (default flavor) and one
    nvidia.com/gpu (gpu flavor, with CPU and memory there too); everything removed afterwards."""
    suffix = uuid.uuid4().hex[:6]
    ns, cq = f"kueue-test-{suffix}", f"kueue-test-{suffix}"
    api["core"].create_namespace({"metadata": {"name": ns}})
    resources = lambda cpu, mem: [{"name": "cpu", "nominalQuota": cpu}, {"name": "memory", "nominalQuota": mem}]  # noqa: E731
    kueue.create_cluster_custom_object(GROUP, VERSION, "clusterqueues", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ClusterQueue", "metadata": {"name": cq},
        "spec": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
                 "resourceGroups": [
                     {"coveredResources": ["cpu", "memory"],
                      "flavors": [{"name": "default", "resources": resources("1", "1Gi")}]},
                     {"coveredResources": ["nvidia.com/gpu"],
                      "flavors": [{"name": "gpu", "resources": [{"name": "nvidia.com/gpu", "nominalQuota": 1}]}]}]}})
    kueue.create_namespaced_custom_object(GROUP, VERSION, ns, "localqueues", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "LocalQueue", "metadata": {"name": "main", "namespace": ns},
        "spec": {"clusterQueue": cq}})
    try:
        yield {"namespace": ns, "cluster_queue": cq, "local_queue": "main"}
    finally:
        for job in api["batch"].list_namespaced_job(ns).items:
            api["batch"].delete_namespaced_job(job.metadata.name, ns, propagation_policy="Foreground")
        _wait("the test's workloads to go", lambda: not kueue.list_namespaced_custom_object(
            GROUP, VERSION, ns, "workloads")["items"], timeout=60)
        kueue.delete_namespaced_custom_object(GROUP, VERSION, ns, "localqueues", "main")
        kueue.delete_cluster_custom_object(GROUP, VERSION, "clusterqueues", cq)
        api["core"].delete_namespace(ns, propagation_policy="Background")

        def cq_gone():
            try:
                kueue.get_cluster_custom_object(GROUP, VERSION, "clusterqueues", cq)
            except ApiException as exc:
                return exc.status == 404
            return False
        _wait(f"ClusterQueue {cq} to be deleted", cq_gone, timeout=60)


def _job(name, queue_name, *, cpu="100m", gpu=0, command=("python3", "-c", "print('admitted')")):
    requests = {"cpu": cpu, "memory": "64Mi", **({"nvidia.com/gpu": str(gpu)} if gpu else {})}
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "labels": {QUEUE_LABEL: queue_name}},
            "spec": {"suspend": True, "backoffLimit": 0, "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "main", "image": IMAGE, "command": list(command),
                                "resources": {"requests": requests, "limits": requests}}]}}}}


def _workload(kueue, ns, job_name):
    items = [w for w in kueue.list_namespaced_custom_object(GROUP, VERSION, ns, "workloads")["items"]
             if any(o.get("name") == job_name for o in w["metadata"].get("ownerReferences", []))]
    return items[0] if items else None


def _condition(workload, kind):
    return next((c for c in (workload or {}).get("status", {}).get("conditions", []) if c["type"] == kind), None)


def test_a_suspended_job_in_the_queue_is_admitted_runs_and_completes_and_one_over_quota_waits(api, kueue, queue):
    ns = queue["namespace"]
    api["batch"].create_namespaced_job(ns, _job("fits", queue["local_queue"]))
    api["batch"].create_namespaced_job(ns, _job("too-big", queue["local_queue"], cpu="2"))

    done = _wait("the admitted Job to complete", lambda: (
        j if (j := api["batch"].read_namespaced_job("fits", ns)).status.succeeded == 1 else None), timeout=180)
    assert done.spec.suspend is False  # Kueue unsuspended it
    admitted = _workload(kueue, ns, "fits")
    assert _condition(admitted, "Admitted")["status"] == "True"
    assignment = admitted["status"]["admission"]
    assert assignment["clusterQueue"] == queue["cluster_queue"]
    assert assignment["podSetAssignments"][0]["flavors"] == {"cpu": "default", "memory": "default"}
    pod = api["core"].list_namespaced_pod(ns, label_selector="job-name=fits").items[0]
    assert api["core"].read_namespaced_pod_log(pod.metadata.name, ns).strip() == "admitted"

    # 2 CPUs against a quota of 1: never admitted, never started, and Kueue says why
    waiting = _wait("Kueue to say why the big Job waits", lambda: (
        w if (c := _condition(w := _workload(kueue, ns, "too-big"), "QuotaReserved")) and c["status"] == "False"
        else None), timeout=60)
    assert "insufficient quota" in _condition(waiting, "QuotaReserved")["message"].lower() or \
        "couldn't assign flavors" in _condition(waiting, "QuotaReserved")["message"].lower(), waiting["status"]
    assert api["batch"].read_namespaced_job("too-big", ns).spec.suspend is True
    # the visibility API (an aggregated API the controller serves) lists it as pending in its queue
    pending = kueue.get_cluster_custom_object("visibility.kueue.x-k8s.io", "v1beta2", "clusterqueues",
                                              f"{queue['cluster_queue']}/pendingworkloads")
    assert [(w["metadata"]["namespace"], w["localQueueName"]) for w in pending["items"]] == [(ns, "main")]
    assert api["core"].list_namespaced_pod(ns, label_selector="job-name=too-big").items == []


def test_a_gpu_job_is_admitted_on_the_gpu_flavor_with_its_node_selector_and_toleration(api, kueue, queue):
    ns = queue["namespace"]
    api["batch"].create_namespaced_job(ns, _job("gpu", queue["local_queue"], gpu=1))
    job = _wait("the GPU Job to be admitted", lambda: (
        j if (j := api["batch"].read_namespaced_job("gpu", ns)).spec.suspend is False else None), timeout=60)
    assert _workload(kueue, ns, "gpu")["status"]["admission"]["podSetAssignments"][0]["flavors"]["nvidia.com/gpu"] == "gpu"
    template = job.spec.template.spec
    # what Kueue injects from the gpu flavor when it starts the Job
    assert template.node_selector == {"nvidia.com/gpu.present": "true"}
    assert any(t.key == "nvidia.com/gpu" and t.value == "present" and t.effect == "NoSchedule"
               for t in template.tolerations or [])


def test_a_rerun_of_the_kueue_play_changes_nothing(local_cluster):
    rerun = cluster.playbook(INVENTORY, "playbooks/kueue.yml", echo=False)
    assert rerun.ok, rerun.output[-3000:]
    changed = {h: r["changed"] for h, r in rerun.recap.items() if r["changed"]}
    assert changed == {}, rerun.output[-3000:]


@pytest.mark.parametrize("flavors, says", [
    ([{"name": "Not_A_Name"}], "Not_A_Name"),
    ([{"name": "gpu2", "node_labels": {"nvidia.com/gpu.present": True}}], "gpu2"),
    ([{"name": "taint", "tolerations": [{"key": "k", "effect": "NoScheduel"}]}], "taint"),
])
def test_bad_flavors_are_refused_before_anything_is_applied(local_cluster, kueue, flavors, says):
    run = cluster.playbook(INVENTORY, "playbooks/kueue.yml", extra=["-e", json.dumps({"kueue_flavors": flavors})],
                           echo=False)
    assert not run.ok
    assert "is not a valid ResourceFlavor" in run.output and says in run.output, run.output[-3000:]
    assert "Download Kueue's release manifests" not in run.output  # stopped at the check
    names = {f["metadata"]["name"] for f in kueue.list_cluster_custom_object(GROUP, VERSION, "resourceflavors")["items"]}
    assert not names & {f["name"] for f in flavors}
