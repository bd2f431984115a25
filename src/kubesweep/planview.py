"""The dry-run plan: what a sweep will ask of the cluster, as a rich table."""

from __future__ import annotations

import re
from decimal import Decimal

from rich.console import Console
from rich.table import Table

from .manifest import batch_name
from .render import Plan

_SUFFIX = {
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
    "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9, "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15, "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
}
_QTY = re.compile(r"^\+?(\d+(?:\.\d*)?|\.\d+)(?:([eE][+-]?\d+)|([a-zA-Z]*))$")


def quantity(text: str | int | float) -> Decimal:
    """A Kubernetes quantity as a number (cores for cpu, bytes for memory)."""
    m = _QTY.match(str(text))
    if not m:
        raise ValueError(f"not a quantity: {text!r}")
    number = Decimal(m.group(1))
    if m.group(2):
        return number * (Decimal(10) ** int(m.group(2)[1:]))
    return number * _SUFFIX[m.group(3) or ""]


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
    head = Table(title=f"experiment {exp.name} → {jobs_dir}/{exp.name}/", show_header=False, box=None)
    head.add_row("input", f"{p.source.path} ({p.source.format})")
    head.add_row("image", p.image)
    head.add_row("search", f"{exp.search.algorithm}" + (f", seed {exp.search.seed}" if exp.search.algorithm == "random" else ""))
    head.add_row("objective", f"{exp.objective.direction} {exp.objective.metric!r}" + (f", stop at {exp.objective.goal}" if exp.objective.goal is not None else ""))
    head.add_row("trials", f"{s['trials']:,} in {s['batches']:,} batches of ≤ {s['batch_size']} (run at once)")
    head.add_row("per trial", f"cpu {_cores(s['cpu_per_trial'])}, memory {_gib(s['memory_per_trial'])}, nvidia.com/gpu {s['gpu_per_trial']}")
    head.add_row("at once", f"cpu {_cores(s['cpu_at_once'])}, memory {_gib(s['memory_at_once'])}, nvidia.com/gpu {s['gpu_at_once']}")
    head.add_row("in total", f"{_cores(s['cpu_total'])} cpu·trials, {s['gpu_total']} gpu·trials")
    head.add_row("max failed", "unlimited" if exp.max_failed_trials is None else str(exp.max_failed_trials))
    console.print(head)

    table = Table(title=f"trials (first {min(rows, len(p.trials))} of {len(p.trials):,})")
    table.add_column("#", justify="right")
    table.add_column("batch")
    table.add_column("trial")
    for name in exp.parameters:
        table.add_column(name, justify="right")
    for t in p.trials[:rows]:
        table.add_row(str(t.index), batch_name(t.batch), t.name, *(str(v) for v in t.params.values()))
    console.print(table)
