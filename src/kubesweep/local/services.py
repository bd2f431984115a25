"""Host services a local cluster needs: the Docker daemon and background helpers (kwok).

Each is started only when it is not already running, as a background process whose pid and log
live under ``CACHE/run/``; ``stop_*`` stops only what kubesweep itself started, so a Docker
daemon the machine was already running is never touched.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from kubesweep.errors import KubesweepError
from kubesweep.local.paths import cache_root


class ServiceError(KubesweepError):
    """A host service could not be started; the message says what to install or free."""


def run_dir() -> Path:
    path = cache_root() / "run"
    path.mkdir(parents=True, exist_ok=True)
    return path


def pid_alive(pid: int) -> bool:
    """Whether the process runs (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def running_pid(name: str) -> int | None:
    """The pid of the background service ``name`` when it runs (its pid file under the cache)."""
    try:
        pid = int((run_dir() / f"{name}.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def _start(name: str, argv: list[str], env: dict[str, str] | None = None) -> int:
    log = open(run_dir() / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
    try:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, close_fds=True, env={**os.environ, **env} if env else None)
    finally:
        log.close()
    (run_dir() / f"{name}.pid").write_text(f"{proc.pid}\n")
    return proc.pid


def _stop(name: str, timeout: float = 20.0) -> bool:
    pid = running_pid(name)
    pidfile = run_dir() / f"{name}.pid"
    if pid is None:
        pidfile.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
    try:  # reap it if it is our child (same process started it)
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    pidfile.unlink(missing_ok=True)
    return True


def _tail(name: str, lines: int = 15) -> str:
    try:
        text = (run_dir() / f"{name}.log").read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# ----------------------------------------------------------------------------- docker daemon


def docker_running() -> bool:
    if shutil.which("docker") is None:
        return False
    proc = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True)
    return proc.returncode == 0 and bool(proc.stdout.strip())


def ensure_docker(timeout: float = 60.0) -> str:
    """Make sure a Docker daemon answers; start Debian's dockerd if none does."""
    if docker_running():
        return "running"
    if shutil.which("docker") is None:
        raise ServiceError("no docker client on PATH: install Debian's docker.io (apt-get install docker.io)")
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        raise ServiceError("no Docker daemon is running and no dockerd is installed: apt-get install docker.io "
                           "(or start your own daemon)")
    if os.geteuid() != 0:
        raise ServiceError("no Docker daemon is running, and starting dockerd needs root")
    _start("dockerd", [dockerd, "--host", "unix:///var/run/docker.sock"])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if docker_running():
            return "started"
        if running_pid("dockerd") is None:
            break
        time.sleep(0.5)
    raise ServiceError(f"dockerd did not come up; its log ({run_dir() / 'dockerd.log'}) ends with:\n{_tail('dockerd')}")


def stop_docker() -> bool:
    """Stop dockerd if kubesweep started it and no container is left running."""
    if running_pid("dockerd") is None:
        return False
    proc = subprocess.run(["docker", "ps", "-q"], capture_output=True, text=True)
    if proc.returncode == 0 and proc.stdout.strip():
        return False
    stopped = _stop("dockerd", timeout=30)
    # dockerd leaves its containerd behind for a moment; wait for the socket to go
    for _ in range(50):
        if not Path("/var/run/docker/containerd/containerd.sock").exists():
            break
        time.sleep(0.1)
    return stopped


# ------------------------------------------------------------------------ background helpers


def port_free(host: str, port: int) -> bool:
    """Nothing listens on host:port (a helper about to bind it can)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def start_background(name: str, argv: list[str], env: dict[str, str] | None = None) -> int:
    """Start a named background helper (e.g. kwok) unless it already runs, with ``env`` added to
    this process's environment; return its pid."""
    pid = running_pid(name)
    return pid if pid is not None else _start(name, argv, env)


def background_pid(name: str) -> int | None:
    """The pid of a named background helper that kubesweep started and that still runs."""
    return running_pid(name)


def stop_background(name: str) -> bool:
    return _stop(name)


def log_tail(name: str, lines: int = 15) -> str:
    return _tail(name, lines)
