"""Experiments on the cluster, from any shell: status, logs, cancel, clean — all by label."""

from __future__ import annotations

import shutil
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from kubesweep.k8s import client as kube
from kubesweep.plan import job as manifest
from kubesweep.spec.rules import DNS_LABEL
from kubesweep.errors import KubesweepError
from kubesweep.run import kueue
from kubesweep.run.trialstate import PENDING, RUNNING, job_outcome, pod_lost, pod_phase, pod_problem


@dataclass
class InFlight:
    """An unfinished trial as the cluster shows it: where it runs, since when, what it waits on."""

    trial: str
    state: str  # pending | running
    node: str | None = None
    since: str | None = None  # when it entered that state (RFC 3339)
    waiting: str | None = None  # why a pending trial is not running yet (Unschedulable, ImagePullBackOff, ...)


@dataclass
class ExperimentStatus:
    counts: Counter = field(default_factory=Counter)  # pending, running, succeeded, failed
    in_flight: list[InFlight] = field(default_factory=list)


def status(c: kube.Clients, experiment: str | None = None, namespace: str | None = None) -> dict[str, ExperimentStatus]:
    """Per namespace/experiment (in every namespace, or in one): trials pending, running, succeeded
    and failed, and each unfinished trial's node, start and what it waits on. Two list requests
    (the Jobs and their pods, by label), read as plain JSON: an experiment may have thousands."""
    if experiment:
        _check_name("experiment", experiment)
    selector = f"{manifest.L_EXPERIMENT}={experiment}" if experiment else manifest.L_EXPERIMENT
    newest: dict[tuple[str, str], dict] = {}  # (namespace, trial) -> the trial's latest pod
    for pod in _list(c, "pods", selector, namespace):
        meta = pod["metadata"]
        key = (meta["namespace"], (meta.get("labels") or {}).get(manifest.L_TRIAL, ""))
        if key not in newest or meta.get("creationTimestamp", "") > newest[key]["metadata"].get("creationTimestamp", ""):
            newest[key] = pod
    out: dict[str, ExperimentStatus] = defaultdict(ExperimentStatus)
    jobs = _list(c, "jobs", selector, namespace)
    queued = _queued(c, [j for j in jobs if kueue.suspended(j) and kueue.queue_of(j) and job_outcome(j)[0] is None])
    failed_creates = _failed_creates(c, {j["metadata"]["namespace"] for j in jobs
                                         if (j["metadata"]["namespace"], j["metadata"]["name"]) not in newest})
    for job in jobs:
        meta = job["metadata"]
        exp = out[f"{meta['namespace']}/{meta['labels'][manifest.L_EXPERIMENT]}"]
        state, _, _ = job_outcome(job)
        if state is None and (meta["namespace"], meta["name"]) in queued:
            flight = InFlight(meta["name"], PENDING, since=meta.get("creationTimestamp"),
                              waiting=queued[(meta["namespace"], meta["name"])])
            exp.in_flight.append(flight)
            state = flight.state
        elif state is None:
            flight = _in_flight(job, newest.get((meta["namespace"], meta["name"])),
                                failed_creates.get(meta.get("uid") or ""))
            exp.in_flight.append(flight)
            state = flight.state
        exp.counts[state] += 1
    for exp in out.values():
        exp.in_flight.sort(key=lambda f: (f.state != RUNNING, f.since or "", f.trial))
    return dict(out)


def _queued(c: kube.Clients, jobs: list[dict]) -> dict[tuple[str, str], str]:
    """(namespace, Job) -> what a Job Kueue holds suspended waits on: "queued in Q: " Kueue's
    reason (its Workload's) and place in line (the visibility API), as far as they may be read."""
    if not jobs:
        return {}
    workloads = kueue.workloads_by_job(c, {j["metadata"]["namespace"] for j in jobs})
    places: dict[tuple[str, str], dict[str, kueue.Position]] = {}
    out: dict[tuple[str, str], str] = {}
    for job in jobs:
        ns, name, queue = job["metadata"]["namespace"], job["metadata"]["name"], kueue.queue_of(job) or ""
        wl = workloads.get((ns, name))
        why = kueue.waiting(wl) if wl is not None else None
        if why is None:
            out[(ns, name)] = f"queued in {queue}" + ("" if wl is not None else " (no Kueue Workload seen)")
            continue
        if (ns, queue) not in places:
            places[(ns, queue)] = kueue.positions(c, ns, queue)
        place = places[(ns, queue)].get(wl["metadata"]["name"]) if wl is not None else None
        out[(ns, name)] = f"queued in {queue}: {kueue.described(why, place)}"
    return out


