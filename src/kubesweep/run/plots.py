"""Optuna's plots of a sweep, made from its journal once the sweep ends (or by `kubesweep report`).

The finished trials become an in-memory Optuna study: succeeded with a numeric objective ->
COMPLETE, pruned -> PRUNED (with its intermediate values, ending at the step it reached), the
rest (failed, cancelled, succeeded without a numeric metric) -> FAIL. Optuna's own functions draw
it: optuna.visualization.matplotlib for the PNGs, optuna.visualization (plotly) for one
interactive HTML page with plotly.js inlined once, so it opens offline. A plot that cannot be
made (too few trials, no curves, ...) is skipped with a one-line reason, never a traceback.

Parameter importance uses PED-ANOVA (numpy only, linear in the trials); fANOVA would need
scikit-learn and takes seconds per hundred trials.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from kubesweep.run.trialstate import CANCELLED, FAILED, PRUNED, SUCCEEDED

HISTORY, PARALLEL, IMPORTANCE, CURVES, PARETO = "history", "parallel_coordinates", "param_importances", \
    "learning_curves", "pareto_front"
INTERACTIVE = "interactive.html"
TITLES = {HISTORY: "Optimisation history", PARALLEL: "Parallel coordinates", IMPORTANCE: "Parameter importance",
          CURVES: "Learning curves", PARETO: "Pareto front"}
FINISHED = (SUCCEEDED, FAILED, CANCELLED, PRUNED)
#: Above this many curves the learning-curve PNG drops optuna's one-legend-entry-per-trial.
LEGEND_MAX = 20


@dataclass
class Plots:
    """What was drawn: PNG files by plot name, the interactive page (None: not written), and
    one line per plot that was not made, saying why."""
    png: dict[str, Path] = field(default_factory=dict)
    interactive: Path | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def _step(s: Any, i: int) -> int:
    """Optuna numbers steps with ints: an integral step as is, anything else by its place (1, 2, ...)."""
    n = _number(s)
    return int(n) if n is not None and n.is_integer() else i + 1


def curve(rec: dict[str, Any], metric: str | None) -> list[tuple[int, float]]:
    """A record's intermediate values of ``metric`` as (step, value), finite values only, by step
    (a step reported twice keeps its last value); [] for journals written before curves."""
    points = ((rec.get("curves") or {}).get(metric) or []) if metric else []
    out: dict[int, float] = {}
    for i, p in enumerate(points):
        if isinstance(p, (list, tuple)) and len(p) == 2 and _number(p[1]) is not None:
            out[_step(p[0], i)] = float(p[1])
    return sorted(out.items())


def curve_metric(records: list[dict[str, Any]], metric: str, early_metric: str | None) -> str | None:
    """The metric whose curves are drawn: early stopping's (what pruned trials were judged on)
    where the journal has it, else the objective's; None when no record has either."""
    for m in (early_metric, metric):
        if m and any((r.get("curves") or {}).get(m) for r in records):
            return m
    return None


