#!/usr/bin/env python3
"""Serve page benchmark: how long the page of `kubesweep serve` takes to show an experiment of N trials.

Writes the same workspace as bench/serve.py (a rendered grid of N trials and a journal of N finished
trials with 20-step learning curves), starts `kubesweep --project-dir TMP serve` on 127.0.0.1 in its
own process, and opens ``/#/e/<experiment>`` in Debian's headless Chromium (tests/headless.py: the
DevTools protocol over a pipe), a fresh browser profile each time (nothing cached). Reads the page's
own performance marks, in ms from navigation start:

    table     the trials table rendered (every row in the DOM, sorted)
    plots     ``#/e/<experiment>/plots`` opened instead: plotly.js loaded (4.8 MB) and the parallel
              coordinates, the metric against each parameter and the learning curves drawn

and, once the table stands, how long a click sorting 2,000 rows by the metric takes (ms in the page).

    python bench/serve_page.py --trials 2000 --reps 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from serve import NAME, start, stop, workspace  # noqa: E402  bench/serve.py's workspace and server

from tests import headless  # noqa: E402

SORT = """(() => { const t = performance.now(); document.querySelector('#trials th[data-key=metric]').click();
  return performance.now() - t; })()"""


PARTS = {"plotly-load": "  of which: plotly.js fetched and run", "parallel": "  of which: parallel coordinates",
         "scatter": "  of which: metric against each parameter", "curves": "  of which: learning curves (+ GET /curves)"}


def measure(exe: str, url: str, mark: str, trials: int, sort: bool) -> tuple[float, float | None, dict[str, float]]:
    with headless.Tab(exe) as tab:
        tab.open(url)
        tab.wait(f"window.kubesweepRendered && window.kubesweepRendered.{mark}", timeout=120)
        rows = tab.evaluate("document.querySelectorAll('#trials tbody tr').length")
        assert rows == trials, f"{rows} rows on the page, {trials} trials"
        took = tab.evaluate(f"performance.getEntriesByName('kubesweep:{mark}')[0].startTime")
        sorted_ms = tab.evaluate(SORT) if sort else None
        parts = dict(tab.evaluate("performance.getEntriesByType('measure').filter(m => m.name.startsWith('kubesweep:'))"
                                  ".map(m => [m.name.slice(10), m.duration])"))
        if tab.errors:
            raise SystemExit(f"the page logged errors: {tab.errors}")
    return took, sorted_ms, parts


def main() -> None:
    import httpx

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=2000, help="trials in the experiment (as bench/serve.py plans them)")
    ap.add_argument("--reps", type=int, default=5, help="page loads per measure (each a fresh browser)")
    args = ap.parse_args()
    exe = headless.browser()
    if exe is None:
        raise SystemExit("no headless Chromium (apt-get install chromium-headless-shell)")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        workspace(root, args.trials)
        server, base = start(root)
        try:
            with httpx.Client(base_url=base, timeout=60) as c:
                total = c.get(f"/api/experiments/{NAME}").json()["total"]  # (the server's cache filled)
            table, sort, plots = [], [], []
            parts: dict[str, list[float]] = {k: [] for k in PARTS}
            for _ in range(args.reps):
                t, s, _ = measure(exe, f"{base}/#/e/{NAME}", "table", total, sort=True)
                table.append(t)
                sort.append(s)
                p, _, drawn = measure(exe, f"{base}/#/e/{NAME}/plots", "plots", total, sort=False)
                plots.append(p)
                for k in PARTS:
                    parts[k].append(drawn[k])
        finally:
            stop(server)
    print(f"\n{total:,} trials, {args.reps} loads each, a fresh browser profile per load (ms from navigation start)\n")
    print("| measure | median | min | max |")
    print("|---|---|---|---|")
    for what, vals in (("trials table rendered", table), ("plots drawn (plotly.js loaded)", plots),
                       *((PARTS[k], parts[k]) for k in PARTS),
                       (f"sort {total:,} rows by the metric (click)", sort)):
        print(f"| {what} | {statistics.median(vals):.0f} | {min(vals):.0f} | {max(vals):.0f} |")


if __name__ == "__main__":
    main()
