"""What tasks.py calls: each command as a function, and error reporting without tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

from invoke import Exit
from rich.console import Console

from kubesweep.cli import planview
from kubesweep.plan import planner as rendering
from kubesweep.errors import Interrupted, KubesweepError
from kubesweep.terminal import cell

out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)  # pipes: never cut names


def guard(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a command; print a KubesweepError, or an API server that does not answer, as plain
    lines on stderr and exit 2 (130 after Ctrl-C)."""
    from kubesweep.k8s.client import no_answer

    try:
        return fn(*args, **kwargs)
    except KubesweepError as exc:
        print(str(exc), file=sys.stderr)  # plain lines: file:line:col must never be wrapped
        raise Exit(code=exc.exit_code) from None
    except BrokenPipeError:  # `invoke sweep --dry-run | head`: the reader left; stop quietly, as `ls | head` does
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the flush at exit does not fail again
        raise Exit(code=1) from None  # as rich does when its own write meets the closed pipe
    except KeyboardInterrupt:  # a command that has nothing of its own to say about it (sweep has)
        print("interrupted", file=sys.stderr)
        raise Exit(code=Interrupted.exit_code) from None
    except Exception as exc:
        message = no_answer(exc)
        if message is None:
            raise
        print(message, file=sys.stderr)
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


def sweep(grid: str, jobs_dir: str, *, dry_run: bool, results_dir: str = "results", kubeconfig: str | None = None,
          apply: str = "direct", refill: str = "trial", retry_failed: bool = False, **overrides: Any) -> rendering.Plan:
    from kubesweep.run import journal
    from kubesweep.plan import job as manifest
    from kubesweep.plan import provenance

    plan = rendering.plan(grid, **overrides)
    exp = plan.experiment
    kept = Path(results_dir) / exp.name

    def same_template() -> None:  # results of another trial template are not this grid's
        provenance.check_results(kept, exp.name, manifest.trial_template(exp, plan.image),
                                 provenance.kept(journal.load(kept), retry_failed))

    if dry_run:
        target = rendering.write(plan, jobs_dir)
        planview.show(plan, str(Path(jobs_dir)), out)
        print(f"wrote {len(plan.trials):,} Job manifests and {rendering.PLAN_FILE} into {target}/")
        try:
            same_template()
        except provenance.TemplateChanged as exc:
            print(f"without --dry-run the sweep would stop: {exc}", file=sys.stderr)
        return plan
    from kubesweep.cli import live
    from kubesweep.run import runner

    same_template()  # before the image is built or anything written
    if exp.build is not None:
        built = _build(plan)
        if built.reference != plan.image:
            raise KubesweepError(f"the built image {built.reference} differs from the planned {plan.image}")
    adaptive_ = exp.search.algorithm == "tpe"
    if adaptive_:  # continue the study earlier runs asked (jobs/<exp>/plan.json), if any
        from kubesweep.plan import tpe as adaptive

        plan.trials = adaptive.asked(exp, Path(jobs_dir), rendering.PLAN_FILE) or plan.trials
    total = exp.search.trials if adaptive_ and exp.search.trials else len(plan.trials)
    from kubesweep.k8s import client as kube
    from kubesweep.run import placement

    unplaceable = placement.check(kube.clients(Path(kubeconfig) if kubeconfig else None), plan)
    if unplaceable:
        print(unplaceable, file=sys.stderr)
    view = live.View(exp.name, exp.objective.metric, total)
    seconds = 0.0
    sweep_: runner.Sweep | None = None
    try:
        with view:
            while True:
                rendering.write(plan, jobs_dir)
                sweep_ = runner.Sweep(plan, Path(jobs_dir), Path(results_dir),
                                      kubeconfig=Path(kubeconfig) if kubeconfig else None, apply=apply, refill=refill,
                                      retry_failed=retry_failed, on_change=view.change, on_resume=view.resumed,
                                      progress=view if view.live_mode else None)
                outcome = sweep_.run()
                seconds += outcome.seconds
                retry_failed = False
                if not adaptive_ or outcome.stopped:
                    break
                # tpe: the batch is done; ask the study for the next one, given every result so far
                following = adaptive.next_batch(exp, plan.trials, journal.load(Path(results_dir) / exp.name))
                if not following:
                    break
                plan.trials = plan.trials + following
    except KeyboardInterrupt:
        raise Interrupted(interrupted(exp.name, sweep_, Path(results_dir))) from None
    outcome.seconds = seconds
    files = _report(plan, Path(results_dir))
    counts = sweep_.counts()
    print(f"{exp.name}: {counts['succeeded']} succeeded, {counts['failed']} failed, {counts['cancelled']} cancelled "
          f"in {outcome.seconds:.0f}s" + (f" (stopped: {outcome.stopped})" if outcome.stopped else ""))
    best = json.loads(files["best"].read_text())["best"]
    if best:
        print(f"best trial: {best['trial']}  {exp.objective.metric} = {best['value']}  params {json.dumps(best['params'])}")
    print(f"results: {files['csv']}  plot: {files['plot']}  report: {files['html']}")
    return plan


