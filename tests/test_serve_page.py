"""The page of `kubesweep serve` in Debian's headless Chromium: a real uvicorn on 127.0.0.1 serving
create_app over a workspace with a real plan and journal (no cluster), and, on the local cluster, a
real sweep whose Cancel button the test clicks before it looks at the cluster's Jobs."""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from kubesweep import sweep
from kubesweep.run import journal
from kubesweep.run.trialstate import CANCELLED, FAILED, PRUNED, SUCCEEDED, TrialRecord

from . import headless

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

ROOT = Path(__file__).resolve().parents[1]
GRID = ROOT / "examples" / "mnist" / "grid.yaml"
BROWSER = headless.browser()


@pytest.fixture
def browser_exe() -> str:
    if BROWSER is None:
        if os.environ.get("CI"):
            pytest.fail("no headless Chromium: .ci/run installs Debian's chromium-headless-shell")
        pytest.skip("no headless Chromium (apt-get install chromium-headless-shell)")
    return BROWSER


@contextlib.contextmanager
def serving(project: Path, target: sweep.Target = sweep.Target(), *, tokens: Any = None,
            tensorboard_image: str | None = None) -> Iterator[tuple[str, Any]]:
    """A real uvicorn on a free port of 127.0.0.1 serving create_app over ``project``: (base URL, app)."""
    from kubesweep.serve import auth
    from kubesweep.serve.app import create_app
    from kubesweep.serve.config import ServeConfig

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    cfg = ServeConfig(where=sweep.Workspace.under(project), target=target, state_dir=project / ".kubesweep-serve",
                      host="127.0.0.1", port=port, tokens=tokens or auth.Tokens.generated(),
                      tensorboard_image=tensorboard_image)
    app = create_app(cfg)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


def server_side(app: Any, name: str) -> str:
    """What the server holds of ``name`` (its summary, and where its sweep thread is), for the
    message of a wait on the page that ran out."""
    import sys
    import traceback

    summary = app.state.store.summary(name)
    run = app.state.manager._runs.get(name)
    thread = getattr(run, "thread", None)
    frame = sys._current_frames().get(thread.ident) if thread is not None and thread.ident else None
    where = "".join(traceback.format_stack(frame)[-12:]) if frame is not None else "(no sweep thread)"
    return f"server: {json.dumps(summary, default=str)}\nits sweep thread:\n{where}"


@contextlib.contextmanager
def explained(app: Any, name: str) -> Iterator[None]:
    """A wait on the page that runs out says what the server held then."""
    try:
        yield
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{server_side(app, name)}") from None


def workspace(tmp_path: Path, grid: Path = GRID) -> tuple[sweep.Plan, list[dict[str, Any]]]:
    """The mnist example's plan rendered under tmp_path/jobs, and a journal under tmp_path/results
    where some trials finished (succeeded with a learning curve, failed, pruned, cancelled) and the
    rest never ran."""
    project = tmp_path
    shutil.copytree(grid.parent, project / "mnist")
    plan = sweep.plan(project / "mnist" / grid.name, namespace="team-a")
    sweep.render(plan, project / "jobs")
    recs = []
    states = [SUCCEEDED, SUCCEEDED, FAILED, SUCCEEDED, PRUNED, SUCCEEDED, CANCELLED, SUCCEEDED]
    rnd = random.Random(5)
    for i, t in enumerate(plan.trials[:len(states)]):
        state = states[i]
        top = round(0.8 + 0.1 * rnd.random(), 4)
        reached = 5 if state == SUCCEEDED else 2
        curve = [[s, round(top * (1 - math.exp(-s)), 4)] for s in range(1, reached + 1)]
        rec = TrialRecord(name=t.name, batch=t.batch, params=dict(t.params), state=state, node=f"node-{i % 3}",
                          start=f"2026-01-01T00:00:{i:02d}Z", end=f"2026-01-01T00:{i + 1:02d}:{i:02d}Z",
                          metrics={"Test accuracy": curve[-1][1] if state in (SUCCEEDED, PRUNED) else None},
                          curves={} if state in (FAILED, CANCELLED) else {"Test accuracy": curve},
                          message="OOMKilled <script>alert(1)</script>" if state == FAILED else None)
        journal.append(project / "results" / plan.experiment.name, rec.as_dict())
        recs.append(rec.as_dict())
    return plan, recs


