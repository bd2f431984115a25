"""Whether any node could ever take a trial: the check a sweep makes before it submits (the real
cluster's nodes, with and without kwok GPU nodes, in tests/test_sweep_cluster.py)."""

from __future__ import annotations

from kubesweep.run import placement

from .fakeapi import serve


def _node(name: str, allocatable: dict[str, str], labels: dict[str, str] | None = None,
          taints: list[dict[str, str]] | None = None, cordoned: bool = False) -> dict:
    return {"metadata": {"name": name, "labels": labels or {}},
            "spec": {"taints": taints or [], "unschedulable": cordoned},
            "status": {"allocatable": allocatable}}


CPU_NODE = _node("cpu-1", {"cpu": "2", "memory": "8Gi"})
GPU_NODE = _node("gpu-1", {"cpu": "8", "memory": "64Gi", "nvidia.com/gpu": "8"}, labels={"nvidia.com/gpu.present": "true"},
                 taints=[{"key": "nvidia.com/gpu", "effect": "NoSchedule"}])


def _pod(requests: dict[str, str], limits: dict[str, str] | None = None, **spec) -> dict:
    return {"containers": [{"name": "trial", "resources": {"requests": requests, "limits": limits or dict(requests)}}],
            **spec}


GPU_POD = _pod({"cpu": "1", "memory": "1Gi"}, {"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": "1"},
               nodeSelector={"nvidia.com/gpu.present": "true"},
               tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}])


def test_a_gpu_trial_on_a_cluster_without_gpus_is_named_at_once():
    text = placement.warning([CPU_NODE], GPU_POD, "seed002", 600)
    assert text == ("warning: no node of the cluster can take a trial of seed002 (cpu 1, memory 1Gi, nvidia.com/gpu 1; "
                    "nodeSelector {'nvidia.com/gpu.present': 'true'}): cpu-1: no label nvidia.com/gpu.present=true. "
                    "Its trials wait as Unschedulable until a node that fits joins (a cluster autoscaler may add one) "
                    "and fail after 600 s (unschedulableSeconds) without one.")
    assert placement.warning([CPU_NODE, GPU_NODE], GPU_POD, "seed002", 600) is None


def test_each_reason_a_node_cannot_take_the_trial():
    asked = placement.requests(GPU_POD)
    assert asked["nvidia.com/gpu"] == 1  # a limit-only resource is requested at its limit
    untolerated = {**GPU_POD, "tolerations": []}
    assert placement.why_not(GPU_NODE, untolerated, asked) == "taint nvidia.com/gpu:NoSchedule"
    assert placement.why_not(_node("g", {"cpu": "8", "memory": "64Gi", "nvidia.com/gpu": "8"},
                                    labels={"nvidia.com/gpu.present": "true"}, cordoned=True), GPU_POD, asked) == "cordoned"
    no_device = _node("g", {"cpu": "8", "memory": "64Gi"}, labels={"nvidia.com/gpu.present": "true"})
    assert placement.why_not(no_device, GPU_POD, asked) == "no nvidia.com/gpu"
    big = _pod({"cpu": "500m", "memory": "16Gi"})
    assert placement.why_not(CPU_NODE, big, placement.requests(big)) == "only 8Gi memory allocatable"
    small = _pod({"cpu": "500m", "memory": "512Mi"})
    assert placement.why_not(CPU_NODE, small, placement.requests(small)) is None
    # a PreferNoSchedule taint does not keep a pod off; an Exists toleration without a key tolerates all
    soft = _node("s", {"cpu": "2", "memory": "8Gi"}, taints=[{"key": "x", "effect": "PreferNoSchedule"}])
    assert placement.why_not(soft, small, placement.requests(small)) is None
    hard = _node("h", {"cpu": "2", "memory": "8Gi"}, taints=[{"key": "x", "value": "y", "effect": "NoExecute"}])
    assert placement.why_not(hard, small, placement.requests(small)) == "taint x=y:NoExecute"
    assert placement.why_not(hard, {**small, "tolerations": [{"operator": "Exists"}]}, placement.requests(small)) is None
    assert placement.why_not(hard, {**small, "tolerations": [{"key": "x", "value": "y"}]}, placement.requests(small)) is None
    assert placement.why_not(hard, {**small, "tolerations": [{"key": "x", "value": "z"}]},
                             placement.requests(small)) == "taint x=y:NoExecute"


