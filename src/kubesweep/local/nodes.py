"""Local "bare servers": which node containers exist, what the inventory says, and removing them.

The containers themselves, their network, the container serving the offline mirror, the
cluster's SSH key and the login user on each node are made by Ansible (playbooks/local_nodes.yml,
the local_node and node_login roles, the first part of site.yml): every host of a local inventory
(``local_node: true``) is a Debian systemd container of that name, reached over SSH at
127.0.0.1:<ansible_port> like a server. This module reads the inventory and takes them down.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from kubesweep.errors import KubesweepError
from kubesweep.local.paths import cache_root

NETWORK = "kubesweep"
LABEL = "io.kubesweep.node"
MIRROR_LABEL = "io.kubesweep.mirror"


class NodeError(KubesweepError):
    pass


@dataclass(frozen=True)
class Host:
    name: str
    groups: tuple[str, ...]
    vars: dict = field(default_factory=dict, compare=False, hash=False)


def _docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise NodeError(f"docker {args[0]} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def inventory_hosts(inventory: Path) -> list[Host]:
    """Hosts of an inventory and their groups, as Ansible itself resolves them."""
    tool = Path(sys.executable).parent / "ansible-inventory"
    proc = subprocess.run([str(tool), "-i", str(inventory), "--list"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise NodeError(f"cannot read the inventory {inventory}: {proc.stderr.strip()}")
    data = json.loads(proc.stdout)
    groups: dict[str, list[str]] = {}

    def walk(group: str, seen: set[str]) -> None:
        if group in seen:
            return
        seen.add(group)
        for host in data.get(group, {}).get("hosts", []):
            groups.setdefault(host, []).append(group)
        for child in data.get(group, {}).get("children", []):
            walk(child, seen)

    walk("all", set())
    hostvars = data.get("_meta", {}).get("hostvars", {})
    return [Host(name, tuple(sorted(set(g) - {"all", "ungrouped"})), dict(hostvars.get(name, {})))
            for name, g in sorted(groups.items())]


def remove_network() -> None:
    if _docker("network", "inspect", NETWORK, check=False).returncode == 0:
        _docker("network", "rm", NETWORK, check=False)


def ssh_key(inventory: Path) -> Path:
    """Where a local cluster's private SSH key is (one per inventory directory name; the
    local_node role makes it, group_vars/all/ssh.yml points Ansible at it)."""
    return cache_root() / "ssh" / Path(inventory).name / "id_ed25519"


def remove_ssh_keys() -> None:
    """Forget every local cluster's key: the next cluster gets a new one."""
    shutil.rmtree(cache_root() / "ssh", ignore_errors=True)


def existing() -> list[str]:
    proc = _docker("ps", "-a", "--filter", f"label={LABEL}=true", "--format", "{{.Names}}", check=False)
    return sorted(proc.stdout.split())


def down(names: list[str] | None = None) -> list[str]:
    """Remove node containers (all kubesweep nodes by default) with their volumes; with the last
    node gone, the container serving the mirror and the network too."""
    names = existing() if names is None else names
    for name in names:
        _docker("rm", "-f", "-v", name, check=False)
    if not existing():
        proc = _docker("ps", "-aq", "--filter", f"label={MIRROR_LABEL}=true", check=False)
        for container in proc.stdout.split():
            _docker("rm", "-f", container, check=False)
        remove_network()
    return names

