"""results/<experiment>/: trials.csv, best.json, a plot of the metric against each parameter, report.html."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
from pathlib import Path
from typing import Any

from kubesweep.run.trialstate import SUCCEEDED, elapsed

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
    rest = sorted((r for r in records if r not in scored), key=lambda r: r["name"])
    return scored + rest


def best(records: list[dict[str, Any]], metric: str, direction: str) -> dict[str, Any] | None:
    top = ranked(records, metric, direction)
    if top and top[0].get("state") == SUCCEEDED and (top[0].get("metrics") or {}).get(metric) is not None:
        return top[0]
    return None


def write(results_dir: Path, records: list[dict[str, Any]], *, experiment: str, metric: str, direction: str,
          params: list[str], extra_metrics: list[str]) -> dict[str, Path]:
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    rows = ranked(records, metric, direction)
    columns = ["trial", "batch", *params, "state", "node", "start", "end", "duration_s", metric, *extra_metrics,
               "reason", "message"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        m = r.get("metrics") or {}
        w.writerow([r["name"], r.get("batch"), *(r["params"].get(p) for p in params), r.get("state"), r.get("node"),
                    r.get("start"), r.get("end"), _duration(r), m.get(metric), *(m.get(x) for x in extra_metrics),
                    r.get("reason"), (r.get("message") or "").replace("\n", " | ")])
    (results_dir / CSV).write_text(buf.getvalue())
    top = best(records, metric, direction)
    summary = {"experiment": experiment, "metric": metric, "direction": direction,
               "trials": len(records), "succeeded": sum(r.get("state") == SUCCEEDED for r in records),
               "best": None if top is None else {"trial": top["name"], "value": top["metrics"][metric],
                                                 "params": top["params"], "node": top.get("node")}}
    (results_dir / BEST).write_text(json.dumps(summary, indent=2) + "\n")
    png = _plot(rows, metric, params)
    if png:
        (results_dir / PLOT).write_bytes(png)
    (results_dir / HTML).write_text(_html(experiment, summary, columns, rows, metric, params, extra_metrics, png))
    return {"csv": results_dir / CSV, "best": results_dir / BEST, "plot": results_dir / PLOT, "html": results_dir / HTML}


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
          params: list[str], extra: list[str], png: bytes | None) -> str:
    e = html.escape
    head = f"<h1>{e(experiment)}</h1><p>{summary['succeeded']} of {summary['trials']} trials succeeded.</p>"
    if summary["best"]:
        b = summary["best"]
        head += f"<p><b>Best:</b> {e(b['trial'])} — {e(metric)} = {b['value']} with {e(json.dumps(b['params']))}</p>"
    img = f'<img alt="metric per parameter" src="data:image/png;base64,{base64.b64encode(png).decode()}">' if png else ""
    body = []
    for r in rows:
        m = r.get("metrics") or {}
        cells = [r["name"], r.get("batch"), *(r["params"].get(p) for p in params), r.get("state"), r.get("node"),
                 r.get("start"), r.get("end"), _duration(r), m.get(metric), *(m.get(x) for x in extra),
                 r.get("reason"), r.get("message")]
        body.append("<tr>" + "".join(f"<td>{e('' if c is None else str(c))}</td>" for c in cells) + "</tr>")
    table = ("<table><thead><tr>" + "".join(f"<th>{e(c)}</th>" for c in columns) + "</tr></thead><tbody>"
             + "".join(body) + "</tbody></table>")
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}"
             "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}th{background:#eee}")
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{e(experiment)}</title><style>{style}</style></head><body>{head}{img}{table}</body></html>\n"