def _distributions(records: list[dict[str, Any]], params: list[str], log_params: set[str]) -> tuple[dict[str, Any], dict[str, Callable[[Any], Any]]]:
    """An Optuna distribution per parameter, from the values the trials had (ranges from their
    min and max, log scale where the sweep file says so), and how to turn a value into one of it."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    dists: dict[str, Any] = {}
    conv: dict[str, Callable[[Any], Any]] = {}
    for p in params:
        vals = [r["params"][p] for r in records if p in (r.get("params") or {})]
        if not vals:
            continue
        nums = [_number(v) for v in vals]
        if all(n is not None for n in nums):
            lo, hi = min(nums), max(nums)  # type: ignore[type-var]
            if all(isinstance(v, int) for v in vals):
                log = p in log_params and lo >= 1
                dists[p], conv[p] = IntDistribution(int(lo), int(hi), log=log), int  # type: ignore[arg-type]
            else:
                log = p in log_params and lo > 0  # type: ignore[operator]
                dists[p], conv[p] = FloatDistribution(lo, hi, log=log), float  # type: ignore[arg-type]
            continue
        kinds = {type(v) for v in vals}
        if len(kinds) == 1 and kinds <= {str, bool, int, float}:
            choices = sorted(set(vals), key=str)
            dists[p], conv[p] = CategoricalDistribution(choices), (lambda v: v)
        else:  # mixed types (1 and "auto", True and 1), lists, None: compared by their text
            choices = sorted({str(v) for v in vals})
            dists[p], conv[p] = CategoricalDistribution(choices), str
    return dists, conv


def study(records: list[dict[str, Any]], *, objectives: list[tuple[str, str]], params: list[str],
          log_params: set[str] = set(), curves_of: str | None = None) -> tuple[Any, dict[int, str], list[str]]:
    """An in-memory Optuna study of the finished records (in the order they ended), the trial
    names by Optuna's trial number, and notes on what was counted differently from the journal."""
    import optuna
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    done = [r for r in records if r.get("state") in FINISHED]
    done.sort(key=lambda r: (r.get("end") or "", r.get("start") or "", r["name"]))
    dists, conv = _distributions(done, params, log_params)
    st = optuna.create_study(directions=[d for _, d in objectives])
    trials, names, unscored = [], {}, 0
    for r in done:
        given = r.get("params") or {}
        ps = {p: conv[p](given[p]) for p in dists if p in given}
        ds = {p: dists[p] for p in ps}
        values = [_number((r.get("metrics") or {}).get(m)) for m, _ in objectives]
        inter = dict(curve(r, curves_of))
        state = r.get("state")
        if state == SUCCEEDED and all(v is not None for v in values):
            t = create_trial(params=ps, distributions=ds, values=values, intermediate_values=inter,
                             state=TrialState.COMPLETE)
        elif state == PRUNED:
            last = values[0] if len(objectives) == 1 else None
            if last is None and len(objectives) == 1 and inter:
                last = inter[max(inter)]
            t = create_trial(params=ps, distributions=ds, value=last, intermediate_values=inter,
                             state=TrialState.PRUNED)
        else:
            unscored += state == SUCCEEDED
            t = create_trial(params=ps, distributions=ds, intermediate_values=inter, state=TrialState.FAIL)
        t.set_user_attr("trial", r["name"])
        names[len(trials)] = r["name"]
        trials.append(t)
    st.add_trials(trials)
    notes = [f"{unscored} succeeded trial{'s' if unscored != 1 else ''} without a numeric "
             f"{' / '.join(m for m, _ in objectives)} counted as failed"] if unscored else []
    return st, names, notes


def _why_not(name: str, st: Any, objectives: list[tuple[str, str]], curves_of: str | None) -> str | None:
    from optuna.trial import TrialState

    complete = st.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    with_params = [t for t in complete if t.params]
    metric = " / ".join(m for m, _ in objectives)
    if name == CURVES:
        if curves_of is None or not any(t.intermediate_values for t in st.get_trials(deepcopy=False)):
            return "no finished trial reported intermediate values (the journal has no curves)"
        return None
    if name == PARETO and len(objectives) < 2:
        return "single objective"
    if name == PARETO and len(objectives) > 3:
        return f"Optuna draws the front of 2 or 3 objectives; this sweep has {len(objectives)} (best.json lists it)"
    if not complete:
        return f"no trial finished with a numeric {metric}"
    if name == PARALLEL and not with_params:
        return "no parameters"
    if name == IMPORTANCE:
        if len(with_params) < 2:
            return f"needs at least 2 completed trials, has {len(with_params)}"
        varied = [p for p in {p for t in with_params for p in t.params}
                  if len({repr(t.params.get(p)) for t in with_params}) > 1]
        if not varied:
            return "no parameter took more than one value among the completed trials"
    return None


