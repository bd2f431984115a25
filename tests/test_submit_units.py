"""How the kubernetes.core path splits a batch into module invocations (no cluster needed)."""

from __future__ import annotations

import pytest

from kubesweep import submit_ansible


@pytest.mark.parametrize(("n", "k"), [(7, 3), (1000, 4), (5, 5), (3, 8), (0, 2)])
def test_chunks_keep_every_job_once_in_order_and_near_equal(n, k):
    items = list(range(n))
    parts = submit_ansible.chunks(items, k)
    assert [x for p in parts for x in p] == items
    assert all(parts)
    assert len(parts) == min(n, k)
    if parts:
        assert max(map(len, parts)) - min(map(len, parts)) <= 1


@pytest.mark.parametrize(("n", "cpus", "expected"), [
    (1, 2, 1),        # a refill of one trial: one module process
    (49, 2, 1),
    (120, 2, 3),      # no chunk under MIN_PER_CHUNK Jobs
    (1000, 2, 4),     # two per core
    (1000, 64, submit_ansible.MAX_CHUNKS),
])
def test_chunk_count_scales_with_the_batch_and_the_cores(n, cpus, expected):
    assert submit_ansible.chunk_count(n, cpus) == expected


def test_creates_reuse_the_pooled_connections(tmp_path):
    """Every concurrent create goes over a kept-open connection: the client's pool holds as many as
    there are creates in flight. (The pool is sized when the client is made; sized afterwards it
    stayed at 5 per CPU and each extra create paid for a new connection.)"""
    from kubesweep import kube, submit

    from .fakeapi import serve

    created = []

    def answer(method, path, body):
        created.append((path, body["metadata"]["name"]))
        return 201, {}

    with serve(answer, tmp_path / "config") as server:
        c = kube.clients(tmp_path / "config")
        bodies = [(f"job-{i}", {"metadata": {"name": f"job-{i}"}}) for i in range(1500)]
        for _ in range(2):  # the second batch finds the connections open
            created.clear()
            assert submit.create_jobs(c, "ns", bodies) == {n: True for n, _ in bodies}
            assert sorted(created) == sorted(("/apis/batch/v1/namespaces/ns/jobs", n) for n, _ in bodies)
        # at most the pool (how many below it depends on how the threads happened to overlap)
        assert 0 < len(server.connections) <= kube.POOL_CONNECTIONS


def test_job_bodies_encode_as_json_dumps_would():
    """The create body is orjson's, and reads back as the standard library's would have written it,
    a non-string key (YAML loads `1:` as an int) included."""
    import json

    from kubesweep import submit

    body = {"metadata": {"name": "t-1", "labels": {"a": "b"}, "annotations": {1: "one", "x": "ü"}},
            "spec": {"backoffLimit": 0, "template": {"spec": {"containers": [{"args": ["--lr", "0.1"]}]}}},
            "f": 0.000125, "big": 2**40, "none": None, "yes": True}
    assert json.loads(submit.encode(body)) == json.loads(json.dumps(body))
    assert json.loads(submit.encode(body))["metadata"]["annotations"]["1"] == "one"