def _failed_creates(c: kube.Clients, namespaces: set[str]) -> dict[str, str]:
    """Job uid -> the message of its latest FailedCreate event (why the Job controller could not
    make its pod: a full quota, an admission refusal), in the namespaces of Jobs without a pod.
    Events that may not (or cannot) be read leave it unsaid: they only explain a wait."""
    from kubesweep.run.watcher import FAILED_CREATE

    found: dict[str, tuple[str, str]] = {}
    for ns in sorted(namespaces):
        try:
            items = kube.request(c, "GET", kube.path("events", ns), query={"fieldSelector": FAILED_CREATE}).get("items") or []
        except Exception:  # noqa: BLE001 - best effort, as above
            continue
        for ev in items:
            uid = (ev.get("involvedObject") or {}).get("uid") or ""
            when = ev.get("lastTimestamp") or ev.get("eventTime") or ""
            if uid and when >= found.get(uid, ("", ""))[0]:
                found[uid] = (when, " ".join(str(ev.get("message") or "").split()))
    return {uid: message for uid, (_, message) in found.items()}


def _in_flight(job: dict, pod: dict | None, failed_create: str | None = None) -> InFlight:
    name = job["metadata"]["name"]
    if pod is None:  # the Job controller has not made its pod yet (or is about to retry)
        waiting = "no pod yet"
        if failed_create:
            waiting = (f"waiting: quota ({failed_create})" if "exceeded quota" in failed_create
                       else f"FailedCreate: {failed_create}")
        return InFlight(name, PENDING, since=job["metadata"].get("creationTimestamp"), waiting=waiting)
    node = (pod.get("spec") or {}).get("nodeName")
    status = pod.get("status") or {}
    phase = pod_phase(pod)
    if phase == "Running":  # an evicted pod on a node that stopped answering stays Running until it returns
        return InFlight(name, RUNNING, node, status.get("startTime"),
                        waiting="its node stopped answering (evicted)" if pod_lost(pod) else None)
    if phase == "Succeeded":  # the Job's Complete condition follows within seconds
        return InFlight(name, RUNNING, node, status.get("startTime"), waiting="finishing")
    reason, message, _ = pod_problem(pod)
    if phase == "Failed":  # the Job controller retries it (within backoffLimit)
        reason = f"retrying after {reason or 'a failure'}"
    elif reason == "Unschedulable" and message:
        reason = f"Unschedulable: {message}"
    elif reason is None:
        waiting = [cs["state"]["waiting"].get("reason") for cs in status.get("containerStatuses") or []
                   if (cs.get("state") or {}).get("waiting")]
        reason = next(filter(None, waiting), None) or ("starting" if node else "waiting for the scheduler")
    return InFlight(name, PENDING, node, pod["metadata"].get("creationTimestamp"), waiting=reason)


def logs(c: kube.Clients, trial: str, tail: int | None = None, namespace: str | None = None) -> str:
    _check_name("trial", trial)
    pods = _list(c, "pods", f"{manifest.L_TRIAL}={trial}", namespace)
    if not pods:
        raise KubesweepError(f"no pod for trial {trial}" + (f" in namespace {namespace}" if namespace else "")
                             + " (finished Jobs may have been cleaned; see results/)")
    pod = max(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "")["metadata"]
    return kube.pod_log(c, pod["namespace"], pod["name"], manifest.CONTAINER, tail=tail)


def _check_name(what: str, value: str) -> None:
    """Names go into label selectors and paths: refuse anything but a Kubernetes name, before any request."""
    if not (DNS_LABEL.fullmatch(value) and len(value) <= 63):
        raise KubesweepError(f"{what} {value!r} is not a Kubernetes name (lowercase letters, digits and '-', "
                             "starting and ending with a letter or digit, at most 63)")


def _list(c: kube.Clients, resource: str, selector: str, namespace: str | None) -> list[dict]:
    """The objects of ``resource`` with the label selector, as plain JSON: in ``namespace``, or in
    every namespace. An identity that may not list every namespace (a kubeconfig scoped to one)
    gets those of its context's namespace instead, as if it had passed --namespace."""
    from kubernetes.client.exceptions import ApiException

    if namespace is not None:
        _check_name("namespace", namespace)
    try:
        found = kube.request(c, "GET", kube.path(resource, namespace), query={"labelSelector": selector})
    except ApiException as exc:
        if exc.status == 403 and namespace is None and c.namespace:
            return _list(c, resource, selector, c.namespace)
        if exc.status in (401, 403):
            raise KubesweepError(kube.api_error(exc)) from None
        where = f"in namespace {namespace}" if namespace else "in all namespaces"
        raise KubesweepError(f"listing {resource} labelled {selector} {where}: {exc.status} {exc.reason}: "
                             f"{kube.status_message(exc)}") from None
    return found.get("items") or []


