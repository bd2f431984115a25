"""Local "bare servers": Debian systemd containers that Ansible then treats like any machine.

This VM cannot run ``docker run --privileged`` (it lacks CAP_SYS_RESOURCE), so a node gets every
capability but that one, unconfined seccomp/AppArmor, all devices, the host's cgroup tree, tmpfs
on /run, ``/dev/kmsg`` (kubelet reads it), and a volume for /var/lib/containerd (overlay on
overlay fails; kind does the same with /var). Nodes sit on their own bridge network with a fixed
subnet, so the host is always at the gateway address — where the offline mirror is served.

Which nodes exist comes from the Ansible inventory: every host of a local inventory is a node
container of that name. Ansible reaches them over SSH like servers: a host whose inventory entry
has ``ansible_host: 127.0.0.1`` and an ``ansible_port`` gets that port published on 127.0.0.1
only (to the node's sshd), and its ``ansible_user`` is made on the node, a non-root user with
passwordless sudo who logs in with the cluster's own ed25519 key (``ssh_key``, made on first use
under the cache and removed with the cluster).
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
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


USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")  # what useradd accepts by default (NAME_REGEX)
LOOPBACK = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class Host:
    name: str
    groups: tuple[str, ...]
    vars: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def ssh_port(self) -> int | None:
        """The port published on 127.0.0.1 for the node's sshd (None: not reached over SSH)."""
        if str(self.vars.get("ansible_host", "")) not in LOOPBACK or "ansible_port" not in self.vars:
            return None
        try:
            port = int(self.vars["ansible_port"])
        except (TypeError, ValueError):
            raise NodeError(f"host {self.name}: ansible_port {self.vars['ansible_port']!r} is not a port number") from None
        if not 1024 <= port <= 65535:
            raise NodeError(f"host {self.name}: ansible_port {port} is outside 1024-65535 (a local node's SSH "
                            "port is published on 127.0.0.1 and must not need root or clash with this machine's)")
        return port

    @property
    def ssh_user(self) -> str | None:
        user = self.vars.get("ansible_user")
        if user is None or self.ssh_port is None:
            return None
        if not isinstance(user, str) or not USER_NAME.fullmatch(user) or user == "root":
            raise NodeError(f"host {self.name}: ansible_user {user!r} must be a non-root user name "
                            "(lowercase letters, digits, _ and -, at most 32, not starting with a digit)")
        return user


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
    if host.ssh_port is not None:
        args += ["-p", f"127.0.0.1:{host.ssh_port}:22"]
    return args + [IMAGE]


def ssh_key(inventory: Path) -> Path:
    """The private key of a local cluster's SSH user (one per inventory), made when missing."""
    key = cache_root() / "ssh" / Path(inventory).name / "id_ed25519"
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        key.parent.chmod(0o700)
        for stale in (key, key.with_suffix(".pub")):
            stale.unlink(missing_ok=True)
        proc = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"kubesweep-{Path(inventory).name}",
                               "-f", str(key)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise NodeError(f"ssh-keygen failed: {proc.stderr.strip()}")
    return key


def remove_ssh_keys() -> None:
    """Forget every local cluster's key: the next cluster gets a new one."""
    shutil.rmtree(cache_root() / "ssh", ignore_errors=True)


def _exec(name: str, *argv: str, stdin: str | None = None) -> None:
    proc = subprocess.run(["docker", "exec", *(["-i"] if stdin is not None else []), name, *argv],
                          input=stdin, capture_output=True, text=True)
    if proc.returncode != 0:
        raise NodeError(f"on node {name}, {argv[0]} failed: {(proc.stderr or proc.stdout).strip()}")


def ensure_ssh_user(host: Host, public_key: str) -> None:
    """The host's ansible_user: made when missing, passwordless sudo, the cluster's key authorized."""
    user = host.ssh_user
    if user is None:
        return
    if _docker("exec", host.name, "id", "-u", user, check=False).returncode != 0:
        _exec(host.name, "useradd", "--create-home", "--shell", "/bin/bash", "--user-group", user)
    _exec(host.name, "tee", f"/etc/sudoers.d/{user}", stdin=f"{user} ALL=(ALL:ALL) NOPASSWD: ALL\n")
    _exec(host.name, "chmod", "0440", f"/etc/sudoers.d/{user}")
    home = f"/home/{user}"
    _exec(host.name, "install", "-d", "-m", "0700", "-o", user, "-g", user, f"{home}/.ssh")
    _exec(host.name, "tee", f"{home}/.ssh/authorized_keys", stdin=public_key.strip() + "\n")
    _exec(host.name, "chown", f"{user}:{user}", f"{home}/.ssh/authorized_keys")
    _exec(host.name, "chmod", "0600", f"{home}/.ssh/authorized_keys")


def wait_ssh(host: Host, timeout: float = 60.0) -> None:
    """Until the node's sshd answers on its published port with an SSH banner."""
    port = host.ssh_port
    if port is None:
        return
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=3) as conn:
                banner = conn.recv(64)
            if banner.startswith(b"SSH-"):
                return
            last = f"answered {banner[:20]!r}"
        except OSError as exc:
            last = str(exc)
        time.sleep(1)
    raise NodeError(f"node {host.name}: no SSH server on 127.0.0.1:{port} after {timeout:.0f}s ({last}); "
                    f"see `docker exec {host.name} systemctl status ssh`")


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


def validate(hosts: list[Host]) -> None:
    """Every host's SSH settings, before any container is made: ports, users, no port twice."""
    seen: dict[int, str] = {}
    for host in hosts:
        port, _ = host.ssh_port, host.ssh_user
        if port is not None and port in seen:
            raise NodeError(f"hosts {seen[port]} and {host.name} both have ansible_port {port}")
        if port == REGISTRY_PORT:
            raise NodeError(f"host {host.name}: ansible_port {port} is the cluster registry's port")
        if port is not None:
            seen[port] = host.name


def up(hosts: list[Host], key: Path | None = None) -> dict[str, str]:
    """Create or start a container per host; return what happened to each. With ``key`` (a
    private key; its .pub next to it) each host's ansible_user is made and can log in with it."""
    validate(hosts)
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
    if key is not None:
        public = Path(f"{key}.pub").read_text()
        for host in hosts:
            ensure_ssh_user(host, public)
            wait_ssh(host)
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
