"""`kubesweep serve`'s write side without a cluster: submitting through the API (a sweep file or
the JSON form), the CLI's own validation with the body's line numbers, namespaces, 409s, and the
sweeps the server drives — resumed at start, stopped as Ctrl-C stops the CLI, their errors kept to
themselves. Only ``sweep.run`` (the boundary to the cluster) is stubbed."""

from __future__ import annotations

import json
import textwrap
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from kubesweep import sweep as sweeps
from kubesweep.errors import KubesweepError
from kubesweep.run.trialstate import TrialRecord
from kubesweep.serve import auth, runs
from kubesweep.serve.app import create_app
from kubesweep.serve.config import ServeConfig

ADMIN = "admin-token-0123456789abcdef"
ALICE = "alice-token-0123456789abcdef"

GRID = """\
name: demo
image: localhost:5000/demo/trainer:1
command: [python3, train.py, "${epochs}", "${optimizer}"]
parameters:
  epochs: [1, 2, 3]
  optimizer: [adam, sgd]
objective: {metric: accuracy}
resources: {cpu: 100m, memory: 64Mi}
"""


def cfg_for(tmp_path: Path) -> ServeConfig:
    tokens = auth.Tokens((auth.Token("admin", ADMIN, None), auth.Token("alice", ALICE, frozenset({"team-a"}), "team-a")),
                         from_file=True)
    return ServeConfig(where=sweeps.Workspace.under(tmp_path / "project"),
                       target=sweeps.Target(kubeconfig=str(tmp_path / "no-kubeconfig")),
                       state_dir=tmp_path / "state", host="127.0.0.1", port=8080, tokens=tokens)


class FakeRun:
    """``sweep.run`` at the boundary: records each call; a sweep blocks while ``hold`` is set,
    tells its hooks one trial running then succeeded, and ends as ``outcome`` says."""

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.hold = threading.Event()
        self.started = threading.Event()
        self.error: BaseException | None = None
        self.gate = threading.Event()  # cleared: the sweep waits before it does anything
        self.gate.set()

    def __call__(self, plan, target, where, *, retry_failed=False, hooks=None, **kw):
        self.gate.wait(10)
        self.calls.append({"plan": plan, "retry_failed": retry_failed, "where": where})
        exp = plan.experiment
        sweeps.render(plan, where.jobs_dir)  # what the real call writes first: jobs/<exp>/plan.json
        rec = TrialRecord(plan.trials[0].name, "batch-000", dict(plan.trials[0].params), state="running",
                          start="2026-01-01T00:00:00Z")
        hooks.change(rec)
        hooks.progress.seen(rec.name, 0.5, 1.0)
        self.started.set()
        while self.hold.is_set():
            time.sleep(0.02)
        if self.error is not None:
            raise self.error
        rec.state, rec.end, rec.metrics = "succeeded", "2026-01-01T00:01:00Z", {exp.objective.metric: 0.9}
        hooks.change(rec)
        counts = dict.fromkeys(("pending", "running", "succeeded", "failed", "pruned", "cancelled"), 0)
        counts["succeeded"] = 1
        return sweeps.Outcome(exp.name, counts, None, 1.0, {"trial": rec.name, "value": 0.9, "params": rec.params})


@pytest.fixture
def fake(monkeypatch):
    f = FakeRun()
    monkeypatch.setattr(sweeps, "run", f)
    return f


@pytest.fixture
def events(monkeypatch):
    seen: list[tuple[str, dict]] = []
    from kubesweep.serve import events as ev

    original = ev.Broker.publish

    def publish(self, event, data):
        seen.append((event, data))
        original(self, event, data)

    monkeypatch.setattr(ev.Broker, "publish", publish)
    return seen


def client_for(cfg: ServeConfig) -> TestClient:
    return TestClient(create_app(cfg), base_url="http://127.0.0.1:8080")


def post(client, path, body=b"", token=ADMIN, content_type="application/yaml"):
    headers = {"content-type": content_type}
    if token:
        headers["authorization"] = f"Bearer {token}"
    return client.post(path, content=body, headers=headers)


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def written(tmp_path: Path) -> list[str]:
    """Every file the project and the state dir hold (what a refused request must not leave)."""
    return sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())


