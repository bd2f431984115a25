"""What a benchmarked run cost the machine and the cluster, for bench/submit.py and bench/makespan.py.

- ``Timed``: wall time, how many of the machine's cores were busy (from /proc/stat: the cluster
  in its node container, the client, kubectl, Ansible, kwok: everything on this VM) and how much
  CPU the hypervisor stole for other guests meanwhile (a VM on a shared host can lose a quarter
  of its two cores that way, and every timing with it).
- ``api_counters``: the API server's own count of the writes it answered, by resource
  (``apiserver_request_total`` from its /metrics, parsed with prometheus-client). Taken before and
  after a run, it says how many writes each trial cost the control plane and which resources they
  went to: the client's creates are one line among the controllers', the scheduler's and the
  kubelets' (here kwok's) writes, and events. From the same scrape, the API server's goroutines'
  wait to run (Go's scheduler latency; ``sched_latency``).
- ``process_cpu``: CPU seconds used by each control-plane process (the API server, etcd, the
  controller-manager, the scheduler, kwok; they run in node containers, whose processes this
  VM's /proc lists). ``Timed`` takes it before and after: CPU seconds per Job or per trial are
  what a setting changes, and unlike a rate they hardly move when the hypervisor steals time.
  It also sums how long each process's threads were ready to run but waited for a core, and how
  many times they were put on one (the kernel's run-queue delay and timeslice count, fields 2 and
  3 of /proc/<pid>/task/<tid>/schedstat). On this VM idle a thread waits 10–35 µs a time (waking
  an idle virtual core), and a Go process wakes its threads so often that even then they wait
  about half as long as they run; over a whole sweep the means hide bursts.
- ``Sampler``: the machine's busy cores second by second, so that a stretch of a run can say how
  much of it had the cores full: what the averages above cannot.
"""

from __future__ import annotations

import bisect
import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

WRITE_VERBS = {"POST", "PUT", "PATCH", "DELETE", "APPLY"}
SCHED_WAIT, SCHED_RUNS = "go scheduler wait us", "go scheduler runs"  # api_counters' two non-write keys
# /proc/<pid>/comm (cut at 15 characters) of the processes ``process_cpu`` counts, and their names
COMPONENTS = {"kube-apiserver": "apiserver", "etcd": "etcd", "kube-controller": "controller-manager",
              "kube-scheduler": "scheduler", "kwok": "kwok", "kwok-linux-amd6": "kwok"}


def cpu_times() -> tuple[float, float]:
    """(busy, stolen): CPU seconds the whole machine has spent busy (all cores, every process) and
    the seconds its virtual cores were ready to run but the hypervisor ran other guests instead
    (steal), from /proc/stat. Busy leaves steal out."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (
        int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9])
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


def run_queue(pid: Path) -> tuple[float, int]:
    """(seconds the process's threads have spent runnable but waiting for a core, timeslices they
    have run), from each thread's schedstat; a thread that has exited is no longer counted."""
    waited = slices = 0
    for task in pid.glob("task/*/schedstat"):
        try:
            _run, delay, count = (int(x) for x in task.read_text().split())
        except (OSError, ValueError):  # exited meanwhile, or no schedstats in this kernel
            continue
        waited, slices = waited + delay, slices + count
    return waited / 1e9, slices


