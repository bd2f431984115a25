"""Local "bare servers": Debian systemd containers that Ansible then treats like any machine.

This VM cannot run ``docker run --privileged`` (it lacks CAP_SYS_RESOURCE), so a node gets every
capability but that one, unconfined seccomp/AppArmor, all devices, the host's cgroup tree, tmpfs
on /run, ``/dev/kmsg`` (kubelet reads it), and a volume for /var/lib/containerd (overlay on
overlay fails; kind does the same with /var). Nodes sit on their own bridge network with a fixed
subnet, so the host is always at the gateway address — where the offline mirror is served.

Which nodes exist comes from the Ansible inventory: every host of a local inventory is a node
container of that name.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import KubesweepError
from .paths import cache_root

NETWORK = "kubesweep"
SUBNET = "172.29.0.0/24"
GATEWAY = "172.29.0.1"
IMAGE = "kubesweep/node:bookworm"
LABEL = "io.kubesweep.node"
REGISTRY_PORT = 5000

RUN_FLAGS = [
    "--cap-add=ALL", "--cap-drop=SYS_RESOURCE",
    "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
    "--security-opt", "systempaths=unconfined",
    "--device-cgroup-rule=a *:* rwm", "--device", "/dev/kmsg",
    "--cgroupns=host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs", "/run", "--tmpfs", "/run/lock",
    "-v", "/var/lib/containerd", "-v", "/lib/modules:/lib/modules:ro",
    "--stop-signal", "SIGRTMIN+3",
]


class NodeError(KubesweepError):
    pass


@dataclass(frozen=True)
class Host:
    name: str
    groups: tuple[str, ...]


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
    return [Host(name, tuple(sorted(set(g) - {"all", "ungrouped"}))) for name, g in sorted(groups.items())]


def ensure_network() -> None:
    if _docker("network", "inspect", NETWORK, check=False).returncode == 0:
        return
    _docker("network", "create", "--driver", "bridge", "--subnet", SUBNET, "--gateway", GATEWAY,
            "--label", f"{LABEL}=true", NETWORK)


def remove_network() -> None:
    if _docker("network", "inspect", NETWORK, check=False).returncode == 0:
        _docker("network", "rm", NETWORK, check=False)


def _state(name: str) -> str | None:
    proc = _docker("inspect", "--format", "{{.State.Status}}", name, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def _run_args(host: Host) -> list[str]:
    args = ["run", "-d", "--name", host.name, "--hostname", host.name, "--network", NETWORK,
            "--label", f"{LABEL}=true", *RUN_FLAGS]
    if "registry" in host.groups:
        data = cache_root() / "registry"
        data.mkdir(parents=True, exist_ok=True)
        args += ["-p", f"127.0.0.1:{REGISTRY_PORT}:{REGISTRY_PORT}", "-v", f"{data}:/var/lib/docker-registry"]
    return args + [IMAGE]


def wait_booted(name: str, timeout: float = 90.0) -> str:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        proc = _docker("exec", name, "systemctl", "is-system-running", check=False)
        state = proc.stdout.strip()
        if state in ("running", "degraded"):
            return state
        time.sleep(1)
    raise NodeError(f"node {name} did not finish booting systemd (state {state!r}); see `docker logs {name}`")


def up(hosts: list[Host]) -> dict[str, str]:
    """Create or start a container per host; return what happened to each."""
    if _docker("image", "inspect", IMAGE, check=False).returncode != 0:
        raise NodeError(f"the node image {IMAGE} is missing: run `invoke artifacts` first")
    ensure_network()
    result: dict[str, str] = {}
    for host in hosts:
        state = _state(host.name)
        if state == "running":
            result[host.name] = "running"
            continue
        if state is not None:
            _docker("start", host.name)
            result[host.name] = "started"
        else:
            _docker(*_run_args(host))
            result[host.name] = "created"
    for host in hosts:
        wait_booted(host.name)
    return result


def existing() -> list[str]:
    proc = _docker("ps", "-a", "--filter", f"label={LABEL}=true", "--format", "{{.Names}}", check=False)
    return sorted(proc.stdout.split())


def down(names: list[str] | None = None) -> list[str]:
    """Remove node containers (all kubesweep nodes by default) with their volumes, then the network."""
    names = existing() if names is None else names
    for name in names:
        _docker("rm", "-f", "-v", name, check=False)
    if not existing():
        remove_network()
    return names


def address(name: str) -> str:
    proc = _docker("inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", name)
    return proc.stdout.strip()
