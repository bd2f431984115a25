"""Whether any node of the cluster could ever take a trial, asked once before a sweep submits.

The scheduler's message ("0/1 nodes are available: 1 Insufficient nvidia.com/gpu") shows on a
waiting trial at once, but it cannot tell "not now" from "never": a GPU trial on a cluster with
no GPU node waits as Unschedulable until ``unschedulableSeconds`` run out, trial after trial.
This check names that case before the first Job is created. It is a warning, not an error: a
cluster autoscaler may add a node that fits once pods ask for one (GKE's GPU node pools scaled
to zero), and a user whose Role cannot list nodes is not stopped either.

A node could take the trial when it is not cordoned, carries every nodeSelector label, matches
the required node affinity, has every NoSchedule / NoExecute taint tolerated, and has at least the
trial's requests allocatable (what is allocatable to all pods, not what is free now: other pods
come and go), extended resources (amd.com/gpu, a MIG slice) included: a node that does not
advertise one cannot take the trial. Pod affinity and anti-affinity are not judged: they depend
on which other pods run where, which changes as the sweep runs; preferred terms never keep a pod
off a node.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from kubesweep.k8s import quantity

SHOWN = 3  # nodes named in the warning; the rest are counted


def _asked(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Each container's requests; a resource given as a limit only is requested at that limit, as
    the API server defaults it."""
    out = []
    for container in pod_spec.get("containers") or []:
        res = container.get("resources") or {}
        out.append({**(res.get("limits") or {}), **(res.get("requests") or {})})
    return out


def requests(pod_spec: dict[str, Any]) -> dict[str, Decimal]:
    """The pod's requests, summed over its containers."""
    total: dict[str, Decimal] = {}
    for asked in _asked(pod_spec):
        for name, value in asked.items():
            total[name] = total.get(name, Decimal(0)) + quantity.parse(value)
    return total


def _as_written(pod_spec: dict[str, Any]) -> dict[str, str]:
    """The requests as the manifest spells them (512Mi, not 536870912), for messages."""
    shown: dict[str, str] = {}
    for asked in _asked(pod_spec):
        for name, value in asked.items():
            shown[name] = f"{shown[name]} + {value}" if name in shown else str(value)
    return shown


def _tolerated(taint: dict[str, Any], tolerations: list[dict[str, Any]]) -> bool:
    for t in tolerations:
        if t.get("effect") and t["effect"] != taint.get("effect"):
            continue
        if t.get("operator") == "Exists":
            if not t.get("key") or t["key"] == taint.get("key"):
                return True
        elif t.get("key") == taint.get("key") and (t.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


def _matches(labels: dict[str, str], name: str, term: dict[str, Any]) -> bool:
    """Whether a node matches one NodeSelectorTerm (all its expressions and fields)."""
    for req in term.get("matchExpressions") or []:
        key, operator, values = req.get("key"), req.get("operator"), req.get("values") or []
        have = labels.get(key)
        if operator == "In" and have not in values or operator == "NotIn" and have in values:
            return False
        if operator == "Exists" and have is None or operator == "DoesNotExist" and have is not None:
            return False
        if operator in ("Gt", "Lt"):
            try:
                mine, bound = int(have or ""), int(values[0])
            except (ValueError, IndexError):
                return False
            if not (mine > bound if operator == "Gt" else mine < bound):
                return False
    for req in term.get("matchFields") or []:  # only metadata.name exists
        inside = name in (req.get("values") or [])
        if req.get("operator") == "In" and not inside or req.get("operator") == "NotIn" and inside:
            return False
    return True


def _affinity_reason(node: dict[str, Any], pod_spec: dict[str, Any]) -> str | None:
    required = (((pod_spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    terms = required.get("nodeSelectorTerms") or []
    meta = node.get("metadata") or {}
    if terms and not any(_matches(meta.get("labels") or {}, meta.get("name", ""), t) for t in terms):
        return "its labels match no required node affinity term"
    return None


def why_not(node: dict[str, Any], pod_spec: dict[str, Any], asked: dict[str, Decimal]) -> str | None:
    """None when the node could take the pod; else the first reason it cannot, in words."""
    if (node.get("spec") or {}).get("unschedulable"):
        return "cordoned"
    labels = (node.get("metadata") or {}).get("labels") or {}
    for key, value in (pod_spec.get("nodeSelector") or {}).items():
        if labels.get(key) != value:
            return f"no label {key}={value}"
    reason = _affinity_reason(node, pod_spec)
    if reason:
        return reason
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not _tolerated(taint, pod_spec.get("tolerations") or []):
            return f"taint {taint.get('key')}{'=' + taint['value'] if taint.get('value') else ''}:{taint.get('effect')}"
    allocatable = (node.get("status") or {}).get("allocatable") or {}
    for name, amount in sorted(asked.items()):
        if name not in allocatable:
            return f"no {name}"
        if quantity.parse(allocatable[name]) < amount:
            return f"only {allocatable[name]} {name} allocatable"
    return None


def warning(nodes: list[dict[str, Any]], pod_spec: dict[str, Any], experiment: str, unschedulable_seconds: int) -> str | None:
    """One warning when no node could take the experiment's trials (None when one could, or
    when the cluster lists no node at all: nothing to judge by)."""
    if not nodes:
        return None
    asked = requests(pod_spec)
    reasons = []
    for node in nodes:
        reason = why_not(node, pod_spec, asked)
        if reason is None:
            return None
        reasons.append(f"{node['metadata']['name']}: {reason}")
    more = f"; and {len(reasons) - SHOWN} more" if len(reasons) > SHOWN else ""
    wants = ", ".join(f"{k} {v}" for k, v in sorted(_as_written(pod_spec).items()))
    return (f"warning: no node of the cluster can take a trial of {experiment} ({wants}"
            + (f"; nodeSelector {pod_spec['nodeSelector']}" if pod_spec.get("nodeSelector") else "") + "): "
            + "; ".join(reasons[:SHOWN]) + more
            + f". Its trials wait as Unschedulable until a node that fits joins (a cluster autoscaler may add one)"
            f" and fail after {unschedulable_seconds} s (unschedulableSeconds) without one.")


def check(c: Any, plan: Any) -> str | None:
    """The warning for a plan's trials on the cluster behind ``c`` (its first trial's pod spec:
    every trial of a sweep asks for the same resources and nodes), or None. Nodes that cannot be
    listed (a Role for one namespace) leave the question open, and the note says so."""
    from kubernetes.client.exceptions import ApiException

    from kubesweep.k8s import client as kube
    from kubesweep.plan import job as manifest

    if not plan.trials:
        return None
    exp = plan.experiment
    try:
        nodes = kube.request(c, "GET", kube.path("nodes")).get("items") or []
    except ApiException as exc:
        if exc.status in (401, 403):
            return (f"{exp.name}: not checked whether a node can take the trials (this kubeconfig may not list "
                    f"nodes); a trial that no node can take fails after unschedulableSeconds "
                    f"({exp.unschedulable_seconds}s)")
        raise
    pod_spec = manifest.build_job(exp, plan.trials[0], image=plan.image)["spec"]["template"]["spec"]
    return warning(nodes, pod_spec, exp.name, exp.unschedulable_seconds)