def _figures(kind: str, st: Any, objectives: list[tuple[str, str]]) -> dict[str, Callable[[], Any]]:
    """Optuna's figure for one plot: ``kind`` 'matplotlib' (an Axes) or 'plotly' (a Figure)."""
    import optuna.visualization as vis
    import optuna.visualization.matplotlib as vism

    mod: Any = vism if kind == "matplotlib" else vis
    multi = len(objectives) > 1
    target = (lambda t: t.values[0]) if multi else None
    target_name = objectives[0][0]
    return {
        HISTORY: lambda: mod.plot_optimization_history(st, target=target, target_name=target_name),
        PARALLEL: lambda: mod.plot_parallel_coordinate(st, target=target, target_name=target_name),
        # several objectives: one bar per objective and parameter (Optuna draws them side by side)
        IMPORTANCE: (lambda: mod.plot_param_importances(st, evaluator=_evaluator())) if multi else
        (lambda: mod.plot_param_importances(st, evaluator=_evaluator(), target_name=target_name)),
        CURVES: lambda: mod.plot_intermediate_values(st),
        PARETO: lambda: mod.plot_pareto_front(st, target_names=[m for m, _ in objectives]),
    }


def _trial_name(label: str, names: dict[int, str]) -> str:
    """Optuna's "Trial12" as the sweep's name of that trial."""
    if label.startswith("Trial") and label[5:].isdigit():
        return names.get(int(label[5:]), label)
    return label


def _objective_name(label: str, objectives: list[tuple[str, str]]) -> str:
    """Optuna's "Objective Value 1" as the sweep's name for it."""
    head, _, index = label.rpartition(" ")
    if head == "Objective Value" and index.isdigit() and int(index) < len(objectives):
        return objectives[int(index)][0]
    return label


def _evaluator() -> Any:
    from optuna.exceptions import ExperimentalWarning
    from optuna.importance import PedAnovaImportanceEvaluator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        return PedAnovaImportanceEvaluator()


def _mark_pruned_mpl(ax: Any, pruned_ends: list[tuple[str, int, float]], curves_of: str, n_curves: int) -> None:
    if pruned_ends:
        ax.scatter([s for _, s, _ in pruned_ends], [v for _, _, v in pruned_ends], marker="x", s=50, color="#d62728",
                   zorder=5, label=f"pruned ({len(pruned_ends)}): last step")
    ax.set_ylabel(curves_of)
    legend = ax.get_legend()
    if n_curves > LEGEND_MAX and legend is not None:
        legend.remove()
        if pruned_ends:
            ax.legend(handles=[ax.collections[-1]], loc="best")


def _mark_pruned_plotly(fig: Any, pruned_ends: list[tuple[str, int, float]], names: dict[int, str], curves_of: str) -> None:
    import plotly.graph_objects as go

    for tr in fig.data:  # optuna names them Trial<number>: show the sweep's trial names instead
        if tr.name:
            tr.name = _trial_name(tr.name, names)
    if pruned_ends:
        fig.add_trace(go.Scatter(x=[s for _, s, _ in pruned_ends], y=[v for _, _, v in pruned_ends], mode="markers",
                                 marker={"symbol": "x", "size": 10, "color": "#d62728"},
                                 text=[n for n, _, _ in pruned_ends], name="pruned: last step",
                                 hovertemplate="%{text}<br>pruned at step %{x}: %{y}<extra></extra>"))
        fig.update_layout(showlegend=True)
    fig.update_layout(yaxis_title=curves_of)


