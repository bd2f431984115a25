"""`invoke clean` against a stand-in API server: what it sends, and what it does when the server
times out or refuses (the real path runs in tests/test_sweep_cluster.py)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from kubesweep.sweep import Target, Workspace

from kubesweep.k8s import client as kube
from kubesweep.run import lifecycle
from kubesweep.errors import KubesweepError

from .fakeapi import serve, write_kubeconfig

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
        if method == "GET" and url.path.split("/")[-1] in ("deployments", "services"):  # TensorBoard: none
            assert parse_qs(url.query)["labelSelector"] == ["kubesweep.io/tensorboard=exp"]
            return 200, {"kind": "List", "apiVersion": "v1", "metadata": {}, "items": []}
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
    return [urlsplit(p).path.split("/")[5] for m, p in server.requests if m == "DELETE" and p.startswith("/apis/batch/")]


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
        with pytest.raises(KubesweepError, match=r"labelled kubesweep.io/experiment=exp in a: the API server refused \(403 Forbidden\): jobs.batch is forbidden$"):
            lifecycle.clean(kube.clients(tmp_path / "config"), "exp")
    assert _deletes(server) == ["a"]


def test_clean_deletes_the_experiments_tensorboard_and_passes_over_a_refusal(tmp_path):
    """`kubesweep tensorboard`'s Deployment and Service go with the experiment's Jobs; a user who
    may not list Deployments (403) never made one, and clean goes on."""
    def answer(method, path, body):
        url = urlsplit(path)
        if url.path == "/apis/batch/v1/jobs":
            return 200, {"kind": "JobList", "apiVersion": "batch/v1", "metadata": {}, "items": [
                {"metadata": {"name": "j1", "namespace": "a"}}, {"metadata": {"name": "j2", "namespace": "b"}}]}
        parts = url.path.split("/")
        ns, resource = parts[parts.index("namespaces") + 1], parts[parts.index("namespaces") + 2]
        if method == "GET" and resource in ("deployments", "services"):
            if ns == "b":
                return 403, {"kind": "Status", "status": "Failure", "code": 403, "message": f"{resource} is forbidden"}
            return 200, {"kind": "List", "apiVersion": "v1", "metadata": {}, "items": [
                {"metadata": {"name": "tensorboard-exp", "namespace": ns}}]}
        return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}}

    with serve(answer, tmp_path / "config") as server:
        assert lifecycle.clean(kube.clients(tmp_path / "config"), "exp") == 2
    deleted = [urlsplit(p).path for m, p in server.requests if m == "DELETE"]
    assert deleted == ["/apis/batch/v1/namespaces/a/jobs", "/apis/batch/v1/namespaces/b/jobs",
                       "/apis/apps/v1/namespaces/a/deployments/tensorboard-exp",
                       "/api/v1/namespaces/a/services/tensorboard-exp"]


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
        with pytest.raises(KubesweepError, match=r"cancelling Job a/j1: the API server refused \(403 Forbidden\): jobs.batch \"j1\" is forbidden"):
            lifecycle.cancel(kube.clients(tmp_path / "config"), "exp")
    assert [m for m, _ in server.requests] == ["GET", "PATCH"]  # nothing deleted after a refusal


def _job(name, ns="a", exp="exp", status=None):
    return {"metadata": {"name": name, "namespace": ns, "creationTimestamp": "2026-12-02T10:00:00Z",
                         "labels": {"kubesweep.io/experiment": exp, "kubesweep.io/trial": name}},
            "status": status or {}}


def _pod(trial, phase, created, ns="a", exp="exp", node=None, deleted=None, **status):
    return {"metadata": {"name": f"{trial}-{created[-3:-1]}", "namespace": ns, "creationTimestamp": created,
                         "labels": {"kubesweep.io/experiment": exp, "kubesweep.io/trial": trial},
                         **({"deletionTimestamp": deleted} if deleted else {})},
            "spec": {"nodeName": node} if node else {}, "status": {"phase": phase, **status}}


def _status_server():
    jobs = [
        _job("done", status={"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1}),
        _job("broke", status={"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}),
        _job("runs"), _job("retried"), _job("stranded"), _job("unplaced"), _job("pulling"), _job("nopod"), _job("other", ns="b"), _job("elsewhere", exp="exp2"),
    ]
    pods = [
        _pod("runs", "Running", "2026-12-02T10:00:01Z", node="gpu-1", startTime="2026-12-02T10:00:02Z"),
        _pod("retried", "Failed", "2026-12-02T10:00:01Z", node="gpu-1"),
        _pod("retried", "Running", "2026-12-02T10:00:09Z", node="gpu-2", startTime="2026-12-02T10:00:10Z"),
        _pod("stranded", "Running", "2026-12-02T10:00:01Z", node="gpu-3", deleted="2026-12-02T10:05:00Z", startTime="2026-12-02T10:00:03Z", conditions=[
            {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager"}]),
        _pod("unplaced", "Pending", "2026-12-02T10:00:01Z", conditions=[
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
             "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."}]),
        _pod("pulling", "Pending", "2026-12-02T10:00:01Z", node="cpu-1", containerStatuses=[
            {"name": "trial", "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling"}}}]),
        _pod("other", "Pending", "2026-12-02T10:00:01Z", ns="b", node="cpu-1", containerStatuses=[
            {"name": "trial", "state": {"waiting": {"reason": "ContainerCreating"}}}]),
    ]

    def answer(method, path, body):
        url = urlsplit(path)
        key, _, value = parse_qs(url.query)["labelSelector"][0].partition("=")
        assert key == "kubesweep.io/experiment"
        items = {"/api/v1/pods": pods, "/apis/batch/v1/jobs": jobs}[url.path]
        return 200, {"kind": "List", "apiVersion": "v1", "metadata": {},
                     "items": [o for o in items if value in ("", o["metadata"]["labels"][key])]}
    return answer


def test_status_counts_pending_and_running_and_says_where_and_why(tmp_path):
    with serve(_status_server(), tmp_path / "config"):
        found = lifecycle.status(kube.clients(tmp_path / "config"))
    assert set(found) == {"a/exp", "b/exp", "a/exp2"}
    exp = found["a/exp"]
    assert dict(exp.counts) == {"succeeded": 1, "failed": 1, "running": 3, "pending": 3}
    by_trial = {f.trial: f for f in exp.in_flight}
    assert [f.trial for f in exp.in_flight[:3]] == ["runs", "stranded", "retried"]  # running first, longest running first
    assert (by_trial["retried"].state, by_trial["retried"].node, by_trial["retried"].since) == (
        "running", "gpu-2", "2026-12-02T10:00:10Z")  # the newest of its pods
    assert by_trial["runs"].waiting is None
    assert by_trial["stranded"].waiting == "its node stopped answering (evicted)"
    assert by_trial["unplaced"].waiting == "Unschedulable: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
    assert (by_trial["pulling"].node, by_trial["pulling"].waiting) == ("cpu-1", "ImagePullBackOff")
    assert (by_trial["nopod"].state, by_trial["nopod"].waiting) == ("pending", "no pod yet")
    assert [(f.trial, f.waiting) for f in found["b/exp"].in_flight] == [("other", "ContainerCreating")]


def test_invoke_status_lists_the_trials_in_flight(tmp_path, capsys):
    """...and the pruned ones, whose Jobs are gone, from the journal: how many, the step each
    reached and why it was stopped."""
    from kubesweep.cli import commands as cli
    from kubesweep.run import journal
    from kubesweep.sweep import Workspace

    where = Workspace.under(tmp_path)
    journal.append(where.results_dir / "exp", {"name": "exp-cut", "state": "pruned", "params": {}, "metrics": {"acc": 0.2},
                                               "curves": {"acc": [[1, 0.1], [2, 0.2]]},
                                               "message": "pruned at step 2 (median): its best acc so far is worse"})
    journal.append(where.results_dir / "exp", {"name": "exp-ok", "state": "succeeded", "params": {}, "metrics": {}})
    with serve(_status_server(), tmp_path / "config"):
        cli.status(Target(str(tmp_path / "config")), where=where)
        overview = capsys.readouterr().out
        cli.status(Target(str(tmp_path / "config")), "exp", where=where)
        detail = capsys.readouterr().out
    assert "a/exp2" in overview and "b/exp" in overview and "trials in flight" not in overview
    assert "a/exp2" not in detail  # only the experiment asked for
    row = next(line for line in detail.splitlines() if "│ a/exp " in line)
    assert [cell.strip() for cell in row.strip("│ ").split("│")] == ["a/exp", "3", "3", "1", "1", "1"]
    assert "Unschedulable: 0/3 nodes are available" in detail and "gpu-2" in detail
    pruned = next(line for line in detail.splitlines() if "exp-cut" in line)
    assert [cell.strip() for cell in pruned.strip("│ ").split("│")][:2] == ["exp-cut", "2"] and "pruned at step 2" in pruned


def test_one_namespace_for_users_without_a_cluster_wide_list(tmp_path):
    """A user with a namespace's Role only: the cluster-wide list is refused in one line naming
    what is missing, and --namespace lists (and cancels) within that namespace; so does a
    kubeconfig whose context names the namespace, without --namespace."""
    forbidden = {"kind": "Status", "status": "Failure", "code": 403,
                 "message": 'jobs.batch is forbidden: User "ana" cannot list resource "jobs" in API group "batch" at the cluster scope'}

    def answer(method, path, body):
        url = urlsplit(path)
        if not url.path.startswith(("/apis/batch/v1/namespaces/team/", "/api/v1/namespaces/team/")):
            return 403, forbidden
        if method == "GET":
            return 200, {"kind": "List", "apiVersion": "v1", "metadata": {}, "items": [_job("t1", ns="team")]
                         if url.path.endswith("/jobs") else []}
        return 200, {"kind": "Job", "apiVersion": "batch/v1", "metadata": {"name": "t1", "namespace": "team"}}

    with serve(answer, tmp_path / "config") as server:
        c = kube.clients(tmp_path / "config")
        with pytest.raises(KubesweepError, match=r"^permission denied: ana may not list jobs.batch cluster-wide\. Ask the "
                                                 r"cluster's admin for it .*\(-n/--namespace\)\.$"):
            lifecycle.cancel(c, "exp")
        assert dict(lifecycle.status(c, "exp", "team")["team/exp"].counts) == {"pending": 1}
        assert lifecycle.cancel(c, "exp", "team") == 1
        with pytest.raises(KubesweepError, match=r"no pod for trial t1 in namespace team"):
            lifecycle.logs(c, "t1", namespace="team")
        sent = len(server.requests)
        with pytest.raises(KubesweepError, match=r"^namespace 'Team/x' is not a Kubernetes name"):
            lifecycle.status(c, "exp", "Team/x")
        with pytest.raises(KubesweepError, match=r"^experiment 'a,b' is not a Kubernetes name"):
            lifecycle.cancel(c, "a,b")  # would have widened the label selector
        (tmp_path / "results" / "keep").mkdir(parents=True)
        with pytest.raises(KubesweepError, match=r"^experiment '\.\./keep' is not a Kubernetes name"):
            lifecycle.clean(c, "../keep", results_dir=tmp_path / "results" / "x")
        assert (tmp_path / "results" / "keep").is_dir()
        with pytest.raises(KubesweepError, match=r"^trial '-t1' is not a Kubernetes name"):
            lifecycle.logs(c, "-t1")
        assert len(server.requests) == sent  # each refused before any request
    assert [(m, urlsplit(p).path) for m, p in server.requests[-3:-1]] == [
        ("PATCH", "/apis/batch/v1/namespaces/team/jobs/t1"), ("DELETE", "/apis/batch/v1/namespaces/team/jobs/t1")]

    with serve(answer, tmp_path / "config") as server:
        config = yaml.safe_load((tmp_path / "config").read_text())
        config["contexts"][0]["context"]["namespace"] = "team"
        (tmp_path / "config").write_text(yaml.safe_dump(config))
        c = kube.clients(tmp_path / "config")
        assert c.namespace == "team"
        assert dict(lifecycle.status(c, "exp")["team/exp"].counts) == {"pending": 1}
    assert [urlsplit(p).path for _, p in server.requests] == [
        "/api/v1/pods", "/api/v1/namespaces/team/pods", "/apis/batch/v1/jobs", "/apis/batch/v1/namespaces/team/jobs",
        "/api/v1/namespaces/team/events"]  # why its Job has no pod yet


def test_status_ages_read_at_a_glance():
    from kubesweep.cli.commands import age

    assert [age(s) for s in (None, 0, 119.9, 125, 7199, 7260, 90061)] == ["-", "0s", "119s", "2m05s", "119m59s",
                                                                           "2h01m", "25h01m"]


def _two_trials(tmp_path, name: str):
    """A grid.yaml of two trials with a ready-made image (no build): straight to the cluster."""
    grid = tmp_path / "grid.yaml"
    grid.write_text(f"name: {name}\nimage: localhost:5000/t:1\ncommand: [train, \"${{i}}\"]\n"
                    "parameters: {i: [1, 2]}\nobjective: {metric: acc}\n")
    return grid


def _closed_port() -> int:
    import socket

    with socket.socket() as s:  # bound, never listening: a connection to it is refused
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_commands_without_an_api_server_say_so_and_exit_2_without_a_traceback(tmp_path, capsys):
    """The usual first error on a new machine: the cluster is not up. Every command that talks to
    it names the server and the way out, in one line on stderr, instead of urllib3's traceback."""
    from kubesweep.cli import commands as cli

    port = _closed_port()
    config = str(write_kubeconfig(tmp_path / "config", f"http://127.0.0.1:{port}"))
    grid = _two_trials(tmp_path, "nocluster")
    target = Target(config)
    commands = [(cli.status, (target,)), (cli.logs, (target, "t-1")), (cli.cancel, (target, "exp")),
                (cli.clean, (target, "exp")),
                (cli.sweep, (str(grid), target, Workspace(tmp_path / "jobs", tmp_path / "results")))]
    for fn, args in commands:
        assert cli.guard(fn, *args) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"no answer from the Kubernetes API server at http://127.0.0.1:{port}: connection refused. "
                              "Is the cluster up? `invoke cluster` brings up the local one"), (fn.__name__, err)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, (fn.__name__, err)