def cancel(c: kube.Clients, experiment: str, namespace: str | None = None) -> int:
    """Stop the experiment: mark its unfinished Jobs cancelled, then delete them (finished ones and
    their results stay). A sweep running it, in any shell, sees the mark through its Job watch and
    stops: it records its trials in flight as cancelled and creates no more. Rerunning the sweep
    later runs the trials that never started; with --retry-failed, the cancelled ones too."""
    from kubernetes.client.exceptions import ApiException

    _check_name("experiment", experiment)
    unfinished = [job["metadata"] for job in _list(c, "jobs", f"{manifest.L_EXPERIMENT}={experiment}", namespace)
                  if job_outcome(job)[0] is None]
    mark = {"metadata": {"annotations": {manifest.A_CANCELLED: datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}}}
    gone: set[str] = set()
    for step in ("mark", "delete"):  # all marked first: a running sweep stops at the first mark it sees
        for meta in unfinished:
            name, ns = meta["name"], meta["namespace"]
            if (ns, name) in gone:
                continue
            try:
                if step == "mark":
                    c.batch.patch_namespaced_job(name, ns, mark)
                else:
                    c.batch.delete_namespaced_job(name, ns, propagation_policy="Background")
            except ApiException as exc:
                if exc.status != 404:
                    raise KubesweepError(f"cancelling Job {ns}/{name}: {kube.api_error(exc)}") from None
                gone.add((ns, name))  # deleted meanwhile (by the sweep itself, or a clean)
    return len(unfinished)


def clean(c: kube.Clients, experiment: str, *, results_dir: Path | None = None, jobs_dir: Path | None = None,
          namespace: str | None = None) -> int:
    """Delete every Job and pod of the experiment; with dirs, also its results/ and jobs/ output.

    One delete-collection request per namespace (foreground: pods go before their Jobs), not one
    request per Job: an experiment of thousands of trials is cleaned in one call.
    """
    _check_name("experiment", experiment)  # also a folder name below: nothing outside results/ and jobs/
    selector = f"{manifest.L_EXPERIMENT}={experiment}"
    jobs = _list(c, "jobs", selector, namespace)
    namespaces = {job["metadata"]["namespace"] for job in jobs} | ({namespace} if namespace else set())
    for ns in sorted({job["metadata"]["namespace"] for job in jobs}):
        _delete_jobs(c, ns, selector)
    for ns in sorted(namespaces):
        _delete_tensorboard(c, ns, experiment)
    for folder in (results_dir, jobs_dir):
        if folder is not None and (folder / experiment).is_dir():
            shutil.rmtree(folder / experiment)
    return len(jobs)


def _delete_tensorboard(c: kube.Clients, namespace: str, experiment: str) -> None:
    """The experiment's TensorBoard (`kubesweep tensorboard`), if it has one. A user whose Role may
    not list Deployments or Services (a team member's) never started one: a refusal is not an error."""
    from kubernetes.client.exceptions import ApiException

    from kubesweep.run import tensorboard

    try:
        tensorboard.delete(c, namespace, experiment)
    except ApiException as exc:
        if exc.status not in (403, 404):
            raise


# The API server gives a request 60 s. Deleting thousands of Jobs in the foreground on a busy
# control plane can take longer (2,000 Jobs on two shared cores did): the server then answers
# 504 and stops where it was. What it marked for deletion stays marked, and marking a Job again
# writes nothing, so the same request continues from there.
DELETE_ATTEMPTS = 10
RETRIED = {429, 503, 504}  # too many requests, unavailable, timed out


def _delete_jobs(c: kube.Clients, namespace: str, selector: str) -> None:
    from kubernetes.client.exceptions import ApiException

    for attempt in range(1, DELETE_ATTEMPTS + 1):
        try:
            kube.request(c, "DELETE", kube.path("jobs", namespace),
                         query={"labelSelector": selector, "propagationPolicy": "Foreground"})
            return
        except ApiException as exc:
            if exc.status not in RETRIED:
                raise KubesweepError(f"deleting the Jobs labelled {selector} in {namespace}: "
                                     f"{kube.api_error(exc)}") from None
            if attempt == DELETE_ATTEMPTS:
                raise KubesweepError(f"deleting the Jobs labelled {selector} in {namespace}: the API server answered "
                                     f"{exc.status} {exc.reason} {attempt} times in a row ({kube.status_message(exc)}); "
                                     "what it deleted stays deleted: run the same clean again") from None
            if exc.status != 504:  # a timeout has waited long enough already
                time.sleep(attempt)


def remaining(c: kube.Clients, experiment: str, namespace: str | None = None) -> int:
    """How many Jobs and pods of the experiment still exist (deletion is asynchronous): one
    request of one item per kind, with the server's count of the rest."""
    selector = f"{manifest.L_EXPERIMENT}={experiment}"
    found = [kube.request(c, "GET", kube.path(resource, namespace), query={"labelSelector": selector, "limit": 1})
             for resource in ("jobs", "pods")]
    return sum(len(x.get("items") or []) + int((x.get("metadata") or {}).get("remainingItemCount") or 0)
               for x in found)
