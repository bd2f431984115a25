#!/usr/bin/env python3
"""Two teams sharing kwok GPU nodes: Kueue's quotas and borrowing against each sweep throttling
itself, side by side in one run.

Two namespaces (team a, team b) each run one sweep of --trials trials of one GPU each on
--nodes kwok nodes × --gpus fake GPUs (bench/makespan.py's workload: kwok completes each pod after
the duration in its annotation; the real API server, scheduler, Job controller and Kueue do the
rest). Each team's quota is half the GPUs. Both sweeps start together, each in a process of its
own, through kubesweep's runner as `kubesweep sweep` runs them. Team b's trials are shorter
(--b-scale × team a's durations), so b runs out of work first and a is left alone. Arms:

  kueue     a ResourceFlavor for the fake nodes, a ClusterQueue per team (nominal quota half the
            GPUs, cohort shared, borrowingLimit the other half; cpu and memory covered with room to
            spare, so GPUs decide), a LocalQueue per namespace: the sweeps find it and create their
            Jobs suspended for Kueue to admit, with batchSize --kueue-batch (a cap, not the scheduler)
  kueue-reclaim
            kueue, and each ClusterQueue may take back its nominal quota from the other team's
            borrowed trials (preemption.reclaimWithinCohort: Any): a trial so preempted waits in the
            queue again and starts over (its lost run counts as used GPU-seconds, and is printed)
  kueue-tuned
            kueue, with Kueue's controller reconfigured for the arm through the kueue role
            (kueue_controller_config: --kueue-tuned, by default a client rate limit of 500
            requests a second, bursts of 1000, against upstream's 50 and 100) and put back as the
            inventory has it afterwards: whether Kueue's own API rate is what leaves admitted GPUs idle
  throttle  no queues: each sweep keeps batchSize = its quota trials in flight itself (what
            kubesweep did before Kueue)

Measured per arm from the trials' pod start and finish times as the sweeps recorded them (the API
objects' timestamps, 1 s resolution):

  utilisation   GPU-seconds used / (GPUs × seconds) from the first trial's start until the first
                team's last trial ended (both teams had work)
  share         each team's GPU-seconds / both teams' while both were busy: from the first start
                until the first team's last trial started (each still had trials waiting); and each
                team's GPU-seconds against its quota × that time ("of quota")
  borrowing     from the moment team b first left a GPU it would not use again (its first trial to
                end after its last trial started) until team a held more than its quota; "never"
                when it did not (the throttle arm cannot: its batchSize is its quota)
  alone         team a's GPUs held / all GPUs from b's last trial's end until a's last trial started

Goals (the issue): utilisation ≥ 95 %, shares within 5 % of the quota's while both are busy,
borrowing within 10 s. Each arm deletes what it made (namespaces, queues, flavor) before the next;
the fake nodes are removed at the end (other tests sum the nodes' GPUs). Hold the cluster lock:

    flock /tmp/kubesweep-cluster.lock python bench/teams.py --arms kueue,kueue-reclaim,throttle --kueue-batch 400
    flock /tmp/kubesweep-cluster.lock python bench/teams.py --nodes 4 --gpus 2 --trials 10 --durations 3,4,5,6,7

(the first needs `invoke cluster --inventory inventory/local`, which installs Kueue; about 22
minutes on the 2-core VM; the second is the toy run the cluster test makes)
"""

from __future__ import annotations

import argparse
import bisect
import os
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from load import Timed  # noqa: E402 - bench/load.py

DURATIONS = [30, 45, 60, 75, 90]
TEAMS = ("a", "b")
ARMS = ("kueue", "kueue-reclaim", "kueue-tuned", "throttle")
TUNED = '{"clientConnection": {"qps": 500, "burst": 1000}}'

