"""The report's Optuna plots (run/plots.py): from real journals of TrialRecords to PNGs and one
interactive page that a real headless Chromium renders with the network off."""

from __future__ import annotations

import csv
import json
import math
import os
import random
import re
from pathlib import Path

import pytest

from kubesweep.run import journal, plots, report
from kubesweep.run.trialstate import CANCELLED, FAILED, PRUNED, SUCCEEDED, TrialRecord

from . import headless

PNG = b"\x89PNG\r\n\x1a\n"


def sweep_records(n: int = 40, seed: int = 3) -> list[dict]:
    """A sweep's journal: accuracy rises per epoch; some trials pruned part-way, some failed or cancelled."""
    rnd = random.Random(seed)
    recs = []
    for i in range(n):
        lr, opt, layers = 10 ** rnd.uniform(-4, -1), rnd.choice(["sgd", "adam"]), rnd.randint(1, 4)
        top = 0.9 - abs(math.log10(lr) + 2.5) * 0.1 + (0.03 if opt == "adam" else 0.0)
        state = [SUCCEEDED, SUCCEEDED, SUCCEEDED, PRUNED, FAILED, SUCCEEDED, CANCELLED][i % 7]
        reached = 10 if state == SUCCEEDED else 3 + i % 5
        curve = [[s, round(top * (1 - math.exp(-s / 3)), 4)] for s in range(1, reached + 1)]
        rec = TrialRecord(name=f"t{i:03d}", batch=f"batch-{i // 8:03d}", params={"lr": lr, "opt": opt, "layers": layers},
                          state=state, node="n1", start=f"2026-01-01T00:00:{i:02d}Z", end=f"2026-01-01T00:01:{i:02d}Z",
                          metrics={"acc": curve[-1][1] if state in (SUCCEEDED, PRUNED) else None},
                          curves={} if state == FAILED else {"acc": curve})
        recs.append(rec.as_dict())
    return recs


def write(tmp_path: Path, recs: list[dict], params=("lr", "opt", "layers"), **kw) -> dict[str, Path]:
    return report.write(tmp_path, recs, experiment="e", metric="acc", direction="maximize", params=list(params),
                        extra_metrics=[], **kw)


def figures(page: str) -> dict[str, list[dict]]:
    """The plotly traces of each figure on the interactive page, by plot name."""
    out, dec = {}, json.JSONDecoder()
    for m in re.finditer(r'Plotly\.newPlot\(\s*"plot-(\w+)",\s*', page):
        out[m.group(1)], _ = dec.raw_decode(page, m.end())
    return out


def test_a_sweep_gets_optuna_plots_and_one_offline_page(tmp_path):
    recs = sweep_records()
    for r in recs:
        journal.append(tmp_path / "j", r)  # what the sweep keeps, read back as `kubesweep results` does
    recs = list(journal.load(tmp_path / "j").values())
    files = write(tmp_path, recs, log_params={"lr"})
    for k in (plots.HISTORY, plots.PARALLEL, plots.IMPORTANCE, plots.CURVES):
        assert files[k].read_bytes()[:8] == PNG
        import matplotlib.image

        h, w, _ = matplotlib.image.imread(files[k]).shape  # decodes, and is a real picture
        assert h > 200 and w > 300
    assert plots.PARETO not in files  # one objective
    page = files["interactive"].read_text()
    assert page.count("<script") == 1 + 4  # plotly.js once, then one call per figure
    assert len(re.findall(r"plotly\.js v\d", page)) == 1
    assert not re.search(r"<script[^>]*\bsrc\s*=|<link\b|<img\b|<iframe\b", page, re.I)  # nothing fetched
    figs = figures(page)
    assert set(figs) == {plots.HISTORY, plots.PARALLEL, plots.IMPORTANCE, plots.CURVES}
    # learning curves: each pruned trial's curve ends at the step it reached, marked with an x there
    pruned = [r for r in recs if r["state"] == PRUNED]
    by_name = {t.get("name"): t for t in figs[plots.CURVES]}
    marks = by_name["pruned: last step"]
    assert marks["marker"]["symbol"] == "x" and sorted(marks["text"]) == sorted(r["name"] for r in pruned)
    for r in pruned:
        last = r["curves"]["acc"][-1]
        assert by_name[r["name"]]["x"][-1] == last[0] and by_name[r["name"]]["y"][-1] == last[1]
        i = marks["text"].index(r["name"])
        assert (marks["x"][i], marks["y"][i]) == (last[0], last[1])
    assert not any(r["name"] in by_name for r in recs if r["state"] == FAILED)  # no curve kept
    # importance: lr is what decides accuracy here
    imp = figs[plots.IMPORTANCE][0]
    assert imp["y"][list(imp["x"]).index(max(imp["x"]))] == "lr"
    # the table: a last_step column, pruned trials at theirs; best.json as before, plus the pruned count
    rows = list(csv.DictReader(files["csv"].open()))
    assert list(rows[0])[:5] == ["trial", "batch", "lr", "opt", "layers"] and "last_step" in rows[0]
    assert {r["trial"]: r["last_step"] for r in rows if r["state"] == PRUNED} == {
        r["name"]: str(r["curves"]["acc"][-1][0]) for r in pruned}
    best = json.loads(files["best"].read_text())
    assert best["best"]["trial"] == rows[0]["trial"] and best["pruned"] == len(pruned)
    html = files["html"].read_text()
    assert 'href="interactive.html"' in html and html.count("data:image/png;base64,") == 1 + 4
    assert "not drawn" not in html


