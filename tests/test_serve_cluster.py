"""`kubesweep serve` driving real sweeps on the local cluster through its HTTP API (marker:
cluster): a real uvicorn on 127.0.0.1 in a process of its own, a small mnist sweep submitted and
followed to its best trial; the server killed with SIGKILL mid-sweep and a new one on the same
state dir resuming it with no Job created twice; a cancel through the API deleting the unfinished
Jobs, and a retry through the API running them again."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from kubesweep.local import image
from kubesweep.plan import job as manifest
from kubesweep.run import journal

from .conftest import EXAMPLES, ROOT

pytestmark = pytest.mark.cluster

TOKEN = "serve-cluster-" + secrets.token_urlsafe(16)

LAUNCHER = """\
import sys
from pathlib import Path

import uvicorn

from kubesweep import sweep
from kubesweep.serve import auth
from kubesweep.serve.app import create_app
from kubesweep.serve.config import ServeConfig

project, state, kubeconfig, port, token = sys.argv[1:]
cfg = ServeConfig(where=sweep.Workspace.under(Path(project)), target=sweep.Target(kubeconfig=kubeconfig),
                  state_dir=Path(state), host="127.0.0.1", port=int(port),
                  tokens=auth.Tokens((auth.Token("admin", token, None),), from_file=True))
