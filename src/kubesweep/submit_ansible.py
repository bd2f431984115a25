"""Apply trial Jobs through the kubernetes.core collection: one k8s module call per batch.

The batch's manifests are joined into one multi-document file and handed to
``kubernetes.core.k8s`` once (playbooks/sweep.yml), never one Ansible task per file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from .errors import KubesweepError
from .paths import REPO


class AnsibleApplyError(KubesweepError):
    pass


def apply(files: list[Path], kubeconfig: Path | None) -> float:
    """Create the Jobs in ``files`` with one module invocation; return the seconds it took."""
    import time

    from .kube import default_kubeconfig

    kubeconfig = kubeconfig or default_kubeconfig()
    with tempfile.TemporaryDirectory(prefix="kubesweep-apply-") as tmp:
        batch = Path(tmp) / "batch.yaml"
        with open(batch, "w", encoding="utf-8") as out:
            for f in files:
                out.write("---\n")
                out.write(Path(f).read_text(encoding="utf-8"))
        extra = Path(tmp) / "vars.json"
        extra.write_text(json.dumps({"batch_file": str(batch), "kubeconfig": str(kubeconfig)}))
        tool = Path(sys.executable).parent / "ansible-playbook"
        env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0"}
        started = time.monotonic()
        proc = subprocess.run([str(tool), str(REPO / "playbooks" / "sweep.yml"), "-e", f"@{extra}"],
                              cwd=REPO, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = "\n".join(proc.stdout.splitlines()[-20:])
            raise AnsibleApplyError(f"playbooks/sweep.yml failed (exit {proc.returncode}):\n{tail}\n{proc.stderr[-2000:]}")
        return time.monotonic() - started
