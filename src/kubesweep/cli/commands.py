"""The commands as functions that parse nothing and print: what the `kubesweep` command (cli/app.py)
and the invoke tasks (tasks.py) both call. Each calls the library and says what happened."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

from rich.console import Console

from kubesweep import sweep as sweeps
from kubesweep.cli import planview
from kubesweep.errors import Interrupted, KubesweepError
from kubesweep.sweep import Target, Workspace
from kubesweep.terminal import cell

BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for `yes | head`


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """rich exits 1 when its reader left; let guard() end the command as for print()."""
        raise BrokenPipeError


out = _Console(highlight=False, width=None if sys.stdout.isatty() else 200)  # pipes: never cut names


def guard(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """Run a command and return its exit code: what it returns when that is an int, else 0. A
    KubesweepError, an API server that does not answer or refuses (a permission the kubeconfig
    lacks: one line naming it), is printed as plain lines on stderr (2); Ctrl-C is 130; a reader
    that left the pipe ends the command quietly (141)."""
    from kubesweep.k8s.client import api_error, no_answer

    try:
        result = fn(*args, **kwargs)
        return result if isinstance(result, int) and not isinstance(result, bool) else 0
    except KubesweepError as exc:
        print(str(exc), file=sys.stderr)  # plain lines: file:line:col must never be wrapped
        return exc.exit_code
    except BrokenPipeError:  # `kubesweep sweep --dry-run | head`: the reader left; stop quietly, as `ls | head` does
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the flush at exit does not fail again
        return BROKEN_PIPE
    except KeyboardInterrupt:  # a command that has nothing of its own to say about it (sweep has)
        print("interrupted", file=sys.stderr)
        return Interrupted.exit_code
    except Exception as exc:
        from kubernetes.client.exceptions import ApiException

        message = api_error(exc) if isinstance(exc, ApiException) else no_answer(exc)
        if message is None:
            raise
        print(message, file=sys.stderr)
        return 2


def _namespaced(target: Target | None, overrides: dict[str, Any]) -> dict[str, Any]:
    """A sweep file without a namespace runs in the kubeconfig context's, as kubectl would (a
    kubeconfig scoped to one namespace names it there); --namespace still wins. A Katib
    trialTemplate.configMap is read from the same cluster (one GET, only for such a file)."""
    if target is None:
        return overrides
    overrides = {**overrides, "configmaps": sweeps.configmaps(target)}
    if not overrides.get("namespace"):
        from kubesweep.k8s.client import context_namespace

        return {**overrides, "default_namespace": context_namespace(target.kubeconfig, target.context)}
    return overrides


def render(grid: str, where: Workspace = Workspace(), *, validate: str = "fast", target: Target | None = None,
           **overrides: Any) -> sweeps.Plan:
    plan = sweeps.plan(grid, **_namespaced(target, overrides))
    target = sweeps.render(plan, where.jobs_dir, validate=validate)  # type: ignore[arg-type]
    for note in plan.source.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"rendered {len(plan.trials):,} trials in {plan.batches:,} batches into {target}/")
    return plan


def sweep(grid: str, target: Target = Target(), where: Workspace = Workspace(), *, dry_run: bool = False,
          apply: str = "direct", refill: str = "trial", retry_failed: bool = False, pull_secret: str | None = None,
          max_trials: int | None = None, **overrides: Any) -> int:
    """Plan, then either show the plan (dry run) or run the sweep live; the exit code says how it ended.
    With ``pull_secret`` the trials pull with that Secret, made from the user's docker credentials."""
    plan = sweeps.limit(sweeps.plan(grid, **_namespaced(target, overrides)), max_trials)
    exp = plan.experiment
    if pull_secret:
        sweeps.with_pull_secret(plan, pull_secret)  # made (from the credentials) only by a real run
    if dry_run:
        written, stop = sweeps.dry_run(plan, where, retry_failed=retry_failed)
        planview.show(plan, str(where.jobs_dir), out)
        print(f"wrote {len(plan.trials):,} Job manifests and {sweeps.PLAN_FILE} into {written}/")
        if stop:
            print(f"without --dry-run the sweep would stop: {stop}", file=sys.stderr)
        return 0
    from kubesweep.cli import live

    from kubesweep.plan import adaptive

    total = len(plan.trials)
    if adaptive.incremental(exp):  # asked batch by batch: as many as the sweep may ask
        total = min(n for n in (exp.search.trials, max_trials, exp.search.trial_limit) if n is not None)
    view = live.View(exp.name, exp.objective.metric or "", total)
    hooks = sweeps.Hooks(notice=lambda text: print(text, file=sys.stderr), built=_say_built, change=view.change,
                         resumed=view.resumed, progress=view if view.live_mode else None)
    with view:
        outcome = sweeps.run(plan, target, where, apply=apply, refill=refill,  # type: ignore[arg-type]
                             retry_failed=retry_failed, hooks=hooks, pull_secret=pull_secret, max_trials=max_trials)
    counts = outcome.counts
    print(f"{exp.name}: {counts['succeeded']} succeeded, {counts['failed']} failed, {counts['cancelled']} cancelled "
          f"in {outcome.seconds:.0f}s" + (f" (stopped: {outcome.stopped})" if outcome.stopped else ""))
    best = outcome.best
    if outcome.pareto_front is not None:  # several objectives: no one best, the trials none beats
        terms = " ".join(f"{d[:3]} {m}" for m, d in exp.objective.terms())
        print(f"Pareto front ({terms}): {len(outcome.pareto_front)} trial(s)")
        for point in outcome.pareto_front[:PARETO_ROWS]:
            values = ", ".join(f"{m} = {v}" for m, v in point["values"].items())
            print(f"  {point['trial']}  {values}  params {json.dumps(point['params'])}")
        if len(outcome.pareto_front) > PARETO_ROWS:
            print(f"  ... and {len(outcome.pareto_front) - PARETO_ROWS} more in {outcome.files['best']}")
    elif best:
        print(f"best trial: {best['trial']}  {exp.objective.metric} = {best['value']}  params "
              f"{json.dumps(best['params'])}")
    files = outcome.files
    print(f"results: {files['csv']}  plot: {files['plot']}  report: {files['html']}"
          + (f"  interactive: {files['interactive']}" if "interactive" in files else ""))
    return outcome.exit_code