def test_a_sweep_with_early_stopping_draws_the_judged_metric(tmp_path, monkeypatch):
    recs = sweep_records(14)
    for r in recs:
        if r["curves"]:
            r["curves"]["loss"] = [[s, 1 - v] for s, v in r["curves"]["acc"]]
    files = write(tmp_path, recs, early_metric="loss")
    curves = figures(files["interactive"].read_text())[plots.CURVES]
    t0 = next(t for t in curves if t.get("name") == "t000")
    assert t0["y"][-1] == pytest.approx(1 - recs[0]["curves"]["acc"][-1][1])
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as vism

    drawn, real = [], vism.plot_intermediate_values
    monkeypatch.setattr(vism, "plot_intermediate_values", lambda st: drawn.append(real(st)) or drawn[-1])
    write(tmp_path / "legend", recs, early_metric="loss")  # Optuna's own plot, its Axes kept to read the legend
    legend = [t.get_text() for t in drawn[0].get_legend().get_texts()]
    assert "t000" in legend and not any(t.startswith("Trial") for t in legend)  # the sweep's names, few curves
    plt.close("all")
    rows = list(csv.DictReader(files["csv"].open()))
    assert {r["trial"]: r["last_step"] for r in rows}["t000"] == "10"


def reasons(files: dict[str, Path]) -> str:
    import html

    return html.unescape(" ".join(re.findall(r"<li>(.*?)</li>", files["html"].read_text())))


def rec(name, state, params, acc, curve=None):
    return TrialRecord(name=name, batch="batch-000", params=params, state=state, metrics={"acc": acc},
                       end=f"2026-01-01T00:00:0{name[-1]}Z", curves={"acc": curve} if curve else {}).as_dict()


@pytest.mark.parametrize("case", ["empty", "pending only", "one trial", "one parameter", "all categorical",
                                  "all failed", "nan metrics", "old journal", "same value"])
