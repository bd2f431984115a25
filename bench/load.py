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
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

WRITE_VERBS = {"POST", "PUT", "PATCH", "DELETE", "APPLY"}


def cpu_times() -> tuple[float, float]:
    """(busy, stolen): CPU seconds the whole machine has spent busy (all cores, every process) and
    the seconds its virtual cores were ready to run but the hypervisor ran other guests instead
    (steal), from /proc/stat. Busy leaves steal out."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (
        int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9])
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


class Timed:
    """Wall time (``seconds``), machine-wide busy cores (``cores``) and cores' worth of time the
    hypervisor took away (``stolen``) over one timed block. A run with much stolen time measured
    a shared host as well as kubesweep: compare its ratios, not its absolute figures."""

    def __enter__(self) -> "Timed":
        (self.busy, self.steal), self.t = cpu_times(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t
        busy, steal = cpu_times()
        self.cores = (busy - self.busy) / self.seconds
        self.stolen = (steal - self.steal) / self.seconds


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