PARETO_ROWS = 10  # points of a Pareto front printed at the end of a sweep (best.json has all)


def _say_built(built: Any) -> None:
    print(f"image {built.reference}: " + ("built and pushed" if built.built else "already in the registry")
          + f" ({built.seconds:.1f}s)")


def results(grid: str, where: Workspace = Workspace(), *, rows: int = 20, target: Target | None = None,
            **overrides: Any) -> None:
    from rich.table import Table

    from kubesweep.run import journal

    plan = sweeps.plan(grid, **_namespaced(target, overrides))
    kept = where.results_dir / plan.experiment.name / journal.FILE
    if not kept.exists():  # never swept (a name mistyped?): report nothing rather than write a report of nothing
        raise KubesweepError(f"no trial of experiment {plan.experiment.name} has finished yet ({kept} does not exist): "
                             "`kubesweep sweep` with the same file and options runs it; nothing was written")
    done = journal.load(kept.parent)
    files = sweeps.report(plan, where.results_dir, done)
    exp = plan.experiment
    from kubesweep.plan import job as manifest
    from kubesweep.plan import provenance

    try:
        changed = provenance.results_note(kept.parent, exp.name, manifest.trial_template(exp, plan.image), done)
    except KubesweepError as exc:  # an unreadable template.json: a report only reads, so say it and go on
        changed = f"note: {exc}"
    import csv

    table = Table(title=cell(f"{exp.name}: best first ({exp.objective.direction} {exp.objective.metric})"
                             if exp.objective.metric else f"{exp.name}: no metric"))
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
    front = json.loads(files["best"].read_text()).get("pareto_front")
    if front is not None:  # several objectives: the trials none beats, after the table ranked by the first
        print(f"Pareto front ({', '.join(f'{d[:3]} {m}' for m, d in exp.objective.terms())}): "
              + (", ".join(p["trial"] for p in front) or "no trial succeeded with every objective"))
    print(f"csv: {files['csv']}  plot: {files['plot']}  report: {files['html']}"
          + (f"  interactive: {files['interactive']}" if "interactive" in files else ""))
    if changed:
        print(changed, file=sys.stderr)


