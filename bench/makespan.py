#!/usr/bin/env python3
"""Scheduling benchmark: N trials of mixed durations on kwok GPU nodes, against the ideal.

kwok plays kubelet for fake nodes advertising nvidia.com/gpu; each trial asks for one GPU and
"runs" for its own duration (kwok's pod-complete stage reads it from the pod's annotation). The
real API server, scheduler and Job controller do the rest. kwok's pods print nothing, so each
trial's log read (which the client still makes, as for a real trial) finds no metric and the
trial ends failed with MetricMissing, as a real one that printed none would: the `finished`
column counts trials that ended either way, and no maxFailedTrials is set. Both refill policies
run in this one invocation, side by side:

  trial   a freed slot gets the next trial at once (kubesweep's default)
  batch   the next batch directory starts when the whole previous one has finished
  longest trial refill, with the plan ordered longest first (search.longestFirst: [duration]):
          what a sweep reaches when a parameter tells which trials run longest
  queued  longest, with batchSize above the slots (--queue more): those wait at the scheduler,
          which places one the moment a slot frees, before the client has even seen the trial
          finish. Not run by default: it lost to plain longest (docs/benchmarks.md)

Printed per policy: makespan, the ideal bound max(sum of durations / slots, longest trial), their
ratio, the ratio to a zero-overhead list schedule of the same trials in the same order (what any
client that does not know durations in advance could reach at best: the last trials started
set a tail the ideal bound does not have), the mean idle time of a slot (all slot-seconds not spent running, per trial: start-up and
tail included), the refill gap (a slot's idle time between one trial finishing and the next
running, from the API objects' timestamps as the sweep recorded them), the client's CPU use while watching, and where a
trial's time outside its run went; then the same as the client saw it on its own clock (start-up,
refill mean and worst, tail), the machine's busy cores (and what the hypervisor stole), the
API server's count of the writes each trial cost the cluster, by resource, the CPU each
control-plane process spent per trial, and how long each waited for a core (the kernel's
run-queue delay; for the API server also its goroutines' wait inside Go's scheduler), with the
busy cores of the refill phase apart from the whole run's (bench/load.py).

Durations are interleaved in plan order (30, 45, 60, 75, 90, 30, ... s by default), so slots
free up continuously as they would with real trials. In a `longest` run, though, each wave of 400
equal trials ends within the same second, and the cluster takes 400 ends and 400 starts at once,
four times. `--spread 0.1` gives each trial a duration of its own, up to ±10% off its level
(spread evenly, not in plan order), as two real trials' differ even with the same parameters:
the ends of a wave then come over several seconds instead. That was measured slower, not faster,
on the 2-core VM (docs/benchmarks.md), so the default stays exact. `--durations 2,3,5,8,13` is
the stress case: 400 slots of ~6 s trials ask the cluster for ~64 trial starts a second.

    python bench/makespan.py --trials 2000 --nodes 50 --gpus 8     (needs `invoke cluster`)
"""

from __future__ import annotations

import argparse
import heapq
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from rich.console import Console  # noqa: E402

from kubesweep.local import fake_nodes
from kubesweep.k8s import client as kube
from kubesweep.run import lifecycle
from kubesweep.cli import live
from kubesweep.plan import planner as render
from kubesweep.run import runner  # noqa: E402
from kubesweep.local.cluster import default_inventory, kubeconfig_path  # noqa: E402
from kubesweep.run.trialstate import FINAL, RUNNING, SUBMITTED  # noqa: E402
from kubesweep.k8s.versions import pins  # noqa: E402
from load import Sampler, Timed, api_counters, per_trial, sched_latency  # noqa: E402 - bench/load.py

