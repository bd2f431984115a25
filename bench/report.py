#!/usr/bin/env python3
"""Report benchmark: how long the end-of-sweep report takes for a journal of N trials.

Builds a journal of TrialRecords (three parameters, one on a log scale; about 70 % succeeded with
20-step learning curves, 20 % pruned part-way, the rest failed or cancelled), then times
run/report.py's write (trials.csv, best.json, the plots, report.html, interactive.html) in this
process, imports included, as `kubesweep results` pays it; and each Optuna plot alone.

    python bench/report.py --trials 1000
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from kubesweep.run.trialstate import TrialRecord  # noqa: E402


def journal(n: int, seed: int = 0) -> list[dict]:
    rnd = random.Random(seed)
    recs = []
    for i in range(n):
        lr, opt, layers = 10 ** rnd.uniform(-4, -1), rnd.choice(["sgd", "adam", "rmsprop"]), rnd.randint(1, 6)
        top = 0.9 - abs(math.log10(lr) + 2.5) * 0.1 + (0.03 if opt == "adam" else 0) + rnd.gauss(0, 0.01)
        state = rnd.choices(["succeeded", "pruned", "failed", "cancelled"], [70, 20, 7, 3])[0]
        reached = 20 if state == "succeeded" else rnd.randint(3, 12)
        curve = [[s, round(top * (1 - math.exp(-s / 4)), 4)] for s in range(1, reached + 1)]
        recs.append(TrialRecord(
            name=f"t{i:05d}", batch=f"batch-{i // 10:04d}", params={"lr": lr, "optimizer": opt, "layers": layers},
            state=state, node="n1", start=f"2026-01-01T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z",
            end=f"2026-01-02T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z",
            metrics={"acc": curve[-1][1] if state in ("succeeded", "pruned") else None},
            curves={} if state == "failed" else {"acc": curve}).as_dict())
    return recs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=1000)
    args = ap.parse_args()
    recs = journal(args.trials)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        from kubesweep.run import plots, report

        files = report.write(Path(tmp), recs, experiment="bench", metric="acc", direction="maximize",
                             params=["lr", "optimizer", "layers"], extra_metrics=[], log_params={"lr"})
        took = time.perf_counter() - t0
        sizes = {k: files[k].stat().st_size for k in ("html", "interactive") if k in files}
        t1 = time.perf_counter()
        st, _, _ = plots.study(recs, objectives=[("acc", "maximize")], params=["lr", "optimizer", "layers"],
                               log_params={"lr"}, curves_of="acc")
        study_s = time.perf_counter() - t1
        import matplotlib.pyplot as plt

        each = {}
        for kind in ("matplotlib", "plotly"):
            for name, make in plots._figures(kind, st, [("acc", "maximize")]).items():
                if name == plots.PARETO:
                    continue
                t = time.perf_counter()
                make()
                each[f"{kind} {name}"] = time.perf_counter() - t
                plt.close("all")
    print(f"{args.trials} trials: report (all files, imports included) {took:.2f}s; "
          f"report.html {sizes.get('html', 0) / 1e6:.1f} MB, interactive.html {sizes.get('interactive', 0) / 1e6:.1f} MB")
    print(f"  study from the journal {study_s:.2f}s; " + ", ".join(f"{k} {v:.2f}s" for k, v in each.items()))


if __name__ == "__main__":
    main()