def process_cpu() -> dict[tuple[int, str], tuple[float, float, int]]:
    """(CPU seconds used (user + system), seconds waited for a core, timeslices) of each
    control-plane process, by (pid, name)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[tuple[int, str], tuple[float, float, int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        name = COMPONENTS.get(stat[stat.index("(") + 1:stat.rindex(")")])
        if name is not None:
            fields = stat[stat.rindex(")") + 2:].split()  # from field 3 (state); utime, stime are 14, 15
            out[(int(d.name), name)] = ((int(fields[11]) + int(fields[12])) / tick, *run_queue(d))
    return out


class Timed:
    """Wall time (``seconds``), machine-wide busy cores (``cores``), cores' worth of time the
    hypervisor took away (``stolen``), each control-plane component's CPU seconds (``procs``,
    by name), the seconds its threads waited for a core (``waits``) and the timeslices they ran
    (``slices``) over one timed block. A run with much stolen time measured a shared host as well as
    kubesweep: compare its ratios and CPU seconds, not its rates."""

    def __enter__(self) -> "Timed":
        self.before = process_cpu()
        (self.busy, self.steal), self.t = cpu_times(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t
        busy, steal = cpu_times()
        self.cores = (busy - self.busy) / self.seconds
        self.stolen = (steal - self.steal) / self.seconds
        self.procs: Counter[str] = Counter()
        self.waits: Counter[str] = Counter()
        self.slices: Counter[str] = Counter()
        for (pid, name), (used, waited, slices) in process_cpu().items():  # a process started meanwhile counts from 0
            used0, waited0, slices0 = self.before.get((pid, name), (0.0, 0.0, 0))
            self.procs[name] += used - used0
            self.waits[name] += waited - waited0
            self.slices[name] += slices - slices0

    def per(self, n: int, names: tuple[str, ...] = ("apiserver", "etcd", "controller-manager")) -> str:
        """'apiserver 2.4, etcd 0.6, ... ms of CPU per <n>' for the components named."""
        return ", ".join(f"{name} {self.procs[name] / n * 1000:.2f}" for name in names)

    def waited(self, names: tuple[str, ...] = ("apiserver", "etcd", "controller-manager")) -> str:
        """'apiserver 0.21 ms (1.10 s per CPU second), ...': how long each component's threads
        waited for a core each time they were put on one, and in all per second of CPU they used."""
        return ", ".join(f"{name} {self.waits[name] / self.slices[name] * 1000:.2f} ms "
                         f"({self.waits[name] / self.procs[name]:.2f} s per CPU second)"
                         if self.slices[name] and self.procs[name] else f"{name} -" for name in names)


class Sampler:
    """The machine's busy and stolen cores, read from /proc/stat every ``interval`` seconds on a
    thread while the block runs (about 30 µs of CPU a reading). An average over minutes hides
    bursts: a sweep whose trials end in waves has the control plane saturated for seconds, then
    idle; ``window`` says how much of a stretch of the run was spent with the cores (nearly) full."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self.samples: list[tuple[float, float, float]] = []  # (monotonic time, busy s, stolen s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def _run(self) -> None:
        while True:
            self.samples.append((time.monotonic(), *cpu_times()))
            if self._stop.wait(self.interval):
                self.samples.append((time.monotonic(), *cpu_times()))
                return

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def window(self, start: float, end: float, full: float = 0.9) -> tuple[float, float, float]:
        """(busy cores, stolen cores, share of the intervals with at least ``full`` of the cores
        busy) from the last reading at or before the monotonic time ``start`` to the first at or
        after ``end``."""
        times = [s[0] for s in self.samples]
        first = max(bisect.bisect_right(times, start) - 1, 0)
        inside = self.samples[first:bisect.bisect_left(times, end) + 1]
        if len(inside) < 2:
            return float("nan"), float("nan"), float("nan")
        cores = os.cpu_count() or 1
        steps = [((b1 - b0) / (t1 - t0), (s1 - s0) / (t1 - t0)) for (t0, b0, s0), (t1, b1, s1) in zip(inside, inside[1:])]
        span = inside[-1][0] - inside[0][0]
        return ((inside[-1][1] - inside[0][1]) / span, (inside[-1][2] - inside[0][2]) / span,
                sum(1 for busy, _ in steps if busy >= full * cores) / len(steps))


def api_counters(c: Any) -> Counter[str]:
    """Successful writes the API server has answered since it started, by resource[/subresource],
    and under the key ``SCHED_WAIT`` / ``SCHED_RUNS`` its Go scheduler's latency histogram's sum
    (microseconds) and count: how long its goroutines were runnable before they ran
    (``go_sched_latencies_seconds``, from the Go runtime's /sched/latencies). The API server runs
    every request on goroutines multiplexed onto as many threads as cores (GOMAXPROCS); when
    more are runnable than it gets cores, they queue here, out of the kernel's sight."""
    from prometheus_client.parser import text_string_to_metric_families

    from kubesweep.k8s import client as kube

    resp = kube.request(c, "GET", "/metrics", stream=True)
    try:
        text = resp.read().decode()
    finally:
        resp.release_conn()
    out: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        if family.name == "go_sched_latencies_seconds":
            for s in family.samples:
                if s.name.endswith("_sum"):
                    out[SCHED_WAIT] += round(s.value * 1e6)
                elif s.name.endswith("_count"):
                    out[SCHED_RUNS] += int(s.value)
        if family.name != "apiserver_request":  # the parser drops the counter's _total
            continue
        for s in family.samples:
            lab = s.labels
            # a dry run (a sweep's admission check, dryRun=All) stores nothing: not a write
            if (s.name.endswith("_total") and lab.get("verb") in WRITE_VERBS and lab.get("code", "").startswith("2")
                    and not lab.get("dry_run")):
                key = lab.get("resource", "?") + (f"/{lab['subresource']}" if lab.get("subresource") else "")
                out[f"{lab['verb']} {key}"] += int(s.value)
    return out


def sched_latency(before: Counter[str], after: Counter[str]) -> float:
    """The API server's goroutines' mean wait, in ms, between becoming runnable and running,
    between two ``api_counters`` (NaN if its runtime does not export it)."""
    runs = after[SCHED_RUNS] - before[SCHED_RUNS]
    return (after[SCHED_WAIT] - before[SCHED_WAIT]) / runs / 1000 if runs > 0 else float("nan")


def per_trial(before: Counter[str], after: Counter[str], trials: int, top: int = 8) -> str:
    """'N writes per trial: X verb resource, ...' for the writes between two ``api_counters``."""
    diff = after - before  # Counter subtraction keeps the resources written to during the run
    del diff[SCHED_WAIT], diff[SCHED_RUNS]
    total = sum(diff.values())
    parts = [f"{n / trials:.2f} {k}" for k, n in diff.most_common(top)]
    return f"{total / trials:.1f} API writes per trial: " + ", ".join(parts)
