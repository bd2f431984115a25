"""What tasks.py calls: each command as a function, and error reporting without tracebacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

from invoke import Exit
from rich.console import Console

from . import planview, render as rendering
from .errors import KubesweepError

out = Console(highlight=False)


def guard(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a command; print a KubesweepError as plain lines on stderr and exit 2."""
    try:
        return fn(*args, **kwargs)
    except KubesweepError as exc:
        print(str(exc), file=sys.stderr)  # plain lines: file:line:col must never be wrapped
        raise Exit(code=2) from None


def optional_int(text: str | None, flag: str) -> int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        print(f"{flag} must be a whole number (got {text!r})", file=sys.stderr)
        raise Exit(code=2) from None


def render(grid: str, jobs_dir: str, *, validate: str = "fast", **overrides: Any) -> rendering.Plan:
    plan = rendering.plan(grid, **overrides)
    target = rendering.write(plan, jobs_dir, validate=validate)  # type: ignore[arg-type]
    print(f"rendered {len(plan.trials):,} trials in {plan.batches:,} batches into {target}/")
    return plan


def sweep(grid: str, jobs_dir: str, *, dry_run: bool, **overrides: Any) -> rendering.Plan:
    plan = rendering.plan(grid, **overrides)
    target = rendering.write(plan, jobs_dir)
    planview.show(plan, str(Path(jobs_dir)), out)
    print(f"wrote {len(plan.trials):,} Job manifests and {rendering.PLAN_FILE} into {target}/")
    if not dry_run:
        raise KubesweepError(
            "submitting to a cluster is not built yet (the cluster half of `invoke sweep`); "
            "the manifests above are ready for `kubectl apply -f` — rerun with --dry-run to only plan"
        )
    return plan


def cluster(inventory: Path, *, down: bool, fake_nodes: int | None, gpus_per_node: int) -> None:
    from . import cluster as local, fake_nodes as fake
    from .versions import pins

    if down:
        removed = local.down()
        print(f"cluster down: removed {len(removed)} node container(s){': ' + ', '.join(removed) if removed else ''}")
        return
    run = local.up(inventory)
    kubeconfig = local.kubeconfig_path(inventory)
    print(f"cluster up in {run.seconds:.0f}s ({run.changed} changed); KUBECONFIG={kubeconfig}")
    if fake_nodes is not None:
        counts = fake.ensure(kubeconfig, fake_nodes, gpus_per_node, version=pins()["kwok_version"])
        print(f"fake nodes: {counts['ready']} Ready with {gpus_per_node} nvidia.com/gpu each "
              f"({counts['created']} created, {counts['deleted']} deleted)")


def artifacts() -> None:
    from .offline import mirror

    mirror.build(progress=print)


def setup(inventory: Path) -> None:
    from . import system

    installed = system.install_packages()
    if installed:
        print(f"installed Debian packages: {', '.join(installed)}")
    system.check_go()
    artifacts()
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
