"""`kubesweep serve`'s API without a cluster: a workspace with real plans (the mnist example planned
and rendered by the library) and journals written by the library, read through FastAPI's TestClient
and, for the event stream, through a real uvicorn on 127.0.0.1. The manager of the sweeps the
server drives is a small double at its boundary (start/stop/live/driven)."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubesweep import sweep
from kubesweep.errors import SpecError
from kubesweep.run import journal
from kubesweep.run.trialstate import TrialRecord
from kubesweep.serve import auth, routes_read
from kubesweep.serve.app import create_app
from kubesweep.serve.config import ServeConfig
from kubesweep.serve.store import Store

ROOT = Path(__file__).resolve().parents[1]
GRID = ROOT / "examples" / "mnist" / "grid.yaml"
METRIC = "Test accuracy"
ALICE, BOB, OPS = "alice-token-0123456789abcdef", "bob-token-0123456789abcdef", "ops-token-0123456789abcdef"


class Manager:
    """The boundary the API reads of runs.Manager: which sweeps it drives and their trials in flight."""

    def __init__(self) -> None:
        self.started = self.stopped = 0
        self.rows: dict[str, dict[str, dict]] = {}
        self.running: set[str] = set()

    def start(self) -> None:
        self.started += 1

    def stop(self) -> None:
        self.stopped += 1

    def live(self, name: str) -> dict[str, dict]:
        return self.rows.get(name, {})

    def driven(self) -> set[str]:
        return set(self.running)


def record(trial: sweep.plan, state: str, acc: float | None = None, steps: int = 0) -> dict:
    curve = [[s, round((acc or 0) * s / max(steps, 1), 4)] for s in range(1, steps + 1)]
    return TrialRecord(name=trial.name, batch=f"batch-{trial.batch:03d}", params=trial.params, state=state, node="n1",
                       start="2026-01-01T00:00:00Z", end="2026-01-01T00:01:30Z",
                       metrics={METRIC: acc} if acc is not None else {},
                       message="exit 1" if state == "failed" else None,
                       curves={METRIC: curve} if curve else {}).as_dict()


@pytest.fixture
def workspace(tmp_path: Path):
    return make_workspace(tmp_path)


def make_workspace(tmp_path: Path) -> tuple[sweep.Workspace, dict]:
    """mnist (12 trials) in team-a with 5 finished, and a copy named other in team-b."""
    where = sweep.Workspace.under(tmp_path)
    plans = {}
    for name, ns in (("mnist", "team-a"), ("other", "team-b")):
        plan = sweep.plan(GRID, name=name, namespace=ns)
        sweep.render(plan, where.jobs_dir)
        plans[name] = plan
    t = plans["mnist"].trials
    for rec in (record(t[0], "succeeded", 0.91, 5), record(t[1], "succeeded", 0.97, 5),
                record(t[2], "failed"), record(t[3], "pruned", 0.4, 2), record(t[4], "succeeded", 0.85, 5)):
        journal.append(where.results_dir / "mnist", rec)
    return where, plans


def config(where: sweep.Workspace, tmp_path: Path, *, host: str = "127.0.0.1",
           tokens: auth.Tokens | None = None) -> ServeConfig:
    return ServeConfig(where, sweep.Target(), tmp_path / "state", host, 8080, tokens or auth.Tokens.generated())


def team_tokens(tmp_path: Path) -> auth.Tokens:
    f = tmp_path / "tokens.yaml"
    f.write_text(f"tokens:\n  - {{name: alice, token: {ALICE}, team: team-a, namespaces: [team-a]}}\n"
                 f"  - {{name: bob, token: {BOB}, team: team-b}}\n"
                 f"  - {{name: ops, token: {OPS}, admin: true}}\n")
    return auth.load(f)


def client(app, host: str = "127.0.0.1:8080") -> TestClient:
    return TestClient(app, base_url=f"http://{host}")


# --- reading -------------------------------------------------------------------------------------


def test_listing_counts_best_and_trials(workspace, tmp_path):
    where, plans = workspace
    manager = Manager()
    app = create_app(config(where, tmp_path), manager=manager)
    with client(app) as c:
        assert manager.started == 1
        listed = c.get("/api/experiments").json()["experiments"]
        assert [e["name"] for e in listed] == ["mnist", "other"]
        mnist = listed[0]
        assert mnist["namespace"] == "team-a" and mnist["metric"] == METRIC and mnist["direction"] == "maximize"
        assert mnist["parameters"] == ["epochs", "optimizer", "dropout"]
        assert mnist["total"] == 12
        assert mnist["counts"] == {"pending": 7, "running": 0, "succeeded": 3, "failed": 1, "pruned": 1, "cancelled": 0}
        best = plans["mnist"].trials[1]
        assert mnist["best"] == {"trial": best.name, "value": 0.97, "params": best.params}
        assert mnist["state"] == "stopped" and mnist["driven"] is False
        assert listed[1]["best"] is None and listed[1]["state"] == "idle" and listed[1]["counts"]["pending"] == 12

        one = c.get("/api/experiments/mnist").json()
        assert [r["name"] for r in one["trials"]] == [t.name for t in plans["mnist"].trials]
        first = one["trials"][0]
        assert first["state"] == "succeeded" and first["metric"] == 0.91 and first["node"] == "n1"
        assert first["duration"] == 90.0 and first["step"] == 5 and first["params"] == plans["mnist"].trials[0].params
        assert one["trials"][2]["message"] == "exit 1" and one["trials"][11]["state"] == "pending"
        assert c.get("/api/experiments/nope").status_code == 404
        assert c.get("/api/health").json() == {"ok": True}
        assert "/api/experiments/{name}" in c.get("/openapi.json").json()["paths"]
    assert manager.stopped == 1


def test_minimize_best_and_live_rows_merge(workspace, tmp_path):
    where, plans = workspace
    index = json.loads((where.jobs_dir / "mnist" / "plan.json").read_text())
    index["objective"]["direction"] = "minimize"
    (where.jobs_dir / "mnist" / "plan.json").write_text(json.dumps(index))
    manager = Manager()
    t = plans["mnist"].trials
    manager.rows["mnist"] = {t[5].name: {"name": t[5].name, "state": "running", "node": "n2", "metric": 0.5, "step": 3},
                             t[0].name: {"name": t[0].name, "state": "running"}}  # late: the journal has its end
    manager.running.add("mnist")
    with client(create_app(config(where, tmp_path), manager=manager)) as c:
        got = c.get("/api/experiments/mnist").json()
    assert got["best"]["trial"] == t[3].name or got["best"]["trial"] == t[4].name  # the lowest succeeded
    assert got["best"] == {"trial": t[4].name, "value": 0.85, "params": t[4].params}  # pruned trials are never best
    assert got["state"] == "running" and got["driven"] is True
    assert got["counts"]["running"] == 1 and got["counts"]["pending"] == 6
    rows = {r["name"]: r for r in got["trials"]}
    assert rows[t[5].name]["node"] == "n2" and rows[t[5].name]["batch"] == "batch-001"
    assert rows[t[0].name]["state"] == "succeeded"


def test_curves(workspace, tmp_path):
    where, plans = workspace
    with client(create_app(config(where, tmp_path), manager=Manager())) as c:
        got = c.get("/api/experiments/mnist/curves").json()
    t = plans["mnist"].trials
    assert got["metric"] == METRIC
    assert set(got["curves"]) == {t[0].name, t[1].name, t[3].name, t[4].name}
    assert got["curves"][t[1].name][-1] == [5, 0.97] and len(got["curves"][t[3].name]) == 2


def test_journal_cache_reads_only_what_was_appended(workspace, tmp_path, monkeypatch):
    where, plans = workspace
    s = Store(where.jobs_dir, where.results_dir)
    assert s.summary("mnist")["counts"]["succeeded"] == 3
    base = s._bases["mnist"]
    assert s.summary("mnist") and s._bases["mnist"] is base  # unchanged files: nothing parsed again
    j = s._journals["mnist"]
    offset = j.offset
    journal.append(where.results_dir / "mnist", record(plans["mnist"].trials[6], "succeeded", 0.99, 5))
    got = s.summary("mnist")
    assert got["counts"]["succeeded"] == 4 and got["best"]["value"] == 0.99
    assert s._journals["mnist"] is j and j.offset > offset  # read on from where it stopped
    with open(journal.path(where.results_dir / "mnist"), "ab") as f:
        f.write(b'{"name": "half')  # a line being written: read once it is whole
    assert s.summary("mnist")["counts"]["succeeded"] == 4
    journal.forget(where.results_dir / "mnist", {plans["mnist"].trials[2].name})  # --retry-failed replaces the file
    assert s.summary("mnist")["counts"] == {"pending": 7, "running": 0, "succeeded": 4, "failed": 0, "pruned": 1,
                                            "cancelled": 0}


STEPS = st.lists(st.tuples(st.integers(0, 11), st.sampled_from(["succeeded", "failed", "pruned", "cancelled"]),
                           st.sampled_from([0.5, 0.7, 0.9, 0.97, None])), min_size=1, max_size=25)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=STEPS, direction=st.sampled_from(["maximize", "minimize"]))
def test_a_store_following_a_journal_agrees_with_one_reading_it_whole(tmp_path_factory, steps, direction):
    """Records appended one by one (trials run again included) read on incrementally give the same
    counts, rows and best as a fresh read of the whole journal, and the best is report.best's."""
    from kubesweep.run import report

    root = tmp_path_factory.mktemp("ws")
    where = sweep.Workspace.under(root)
    plan = sweep.plan(GRID, name="mnist", namespace="team-a")
    sweep.render(plan, where.jobs_dir)
    if direction == "minimize":
        index = json.loads((where.jobs_dir / "mnist" / "plan.json").read_text())
        index["objective"]["direction"] = "minimize"
        (where.jobs_dir / "mnist" / "plan.json").write_text(json.dumps(index))
    following = Store(where.jobs_dir, where.results_dir)
    for i, state, acc in steps:
        journal.append(where.results_dir / "mnist", record(plan.trials[i], state, acc, 2))
        got = following.experiment("mnist")
        fresh = Store(where.jobs_dir, where.results_dir).experiment("mnist")
        assert got == fresh
        done = journal.load(where.results_dir / "mnist")
        top = report.best(list(done.values()), METRIC, direction)
        assert got["best"] == (None if top is None else {"trial": top["name"], "value": top["metrics"][METRIC],
                                                         "params": top["params"]})


