#!/usr/bin/env python3
"""`kubesweep serve` following a large sweep: its memory and its API's latency while it drives one.

A real `kubesweep serve` process (the command users run) on 127.0.0.1 is given, through its own
API, a sweep of N trials on kwok GPU nodes (kwok plays kubelet for fake nodes; each trial "runs"
for its own duration, read by kwok's pod-complete stage from the pod's annotation; the real API
server, scheduler and Job controller do the rest). kwok's pods print nothing, so every trial ends
failed with MetricMissing, as a real one that printed no metric would; the server follows each one
all the same (watch, log read, journal, events).

While the sweep runs, a page's worth of readers is simulated: one server-sent-events subscriber
(what the page keeps open) and, every second, the experiment's whole trial list
(GET /api/experiments/NAME, what the page loads) and the experiments list. Sampled every second:
the server's resident memory (VmRSS of its process, from /proc) and the two requests' latency.
Printed at the end: peak and median RSS, RSS with no sweep (before the submit) for comparison,
the latency's median / p95 / worst for both requests during the sweep and after it, and how many
events the subscriber received.

    python bench/serve_follow.py --trials 2000 --nodes 50 --gpus 8     (needs `invoke cluster`)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from kubesweep.k8s.versions import pins  # noqa: E402
from kubesweep.local import fake_nodes  # noqa: E402
from kubesweep.local.cluster import kubeconfig_path  # noqa: E402

GRID = """\
name: {name}
image: localhost:5000/kubesweep/fake:1
command: [train, "${{duration}}", "${{rep}}"]
parameters:
  rep: {reps}
  duration: {durations}
search: {{trialLimit: 100000}}
batchSize: {batch}
objective: {{metric: acc}}
resources: {{cpu: 100m, memory: 64Mi, nvidia.com/gpu: 1}}
nodeSelector: {{nvidia.com/gpu.present: "true"}}
tolerations: [{{key: kwok.x-k8s.io/node, operator: Exists, effect: NoSchedule}}]
annotations:
  pod-complete.stage.kwok.x-k8s.io/delay: "${{duration}}s"
  pod-complete.stage.kwok.x-k8s.io/jitter-delay: "${{duration}}s"