def _pruned(where: Workspace, experiment: str) -> list[dict]:
    """The experiment's pruned trials, from this workspace's journal (their Jobs were deleted)."""
    from kubesweep.run import journal
    from kubesweep.run.trialstate import PRUNED

    done = journal.load(Path(where.results_dir) / experiment)
    return sorted((r for r in done.values() if r.get("state") == PRUNED), key=lambda r: r["name"])


def status(target: Target, experiment: str | None = None, namespace: str | None = None,
           where: Workspace = Workspace()) -> None:
    from rich.table import Table

    from kubesweep.k8s import client as kube
    from kubesweep.run import lifecycle
    from kubesweep.run.trialstate import elapsed, reached

    c = kube.clients(target.kubeconfig, target.context)
    found = lifecycle.status(c, experiment, namespace)
    pruned = {name: _pruned(where, name.split("/", 1)[1]) for name in found}
    if experiment and not any(pruned.values()) and _pruned(where, experiment):
        pruned[f"{namespace or '-'}/{experiment}"] = _pruned(where, experiment)  # every Job gone, the journal kept
        found.setdefault(f"{namespace or '-'}/{experiment}", lifecycle.ExperimentStatus())
    if not found:
        print("no kubesweep experiments " + (f"in namespace {namespace}" if namespace else "on the cluster")
              + (f" named {experiment}" if experiment else ""))
        return
    table = Table(title="experiments")
    for col in ("namespace/experiment", *STATUS_COLUMNS, "pruned"):
        table.add_column(col)
    for name, exp in sorted(found.items()):
        table.add_row(cell(name), *(str(exp.counts.get(col, 0)) for col in STATUS_COLUMNS),
                      str(len(pruned.get(name) or [])))
    out.print(table)
    if not experiment:
        return
    for name, exp in sorted(found.items()):
        if pruned.get(name):
            gone = Table(title=cell(f"{name}: pruned trials (from {Path(where.results_dir) / experiment})"))
            for col in ("trial", "step reached", "why"):
                gone.add_column(col)
            for r in pruned[name][:STATUS_ROWS]:
                step = reached(r)
                gone.add_row(cell(r["name"]), "-" if step is None else f"{step:g}",
                             cell((r.get("message") or "").splitlines()[0] if r.get("message") else ""))
            out.print(gone)
        if not exp.in_flight:
            continue
        trials = Table(title=cell(f"{name}: trials in flight"))
        for col in ("trial", "state", "node", "for", "waiting on"):
            trials.add_column(col)
        for f in exp.in_flight[:STATUS_ROWS]:
            elapsed_ = elapsed(f.since, None)
            trials.add_row(*(cell(x) for x in (f.trial, f.state, f.node or "-", age(elapsed_), f.waiting or "")))
        out.print(trials)
        if len(exp.in_flight) > STATUS_ROWS:
            print(f"... and {len(exp.in_flight) - STATUS_ROWS} more in flight")