def interrupted(name: str, sweep_: Any, results_dir: Path) -> str:
    """What Ctrl-C left: the trials in flight run on (their GPU time is not thrown away), every
    result seen so far is journaled, and the same command resumes (as after a kill -9)."""
    from kubesweep.run import journal
    from kubesweep.run.trialstate import FINAL

    text = f"{name}: interrupted."
    if sweep_ is not None:  # None: stopped before the first trial was submitted (building the image, say)
        running, waiting = sweep_.holding()
        done = sum(r.state in FINAL for r in sweep_.records.values())
        text += (f" {running} running and {waiting} waiting {'trial stays' if running + waiting == 1 else 'trials stay'}"
                 f" on the cluster and go on; {done} finished {'is' if done == 1 else 'are'} kept in"
                 f" {results_dir / name / journal.FILE}.")
    return (text + " Run the same `invoke sweep` command again to resume: it collects the trials in flight and runs"
            f" the rest, creating none twice. `invoke cancel {name}` stops the ones in flight instead.")


def _report(plan: rendering.Plan, results_dir: Path, done: dict[str, dict[str, Any]] | None = None) -> dict[str, Path]:
    """Write the experiment's report from its journal (``done``, read here unless given)."""
    from kubesweep.run import journal
    from kubesweep.run import report

    exp = plan.experiment
    done = journal.load(results_dir / exp.name) if done is None else done
    records = [done.get(t.name) or {"name": t.name, "batch": rendering.manifest.batch_name(t.batch),
                                    "params": t.params, "state": "pending", "metrics": {}} for t in plan.trials]
    planned = {t.name for t in plan.trials}
    records += [r for n, r in done.items() if n not in planned]  # tpe: batches asked after the first
    return report.write(results_dir / exp.name, records, experiment=exp.name, metric=exp.objective.metric,
                        direction=exp.objective.direction, params=list(exp.parameters),
                        extra_metrics=list(exp.objective.additional_metrics))


