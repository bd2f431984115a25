"""results/<experiment>/: trials.csv, best.json, a plot of the metric against each parameter, report.html,
and Optuna's plots of the journal (run/plots.py): <plot>.png each and interactive.html."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
from pathlib import Path
from typing import Any

from kubesweep.run import plots
from kubesweep.run.trialstate import PRUNED, SUCCEEDED, elapsed

CSV, BEST, PLOT, HTML = "trials.csv", "best.json", "metric_vs_params.png", "report.html"


def _duration(rec: dict[str, Any]) -> float | None:
    took = elapsed(rec.get("start"), rec.get("end")) if rec.get("end") else None
    return None if took is None else round(took, 1)


def ranked(records: list[dict[str, Any]], metric: str, direction: str) -> list[dict[str, Any]]:
    """Trials best first: succeeded with a metric, then the rest (by name)."""
    def value(r: dict[str, Any]) -> float | None:
        v = (r.get("metrics") or {}).get(metric)
        return v if isinstance(v, (int, float)) and not math.isnan(v) else None

    scored = [r for r in records if r.get("state") == SUCCEEDED and value(r) is not None]
    scored.sort(key=lambda r: value(r), reverse=direction == "maximize")  # type: ignore[arg-type,return-value]
    kept = {id(r) for r in scored}  # by identity: `r not in scored` compared whole dicts, quadratic in trials
    rest = sorted((r for r in records if id(r) not in kept), key=lambda r: r["name"])
    return scored + rest


def best(records: list[dict[str, Any]], metric: str, direction: str) -> dict[str, Any] | None:
    top = ranked(records, metric, direction)
    if top and top[0].get("state") == SUCCEEDED and (top[0].get("metrics") or {}).get(metric) is not None:
        return top[0]
    return None


def write(results_dir: Path, records: list[dict[str, Any]], *, experiment: str, metric: str, direction: str,
          params: list[str], extra_metrics: list[str], log_params: set[str] = set(), early_metric: str | None = None,
          objectives: list[tuple[str, str]] | None = None, front: list[dict[str, Any]] | None = None,
          ) -> dict[str, Path]:
    """Write the report. ``objectives``: (metric, direction) of each objective of a multi-objective
    sweep (default: the one ``metric``); ``front``: its Pareto-optimal records, listed in
    best.json and report.html; ``early_metric``: the metric early stopping judged (its curves are
    the learning curves, else the objective's)."""
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    rows = ranked(records, metric, direction)
    curves_of = plots.curve_metric(records, metric, early_metric)
    judged = [metric] if metric is not None else []  # None: a sweep without a metric (no best)
    columns = ["trial", "batch", *params, "state", "node", "start", "end", "duration_s", *judged, *extra_metrics,
               "last_step", "reason", "message"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        m = r.get("metrics") or {}
        w.writerow([r["name"], r.get("batch"), *(r["params"].get(p) for p in params), r.get("state"), r.get("node"),
                    r.get("start"), r.get("end"), _duration(r), *(m.get(x) for x in judged), *(m.get(x) for x in extra_metrics),
                    _last_step(r, curves_of), r.get("reason"), (r.get("message") or "").replace("\n", " | ")])
    (results_dir / CSV).write_text(buf.getvalue())
    top = best(records, metric, direction)
    summary = {"experiment": experiment, "metric": metric, "direction": direction,
               "trials": len(records), "succeeded": sum(r.get("state") == SUCCEEDED for r in records),
               "best": None if top is None else {"trial": top["name"], "value": top["metrics"][metric],
                                                 "params": top["params"], "node": top.get("node")}}
    summary["pruned"] = sum(r.get("state") == PRUNED for r in records)
    if objectives and len(objectives) > 1:
        summary["objectives"] = [{"metric": m, "direction": d} for m, d in objectives]
    if front is not None:
        summary["pareto_front"] = [{"trial": r["name"], "values": {m: (r.get("metrics") or {}).get(m)
                                                                   for m, _ in objectives or [(metric, direction)]},
                                    "params": r["params"]} for r in front]
    (results_dir / BEST).write_text(json.dumps(summary, indent=2) + "\n")
    png = _plot(rows, metric, params)
    if png:
        (results_dir / PLOT).write_bytes(png)
    try:
        if metric is None:
            raise ValueError("the sweep names no metric")
        drawn = plots.write(results_dir, records, metric=metric, direction=direction, params=params,
                            log_params=log_params, early_metric=early_metric, objectives=objectives, title=experiment)
    except Exception as exc:  # noqa: BLE001 - the table and best.json stand without the plots
        drawn = plots.Plots(notes=[f"Optuna's plots not drawn: {plots.line(exc)}"])
    (results_dir / HTML).write_text(_html(experiment, summary, columns, rows, metric, params, extra_metrics, png,
                                          curves_of, drawn))
    files = {"csv": results_dir / CSV, "best": results_dir / BEST, "plot": results_dir / PLOT,
             "html": results_dir / HTML, **drawn.png}
    if drawn.interactive:
        files["interactive"] = drawn.interactive
    return files


def _last_step(rec: dict[str, Any], curves_of: str | None) -> int | None:
    """The last step the trial reported (a pruned trial's: where it was stopped); None without curves."""
    points = plots.curve(rec, curves_of)
    return points[-1][0] if points else None


def _plot(rows: list[dict[str, Any]], metric: str, params: list[str]) -> bytes | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [r for r in rows if r.get("state") == SUCCEEDED and (r.get("metrics") or {}).get(metric) is not None]
    if not points or not params:
        return None
    cols = min(3, len(params))
    nrows = math.ceil(len(params) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.4 * nrows), squeeze=False)
    for ax, p in zip(axes.flat, params):
        xs = [r["params"].get(p) for r in points]
        ys = [r["metrics"][metric] for r in points]
        if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs):
            ax.scatter(xs, ys, alpha=0.8)
            if min(xs) > 0 and max(xs) / max(min(xs), 1e-300) > 100:
                ax.set_xscale("log")
        else:
            labels = sorted({str(x) for x in xs})
            ax.scatter([labels.index(str(x)) for x in xs], ys, alpha=0.8)
            ax.set_xticks(range(len(labels)), labels, rotation=30)
        ax.set_xlabel(p)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(params):]:
        ax.set_visible(False)
    fig.suptitle(f"{metric} per parameter ({len(points)} trials)")
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=90)
    plt.close(fig)
    return out.getvalue()