def test_small_and_odd_journals_give_a_report_with_reasons(tmp_path, case):
    one = {"lr": 0.1, "opt": "sgd"}
    recs, params = {
        "empty": ([], ["lr", "opt"]),
        "pending only": ([{"name": "t1", "batch": "b", "params": one, "state": "pending", "metrics": {}}], ["lr", "opt"]),
        "one trial": ([rec("t1", SUCCEEDED, one, 0.9, [[1, 0.5], [2, 0.9]])], ["lr", "opt"]),
        "one parameter": ([rec(f"t{i}", SUCCEEDED, {"lr": 0.1 * i}, 0.5 + 0.1 * i) for i in range(1, 4)], ["lr"]),
        "all categorical": ([rec(f"t{i}", SUCCEEDED, {"opt": o, "act": a}, 0.5 + 0.1 * i)
                             for i, (o, a) in enumerate([("sgd", "relu"), ("adam", "tanh"), ("sgd", "tanh")], 1)],
                            ["opt", "act"]),
        "all failed": ([rec(f"t{i}", FAILED, {"lr": 0.1 * i, "opt": "sgd"}, None) for i in range(1, 4)], ["lr", "opt"]),
        "nan metrics": ([rec("t1", SUCCEEDED, one, float("nan"), [[1, float("nan")]]),
                         rec("t2", SUCCEEDED, {"lr": 0.2, "opt": "adam"}, 0.8),
                         rec("t3", PRUNED, {"lr": 0.3, "opt": "adam"}, float("nan"), [[1, 0.2], [2, float("nan")]])],
                        ["lr", "opt"]),
        "old journal": ([{k: v for k, v in rec(f"t{i}", SUCCEEDED, {"lr": 0.1 * i, "opt": "sgd"}, 0.1 * i).items()
                          if k != "curves"} for i in range(1, 4)], ["lr", "opt"]),
        "same value": ([rec(f"t{i}", SUCCEEDED, {"lr": 0.1, "opt": "sgd"}, 0.1 * i) for i in range(1, 4)], ["lr", "opt"]),
    }[case]
    files = write(tmp_path, recs, params=params)
    assert files["csv"].exists() and files["best"].exists() and files["html"].exists()
    why = reasons(files)
    drawn = {k for k in plots.TITLES if k in files}
    for k in drawn:
        assert files[k].read_bytes()[:8] == PNG
    expected = {
        "empty": (set(), ["Optimisation history not drawn: no trial finished with a numeric acc",
                          "Learning curves not drawn: no finished trial reported intermediate values"]),
        "pending only": (set(), ["Parallel coordinates not drawn: no trial finished with a numeric acc"]),
        "one trial": ({plots.HISTORY, plots.PARALLEL, plots.CURVES},
                      ["Parameter importance not drawn: needs at least 2 completed trials, has 1"]),
        "one parameter": ({plots.HISTORY, plots.PARALLEL, plots.IMPORTANCE}, ["Learning curves not drawn"]),
        "all categorical": ({plots.HISTORY, plots.PARALLEL, plots.IMPORTANCE}, []),
        "all failed": (set(), ["Parameter importance not drawn: no trial finished with a numeric acc"]),
        "nan metrics": ({plots.HISTORY, plots.PARALLEL, plots.CURVES},
                        ["1 succeeded trial without a numeric acc counted as failed",
                         "Parameter importance not drawn: needs at least 2 completed trials, has 1"]),
        "old journal": ({plots.HISTORY, plots.PARALLEL, plots.IMPORTANCE}, ["Learning curves not drawn"]),
        "same value": ({plots.HISTORY, plots.PARALLEL},
                       ["Parameter importance not drawn: no parameter took more than one value"]),
    }[case]
    assert drawn == expected[0], why
    for line in expected[1]:
        assert line in why
    assert "Error" not in why and "Traceback" not in files["html"].read_text()
    if drawn:
        page = files["interactive"].read_text()
        assert set(figures(page)) == drawn and "Not drawn" in page or not why
    else:
        assert "interactive" in files and "Plotly.newPlot" not in files["interactive"].read_text()
        assert "plotly.js v" not in files["interactive"].read_text()  # nothing to draw: no 4 MB of plotly.js


def test_multi_objective_draws_the_pareto_front(tmp_path):
    recs = []
    for i in range(1, 9):
        r = rec(f"t{i}", SUCCEEDED, {"lr": 0.01 * i, "opt": "sgd" if i % 2 else "adam"}, 0.5 + 0.05 * i)
        r["metrics"]["latency"] = 10.0 + (i % 4) * 3
        recs.append(r)
    front = [r for r in recs if r["name"] in ("t4", "t8")]
    files = write(tmp_path, recs, params=("lr", "opt"), objectives=[("acc", "maximize"), ("latency", "minimize")],
                  front=front)
    assert files[plots.PARETO].read_bytes()[:8] == PNG
    figs = figures(files["interactive"].read_text())
    assert {plots.PARETO, plots.HISTORY, plots.PARALLEL, plots.IMPORTANCE} <= set(figs)
    best = json.loads(files["best"].read_text())
    assert [p["trial"] for p in best["pareto_front"]] == ["t4", "t8"]
    assert best["objectives"][1] == {"metric": "latency", "direction": "minimize"}
    assert "Pareto front:</b> t4" in files["html"].read_text()
    for r in recs:
        r["metrics"].update(memory=1.0, energy=2.0)
    four = [("acc", "maximize"), ("latency", "minimize"), ("memory", "minimize"), ("energy", "minimize")]
    files = write(tmp_path / "four", recs, params=("lr", "opt"), objectives=four, front=front)
    assert plots.PARETO not in files and plots.IMPORTANCE in files
    assert "Pareto front not drawn: Optuna draws the front of 2 or 3 objectives; this sweep has 4" in reasons(files)