def test_results_files(workspace, tmp_path):
    where, plans = workspace
    sweep.report(plans["mnist"], where.results_dir)
    (tmp_path / "secret.txt").write_text("not yours")
    with client(create_app(config(where, tmp_path), manager=Manager())) as c:
        best = c.get("/api/experiments/mnist/results").json()
        assert best["best"]["value"] == 0.97
        csv = c.get("/api/experiments/mnist/results/trials.csv")
        assert csv.headers["content-type"].startswith("text/csv") and csv.text.splitlines()[1].startswith(
            plans["mnist"].trials[1].name)
        png = c.get("/api/experiments/mnist/results/files/metric_vs_params.png")
        assert png.status_code == 200 and png.headers["content-type"] == "image/png" and png.content[:4] == b"\x89PNG"
        assert c.get("/api/experiments/mnist/results/files/report.html").text.startswith("<!")
        for bad in ("../../secret.txt", "..%2F..%2Fsecret.txt", "%2e%2e/%2e%2e/secret.txt", "/etc/passwd"):
            r = c.get(f"/api/experiments/mnist/results/files/{bad}")
            assert r.status_code == 404 and "not yours" not in r.text
        assert c.get("/api/experiments/other/results").status_code == 404  # no report yet


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(["..", ".", "a", "trials.csv", "", "sub", "/", "link", "%2e", "\\", "x\x00"]),
                min_size=1, max_size=6))
