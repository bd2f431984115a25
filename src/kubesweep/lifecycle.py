"""Experiments on the cluster, from any shell: status, logs, cancel, clean — all by label."""

from __future__ import annotations

import shutil
from collections import Counter, defaultdict
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
    return c.core.read_namespaced_pod_log(pod.metadata.name, pod.metadata.namespace, container=manifest.CONTAINER,
                                          tail_lines=tail)


def _jobs(c: kube.Clients, experiment: str) -> list:
    return c.batch.list_job_for_all_namespaces(label_selector=f"{manifest.L_EXPERIMENT}={experiment}").items


def cancel(c: kube.Clients, experiment: str) -> int:
    """Delete the experiment's unfinished Jobs (finished ones and their results stay)."""
    n = 0
    for job in _jobs(c, experiment):
        if job_outcome(c.plain(job))[0] is None:
            c.batch.delete_namespaced_job(job.metadata.name, job.metadata.namespace, propagation_policy="Background")
            n += 1
    return n


def clean(c: kube.Clients, experiment: str, *, results_dir: Path | None = None, jobs_dir: Path | None = None) -> int:
    """Delete every Job and pod of the experiment; with dirs, also its results/ and jobs/ output."""
    n = 0
    for job in _jobs(c, experiment):
        c.batch.delete_namespaced_job(job.metadata.name, job.metadata.namespace, propagation_policy="Foreground")
        n += 1
    for folder in (results_dir, jobs_dir):
        if folder is not None and (folder / experiment).is_dir():
            shutil.rmtree(folder / experiment)
    return n
