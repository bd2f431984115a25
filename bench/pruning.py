#!/usr/bin/env python3
"""GPU-time to the best trial: one search space, run with and without early stopping, and with
random against model-based search, on the real local cluster, side by side in one run.

The trainer is examples/mnist/train.py (a numpy MLP on scikit-learn's digits) printing
``epoch=N … val_accuracy=…`` after each epoch: real learning curves, which differ by learning
rate, optimiser, width and dropout. Each epoch also waits --epoch-seconds, standing in for a
larger model's epoch, so that stopping a trial early saves time the way it does on a GPU. Every
arm asks its trials with the same seed: the random arms run the very same trials, so pruning is
the only difference between them.

Printed per arm: trials run and pruned, total trial-seconds (from each pod's start to its
trial's end, the GPU-time a GPU trial would hold), the best val_accuracy, and how many trials had
finished when one first reached 99 % of the best any arm found; then the ratios the goals are
about: a pruned arm's trial-seconds against the unpruned random arm's (goal: at most 0.5 for a
best within 0.5 points), and model-based search's trials-to-99 % against random's (goal: fewer).

    python bench/pruning.py                      (needs `invoke cluster`; about 6 minutes per seed)
    python bench/pruning.py --seeds 7,8,9 --arms random,random+asha,tpe

With several --seeds every arm runs once per seed; a table per seed, then the medians over seeds
of the ratios and of trials-to-99 %.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from kubesweep import sweep  # noqa: E402
from kubesweep.k8s import client as kube  # noqa: E402
from kubesweep.local.cluster import default_inventory, kubeconfig_path  # noqa: E402
from kubesweep.run import journal, lifecycle  # noqa: E402
from kubesweep.run.trialstate import PRUNED, SUCCEEDED, elapsed  # noqa: E402

METRIC = "val_accuracy"
#: arm -> (search.algorithm, earlyStopping as YAML flow text or None)
ARMS = {
    "random": ("random", None),
    "random+median": ("random", "{pruner: median, minTrials: 4, startStep: 3, intervalSeconds: 2}"),
    "random+asha": ("random", "{pruner: asha, minResource: 2, reductionFactor: 3, intervalSeconds: 2}"),
    "tpe": ("tpe", None),
    "gp": ("gp", None),
}


def grid(arm: str, args: argparse.Namespace, seed: int) -> str:
    algorithm, early = ARMS[arm]
    name = f"bench-prune-{arm.replace('+', '-')}-s{seed}"
    return textwrap.dedent(f"""\
        name: {name}
        image: localhost:5000/kubesweep/mnist
        build: {{context: {ROOT / 'examples' / 'mnist'}, args: {{BASE: "kubesweep/python-base:bookworm"}}}}
        command: [python3, /app/train.py, --epochs, "{args.epochs}", --optimizer, "${{optimizer}}", --lr, "${{lr}}",
                  --hidden, "${{hidden}}", --dropout, "${{dropout}}", --epoch-seconds, "{args.epoch_seconds}"]
        parameters:
          optimizer: [sgd, momentum, adam, rmsprop]
          lr: {{min: 0.0001, max: 1.0, scale: log}}
          hidden: [16, 64, 128]
          dropout: {{min: 0.0, max: 0.5}}
        search: {{algorithm: {algorithm}, seed: {seed}, trials: {args.trials}}}
        batchSize: {args.batch_size}
        objective: {{metric: {METRIC}, direction: maximize}}
        resources: {{cpu: 250m, memory: 256Mi}}
        activeDeadlineSeconds: 900
        """) + (f"earlyStopping: {early}\n" if early else "")


def run_arm(arm: str, args: argparse.Namespace, seed: int, work: Path, target: sweep.Target) -> list[dict]:
    path = work / f"{arm}-s{seed}.yaml"
    path.write_text(grid(arm, args, seed))
    plan = sweep.plan(path)
    where = sweep.Workspace.under(work / f"{arm}-s{seed}")
    started = time.monotonic()
    sweep.run(plan, target, where)
    print(f"  seed {seed}, {arm}: {time.monotonic() - started:.0f}s wall", flush=True)
    lifecycle.clean(kube.clients(target.kubeconfig, target.context), plan.experiment.name)
    return list(journal.load(where.results_dir / plan.experiment.name).values())


def summary(records: list[dict], bar: float) -> dict:
    finished = sorted(records, key=lambda r: r.get("end") or "")
    seconds = sum(elapsed(r.get("start"), r.get("end")) or 0.0 for r in records)
    scores = [r["metrics"][METRIC] for r in records if r["state"] == SUCCEEDED and r["metrics"].get(METRIC) is not None]
    reached = next((i + 1 for i, r in enumerate(finished) if r["state"] == SUCCEEDED
                    and (r["metrics"].get(METRIC) or 0) >= 0.99 * bar), None)
    return {"trials": len(records), "pruned": sum(r["state"] == PRUNED for r in records), "seconds": seconds,
            "best": max(scores) if scores else None, "to99": reached}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=24)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--epoch-seconds", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--seeds", default="7", help="comma-separated search seeds; every arm runs once per seed")
    ap.add_argument("--arms", default=None, help=f"comma-separated, of {', '.join(ARMS)} (default: all; gp only "
                    "where torch, which Optuna's GP sampler needs, is installed)")
    ap.add_argument("--kubeconfig", default=None, help="default: the local cluster's (invoke cluster)")
    args = ap.parse_args()
    if args.arms is None:
        import importlib.util

        arms = [a for a in ARMS if a != "gp" or importlib.util.find_spec("torch") is not None]
        if "gp" not in arms:
            print("gp left out: Optuna's GP sampler needs torch, which is not installed")
    else:
        arms = [a for a in args.arms.split(",") if a]
    unknown = [a for a in arms if a not in ARMS]
    if unknown or "random" not in arms:
        ap.error(f"--arms: {', '.join(unknown) or 'random is the baseline and must be one of them'}")
    seeds = [int(x) for x in args.seeds.split(",") if x]
    config = args.kubeconfig or str(kubeconfig_path(default_inventory()))
    target = sweep.Target(config)
    print(f"pruning benchmark: {args.trials} trials per arm, {args.epochs} epochs of ≥{args.epoch_seconds:g}s, "
          f"{args.batch_size} at a time, seeds {', '.join(map(str, seeds))}, on {config}", flush=True)
    per_seed: list[dict[str, dict]] = []
    with tempfile.TemporaryDirectory(prefix="kubesweep-bench-pruning-") as tmp:
        for seed in seeds:
            results = {arm: run_arm(arm, args, seed, Path(tmp), target) for arm in arms}
            per_seed.append(table(seed, results))
    if len(seeds) > 1:
        medians(arms, per_seed)
    return 0


def table(seed: int, results: dict[str, list[dict]]) -> dict[str, dict]:
    """Print one seed's table and goal lines; return its rows."""
    bar = max((r["metrics"].get(METRIC) or 0) for recs in results.values() for r in recs if r["state"] == SUCCEEDED)
    rows = {arm: summary(recs, bar) for arm, recs in results.items()}
    base = rows["random"]
    print(f"\nseed {seed}: best {METRIC} of any arm {bar:.4f}; 99 % of it: {0.99 * bar:.4f}\n")
    print(f"| arm | trials | pruned | trial-seconds | × random | best {METRIC} | Δ points | trials to 99 % of best |")
    print("|---|---|---|---|---|---|---|---|")
    for arm, row in rows.items():
        row["ratio"] = row["seconds"] / base["seconds"]
        row["gap"] = None if row["best"] is None or base["best"] is None else 100 * (base["best"] - row["best"])
        delta = "" if row["gap"] is None else f"{-row['gap']:+.2f}"
        print(f"| {arm} | {row['trials']} | {row['pruned']} | {row['seconds']:.0f} | {row['ratio']:.2f} | "
              f"{'-' if row['best'] is None else format(row['best'], '.4f')} | {delta} | {row['to99'] or 'never'} |")
    print()
    for arm, row in rows.items():
        if ARMS[arm][1] and row["gap"] is not None:
            met = row["ratio"] <= 0.5 and row["gap"] <= 0.5
            print(f"{arm}: {row['ratio']:.2f}× random's trial-seconds, best {row['gap']:.2f} points below it "
                  f"(goal: ≤ 0.50× within 0.5 points): {'met' if met else 'missed'}")
        elif ARMS[arm][0] != "random":
            better = row["to99"] is not None and (base["to99"] is None or row["to99"] < base["to99"])
            print(f"{arm}: 99 % of the best after {row['to99'] or 'never'} trials, random after {base['to99'] or 'never'} "
                  f"(goal: fewer): {'met' if better else 'missed'}")
    return rows


def medians(arms: list[str], per_seed: list[dict[str, dict]]) -> None:
    never = 10**9  # a seed where an arm never reached 99 % counts as the worst
    print(f"\nover {len(per_seed)} seeds (medians):\n")
    print("| arm | × random's trial-seconds | best below random's, points | trials to 99 % of best | per seed |")
    print("|---|---|---|---|---|")
    for arm in arms:
        rows = [seed_rows[arm] for seed_rows in per_seed]
        to99 = statistics.median(r["to99"] or never for r in rows)
        gaps = [r["gap"] for r in rows if r["gap"] is not None]
        print(f"| {arm} | {statistics.median(r['ratio'] for r in rows):.2f} | "
              f"{statistics.median(gaps) if gaps else float('nan'):.2f} | {'never' if to99 >= never else f'{to99:g}'} | "
              f"{', '.join(str(r['to99'] or 'never') for r in rows)} |")


if __name__ == "__main__":
    sys.exit(main())
