"""The experiments' TensorBoards through `kubesweep serve` without a cluster: the POST that starts
one (once per experiment, the token header, the cookie it answers), and the path
/tensorboard/<experiment>/ passed on to a stand-in TensorBoard (a real HTTP server here) as it
came: who may pass, what is passed and what is not. The Deployment and the forward are
run/tensorboard's (tests/test_tensorboard.py); the real TensorBoard behind a real server, in and
out of the cluster, is tests/test_tensorboard_cluster.py's and tests/test_serve_role_cluster.py's."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from kubesweep.k8s import client as kube
from kubesweep.run import tensorboard as tb
from kubesweep.serve import routes_read
from kubesweep.serve import tensorboard as served
from kubesweep.serve.app import create_app

from .test_serve_api import ALICE, BOB, OPS, Manager, client, config, make_workspace, team_tokens

IMAGE = "localhost:5000/kubesweep/tensorboard:abc"


class Upstream:
    """A stand-in TensorBoard: every request recorded (method, raw path, headers, body); answers
    its path as JSON, a redirect with an absolute Location (as TensorBoard's own), or 500."""

    def __init__(self) -> None:
        self.seen: list[dict] = []
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                upstream.seen.append({"method": self.command, "path": self.path,
                                      "headers": {k.lower(): v for k, v in self.headers.items()},
                                      "body": self.rfile.read(length) if length else b""})
                if self.path.endswith("/away"):
                    self.send_response(301)
                    self.send_header("Location", f"{upstream.base}/tensorboard/mnist/")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = json.dumps({"path": self.path}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Set-Cookie", "tb=1")  # not ours to pass on
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_POST = do_HEAD = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def workspace(tmp_path):
    return make_workspace(tmp_path)


@pytest.fixture
def upstream():
    u = Upstream()
    yield u
    u.close()


@pytest.fixture
def cluster(monkeypatch, upstream):
    """run/tensorboard's cluster side, recorded: ensure, and a forward whose base is the stand-in."""
    calls: list[tuple] = []

    class Forward:
        base = upstream.base
        closed = False

        def close(self) -> None:
            Forward.closed = True
            calls.append(("close",))

    def ensure(c, namespace, experiment, *, image):
        calls.append(("ensure", namespace, experiment, image))
        return f"tensorboard-{experiment}"

    def forward(c, namespace, service, local_port=0, **kw):
        calls.append(("forward", namespace, service, kw.get("path")))
        return Forward()

    monkeypatch.setattr(tb, "ensure", ensure)
    monkeypatch.setattr(tb, "forward", forward)
    monkeypatch.setattr(routes_read, "_clients", lambda request: object())
    monkeypatch.setattr(kube, "in_cluster", lambda: False)
    return calls


def _with(c, ticket: str) -> object:
    """The client with only this ticket in its jar (as the browser would send it)."""
    c.cookies.clear()
    c.cookies.set(served.COOKIE, ticket)
    return c


def _with_image(cfg):
    from dataclasses import replace

    return replace(cfg, tensorboard_image=IMAGE)


def test_forwarded_once_per_experiment_answered_as_a_path_here_and_let_go_at_shutdown(workspace, tmp_path,
                                                                                        cluster, upstream):
    where, _ = workspace
    cfg = _with_image(config(where, tmp_path))
    admin = {"Authorization": f"Bearer {cfg.tokens.entries[0].secret}"}
    with client(create_app(cfg, manager=Manager())) as c:
        # it creates objects in the cluster: never on a GET (open on loopback), never without the token
        assert c.get("/api/experiments/mnist/tensorboard").status_code == 405
        assert c.post("/api/experiments/mnist/tensorboard").status_code == 401
        assert c.get("/tensorboard/mnist/").status_code == 404  # not started: says how to start it
        assert cluster == []
        for _ in range(3):
            r = c.post("/api/experiments/mnist/tensorboard", headers=admin)
            assert r.status_code == 200 and r.json() == {"url": "/tensorboard/mnist/"}
        assert c.post("/api/experiments/nope/tensorboard", headers=admin).status_code == 404
        # on loopback without a tokens file reading is open: the path needs no cookie
        c.cookies.clear()
        assert c.get("/tensorboard/mnist/data/environment").json() == {"path": "/tensorboard/mnist/data/environment"}
    # every POST makes sure the Deployment is there (made again after a `kubesweep clean`); one forward
    ensure = ("ensure", "team-a", "mnist", IMAGE)
    assert cluster == [ensure, ("forward", "team-a", "tensorboard-mnist", "/tensorboard/mnist/"), ensure, ensure,
                       ("close",)]


def test_requests_are_passed_on_as_they_came_without_this_servers_token_or_cookie(workspace, tmp_path, cluster,
                                                                                   upstream):
    where, _ = workspace
    cfg = _with_image(config(where, tmp_path, host="0.0.0.0", tokens=team_tokens(tmp_path)))
    with client(create_app(cfg, manager=Manager()), host="kubesweep.example:8080") as c:
        assert c.post("/api/experiments/mnist/tensorboard", headers={"Authorization": f"Bearer {ALICE}"}).status_code == 200
        r = c.get("/tensorboard/mnist/data/plugin/scalars/scalars?run=trial%20a%2F1&tag=val_accuracy",
                  headers={"Accept": "application/json", "X-Test": "kept"})
        assert r.status_code == 200 and "set-cookie" not in r.headers
        got = upstream.seen[-1]
        assert got["method"] == "GET"
        assert got["path"] == "/tensorboard/mnist/data/plugin/scalars/scalars?run=trial%20a%2F1&tag=val_accuracy"
        assert got["headers"]["x-test"] == "kept" and got["headers"]["accept"] == "application/json"
        assert "authorization" not in got["headers"] and "cookie" not in got["headers"]
        # TensorBoard's POSTs (reads, with its own X-XSRF-Protected header) carry their bodies
        body = b'{"requests": [{"plugin": "scalars", "tag": "loss"}]}'
        r = c.post("/tensorboard/mnist/experiment/defaultExperimentId/data/plugin/timeseries/timeSeries",
                   content=body, headers={"X-XSRF-Protected": "1", "Content-Type": "application/json"})
        assert r.status_code == 200
        got = upstream.seen[-1]
        assert (got["method"], got["body"], got["headers"]["x-xsrf-protected"]) == ("POST", body, "1")
        # its absolute redirects point back here
        r = c.get("/tensorboard/mnist/away", follow_redirects=False)
        assert r.status_code == 301 and r.headers["location"] == "/tensorboard/mnist/"
        r = c.get("/tensorboard/mnist", follow_redirects=False)
        assert r.status_code == 308 and r.headers["location"] == "mnist/"
        # only an experiment's name is looked up or written into a redirect (no //host, no traversal)
        for bad in ("/tensorboard/%5C%5Cevil.example", "/tensorboard/%5C%5Cevil.example/x", "/tensorboard/..%2Fapi/x",
                    "/tensorboard/Mnist/"):
            r = c.get(bad, follow_redirects=False, headers={"Authorization": f"Bearer {OPS}"})
            assert r.status_code == 404 and "location" not in r.headers, (bad, r.status_code)
        assert c.head("/tensorboard/mnist/").status_code == 200


def test_the_cookie_opens_that_experiments_tensorboard_only_and_nothing_else(workspace, tmp_path, cluster,
                                                                             upstream):
    where, _ = workspace
    cfg = _with_image(config(where, tmp_path, host="0.0.0.0", tokens=team_tokens(tmp_path)))
    app = create_app(cfg, manager=Manager())
    with client(app, host="kubesweep.example:8080") as c:
        assert c.get("/tensorboard/mnist/").status_code == 401  # a tokens file: nothing is open
        r = c.post("/api/experiments/mnist/tensorboard", headers={"Authorization": f"Bearer {ALICE}"})
        cookie = r.headers["set-cookie"]
        for part in ("kubesweep-tensorboard=", "HttpOnly", "Path=/tensorboard/mnist/", "SameSite=strict",
                     f"Max-Age={served.COOKIE_S}"):
            assert part in cookie, cookie
        ticket = r.cookies[served.COOKIE]
        n = len(upstream.seen)
        assert _with(c, ticket).get("/tensorboard/mnist/").status_code == 200
        assert len(upstream.seen) == n + 1
        # not a key to the API, nor to another experiment's TensorBoard
        assert _with(c, ticket).get("/api/experiments").status_code == 401
        assert _with(c, ticket).post("/api/experiments/mnist/cancel").status_code == 401
        boards = app.state.tensorboards
        boards.bases["other"] = upstream.base
        assert _with(c, ticket).get("/tensorboard/other/").status_code == 401
        # another team's token sees neither the experiment nor its TensorBoard
        c.cookies.clear()
        bob = {"Authorization": f"Bearer {BOB}"}
        assert c.post("/api/experiments/mnist/tensorboard", headers=bob).status_code == 404
        assert c.get("/tensorboard/mnist/", headers=bob).status_code == 404
        assert c.get("/tensorboard/mnist/", headers={"Authorization": f"Bearer {OPS}"}).status_code == 200
        # a changed, expired or foreign ticket opens nothing
        expires, mac = ticket.split(".")
        for bad in (f"{int(expires) + 1}.{mac}", f"{expires}.{'0' * 64}", "", "x.y",
                    served.TensorBoards().ticket("mnist")):
            assert _with(c, bad).get("/tensorboard/mnist/").status_code == 401, bad
        assert not boards.admits("mnist", ticket, now=int(expires) + 1)
        assert len(upstream.seen) == n + 2


def test_a_tensorboard_that_does_not_answer_is_a_502_that_says_so(workspace, tmp_path, cluster, upstream):
    where, _ = workspace
    cfg = _with_image(config(where, tmp_path))
    admin = {"Authorization": f"Bearer {cfg.tokens.entries[0].secret}"}
    with client(create_app(cfg, manager=Manager())) as c:
        assert c.post("/api/experiments/mnist/tensorboard", headers=admin).status_code == 200
        upstream.close()
        r = c.get("/tensorboard/mnist/data/runs")
        assert r.status_code == 502 and "does not answer" in r.json()["detail"]


def test_in_the_cluster_it_reaches_the_service_by_name_and_needs_a_named_image(workspace, tmp_path, monkeypatch):
    where, _ = workspace
    calls: list[tuple] = []
    monkeypatch.setattr(kube, "in_cluster", lambda: True)
    monkeypatch.setattr(routes_read, "_clients", lambda request: object())
    monkeypatch.setattr(tb, "ensure", lambda c, ns, exp, *, image: calls.append(("ensure", ns, exp, image))
                        or f"tensorboard-{exp}")
    monkeypatch.setattr(tb, "ready_pod", lambda c, ns, svc, timeout_s=0: calls.append(("ready", ns, svc)) or ("p", 6006))
    monkeypatch.setattr(tb, "forward", lambda *a, **k: pytest.fail("no port-forward inside the cluster"))
    cfg = config(where, tmp_path)
    admin = {"Authorization": f"Bearer {cfg.tokens.entries[0].secret}"}
    with client(create_app(cfg, manager=Manager())) as c:  # no image: none can be built in a pod
        r = c.post("/api/experiments/mnist/tensorboard", headers=admin)
        assert r.status_code == 501 and "kubesweep_serve_tensorboard_image" in r.json()["detail"]
    assert calls == []
    app = create_app(_with_image(cfg), manager=Manager())
    with client(app) as c:
        assert c.post("/api/experiments/mnist/tensorboard", headers=admin).json() == {"url": "/tensorboard/mnist/"}
        assert app.state.tensorboards.bases == {"mnist": "http://tensorboard-mnist.team-a.svc:6006"}
    assert calls == [("ensure", "team-a", "mnist", IMAGE), ("ready", "team-a", "tensorboard-mnist")]


def test_one_experiment_s_slow_start_holds_up_only_its_own_callers(monkeypatch):
    """A TensorBoard whose pod takes minutes to be ready must not stall every other experiment's
    button: the wait is per experiment, and two callers of one experiment still start it once."""
    from types import SimpleNamespace

    release = threading.Event()
    forwards: list[str] = []

    class Forward:
        def __init__(self, service: str) -> None:
            self.base = f"http://127.0.0.1/{service}"

        def close(self) -> None:
            pass

    def forward(c, namespace, service, **kw):
        forwards.append(service)
        if service == "tensorboard-slow":
            assert release.wait(30), "the slow start was never let go"
        return Forward(service)

    monkeypatch.setattr(tb, "ensure", lambda c, ns, exp, *, image: f"tensorboard-{exp}")
    monkeypatch.setattr(tb, "forward", forward)
    monkeypatch.setattr(kube, "in_cluster", lambda: False)
    cfg = SimpleNamespace(target=SimpleNamespace(kubeconfig="k", context=None))
    boards = served.TensorBoards()
    images: list[int] = []
    slow = [threading.Thread(target=boards.start, args=(cfg, None, "ns", "slow", lambda: images.append(1) or IMAGE))
            for _ in range(2)]
    for t in slow:
        t.start()
    deadline = 30
    while "tensorboard-slow" not in forwards and deadline:  # the first caller is waiting for its pod
        threading.Event().wait(0.1)
        deadline -= 0.1
    # meanwhile another experiment's TensorBoard starts at once
    assert boards.start(cfg, None, "ns", "quick", lambda: IMAGE) == "http://127.0.0.1/tensorboard-quick"
    assert all(t.is_alive() for t in slow)
    release.set()
    for t in slow:
        t.join(30)
    assert forwards.count("tensorboard-slow") == 1 and boards.bases["slow"] == "http://127.0.0.1/tensorboard-slow"
    assert images == [1]  # the image is asked once
