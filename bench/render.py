#!/usr/bin/env python3
"""Render + validate benchmark: how fast kubesweep turns a sweep into Job manifests.

Every figure is measured in this one run, each phase in a fresh process (so peak RSS is its own):

  plan+render   parse, expand, validate the Job shape once and each trial's values, and render
                every manifest's YAML in memory (what `invoke render` does minus the disk)
  +write        the same, writing jobs/<experiment>/batch-NNN/<trial>.yaml and plan.json
  reference     the naive way on a sample: build each Job as a dict, validate it with
                kubernetes-validate's compiled schema, dump it with yaml.safe_dump (libyaml)

and prints trials/s, peak RSS and the ratio of the fast path to the reference.

    python bench/render.py --trials 100000
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GRID = """\
name: bench
image: localhost:5000/kubesweep/mnist:latest
command: [python3, /app/train.py, "${{epochs}}", "${{optimizer}}", "${{dropout}}", "--lr=${{lr}}"]
parameters:
  epochs: {{min: 1, max: {epochs}}}
  optimizer: [adam, sgd, rmsprop, adagrad, momentum]
  dropout: {{min: 0.0, max: 0.9, step: 0.1}}
  lr: {{min: 1e-5, max: 1e-1, scale: log, count: 20}}
search: {{trialLimit: {trials}, trials: {trials}}}
batchSize: 100
objective: {{metric: Test accuracy}}
resources: {{cpu: "1", memory: 512Mi}}
env: {{RUN_LABEL: "lr-${{lr}}"}}
nodeSelector: {{nvidia.com/gpu.present: "true"}}
tolerations: [{{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}}]
"""


def _grid(workdir: Path, trials: int) -> Path:
    path = workdir / "grid.yaml"
    epochs = max(1, -(-trials // 1000))  # 5 × 10 × 20 = 1000 combinations per epoch value
    path.write_text(GRID.format(trials=trials, epochs=epochs))
    return path


def _phase(name: str, grid: Path, out: Path, sample: int) -> dict[str, float]:
    from kubesweep.plan import job as manifest
    from kubesweep.plan import planner as render
    from kubesweep.k8s import jobschema as validation

    started = time.perf_counter()
    if name == "reference":
        import yaml

        plan = render.plan(grid)
        trials = plan.trials[:sample]
        validator = validation.job_validator()
        started = time.perf_counter()
        for t in trials:
            obj = manifest.build_job(plan.experiment, t)
            validator.validate(obj)
            yaml.safe_dump(obj, sort_keys=False)
        n = len(trials)
    else:
        plan = render.plan(grid)
        n = len(plan.trials)
        if name == "plan+render":
            for _rel, _data in render._files(plan, "fast"):
                pass
        else:
            render.write(plan, out)
    seconds = time.perf_counter() - started
    return {"trials": n, "seconds": seconds, "rate": n / seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=100_000)
    ap.add_argument("--sample", type=int, default=2_000, help="trials for the naive reference")
    ap.add_argument("--out", help="directory for +write (default: a temporary directory, removed after)")
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--grid", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        result = _phase(args.phase, Path(args.grid), Path(args.out), args.sample)
        print(json.dumps(result))
        return 0

    work = Path(tempfile.mkdtemp(prefix="kubesweep-bench-"))
    out = Path(args.out) if args.out else work / "jobs"
    try:
        grid = _grid(work, args.trials)
        results = {}
        for phase in ("plan+render", "+write", "reference"):
            proc = subprocess.run(
                [sys.executable, __file__, "--phase", phase, "--grid", str(grid), "--out", str(out),
                 "--sample", str(args.sample)],
                capture_output=True, text=True, check=True,
            )
            results[phase] = json.loads(proc.stdout.strip().splitlines()[-1])
        files = sum(1 for _ in out.rglob("*.yaml")) if out.exists() else 0
    finally:
        if not args.out:
            shutil.rmtree(work, ignore_errors=True)

    print(f"render benchmark: {args.trials:,} trials, reference sample {args.sample:,}, written to {out} ({files:,} files)")
    print(f"{'phase':<14}{'trials':>10}{'seconds':>10}{'trials/s':>12}{'peak RSS MB':>14}")
    for phase, r in results.items():
        print(f"{phase:<14}{r['trials']:>10,}{r['seconds']:>10.2f}{r['rate']:>12,.0f}{r['peak_rss_mb']:>14.0f}")
    fast, ref = results["plan+render"]["rate"], results["reference"]["rate"]
    print(f"ratio plan+render / reference (per trial): {fast / ref:.1f}x")
    print(f"ratio +write / plan+render: {results['+write']['rate'] / fast:.2f} (the disk's share)")
    target = results["plan+render"]["rate"] >= 20_000 and results["plan+render"]["peak_rss_mb"] <= 500
    print(f"target >= 20,000 trials/s and <= 500 MB for plan+render: {'met' if target else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