def state_of(cfg, name):
    path = cfg.state_dir / "runs" / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def test_a_sweep_file_runs_in_a_thread_and_its_outcome_is_kept(tmp_path, fake, events):
    cfg = cfg_for(tmp_path)
    with client_for(cfg) as client:
        r = post(client, "/api/sweeps", GRID.encode())
        assert r.status_code == 201, r.text
        assert r.json() == {"experiment": "demo", "namespace": "default", "trials": 6}
        assert wait_for(lambda: (state_of(cfg, "demo") or {}).get("state") == "finished")
    saved = state_of(cfg, "demo")
    assert saved["outcome"]["counts"]["succeeded"] == 1 and saved["outcome"]["exit_code"] == 0
    assert saved["submitted_by"] == "admin" and saved["options"] == {"retry_failed": False}
    assert (cfg.state_dir / saved["body"]).read_text() == GRID
    [call] = fake.calls
    assert call["retry_failed"] is False and len(call["plan"].trials) == 6
    assert call["plan"].source.path == str(cfg.state_dir / "submissions" / "demo.yaml")
    kinds = [e for e, _ in events]
    assert {"trial", "progress", "experiment"} <= set(kinds)
    trial = next(d for e, d in events if e == "trial")
    assert trial["experiment"] == "demo" and trial["namespace"] == "default" and trial["state"] == "running"
    progress = next(d for e, d in events if e == "progress")
    assert progress == {"experiment": "demo", "trial": trial["name"], "metric": "accuracy", "value": 0.5, "step": 1.0}
    last = [d for e, d in events if e == "experiment"][-1]
    assert last["counts"]["succeeded"] == 1 and last["counts"]["pending"] == 5 and not last["driven"]
    assert last["best"]["value"] == 0.9 and last["outcome"] == "finished"


def test_live_rows_while_a_trial_runs_and_409_while_driven(tmp_path, fake):
    cfg = cfg_for(tmp_path)
    fake.hold.set()
    fake.gate.clear()
    with client_for(cfg) as client:
        assert post(client, "/api/sweeps", GRID.encode()).status_code == 201
        # listed at once, before the sweep thread has written anything
        listed = client.get("/api/experiments/demo", headers={"authorization": f"Bearer {ADMIN}"})
        assert listed.status_code == 200 and listed.json()["total"] == 6 and listed.json()["driven"] is True
        index = json.loads((cfg.where.jobs_dir / "demo" / sweeps.PLAN_FILE).read_text())
        assert index["source"]["path"] == str(cfg.state_dir / "submissions" / "demo.yaml")
        fake.gate.set()
        assert fake.started.wait(10)
        manager = client.app.state.manager
        assert manager.driven() == {"demo"}
        [(name, row)] = manager.live("demo").items()
        assert row["state"] == "running" and row["metric"] == 0.5 and row["step"] == 1.0 and row["curve"] == [[1.0, 0.5]]
        again = post(client, "/api/sweeps", GRID.encode())
        assert again.status_code == 409 and "running on this server already" in again.json()["message"]
        assert post(client, "/api/experiments/demo/retry", b"").status_code == 409
        shown = client.get("/api/experiments/demo", headers={"authorization": f"Bearer {ADMIN}"})
        assert shown.status_code == 200 and shown.json()["driven"] is True
        fake.hold.clear()
        assert wait_for(lambda: not manager.driven())
        assert manager.live("demo") == {}
    assert len(fake.calls) == 1


def test_a_bad_sweep_file_is_told_with_the_body_line_and_nothing_is_written(tmp_path, fake):
    cfg = cfg_for(tmp_path)
    bad = GRID.replace("  optimizer: [adam, sgd]", "  optimizer: [adam, sgd]\nbatchSize: three").replace(
        "{metric: accuracy}", "{metric: accuracy, direction: upward}")
    with client_for(cfg) as client:
        r = post(client, "/api/sweeps", bad.encode())
    assert r.status_code == 422, r.text
    body = r.json()
    assert str(tmp_path) not in r.text
    lines = {e["line"] for e in body["errors"]}
    assert 7 in lines and 8 in lines, body  # batchSize on line 7, direction on line 8
    assert all(e["column"] >= 1 and e["message"] for e in body["errors"])
    assert body["message"].startswith("body:7:") and body["message"].endswith("nothing was written.")
    assert "body:8:" in body["message"]
    assert written(tmp_path) == [] and not fake.calls