DEFAULT_ARMS = ("kueue", "throttle")
GPU = "nvidia.com/gpu"
KUEUE = "/apis/kueue.x-k8s.io/v1beta2"
BENCH_LABEL = "kubesweep.io/bench"  # on everything this benchmark creates, so a rerun finds leftovers
BENCH = "teams"
COHORT = "bench-teams"
FLAVOR = "bench-teams-kwok"
QUEUE = "bench"
# what one trial asks for besides its GPU (makespan's); the ClusterQueues cover cpu and memory
# with a whole CPU and 1 Gi per GPU, so only GPUs decide admission
CPU, MEMORY = "100m", "64Mi"
GRID = """\
name: bench-teams-{arm}-{team}
namespace: {namespace}
image: localhost:5000/kubesweep/fake:1
command: [train, "${{duration}}", "${{rep}}"]
parameters:
  rep: {reps}
  duration: {durations}
search: {{trialLimit: 100000}}
batchSize: {batch}
objective: {{metric: acc}}
resources: {{cpu: {cpu}, memory: {memory}, {gpu}: 1}}
nodeSelector: {{nvidia.com/gpu.present: "true"}}
tolerations: [{{key: kwok.x-k8s.io/node, operator: Exists, effect: NoSchedule}}]
annotations:
  pod-complete.stage.kwok.x-k8s.io/delay: "${{duration}}s"
  pod-complete.stage.kwok.x-k8s.io/jitter-delay: "${{duration}}s"
"""


def namespace(arm: str, team: str) -> str:
    return f"bench-{arm}-{team}"


def levels(durations: list[float], scale: float) -> list[float]:
    """The duration levels scaled (team b's), as whole seconds where they are whole."""
    out = []
    for d in durations:
        v = round(d * scale, 3)
        out.append(int(v) if v == int(v) else v)
    return out


def grid(arm: str, team: str, trials: int, durations: list[float], batch: int) -> str:
    """The team's sweep file: ``trials`` trials (rounded down to whole rounds of the levels, at
    least one round), the levels interleaved in plan order, one GPU each."""
    reps = max(1, trials // len(durations))
    return GRID.format(arm=arm, team=team, namespace=namespace(arm, team), reps=list(range(1, reps + 1)),
                       durations=durations, batch=batch, cpu=CPU, memory=MEMORY, gpu=GPU)


# ------------------------------------------------------------------------------ Kueue objects


def kueue_objects(arm: str, quota: int, reclaim: bool = False) -> list[dict[str, Any]]:
    """The flavor for the fake GPU nodes and, per team, its ClusterQueue (cohort shared, borrowing
    up to the other team's quota) and LocalQueue, as the teams role makes them (one resource group
    of cpu, memory and GPUs, the namespace selected by name)."""
    labels = {BENCH_LABEL: BENCH}
    from kubesweep.local import fake_nodes

    flavor = {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ResourceFlavor",
              "metadata": {"name": FLAVOR, "labels": labels},
              "spec": {"nodeLabels": {fake_nodes.LABEL: "true"},
                       "nodeTaints": [{"key": fake_nodes.ANNOTATION, "value": "fake", "effect": "NoSchedule"}]}}
    out = [flavor]
    for team in TEAMS:
        ns = namespace(arm, team)
        resources = [{"name": "cpu", "nominalQuota": str(quota), "borrowingLimit": str(quota)},
                     {"name": "memory", "nominalQuota": f"{quota}Gi", "borrowingLimit": f"{quota}Gi"},
                     {"name": GPU, "nominalQuota": str(quota), "borrowingLimit": str(quota)}]
        preemption = {"preemption": {"reclaimWithinCohort": "Any"}} if reclaim else {}
        out.append({"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ClusterQueue",
                    "metadata": {"name": ns, "labels": labels},
                    "spec": {**preemption, "cohortName": COHORT,
                             "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
                             "resourceGroups": [{"coveredResources": ["cpu", "memory", GPU],
                                                 "flavors": [{"name": FLAVOR, "resources": resources}]}]}})
        out.append({"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue",
                    "metadata": {"name": QUEUE, "namespace": ns, "labels": labels},
                    "spec": {"clusterQueue": ns}})
    return out


def _collection(obj: dict[str, Any]) -> str:
    kind = {"ResourceFlavor": "resourceflavors", "ClusterQueue": "clusterqueues", "LocalQueue": "localqueues"}[obj["kind"]]
    ns = obj["metadata"].get("namespace")
    return f"{KUEUE}{f'/namespaces/{ns}' if ns else ''}/{kind}"


def setup(c: Any, arm: str, quota: int) -> None:
    """The arm's namespaces and, for the kueue arm, its flavor and queues; waits until Kueue
    reports both ClusterQueues active."""
    from kubesweep.k8s import client as kube

    for team in TEAMS:
        kube.request(c, "POST", "/api/v1/namespaces",
                     body={"apiVersion": "v1", "kind": "Namespace",
                           "metadata": {"name": namespace(arm, team), "labels": {BENCH_LABEL: BENCH}}})
    if not arm.startswith("kueue"):
        return
    for obj in kueue_objects(arm, quota, reclaim=arm == "kueue-reclaim"):
        kube.request(c, "POST", _collection(obj), body=obj)
    deadline = time.monotonic() + 120
    while True:
        cqs = [kube.request(c, "GET", f"{KUEUE}/clusterqueues/{namespace(arm, t)}") for t in TEAMS]
        active = [any(x.get("type") == "Active" and x.get("status") == "True"
                      for x in (q.get("status") or {}).get("conditions") or []) for q in cqs]
        if all(active):
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"Kueue did not make the ClusterQueues active in 120 s: {[q.get('status') for q in cqs]}")
        time.sleep(1)


