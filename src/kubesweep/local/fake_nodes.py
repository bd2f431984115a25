"""Scale without hardware: kwok fake nodes, advertising GPUs, against the real API server.

kwok (built from its Go module by `invoke artifacts`) runs on the host with the cluster's admin
kubeconfig and plays kubelet for every Node annotated ``kwok.x-k8s.io/node=fake``: it keeps them
Ready and, with its stock stages, moves their pods to Running and Job pods to Succeeded. The
scheduler, controllers and API server are the real ones, so this is what scheduling and
throughput work runs against. Fake nodes are tainted so that real workloads never land there
unless they tolerate ``kwok.x-k8s.io/node``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from kubesweep.local import services
from kubesweep.errors import KubesweepError
from kubesweep.local.paths import cache_root

ANNOTATION = "kwok.x-k8s.io/node"
LABEL = "kubesweep.io/fake-node"
PREFIX = "kwok-gpu-"
KWOK_VERSION_FILE = "kwok_version"
# kwok applies pod stages (Running, Succeeded) with 4 workers by default; each is one API call,
# so at hundreds of short fake trials the pods queued in kwok, not in the cluster under test.
POD_STAGE_WORKERS = 32
# When kwok takes a node over it lists the pods already bound to it and feeds them through the
# same channel as its pod watch. A listed copy that arrives after a newer watch event replaces
# the job kwok queued for that pod with a stale one: kwok replays pod-ready, the API server
# rejects the merged second pod IP ("may specify no more than one IP for each IP family"), and
# the pod stays Running for good. One list worker (kwok's default) lagged seconds behind 100 new
# nodes, so pods scheduled right after the nodes turned Ready hit it: 21 stale replays in one
# 100-node round, and once a Job that never finished (test_cluster, CI on a441656). 16 list
# workers finish before the nodes are schedulable; with no DaemonSet pods on the fake nodes
# (see node_object) those lists are empty: no stale replays in 4 rounds, against 6 before.
POD_SYNC_WORKERS = 16
# How long a fake node's Lease in kube-node-lease lasts; kwok renews it every quarter of that.
# 40 s is a kubelet's default and what kwokctl passes to kwok; kwok itself defaults to 0, which
# keeps no leases at all. A fake node then reports only through its status, which the
# node-heartbeat-with-lease stage refreshes every 600 s, so the node-lifecycle controller found
# every fake node unresponsive 50 s after its last heartbeat: it marked the node's pods NotReady,
# tainted the node unreachable (nothing was scheduled there) until kwok set it Ready again, six
# times per node in a 6-minute sweep. A restarted kwok takes over nodes whose leases an earlier
# kwok held once those have expired (up to this long).
NODE_LEASE_SECONDS = 40


class FakeNodeError(KubesweepError):
    pass


def kwok_binary(version: str) -> Path:
    return (cache_root() / "mirror" / "github.com" / "kubernetes-sigs" / "kwok" / "releases" / "download"
            / f"v{version}" / "kwok-linux-amd64")


def stage_files() -> list[Path]:
    folder = cache_root() / "kwok-stages"
    files = sorted(folder.rglob("*.yaml")) if folder.is_dir() else []
    if not files:
        raise FakeNodeError(f"kwok's stage files are missing in {folder}: run `invoke artifacts`")
    return files


def node_object(name: str, gpus: int, cpu: str, memory: str, pods: int) -> dict[str, Any]:
    capacity = {"cpu": cpu, "memory": memory, "pods": str(pods)}
    if gpus:
        capacity["nvidia.com/gpu"] = str(gpus)
    # No kubernetes.io/os label: kube-proxy's DaemonSet (and most node agents) select on it and
    # tolerate every taint, so each fake node would get a pod that only adds load to kwok and to
    # the API server. Trials select GPU nodes by nvidia.com/gpu.present.
    labels = {"kubernetes.io/hostname": name, "kubernetes.io/arch": "amd64", "type": "kwok", LABEL: "true"}
    if gpus:
        labels["nvidia.com/gpu.present"] = "true"
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels, "annotations": {ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"}},
        "spec": {"taints": [{"key": ANNOTATION, "value": "fake", "effect": "NoSchedule"}]},
        "status": {"capacity": capacity, "allocatable": dict(capacity)},
    }


def kwok_argv(kubeconfig: Path, version: str) -> list[str]:
    """kwok's command line for this cluster (its KwokConfiguration written under CACHE/run)."""
    binary = kwok_binary(version)
    if not binary.exists():
        raise FakeNodeError(f"kwok {version} is not built ({binary}): run `invoke artifacts`")
    argv = [str(binary), "--kubeconfig", str(kubeconfig), "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={ANNOTATION}=fake", "--node-ip=127.0.0.1"]  # log requests to fake pods fail fast, not time out
    options = cache_root() / "run" / "kwok-configuration.yaml"
    options.parent.mkdir(parents=True, exist_ok=True)
    # kwok applies its documented defaults only when no KwokConfiguration is given, so this one
    # spells them all out; it changes the pod stage and pod list workers, and turns node leases on
    # (NODE_LEASE_SECONDS).
    options.write_text("apiVersion: config.kwok.x-k8s.io/v1alpha1\nkind: KwokConfiguration\noptions:\n"
                       "  cidr: 10.0.0.0/24\n  enableDebuggingHandlers: true\n  enableProfilingHandler: true\n"
                       f"  podPlayStageParallelism: {POD_STAGE_WORKERS}\n  nodePlayStageParallelism: 4\n"
                       f"  nodeLeaseParallelism: 4\n  nodeLeaseDurationSeconds: {NODE_LEASE_SECONDS}\n"
                       f"  podsOnNodeSyncParallelism: {POD_SYNC_WORKERS}\n"
                       "  enablePodsOnNodeSyncListPager: true\n  enablePodsOnNodeSyncStreamWatch: false\n")
    argv += ["--config", str(options)]
    for f in stage_files():
        argv += ["--config", str(f)]
    return argv