def _html(experiment: str, summary: dict[str, Any], columns: list[str], rows: list[dict[str, Any]], metric: str,
          params: list[str], extra: list[str], png: bytes | None, curves_of: str | None, drawn: Any) -> str:
    e = html.escape
    pruned = f", {summary['pruned']} pruned" if summary.get("pruned") else ""
    head = f"<h1>{e(experiment)}</h1><p>{summary['succeeded']} of {summary['trials']} trials succeeded{pruned}.</p>"
    if summary["best"]:
        b = summary["best"]
        head += f"<p><b>Best:</b> {e(b['trial'])} — {e(metric)} = {b['value']} with {e(json.dumps(b['params']))}</p>"
    if summary.get("pareto_front") is not None:
        head += ("<p><b>Pareto front:</b> " + (", ".join(e(f"{p['trial']} {json.dumps(p['values'])}")
                                                        for p in summary["pareto_front"]) or "empty") + "</p>")
    img = f'<img alt="metric per parameter" src="data:image/png;base64,{base64.b64encode(png).decode()}">' if png else ""
    if drawn.interactive:
        img += f'<p><a href="{e(drawn.interactive.name)}">Interactive plots</a> (opens offline)</p>'
    img += "<div class='plots'>" + "".join(
        f'<figure><figcaption>{e(plots.TITLES[k])}</figcaption><img alt="{e(plots.TITLES[k])}" '
        f'src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}"></figure>'
        for k, path in drawn.png.items()) + "</div>"
    notes = [f"{plots.TITLES[k]} not drawn: {why}" for k, why in drawn.skipped.items()] + drawn.notes
    if notes:
        img += "<ul class='skipped'>" + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul>"
    body = []
    for r in rows:
        m = r.get("metrics") or {}
        cells = [r["name"], r.get("batch"), *(r["params"].get(p) for p in params), r.get("state"), r.get("node"),
                 r.get("start"), r.get("end"), _duration(r), m.get(metric), *(m.get(x) for x in extra),
                 _last_step(r, curves_of), r.get("reason"), r.get("message")]
        body.append("<tr>" + "".join(f"<td>{e('' if c is None else str(c))}</td>" for c in cells) + "</tr>")
    table = ("<table><thead><tr>" + "".join(f"<th>{e(c)}</th>" for c in columns) + "</tr></thead><tbody>"
             + "".join(body) + "</tbody></table>")
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}"
             "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}th{background:#eee}"
             ".plots{display:flex;flex-wrap:wrap;gap:1em}figure{margin:0}figcaption{font-weight:bold}"
             ".plots img{max-width:560px;width:100%}")
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{e(experiment)}</title><style>{style}</style></head><body>{head}{img}{table}</body></html>\n"
