"""One sweep of an experiment at a time per project (run/lease.py): a second is refused before it
does anything, the lock goes with its process however that ends, and `kubesweep serve` shows an
experiment another process sweeps as running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

from kubesweep import sweep as sweeps
from kubesweep.errors import KubesweepError
from kubesweep.run import lease


def test_a_second_hold_is_refused_naming_the_first_and_allowed_once_it_let_go(tmp_path):
    with lease.hold(tmp_path, "exp"):
        assert lease.held_by(tmp_path, "exp")["pid"] == os.getpid()
        with pytest.raises(KubesweepError) as exc, lease.hold(tmp_path, "exp"):
            pass
        assert f"process {os.getpid()} on " in str(exc.value) and "kubesweep cancel -e exp" in str(exc.value)
        with lease.hold(tmp_path, "other"):  # another experiment is another lock
            pass
    assert lease.held_by(tmp_path, "exp") is None
    with lease.hold(tmp_path, "exp"):
        pass
    assert lease.held_by(tmp_path, "never") is None


def test_a_killed_sweep_leaves_no_lock_behind(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""\
        import sys, time
        from kubesweep.run import lease
        with lease.hold({str(tmp_path)!r}, "exp"):
            print("held", flush=True)
            time.sleep(600)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert lease.held_by(tmp_path, "exp")["pid"] == holder.pid
        with pytest.raises(KubesweepError, match=f"process {holder.pid} "):
            with lease.hold(tmp_path, "exp"):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert lease.held_by(tmp_path, "exp") is None
    with lease.hold(tmp_path, "exp"):  # the resume after kill -9
        pass


def test_looking_at_the_lock_never_refuses_a_sweep(tmp_path):
    """The page asks held_by() all the time; its shared lock must not make a sweep's start fail."""
    stop = threading.Event()

    def look() -> None:
        while not stop.is_set():
            lease.held_by(tmp_path, "exp")

    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / lease.FILE).touch()
    lookers = [threading.Thread(target=look)]  # looking without a pause: more than any page does
    for t in lookers:
        t.start()
    try:
        for _ in range(50):
            with lease.hold(tmp_path, "exp"):
                pass
    finally:
        stop.set()
        for t in lookers:
            t.join()


def test_a_sweep_of_an_experiment_being_swept_is_refused_before_it_asks_the_cluster(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text("name: busy\nimage: localhost:5000/t:1\ncommand: [run, \"${i}\"]\nparameters: {i: [1, 2]}\n"
                    "objective: {metric: score}\n")
    plan = sweeps.plan(grid)
    where = sweeps.Workspace(tmp_path / "jobs", tmp_path / "results")
    # a kubeconfig whose server nobody answers: any request would be a connection error, not this
    (tmp_path / "config").write_text("apiVersion: v1\nkind: Config\ncurrent-context: t\nclusters: [{name: t, cluster: "
                                     "{server: 'https://127.0.0.1:9'}}]\nusers: [{name: t, user: {token: t}}]\n"
                                     "contexts: [{name: t, context: {cluster: t, user: t}}]\n")
    with lease.hold(where.results_dir, "busy"):
        with pytest.raises(KubesweepError, match="busy is being swept already"):
            sweeps.run(plan, sweeps.Target(kubeconfig=str(tmp_path / "config")), where)
    assert not where.jobs_dir.exists()  # nothing rendered
    assert sorted(p.name for p in (where.results_dir / "busy").iterdir()) == [lease.FILE]


def test_the_server_shows_an_experiment_swept_from_a_shell_as_running(tmp_path):
    from kubesweep.serve.store import Store

    from .test_serve_api import make_workspace

    where, _ = make_workspace(tmp_path)
    store = Store(where.jobs_dir, where.results_dir)
    assert store.summary("mnist")["state"] == "stopped" and "swept_by" not in store.summary("mnist")
    with lease.hold(where.results_dir, "mnist"):  # as `kubesweep sweep` in another shell holds it
        summary = store.summary("mnist")
        assert (summary["state"], summary["driven"], summary["swept_by"]["pid"]) == ("running", False, os.getpid())
        assert store.experiment("mnist")["swept_by"]["pid"] == os.getpid()
        assert "swept_by" not in store.summary("other")
    assert store.summary("mnist")["state"] == "stopped"
