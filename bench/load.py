"""What a benchmarked run cost the machine and the cluster, for bench/submit.py and bench/makespan.py.

- ``Timed``: wall time, how many of the machine's cores were busy (from /proc/stat: the cluster
  in its node container, the client, kubectl, Ansible, kwok: everything on this VM) and how much
  CPU the hypervisor stole for other guests meanwhile (a VM on a shared host can lose a quarter
  of its two cores that way, and every timing with it).
- ``api_writes``: the API server's own count of the writes it answered, by resource
  (``apiserver_request_total`` from its /metrics, parsed with prometheus-client). Taken before and
  after a run, it says how many writes each trial cost the control plane and which resources they
  went to: the client's creates are one line among the controllers', the scheduler's and the
  kubelets' (here kwok's) writes, and events.
- ``process_cpu``: CPU seconds used by each control-plane process (the API server, etcd, the
  controller-manager, the scheduler, kwok; they run in node containers, whose processes this
  VM's /proc lists). ``Timed`` takes it before and after: CPU seconds per Job or per trial are
  what a setting changes, and unlike a rate they hardly move when the hypervisor steals time.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

WRITE_VERBS = {"POST", "PUT", "PATCH", "DELETE", "APPLY"}
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


def process_cpu() -> dict[tuple[int, str], float]:
    """CPU seconds (user + system) each control-plane process has used, by (pid, name)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[tuple[int, str], float] = {}
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
            out[(int(d.name), name)] = (int(fields[11]) + int(fields[12])) / tick
    return out


class Timed:
    """Wall time (``seconds``), machine-wide busy cores (``cores``), cores' worth of time the
    hypervisor took away (``stolen``) and each control-plane component's CPU seconds (``procs``,
    by name) over one timed block. A run with much stolen time measured a shared host as well as
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
        for (pid, name), used in process_cpu().items():  # a process started meanwhile counts from 0
            self.procs[name] += used - self.before.get((pid, name), 0.0)

    def per(self, n: int, names: tuple[str, ...] = ("apiserver", "etcd", "controller-manager")) -> str:
        """'apiserver 2.4, etcd 0.6, ... ms of CPU per <n>' for the components named."""
        return ", ".join(f"{name} {self.procs[name] / n * 1000:.2f}" for name in names)


def api_writes(c: Any) -> Counter[str]:
    """Successful writes the API server has answered since it started, by resource[/subresource]."""
    from prometheus_client.parser import text_string_to_metric_families

    from kubesweep import kube

    resp = kube.request(c, "GET", "/metrics", stream=True)
    try:
        text = resp.read().decode()
    finally:
        resp.release_conn()
    out: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        if family.name != "apiserver_request":  # the parser drops the counter's _total
            continue
        for s in family.samples:
            lab = s.labels
            if s.name.endswith("_total") and lab.get("verb") in WRITE_VERBS and lab.get("code", "").startswith("2"):
                key = lab.get("resource", "?") + (f"/{lab['subresource']}" if lab.get("subresource") else "")
                out[f"{lab['verb']} {key}"] += int(s.value)
    return out


def per_trial(before: Counter[str], after: Counter[str], trials: int, top: int = 8) -> str:
    """'N writes per trial: X verb resource, ...' for the writes between two ``api_writes``."""
    diff = after - before  # Counter subtraction keeps the resources written to during the run
    total = sum(diff.values())
    parts = [f"{n / trials:.2f} {k}" for k, n in diff.most_common(top)]
    return f"{total / trials:.1f} API writes per trial: " + ", ".join(parts)
