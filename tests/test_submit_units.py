"""How the kubernetes.core path splits a batch into module invocations, and how the direct path's
creates behave at the HTTP boundary (no cluster needed)."""

from __future__ import annotations

import time

import pytest

from kubesweep.run import submit_ansible


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
    from kubesweep.k8s import client as kube
    from kubesweep.run import submit

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


def _dropping_server(drops: dict[str, list[bool]], created: list[str]):
    """Job creates; for each name, ``drops`` says in turn whether the server closes the connection
    instead of answering, and whether it had created the Job before doing so (True) or not."""
    from .fakeapi import DROP

    def answer(method, path, body):
        name = body["metadata"]["name"]
        if drops.get(name):
            if drops[name].pop(0):
                created.append(name)
            return DROP, None
        if name in created:
            return 409, {"kind": "Status", "status": "Failure", "reason": "AlreadyExists", "code": 409}
        created.append(name)
        return 201, {}
    return answer


def test_a_create_whose_connection_closed_unanswered_is_sent_again(tmp_path):
    """The API server closes a connection that sat idle 90 s; a create sent on it just then gets no
    answer. It is sent again: created once whether or not the first one had reached the server (a
    sweep of ~90 s trials died of this before: RemoteDisconnected from urllib3)."""
    from kubesweep.k8s import client as kube
    from kubesweep.run import submit

    from .fakeapi import serve

    created: list[str] = []
    drops = {"lost": [False], "landed": [True], "twice": [False, False]}
    with serve(_dropping_server(drops, created), tmp_path / "config") as server:
        c = kube.clients(tmp_path / "config")
        result = submit.create_jobs(c, "ns", [(n, {"metadata": {"name": n}}) for n in ("lost", "landed", "twice", "plain")])
    assert sorted(created) == ["landed", "lost", "plain", "twice"]  # each exactly once
    # "landed" was created by the unanswered send: its second send is the 409 AlreadyExists
    assert result == {"lost": True, "landed": False, "twice": True, "plain": True}
    assert sorted(p for m, p in server.requests if m == "POST") == ["/apis/batch/v1/namespaces/ns/jobs"] * 8


def test_a_create_never_answered_is_an_error_naming_the_job(tmp_path, monkeypatch):
    """Sent again for kube.OUTAGE_S (an API server restarting), then an error naming the Job."""
    from kubesweep.k8s import client as kube
    from kubesweep.run import submit

    from .fakeapi import serve

    monkeypatch.setattr(kube, "FIRST_WAIT_S", 0.01)
    monkeypatch.setattr(kube, "OUTAGE_S", 0.3)
    created: list[str] = []
    drops = {"gone": [False] * 1000}
    started = time.monotonic()
    with serve(_dropping_server(drops, created), tmp_path / "config") as server:
        c = kube.clients(tmp_path / "config")
        with pytest.raises(submit.SubmitError, match=r"creating Job gone: no answer from the API server \(.*"
                                                     r"Remote end closed connection without response.*\); rerun the sweep"):
            submit.create_jobs(c, "ns", [("gone", {"metadata": {"name": "gone"}})])
    assert time.monotonic() - started >= 0.1 and not created
    assert len(server.requests) >= 2 * kube.SEND_ATTEMPTS and len(server.requests) % kube.SEND_ATTEMPTS == 0


def test_a_create_answered_busy_is_sent_again_and_a_refusal_is_not(tmp_path, monkeypatch):
    """429 and 5xx mean "not now" (throttled, an etcd timeout, the server restarting): sent again;
    so is a 401 or 403 while /readyz says the API server is not ready. Any other refusal is
    reported at once, with what the API server said."""
    from kubesweep.k8s import client as kube
    from kubesweep.run import submit

    from .fakeapi import serve

    monkeypatch.setattr(kube, "FIRST_WAIT_S", 0.01)
    # "starting": refused while the API server is not ready yet (its authorizer's informers not
    # synced, just after a restart), then created; "forbidden": refused by a ready server
    script = {"busy": [429, 503, 500, 201], "bad": [422], "starting": [403, 403, 201], "forbidden": [403]}
    readyz = [500, 500, 200]

    def answer(method, path, body):
        if path == "/readyz":
            return readyz.pop(0), {"kind": "Status", "code": 500}
        status = script[body["metadata"]["name"]].pop(0)
        return status, {"kind": "Status", "code": status, "message": f"answer {status}"}

    def posts() -> int:
        return sum(m == "POST" for m, _ in server.requests)

    with serve(answer, tmp_path / "config") as server:
        c = kube.clients(tmp_path / "config")
        assert submit.create_jobs(c, "ns", [("busy", {"metadata": {"name": "busy"}})]) == {"busy": True}
        assert posts() == 4
        with pytest.raises(submit.SubmitError, match=r"creating Job bad: the API server refused \(422 .*answer 422"):
            submit.create_jobs(c, "ns", [("bad", {"metadata": {"name": "bad"}})])
        assert posts() == 5
        assert submit.create_jobs(c, "ns", [("starting", {"metadata": {"name": "starting"}})]) == {"starting": True}
        assert posts() == 8 and not readyz[:-1]  # each 403 asked /readyz, which said "not ready"
        with pytest.raises(submit.SubmitError, match=r"creating Job forbidden: the API server refused \(403 .*answer 403"):
            submit.create_jobs(c, "ns", [("forbidden", {"metadata": {"name": "forbidden"}})])
        assert posts() == 9 and not readyz  # ready: the refusal is the answer


def test_job_bodies_encode_as_json_dumps_would():
    """The create body is orjson's, and reads back as the standard library's would have written it,
    a non-string key (YAML loads `1:` as an int) included."""
    import json

    from kubesweep.run import submit

    body = {"metadata": {"name": "t-1", "labels": {"a": "b"}, "annotations": {1: "one", "x": "ü"}},
            "spec": {"backoffLimit": 0, "template": {"spec": {"containers": [{"args": ["--lr", "0.1"]}]}}},
            "f": 0.000125, "big": 2**40, "none": None, "yes": True}
    assert json.loads(submit.encode(body)) == json.loads(json.dumps(body))
    assert json.loads(submit.encode(body))["metadata"]["annotations"]["1"] == "one"


def test_a_create_refused_by_a_full_quota_is_held_not_failed(tmp_path):
    """A ResourceQuota on Jobs (count/jobs.batch) refuses the create itself: the trial is not
    created, and its name maps to the quota's message so the sweep holds it and tries again."""
    quota = ('jobs.batch "held" is forbidden: exceeded quota: jobs, requested: count/jobs.batch=1, '
             'used: count/jobs.batch=2, limited: count/jobs.batch=2')
    from kubesweep.k8s import client as kube
    from kubesweep.run import submit

    from .fakeapi import serve

    def answer(method, path, body):
        if path == "/readyz":
            return 200, {}
        if body["metadata"]["name"] == "held":
            return 403, {"kind": "Status", "code": 403, "reason": "Forbidden", "message": quota}
        return 201, body

    with serve(answer, tmp_path / "config"):
        c = kube.clients(tmp_path / "config")
        assert submit.create_jobs(c, "ns", [(n, {"metadata": {"name": n}}) for n in ("made", "held")]) == {
            "made": True, "held": quota}