EVIL = '<a href="https://x.test/">a</a><b>b</b><img src=x id=pwned>"&amp;&'  # markup the page and plotly would draw


def rows_js(table: str) -> str:
    return (f"Array.from(document.querySelectorAll('{table} tbody tr')).map(tr => "
            "Array.from(tr.cells).map(td => td.textContent))")


@pytest.mark.slow
def test_the_page_shows_experiments_trials_and_plots_from_a_real_server(tmp_path, browser_exe):
    plan, recs = workspace(tmp_path)
    name = plan.experiment.name
    # a trial asked later (not in the plan) whose parameter value is markup: shown as text
    evil = TrialRecord(name="mnist-late-1", batch="batch-009", params={"epochs": 3, "optimizer": EVIL, "dropout": 0.3},
                       state=SUCCEEDED, node="node-0", start="2026-01-01T01:00:00Z", end="2026-01-01T01:00:30Z",
                       metrics={"Test accuracy": 0.5}, curves={"Test accuracy": [[1, 0.4], [2, 0.5]]})
    journal.append(tmp_path / "results" / name, evil.as_dict())
    recs.append(evil.as_dict())
    by_name = {r["name"]: r for r in recs}
    scored = [r for r in recs if r["metrics"].get("Test accuracy") is not None and r["state"] == SUCCEEDED]
    best = max(scored, key=lambda r: r["metrics"]["Test accuracy"])
    with serving(tmp_path) as (base, app), headless.Tab(browser_exe) as tab:
        token = app.state.cfg.tokens.entries[0].secret
        tab.open(f"{base}/#token={token}")
        assert tab.wait("location.hash === '#/' && sessionStorage.getItem('kubesweep.token')") == token  # out of the URL
        tab.wait("document.querySelectorAll('#experiments tbody tr').length === 1")
        (row,) = tab.evaluate(rows_js("#experiments"))
        assert row[0] == name and row[1] == "team-a" and row[3] == f"{len(recs)} / {len(plan.trials) + 1}", row
        assert float(row[5]) == pytest.approx(best["metrics"]["Test accuracy"], abs=1e-4) and row[6] == best["name"]

        tab.click("#experiments tbody a")  # to the experiment, as a user
        tab.wait("window.kubesweepRendered && window.kubesweepRendered.table")
        head = tab.evaluate("Array.from(document.querySelectorAll('#trials thead th')).map(th => th.textContent)")
        assert head == ["Trial", "State", "Node", "Test accuracy", "Step", "Duration", "epochs", "optimizer", "dropout"]
        shown = {r[0]: r for r in tab.evaluate(rows_js("#trials"))}
        assert set(shown) == {t.name for t in plan.trials} | {evil.name}
        for t in plan.trials:
            r, rec = shown[t.name], by_name.get(t.name)
            assert r[6:] == [str(t.params["epochs"]), t.params["optimizer"], str(t.params["dropout"])], r
            if rec is None:
                assert r[1:6] == ["pending", "", "", "", ""], r
                continue
            value = rec["metrics"]["Test accuracy"]
            assert r[1:3] == [rec["state"], rec["node"]], r
            assert (r[3] == "" if value is None else float(r[3]) == pytest.approx(value, abs=1e-4)), r
            assert r[4] == ("" if not rec["curves"] else str(len(rec["curves"]["Test accuracy"]))), r
            assert r[5].endswith("0s") and r[5] != "", r  # a whole number of minutes in this journal
        assert shown[evil.name][7] == EVIL and tab.evaluate("document.getElementById('pwned')") is None
        counts = json.loads(tab.evaluate("document.getElementById('exp-summary').dataset.counts"))
        assert counts == {"pending": 4, "running": 0, "succeeded": 6, "failed": 1, "pruned": 1, "cancelled": 1}
        failed = next(r for r in recs if r["state"] == FAILED)
        assert tab.evaluate(f"document.evaluate('//tr[td/a={json.dumps(failed['name'])}]', document).iterateNext()"
                            ".title") == failed["message"]  # why it failed, as text

        # sorting: a click on the metric sorts ascending (blanks last), a second descending
        tab.click("#trials th[data-key=metric]")
        tab.click("#trials th[data-key=metric]")
        firsts = tab.evaluate(rows_js("#trials"))
        assert firsts[0][0] == best["name"] and firsts[-1][3] == ""
        values = [float(r[3]) for r in firsts if r[3]]
        assert values == sorted(values, reverse=True)

        # live: a trial event from the broker turns a pending row into a running one, progress moves it
        pending = next(t for t in plan.trials if t.name not in by_name)
        app.state.broker.publish("trial", {"experiment": name, "namespace": "team-a", "name": pending.name,
                                           "batch": pending.batch, "state": "running", "params": dict(pending.params),
                                           "node": "node-7", "metric": None, "metrics": {}, "step": None,
                                           "start": "2026-01-01T02:00:00Z", "end": None, "duration": None,
                                           "message": None})
        app.state.broker.publish("progress", {"experiment": name, "trial": pending.name, "metric": "Test accuracy",
                                              "value": 0.6543, "step": 3})
        live = tab.wait(f"(() => {{ const r = {rows_js('#trials')}.find(r => r[0] === {json.dumps(pending.name)});"
                        " return r && r[4] === '3' && r; })()", timeout=15)
        assert live[1:5] == ["running", "node-7", "0.6543", "3"], live
        assert json.loads(tab.evaluate("document.getElementById('exp-summary').dataset.counts"))["running"] == 1

        # plots: plotly.js from this server, each figure drawn with its traces
        tab.click(".tab[data-tab=plots]")
        tab.wait("window.kubesweepRendered.plots", timeout=60)
        figs = tab.evaluate("""Array.from(document.querySelectorAll('.js-plotly-plot')).map(d => ({
            id: d.id || d.dataset.param, traces: (d.data || []).length, svg: !!d.querySelector('svg.main-svg'),
            drawn: d.querySelectorAll('.scatterlayer .trace, .parcoords').length,
            dims: d.data[0].dimensions ? d.data[0].dimensions.map(x => x.label) : null,
            points: (d.data[0].x || d.data[0].dimensions[0].values).length}))""")
        figs = {f["id"]: f for f in figs}
        assert set(figs) == {"plot-parallel", "plot-curves", "epochs", "optimizer", "dropout"}, figs
        assert all(f["svg"] and f["traces"] >= 1 and f["drawn"] >= 1 for f in figs.values()), figs
        with_metric = sum(1 for r in recs if r["metrics"].get("Test accuracy") is not None) + 1  # + the live one
        assert figs["plot-parallel"]["dims"] == ["epochs", "optimizer", "dropout", "Test accuracy"]
        assert figs["plot-parallel"]["points"] == figs["dropout"]["points"] == with_metric
        assert figs["plot-curves"]["traces"] == 2  # every curve in one trace, and the best trial's
        ticks = tab.evaluate("Array.from(document.querySelectorAll('[data-param=optimizer] .xtick text'))"
                             ".map(t => t.textContent)")
        assert EVIL in ticks, ticks  # text, not markup (plotly draws <a href>, <b>, <br> of its text)
        assert tab.evaluate("document.querySelectorAll('#view-exp a[href^=\"https\"], #view-exp b, #pwned').length") == 0
        curve_points = tab.evaluate("document.getElementById('plot-curves').data[0].x.filter(x => x !== null).length")
        assert curve_points == sum(len(r["curves"].get("Test accuracy", [])) for r in recs)

        # the plots follow the sweep: a progress event reaches the learning curves and the scatters
        app.state.broker.publish("progress", {"experiment": name, "trial": pending.name, "metric": "Test accuracy",
                                              "value": 0.7777, "step": 4})
        tab.wait("document.getElementById('plot-curves').data[0].y.includes(0.7777)"
                 " && document.querySelector('[data-param=dropout]').data[0].y.includes(0.7777)", timeout=20)

        requests = tab.requests
        assert tab.errors == []
    assert f"{base}/static/plotly.min.js" in requests
    assert requests and all(u.startswith(base + "/") for u in requests), requests  # nothing leaves 127.0.0.1


