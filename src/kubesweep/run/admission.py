"""Will the cluster take the trials? Asked once, before the first Job is created, with a
server-side dry run (``dryRun=All``): the API server runs authorization, admission webhooks,
ResourceQuota, LimitRange and PodSecurity on the object and stores nothing.

Two objects are tried: one trial's Job, and its pod template as a Pod. The Job is what kubesweep
creates; the Pod is what the Job controller will create for it, and most refusals that matter
(PodSecurity's enforce level, LimitRange maxima, a quota on cpu or GPUs, webhooks on pods) are
decided on pods only: without the second dry run they appear as the Job controller's
FailedCreate events, after the Jobs exist. An identity that may not create pods (a Role with
Jobs only) skips the Pod dry run.

A quota that is full *now* is not a refusal: the trials wait for it (the sweep shows them as
waiting on the quota). A trial that asks for more than the quota allows in all stops the sweep
here, since it could never run.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from kubesweep.errors import KubesweepError
from kubesweep.k8s import client as kube
from kubesweep.k8s import quantity

_QUOTA = re.compile(r"exceeded quota: (?P<quota>[^,]+), requested: (?P<requested>.*?), used: (?P<used>.*?), "
                    r"limited: (?P<limited>[^;]*?)(?:$|;|\s*\()")


class Refused(KubesweepError):
    """The cluster would refuse the trials: said once, before anything was created."""


def quota_exceeded(message: str) -> bool:
    return "exceeded quota" in message


def _amounts(text: str) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for item in text.split(","):
        key, _, value = item.strip().partition("=")
        if key and value:
            try:
                out[key] = quantity.parse(value)
            except ValueError:
                continue
    return out


def never_fits(message: str) -> str | None:
    """For a quota refusal, the resource one trial asks more of than the quota allows at all
    ("requests.cpu: 4 asked, 2 allowed by quota compute"); None when it fits once others finish."""
    m = _QUOTA.search(message)
    if not m:
        return None
    requested, limited = _amounts(m["requested"]), _amounts(m["limited"])
    for key, hard in limited.items():
        if key in requested and requested[key] > hard:
            return f"{key}: one trial asks for {requested[key].normalize():f}, quota {m['quota']} allows {hard.normalize():f} in all"
    return None


def _pod(job: dict[str, Any], name: str) -> dict[str, Any]:
    template = job["spec"]["template"]
    meta = template.get("metadata") or {}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": dict(meta.get("labels") or {}),
                         "annotations": dict(meta.get("annotations") or {})},
            "spec": template["spec"]}


def check(c: kube.Clients, namespace: str, job: dict[str, Any]) -> list[str]:
    """Dry-run one trial's Job, then its Pod, in ``namespace``; return notes worth showing (the
    server's warnings, a quota full for now), or raise ``Refused`` saying why the trials cannot
    run. Nothing is created either way."""
    from kubernetes.client.exceptions import ApiException

    name = f"{job['metadata']['name'][:50]}-dry-run"  # not the trial's: its Job may exist already (resume)
    body = {**job, "metadata": {**job["metadata"], "name": name, "namespace": namespace}}
    notes: list[str] = []
    for kind, obj in (("jobs", body), ("pods", _pod(body, name))):
        try:
            warnings = kube.dry_run_create(c, kind, namespace, obj)
        except ApiException as exc:
            message = kube.status_message(exc)
            if exc.status == 403 and quota_exceeded(message):
                too_big = never_fits(message)
                if too_big:
                    raise Refused(f"{job['metadata']['name']}: no trial can ever run in namespace {namespace}: {too_big} "
                                  "(ask less in resources:, or for a larger quota). Nothing was created.") from None
                notes.append(f"the namespace's quota is full for now ({message}); trials wait for it")
                continue
            if exc.status == 403 and kind == "pods" and kube.rbac_denial(message):
                continue  # may create Jobs but not pods: the Job controller's pods are checked when they are made
            what = "Job" if kind == "jobs" else "Job's pod"
            if exc.status in (401, 403) and kube.rbac_denial(message):
                raise Refused(kube.api_error(exc)) from None
            raise Refused(f"the cluster refuses the trials' {what} (a dry run of {job['metadata']['name']}; nothing was "
                          f"created): {exc.status} {exc.reason}: {message}") from None
        notes += [f"the API server warns about the trials' {'Job' if kind == 'jobs' else 'pods'}: {w}"
                  for w in warnings if w not in " ".join(notes)]
    return notes
