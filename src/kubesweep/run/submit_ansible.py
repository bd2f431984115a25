"""Apply trial Jobs through the kubernetes.core collection (playbooks/sweep.yml).

The batch is split into a few chunks; each chunk is one JSON list of Jobs handed to one
``kubernetes.core.k8s`` invocation, and the chunks run side by side in Ansible's forks (one
in-memory host each). Never one Ansible task per Job. Why chunks and JSON (bench/submit.py,
docs/benchmarks.md): the module creates a chunk's Jobs one after another, each after a GET, and
spends much of its CPU in its pure-Python YAML loader and in echoing every created object back,
so one invocation per batch leaves the API server idle most of the time.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kubesweep.plan import job as manifest
from kubesweep.errors import KubesweepError
from kubesweep.local.paths import checkout

MAX_CHUNKS = 8
MIN_PER_CHUNK = 50  # below this, another module process costs more than it saves


class AnsibleApplyError(KubesweepError):
    pass


def chunk_count(n: int, cpus: int | None = None) -> int:
    """How many module invocations for ``n`` Jobs: two per core (each waits on the API server
    half the time), at most MAX_CHUNKS, and none with fewer than MIN_PER_CHUNK Jobs."""
    cpus = cpus or os.cpu_count() or 1
    return max(1, min(MAX_CHUNKS, 2 * cpus, math.ceil(n / MIN_PER_CHUNK)))


def chunks(items: list, k: int) -> list[list]:
    """``items`` in ``k`` contiguous runs of near-equal length, order kept."""
    size, extra = divmod(len(items), k)
    out, start = [], 0
    for i in range(k):
        end = start + size + (1 if i < extra else 0)
        out.append(items[start:end])
        start = end
    return [c for c in out if c]


def apply(files: list[Path], kubeconfig: str | Path | None, n_chunks: int | None = None, *,
          context: str | None = None) -> float:
    """Create the Jobs in ``files`` through playbooks/sweep.yml; return the seconds it took."""
    from kubesweep.k8s.client import default_kubeconfig

    if not files:
        return 0.0
    kubeconfig = kubeconfig or default_kubeconfig()
    docs = [manifest.load(Path(f).read_bytes()) for f in files]
    with tempfile.TemporaryDirectory(prefix="kubesweep-apply-") as tmp:
        batch_files = []
        for i, part in enumerate(chunks(docs, n_chunks or chunk_count(len(docs)))):
            path = Path(tmp) / f"chunk-{i:02d}.json"
            path.write_text(json.dumps(part, separators=(",", ":")), encoding="utf-8")
            batch_files.append(str(path))
        extra = Path(tmp) / "vars.json"
        extra.write_text(json.dumps({"batch_files": batch_files, "kubeconfig": str(kubeconfig),
                                     **({"kube_context": context} if context else {})}))
        tool = Path(sys.executable).parent / "ansible-playbook"
        repo = checkout()  # playbooks/sweep.yml
        env = {**os.environ, "ANSIBLE_CONFIG": str(repo / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0"}
        started = time.monotonic()
        proc = subprocess.run([str(tool), str(repo / "playbooks" / "sweep.yml"), "-e", f"@{extra}"],
                              cwd=repo, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = "\n".join(proc.stdout.splitlines()[-20:])
            raise AnsibleApplyError(f"playbooks/sweep.yml failed (exit {proc.returncode}):\n{tail}\n{proc.stderr[-2000:]}")
        return time.monotonic() - started
