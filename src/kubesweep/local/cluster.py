"""`invoke cluster`: the Docker daemon, then our playbooks = a real local cluster.

    up:   Docker daemon (started when none answers) → ansible-playbook -i <inventory> site.yml,
          whose first part (playbooks/local_nodes.yml) makes the node containers, their network,
          the mirror's container and the SSH login → kubeconfig under the cache
    down: kwok, node containers (with their volumes), cgroups they left, the mirror's container,
          network, SSH keys, and the Docker daemon if kubesweep started it — nothing is left behind.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from kubesweep.local import nodes
from kubesweep.local import services
from kubesweep.errors import KubesweepError
from kubesweep.local.paths import cache_root, checkout

DEFAULT_INVENTORY_NAME = "single"  # inventory/single: the one-node cluster `invoke cluster` brings up


def default_inventory() -> Path:
    return checkout() / "inventory" / DEFAULT_INVENTORY_NAME
_RECAP = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)")


class ClusterError(KubesweepError):
    pass


@dataclass
class PlaybookRun:
    returncode: int
    seconds: float
    recap: dict[str, dict[str, int]] = field(default_factory=dict)
    output: str = ""

    @property
    def changed(self) -> int:
        return sum(h["changed"] for h in self.recap.values())

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and all(h["failed"] == 0 and h["unreachable"] == 0 for h in self.recap.values())


def parse_recap(output: str) -> dict[str, dict[str, int]]:
    recap: dict[str, dict[str, int]] = {}
    after = output.rsplit("PLAY RECAP", 1)[-1] if "PLAY RECAP" in output else ""
    for line in after.splitlines():
        m = _RECAP.match(line.strip())
        if m:
            keys = ("ok", "changed", "unreachable", "failed", "skipped")
            recap[m.group(1)] = dict(zip(keys, map(int, m.groups()[1:])))
    return recap


def failure_excerpt(output: str, lines: int = 14) -> str:
    """The failing task's name and the first lines of each failure, from ansible-playbook output."""
    text = output.splitlines()
    out: list[str] = []
    task = ""
    for i, line in enumerate(text):
        if line.startswith("TASK ["):
            task = line.rstrip("* ")
        elif line.startswith(("fatal:", "failed:")):
            out += [task, *text[i : i + lines]]
    return "\n".join(out[-3 * lines :]) if out else "\n".join(text[-lines:])


def kubeconfig_path(inventory: Path) -> Path:
    return cache_root() / "kubeconfig" / f"{Path(inventory).name}.conf"


def playbook(inventory: Path, play: str = "site.yml", extra: list[str] | None = None,
             echo: bool = True) -> PlaybookRun:
    """Run one of our playbooks (argument list, no shell); stream its output when ``echo``."""
    tool = Path(sys.executable).parent / "ansible-playbook"
    repo = checkout()
    argv = [str(tool), "-i", str(inventory), str(repo / play),
            "-e", f"kubeconfig_local_path={kubeconfig_path(inventory)}", *(extra or [])]
    env = {**os.environ, "ANSIBLE_CONFIG": str(repo / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0",
           "PYTHONUNBUFFERED": "1"}
    started = time.monotonic()
    proc = subprocess.Popen(argv, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if echo:
            sys.stdout.write(line)
    code = proc.wait()
    output = "".join(lines)
    return PlaybookRun(code, time.monotonic() - started, parse_recap(output), output)


def up(inventory: Path | None = None, *, echo: bool = True) -> PlaybookRun:
    inventory = Path(inventory or default_inventory())
    services.ensure_docker()
    run = playbook(inventory, echo=echo)
    log = cache_root() / "logs" / f"site-{inventory.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(run.output)
    if not run.ok:
        raise ClusterError(f"site.yml failed on {inventory} (exit {run.returncode}); full output in {log}:\n"
                           f"{failure_excerpt(run.output)}")
    return run


def down() -> list[str]:
    """Tear everything down; return the node containers removed."""
    from kubesweep.local import fake_nodes

    fake_nodes.stop()
    removed = nodes.down() if services.docker_running() else []
    _remove_cgroups()
    if services.docker_running() and not nodes.existing():
        nodes.remove_network()
    if not removed or not nodes.existing():
        nodes.remove_ssh_keys()
    services.stop_docker()
    return removed


def _remove_cgroups() -> None:
    """Node kubelets put pod cgroups under /kubesweep/<node> of the host's (v1) hierarchy;
    once the nodes are gone those directories are empty and are removed, deepest first."""
    root = Path("/sys/fs/cgroup")
    if not root.is_dir():
        return
    for controller in root.iterdir():
        top = controller / "kubesweep"
        if not top.is_dir():
            continue
        for path in sorted(top.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if path.is_dir():
                try:
                    path.rmdir()
                except OSError:
                    pass
        try:
            top.rmdir()
        except OSError:
            pass