def start_kwok(kubeconfig: Path, version: str) -> int:
    """Start kwok unless it already runs (whoever started it chose its flags)."""
    return services.start_background("kwok", kwok_argv(kubeconfig, version))


def stop() -> bool:
    return services.stop_background("kwok")


def _client(kubeconfig: Path):  # noqa: ANN202 - kubernetes CoreV1Api
    from kubernetes import client, config

    return client.CoreV1Api(config.new_client_from_config(str(kubeconfig)))


def ensure(kubeconfig: Path, count: int, gpus_per_node: int, *, version: str, cpu: str = "32",
           memory: str = "256Gi", pods: int = 110, timeout: float = 180.0) -> dict[str, int]:
    """Make exactly ``count`` fake nodes exist and be Ready; return counts."""
    from kubernetes.client.exceptions import ApiException

    api = _client(kubeconfig)
    if count:
        start_kwok(kubeconfig, version)
    want = {f"{PREFIX}{i:04d}" for i in range(count)}
    have = {n.metadata.name for n in api.list_node(label_selector=f"{LABEL}=true").items}
    created = 0
    for name in sorted(want - have):
        try:
            api.create_node(node_object(name, gpus_per_node, cpu, memory, pods))
            created += 1
        except ApiException as exc:
            if exc.status != 409:
                raise FakeNodeError(f"creating fake node {name}: {exc.reason}: {exc.body}") from None
    for name in sorted(have - want):
        api.delete_node(name)
    if not count:
        stop()
        return {"created": 0, "deleted": len(have - want), "ready": 0}
    deadline = time.monotonic() + timeout
    ready = 0
    while time.monotonic() < deadline:
        items = api.list_node(label_selector=f"{LABEL}=true").items
        ready = sum(1 for n in items if any(c.type == "Ready" and c.status == "True" for c in (n.status.conditions or [])))
        if ready >= count:
            break
        time.sleep(1)
    else:
        raise FakeNodeError(f"only {ready} of {count} fake nodes became Ready in {timeout:.0f}s; kwok's log:\n"
                            f"{services.log_tail('kwok')}")
    return {"created": created, "deleted": len(have - want), "ready": ready}