def results(grid: str, results_dir: str, rows: int = 20, **overrides: Any) -> None:
    from rich.table import Table

    from kubesweep.run import journal

    plan = rendering.plan(grid, **overrides)
    kept = Path(results_dir) / plan.experiment.name / journal.FILE
    if not kept.exists():  # never swept (a name mistyped?): report nothing rather than write a report of nothing
        raise KubesweepError(f"no trial of experiment {plan.experiment.name} has finished yet ({kept} does not exist): "
                             "`invoke sweep` with the same grid and options runs it; nothing was written")
    done = journal.load(kept.parent)
    files = _report(plan, Path(results_dir), done)
    exp = plan.experiment
    from kubesweep.plan import job as manifest
    from kubesweep.plan import provenance

    try:
        changed = provenance.results_note(kept.parent, exp.name, manifest.trial_template(exp, plan.image), done)
    except KubesweepError as exc:  # an unreadable template.json: a report only reads, so say it and go on
        changed = f"note: {exc}"
    import csv

    table = Table(title=cell(f"{exp.name}: best first ({exp.objective.direction} {exp.objective.metric})"))
    with open(files["csv"], newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        keep = [i for i, h in enumerate(header) if h not in ("start", "end", "message", "batch")]
        for i in keep:
            table.add_column(cell(header[i]))
        for n, row in enumerate(reader):
            if n >= rows:
                break
            table.add_row(*(cell(row[i]) for i in keep))
    out.print(table)
    print(f"csv: {files['csv']}  plot: {files['plot']}  report: {files['html']}")
    if changed:
        print(changed, file=sys.stderr)


def status(experiment: str | None, kubeconfig: str | None, namespace: str | None = None) -> None:
    from rich.table import Table

    from kubesweep.k8s import client as kube
    from kubesweep.run import lifecycle
    from kubesweep.run.trialstate import elapsed

    c = kube.clients(Path(kubeconfig) if kubeconfig else None)
    found = lifecycle.status(c, experiment, namespace)
    if not found:
        print("no kubesweep experiments " + (f"in namespace {namespace}" if namespace else "on the cluster")
              + (f" named {experiment}" if experiment else ""))
        return
    table = Table(title="experiments")
    for col in ("namespace/experiment", *STATUS_COLUMNS):
        table.add_column(col)
    for name, exp in sorted(found.items()):
        table.add_row(cell(name), *(str(exp.counts.get(col, 0)) for col in STATUS_COLUMNS))
    out.print(table)
    if not experiment:
        return
    for name, exp in sorted(found.items()):
        if not exp.in_flight:
            continue
        trials = Table(title=cell(f"{name}: trials in flight"))
        for col in ("trial", "state", "node", "for", "waiting on"):
            trials.add_column(col)
        for f in exp.in_flight[:STATUS_ROWS]:
            age = elapsed(f.since, None)
            trials.add_row(*(cell(x) for x in (f.trial, f.state, f.node or "-", _age(age), f.waiting or "")))
        out.print(trials)
        if len(exp.in_flight) > STATUS_ROWS:
            print(f"... and {len(exp.in_flight) - STATUS_ROWS} more in flight")


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s}s" if s < 120 else f"{s // 60}m{s % 60:02d}s" if s < 7200 else f"{s // 3600}h{s % 3600 // 60:02d}m"


STATUS_COLUMNS = ("pending", "running", "succeeded", "failed")
STATUS_ROWS = 50  # trials in flight listed by `invoke status --experiment` (running first, oldest first)


def logs(trial: str, tail: int | None, kubeconfig: str | None, namespace: str | None = None) -> None:
    from kubesweep.k8s import client as kube
    from kubesweep.run import lifecycle

    sys.stdout.write(lifecycle.logs(kube.clients(Path(kubeconfig) if kubeconfig else None), trial, tail, namespace))


def cancel(experiment: str, kubeconfig: str | None, namespace: str | None = None) -> None:
    from kubesweep.k8s import client as kube
    from kubesweep.run import lifecycle

    n = lifecycle.cancel(kube.clients(Path(kubeconfig) if kubeconfig else None), experiment, namespace)
    if not n:  # a mistyped name, or an experiment that has finished: say so rather than "cancelled"
        print(f"{experiment}: no unfinished Job of this experiment on the cluster"
              + (f" in namespace {namespace}" if namespace else "") + "; nothing was cancelled")
        return
    print(f"{experiment}: cancelled, deleted {n} unfinished Job(s); a sweep running it stops "
          "(rerun it to run what never started, with --retry-failed to rerun the cancelled trials too)")


def clean(experiment: str, outputs: bool, kubeconfig: str | None, namespace: str | None = None) -> None:
    from kubesweep.k8s import client as kube
    from kubesweep.run import lifecycle

    c = kube.clients(Path(kubeconfig) if kubeconfig else None)
    n = lifecycle.clean(c, experiment, results_dir=Path("results") if outputs else None,
                        jobs_dir=Path("jobs") if outputs else None, namespace=namespace)
    print(f"{experiment}: deleted {n} Job(s) and their pods" + (", results/ and jobs/ output" if outputs else ""))


def image(grid: str) -> None:
    plan = rendering.plan(grid)
    if plan.experiment.build is None:
        raise KubesweepError(f"{grid} has no build: section; its image {plan.experiment.image} is used as it is")
    _build(plan)


def _build(plan: rendering.Plan) -> Any:
    """Build and push the experiment's image unless the registry has its content tag already."""
    from kubesweep.local import image as images

    context, dockerfile, args = rendering.build_context(plan.source)
    registry, _, repository = plan.experiment.image.partition("/")
    built = images.ensure(context, repository, registry=registry, dockerfile=dockerfile, build_args=args)
    print(f"image {built.reference}: " + ("built and pushed" if built.built else "already in the registry")
          + f" ({built.seconds:.1f}s)")
    return built


def cluster(inventory: Path, *, down: bool, fake_nodes: int | None, gpus_per_node: int) -> None:
    from kubesweep.local import cluster as local
    from kubesweep.local import fake_nodes as fake
    from kubesweep.k8s.versions import pins

    if down:
        removed = local.down()
        print(f"cluster down: removed {len(removed)} node container(s){': ' + ', '.join(removed) if removed else ''}")
        return
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
    from kubesweep.offline import mirror

    parts = [mirror.CLUSTER]
    if any("kube_gpu_node" in h.groups for h in nodes.inventory_hosts(inventory)):
        parts.append(mirror.GPU)
    if fake_nodes:
        parts.append(mirror.KWOK)
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
    from kubesweep.offline import mirror
    from kubesweep.local.paths import REPO
    from kubesweep.k8s.versions import KUBERNETES_VERSION

    config = Path(kubeconfig) if kubeconfig else local.kubeconfig_path(inventory)
    if not config.is_file():
        shown = inventory.relative_to(REPO) if inventory.is_relative_to(REPO) else inventory
        hint = f"`invoke cluster --inventory {shown}` brings it up" if not kubeconfig else "give a running cluster's"
        raise e2e.ConformanceError(f"no kubeconfig at {config}: {hint}")
    build_parts([mirror.CONFORMANCE])
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
