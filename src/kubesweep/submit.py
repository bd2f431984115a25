"""Creating Jobs through the Python client: concurrent creates, AlreadyExists means already there.

A Job create is one POST; the API server, not the client, is the bottleneck, so a small pool of
connections keeps it busy. A 409 is not an error: the trial was created by an earlier run that
died before it could record it, and it is simply re-attached.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .errors import KubesweepError

WORKERS = 8


class SubmitError(KubesweepError):
    pass


def create_jobs(batch_api: Any, namespace: str, bodies: list[dict[str, Any]], workers: int = WORKERS) -> dict[str, bool]:
    """Create every Job; return name -> True (created) / False (already existed)."""
    from kubernetes.client.exceptions import ApiException

    def one(body: dict[str, Any]) -> tuple[str, bool]:
        name = body["metadata"]["name"]
        try:
            batch_api.create_namespaced_job(namespace, body)
            return name, True
        except ApiException as exc:
            if exc.status == 409:
                return name, False
            raise SubmitError(f"creating Job {name}: {exc.status} {exc.reason}: {(exc.body or '')[:500]}") from None

    if len(bodies) <= 1:
        return dict(one(b) for b in bodies)
    with ThreadPoolExecutor(max_workers=min(workers, len(bodies))) as pool:
        return dict(pool.map(one, bodies))