def test_a_yaml_syntax_error_points_into_the_body(tmp_path, fake):
    cfg = cfg_for(tmp_path)
    with client_for(cfg) as client:
        r = post(client, "/api/sweeps", b"name: demo\nimage: [unclosed\ncommand: x\n", content_type="text/plain")
    assert r.status_code == 422
    [error] = r.json()["errors"]
    assert error["line"] >= 2 and r.json()["message"].startswith(f"body:{error['line']}:")
    assert written(tmp_path) == [] and not fake.calls


def test_json_form_becomes_a_grid_with_its_trials_counted(tmp_path, fake):
    cfg = cfg_for(tmp_path)
    form = {"name": "resnet", "model": "resnet", "type": "gpu", "gpus": 2, "metric": "accuracy",
            "parameters": {"lr": [0.1, 0.01, 0.001], "epochs": {"min": 1, "max": 4}}}
    with client_for(cfg) as client:
        r = post(client, "/api/sweeps", json.dumps(form).encode(), content_type="application/json")
        assert r.status_code == 201, r.text
        assert r.json() == {"experiment": "resnet", "namespace": "default", "trials": 12}
        assert wait_for(lambda: (state_of(cfg, "resnet") or {}).get("state") == "finished")
    plan = fake.calls[0]["plan"]
    exp = plan.experiment
    assert exp.image == "localhost:5000/models/resnet-train-gpu:latest" and exp.resources.gpu == 2
    assert exp.command == ["python", "train.py", "--lr", "${lr}", "--epochs", "${epochs}"]
    assert {t.params["epochs"] for t in plan.trials} == {1, 2, 3, 4}


def test_json_form_errors_name_the_field(tmp_path, fake):
    cfg = cfg_for(tmp_path)
    cases = [
        ({"name": "x", "image": "i", "type": "tpu", "parameters": {"a": [1]}}, "type", "cpu or gpu"),
        ({"name": "x", "image": "i", "type": "cpu", "gpus": 1, "parameters": {"a": [1]}}, "gpus", "no GPU"),
        ({"name": "x", "image": "i", "parameters": {"a": [1]}, "colour": "red"}, "colour", "unknown field"),
        # a problem the grid's own validation finds is told by the form field it came from
        ({"name": "x", "image": "i", "metric": "acc", "parameters": {"a": [1], "lr": {"min": 1}}}, "parameters.lr", ""),
        ({"name": "Bad_Name", "image": "i", "metric": "acc", "parameters": {"a": [1]}}, "name", ""),
    ]
    with client_for(cfg) as client:
        for form, field, words in cases:
            r = post(client, "/api/sweeps", json.dumps(form).encode(), content_type="application/json")
            assert r.status_code == 422, (form, r.text)
            body = r.json()
            assert body["message"].startswith(f"form.{field}: ") and words in body["message"], body
            assert body["errors"][0]["field"] == field
        r = post(client, "/api/sweeps", b"{not json", content_type="application/json")
        assert r.status_code == 400
    assert written(tmp_path) == [] and not fake.calls


def test_a_build_section_is_refused_at_its_line(tmp_path, fake):
    cfg = cfg_for(tmp_path)
    text = GRID.replace("trainer:1", "trainer").replace("command:", "build: {context: .}\ncommand:")
    with client_for(cfg) as client:
        r = post(client, "/api/sweeps", text.encode())
    assert r.status_code == 422, r.text
    assert r.json()["message"].startswith("body:3:1: build: is not accepted through the API")
    assert written(tmp_path) == [] and not fake.calls