def cleanup(c: Any, timeout: float = 900) -> list[str]:
    """Delete every namespace, ClusterQueue and flavor this benchmark made (any run's, found by
    label) and wait until they are gone: namespaces first (their Jobs, Workloads and LocalQueues
    with them), then the ClusterQueues and the flavor, which Kueue keeps while in use. Returns what
    was deleted."""
    from kubernetes.client.exceptions import ApiException

    from kubesweep.k8s import client as kube

    sel = {"labelSelector": f"{BENCH_LABEL}={BENCH}"}
    gone: list[str] = []
    collections = ["/api/v1/namespaces", f"{KUEUE}/clusterqueues", f"{KUEUE}/resourceflavors"]
    for collection in collections:
        try:
            items = kube.request(c, "GET", collection, query=sel).get("items") or []
        except ApiException as exc:
            if exc.status == 404:  # no Kueue on this cluster
                continue
            raise
        for item in items:
            name = item["metadata"]["name"]
            try:
                kube.request(c, "DELETE", f"{collection}/{name}", body={"propagationPolicy": "Background"})
            except ApiException as exc:
                if exc.status != 404:
                    raise
            gone.append(f"{collection.rsplit('/', 1)[1]}/{name}")
        deadline = time.monotonic() + timeout
        while kube.request(c, "GET", collection, query=sel).get("items"):
            if time.monotonic() > deadline:
                raise SystemExit(f"{collection}: still there {timeout:.0f} s after being deleted")
            time.sleep(2)
    return gone


# ------------------------------------------------------------------------------ one team's sweep


def run_team(arm: str, team: str, grid_text: str, work: str, kubeconfig: str, delay: float) -> dict[str, Any]:
    """One team's sweep, in a process of its own: the queue chosen as `kubesweep sweep` chooses it
    (the namespace's LocalQueue, if any), then the runner. Returns its records and what it said."""
    from kubesweep import sweep
    from kubesweep.plan import planner as render
    from kubesweep.run import kueue, runner
    from kubesweep.run.trialstate import RUNNING, SUBMITTED

    time.sleep(delay)
    folder = Path(work) / f"{arm}-{team}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "sweep.yaml"
    path.write_text(grid_text)
    plan = render.plan(path)
    notes: list[str] = []
    note = sweep.with_queue(plan, sweep.Target(kubeconfig))
    if note:
        notes.append(note)
    sweep.write(plan, folder / "jobs")
    running: dict[str, str] = {}            # trial -> its run's start
    evicted: list[tuple[str, str, str]] = []  # (trial, start, seen evicted) of each run the sweep saw evicted

    def change(rec: Any) -> None:
        if rec.state == RUNNING and rec.start:
            running[rec.name] = rec.start
        elif rec.state == SUBMITTED and rec.reason == kueue.EVICTED and rec.name in running:
            evicted.append((rec.name, running.pop(rec.name), runner.now()))

    sweeper = runner.Sweep(plan, folder / "jobs", folder / "results", kubeconfig=kubeconfig, notice=notes.append,
                           on_change=change)
    outcome = sweeper.run()
    # A run that was really evicted ended with its pod; the trial's next run is a new pod with a
    # later start. A run whose pod went on (the trial's final start is that run's) was not: the
    # sweep took a stale suspended Job event for an eviction.
    final = {r.name: r.start for r in outcome.records.values()}
    lost = [(s, e) for n, s, e in evicted if final.get(n) != s]
    spurious = len(evicted) - len(lost)
    return {"queue": plan.experiment.queue, "notes": notes, "seconds": outcome.seconds, "created": outcome.created,
            "evictions": len(lost), "spurious": spurious, "lost": lost,
            "records": [{"name": r.name, "state": r.state, "start": r.start, "end": r.end, "reason": r.reason}
                        for r in outcome.records.values()]}