def test_a_tls_failure_is_named_as_such(tmp_path, capsys):
    """An https:// kubeconfig for a server that does not speak TLS there (a stand-in answering
    plain HTTP): the handshake fails, and the message says TLS, not "refused"."""
    from kubesweep.cli import commands as cli

    with serve(lambda method, path, body: (200, {}), tmp_path / "plain") as server:
        config = write_kubeconfig(tmp_path / "config", f"https://127.0.0.1:{server.port}")
        assert cli.guard(cli.status, Target(str(config))) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"no answer from the Kubernetes API server at https://127.0.0.1:{server.port}: TLS failed: "), err


def test_other_errors_are_not_dressed_up_as_an_unreachable_server():
    from kubesweep.cli import commands as cli

    def broken():
        raise RuntimeError("a bug, with its traceback")

    with pytest.raises(RuntimeError, match="a bug"):
        cli.guard(broken)


def test_results_of_an_experiment_never_swept_say_so_and_write_nothing(tmp_path, capsys):
    """A mistyped --name used to get a report of nothing but pending trials, written to disk."""
    from kubesweep.cli import commands as cli

    grid = _two_trials(tmp_path, "never")
    assert cli.guard(cli.results, str(grid), Workspace(results_dir=tmp_path / "results")) == 2
    assert capsys.readouterr().err.startswith(
        f"no trial of experiment never has finished yet ({tmp_path / 'results' / 'never' / 'trials.jsonl'} does not exist)")
    assert not (tmp_path / "results").exists()