def write(results_dir: Path, records: list[dict[str, Any]], *, metric: str, direction: str, params: list[str],
          log_params: set[str] = set(), early_metric: str | None = None,
          objectives: list[tuple[str, str]] | None = None, title: str = "") -> Plots:
    """Write results_dir/<plot>.png for each plot that can be made and interactive.html with
    all of them; return what was written and what was skipped (with why)."""
    out = Plots()
    objectives = objectives or [(metric, direction)]
    curves_of = curve_metric(records, objectives[0][0] if len(objectives) == 1 else metric, early_metric)
    try:
        st, names, out.notes = study(records, objectives=objectives, params=params, log_params=log_params,
                                     curves_of=curves_of)
    except Exception as exc:  # noqa: BLE001 - a report never ends in a traceback
        out.skipped = {k: f"no Optuna study from the journal: {line(exc)}" for k in TITLES}
        return out
    pruned_ends = []
    from optuna.trial import TrialState

    for t in st.get_trials(deepcopy=False, states=(TrialState.PRUNED,)):
        if t.intermediate_values:
            last = max(t.intermediate_values)
            pruned_ends.append((names[t.number], last, t.intermediate_values[last]))
    n_curves = sum(bool(t.intermediate_values) for t in st.get_trials(deepcopy=False))
    kinds = [HISTORY, PARALLEL, IMPORTANCE, CURVES] + ([PARETO] if len(objectives) > 1 else [])
    wanted = {}
    for k in kinds:
        why = _why_not(k, st, objectives, curves_of)
        if why:
            out.skipped[k] = why
        else:
            wanted[k] = True
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.exceptions import ExperimentalWarning

    make = _figures("matplotlib", st, objectives)
    failed: dict[str, str] = {}
    for k in wanted:
        try:
            with warnings.catch_warnings(), plt.rc_context():
                warnings.simplefilter("ignore", ExperimentalWarning)
                warnings.simplefilter("ignore", UserWarning)
                ax = make[k]()
                ax = ax.flat[0] if hasattr(ax, "flat") else ax
                if k == CURVES:
                    _mark_pruned_mpl(ax, pruned_ends, curves_of or "", n_curves)
                if ax.get_legend() is not None:
                    for text in ax.get_legend().get_texts():
                        text.set_text(_trial_name(_objective_name(text.get_text(), objectives), names))
                fig = ax.figure
                if title:
                    fig.suptitle(title, fontsize=10)
                path = Path(results_dir) / f"{k}.png"
                fig.savefig(path, format="png", dpi=90, bbox_inches="tight")
                plt.close(fig)
            out.png[k] = path
        except Exception as exc:  # noqa: BLE001
            plt.close("all")
            failed[k] = line(exc)
    out.skipped.update(failed)
    figures = [k for k in wanted if k not in failed]
    out.interactive = _interactive(Path(results_dir), st, objectives, names, curves_of, pruned_ends, figures,
                                   out, title)
    return out


def _interactive(results_dir: Path, st: Any, objectives: list[tuple[str, str]], names: dict[int, str],
                 curves_of: str | None, pruned_ends: list[tuple[str, int, float]], kinds: list[str], out: Plots,
                 title: str) -> Path | None:
    """One page with the plotly versions; plotly.js inlined once (no CDN: it opens offline)."""
    import html

    path = results_dir / INTERACTIVE
    try:
        import plotly.io as pio
        from plotly.offline import get_plotlyjs
    except ImportError as exc:
        out.notes.append(f"interactive page not written: plotly is not installed ({exc})")
        path.unlink(missing_ok=True)
        return None
    from optuna.exceptions import ExperimentalWarning

    make = _figures("plotly", st, objectives)
    divs = []
    for k in kinds:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                warnings.simplefilter("ignore", UserWarning)
                fig = make[k]()
                if k == CURVES:
                    _mark_pruned_plotly(fig, pruned_ends, names, curves_of or "")
                for tr in fig.data:
                    if getattr(tr, "name", None):
                        tr.name = _objective_name(tr.name, objectives)
            divs.append(f"<h2>{html.escape(TITLES[k])}</h2>" + pio.to_html(
                fig, full_html=False, include_plotlyjs=False, div_id=f"plot-{k}", default_height="520px",
                config={"displaylogo": False, "responsive": True}))
        except Exception as exc:  # noqa: BLE001
            out.notes.append(f"{TITLES[k]} left out of {INTERACTIVE}: {line(exc)}")
    skipped = "".join(f"<li>{html.escape(TITLES[k])}: {html.escape(v)}</li>" for k, v in out.skipped.items())
    skipped += "".join(f"<li>{html.escape(n)}</li>" for n in out.notes)
    body = "".join(divs) + (f"<h2>Not drawn</h2><ul>{skipped}</ul>" if skipped else "")
    js = f"<script>{get_plotlyjs()}</script>" if divs else ""
    path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)} plots</title>"
                    f"<style>body{{font-family:sans-serif;margin:2em}}</style>{js}</head><body>"
                    f"<h1>{html.escape(title)}</h1>{body}</body></html>\n")
    return path


def line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
