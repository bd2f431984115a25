"""Experiments on the cluster, from any shell: status, logs, cancel, clean — all by label."""

from __future__ import annotations

import shutil
import time
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path

from . import kube, manifest
from .errors import KubesweepError
from .trialstate import job_outcome


def status(c: kube.Clients, experiment: str | None = None) -> dict[str, Counter]:
    """Per experiment: how many Jobs are active, succeeded, failed (across all namespaces)."""
    selector = f"{manifest.L_EXPERIMENT}={experiment}" if experiment else manifest.L_EXPERIMENT
    out: dict[str, Counter] = defaultdict(Counter)
    for job in c.batch.list_job_for_all_namespaces(label_selector=selector).items:
        plain = c.plain(job)
        exp = plain["metadata"]["labels"][manifest.L_EXPERIMENT]
        state, _, _ = job_outcome(plain)
        out[f"{plain['metadata']['namespace']}/{exp}"][state or "active"] += 1
    return dict(out)


def logs(c: kube.Clients, trial: str, tail: int | None = None) -> str:
    pods = c.core.list_pod_for_all_namespaces(label_selector=f"{manifest.L_TRIAL}={trial}").items
    if not pods:
        raise KubesweepError(f"no pod for trial {trial} (finished Jobs may have been cleaned; see results/)")
    pod = sorted(pods, key=lambda p: p.metadata.creation_timestamp)[-1]
    return kube.pod_log(c, pod.metadata.namespace, pod.metadata.name, manifest.CONTAINER, tail=tail)


def _jobs(c: kube.Clients, experiment: str) -> list:
    return c.batch.list_job_for_all_namespaces(label_selector=f"{manifest.L_EXPERIMENT}={experiment}").items


def cancel(c: kube.Clients, experiment: str) -> int:
    """Stop the experiment: mark its unfinished Jobs cancelled, then delete them (finished ones and
    their results stay). A sweep running it, in any shell, sees the mark through its Job watch and
    stops: it records its trials in flight as cancelled and creates no more. Rerunning the sweep
    later runs the trials that never started; with --retry-failed, the cancelled ones too."""
    from kubernetes.client.exceptions import ApiException

    unfinished = [job for job in _jobs(c, experiment) if job_outcome(c.plain(job))[0] is None]
    mark = {"metadata": {"annotations": {manifest.A_CANCELLED: datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}}}
    gone: set[str] = set()
    for step in ("mark", "delete"):  # all marked first: a running sweep stops at the first mark it sees
        for job in unfinished:
            name, ns = job.metadata.name, job.metadata.namespace
            if name in gone:
                continue
            try:
                if step == "mark":
                    c.batch.patch_namespaced_job(name, ns, mark)
                else:
                    c.batch.delete_namespaced_job(name, ns, propagation_policy="Background")
            except ApiException as exc:
                if exc.status != 404:
                    raise KubesweepError(f"cancelling Job {ns}/{name}: {exc.status} {exc.reason}: {_message(exc)}") from None
                gone.add(name)  # deleted meanwhile (by the sweep itself, or a clean)
    return len(unfinished)


def clean(c: kube.Clients, experiment: str, *, results_dir: Path | None = None, jobs_dir: Path | None = None) -> int:
    """Delete every Job and pod of the experiment; with dirs, also its results/ and jobs/ output.

    One delete-collection request per namespace (foreground: pods go before their Jobs), not one
    request per Job: an experiment of thousands of trials is cleaned in one call.
    """
    selector = f"{manifest.L_EXPERIMENT}={experiment}"
    jobs = _jobs(c, experiment)
    for namespace in sorted({job.metadata.namespace for job in jobs}):
        _delete_jobs(c, namespace, selector)
    for folder in (results_dir, jobs_dir):
        if folder is not None and (folder / experiment).is_dir():
            shutil.rmtree(folder / experiment)
    return len(jobs)


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
            kube.request(c, "DELETE", f"/apis/batch/v1/namespaces/{namespace}/jobs",
                         query={"labelSelector": selector, "propagationPolicy": "Foreground"})
            return
        except ApiException as exc:
            if exc.status not in RETRIED:
                raise KubesweepError(f"deleting the Jobs labelled {selector} in {namespace}: "
                                     f"{exc.status} {exc.reason}: {_message(exc)}") from None
            if attempt == DELETE_ATTEMPTS:
                raise KubesweepError(f"deleting the Jobs labelled {selector} in {namespace}: the API server answered "
                                     f"{exc.status} {exc.reason} {attempt} times in a row ({_message(exc)}); "
                                     "what it deleted stays deleted: run the same clean again") from None
            if exc.status != 504:  # a timeout has waited long enough already
                time.sleep(attempt)


def _message(exc: Exception) -> str:
    import orjson

    body = getattr(exc, "body", None)
    try:
        return str(orjson.loads(body).get("message") or body)
    except (orjson.JSONDecodeError, TypeError, AttributeError):
        return str(body)


def remaining(c: kube.Clients, experiment: str) -> int:
    """How many Jobs and pods of the experiment still exist (deletion is asynchronous)."""
    selector = f"{manifest.L_EXPERIMENT}={experiment}"
    jobs = kube.request(c, "GET", "/apis/batch/v1/jobs", query={"labelSelector": selector, "limit": 1})
    pods = kube.request(c, "GET", "/api/v1/pods", query={"labelSelector": selector, "limit": 1})
    return sum(len(x.get("items") or []) + int((x.get("metadata") or {}).get("remainingItemCount") or 0)
               for x in (jobs, pods))