def test_many_nodes_are_counted_not_listed_and_no_nodes_judge_nothing():
    nodes = [_node(f"cpu-{i}", {"cpu": "2", "memory": "8Gi"}) for i in range(10)]
    text = placement.warning(nodes, _pod({"cpu": "4", "memory": "1Gi"}), "big", 60)
    assert "cpu-0: only 2 cpu allocatable; cpu-1: only 2 cpu allocatable; cpu-2: only 2 cpu allocatable; and 7 more." in text
    assert placement.warning([], GPU_POD, "e", 60) is None


def test_a_user_who_may_not_list_nodes_is_not_stopped(tmp_path):
    """A Role for one namespace cannot list nodes: the question stays open, the note says so, and
    the sweep goes on."""
    from kubesweep.k8s import client as kube
    from kubesweep.plan import planner as render

    grid = tmp_path / "grid.yaml"
    grid.write_text("name: e\nimage: localhost:5000/t:1\ncommand: [train, \"${i}\"]\nparameters: {i: [1]}\n"
                    "objective: {metric: acc}\n")
    forbidden = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403,
                 "message": "nodes is forbidden"}
    with serve(lambda method, path, body: (403, forbidden), tmp_path / "config") as server:
        note = placement.check(kube.clients(tmp_path / "config"), render.plan(grid))
    assert note is not None and note.startswith("e: not checked whether a node can take the trials")
    assert "unschedulableSeconds (600s)" in note
    assert server.requests == [("GET", "/api/v1/nodes")]
    with serve(lambda method, path, body: (200, {"items": [CPU_NODE]}), tmp_path / "config"):
        assert placement.check(kube.clients(tmp_path / "config"), render.plan(grid)) is None  # the defaults, 1 cpu and 5Gi: fit


def test_extended_resources_need_a_node_that_advertises_them():
    mig = _pod({"cpu": "1", "memory": "1Gi"}, {"cpu": "1", "memory": "1Gi", "nvidia.com/mig-1g.10gb": "1", "amd.com/gpu": "2"})
    asked = placement.requests(mig)
    assert asked["amd.com/gpu"] == 2 and asked["nvidia.com/mig-1g.10gb"] == 1
    assert placement.why_not(CPU_NODE, mig, asked) == "no amd.com/gpu"
    one_amd = _node("a", {"cpu": "8", "memory": "8Gi", "amd.com/gpu": "1", "nvidia.com/mig-1g.10gb": "7"})
    assert placement.why_not(one_amd, mig, asked) == "only 1 amd.com/gpu allocatable"
    both = _node("b", {"cpu": "8", "memory": "8Gi", "amd.com/gpu": "4", "nvidia.com/mig-1g.10gb": "7"})
    assert placement.warning([CPU_NODE, both], mig, "mig", 60) is None
    text = placement.warning([CPU_NODE], mig, "mig", 60)
    assert "amd.com/gpu 2" in text and "cpu-1: no amd.com/gpu" in text


def test_required_node_affinity_is_judged_and_pod_affinity_is_not():
    arm = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["arm64"]}]},
        {"matchExpressions": [{"key": "gen", "operator": "Gt", "values": ["3"]}]}]}},
        "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"a": "b"}}}]}}
    pod = _pod({"cpu": "1", "memory": "1Gi"}, affinity=arm)
    asked = placement.requests(pod)
    amd64 = _node("x86", {"cpu": "8", "memory": "8Gi"}, labels={"kubernetes.io/arch": "amd64", "gen": "2"})
    assert placement.why_not(amd64, pod, asked) == "its labels match no required node affinity term"
    assert placement.why_not(_node("new", {"cpu": "8", "memory": "8Gi"}, labels={"gen": "4"}), pod, asked) is None
    assert placement.why_not(_node("arm", {"cpu": "8", "memory": "8Gi"}, labels={"kubernetes.io/arch": "arm64"}), pod, asked) is None
    by_name = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["cpu-1"]}]}]}}}
    assert placement.why_not(CPU_NODE, _pod({"cpu": "1", "memory": "1Gi"}, affinity=by_name), asked) is not None
    only_preferred = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 5, "preference": {"matchExpressions": [{"key": "z", "operator": "Exists"}]}}]}}
    assert placement.why_not(CPU_NODE, _pod({"cpu": "1", "memory": "1Gi"}, affinity=only_preferred), asked) is None
