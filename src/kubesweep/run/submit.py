"""Creating Jobs through the Python client: concurrent creates, AlreadyExists means already there.

A Job create is one POST of JSON through a ``kube.sender`` (URL, headers and credentials prepared
once per batch). The generated ``create_namespaced_job`` is not used: it validates the body into
pydantic models and parses the answer back into them, which costs the client more CPU than the
API server spends on the create. The answer is not needed (the watch reports what happens
next), so it is not parsed. JSON, not the rendered YAML as it is: the API server spends more CPU
parsing YAML, and its CPU is what limits the rate.

The API server, not the client, is then the bottleneck, so a pool of connections keeps it busy;
bench/submit.py measures this path against `kubectl apply -f dir` and kubernetes.core. A 409 is
not an error: the trial was created by an earlier run that died before it could record it, and
it is simply re-attached.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson

from kubesweep.k8s import client as kube
from kubesweep.plan import job as manifest
from kubesweep.errors import KubesweepError

WORKERS = kube.SUBMIT_WORKERS


class SubmitError(KubesweepError):
    pass


def encode(body: dict[str, Any]) -> bytes:
    """A Job as the JSON the API server gets: orjson, several times faster than json.dumps, with
    json.dumps's leniency for a non-string key (written as a string, as YAML may load one)."""
    return orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)


def create_jobs(c: kube.Clients, namespace: str, bodies: list[tuple[str, dict[str, Any]]],
                workers: int = WORKERS, pool: ThreadPoolExecutor | None = None,
                stop: threading.Event | None = None) -> dict[str, bool | str]:
    """Create every Job from (name, manifest); return name -> True (created) / False (already
    existed) / the API server's message when the namespace's quota is full (not created: try
    again later). A create that fails for a reason that passes (the API server restarting or
    throttling) is sent again for up to kube.OUTAGE_S, or until ``stop`` is set: safe by name,
    since one that had landed is answered 409."""
    import urllib3
    from kubernetes.client.exceptions import ApiException

    send = kube.sender(c, "POST", kube.path("jobs", namespace))

    def one(item: tuple[str, dict[str, Any]]) -> tuple[str, bool | str]:
        name, body = item
        data = encode(body)
        try:
            kube.patiently(lambda: send(data), c=c, stop=stop)
            return name, True
        except ApiException as exc:
            if exc.status == 409:
                return name, False
            message = kube.status_message(exc)
            if exc.status == 403 and "exceeded quota" in message:
                return name, message
            raise SubmitError(f"creating Job {name}: {kube.api_error(exc)}") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise SubmitError(f"creating Job {name}: no answer from the API server ({exc}); "
                              "rerun the sweep to resume") from None

    if len(bodies) <= 1:
        return dict(one(b) for b in bodies)
    if pool is not None:
        return dict(pool.map(one, bodies))
    with ThreadPoolExecutor(max_workers=min(workers, len(bodies))) as own:
        return dict(own.map(one, bodies))


class Manifests:
    """The Jobs of a plan as they are sent: each trial's file under jobs/<experiment>/ as written
    (and validated) by render.

    The file is what is sent. Parsing it with PyYAML cost about 1.2 ms of client CPU per trial,
    so when it holds exactly the bytes render writes for this trial (the usual case: a sweep
    renders before it runs), the same Job is built from the template instead (about 40 µs;
    tests/test_manifest.py holds the parsed file and the built Job equal). A file edited by hand
    is parsed, and sent, as it is."""

    def __init__(self, plan: Any, jobs_dir: Path):
        self.plan, self.jobs_dir = plan, jobs_dir
        self.trials = {t.name: t for t in plan.trials}
        self.template: manifest.JobTemplate | None = None  # made on the first use

    def path(self, batch: str, name: str) -> Path:
        return self.jobs_dir / batch / f"{name}.yaml"

    def job(self, batch: str, name: str) -> dict[str, Any]:
        data = self.path(batch, name).read_bytes()
        trial = self.trials.get(name)
        if trial is not None:
            if self.template is None:
                self.template = manifest.JobTemplate(self.plan.experiment, image=self.plan.image)
            values = self.template.values(trial)  # computed once, for the comparison and the Job
            if data == self.template.render(trial, values).encode():
                return self.template.job(trial, values)
        return manifest.load(data)


def delete_jobs(c: kube.Clients, namespace: str, names: list[str], stop: threading.Event | None = None) -> None:
    """Delete these Jobs (and, in the background, their pods); one already gone is no error."""
    from kubernetes.client.exceptions import ApiException

    for name in names:
        try:
            kube.patiently(lambda n=name: c.batch.delete_namespaced_job(n, namespace, propagation_policy="Background"),
                           c=c, stop=stop)
        except ApiException as exc:
            if exc.status != 404:
                raise