def test_namespace_is_the_files_else_the_team_s_and_another_is_403(tmp_path, fake):
    cfg = cfg_for(tmp_path)
    with client_for(cfg) as client:
        r = post(client, "/api/sweeps", ("namespace: team-b\n" + GRID).encode(), token=ALICE)
        assert r.status_code == 403 and "team-b" in r.json()["message"]
        assert written(tmp_path) == [] and not fake.calls
        r = post(client, "/api/sweeps", GRID.encode(), token=ALICE)
        assert r.status_code == 201 and r.json()["namespace"] == "team-a"
        assert wait_for(lambda: (state_of(cfg, "demo") or {}).get("state") == "finished")
        # another team's experiment is as absent: 404, not 403
        other = post(client, "/api/sweeps", GRID.replace("name: demo", "name: other").encode())
        assert other.status_code == 201 and other.json()["namespace"] == "default"
        assert wait_for(lambda: (state_of(cfg, "other") or {}).get("state") == "finished")
        assert post(client, "/api/experiments/other/retry", token=ALICE).status_code == 404
        assert post(client, "/api/experiments/other/cancel", token=ALICE).status_code == 404
        assert post(client, "/api/experiments/nothing/cancel").status_code == 404
    assert fake.calls[0]["plan"].experiment.namespace == "team-a"


def test_state_changes_need_the_token_and_the_body_has_a_limit(tmp_path, fake):
    cfg = cfg_for(tmp_path)
    with client_for(cfg) as client:
        assert post(client, "/api/sweeps", GRID.encode(), token=None).status_code == 401
        assert post(client, "/api/sweeps", GRID.encode(), token="wrong-token-0123456789").status_code == 401
        big = GRID.encode() + b"#" * (1024 * 1024)
        assert post(client, "/api/sweeps", big).status_code == 413
        assert post(client, "/api/sweeps", GRID.encode(), content_type="image/png").status_code == 415
        assert post(client, "/api/sweeps", b"  \n").status_code == 422
    assert written(tmp_path) == [] and not fake.calls


def test_a_failing_sweep_is_recorded_and_the_server_goes_on(tmp_path, fake, events):
    cfg = cfg_for(tmp_path)
    fake.error = KubesweepError("the API server at https://10.0.0.1:6443 does not answer")
    with client_for(cfg) as client:
        assert post(client, "/api/sweeps", GRID.encode()).status_code == 201
        assert wait_for(lambda: (state_of(cfg, "demo") or {}).get("state") == "failed")
        assert client.get("/api/health").json() == {"ok": True}
        saved = state_of(cfg, "demo")
        assert saved["message"] == "the API server at https://10.0.0.1:6443 does not answer"
        end = [d for e, d in events if e == "experiment"][-1]
        assert end["outcome"] == "failed" and "does not answer" in end["message"]
        # an unexpected exception too
        fake.error = ConnectionResetError("reset by peer")
        assert post(client, "/api/experiments/demo/retry").status_code == 202
        assert wait_for(lambda: (state_of(cfg, "demo") or {}).get("state") == "failed"
                        and "reset by peer" in (state_of(cfg, "demo")["message"] or ""))
        assert fake.calls[-1]["retry_failed"] is True


def test_retry_reruns_with_retry_failed_and_a_resume_does_not_forget_again(tmp_path, fake):
    cfg = cfg_for(tmp_path)
    with client_for(cfg) as client:
        assert post(client, "/api/sweeps", GRID.encode()).status_code == 201
        assert wait_for(lambda: (state_of(cfg, "demo") or {}).get("state") == "finished")
        r = post(client, "/api/experiments/demo/retry")
        assert r.status_code == 202 and r.json() == {"experiment": "demo", "namespace": "default", "retrying": True}
        assert wait_for(lambda: len(fake.calls) == 2 and (state_of(cfg, "demo") or {}).get("state") == "finished")
    assert [c["retry_failed"] for c in fake.calls] == [False, True]


def test_stop_leaves_a_sweep_running_and_start_resumes_it(tmp_path, fake):
    cfg = cfg_for(tmp_path)
    fake.hold.set()
    with client_for(cfg) as client:
        assert post(client, "/api/sweeps", GRID.encode()).status_code == 201
        assert fake.started.wait(10)
        thread = client.app.state.manager._runs["demo"].thread
    # the server stopped (lifespan end): the thread was interrupted as Ctrl-C would, the state says running
    assert not thread.is_alive()
    assert state_of(cfg, "demo")["state"] == "running"
    fake.hold.clear()
    fake.started.clear()
    with client_for(cfg) as client:  # a new server on the same state dir resumes it: the same call again
        assert fake.started.wait(10)
        assert wait_for(lambda: (state_of(cfg, "demo") or {}).get("state") == "finished")
    assert len(fake.calls) == 2
    first, second = fake.calls
    assert second["plan"].source.path == first["plan"].source.path
    assert [t.name for t in second["plan"].trials] == [t.name for t in first["plan"].trials]
    assert second["plan"].experiment.namespace == "default" and second["retry_failed"] is False


