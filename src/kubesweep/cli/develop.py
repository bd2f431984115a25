"""The repository's own commands (invoke cluster, setup, artifacts, conformance, test, lint): the
local cluster from our playbooks, the offline mirror built from source, and the test runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def cluster(inventory: Path | None, *, down: bool, fake_nodes: int | None, gpus_per_node: int) -> None:
    """Bring the local cluster of ``inventory`` (default: the checkout's inventory/single) up, or down."""
    from kubesweep.local import cluster as local
    from kubesweep.local import fake_nodes as fake
    from kubesweep.k8s.versions import pins

    if down:
        removed = local.down()
        print(f"cluster down: removed {len(removed)} node container(s){': ' + ', '.join(removed) if removed else ''}")
        return
    inventory = Path(inventory) if inventory else local.default_inventory()
    build_parts(needed_parts(inventory, fake_nodes=bool(fake_nodes)))  # seconds when already built
    run = local.up(inventory)
    kubeconfig = local.kubeconfig_path(inventory)
    print(f"cluster up in {run.seconds:.0f}s ({run.changed} changed); KUBECONFIG={kubeconfig}")
    if fake_nodes is not None:
        counts = fake.ensure(kubeconfig, fake_nodes, gpus_per_node, version=pins()["kwok_version"])
        print(f"fake nodes: {counts['ready']} Ready with {gpus_per_node} nvidia.com/gpu each "
              f"({counts['created']} created, {counts['deleted']} deleted)")


def needed_parts(inventory: Path, *, fake_nodes: bool = False) -> list[str]:
    """The artifact components a local cluster from this inventory needs: the cluster itself, the
    device plugin when it has GPU workers, kwok for fake nodes."""
    from kubesweep.local import nodes
    from kubesweep.offline import versions as parts_

    parts = [parts_.CLUSTER]
    if any("kube_gpu_node" in h.groups for h in nodes.inventory_hosts(inventory)):
        parts.append(parts_.GPU)
    if fake_nodes:
        parts.append(parts_.KWOK)
    return parts


def build_parts(parts: list[str] | None) -> None:
    """Host packages it needs (docker.io, debootstrap), then those parts of the mirror (all: None)."""
    from kubesweep.local import system
    from kubesweep.offline import mirror

    installed = system.install_packages()
    if installed:
        print(f"installed Debian packages: {', '.join(installed)}")
    mirror.build(progress=print, components=parts)


def conformance(inventory: Path, *, focus: str | None, skip: str | None, kubeconfig: str | None,
                report_dir: str | None, procs: int = 1, timeout: str = "4h") -> int:
    """Build the e2e tests and their images, push the images, run the selection; 0 when all passed."""
    from kubesweep.local import cluster as local
    from kubesweep.local import conformance as e2e
    from kubesweep.offline import versions as parts_
    from kubesweep.local.paths import checkout
    from kubesweep.k8s.versions import KUBERNETES_VERSION

    config = Path(kubeconfig) if kubeconfig else local.kubeconfig_path(inventory)
    if not config.is_file():
        repo = checkout()
        shown = inventory.relative_to(repo) if inventory.is_relative_to(repo) else inventory
        hint = f"`invoke cluster --inventory {shown}` brings it up" if not kubeconfig else "give a running cluster's"
        raise e2e.ConformanceError(f"no kubeconfig at {config}: {hint}")
    build_parts([parts_.CONFORMANCE])
    if not kubeconfig:  # our cluster: its registry gets the test images
        push = local.playbook(inventory, "playbooks/offline_images.yml", echo=False)
        if not push.ok:
            raise e2e.ConformanceError(f"pushing the test images failed:\n{local.failure_excerpt(push.output)}")
    result = e2e.run(config, KUBERNETES_VERSION, focus=focus or e2e.DEFAULT_FOCUS, skip=skip,
                     report_dir=Path(report_dir) if report_dir else None, procs=procs, suite_timeout=timeout)
    print(f"conformance: {result.passed} passed, {result.failed} failed, {result.skipped} skipped in "
          f"{result.seconds / 60:.1f} min; report: {result.report_dir}")
    for name in result.failures:
        print(f"  FAILED {name}")
    return 0 if result.ok else 1


def artifacts(only: str | None = None) -> None:
    """Every part of the offline build, or ``only`` the comma-separated ones."""
    build_parts([p.strip() for p in only.split(",") if p.strip()] if only else None)


def setup(inventory: Path) -> None:
    """Only what this inventory's cluster needs is built (minikube, kwok, ... when asked for)."""
    cluster(inventory, down=False, fake_nodes=None, gpus_per_node=0)


def run_checked(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> int:
    return subprocess.call(args, cwd=cwd, env=env)


def run_pytest(args: list[str], cwd: Path) -> int:
    """pytest, where 'no tests collected' (exit 5) counts as a failure, not a pass."""
    code = subprocess.call(args, cwd=cwd)
    if code == 5:
        print("pytest collected no tests: failing on purpose", file=sys.stderr)
        return 1
    return code


def serve_image(registry: str) -> None:
    """Build and push the images roles/kubesweep_serve runs, the server's (local/serve_image.py) and
    the experiments' TensorBoard (local/tensorboard_image.py), and say their references."""
    from kubesweep.local import serve_image as serve
    from kubesweep.local import tensorboard_image

    for built, where, variable in ((serve.ensure(registry), serve.reference_file(), "kubesweep_serve_image"),
                                   (tensorboard_image.ensure(registry), tensorboard_image.reference_file(),
                                    "kubesweep_serve_tensorboard_image")):
        state = "built and pushed" if built.pushed else "already in the registry"
        print(f"{built.reference} ({state}, {built.seconds:.0f}s); written to {where}, which "
              f"roles/kubesweep_serve reads when {variable} is not set", flush=True)