"""
FINAL = ("succeeded", "failed", "pruned", "cancelled")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def start_server(kc: Path, work: Path, port: int) -> tuple[subprocess.Popen, str]:
    """`kubesweep serve` as users start it; its admin token from the URL it prints."""
    exe = Path(sys.executable).with_name("kubesweep")
    proc = subprocess.Popen([str(exe), "--kubeconfig", str(kc), "--project-dir", str(work), "serve",
                             "--host", "127.0.0.1", "--port", str(port), "--state", str(work / "state")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        found = re.search(r"#token=([\w-]+)", line)
        if found:
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # drain
            return proc, found.group(1)
    proc.kill()
    raise RuntimeError("kubesweep serve printed no URL with a token within 60 s")


def timed_get(client: httpx.Client, url: str) -> tuple[float, dict]:
    t = time.perf_counter()
    r = client.get(url)
    r.raise_for_status()
    return time.perf_counter() - t, r.json()


def follow_events(base: str, token: str, name: str, counter: list[int], stop: threading.Event,
                  dropped: list[bool]) -> None:
    """What the page keeps open: the experiment's server-sent events, counted. A stream that ends
    while the sweep runs means the server dropped this subscriber (it fell behind)."""
    try:
        with httpx.Client(timeout=httpx.Timeout(10, read=None)) as c:
            with c.stream("GET", f"{base}/api/events", params={"experiment": name, "token": token}) as r:
                for line in r.iter_lines():
                    if line.startswith("event:"):
                        counter[0] += 1
                    if stop.is_set():
                        return
    except httpx.HTTPError:
        pass
    dropped[0] = not stop.is_set()


def stats(xs: list[float]) -> str:
    if not xs:
        return "-"
    xs = sorted(xs)
    p95 = xs[min(len(xs) - 1, int(0.95 * len(xs)))]
    return f"{1000 * statistics.median(xs):.1f} / {1000 * p95:.1f} / {1000 * xs[-1]:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=2000)
    ap.add_argument("--nodes", type=int, default=50)
    ap.add_argument("--gpus", type=int, default=8)
    ap.add_argument("--durations", default="20,30,40,50,60")
    ap.add_argument("--port", type=int, default=18080)
    ap.add_argument("--kubeconfig", default=None)
    args = ap.parse_args()
    kc = Path(args.kubeconfig) if args.kubeconfig else kubeconfig_path(ROOT / "inventory" / "local")
    durations = [int(d) for d in args.durations.split(",")]
    reps = -(-args.trials // len(durations))
    slots = args.nodes * args.gpus
    name = "bench-serve-follow"
    grid = GRID.format(name=name, reps=json.dumps(list(range(reps))), durations=json.dumps(durations), batch=slots)
    fake_nodes.ensure(kc, args.nodes, args.gpus, version=pins()["kwok_version"])
    work = Path(tempfile.mkdtemp(prefix="kubesweep-bench-serve-"))
    proc, token = start_server(kc, work, args.port)
    base = f"http://127.0.0.1:{args.port}"
    headers = {"Authorization": f"Bearer {token}"}
    stop = threading.Event()
    events = [0]
    dropped = [False]
    rss: list[float] = []
    lat_one: list[float] = []
    lat_all: list[float] = []
    after_one: list[float] = []
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=60) as c:
            for _ in range(50):
                try:
                    c.get("/api/health").raise_for_status()
                    break
                except httpx.HTTPError:
                    time.sleep(0.2)
            idle = rss_mib(proc.pid)
            r = c.post("/api/sweeps", content=grid, headers={"Content-Type": "application/yaml"})
            if r.status_code != 201:
                raise SystemExit(f"submit refused: {r.status_code} {r.text}")
            total = r.json()["trials"]
            t0 = time.monotonic()
            threading.Thread(target=follow_events, args=(base, token, name, events, stop, dropped), daemon=True).start()
            done = 0
            while True:
                time.sleep(1)
                rss.append(rss_mib(proc.pid))
                dt, one = timed_get(c, f"/api/experiments/{name}")
                lat_one.append(dt)
                dt, _ = timed_get(c, "/api/experiments")
                lat_all.append(dt)
                done = sum(one["counts"].get(s, 0) for s in FINAL)
                if done >= total and not one.get("driven", False):
                    break
                if time.monotonic() - t0 > 3600:
                    raise SystemExit(f"not finished after an hour: {done}/{total}")
            wall = time.monotonic() - t0
            for _ in range(20):
                dt, one = timed_get(c, f"/api/experiments/{name}")
                after_one.append(dt)
            assert len(one["trials"]) == total, (len(one["trials"]), total)
    finally:
        stop.set()
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        subprocess.run([str(Path(sys.executable).with_name("kubesweep")), "--kubeconfig", str(kc), "clean", name],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        fake_nodes.ensure(kc, 0, args.gpus, version=pins()["kwok_version"])
        shutil.rmtree(work, ignore_errors=True)
    print(f"kubesweep serve following {total:,} trials on {args.nodes} kwok nodes × {args.gpus} GPUs "
          f"({slots} slots), durations {durations} s: finished in {wall:.0f} s, {events[0]:,} events to one subscriber"
          + (" (the server dropped it before the end: it fell behind)" if dropped[0] else ""))
    print(f"{'server RSS MiB':<34}{'before submit':>14}{'median':>9}{'peak':>9}")
    print(f"{'':<34}{idle:>14.0f}{statistics.median(rss):>9.0f}{max(rss):>9.0f}")
    print(f"{'latency ms (median / p95 / worst)':<34}{'while running':>24}{'after':>24}")
    print(f"{'GET /api/experiments/' + name:<34}{stats(lat_one):>24}{stats(after_one):>24}")
    print(f"{'GET /api/experiments':<34}{stats(lat_all):>24}{'':>24}")
    print(f"peak RSS / idle RSS: {max(rss) / idle:.2f}x")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