def test_start_resumes_what_a_state_dir_says_was_running(tmp_path, fake):
    """A state dir as a killed server left it (written by hand here): start() runs the same call."""
    cfg = cfg_for(tmp_path)
    (cfg.state_dir / "submissions").mkdir(parents=True)
    (cfg.state_dir / "submissions" / "demo.yaml").write_text(textwrap.dedent(GRID))
    for name, state in (("demo", "running"), ("done", "finished")):
        runs.write_json(cfg.state_dir / "runs" / f"{name}.json", {
            "experiment": name, "namespace": "team-a", "body": f"submissions/{name}.yaml",
            "options": {"retry_failed": False}, "state": state, "started": "2026-01-01T00:00:00Z"})
    with client_for(cfg):
        assert wait_for(lambda: (state_of(cfg, "demo") or {}).get("state") == "finished")
    [call] = fake.calls  # "done" is not run again
    assert call["plan"].experiment.name == "demo" and call["plan"].experiment.namespace == "team-a"
    assert state_of(cfg, "demo")["started"] == "2026-01-01T00:00:00Z"
    assert state_of(cfg, "done")["state"] == "finished"


def test_katib_and_wandb_bodies_are_detected_as_the_cli_does(tmp_path, fake):
    from tests.conftest import EXAMPLES

    cfg = cfg_for(tmp_path)
    katib = (EXAMPLES / "katib.yaml").read_bytes()
    wandb = (EXAMPLES / "wandb.yaml").read_bytes()
    with client_for(cfg) as client:
        r = post(client, "/api/sweeps", katib, content_type="text/yaml")
        assert r.status_code == 201, r.text
        assert r.json() == {"experiment": "mnist-katib", "namespace": "default",
                            "trials": len(sweeps.plan(EXAMPLES / "katib.yaml").trials)}
        # a W&B config names no image: the CLI's --image, as a query parameter
        r = post(client, "/api/sweeps", wandb, content_type="text/yaml")
        assert r.status_code == 422 and "--image" in r.json()["message"] and str(tmp_path) not in r.text
        r = client.post("/api/sweeps?image=localhost:5000/kubesweep/mnist:1", content=wandb,
                        headers={"authorization": f"Bearer {ADMIN}", "content-type": "text/plain"})
        assert r.status_code == 201, r.text
        assert r.json()["trials"] == len(sweeps.plan(EXAMPLES / "wandb.yaml", image="localhost:5000/kubesweep/mnist:1").trials)
        assert wait_for(lambda: all((state_of(cfg, n) or {}).get("state") == "finished"
                                    for n in ("mnist-katib", "mnist-wandb")))
    assert state_of(cfg, "mnist-wandb")["options"]["image"] == "localhost:5000/kubesweep/mnist:1"
    assert {c["plan"].experiment.name: c["plan"].image for c in fake.calls}["mnist-wandb"] == "localhost:5000/kubesweep/mnist:1"
    # a restart resumes it with the same --image
    runs.write_json(cfg.state_dir / "runs" / "mnist-wandb.json", {**state_of(cfg, "mnist-wandb"), "state": "running"})
    with client_for(cfg):
        assert wait_for(lambda: (state_of(cfg, "mnist-wandb") or {}).get("state") == "finished")
    assert fake.calls[-1]["plan"].image == "localhost:5000/kubesweep/mnist:1"


def test_json_form_nan_is_a_field_error_not_a_crash(tmp_path, fake):
    cfg = cfg_for(tmp_path)
    with client_for(cfg) as client:
        r = post(client, "/api/sweeps", b'{"name": "x", "image": "i", "parameters": {"lr": [NaN]}}',
                 content_type="application/json")
    assert r.status_code == 422 and r.json()["errors"] == [
        {"field": "parameters.lr", "message": "NaN and Infinity are not values a trial can be given"}]
    assert written(tmp_path) == [] and not fake.calls
