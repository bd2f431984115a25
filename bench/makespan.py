#!/usr/bin/env python3
"""Scheduling benchmark: N trials of mixed durations on kwok GPU nodes, against the ideal.

kwok plays kubelet for fake nodes advertising nvidia.com/gpu; each trial asks for one GPU and
"runs" for its own duration (kwok's pod-complete stage reads it from the pod's annotation). The
real API server, scheduler and Job controller do the rest. Both refill policies run in this one
invocation, side by side:

  trial   a freed slot gets the next trial at once (kubesweep's default)
  batch   the next batch directory starts when the whole previous one has finished

Printed per policy: makespan, the ideal bound max(sum of durations / slots, longest trial), their
ratio, the mean idle time of a slot between trials, and the client's CPU use while watching.

    python bench/makespan.py --trials 2000 --nodes 50 --gpus 8     (needs `invoke cluster`)
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from kubesweep import fake_nodes, kube, lifecycle, render, runner  # noqa: E402
from kubesweep.cluster import DEFAULT_INVENTORY, kubeconfig_path  # noqa: E402
from kubesweep.versions import pins  # noqa: E402

DURATIONS = [2, 3, 5, 8, 13]
GRID = """\
name: bench-{policy}
image: localhost:5000/kubesweep/fake:1
command: [train, "${{duration}}", "${{rep}}"]
parameters:
  duration: {durations}
  rep: {{min: 1, max: {reps}}}
search: {{trialLimit: 100000}}
batchSize: {slots}
objective: {{metric: acc}}
resources: {{cpu: 100m, memory: 64Mi, nvidia.com/gpu: 1}}
nodeSelector: {{nvidia.com/gpu.present: "true"}}
tolerations: [{{key: kwok.x-k8s.io/node, operator: Exists, effect: NoSchedule}}]
annotations:
  pod-complete.stage.kwok.x-k8s.io/delay: "${{duration}}s"
  pod-complete.stage.kwok.x-k8s.io/jitter-delay: "${{duration}}s"
"""


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_policy(policy: str, trials: int, slots: int, kc: Path, work: Path) -> dict[str, float]:
    reps = max(1, trials // len(DURATIONS))
    grid = work / f"{policy}.yaml"
    grid.write_text(GRID.format(policy=policy, durations=DURATIONS, reps=reps, slots=slots))
    plan = render.plan(grid)
    render.write(plan, work / "jobs")
    total = sum(t.params["duration"] for t in plan.trials)
    ideal = max(total / slots, max(DURATIONS))
    cpu0, t0 = cpu_seconds(), time.monotonic()
    sweep = runner.Sweep(plan, work / "jobs", work / "results", kubeconfig=kc, refill=policy)
    outcome = sweep.run()
    wall = time.monotonic() - t0
    cpu = cpu_seconds() - cpu0
    n = len(plan.trials)
    idle = (wall * slots - total) / n  # slot-seconds not spent running, per trial started
    done = sum(1 for r in outcome.records.values() if r.state in ("succeeded", "failed"))
    lifecycle.clean(kube.clients(kc), plan.experiment.name)
    return {"trials": n, "finished": done, "makespan": wall, "ideal": ideal, "ratio": wall / ideal,
            "idle_per_trial": idle, "cpu_pct": 100 * cpu / wall}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=2000)
    ap.add_argument("--nodes", type=int, default=50)
    ap.add_argument("--gpus", type=int, default=8)
    ap.add_argument("--policies", default="trial,batch")
    ap.add_argument("--kubeconfig", default=None)
    args = ap.parse_args()
    kc = Path(args.kubeconfig) if args.kubeconfig else kubeconfig_path(DEFAULT_INVENTORY)
    if not kc.exists():
        kc = kubeconfig_path(ROOT / "inventory" / "local")
    slots = args.nodes * args.gpus
    fake_nodes.ensure(kc, args.nodes, args.gpus, version=pins()["kwok_version"])
    work = Path(tempfile.mkdtemp(prefix="kubesweep-bench-makespan-"))
    results = {}
    try:
        for policy in args.policies.split(","):
            results[policy] = run_policy(policy, args.trials, slots, kc, work)
    finally:
        fake_nodes.ensure(kc, 0, args.gpus, version=pins()["kwok_version"])
        shutil.rmtree(work, ignore_errors=True)
    print(f"makespan benchmark: {args.trials:,} trials of {DURATIONS} s on {args.nodes} kwok nodes × {args.gpus} GPUs "
          f"= {slots} slots")
    print(f"{'refill':<8}{'finished':>9}{'makespan s':>12}{'ideal s':>9}{'ratio':>7}{'idle s/trial':>14}{'client CPU':>12}")
    for policy, r in results.items():
        print(f"{policy:<8}{r['finished']:>9}{r['makespan']:>12.1f}{r['ideal']:>9.1f}{r['ratio']:>7.2f}"
              f"{r['idle_per_trial']:>14.2f}{r['cpu_pct']:>11.1f}%")
    if "trial" in results and "batch" in results:
        print(f"trial refill vs batch refill: {results['batch']['makespan'] / results['trial']['makespan']:.2f}x shorter makespan")
    return 0


if __name__ == "__main__":
    sys.exit(main())
