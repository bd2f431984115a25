#!/usr/bin/env python3
"""Serve benchmark: API latency for an experiment of N trials, through `kubesweep serve` itself.

Plans and renders a grid of N trials (jobs/<exp>/plan.json, through the library), writes a journal
of N finished trials with 20-step learning curves (results/<exp>/trials.jsonl, journal.append),
starts `kubesweep --project-dir TMP serve` on 127.0.0.1 in its own process (loopback, no tokens
file: GETs are open), and times GET /api/experiments and GET /api/experiments/{name} with httpx
over one kept-alive connection, N repetitions each, in three states side by side:

    cold      both files touched before each request: every request parses plan.json and the journal
    warm      nothing changed: the cached rows are served
    appended  one journal line appended before each request (a sweep running): only it is read

Prints median and p95 per route and state, the cold/warm ratio, the answer's size, and the
server's resident memory (VmRSS, and its peak VmHWM). Needs no cluster.

    python bench/serve.py --trials 2000 --reps 50
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from kubesweep import sweep  # noqa: E402
from kubesweep.run import journal  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from load import cpu_times  # noqa: E402
from report import journal as records  # noqa: E402  the report benchmark's synthetic trials

NAME = "bench"


def grid(trials: int) -> str:
    """A grid of ``trials`` trials: lr x optimizer x layers (trials must be a multiple of 40)."""
    per = trials // 40
    lrs = ", ".join(f"{10 ** (-4 + 3 * i / max(per - 1, 1)):.6g}" for i in range(per))
    return (f"name: {NAME}\nimage: localhost:5000/bench/trainer:1\n"
            'command: [python3, train.py, "${lr}", "${optimizer}", "${layers}"]\n'
            f"parameters:\n  lr: [{lrs}]\n  optimizer: [sgd, adam, rmsprop, adagrad]\n  layers: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n"
            "objective: {metric: acc, direction: maximize}\nsearch: {algorithm: grid, trialLimit: 100000}\n")


def workspace(root: Path, trials: int) -> None:
    (root / "grid.yaml").write_text(grid(trials))
    where = sweep.Workspace.under(root)
    plan = sweep.plan(root / "grid.yaml")
    sweep.render(plan, where.jobs_dir)
    made = records(len(plan.trials))
    for trial, rec in zip(plan.trials, made):  # the synthetic records under the plan's names and params
        rec.update(name=trial.name, batch=f"batch-{trial.batch:03d}", params=trial.params)
        journal.append(where.results_dir / NAME, rec)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(root: Path) -> tuple[subprocess.Popen, str]:
    """`kubesweep --project-dir ROOT serve` on a free port of 127.0.0.1, in its own process: the
    process and its base URL, once /api/health answers."""
    import httpx

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "kubesweep", "--project-dir", str(root), "serve",
                               "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    with httpx.Client(base_url=base, timeout=60) as c:
        while True:
            try:
                if c.get("/api/health").status_code == 200:
                    return server, base
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise SystemExit(f"the server did not start:\n{server.stdout.read() if server.stdout else ''}")
            time.sleep(0.1)


def stop(server: subprocess.Popen) -> None:
    """Ctrl-C, as a user stops it; killed if it has not ended within 15 s."""
    server.send_signal(signal.SIGINT)
    try:
        server.wait(15)
    except subprocess.TimeoutExpired:
        server.kill()


def memory(pid: int) -> tuple[float, float]:
    """VmRSS and VmHWM of ``pid``, MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    import httpx

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=2000, help="trials in the experiment (a multiple of 40)")
    ap.add_argument("--reps", type=int, default=50, help="requests per route and state")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        workspace(root, args.trials)
        print(f"workspace of {args.trials:,} trials written in {time.perf_counter() - t0:.1f}s")
        server, base = start(root)
        try:
            with httpx.Client(base_url=base, timeout=60) as c:
                idle = memory(server.pid)[0]
                plan_file = root / "jobs" / NAME / sweep.PLAN_FILE
                journal_file = journal.path(root / "results" / NAME)
                last = journal_file.read_bytes().splitlines()[-1] + b"\n"
                results: dict[tuple[str, str], list[float]] = {}
                (busy0, steal0), wall0, load0 = cpu_times(), time.perf_counter(), os.getloadavg()[0]
                sizes: dict[str, int] = {}
                routes = {"list": "/api/experiments", "experiment": f"/api/experiments/{NAME}"}
                for state in ("cold", "warm", "appended"):
                    for route, path in routes.items():
                        took = results.setdefault((route, state), [])
                        c.get(path)  # the state's first request is not counted (warm: fills the cache)
                        for _ in range(args.reps):
                            if state == "cold":
                                now = time.time_ns()
                                for f in (plan_file, journal_file):
                                    os.utime(f, ns=(now, now))
                            elif state == "appended":
                                with open(journal_file, "ab") as f:
                                    f.write(last)
                            t = time.perf_counter()
                            r = c.get(path)
                            took.append(time.perf_counter() - t)
                            assert r.status_code == 200, r.text
                            sizes[route] = len(r.content)
                rss, peak = memory(server.pid)
                (busy1, steal1), wall = cpu_times(), time.perf_counter() - wall0
        finally:
            stop(server)
    print(f"\n{args.trials:,} trials, {args.reps} requests each (ms)\n")
    print("| route | answer | cold median | cold p95 | warm median | warm p95 | appended median | appended p95 "
          "| cold / warm |")
    print("|---|---|---|---|---|---|---|---|---|")
    for route, path in routes.items():
        cells = []
        for state in ("cold", "warm", "appended"):
            took = results[(route, state)]
            cells += [f"{statistics.median(took) * 1e3:.1f}", f"{pct(took, 0.95) * 1e3:.1f}"]
        ratio = statistics.median(results[(route, "cold")]) / statistics.median(results[(route, "warm")])
        print(f"| GET {path} | {sizes[route] / 1024:.1f} KiB | " + " | ".join(cells) + f" | {ratio:.1f} |")
    print(f"\nserver RSS: {idle:.0f} MiB started, {rss:.0f} MiB after the requests (peak {peak:.0f} MiB)")
    print(f"machine while timing: {os.cpu_count()} cores, load average {load0:.1f} at the start, CPU busy "
          f"{(busy1 - busy0) / wall:.2f} cores, stolen {(steal1 - steal0) / wall:.2f}")


if __name__ == "__main__":
    main()