def test_any_results_path_stays_inside(tmp_path, parts):
    root = tmp_path / "results" / "exp"
    (root / "sub").mkdir(parents=True, exist_ok=True)
    (root / "trials.csv").write_text("inside")
    (tmp_path / "results" / "trials.csv").write_text("outside")
    if not (root / "link").exists():
        (root / "link").symlink_to(tmp_path / "results")
    got = routes_read.inside(root, "/".join(parts))
    assert got is None or (got.is_file() and got.resolve().is_relative_to(root.resolve()))


def test_trial_log_from_the_api_server(workspace, tmp_path):
    """The log route reads the trial's newest pod's log through the client (a stand-in API server):
    whole or followed, with tail; a trial whose pods are gone, and a refusal, say so."""
    from .fakeapi import serve as fake_api

    where, plans = workspace
    trial = plans["mnist"].trials[0].name
    pods = {"items": [{"metadata": {"name": "old-pod", "namespace": "team-a", "creationTimestamp": "2026-01-01T00:00:00Z"}},
                      {"metadata": {"name": "new-pod", "namespace": "team-a", "creationTimestamp": "2026-01-02T00:00:00Z"}}]}
    gone = plans["mnist"].trials[1].name

    def answer(method: str, path: str, body):
        if path.startswith("/api/v1/namespaces/team-a/pods?"):
            return 200, pods if trial in path else {"items": []}
        if path.startswith("/api/v1/namespaces/team-a/pods/new-pod/log?"):
            return 200, b"epoch 1\nTest accuracy: 0.91\n"
        return 404, {"kind": "Status", "code": 404, "message": "not found"}

    kubeconfig = tmp_path / "kubeconfig"
    with fake_api(answer, kubeconfig) as api:
        cfg = ServeConfig(where, sweep.Target(str(kubeconfig)), tmp_path / "state", "127.0.0.1", 8080,
                          auth.Tokens.generated())
        with client(create_app(cfg, manager=Manager())) as c:
            r = c.get(f"/api/experiments/mnist/trials/{trial}/log?tail=5")
            assert r.status_code == 200 and r.text == "epoch 1\nTest accuracy: 0.91\n"
            assert r.headers["content-type"].startswith("text/plain")
            r = c.get(f"/api/experiments/mnist/trials/{trial}/log?follow=1")
            assert r.status_code == 200 and r.text.endswith("Test accuracy: 0.91\n")
            r = c.get(f"/api/experiments/mnist/trials/{gone}/log?follow=1")
            assert r.status_code == 404 and f"no pod for trial {gone}" in r.json()["detail"]
            assert c.get(f"/api/experiments/mnist/trials/{gone}/log").status_code == 404
        logs = [p for m, p in api.requests if "/log?" in p]
        assert len(logs) == 2 and all(p.startswith("/api/v1/namespaces/team-a/pods/new-pod/log?") for p in logs)
        assert "tailLines=5" in logs[0] and "follow=true" in logs[1]
        from urllib.parse import parse_qs, urlsplit

        selectors = {parse_qs(urlsplit(p).query)["labelSelector"][0] for m, p in api.requests
                     if p.startswith("/api/v1/namespaces/team-a/pods?")}
        assert selectors == {f"kubesweep.io/trial={trial}", f"kubesweep.io/trial={gone}"}