DURATIONS = [30, 45, 60, 75, 90]
SPREAD = 0.0
CONTROL_PLANE = ("apiserver", "etcd", "controller-manager", "scheduler", "kwok")
GRID = """\
name: bench-{policy}
image: localhost:5000/kubesweep/fake:1
command: [train, "${{duration}}", "${{rep}}"]
parameters:
  rep: {reps}
  duration: {durations}
search: {{trialLimit: 100000{order}}}
batchSize: {batch}
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


class Timeline:
    """What the client saw and when (monotonic seconds since ``t0``, the sweep's start): each
    trial's first running, and the moment its pod's end was seen (or, for a trial that ended
    without that, its result). Millisecond resolution, unlike the API objects' timestamps."""

    def __init__(self, forward: Any, t0: float) -> None:
        self.forward, self.t0 = forward, t0
        self.running: dict[str, float] = {}
        self.ended: dict[str, float] = {}

    def change(self, rec: Any) -> None:
        t = time.monotonic() - self.t0
        if rec.state == RUNNING:
            self.running.setdefault(rec.name, t)
        if rec.state in FINAL or (rec.end and rec.state in (SUBMITTED, RUNNING)):
            self.ended.setdefault(rec.name, t)
        self.forward(rec)

    def refill_phase(self) -> tuple[float, float]:
        """(start, end) in monotonic time of the refill phase, from the first trial's end seen to
        the last trial seen running: when the cluster turns ends into starts. (The first wave, in
        which nothing ends, and the tail would dilute what the machine's cores did then.)"""
        if not self.ended or not self.running:
            return self.t0, self.t0
        return self.t0 + min(self.ended.values()), self.t0 + max(self.running.values())

    def phases(self, wall: float, slots: int) -> dict[str, float]:
        """Where the makespan beyond the runs went, as the client saw it: start-up (until every slot
        had its first trial running), refill (a finished trial seen -> the trial taking its slot
        seen running; mean and worst), and the tail (the last pod's end seen -> the sweep done)."""
        starts, ends = sorted(self.running.values()), sorted(self.ended.values())
        refill = [starts[slots + k] - ends[k] for k in range(min(len(ends), len(starts) - slots))]
        return {"start-up": starts[min(slots, len(starts)) - 1] if starts else float("nan"),
                "refill mean": sum(refill) / len(refill) if refill else float("nan"),
                "refill worst": max(refill) if refill else float("nan"),
                "tail": wall - ends[-1] if ends else float("nan")}


def trial_durations(levels: list[float], trials: int, spread: float) -> tuple[list[float], int]:
    """The grid's duration values and its repetitions: the levels themselves, each repeated, when
    ``spread`` is 0; otherwise one distinct value per trial, level × (1 ± up to spread), levels
    interleaved in plan order and each level's offsets spread evenly over its range in golden-ratio
    order (so neither plan order nor a level's trials run from short to long)."""
    reps = max(1, trials // len(levels))
    if not spread:
        return list(levels), reps
    values = [round(level * (1 + spread * (2 * ((i * 0.6180339887498949) % 1) - 1)), 3)
              for i in range(reps) for level in levels]
    if len(set(values)) != len(values):
        raise SystemExit(f"--spread {spread}: two trials would get the same duration (levels overlap, or "
                         f"too many trials for millisecond steps); use a smaller spread")
    return values, 1


def run_policy(policy: str, trials: int, slots: int, levels: list[float], spread: float, kc: Path,
               work: Path, queue: int) -> dict[str, Any]:
    durations, reps = trial_durations(levels, trials, spread)
    grid = work / f"{policy}.yaml"
    order = ", longestFirst: [duration]" if policy in ("longest", "queued") else ""
    batch = slots + queue if policy == "queued" else slots
    grid.write_text(GRID.format(policy=policy, durations=durations, reps=list(range(1, reps + 1)), batch=batch, order=order))
    plan = render.plan(grid)
    render.write(plan, work / "jobs")
    total = sum(t.params["duration"] for t in plan.trials)
    ideal = max(total / slots, max(durations))
    bound = list_schedule([t.params["duration"] for t in plan.trials], slots,
                          [t.batch for t in plan.trials] if policy == "batch" else None)
    # what `invoke sweep` shows on a terminal, drawn into /dev/null: its cost is the client's too
    view = live.View(plan.experiment.name, "acc", len(plan.trials),
                     console=Console(file=open(os.devnull, "w"), force_terminal=True, width=160))
    c = kube.clients(kc)
    # a run that died (or was interrupted) left its Jobs, under the trial names this run derives:
    # the sweep would re-attach to them instead of starting its own
    _clean(c, plan.experiment.name)
    counters = api_counters(c)
    cpu0, t0 = cpu_seconds(), time.monotonic()
    timeline = Timeline(view.change, t0)
    refill = "batch" if policy == "batch" else "trial"
    sweep = runner.Sweep(plan, work / "jobs", work / "results", kubeconfig=kc, refill=refill, on_change=timeline.change)
    with view, Timed() as machine, Sampler() as sampler:
        outcome = sweep.run()
    wall = time.monotonic() - t0
    cpu = cpu_seconds() - cpu0
    counters_after = api_counters(c)
    goroutine_wait = sched_latency(counters, counters_after)
    writes = per_trial(counters, counters_after, len(plan.trials))
    n = len(plan.trials)
    refill_phase = timeline.refill_phase()
    idle = (wall * slots - total) / n  # slot-seconds not spent running, per trial started
    done = sum(1 for r in outcome.records.values() if r.state in ("succeeded", "failed"))
    stages, gap, replayed = breakdown(c, plan.experiment.namespace, plan.experiment.name, slots, outcome.records)
    _clean(c, plan.experiment.name)  # the next policy must not share the machine with this cleanup
    return {"trials": n, "finished": done, "makespan": wall, "ideal": ideal, "ratio": wall / ideal,
            "list": bound, "list_ratio": wall / bound,
            "idle_per_trial": idle, "gap": gap, "cpu_pct": 100 * cpu / wall, "stages": stages, "replayed": replayed,
            "phases": timeline.phases(wall, slots), "cores": machine.cores, "stolen": machine.stolen,
            "refill_phase": refill_phase, "refill_cores": sampler.window(*refill_phase), "writes": writes,
            "procs": machine.per(n, CONTROL_PLANE), "waited": machine.waited(CONTROL_PLANE),
            "goroutine_wait": goroutine_wait}


def _clean(c: kube.Clients, experiment: str) -> None:
    """Delete the experiment's Jobs and pods, if any, and wait (up to 10 min) until they are gone."""
    if not lifecycle.remaining(c, experiment):
        return
    lifecycle.clean(c, experiment)
    deadline = time.monotonic() + 600
    while lifecycle.remaining(c, experiment) and time.monotonic() < deadline:
        time.sleep(2)


def list_schedule(durations: list[float], slots: int, batches: list[int] | None = None) -> float:
    """Makespan of a zero-overhead client: each trial, in order, starts on the first free slot
    (with batches, a batch starts when the previous one has finished)."""
    if batches is not None:
        groups: dict[int, list[float]] = {}
        for d, b in zip(durations, batches):
            groups.setdefault(b, []).append(d)
        return sum(list_schedule(g, slots) for g in groups.values())
    free = [0.0] * slots
    heapq.heapify(free)
    end = 0.0
    for d in durations:
        t = heapq.heappop(free) + d
        heapq.heappush(free, t)
        end = max(end, t)
    return end


def _ts(value: str | None) -> float | None:
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


def breakdown(c: kube.Clients, namespace: str, experiment: str, slots: int,
              records: dict[str, Any]) -> tuple[dict[str, float], float, int]:
    """Where a trial's time outside its own run goes, from the API objects' timestamps (1 s
    resolution, so only the means over many trials mean anything), the mean refill gap (the k-th
    trial to finish frees the slot the (slots + k)-th trial to run takes), and how many pods kwok
    rewrote after they had finished.

    A trial's start and end are the pod's startTime and container finishedAt as the sweep
    recorded them when it saw the pod run and succeed (``records``), not as the pod reads now:
    under load kwok sometimes replays its completion stage on a pod that has already succeeded,
    one trial duration after the first, and its template stamps a new finishedAt (as far as
    kwok v0.8.0's pod_controller.go shows: an event that still shows the pod Running reaches
    kwok after the first completion has left its queue, so the stage is queued again and later
    played on that stale copy). Read afterwards, such a pod seems to have run a duration longer, after
    its Job was already complete, and its slot seems to have been taken before it was free."""
    sel = {"labelSelector": f"kubesweep.io/experiment={experiment}"}
    jobs = {j["metadata"]["name"]: j for j in kube.request(c, "GET", f"/apis/batch/v1/namespaces/{namespace}/jobs", query=sel)["items"]}
    spans: dict[str, list[float]] = {"job created -> pod created": [], "pod created -> scheduled": [],
                                     "scheduled -> running": [], "finished -> Job complete": []}
    starts: list[float] = []
    ends: list[float] = []
    replayed = 0
    for pod in kube.request(c, "GET", f"/api/v1/namespaces/{namespace}/pods", query=sel)["items"]:
        name = pod["metadata"].get("labels", {}).get("job-name", "")
        job, rec = jobs.get(name), records.get(name)
        if not job:
            continue
        conds = {x["type"]: _ts(x.get("lastTransitionTime")) for x in pod["status"].get("conditions") or []}
        term = [((cs.get("state") or {}).get("terminated") or {}).get("finishedAt") for cs in pod["status"].get("containerStatuses") or []]
        finished = next((t for t in term if t), None)
        if rec is not None and rec.end and finished and finished != rec.end:
            replayed += 1
        done = [_ts(x.get("lastTransitionTime")) for x in (job.get("status") or {}).get("conditions") or [] if x["type"] == "Complete"]
        points = [_ts(job["metadata"]["creationTimestamp"]), _ts(pod["metadata"]["creationTimestamp"]), conds.get("PodScheduled"),
                  _ts((rec.start if rec is not None else None) or pod["status"].get("startTime")),
                  _ts((rec.end if rec is not None else None) or finished), next(iter(done), None)]
        for (span, vals), a, b in zip(list(spans.items())[:3], points[:3], points[1:4]):
            if a is not None and b is not None:
                vals.append(b - a)
        if points[4] is not None and points[5] is not None:
            spans["finished -> Job complete"].append(points[5] - points[4])
        if points[3] is not None and points[4] is not None:
            starts.append(points[3])
            ends.append(points[4])
    starts.sort()
    ends.sort()
    gaps = [starts[slots + k] - ends[k] for k in range(len(starts) - slots)]
    return ({k: sum(v) / len(v) for k, v in spans.items() if v}, (sum(gaps) / len(gaps) if gaps else float("nan")),
            replayed)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=2000)
    ap.add_argument("--nodes", type=int, default=50)
    ap.add_argument("--gpus", type=int, default=8)
    ap.add_argument("--policies", default="trial,batch,longest",
                    help="any of trial, batch, longest, queued (queued lost to longest: docs/benchmarks.md)")
    ap.add_argument("--queue", type=int, default=None, help="queued: trials in flight beyond the slots (default: 5%% of the slots)")
    ap.add_argument("--durations", default=",".join(map(str, DURATIONS)), help="trial duration levels in seconds, interleaved")
    ap.add_argument("--spread", type=float, default=SPREAD,
                    help="each trial's duration differs from its level by up to this fraction (0: exact levels, equal waves)")
    ap.add_argument("--kubeconfig", default=None)
    args = ap.parse_args()
    kc = Path(args.kubeconfig) if args.kubeconfig else kubeconfig_path(default_inventory())
    if not kc.exists():
        kc = kubeconfig_path(ROOT / "inventory" / "local")
    slots = args.nodes * args.gpus
    durations = [float(d) if "." in d else int(d) for d in args.durations.split(",")]
    if not 0 <= args.spread < 1:
        ap.error("--spread must be at least 0 and below 1")
    queue = args.queue if args.queue is not None else max(1, slots // 20)
    fake_nodes.ensure(kc, args.nodes, args.gpus, version=pins()["kwok_version"])
    work = Path(tempfile.mkdtemp(prefix="kubesweep-bench-makespan-"))
    results = {}
    try:
        for policy in args.policies.split(","):
            results[policy] = run_policy(policy, args.trials, slots, durations, args.spread, kc, work, queue)
    finally:
        fake_nodes.ensure(kc, 0, args.gpus, version=pins()["kwok_version"])
        shutil.rmtree(work, ignore_errors=True)
    spread = f", each within ±{100 * args.spread:g}%" if args.spread else " exactly"
    print(f"makespan benchmark: {args.trials:,} trials of {durations} s{spread} on {args.nodes} kwok nodes × {args.gpus} GPUs "
          f"= {slots} slots")
    print(f"{'refill':<8}{'finished':>9}{'makespan s':>12}{'ideal s':>9}{'ratio':>7}{'list s':>8}{'ratio':>7}"
          f"{'idle s/trial':>14}{'refill gap s':>14}{'client CPU':>12}")
    for policy, r in results.items():
        print(f"{policy:<8}{r['finished']:>9}{r['makespan']:>12.1f}{r['ideal']:>9.1f}{r['ratio']:>7.2f}"
              f"{r['list']:>8.1f}{r['list_ratio']:>7.2f}{r['idle_per_trial']:>14.2f}{r['gap']:>14.2f}{r['cpu_pct']:>11.1f}%")
    for policy, r in results.items():
        print(f"{policy}: mean seconds per trial, from API timestamps: "
              + ", ".join(f"{k} {v:.2f}" for k, v in r["stages"].items())
              + f" ({r['replayed']} pods' end rewritten later by kwok, their first end used)")
    for policy, r in results.items():
        print(f"{policy}: as the client saw it: " + ", ".join(f"{k} {v:.2f} s" for k, v in r["phases"].items()))
        (start, end), (busy, stolen, full) = r["refill_phase"], r["refill_cores"]
        print(f"{policy}: the machine's cores busy {r['cores']:.2f} of {os.cpu_count()} "
              f"({r['stolen']:.2f} stolen by the hypervisor); from the first trial's end to the last start "
              f"({end - start:.0f} s) {busy:.2f} ({stolen:.2f} stolen), at least 90% of them busy in "
              f"{100 * full:.0f}% of its seconds; {r['writes']}")
        print(f"{policy}: control-plane CPU per trial, ms: {r['procs']}")
        print(f"{policy}: waited for a core, per timeslice: {r['waited']}; "
              f"the API server's goroutines waited {r['goroutine_wait']:.2f} ms on average to run")
    if "trial" in results and "batch" in results:
        print(f"trial refill vs batch refill: {results['batch']['makespan'] / results['trial']['makespan']:.2f}x shorter makespan")
    if "trial" in results and "longest" in results:
        print(f"longest first vs plan order: {results['trial']['makespan'] / results['longest']['makespan']:.2f}x shorter makespan")
    if "longest" in results and "queued" in results:
        print(f"{queue} trials queued at the scheduler vs none: "
              f"{results['longest']['makespan'] / results['queued']['makespan']:.3f}x shorter makespan")
    return 0


if __name__ == "__main__":
    sys.exit(main())