def test_ctrl_c_leaves_the_trials_in_flight_running_and_says_how_to_resume(tmp_path, capsys):
    """A real SIGINT into a sweep against a stand-in API server, once its two Jobs' creates were
    sent (answered or not: the message counts both alike); they never start. The sweep exits 130
    with one message (what stays on the cluster, what is kept, how to go on) instead of a silent
    exit 1, and deletes nothing."""
    import os
    import signal
    import threading
    import time

    from kubesweep.cli import commands as cli
    from kubesweep.run import journal
    from kubesweep.plan import planner as render

    grid = tmp_path / "grid.yaml"
    grid.write_text("name: ctrlc\nimage: localhost:5000/t:1\ncommand: [train, \"${i}\"]\n"
                    "parameters: {i: [1, 2, 3]}\nobjective: {metric: acc}\n")
    done = render.plan(grid).trials[0].name  # finished in an earlier run
    journal.append(tmp_path / "results" / "ctrlc", {"name": done, "batch": "batch-000", "params": {"i": 1},
                                                    "state": "succeeded", "metrics": {"acc": 0.5}})

    def answer(method: str, path: str, body):
        if method == "POST":
            return 201, body
        if "watch=true" in path:
            time.sleep(0.2)  # an idle watch that the server ends
            return 200, {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "1"}}}
        return 200, {"metadata": {"resourceVersion": "1"}, "items": []}

    with serve(answer, tmp_path / "config") as server:
        def interrupt() -> None:  # once both Jobs are created, as Ctrl-C on the terminal would
            deadline = time.monotonic() + 20
            while sum(m == "POST" and "/jobs" in p for m, p in server.requests) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            os.kill(os.getpid(), signal.SIGINT)

        # Python leaves SIGINT ignored when it started so (a CI runner in the background): this
        # test then needs the handler that turns it into KeyboardInterrupt, as on a terminal
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            threading.Thread(target=interrupt, daemon=True).start()
            code = cli.guard(cli.sweep, str(grid), Target(str(tmp_path / "config")),
                             Workspace(tmp_path / "jobs", tmp_path / "results"))
        finally:
            signal.signal(signal.SIGINT, previous)
    assert code == 130
    err = capsys.readouterr().err
    assert err.strip() == (
        f"ctrlc: interrupted. 0 running and 2 waiting trials stay on the cluster and go on; 1 finished is kept in "
        f"{tmp_path / 'results' / 'ctrlc' / 'trials.jsonl'}. Run the same sweep command again to resume: it "
        "collects the trials in flight and runs the rest, creating none twice. `kubesweep cancel -e ctrlc` stops the "
        "ones in flight instead.")
    assert not any(m == "DELETE" for m, _ in server.requests)
    assert list(journal.load(tmp_path / "results" / "ctrlc")) == [done]