def age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s}s" if s < 120 else f"{s // 60}m{s % 60:02d}s" if s < 7200 else f"{s // 3600}h{s % 3600 // 60:02d}m"


STATUS_COLUMNS = ("pending", "running", "succeeded", "failed")
STATUS_ROWS = 50  # trials in flight listed by `invoke status --experiment` (running first, oldest first)


def logs(target: Target, trial: str, tail: int | None = None, namespace: str | None = None) -> None:
    from kubesweep.k8s import client as kube
    from kubesweep.run import lifecycle

    sys.stdout.write(lifecycle.logs(kube.clients(target.kubeconfig, target.context), trial, tail, namespace))


def cancel(target: Target, experiment: str, namespace: str | None = None) -> None:
    from kubesweep.k8s import client as kube
    from kubesweep.run import lifecycle

    n = lifecycle.cancel(kube.clients(target.kubeconfig, target.context), experiment, namespace)
    if not n:  # a mistyped name, or an experiment that has finished: say so rather than "cancelled"
        print(f"{experiment}: no unfinished Job of this experiment on the cluster"
              + (f" in namespace {namespace}" if namespace else "") + "; nothing was cancelled")
        return
    print(f"{experiment}: cancelled, deleted {n} unfinished Job(s); a sweep running it stops "
          "(rerun it to run what never started, with --retry-failed to rerun the cancelled trials too)")


def clean(target: Target, experiment: str, *, outputs: bool = False, where: Workspace = Workspace(),
          namespace: str | None = None) -> None:
    from kubesweep.k8s import client as kube
    from kubesweep.run import lifecycle

    c = kube.clients(target.kubeconfig, target.context)
    n = lifecycle.clean(c, experiment, results_dir=where.results_dir if outputs else None,
                        jobs_dir=where.jobs_dir if outputs else None, namespace=namespace)
    print(f"{experiment}: deleted {n} Job(s) and their pods" + (", results/ and jobs/ output" if outputs else ""))


def image(grid: str, target: Target = Target(), *, pull_secret: str | None = None, namespace: str | None = None) -> None:
    # the pull secret goes where the sweep will run: the same namespace rules as sweep's
    plan = sweeps.plan(grid, **(_namespaced(target, {"namespace": namespace}) if pull_secret else {}))
    _say_built(sweeps.build_image(plan))
    if pull_secret:
        print(sweeps.make_pull_secret(plan, pull_secret, target))


def serve(target: Target = Target(), where: Workspace = Workspace(), *, host: str = "127.0.0.1", port: int = 8080,
          state: Path | None = None, tokens: Path | None = None, tensorboard_image: str | None = None) -> None:
    """Check the options (a bad tokens file, a non-loopback address without one, or a port in use
    stops here with nothing started), then run the server until Ctrl-C (exit 0)."""
    try:
        import fastapi  # noqa: F401
        import httpx  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise KubesweepError(f"kubesweep serve needs the serve extra ({exc.name} is not installed): "
                             "pip install 'kubesweep[serve]'") from None
    from kubesweep.serve import auth
    from kubesweep.serve.config import ServeConfig

    if tokens is None and not auth.loopback(host):
        raise KubesweepError(f"--host {host} is not a loopback address: anyone who reaches it could run sweeps; "
                             "give --tokens FILE (see docs/serve.md), or listen on 127.0.0.1")
    known = auth.load(tokens) if tokens is not None else auth.Tokens.generated()
    cfg = ServeConfig(where, target, Path(state) if state else Path(where.jobs_dir).parent / ".kubesweep-serve",
                      host, port, known, tensorboard_image)
    import uvicorn

    from kubesweep.serve.app import create_app, listen

    try:  # bound here, so that a port in use is one line (exit 2) before anything starts
        sock = listen(host, port)
    except OSError as exc:
        raise KubesweepError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    app = create_app(cfg)
    shown = f"[{host}]" if ":" in host else host
    if known.from_file:
        print(f"kubesweep serve: http://{shown}:{port}/ (tokens from {tokens})", flush=True)
    else:
        print(f"kubesweep serve: http://{shown}:{port}/#token={known.entries[0].secret}", flush=True)
    with sock:
        try:
            uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5)).run(sockets=[sock])
        except KeyboardInterrupt:  # Ctrl-C is how a server is stopped: its sweeps' trials go on, resumed at the next start
            pass