def where_time_went(c: Any, arm: str, records: dict[str, list[dict[str, Any]]]) -> tuple[int, dict[str, Any]]:
    """How many of the arm's Jobs carry Kueue's queue label (all in a kueue arm, none in the
    throttle arm), and where a trial's time before its run went, from the API objects'
    timestamps: how long the sweeps took to create all their Jobs, and the median and 95th
    percentile of Job created -> Workload created (Kueue's job controller) -> quota reserved
    (Kueue's scheduler) -> the pod running (the Job unsuspended, the pod created, scheduled, run
    by kwok), or Job created -> pod running without Kueue."""
    from kubesweep.k8s import client as kube
    from kubesweep.run.kueue import owner_job
    from kubesweep.spec.model import QUEUE_LABEL

    labelled = 0
    created: dict[str, float] = {}
    steps: dict[str, list[float]] = {}
    for team in TEAMS:
        ns = namespace(arm, team)
        for job in kube.request(c, "GET", kube.path("jobs", ns)).get("items") or []:
            labelled += QUEUE_LABEL in ((job["metadata"].get("labels")) or {})
            created[job["metadata"]["name"]] = ts(job["metadata"]["creationTimestamp"]) or 0.0
        started = {r["name"]: ts(r.get("start")) for r in records[team]}
        if labelled:
            for wl in kube.request(c, "GET", kube.path("workloads", ns)).get("items") or []:
                job = owner_job(wl)
                reserved = next((ts(x.get("lastTransitionTime")) for x in (wl.get("status") or {}).get("conditions") or []
                                 if x.get("type") == "QuotaReserved" and x.get("status") == "True"), None)
                made = ts(wl["metadata"]["creationTimestamp"])
                if job in created and made is not None:
                    steps.setdefault("Job -> Workload", []).append(made - created[job])
                    if reserved is not None:
                        steps.setdefault("Workload -> quota reserved", []).append(reserved - made)
                        if started.get(job) is not None:
                            steps.setdefault("reserved -> running", []).append(started[job] - reserved)
        for name, start in started.items():
            if start is not None and name in created:
                steps.setdefault("Job -> running", []).append(start - created[name])
    out: dict[str, Any] = {"Jobs created over": (max(created.values()) - min(created.values())) if created else float("nan")}
    for step, values in steps.items():
        values.sort()
        out[step] = (values[len(values) // 2], values[min(len(values) - 1, int(0.95 * len(values)))])
    return labelled, out


# ------------------------------------------------------------------------------ measures


def ts(value: str | None) -> float | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


def spans(records: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """(start, end) of each trial that ran, as the sweep recorded its pod's start and finish."""
    out = []
    for r in records:
        s, e = ts(r.get("start")), ts(r.get("end"))
        if s is not None and e is not None and e >= s:
            out.append((s, e))
    return out


def used(intervals: list[tuple[float, float]], lo: float, hi: float) -> float:
    """GPU-seconds (one GPU a trial) spent inside [lo, hi]."""
    return sum(max(0.0, min(e, hi) - max(s, lo)) for s, e in intervals)


def first_above(intervals: list[tuple[float, float]], after: float, level: int) -> float | None:
    """The first moment at or after ``after`` at which more than ``level`` of the intervals run at
    once (a trial counts from its start until its end; all changes of one second count together)."""
    delta: Counter[float] = Counter()
    for s, e in intervals:
        delta[s] += 1
        delta[e] -= 1
    held = 0
    for t in sorted(delta):
        if t > after and held > level:  # what held from the last change before ``after`` on
            return after
        held += delta[t]
        if t >= after and held > level:
            return t
    return None


def reach(intervals: list[tuple[float, float]], level: int) -> float | None:
    """The first moment at which at least ``level`` of the intervals run at once."""
    return first_above(intervals, float("-inf"), level - 1)


def measure(a: list[tuple[float, float]], b: list[tuple[float, float]], gpus: int, quota: int,
            lost: dict[str, list[tuple[float, float]]] | None = None) -> dict[str, Any]:
    """The benchmark's figures for one arm from both teams' trial spans (module docstring); the runs
    Kueue preempted (``lost``, by team) held their GPUs too and count as used."""
    if not a or not b:
        raise ValueError("a team ran no trial")
    lost = lost or {}
    wasted = sum(e - s for spans_ in lost.values() for s, e in spans_)
    a, b = a + list(lost.get("a", [])), b + list(lost.get("b", []))
    t0 = min(s for s, _ in a + b)
    work_end = min(max(e for _, e in a), max(e for _, e in b))
    busy_end = min(max(s for s, _ in a), max(s for s, _ in b))
    both = used(a, t0, work_end) + used(b, t0, work_end)
    util = both / (gpus * (work_end - t0)) if work_end > t0 else float("nan")
    ua, ub = used(a, t0, busy_end), used(b, t0, busy_end)
    window = busy_end - t0
    share = {"a": ua / (ua + ub) if ua + ub else float("nan"), "b": ub / (ua + ub) if ua + ub else float("nan")}
    of_quota = {"a": ua / (quota * window) if window > 0 else float("nan"),
                "b": ub / (quota * window) if window > 0 else float("nan")}
    b_last_start, b_end = max(s for s, _ in b), max(e for _, e in b)
    ends_after = sorted(e for _, e in b if e > b_last_start)
    b_idle = ends_after[0] if ends_after else b_end
    over = first_above(a, b_idle, quota)
    a_last_start = max(s for s, _ in a)
    alone = (used(a, b_end, a_last_start) / (gpus * (a_last_start - b_end))) if a_last_start > b_end else float("nan")
    full = reach(a + b, int(0.95 * gpus))
    return {"utilisation": util, "work_window": work_end - t0, "busy_window": window, "share": share,
            "of_quota": of_quota, "b_idle": b_idle - t0, "b_end": b_end - t0,
            "borrow": None if over is None else over - b_idle, "borrowed_at": None if over is None else over - t0,
            "alone": alone, "alone_window": max(0.0, a_last_start - b_end),
            "startup": None if full is None else full - t0,
            "peak_a": peak(a), "makespan": max(e for _, e in a + b) - t0, "lost_gpu_s": wasted}


def peak(intervals: list[tuple[float, float]]) -> int:
    """The most intervals running at once."""
    starts = sorted(s for s, _ in intervals)
    ends = sorted(e for _, e in intervals)
    return max((bisect.bisect_right(starts, s) - bisect.bisect_right(ends, s) for s in starts), default=0)


# ------------------------------------------------------------------------------ one arm


def configure_kueue(kc: Path, config: dict[str, Any] | None) -> str:
    """Kueue's controller configured through the kueue role (playbooks/kueue.yml on the local
    inventory) with ``config`` as kueue_controller_config, or as the inventory has it (None); the
    role waits until the controller is available again. Its clientConnection as the ConfigMap says."""
    import json

    from kubesweep.local import cluster

    extra = ["-e", json.dumps({"kueue_controller_config": config})] if config is not None else []
    run = cluster.playbook(ROOT / "inventory" / "local", "playbooks/kueue.yml", extra=extra, echo=False)
    if not run.ok:
        raise SystemExit(f"playbooks/kueue.yml failed:\n{run.output[-3000:]}")
    return kueue_client(kc)


def kueue_client(kc: Path) -> str:
    """Kueue's controller client rate limit, as its ConfigMap holds it."""
    import yaml

    from kubesweep.k8s import client as kube

    c = kube.clients(kc)
    cm = kube.request(c, "GET", "/api/v1/namespaces/kueue-system/configmaps/kueue-manager-config")
    conn = (yaml.safe_load(cm["data"]["controller_manager_config.yaml"]) or {}).get("clientConnection") or {}
    return f"qps {conn.get('qps', '?')}, burst {conn.get('burst', '?')}"


def run_arm(arm: str, args: argparse.Namespace, kc: Path, work: Path) -> dict[str, Any]:
    if arm == "kueue-tuned":
        import json

        client = configure_kueue(kc, json.loads(args.kueue_tuned))
        print(f"{arm}: Kueue's controller reconfigured ({client})", flush=True)
        try:
            result = _run_arm(arm, args, kc, work)
        finally:
            print(f"{arm}: Kueue's controller as the inventory has it again ({configure_kueue(kc, None)})", flush=True)
        result["kueue_client"] = client
        return result
    result = _run_arm(arm, args, kc, work)
    if arm.startswith("kueue"):
        result["kueue_client"] = kueue_client(kc)
    return result


def _run_arm(arm: str, args: argparse.Namespace, kc: Path, work: Path) -> dict[str, Any]:
    from kubesweep.k8s import client as kube

    c = kube.clients(kc)
    quota = args.nodes * args.gpus // 2
    a_levels, b_levels = levels(args.durations, 1.0), levels(args.durations, args.b_scale)
    batch = args.kueue_batch if arm.startswith("kueue") else quota
    grids = {"a": grid(arm, "a", args.trials, a_levels, batch), "b": grid(arm, "b", args.b_trials, b_levels, batch)}
    setup(c, arm, quota)
    print(f"{arm}: both sweeps start (batchSize {batch})", flush=True)
    with Timed() as machine, ProcessPoolExecutor(max_workers=2, mp_context=get_context("spawn")) as pool:
        futures = {team: pool.submit(run_team, arm, team, grids[team], str(work), str(kc),
                                     args.b_delay if team == "b" else 0.0) for team in TEAMS}
        results = {team: f.result() for team, f in futures.items()}
    labelled, went = where_time_went(c, arm, {t: results[t]["records"] for t in TEAMS})
    print(f"{arm}: done in {machine.seconds:.0f} s; cleaning up", flush=True)
    cleanup(c)
    recs = {team: results[team]["records"] for team in TEAMS}
    lost = {t: spans([{"start": s, "end": e} for s, e in results[t]["lost"]]) for t in TEAMS}
    m = measure(spans(recs["a"]), spans(recs["b"]), args.nodes * args.gpus, quota, lost)
    m.update({"trials": {t: len(recs[t]) for t in TEAMS},
              "finished": {t: sum(r["state"] in ("succeeded", "failed") for r in recs[t]) for t in TEAMS},
              "queue": {t: results[t]["queue"] for t in TEAMS}, "labelled": labelled,
              "notes": {t: results[t]["notes"] for t in TEAMS}, "evictions": {t: results[t]["evictions"] for t in TEAMS},
              "spurious": {t: results[t]["spurious"] for t in TEAMS},
              "went": went, "batch": batch, "cores": machine.cores, "stolen": machine.stolen,
              "wall": machine.seconds})
    return m


def pct(x: float | None) -> str:
    return "-" if x is None or x != x else f"{100 * x:.1f} %"


def secs(x: float | None) -> str:
    return "never" if x is None else f"{x:.0f} s"


def table(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    gpus = args.nodes * args.gpus
    quota = gpus // 2
    print(f"\nteams benchmark: team a {results[next(iter(results))]['trials']['a']:,} trials of {levels(args.durations, 1)} s, "
          f"team b {results[next(iter(results))]['trials']['b']:,} of {levels(args.durations, args.b_scale)} s"
          f"{f' starting {args.b_delay:g} s later' if args.b_delay else ''}, one GPU each, on {args.nodes} kwok nodes × "
          f"{args.gpus} GPUs = {gpus}; quota {quota} GPUs per team\n")
    print("| arm | finished a / b | Jobs via Kueue | utilisation, both have work | share a / b, both busy | "
          "of quota a / b | borrowing | a alone | peak GPUs of a | preempted a / b (GPU-s lost) | start-up to 95 % | "
          "makespan | cores busy |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for arm, r in results.items():
        print(f"| {arm} | {r['finished']['a']} / {r['finished']['b']} | {r['labelled']} | "
              f"{pct(r['utilisation'])} ({r['work_window']:.0f} s) | {pct(r['share']['a'])} / {pct(r['share']['b'])} "
              f"({r['busy_window']:.0f} s) | {pct(r['of_quota']['a'])} / {pct(r['of_quota']['b'])} | "
              f"{secs(r['borrow'])} | {pct(r['alone'])} ({r['alone_window']:.0f} s) | {r['peak_a']} | "
              f"{r['evictions']['a']} / {r['evictions']['b']} ({r['lost_gpu_s']:.0f}) | "
              f"{secs(r['startup'])} | {r['makespan']:.0f} s | {r['cores']:.2f} of {os.cpu_count()} |")
    print()
    for arm, r in results.items():
        shares_ok = all(abs(r["share"][t] / 0.5 - 1) <= 0.05 for t in TEAMS)
        print(f"{arm}: utilisation {pct(r['utilisation'])} (goal ≥ 95 %): {'met' if r['utilisation'] >= 0.95 else 'missed'}; "
              f"shares {pct(r['share']['a'])} / {pct(r['share']['b'])} (goal: within 5 % of 50 %): "
              f"{'met' if shares_ok else 'missed'}; borrowing {secs(r['borrow'])} after b first left a GPU idle "
              f"(goal ≤ 10 s): {'met' if r['borrow'] is not None and r['borrow'] <= 10 else 'missed'}")
    if "kueue" in results and "kueue-tuned" in results:
        k, t = results["kueue"], results["kueue-tuned"]
        print(f"kueue-tuned vs kueue: utilisation {t['utilisation'] / k['utilisation']:.2f}×, makespan "
              f"{k['makespan'] / t['makespan']:.2f}× shorter")
    for arm in (a for a in results if a.startswith("kueue")):
        if "throttle" in results:
            k, t = results[arm], results["throttle"]
            print(f"{arm} vs throttle: utilisation {k['utilisation'] / t['utilisation']:.2f}×, makespan "
                  f"{t['makespan'] / k['makespan']:.2f}× shorter, team a's peak {k['peak_a']} against {t['peak_a']} GPUs")
    for arm, r in results.items():
        if any(r["spurious"].values()):
            print(f"{arm}: the sweeps took {r['spurious']['a']} / {r['spurious']['b']} trials for evicted while their "
                  "pods ran on (a suspended Job event seen after the pod ran); not counted as preempted")
        went = dict(r["went"])
        created = went.pop("Jobs created over")
        client = f", Kueue's client {r['kueue_client']}" if r.get("kueue_client") else ""
        print(f"{arm} (batchSize {r['batch']}{client}): the sweeps created their Jobs over {created:.0f} s; seconds per trial "
              "(median, 95th percentile), from the API objects: "
              + ", ".join(f"{k} {m:.0f}, {p:.0f}" for k, (m, p) in went.items()))
    for arm, r in results.items():
        for team in TEAMS:
            for note in r["notes"][team]:
                print(f"{arm} {team}: {note}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=1000, help="team a's trials (and team b's unless --b-trials)")
    ap.add_argument("--b-trials", type=int, default=None)
    ap.add_argument("--nodes", type=int, default=50)
    ap.add_argument("--gpus", type=int, default=8, help="fake GPUs per node; each team's quota is half of all")
    ap.add_argument("--durations", default=",".join(map(str, DURATIONS)),
                    help="team a's trial duration levels in seconds, interleaved in plan order")
    ap.add_argument("--b-scale", type=float, default=0.5, help="team b's durations: team a's times this")
    ap.add_argument("--b-delay", type=float, default=0.0, help="team b's sweep starts this many seconds later")
    ap.add_argument("--kueue-batch", type=int, default=None, help="batchSize in the kueue arm (default: all the team's trials)")
    ap.add_argument("--kueue-tuned", default=TUNED, metavar="JSON",
                    help=f"kueue_controller_config of the kueue-tuned arm (default {TUNED})")
    ap.add_argument("--arms", default=",".join(DEFAULT_ARMS), help=f"any of {', '.join(ARMS)}")
    ap.add_argument("--kubeconfig", default=None, help="default: inventory/local's cluster (invoke cluster --inventory inventory/local)")
    args = ap.parse_args()
    try:
        args.durations = [float(d) for d in args.durations.split(",") if d]
    except ValueError:
        ap.error(f"--durations: numbers of seconds, comma-separated (got {args.durations!r})")
    arms = [a for a in args.arms.split(",") if a]
    if not arms or any(a not in ARMS for a in arms):
        ap.error(f"--arms: any of {', '.join(ARMS)}")
    if not args.durations or min(args.durations) <= 0 or args.b_scale <= 0:
        ap.error("--durations and --b-scale must be positive")
    if args.trials < 1 or args.nodes < 1 or args.gpus < 2 or args.gpus * args.nodes % 2:
        ap.error("--trials ≥ 1, --nodes ≥ 1, and an even number of GPUs in all (two equal quotas)")
    try:
        import json

        if not isinstance(json.loads(args.kueue_tuned), dict):
            raise ValueError("not an object")
    except ValueError as exc:
        ap.error(f"--kueue-tuned: a JSON object of Kueue Configuration fields ({exc})")
    args.b_trials = args.b_trials or args.trials
    args.kueue_batch = args.kueue_batch or max(args.trials, args.b_trials)

    from kubesweep.k8s import client as kube
    from kubesweep.k8s.versions import pins
    from kubesweep.local import fake_nodes
    from kubesweep.local.cluster import kubeconfig_path

    # the three-node cluster `invoke cluster --inventory inventory/local` brings up (the tests' one)
    kc = Path(args.kubeconfig) if args.kubeconfig else kubeconfig_path(ROOT / "inventory" / "local")
    if "kueue-tuned" in arms and kc.resolve() != kubeconfig_path(ROOT / "inventory" / "local").resolve():
        ap.error("--arms kueue-tuned reconfigures Kueue through inventory/local's playbook: only on that cluster "
                 "(leave out --kubeconfig)")
    c = kube.clients(kc)
    deadline = time.monotonic() + 180  # a cluster whose API server has just restarted (invoke cluster rerun)
    while not kube.ready(c):
        if time.monotonic() > deadline:
            raise SystemExit(f"the API server of {kc} is not ready after 180 s: is the cluster up (`invoke cluster`)?")
        time.sleep(2)
    if any(a.startswith("kueue") for a in arms):
        from kubesweep.run import kueue

        if kueue.local_queues(c, "default") is None:
            raise SystemExit("this cluster has no Kueue (kueue.x-k8s.io/v1beta2 is not served): "
                             "run `invoke cluster`, whose site.yml installs it (the kueue role)")
    left = cleanup(c)  # an earlier run that died
    if left:
        print(f"deleted what an earlier run left: {', '.join(left)}", flush=True)
    results: dict[str, dict[str, Any]] = {}
    try:
        fake_nodes.ensure(kc, args.nodes, args.gpus, version=pins()["kwok_version"])
        with tempfile.TemporaryDirectory(prefix="kubesweep-bench-teams-") as tmp:
            for arm in arms:
                results[arm] = run_arm(arm, args, kc, Path(tmp))
    finally:
        cleanup(c)
        fake_nodes.ensure(kc, 0, args.gpus, version=pins()["kwok_version"])
    table(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