def test_ctrl_c_in_any_other_command_exits_130_without_a_traceback(capsys):
    from kubesweep.cli import commands as cli

    def waiting():
        raise KeyboardInterrupt

    assert cli.guard(waiting) == 130 and capsys.readouterr().err == "interrupted\n"


def test_cancelling_an_experiment_with_nothing_unfinished_says_so(tmp_path, capsys):
    """A mistyped name (or an experiment already done) is not reported as cancelled."""
    from kubesweep.cli import commands as cli

    finished = {"metadata": {"name": "done-1", "namespace": "a"},
                "status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    with serve(lambda method, path, body: (200, {"items": [finished] if "done" in path else []}), tmp_path / "config") as server:
        cli.cancel(Target(str(tmp_path / "config")), "nope")
        cli.cancel(Target(str(tmp_path / "config")), "done", namespace="a")
    assert capsys.readouterr().out.splitlines() == [
        "nope: no unfinished Job of this experiment on the cluster; nothing was cancelled",
        "done: no unfinished Job of this experiment on the cluster in namespace a; nothing was cancelled"]
    assert [m for m, _ in server.requests] == ["GET", "GET"]  # nothing marked, nothing deleted


def test_status_says_why_a_job_has_no_pod_from_its_failed_create_events(tmp_path):
    """A Job whose pod the controller cannot create: `waiting: quota (…)` for a full quota, the
    message for any other refusal; the latest event of that Job (by uid) counts."""
    jobs = [{**_job(n), "metadata": {**_job(n)["metadata"], "uid": f"uid-{n}"}} for n in ("t1", "t2", "t3")]
    quota = "pods \"t1-x\" is forbidden: exceeded quota: cpu, requested: requests.cpu=2, used: requests.cpu=3, limited: requests.cpu=4"
    events = [
        {"involvedObject": {"kind": "Job", "name": "t1", "uid": "uid-t1"}, "lastTimestamp": "2026-12-02T10:00:01Z",
         "message": "an older one"},
        {"involvedObject": {"kind": "Job", "name": "t1", "uid": "uid-t1"}, "lastTimestamp": "2026-12-02T10:00:09Z",
         "message": quota},
        {"involvedObject": {"kind": "Job", "name": "t2", "uid": "uid-t2"}, "lastTimestamp": "2026-12-02T10:00:05Z",
         "message": "pods \"t2-x\" is forbidden: violates PodSecurity \"restricted:latest\""},
        {"involvedObject": {"kind": "Job", "name": "t3", "uid": "an-earlier-t3"}, "lastTimestamp": "2026-12-02T10:00:05Z",
         "message": "of a Job gone"},
    ]

    def answer(method, path, body):
        url = urlsplit(path)
        if url.path.endswith("/events"):
            assert parse_qs(url.query)["fieldSelector"] == ["involvedObject.kind=Job,reason=FailedCreate"]
            return 200, {"kind": "EventList", "metadata": {}, "items": events}
        items = jobs if url.path.endswith("/jobs") else []
        return 200, {"kind": "List", "metadata": {}, "items": items}

    with serve(answer, tmp_path / "config"):
        found = lifecycle.status(kube.clients(tmp_path / "config"), "exp")["a/exp"]
    waiting = {f.trial: f.waiting for f in found.in_flight}
    assert waiting == {"t1": f"waiting: quota ({quota})",
                       "t2": "FailedCreate: pods \"t2-x\" is forbidden: violates PodSecurity \"restricted:latest\"",
                       "t3": "no pod yet"}