def test_sweep_report_passes_the_sweep_file_s_scale_and_early_stopping_metric(tmp_path, grid_file):
    from kubesweep import sweep as sweeps

    grid = grid_file("name: es\nimage: localhost:5000/t:1\ncommand: [run, \"${lr}\", \"${opt}\"]\n"
                     "parameters: {lr: {min: 0.0001, max: 0.1, scale: log, count: 4}, opt: [sgd, adam]}\n"
                     "objective: {metric: acc}\nearlyStopping: {pruner: median, metric: loss}\n")
    plan = sweeps.plan(str(grid))
    done = {}
    for i, t in enumerate(plan.trials):
        curve = [[s, 1 / (s + i)] for s in range(1, 3 if i == 1 else 6)]
        done[t.name] = TrialRecord(name=t.name, batch="batch-000", params=t.params, state=PRUNED if i == 1 else SUCCEEDED,
                                   metrics={"acc": 0.5 + 0.01 * i}, end=f"2026-01-01T00:00:0{i}Z",
                                   curves={"loss": curve}).as_dict()
    files = sweeps.report(plan, tmp_path, done)
    page = files["interactive"].read_text()
    figs = figures(page)
    lr = next(d for d in figs[plots.PARALLEL][0]["dimensions"] if d["label"] == "lr")
    assert lr["range"] == pytest.approx([-4, -1])  # drawn on a log scale, as the sweep file says
    curves = {t.get("name"): t for t in figs[plots.CURVES]}
    assert curves[plan.trials[0].name]["y"][0] == 1.0  # the early-stopping metric's curve: loss
    rows = {r["trial"]: r["last_step"] for r in csv.DictReader(files["csv"].open())}
    assert rows[plan.trials[1].name] == "2" and rows[plan.trials[0].name] == "5"


BROWSER = headless.browser()
CHECK = """({
  plots: document.querySelectorAll('.js-plotly-plot').length,
  drawn: Array.from(document.querySelectorAll('.js-plotly-plot')).filter(d => d.querySelector('svg.main-svg')).length,
  traces: Array.from(document.querySelectorAll('.js-plotly-plot')).map(d => [d.id, (d.data || []).length,
          d.querySelectorAll('.scatterlayer .trace, .barlayer .trace, .parcoords').length]),
  plotly: typeof Plotly === 'undefined' ? null : Plotly.version })"""


@pytest.fixture
def browser_exe():
    if BROWSER is None:
        if os.environ.get("CI"):
            pytest.fail("no headless Chromium: .ci/run installs Debian's chromium-headless-shell")
        pytest.skip("no headless Chromium (apt-get install chromium-headless-shell)")
    return BROWSER


@pytest.mark.slow
def test_the_interactive_page_renders_in_a_real_browser_with_the_network_off(tmp_path, browser_exe):
    files = write(tmp_path, sweep_records(60), log_params={"lr"})
    seen = headless.open_offline(files["interactive"].as_uri(), CHECK, exe=browser_exe)
    assert seen["errors"] == []
    assert seen["requests"] == [files["interactive"].as_uri()]  # the page alone: nothing from the network
    v = seen["value"]
    assert v["plotly"] and v["plots"] == 4 and v["drawn"] == 4, v
    traces = {name: (data, shown) for name, data, shown in v["traces"]}
    assert set(traces) == {f"plot-{k}" for k in (plots.HISTORY, plots.PARALLEL, plots.IMPORTANCE, plots.CURVES)}
    curves_data, curves_shown = traces[f"plot-{plots.CURVES}"]
    kept = sum(1 for r in sweep_records(60) if r["curves"] and r["state"] in (SUCCEEDED, PRUNED))
    assert curves_data == kept + 1 and curves_shown >= kept  # a line per finished curve, and the pruned marks
    assert all(shown >= 1 for _, shown in traces.values())