def test_static_files_are_the_packaged_ones_cached_and_nothing_else(tmp_path):
    import httpx

    from kubesweep.serve import page

    with serving(tmp_path) as (base, _), httpx.Client(base_url=base) as http:
        index = http.get("/")
        assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in index.headers["content-security-policy"] and "set-cookie" not in index.headers
        js = http.get("/static/plotly.min.js")
        assert js.status_code == 200 and js.headers["content-encoding"] == "gzip"
        assert js.content == page.plotly_js().read_bytes()  # httpx unpacks it: the plotly package's own
        again = http.get("/static/plotly.min.js", headers={"If-None-Match": js.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
        plain = http.get("/static/app.js", headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in plain.headers
        assert plain.content == (page.STATIC / "app.js").read_bytes()
        for bad in ("/static/index.html.bak", "/static/..%2Fpage.py", "/static/%2E%2E/page.py", "/static/"):
            assert http.get(bad).status_code == 404, bad


LOUD_SLEEPER = """\
name: {name}
image: {trainer}
command: [python3, -c, "import time, sys; print('trial', sys.argv[2], 'started', flush=True); time.sleep(float(sys.argv[1])); print('score=' + sys.argv[2])", "${{sleep}}", "${{i}}"]
parameters:
  sleep: [300]
  i: {{min: 1, max: 4}}
batchSize: 2
objective: {{metric: score}}
resources: {{cpu: 100m, memory: 64Mi}}
"""


@pytest.fixture
def trainer(local_cluster):
    from kubesweep.local import image

    return image.ensure(GRID.parent, "kubesweep/mnist", build_args={"BASE": "kubesweep/python-base:bookworm"}).reference


@pytest.mark.cluster
def test_the_page_follows_a_real_sweep_and_its_cancel_button_deletes_the_jobs(tmp_path, local_cluster, api, trainer,
                                                                              browser_exe):
    import secrets

    import httpx

    from kubesweep.k8s import client as kube
    from kubesweep.plan import job as manifest
    from kubesweep.run import lifecycle
    from kubesweep.serve import auth

    name = f"serve-page-{secrets.token_hex(3)}"
    token = "serve-page-" + secrets.token_urlsafe(16)
    tokens = auth.Tokens((auth.Token("admin", token, None),), from_file=True)  # every GET needs it too
    selector = f"{manifest.L_EXPERIMENT}={name}"

    def jobs() -> list[Any]:
        return api["batch"].list_namespaced_job("default", label_selector=selector).items

    project = tmp_path / "project"
    project.mkdir()
    target = sweep.Target(kubeconfig=str(local_cluster["kubeconfig"]))
    try:
        with serving(project, target, tokens=tokens) as (base, app), headless.Tab(browser_exe) as tab:
            made = httpx.post(f"{base}/api/sweeps", content=LOUD_SLEEPER.format(name=name, trainer=trainer).encode(),
                              headers={"Authorization": f"Bearer {token}", "Content-Type": "application/yaml"},
                              timeout=120)
            assert made.status_code == 201, made.text
            tab.open(f"{base}/#token={token}")
            tab.wait(f"!!document.querySelector('#experiments tbody tr[data-experiment={json.dumps(name)}]')")
            tab.evaluate(f"location.hash = '#/e/{name}'")
            # the page shows the two trials of the first batch running, on a node, from live events
            with explained(app, name):
                running = tab.wait(f"""(() => {{ const r = {rows_js('#trials')}.filter(r => r[1] === 'running' && r[2]);
                                       return r.length === 2 && r; }})()""", timeout=240)
            assert {r[0] for r in running} == {j.metadata.name for j in jobs()}
            assert tab.evaluate("document.getElementById('exp-driven').hidden") is False
            assert tab.evaluate("document.getElementById('live').textContent") == "live"

            # a running trial's log, followed as it is written
            trial = sorted(r[0] for r in running)[0]
            tab.click(f"#trials a[href$={json.dumps('/t/' + trial)}]")
            with explained(app, name):
                tab.wait("document.getElementById('log').textContent.includes(' started')", timeout=60)
            assert tab.evaluate("document.getElementById('log-state').textContent") == "following"

            # Cancel: the first click asks, the second posts with the token
            tab.evaluate(f"location.hash = '#/e/{name}'")
            tab.wait("!document.getElementById('view-exp').hidden && !document.getElementById('btn-cancel').disabled")
            tab.click("#btn-cancel")
            assert "?" in tab.evaluate("document.getElementById('btn-cancel').textContent")
            assert jobs(), "the first click cancelled already"
            tab.click("#btn-cancel")
            said = tab.wait("(() => { const m = document.getElementById('msg'); return !m.hidden && m.textContent; })()",
                            timeout=120)
            assert "2 unfinished trials cancelled" in said, said
            deadline = time.monotonic() + 120
            while jobs():  # the unfinished Jobs are gone from the cluster
                assert time.monotonic() < deadline, [j.metadata.name for j in jobs()]
                time.sleep(1)
            with explained(app, name):
                shown = tab.wait(f"""(() => {{ const r = {rows_js('#trials')};
                                     return r.filter(r => r[1] === 'cancelled').length === 2 && r; }})()""", timeout=120)
            assert sorted(r[1] for r in shown) == ["cancelled", "cancelled", "pending", "pending"], shown
            # the sweep thread stopped: the server tells it of the cancel (Hooks.cancelled) rather than
            # leaving it to the Job watch's marks, which a loaded API server once delayed past 60 s;
            # its report is written before the page hears of the end
            with explained(app, name):
                tab.wait("document.getElementById('exp-driven').hidden", timeout=180)
            requests, errors = tab.requests, tab.errors
            (post,) = [e["params"]["request"] for e in tab.pipe.events if e.get("method") == "Network.requestWillBeSent"
                       and e["params"]["request"]["url"].endswith("/cancel")]
        assert post["method"] == "POST" and post["headers"]["Authorization"] == f"Bearer {token}"
        assert "Cookie" not in post["headers"]
        assert all(u.startswith(base + "/") for u in requests), requests
        assert f"{base}/api/experiments/{name}/cancel" in requests
        assert errors == [], errors
    finally:
        lifecycle.clean(kube.clients(str(local_cluster["kubeconfig"])), name, namespace="default")


@pytest.mark.slow
def test_behind_a_tokens_file_the_page_needs_the_token_and_shows_what_the_server_refuses(tmp_path, browser_exe):
    from kubesweep.serve import auth

    plan, _ = workspace(tmp_path)
    name = plan.experiment.name
    token = "page-" + "x" * 24
    tokens = auth.Tokens((auth.Token("admin", token, None),), from_file=True)
    with serving(tmp_path, tokens=tokens) as (base, _), headless.Tab(browser_exe) as tab:
        tab.open(f"{base}/")  # no token: nothing is shown but where to find one
        said = tab.wait("(() => { const m = document.getElementById('msg'); return !m.hidden && m.textContent; })()")
        assert "#token=" in said and tab.evaluate("document.querySelectorAll('#experiments tbody tr').length") == 0
        tab.open(f"{base}/#token={token}")  # the fragment only: the page takes it on hashchange
        tab.wait(f"sessionStorage.getItem('kubesweep.token') === {token!r}")
        tab.open(f"{base}/")  # a reload without the fragment: the tab still has it (sessionStorage)
        tab.wait("document.querySelectorAll('#experiments tbody tr').length === 1")
        tab.evaluate(f"location.hash = '#/e/{name}'")
        tab.wait("window.kubesweepRendered && window.kubesweepRendered.table")
        tab.click("#btn-retry")  # not submitted to this server: the server's refusal, as it said it
        said = tab.wait("(() => { const m = document.getElementById('msg'); return !m.hidden && m.textContent; })()")
        assert "was not submitted to this server" in said, said
        (post,) = [e["params"]["request"] for e in tab.pipe.events if e.get("method") == "Network.requestWillBeSent"
                   and e["params"]["request"]["url"].endswith("/retry")]
        assert post["method"] == "POST" and post["headers"]["Authorization"] == f"Bearer {token}"
        unexpected = [e for e in tab.errors if "status of 401" not in e and "status of 409" not in e]
        assert unexpected == [] and tab.evaluate("document.cookie") == ""


def test_the_tensorboard_button_opens_the_experiments_tensorboard_through_the_server(tmp_path, browser_exe,
                                                                                     monkeypatch):
    """Behind a tokens file (so TensorBoard's tab needs the cookie): the button posts with the
    token, opens a tab on the server's /tensorboard/<experiment>/, and the browser sends the
    cookie the POST set, so the stand-in TensorBoard behind the server answers there; the page
    itself cannot read that cookie, and TensorBoard gets neither it nor the token."""
    from kubesweep.k8s import client as kube
    from kubesweep.run import tensorboard as tb
    from kubesweep.serve import auth, routes_read

    from .test_serve_tensorboard import Upstream

    plan, _ = workspace(tmp_path)
    name = plan.experiment.name
    upstream = Upstream()

    class Forward:
        base = upstream.base

        def close(self) -> None:
            pass

    monkeypatch.setattr(tb, "ensure", lambda c, ns, exp, *, image: f"tensorboard-{exp}")
    monkeypatch.setattr(tb, "forward", lambda *a, **k: Forward())
    monkeypatch.setattr(routes_read, "_clients", lambda request: object())
    monkeypatch.setattr(kube, "in_cluster", lambda: False)
    token = "page-" + "t" * 24
    tokens = auth.Tokens((auth.Token("admin", token, None),), from_file=True)
    try:
        with serving(tmp_path, tokens=tokens, tensorboard_image="localhost:5000/kubesweep/tensorboard:x") as (base, _), \
                headless.Tab(browser_exe) as tab:
            tab.open(f"{base}/#token={token}")
            tab.wait("sessionStorage.getItem('kubesweep.token')")
            tab.evaluate(f"location.hash = '#/e/{name}'")
            tab.wait("window.kubesweepRendered && window.kubesweepRendered.table")
            # a user's click (a gesture: the page's window.open is not a blocked pop-up)
            tab.pipe.send("Runtime.evaluate", {"expression": "document.getElementById('btn-tensorboard').click()",
                                               "userGesture": True}, session=tab.session)
            want, deadline, opened = f"{base}/tensorboard/{name}/", time.monotonic() + 30, None
            while opened is None and time.monotonic() < deadline:
                pages = tab.pipe.send("Target.getTargets")["targetInfos"]
                opened = next((t for t in pages if t["type"] == "page" and t["url"] == want), None)
                time.sleep(0.1)
            assert opened is not None, [t["url"] for t in pages]
            other = tab.pipe.send("Target.attachToTarget", {"targetId": opened["targetId"], "flatten": True})["sessionId"]

            def there(expression: str) -> Any:
                return tab.pipe.send("Runtime.evaluate", {"expression": expression, "returnByValue": True},
                                     session=other)["result"].get("value")

            deadline = time.monotonic() + 30
            while "tensorboard" not in (there("document.body && document.body.innerText") or "") \
                    and time.monotonic() < deadline:
                time.sleep(0.1)
            assert json.loads(there("document.body.innerText")) == {"path": f"/tensorboard/{name}/"}
            assert there("document.cookie") == "" and tab.evaluate("document.cookie") == ""  # HttpOnly
            got = upstream.seen[-1]
            assert got["path"] == f"/tensorboard/{name}/"
            assert "cookie" not in got["headers"] and "authorization" not in got["headers"]
            (post,) = [e["params"]["request"] for e in tab.pipe.events if e.get("method") == "Network.requestWillBeSent"
                       and e["params"]["request"]["url"].endswith("/tensorboard")]
            assert post["method"] == "POST" and post["headers"]["Authorization"] == f"Bearer {token}"
    finally:
        upstream.close()