# --- access ---------------------------------------------------------------------------------------


def test_loopback_without_tokens_file(workspace, tmp_path):
    where, _ = workspace
    cfg = config(where, tmp_path)
    token = cfg.tokens.entries[0].secret
    with client(create_app(cfg, manager=Manager())) as c:
        assert c.get("/api/experiments").status_code == 200  # reading is open on one's own machine
        r = c.post("/api/experiments/mnist/cancel")
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        r = c.post("/api/experiments/mnist/cancel", headers={"Authorization": "Bearer wrong-token-0123456789"})
        assert r.status_code == 401
        assert c.get("/api/experiments", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert c.get("/api/experiments", headers={"Authorization": "Bearer nope"}).status_code == 401


@pytest.mark.parametrize("host", ["evil.example.com", "evil.example.com:8080", "127.0.0.1.nip.io", "10.0.0.1:8080",
                                  "localhost@evil.com", ""])
def test_dns_rebinding_refused(workspace, tmp_path, host):
    where, _ = workspace
    with client(create_app(config(where, tmp_path), manager=Manager()), host="127.0.0.1:8080") as c:
        r = c.get("/api/experiments", headers={"Host": host})
        assert r.status_code == 403 and "Host" in r.json()["detail"]
        for fine in ("127.0.0.1:8080", "localhost:8080", "[::1]:8080", "localhost"):
            assert c.get("/api/experiments", headers={"Host": fine}).status_code == 200


def test_team_isolation(workspace, tmp_path):
    where, _ = workspace
    cfg = config(where, tmp_path, host="0.0.0.0", tokens=team_tokens(tmp_path))
    with client(create_app(cfg, manager=Manager()), host="kubesweep.team.svc:8080") as c:  # no Host check off loopback
        assert c.get("/api/experiments").status_code == 401  # a tokens file: every GET needs one
        assert c.get("/api/experiments?token=" + ALICE).status_code == 401  # ?token= is for streams only
        as_alice = {"Authorization": f"Bearer {ALICE}"}
        assert [e["name"] for e in c.get("/api/experiments", headers=as_alice).json()["experiments"]] == ["mnist"]
        for path in ("", "/curves", "/results", "/results/trials.csv", "/trials/x/log"):
            r = c.get(f"/api/experiments/other{path}", headers=as_alice)
            assert r.status_code == 404, path  # as if absent
        assert c.post("/api/experiments/other/tensorboard", headers=as_alice).status_code == 404
        assert c.get("/api/experiments/mnist", headers=as_alice).status_code == 200
        as_bob = {"Authorization": f"Bearer {BOB}"}  # team: without namespaces sees the team's namespace
        assert [e["name"] for e in c.get("/api/experiments", headers=as_bob).json()["experiments"]] == ["other"]
        as_ops = {"Authorization": f"Bearer {OPS}"}
        assert len(c.get("/api/experiments", headers=as_ops).json()["experiments"]) == 2
        # the log stream takes ?token= (EventSource and <pre> fetches cannot set headers): past auth, a trial not in it
        r = c.get(f"/api/experiments/mnist/trials/nope/log?token={ALICE}")
        assert r.status_code == 404 and "no trial nope" in r.json()["detail"]
        assert c.get("/api/experiments/mnist/trials/nope/log").status_code == 401


def test_tokens_file_errors_name_their_lines(tmp_path):
    f = tmp_path / "tokens.yaml"
    f.write_text("tokens:\n"
                 "  - name: alice\n"
                 "    token: short\n"                                   # line 3
                 "    namespaces: [team-a]\n"
                 "  - {name: alice, token: ok-token-0123456789abcdef, namespaces: [Team_B]}\n"  # line 5
                 "  - {name: ops, token: ok-token-0123456789abcdef, admin: true, namespaces: [x]}\n"  # line 6
                 "  - {name: nobody, token: other-token-0123456789ab}\n"  # line 7
                 "  - {name: eve, token: eve-token-0123456789abcdef, namespace: [a]}\n")  # line 8
    with pytest.raises(SpecError) as err:
        auth.load(f)
    text = str(err.value)
    lines = text.splitlines()
    assert any(x.startswith(f"{f}:3:12: the token is 5 characters") for x in lines), text
    assert any(x.startswith(f"{f}:5:12: name 'alice' is given twice (first at {f}:2:11)") for x in lines), text
    assert any(x.startswith(f"{f}:5:") and "not a namespace name" in x and "'Team_B'" in x for x in lines), text
    assert any(x.startswith(f"{f}:6:") and "the same token is given twice" in x for x in lines), text
    assert any(x.startswith(f"{f}:6:") and "admin: true or namespaces:, not both" in x for x in lines), text
    assert any(x.startswith(f"{f}:7:") and "needs namespaces:" in x for x in lines), text
    assert any(x.startswith(f"{f}:8:") and "unknown key 'namespace'" in x for x in lines), text
    assert lines[-1].endswith("problems found; nothing was written.")
    f.write_text("tokens: {name: a}\n")
    with pytest.raises(SpecError, match=r"tokens.yaml:1:9: a tokens file is a mapping"):
        auth.load(f)


def test_serve_command_refuses_a_public_address_without_tokens(tmp_path):
    r = subprocess.run([sys.executable, "-m", "kubesweep", "--project-dir", str(tmp_path), "serve", "--host", "0.0.0.0"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.splitlines()) == 1 and "--tokens" in r.stderr and "0.0.0.0" in r.stderr
    with socket.create_server(("127.0.0.1", 0)) as taken:
        r = subprocess.run([sys.executable, "-m", "kubesweep", "--project-dir", str(tmp_path), "serve", "--port",
                            str(taken.getsockname()[1])], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stdout == "" and len(r.stderr.splitlines()) == 1
    assert "cannot listen on 127.0.0.1:" in r.stderr and "in use" in r.stderr
    bad = tmp_path / "tokens.yaml"
    bad.write_text("tokens:\n  - {name: a, token: x, admin: true}\n")
    r = subprocess.run([sys.executable, "-m", "kubesweep", "serve", "--tokens", str(bad)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and f"{bad}:2:" in r.stderr


def test_serve_command_without_the_serve_extra_says_how_to_install_it(tmp_path):
    """`pip install -e .` alone has no FastAPI or uvicorn: one line naming the extra, not a traceback."""
    hide = ("import sys; sys.modules['fastapi'] = None; from kubesweep.cli.app import main; "
            "main(['--project-dir', sys.argv[1], 'serve'])")
    r = subprocess.run([sys.executable, "-c", hide, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip() == ("kubesweep serve needs the serve extra (fastapi is not installed): "
                                "pip install 'kubesweep[serve]'")


def test_serve_command_prints_the_page_with_a_token_and_serves(workspace, tmp_path):
    where, _ = workspace
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "kubesweep", "--project-dir", str(where.jobs_dir.parent), "serve",
                               "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = server.stdout.readline()
        prefix = f"kubesweep serve: http://127.0.0.1:{port}/#token="
        assert first.startswith(prefix), first + server.stderr.read()
        token = first.strip().removeprefix(prefix)
        assert len(token) >= 40
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _answers(url), 30)
        with httpx.Client(base_url=url, timeout=10) as c:
            assert [e["name"] for e in c.get("/api/experiments").json()["experiments"]] == ["mnist", "other"]
            assert c.post("/api/experiments/mnist/retry").status_code == 401
            r = c.post("/api/experiments/nope/retry", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code not in (401, 403)  # past auth: the manager answers
    finally:
        server.send_signal(signal.SIGINT)
        code = server.wait(20)
    assert code == 0


def test_the_servers_connections_send_at_once():
    """The listening socket the command hands uvicorn gives its connections TCP_NODELAY (without
    it every small answer waited 40 ms for the client's delayed ACK)."""
    from kubesweep.serve.app import listen

    with listen("127.0.0.1", 0) as sock, socket.create_connection(sock.getsockname()[:2]):
        conn, _ = sock.accept()
        with conn:
            assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def _answers(url: str) -> bool:
    try:
        return httpx.get(url + "/api/health", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


# --- a real server ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def serve():
    """Start an app on a real uvicorn on 127.0.0.1, in a thread of this process (its broker stays reachable)."""
    import uvicorn

    servers = []

    def start(app) -> str:
        port = free_port()
        srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=srv.run, daemon=True)
        thread.start()
        servers.append((srv, thread))
        deadline = time.monotonic() + 20
        while not srv.started:
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
            time.sleep(0.05)
        return f"http://127.0.0.1:{port}"

    yield start
    for srv, thread in servers:
        srv.should_exit = True
        thread.join(10)


def wait_for(check, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_events_stream_delivers_published_events(workspace, tmp_path, serve, monkeypatch):
    where, _ = workspace
    monkeypatch.setattr(routes_read, "KEEPALIVE_S", 0.2)
    app = create_app(config(where, tmp_path), manager=Manager())
    url = serve(app)
    broker = app.state.broker
    got: list[str] = []
    with httpx.Client(timeout=10) as c, c.stream("GET", url + "/api/events?experiment=mnist") as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        lines = r.iter_lines()
        wait_for(lambda: broker.subscribers == 1)
        for line in lines:  # nothing published yet: the keepalive comes
            got.append(line)
            if line == ": keepalive":
                break

        def publish() -> None:  # from another thread, as a sweep's hooks do
            broker.publish("trial", {"experiment": "other", "namespace": "team-b", "name": "x"})  # filtered out
            broker.publish("trial", {"experiment": "mnist", "namespace": "team-a", "name": "mnist-1", "state": "running"})

        threading.Thread(target=publish).start()
        for line in lines:
            got.append(line)
            if line.startswith("data:"):
                break
    assert got[got.index("event: trial") + 1] == got[-1]
    data = json.loads(got[-1].removeprefix("data: "))
    assert data["name"] == "mnist-1" and data["state"] == "running"
    wait_for(lambda: broker.subscribers == 0, 5)  # the client left: unsubscribed


def test_events_take_a_token_in_the_query_and_hide_other_teams(workspace, tmp_path, serve):
    where, _ = workspace
    app = create_app(config(where, tmp_path, tokens=team_tokens(tmp_path)), manager=Manager())
    url = serve(app)
    broker = app.state.broker
    with httpx.Client(timeout=10) as c:
        assert c.get(url + "/api/events").status_code == 401
        assert c.get(url + "/api/events?token=not-a-token-0123456789").status_code == 401
        with c.stream("GET", url + f"/api/events?token={ALICE}") as r:
            assert r.status_code == 200
            wait_for(lambda: broker.subscribers == 1)
            broker.publish("experiment", {"name": "other", "namespace": "team-b"})
            broker.publish("progress", {"experiment": "other", "trial": "t", "metric": METRIC, "value": 1, "step": 1})
            broker.publish("progress", {"experiment": "mnist", "trial": "t", "metric": METRIC, "value": 0.5, "step": 2})
            got = []
            for line in r.iter_lines():
                got.append(line)
                if line.startswith("data:"):
                    break
    assert got[-2:] == ["event: progress", 'data: {"experiment":"mnist","trial":"t","metric":"Test accuracy",'
                        '"value":0.5,"step":2}']


def test_slow_subscriber_is_dropped():
    import asyncio

    from kubesweep.serve.events import Broker

    async def main() -> tuple[list, list, int]:
        broker = Broker(queue=5)
        slow, fast = broker.subscribe(), broker.subscribe()
        seen: list = []

        async def read() -> None:
            async for item in fast:
                seen.append(item)

        reader = asyncio.create_task(read())
        for i in range(8):
            await asyncio.to_thread(broker.publish, "progress", {"i": i})
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        reader.cancel()
        kept = []
        try:
            while True:
                kept.append(await slow.get(1))
        except StopAsyncIteration:
            pass
        return seen, kept, broker.dropped

    seen, kept, dropped = asyncio.run(main())
    assert [d["i"] for _, d in seen] == list(range(8))  # the one that keeps up gets every event
    assert [d["i"] for _, d in kept] == list(range(5)) and dropped == 1  # the other: what it had, then its end


class Counter:
    def __init__(self) -> None:
        self.count, self.lock = 0, threading.Lock()

    def add(self) -> None:
        with self.lock:
            self.count += 1


def test_a_followed_log_streams_as_written_and_lets_go_when_the_reader_leaves(workspace, tmp_path, serve):
    """follow=1 against an API server that writes a line, then holds the log open (a trial running
    quietly): the line arrives at once; more follows than the server's thread pool leave the other
    routes answering; each reader leaving closes its connection to the API server."""
    from .fakeapi import write_kubeconfig

    where, plans = workspace
    trial = plans["mnist"].trials[0].name
    closed = Counter()
    listener = socket.create_server(("127.0.0.1", 0), backlog=128)

    def api() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    def handle(conn: socket.socket) -> None:
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(4096)
            target = head.split(b" ", 2)[1].decode()
            if "/log?" not in target:
                body = json.dumps({"items": [{"metadata": {"name": "p", "namespace": "team-a"}}]}).encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                             b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
                return
            assert "follow=true" in target
            line = b"epoch 1 loss 0.5\n"
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
                         + f"{len(line):x}".encode() + b"\r\n" + line + b"\r\n")
            conn.settimeout(30)
            try:
                if conn.recv(1) == b"":  # nothing more is written: wait for the reader to go
                    closed.add()
            except OSError:
                closed.add()

    threading.Thread(target=api, daemon=True).start()
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{listener.getsockname()[1]}")
    cfg = ServeConfig(where, sweep.Target(str(kubeconfig)), tmp_path / "state", "127.0.0.1", 8080,
                      auth.Tokens.generated())
    url = serve(create_app(cfg, manager=Manager()))
    follows = 45  # more than the server's thread pool (40): a follow must not hold one of its workers
    try:
        with contextlib.ExitStack() as stack:
            c = stack.enter_context(httpx.Client(timeout=10, limits=httpx.Limits(max_connections=follows + 5)))
            for _ in range(follows):
                r = stack.enter_context(c.stream("GET", f"{url}/api/experiments/mnist/trials/{trial}/log?follow=1"))
                assert r.status_code == 200
                chunks = r.iter_text()  # kept open: an iterator let go closes its response
                stack.callback(chunks.close)
                assert next(chunks) == "epoch 1 loss 0.5\n"
            assert httpx.get(f"{url}/api/experiments/mnist", timeout=10).status_code == 200
            assert closed.count == 0
        wait_for(lambda: closed.count == follows, 10)  # each connection to the API server closed with its reader
    finally:
        listener.close()