@pytest.mark.slow
def test_the_browser_check_sees_a_page_that_wants_the_network(tmp_path, browser_exe):
    """The harness itself: a page loading plotly.js from a CDN requests it and, offline, draws nothing."""
    page = tmp_path / "cdn.html"
    page.write_text('<!doctype html><html><head><script src="https://cdn.plot.ly/plotly-2.35.2.min.js"></script>'
                    '</head><body><div class="js-plotly-plot"></div></body></html>')
    seen = headless.open_offline(page.as_uri(), CHECK, exe=browser_exe, settle_s=0.5)
    assert "https://cdn.plot.ly/plotly-2.35.2.min.js" in seen["requests"]
    assert seen["value"]["plotly"] is None and seen["value"]["drawn"] == 0


def test_an_optuna_plot_that_raises_is_left_out_with_its_reason(tmp_path, monkeypatch):
    import optuna.visualization as vis
    import optuna.visualization.matplotlib as vism

    def boom(*a, **kw):
        raise ValueError("cannot evaluate\nsecond line")

    monkeypatch.setattr(vism, "plot_param_importances", boom)
    monkeypatch.setattr(vis, "plot_optimization_history", boom)
    files = write(tmp_path, sweep_records(14))
    assert plots.IMPORTANCE not in files and plots.PARALLEL in files and plots.HISTORY in files
    why = reasons(files)
    assert "Parameter importance not drawn: ValueError: cannot evaluate" in why and "second line" not in why
    assert "Optimisation history left out of interactive.html: ValueError: cannot evaluate" in why
    assert set(figures(files["interactive"].read_text())) == {plots.PARALLEL, plots.CURVES}

    monkeypatch.setattr(plots, "write", boom)  # whatever goes wrong there, the table and best.json stand
    files = write(tmp_path / "again", sweep_records(14))
    assert "Optuna's plots not drawn: ValueError: cannot evaluate" in reasons(files) and files["csv"].exists()


def test_a_multi_objective_sweep_s_report_draws_the_front_pareto_py_finds(tmp_path, grid_file):
    from kubesweep import sweep as sweeps
    from kubesweep.run.pareto import pareto_front

    grid = grid_file("name: mo\nimage: localhost:5000/t:1\ncommand: [run, \"${width}\"]\n"
                     "parameters: {width: [1, 2, 3, 4, 5, 6, 7, 8]}\n"
                     "objective: {metric: acc, additionalObjectives: [{metric: latency, direction: minimize}]}\n")
    plan = sweeps.plan(str(grid))
    done = {}
    for i, t in enumerate(plan.trials):
        w = t.params["width"]  # wider: more accurate and slower; widths 7 and 8 are slow for nothing
        acc, latency = (0.5 + 0.05 * w, 10.0 + 2 * w) if w <= 6 else (0.6, 30.0 + w)
        done[t.name] = TrialRecord(name=t.name, batch="batch-000", params=t.params, state=SUCCEEDED,
                                   metrics={"acc": acc, "latency": latency}, end=f"2026-01-01T00:00:0{i}Z").as_dict()
    files = sweeps.report(plan, tmp_path, done)
    front = {r["name"] for r in pareto_front(list(done.values()), [("acc", "maximize"), ("latency", "minimize")])}
    assert len(front) == 6
    assert {p["trial"] for p in json.loads(files["best"].read_text())["pareto_front"]} == front
    assert files[plots.PARETO].read_bytes()[:8] == PNG
    traces = figures(files["interactive"].read_text())[plots.PARETO]
    best = max(traces, key=lambda t: len(t["x"]))  # Optuna's own front: the trials it marks best
    assert {json.loads(s.replace("<br>", ""))["user_attrs"]["trial"] for s in best["text"]} == front
    assert "latency" in next(csv.reader(files["csv"].open()))  # the second objective has its column
    importance = figures(files["interactive"].read_text())[plots.IMPORTANCE]
    assert [t["name"] for t in importance] == ["acc", "latency"]  # one bar per objective, by its name
