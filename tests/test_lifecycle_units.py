"""`invoke clean` against a stand-in API server: what it sends, and what it does when the server
times out or refuses (the real path runs in tests/test_sweep_cluster.py)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from kubesweep import kube, lifecycle
from kubesweep.errors import KubesweepError

from .fakeapi import serve

TIMEOUT = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Timeout", "code": 504,
           "message": "Timeout: request did not complete within the allotted timeout"}


def _server(deletes: dict[str, list[int]]):
    """Jobs of experiment `exp` in namespaces a (two) and b (one); each delete-collection in a
    namespace gets the next status from ``deletes`` (then 200)."""
    def answer(method, path, body):
        url = urlsplit(path)
        if method == "GET" and url.path == "/apis/batch/v1/jobs":
            assert parse_qs(url.query)["labelSelector"] == ["kubesweep.io/experiment=exp"]
            return 200, {"kind": "JobList", "apiVersion": "batch/v1", "metadata": {}, "items": [
                {"metadata": {"name": n, "namespace": ns}} for ns, n in (("a", "j1"), ("a", "j2"), ("b", "j3"))]}
        namespace = url.path.split("/")[5]
        assert method == "DELETE" and url.path == f"/apis/batch/v1/namespaces/{namespace}/jobs"
        assert parse_qs(url.query) == {"labelSelector": ["kubesweep.io/experiment=exp"],
                                       "propagationPolicy": ["Foreground"]}
        status = deletes[namespace].pop(0) if deletes[namespace] else 200
        if status == 504:
            return 504, TIMEOUT
        if status != 200:
            return status, {"kind": "Status", "status": "Failure", "code": status, "message": "jobs.batch is forbidden"}
        return 200, {"kind": "JobList", "apiVersion": "batch/v1", "metadata": {}, "items": []}
    return answer


def _deletes(server) -> list[str]:
    return [urlsplit(p).path.split("/")[5] for m, p in server.requests if m == "DELETE"]


def test_clean_sends_a_timed_out_delete_again_until_the_server_finishes_it(tmp_path):
    """The API server stops a delete-collection at its 60 s request timeout (504) with part of the
    Jobs marked; the same request continues from there."""
    with serve(_server({"a": [504, 504], "b": []}), tmp_path / "config") as server:
        assert lifecycle.clean(kube.clients(tmp_path / "config"), "exp") == 3
    assert _deletes(server) == ["a", "a", "a", "b"]


def test_clean_gives_up_after_repeated_timeouts_and_keeps_the_outputs(tmp_path):
    results = tmp_path / "results"
    (results / "exp").mkdir(parents=True)
    with serve(_server({"a": [504] * lifecycle.DELETE_ATTEMPTS, "b": []}), tmp_path / "config") as server:
        with pytest.raises(KubesweepError, match=r"in a: the API server answered 504 Gateway Timeout 10 times in a row "
                                                 r"\(Timeout: request did not complete .*\); .* run the same clean again"):
            lifecycle.clean(kube.clients(tmp_path / "config"), "exp", results_dir=results)
    assert _deletes(server) == ["a"] * lifecycle.DELETE_ATTEMPTS
    assert (results / "exp").is_dir()  # nothing of the results goes while Jobs may still be there


def test_clean_reports_a_refusal_at_once(tmp_path):
    with serve(_server({"a": [403], "b": []}), tmp_path / "config") as server:
        with pytest.raises(KubesweepError, match=r"labelled kubesweep.io/experiment=exp in a: 403 Forbidden: jobs.batch is forbidden$"):
            lifecycle.clean(kube.clients(tmp_path / "config"), "exp")
    assert _deletes(server) == ["a"]


def test_cancel_marks_every_unfinished_job_before_deleting_any(tmp_path):
    """A sweep running the experiment stops at the first mark it sees, so every mark goes out
    before the first delete; a finished Job is left alone, one deleted meanwhile is skipped."""
    patches: dict[str, object] = {}

    def answer(method, path, body):
        url = urlsplit(path)
        if method == "GET":
            done = {"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1}
            return 200, {"kind": "JobList", "apiVersion": "batch/v1", "metadata": {}, "items": [
                {"metadata": {"name": n, "namespace": "a"}, "status": done if n == "finished" else {}}
                for n in ("finished", "running", "gone")]}
        name = url.path.rsplit("/", 1)[1]
        if name == "gone":
            return 404, {"kind": "Status", "status": "Failure", "code": 404, "message": f"jobs.batch \"{name}\" not found"}
        if method == "PATCH":
            patches[name] = body
        return 200, {"kind": "Job", "apiVersion": "batch/v1", "metadata": {"name": name, "namespace": "a"}}

    with serve(answer, tmp_path / "config") as server:
        assert lifecycle.cancel(kube.clients(tmp_path / "config"), "exp") == 2
    sent = [(m, urlsplit(p).path.rsplit("/", 1)[1]) for m, p in server.requests if m != "GET"]
    assert sent == [("PATCH", "running"), ("PATCH", "gone"), ("DELETE", "running")]
    assert list(patches) == ["running"] and "kubesweep.io/cancelled" in patches["running"]["metadata"]["annotations"]


def test_cancel_reports_a_refused_mark(tmp_path):
    def answer(method, path, body):
        if method == "GET":
            return 200, {"kind": "JobList", "apiVersion": "batch/v1", "metadata": {},
                         "items": [{"metadata": {"name": "j1", "namespace": "a"}, "status": {}}]}
        return 403, {"kind": "Status", "status": "Failure", "code": 403, "message": "jobs.batch \"j1\" is forbidden"}

    with serve(answer, tmp_path / "config") as server:
        with pytest.raises(KubesweepError, match=r"cancelling Job a/j1: 403 Forbidden: jobs.batch \"j1\" is forbidden"):
            lifecycle.cancel(kube.clients(tmp_path / "config"), "exp")
    assert [m for m, _ in server.requests] == ["GET", "PATCH"]  # nothing deleted after a refusal
