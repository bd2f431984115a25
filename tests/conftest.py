from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "mnist"

MINIMAL = """\
name: demo
image: localhost:5000/demo/trainer:1
command: [python3, train.py, "${epochs}", "${optimizer}"]
parameters:
  epochs: [1, 2]
  optimizer: [adam, sgd]
objective: {metric: accuracy}
"""


@pytest.fixture
def grid_file(tmp_path: Path):
    """Write a sweep file (dedented) into tmp_path and return its path."""

    def make(text: str = MINIMAL, name: str = "grid.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return make


class ProgressSeen:
    """A runner.Progress listener for tests: wants the trials in ``names``, records what it is shown."""

    def __init__(self, names: list[str] | None = None) -> None:
        self.names = list(names or [])
        self.values: list[tuple[str, float | None]] = []
        self.steps: list[tuple[str, float | None]] = []

    def wanted(self) -> list[str]:
        return list(self.names)

    def seen(self, name: str, value: float | None, step: float | None = None) -> None:
        self.values.append((name, value))
        self.steps.append((name, step))


INVENTORY = ROOT / "inventory" / "local"


def say(request, message: str) -> None:
    """A line on the terminal now, past pytest's capture of the running fixture's output."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capman = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capman is None:
        print(message)
        return
    with capman.global_and_fixture_disabled():
        reporter.write_line(f"\n{message}")


@pytest.fixture(scope="session")
def local_cluster(request):
    """The real three-node cluster, brought up once per session (torn down by test_zz_teardown.py).

    Node containers of another local cluster (the one-node cluster `invoke setup` leaves up) hold
    the registry's port 127.0.0.1:5000 and the node network: the suite replaces that cluster,
    says so, and leaves it to `invoke cluster` to bring back (its registry's images are kept)."""
    import time

    from kubesweep.local import cluster
    from kubesweep.local import nodes
    from kubesweep.local import services

    wanted = {h.name for h in nodes.inventory_hosts(INVENTORY)}
    found = sorted(set(nodes.existing()) - wanted) if services.docker_running() else []
    if found:
        cluster.down()
        message = (f"replaced the local cluster found running ({', '.join(found)}) with {INVENTORY.name}'s three "
                   "nodes; `invoke cluster` brings the one-node cluster back after the tests")
        say(request, message)
    started = time.monotonic()
    run = cluster.up(INVENTORY, echo=False)
    print(f"\ncluster up in {time.monotonic() - started:.0f}s (site.yml {run.seconds:.0f}s)")
    return {"kubeconfig": cluster.kubeconfig_path(INVENTORY), "first_run": run}


@pytest.fixture(scope="session")
def api(local_cluster):
    from kubernetes import client, config

    api_client = config.new_client_from_config(str(local_cluster["kubeconfig"]))
    return {"core": client.CoreV1Api(api_client), "batch": client.BatchV1Api(api_client),
            "coordination": client.CoordinationV1Api(api_client), "apps": client.AppsV1Api(api_client),
            "storage": client.StorageV1Api(api_client)}
