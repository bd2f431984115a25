"""output.share on the real local cluster (marker: cluster): every node container has this
machine's share directory at /share; a small sweep's trials write there and archive their
stdout, and the files are on this machine after the Jobs and pods are deleted."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from kubesweep.k8s import client as kube
from kubesweep.local import cluster, image, nodes
from kubesweep.local.paths import cache_root
from kubesweep.plan import job as manifest
from kubesweep.plan import planner as render
from kubesweep.run import lifecycle

from .conftest import EXAMPLES, INVENTORY

pytestmark = pytest.mark.cluster

KUBESWEEP = Path(sys.executable).parent / "kubesweep"
SHARE = cache_root() / "share" / INVENTORY.name  # local_node_share_dir's default


@pytest.fixture(scope="module")
def trainer(local_cluster):
    return image.ensure(EXAMPLES, "kubesweep/mnist", build_args={"BASE": "kubesweep/python-base:bookworm"}).reference


def test_every_node_has_this_machines_share_directory_at_slash_share(local_cluster):
    marker = f"seen-{secrets.token_hex(4)}"
    (SHARE / marker).write_text(marker)
    try:
        for host in nodes.inventory_hosts(INVENTORY):
            proc = subprocess.run(["docker", "exec", host.name, "cat", f"/share/{marker}"], capture_output=True,
                                  text=True)
            assert proc.returncode == 0 and proc.stdout == marker, (host.name, proc.stderr)
    finally:
        (SHARE / marker).unlink()


def test_a_rerun_of_the_node_play_keeps_the_nodes(local_cluster):
    """The share's mount is in place, so the node containers are left as they are (comparisons:
    volumes allow_more_present recreates only a node that lacks a bind mount)."""
    before = {h.name: _created(h.name) for h in nodes.inventory_hosts(INVENTORY)}
    run = cluster.playbook(INVENTORY, "playbooks/local_nodes.yml", echo=False)
    assert run.ok and run.changed == 0, cluster.failure_excerpt(run.output)
    assert {name: _created(name) for name in before} == before


def _created(container: str) -> str:
    return subprocess.run(["docker", "inspect", "-f", "{{.Created}}", container], capture_output=True,
                          text=True, check=True).stdout.strip()


def test_trials_write_to_the_share_and_archive_their_stdout_which_outlive_the_jobs(tmp_path, local_cluster, api, trainer):
    name = f"share-{secrets.token_hex(3)}"
    grid = tmp_path / "grid.yaml"
    grid.write_text(textwrap.dedent(f"""\
    name: {name}
    namespace: default
    image: {trainer}
    command: [python3, /app/train.py, --epochs=1, "--optimizer=${{opt}}"]
    parameters: {{opt: [adam, sgd]}}
    objective: {{metric: Test accuracy}}
    resources: {{cpu: 250m, memory: 256Mi}}
    output: {{share: /share}}
    """))
    kubeconfig = str(local_cluster["kubeconfig"])
    c = kube.clients(kubeconfig)
    experiment = SHARE / "default" / name
    try:
        run = subprocess.run([str(KUBESWEEP), "--kubeconfig", kubeconfig, "--project-dir", str(tmp_path), "sweep",
                              str(grid)], capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stdout + run.stderr
        trials = [t.name for t in render.plan(grid).trials]
        logs = {t: lifecycle.logs(c, t, namespace="default") for t in trials}
        assert lifecycle.clean(c, name, namespace="default") == len(trials)
        selector = f"{manifest.L_EXPERIMENT}={name}"
        deadline = time.monotonic() + 120
        while (api["batch"].list_namespaced_job("default", label_selector=selector).items
               or api["core"].list_namespaced_pod("default", label_selector=selector).items):
            assert time.monotonic() < deadline, "the Jobs and pods were not gone 120 s after clean"
            time.sleep(2)
        for trial in trials:
            where = experiment / trial
            archived = (where / manifest.SHARE_STDOUT).read_text()
            assert "Test accuracy:" in archived and archived.splitlines() == logs[trial].splitlines()
            metrics = json.loads((where / "metrics.json").read_text())
            assert f"Test accuracy: {metrics['test_accuracy']}" in archived
            assert (where / "checkpoint" / "model.npz").stat().st_size > 10_000
            assert (where / "logs" / "train.log").is_file()
        assert sorted(p.name for p in experiment.iterdir()) == sorted(trials)
    finally:
        lifecycle.clean(c, name, namespace="default")
        shutil.rmtree(experiment, ignore_errors=True)
        try:
            experiment.parent.rmdir()  # the team's directory, when no other experiment is there
        except OSError:
            pass


def test_a_node_without_the_share_refuses_the_mount_and_says_why(tmp_path, local_cluster, api, trainer):
    """hostPath type Directory: nothing is made on the node's own disk; the pod waits in
    ContainerCreating with the kubelet's reason as an event (what docs/grid.md tells the user)."""
    name = f"noshare-{secrets.token_hex(3)}"
    grid = tmp_path / "grid.yaml"
    grid.write_text(textwrap.dedent(f"""\
    name: {name}
    namespace: default
    image: {trainer}
    command: [python3, -c, "print('never')", "${{i}}"]
    parameters: {{i: [1]}}
    objective: {{metric: score}}
    resources: {{cpu: 50m, memory: 64Mi}}
    output: {{share: /{name}}}
    """))
    p = render.plan(grid)
    job = manifest.build_job(p.experiment, p.trials[0], image=trainer)
    c = kube.clients(str(local_cluster["kubeconfig"]))
    api["batch"].create_namespaced_job("default", job)
    try:
        selector = f"{manifest.L_TRIAL}={p.trials[0].name}"
        deadline, message = time.monotonic() + 120, ""
        while time.monotonic() < deadline:
            pods = api["core"].list_namespaced_pod("default", label_selector=selector).items
            events = [e for pod in pods for e in api["core"].list_namespaced_event(
                "default", field_selector=f"involvedObject.name={pod.metadata.name}").items if e.reason == "FailedMount"]
            if events:
                message = events[0].message
                break
            time.sleep(2)
        assert f"hostPath type check failed: /{name} is not a directory" in message, message
        (pod,) = api["core"].list_namespaced_pod("default", label_selector=selector).items
        (status,) = pod.status.container_statuses or [None]
        assert pod.status.phase == "Pending" and (status is None or status.state.waiting.reason == "ContainerCreating")
        for host in nodes.inventory_hosts(INVENTORY):  # nothing was made on any node
            assert subprocess.run(["docker", "exec", host.name, "test", "-e", f"/{name}"]).returncode == 1
    finally:
        lifecycle.clean(c, name, namespace="default")