uvicorn.run(create_app(cfg), host="127.0.0.1", port=int(port), log_level="warning")
"""


@pytest.fixture(scope="module")
def trainer(local_cluster):
    return image.ensure(EXAMPLES, "kubesweep/mnist", build_args={"BASE": "kubesweep/python-base:bookworm"}).reference


class Server:
    """`kubesweep serve`'s app under uvicorn in a child process, on a free loopback port."""

    def __init__(self, tmp_path: Path, kubeconfig: Path):
        self.tmp_path, self.kubeconfig = tmp_path, kubeconfig
        self.launcher = tmp_path / "launch.py"
        self.launcher.write_text(LAUNCHER)
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def start(self) -> Server:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.log = open(self.tmp_path / f"server-{self.port}.log", "w")
        self.proc = subprocess.Popen([sys.executable, str(self.launcher), str(self.tmp_path / "project"),
                                      str(self.tmp_path / "state"), str(self.kubeconfig), str(self.port), TOKEN],
                                     cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if self.call("GET", "/api/health")[0] == 200:
                    return self
            except OSError:
                pass
            assert self.proc.poll() is None, self.output()
            time.sleep(0.2)
        raise AssertionError(f"the server did not answer: {self.output()}")

    def output(self) -> str:
        return (self.tmp_path / f"server-{self.port}.log").read_text()[-3000:]

    def call(self, method: str, path: str, body: bytes | None = None, content_type: str = "application/yaml"):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=body, method=method,
                                     headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": content_type})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def experiment(self, name: str) -> dict:
        status, data = self.call("GET", f"/api/experiments/{name}")
        assert status == 200, data
        return data

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@contextlib.contextmanager
def serving(tmp_path, local_cluster):
    server = Server(tmp_path, local_cluster["kubeconfig"]).start()
    try:
        yield server
    finally:
        server.stop()


def until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def jobs_of(api, experiment):
    return api["batch"].list_namespaced_job("default", label_selector=f"{manifest.L_EXPERIMENT}={experiment}").items


def pods_of(api, experiment):
    return api["core"].list_namespaced_pod("default", label_selector=f"{manifest.L_EXPERIMENT}={experiment}").items


@pytest.fixture
def cleaned(api, local_cluster):
    """Experiment names made for the test; their Jobs are deleted afterwards, whatever happened."""
    from kubesweep.k8s import client as kube
    from kubesweep.run import lifecycle

    names: list[str] = []
    yield names
    c = kube.clients(str(local_cluster["kubeconfig"]))
    for name in names:
        lifecycle.clean(c, name, namespace="default")


def test_mnist_sweep_through_the_api_to_its_best_trial(tmp_path, local_cluster, api, trainer, cleaned):
    name = f"serve-mnist-{secrets.token_hex(3)}"
    cleaned.append(name)
    grid = textwrap.dedent(f"""\
    name: {name}
    image: {trainer}
    command: [python3, /app/train.py, "${{epochs}}", "${{optimizer}}", "${{dropout}}"]
    parameters:
      epochs: [1]
      optimizer: [sgd, adam]
      dropout: [0.2, 0.5]
    batchSize: 4
    objective: {{metric: Test accuracy, direction: maximize}}
    resources: {{cpu: 300m, memory: 512Mi}}
    activeDeadlineSeconds: 600
    """)
    started = time.monotonic()
    with serving(tmp_path, local_cluster) as server:
        status, made = server.call("POST", "/api/sweeps", grid.encode())
        assert status == 201, made
        assert made == {"experiment": name, "namespace": "default", "trials": 4}
        # the server drives it; the client that submitted it is gone (urllib closed its connection)
        assert server.experiment(name)["driven"] is True
        done = until(lambda: (e := server.experiment(name))["state"] == "finished" and e, 600,
                     f"{name} to finish: {server.output()}")
        assert done["counts"]["succeeded"] == 4 and not done["driven"], done
        assert done["best"]["value"] > 0.5 and done["best"]["trial"].startswith(name)
        assert {t["state"] for t in done["trials"]} == {"succeeded"}
        assert all(t["node"] and t["duration"] for t in done["trials"])
        status, best = server.call("GET", f"/api/experiments/{name}/results")
        assert status == 200 and best["best"]["trial"] == done["best"]["trial"]
    state = json.loads((tmp_path / "state" / "runs" / f"{name}.json").read_text())
    assert state["state"] == "finished" and state["outcome"]["exit_code"] == 0
    assert len(jobs_of(api, name)) == 4
    print(f"\nserve: a 4-trial mnist sweep through the API in {time.monotonic() - started:.0f}s")


SLEEPER = """\
name: {name}
image: {trainer}
command: [python3, -c, "import time, sys; time.sleep(float(sys.argv[1])); print('score=' + sys.argv[2])", "${{sleep}}", "${{i}}"]
parameters:
  sleep: [{sleep}]
  i: {{min: 1, max: {n}}}
batchSize: 2
objective: {{metric: score}}
resources: {{cpu: 100m, memory: 64Mi}}
"""


def test_server_killed_mid_sweep_is_resumed_by_the_next_without_duplicates(tmp_path, local_cluster, api, trainer,
                                                                            cleaned):
    name = f"serve-resume-{secrets.token_hex(3)}"
    cleaned.append(name)
    server = Server(tmp_path, local_cluster["kubeconfig"]).start()
    try:
        status, made = server.call("POST", "/api/sweeps", SLEEPER.format(name=name, trainer=trainer, sleep=8, n=6).encode())
        assert status == 201 and made["trials"] == 6, made
        # mid-sweep: the first batch's Jobs exist and at least one trial has finished or runs
        until(lambda: len(jobs_of(api, name)) >= 2 and server.experiment(name)["counts"]["running"] >= 1, 180,
              "the first trials to run")
        server.kill()
    finally:
        server.stop()
    before = {j.metadata.name: j.metadata.uid for j in jobs_of(api, name)}
    assert 2 <= len(before) < 6
    state = json.loads((tmp_path / "state" / "runs" / f"{name}.json").read_text())
    assert state["state"] == "running"  # what the killed server left
    with serving(tmp_path, local_cluster) as again:
        assert again.experiment(name)["driven"] is True  # resumed at start, nobody asked
        done = until(lambda: (e := again.experiment(name))["state"] == "finished" and e, 300,
                     f"{name} to finish: {again.output()}")
        assert done["counts"]["succeeded"] == 6, done
    jobs = jobs_of(api, name)
    assert len(jobs) == 6
    after = {j.metadata.name: j.metadata.uid for j in jobs}
    assert all(after[n] == uid for n, uid in before.items())  # the Jobs the first server made were re-attached
    lines = (tmp_path / "project" / "results" / name / journal.FILE).read_text().splitlines()
    assert sorted(json.loads(x)["name"] for x in lines if json.loads(x).get("state") == "succeeded") == sorted(after)
    assert json.loads((tmp_path / "state" / "runs" / f"{name}.json").read_text())["state"] == "finished"


def test_cancel_through_the_api_deletes_the_unfinished_jobs_and_retry_runs_them(tmp_path, local_cluster, api, trainer,
                                                                                  cleaned):
    name = f"serve-cancel-{secrets.token_hex(3)}"
    cleaned.append(name)
    with serving(tmp_path, local_cluster) as server:
        status, made = server.call("POST", "/api/sweeps", SLEEPER.format(name=name, trainer=trainer, sleep=20, n=4).encode())
        assert status == 201, made
        until(lambda: server.experiment(name)["counts"]["running"] == 2, 180, "two trials to run")
        assert server.call("POST", f"/api/experiments/{name}/retry")[0] == 409  # running
        status, cancelled = server.call("POST", f"/api/experiments/{name}/cancel")
        assert status == 200 and cancelled["cancelled"] == 2, cancelled
        done = until(lambda: not (e := server.experiment(name))["driven"] and e, 120, f"{name} to stop")
        assert done["counts"]["cancelled"] == 2 and done["counts"]["pending"] == 2 and done["state"] == "stopped", done
        until(lambda: not jobs_of(api, name), 120, "the cancelled Jobs to be deleted")
        # their pods go in the background (a trainer that is PID 1 ignores SIGTERM: up to the grace
        # period); a retry while they linger would take their end for the retried trials' (the
        # runner's resume attaches a trial's pods by label), so the retry below waits for them
        until(lambda: not pods_of(api, name), 120, "the cancelled trials' pods to go")
        state = json.loads((tmp_path / "state" / "runs" / f"{name}.json").read_text())
        assert state["state"] == "cancelled" and state["outcome"]["stopped"] == "cancelled", state
    # a new server does not start a cancelled sweep again; retry through it runs every trial left
    with serving(tmp_path, local_cluster) as again:
        time.sleep(3)
        assert again.experiment(name)["driven"] is False and not jobs_of(api, name)
        assert os.path.exists(tmp_path / "state" / "submissions" / f"{name}.yaml")
        status, retried = again.call("POST", f"/api/experiments/{name}/retry")
        assert status == 202 and retried["retrying"] is True, retried
        done = until(lambda: (e := again.experiment(name))["state"] == "finished" and e, 300,
                     f"{name} retried to finish: {again.output()}")
        assert done["counts"]["succeeded"] == 4 and done["counts"]["cancelled"] == 0, done
    assert len(jobs_of(api, name)) == 4
    state = json.loads((tmp_path / "state" / "runs" / f"{name}.json").read_text())
    assert state["state"] == "finished" and state["options"]["retry_failed"] is False  # resumed later: no second retry
