"""The dry-run plan: what a sweep will ask of the cluster, as a rich table."""

from __future__ import annotations

from decimal import Decimal

from rich.console import Console
from rich.table import Table

from kubesweep.plan.job import batch_name
from kubesweep.k8s.quantity import parse as quantity
from kubesweep.plan.planner import Plan
from kubesweep.terminal import cell


def _gib(n: Decimal) -> str:
    return f"{float(n) / 2**30:,.1f} GiB"


def _cores(n: Decimal) -> str:
    return f"{float(n):,.2f}".rstrip("0").rstrip(".")


def summary(p: Plan) -> dict[str, object]:
    exp = p.experiment
    cpu, mem, gpu = quantity(exp.resources.cpu), quantity(exp.resources.memory), exp.resources.gpu
    n = len(p.trials)
    at_once = min(exp.batch_size, n)
    return {
        "trials": n, "batches": p.batches, "batch_size": exp.batch_size,
        "cpu_per_trial": cpu, "memory_per_trial": mem, "gpu_per_trial": gpu,
        "cpu_at_once": cpu * at_once, "memory_at_once": mem * at_once, "gpu_at_once": gpu * at_once,
        "gpu_total": gpu * n, "cpu_total": cpu * n,
    }


def show(p: Plan, jobs_dir: str, console: Console | None = None, rows: int = 20) -> None:
    console = console or Console()
    exp = p.experiment
    s = summary(p)
    # Every value that comes from the user is a cell(): shown literally, never read as markup.
    head = Table(title=cell(f"experiment {exp.name} → {jobs_dir}/{exp.name}/"), show_header=False, box=None)
    head.add_row("input", cell(f"{p.source.path} ({p.source.format})"))
    for note in p.source.notes:
        head.add_row("note", cell(note))
    head.add_row("image", cell(p.image))
    from kubesweep.plan.adaptive import incremental

    head.add_row("search", f"{exp.search.algorithm}" + (f", seed {exp.search.seed}" if exp.search.algorithm != "grid" else "")
                 + (", asked batch by batch" + ("" if exp.search.trials else " until stopped") if incremental(exp) else ""))
    terms = [(m, d) for m, d in exp.objective.terms()]
    head.add_row("objective", cell((", ".join(f"{d} {m!r}" for m, d in terms) or "no metric: every trial runs, none is best")
                                   + (" (a Pareto front)" if len(terms) > 1 else "")
                                   + "".join(f", stop at {m} {g}" if len(terms) > 1 else f", stop at {g}"
                                             for m, _, g in exp.objective.goals())))
    head.add_row("trials", f"{s['trials']:,} in {s['batches']:,} batches of ≤ {s['batch_size']} (run at once)")
    extended = "".join(f", {name} {count}" for name, count in exp.resources.extended.items())  # amd.com/gpu, ...
    head.add_row("per trial", cell(f"cpu {_cores(s['cpu_per_trial'])}, memory {_gib(s['memory_per_trial'])}, "
                                   f"nvidia.com/gpu {s['gpu_per_trial']}{extended}"))
    head.add_row("at once", f"cpu {_cores(s['cpu_at_once'])}, memory {_gib(s['memory_at_once'])}, nvidia.com/gpu {s['gpu_at_once']}")
    head.add_row("in total", f"{_cores(s['cpu_total'])} cpu·trials, {s['gpu_total']} gpu·trials")
    head.add_row("max failed", "unlimited" if exp.max_failed_trials is None else str(exp.max_failed_trials))
    console.print(head)

    table = Table(title=f"trials (first {min(rows, len(p.trials))} of {len(p.trials):,})")
    table.add_column("#", justify="right")
    table.add_column("batch")
    table.add_column("trial")
    for name in exp.parameters:
        table.add_column(cell(name), justify="right")
    for t in p.trials[:rows]:
        table.add_row(str(t.index), batch_name(t.batch), t.name, *(cell(v) for v in t.params.values()))
    console.print(table)
