"""TensorBoard per experiment on the real local cluster (marker: cluster): a small mnist sweep with
output.share writes event files; `kubesweep tensorboard EXP` builds (or finds) the TensorBoard
image, starts its Deployment and Service reading /share/<ns>/<exp>, port-forwards it, and its HTTP
API serves each trial's scalars as the trial wrote them; a second start creates nothing; and
`kubesweep serve` on this machine passes /tensorboard/<experiment>/ on to it through its own
port-forward."""

from __future__ import annotations

import json
import queue
import secrets
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest

from kubesweep.k8s import client as kube
from kubesweep.local import image, tensorboard_image
from kubesweep.local.paths import cache_root
from kubesweep.plan import planner as render
from kubesweep.run import lifecycle, tensorboard

from .conftest import EXAMPLES, INVENTORY

pytestmark = pytest.mark.cluster

KUBESWEEP = Path(sys.executable).parent / "kubesweep"
SHARE = cache_root() / "share" / INVENTORY.name  # the nodes' /share


def _get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read())


def _scalars(base: str, trials: list[str], deadline: float, get=_get) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """Every trial's scalars through TensorBoard's HTTP API, once it lists every trial as a run."""
    while True:
        tags = get(base + "data/plugin/scalars/tags")
        if all(t in tags for t in trials) or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert sorted(tags) == sorted(trials), tags
    out = {}
    for trial in trials:
        assert sorted(tags[trial]) == ["loss", "test_accuracy", "test_loss", "train_accuracy", "val_accuracy"]
        out[trial] = {tag: [(step, value) for _, step, value in
                            get(f"{base}data/plugin/scalars/scalars?run={quote(trial)}&tag={tag}")]
                      for tag in ("val_accuracy", "test_accuracy")}
    return out


def _objects(api, name: str) -> dict[str, tuple[str, str]]:
    dep = api["apps"].read_namespaced_deployment(name, "default").metadata
    svc = api["core"].read_namespaced_service(name, "default").metadata
    sets = api["apps"].list_namespaced_replica_set("default", label_selector=f"{tensorboard.L_TENSORBOARD}").items
    return {"deployment": (dep.uid, dep.resource_version), "service": (svc.uid, svc.resource_version),
            "replicasets": tuple(sorted(r.metadata.uid for r in sets if r.metadata.name.startswith(name)))}


def test_tensorboard_serves_each_trials_scalars_and_a_second_start_creates_nothing(tmp_path, local_cluster, api):
    trainer = image.ensure(EXAMPLES, "kubesweep/mnist", build_args={"BASE": "kubesweep/python-base:bookworm"}).reference
    name = f"tb-{secrets.token_hex(3)}"
    grid = tmp_path / "grid.yaml"
    grid.write_text(textwrap.dedent(f"""\
    name: {name}
    namespace: default
    image: {trainer}
    command: [python3, /app/train.py, --epochs=3, "--optimizer=${{opt}}"]
    parameters: {{opt: [adam, sgd]}}
    objective: {{metric: Test accuracy}}
    resources: {{cpu: 250m, memory: 256Mi}}
    output: {{share: /share}}
    """))
    kubeconfig = str(local_cluster["kubeconfig"])
    c = kube.clients(kubeconfig)
    experiment = SHARE / "default" / name
    trials = [t.name for t in render.plan(grid).trials]
    proc = None
    try:
        run = subprocess.run([str(KUBESWEEP), "--kubeconfig", kubeconfig, "--project-dir", str(tmp_path), "sweep",
                              str(grid)], capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stdout + run.stderr
        for trial in trials:
            assert list((experiment / trial).glob("events.out.tfevents.*")), trial

        # the command: namespace from jobs/<exp>/plan.json, image built or found, URL printed
        proc = subprocess.Popen([str(KUBESWEEP), "--kubeconfig", kubeconfig, "--project-dir", str(tmp_path),
                                 "tensorboard", name, "--port", "0"], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
        said, url, deadline = [], None, time.monotonic() + 300
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            said.append(line)
            if line.startswith("TensorBoard at "):
                url = line.split()[2]
        assert url and url.startswith("http://127.0.0.1:"), "".join(said)
        assert any(f"reading /share/default/{name}" in line for line in said), said

        scalars = _scalars(url, trials, time.monotonic() + 60)
        for trial in trials:
            metrics = json.loads((experiment / trial / "metrics.json").read_text())
            assert [(s, round(v, 4)) for s, v in scalars[trial]["val_accuracy"]] == \
                [(e["epoch"], e["val_accuracy"]) for e in metrics["epochs"]]
            assert [(s, round(v, 4)) for s, v in scalars[trial]["test_accuracy"]] == [(3, metrics["test_accuracy"])]

        proc.send_signal(signal.SIGINT)  # Ctrl-C: the forward stops, the Deployment stays
        assert proc.wait(timeout=30) == 130
        tb_name = tensorboard.name_for(name)
        before = _objects(api, tb_name)
        assert len(before["replicasets"]) == 1

        # reuse: the library call (what `kubesweep serve` does) creates and changes nothing
        ref = tensorboard_image.ensure()
        assert not ref.built
        assert tensorboard.ensure(c, "default", name, image=ref.reference) == tb_name
        with tensorboard.forward(c, "default", tb_name, path=tensorboard.path_prefix(name) + "/") as fwd:
            assert _scalars(fwd.url, trials, time.monotonic() + 30) == scalars
        assert _objects(api, tb_name) == before

        # the server on this machine: its POST reuses them, its path reaches them through its forward
        from fastapi.testclient import TestClient

        from kubesweep.serve import auth
        from kubesweep.serve.app import create_app
        from kubesweep.serve.config import ServeConfig
        from kubesweep.sweep import Target, Workspace

        cfg = ServeConfig(Workspace.under(tmp_path), Target(kubeconfig=kubeconfig), tmp_path / "serve-state",
                          "127.0.0.1", 8080, auth.Tokens.generated(), tensorboard_image=ref.reference)
        with TestClient(create_app(cfg), base_url="http://127.0.0.1:8080") as http:
            answer = http.post(f"/api/experiments/{name}/tensorboard",
                               headers={"Authorization": f"Bearer {cfg.tokens.entries[0].secret}"})
            assert answer.status_code == 200, answer.text
            url = answer.json()["url"]
            assert url == f"/tensorboard/{name}/"
            assert "<html" in http.get(url).text.lower()
            assert _scalars(url, trials, time.monotonic() + 30, get=lambda u: http.get(u).json()) == scalars
        assert _objects(api, tb_name) == before
        pod = api["core"].list_namespaced_pod("default", label_selector=f"{tensorboard.L_TENSORBOARD}={name}").items[0]
        assert pod.spec.security_context.run_as_non_root and pod.spec.containers[0].security_context.read_only_root_filesystem
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        tensorboard.delete(c, "default", name)
        lifecycle.clean(c, name, namespace="default")
        shutil.rmtree(experiment, ignore_errors=True)
        try:
            experiment.parent.rmdir()
        except OSError:
            pass
