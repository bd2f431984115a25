"""Run one input in a forked child under hard limits on CPU time and memory.

A sweep file is read by a person's laptop or a CI runner; no input may make kubesweep spin for
minutes or eat the machine's memory before it says what is wrong. The fuzzer therefore runs each
input in a child process (``os.fork``: the parent's imports and compiled schema are shared, so a
child starts in about a millisecond) with

- ``RLIMIT_AS`` at the parent's current virtual size plus :data:`MEMORY_HEADROOM`: an input that
  needs more raises ``MemoryError`` in the child (or, in C code, kills it);
- ``RLIMIT_CPU`` at :data:`CPU_SECONDS`: at the soft limit the kernel sends SIGXCPU, which the
  child turns into :class:`CpuLimit` so the report carries the traceback of the loop that spun;
  one second later the hard limit kills a child stuck in C code;
- a wall-clock backstop in the parent (:data:`WALL_SECONDS`, generous because this machine is
  shared with a long build): a child that blocks (reads a FIFO, sleeps) is killed.

The child reports back through a pipe: the kind of outcome, the message (the SpecError text, or
the traceback of anything else), its wall and CPU seconds and how much its peak resident memory
grew. Nothing the child does can take the test process down with it.
"""

from __future__ import annotations

import json
import os
import resource
import select
import signal
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable

#: CPU seconds one input may cost (parse, validate, expand, render and write).
CPU_SECONDS = 5
#: Memory one input may add on top of what the test process already uses.
MEMORY_HEADROOM = 300 * 2**20
#: A backstop only: the CPU limit is the budget, but a child that blocks uses no CPU.
WALL_SECONDS = 60

#: Outcome kinds. Only OK and SPEC_ERROR are acceptable for an input.
OK, SPEC_ERROR, ERROR, MEMORY, CPU, KILLED, HUNG = "ok", "spec_error", "error", "memory", "cpu", "killed", "hung"


class CpuLimit(BaseException):
    """Raised in the child by SIGXCPU: the input used up its CPU seconds. A BaseException, so
    that no ``except Exception`` in the code under test can swallow it."""


@dataclass(frozen=True)
class Outcome:
    """What happened to one input in its child process."""

    kind: str
    message: str = ""
    result: Any = None  # what the child's function returned (JSON-able), for OK
    seconds: float = 0.0  # wall-clock seconds in the child
    cpu_seconds: float = 0.0
    peak_mib: float = 0.0  # growth of the child's peak resident set over its start

    def describe(self) -> str:
        return (f"{self.kind} after {self.seconds:.2f} s wall, {self.cpu_seconds:.2f} s CPU, "
                f"+{self.peak_mib:.0f} MiB peak memory:\n{self.message}")


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def virtual_size() -> int:
    """This process's current virtual memory size in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _on_sigxcpu(signum: int, frame: Any) -> None:
    raise CpuLimit("the input used up its CPU seconds (RLIMIT_CPU)")


def _child(fn: Callable[[], Any], out: int, cpu_seconds: int, memory: int) -> None:
    signal.signal(signal.SIGXCPU, _on_sigxcpu)
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1 if hard == resource.RLIM_INFINITY
                                             else min(hard, cpu_seconds + 1)))
    limit = virtual_size() + memory
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit if hard == resource.RLIM_INFINITY else min(hard, limit)))
    try:  # reset the peak-RSS counter, so the peak is this input's, not the parent's history
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    rss0 = _status_kib("VmRSS")
    wall0, cpu0 = time.monotonic(), time.process_time()
    report: dict[str, Any]
    try:
        result = fn()
        report = {"kind": OK, "result": result}
    except MemoryError:
        report = {"kind": MEMORY, "message": traceback.format_exc()}
    except CpuLimit:
        report = {"kind": CPU, "message": traceback.format_exc()}
    except BaseException as exc:  # noqa: BLE001 - every other exception is reported, by kind
        from kubesweep.errors import SpecError

        if isinstance(exc, SpecError):
            report = {"kind": SPEC_ERROR, "message": str(exc)}
        else:
            report = {"kind": ERROR, "message": traceback.format_exc()}
    signal.signal(signal.SIGXCPU, signal.SIG_IGN)  # reporting must not be cut short
    report["seconds"] = time.monotonic() - wall0
    report["cpu_seconds"] = time.process_time() - cpu0
    report["peak_mib"] = max(0, _status_kib("VmHWM") - rss0) / 1024
    data = json.dumps(report, default=repr).encode()
    view = memoryview(data)
    while view:
        view = view[os.write(out, view):]


def run_limited(fn: Callable[[], Any], *, cpu_seconds: int = CPU_SECONDS, memory: int = MEMORY_HEADROOM,
                wall_seconds: float = WALL_SECONDS) -> Outcome:
    """Call ``fn()`` in a forked child under the limits; return what happened.

    ``fn`` runs in the child: its effects on files are visible afterwards, its effects on the
    parent's memory are not. What it returns must be JSON-serialisable.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into the test runner
        try:
            os.close(read_end)
            _child(fn, write_end, cpu_seconds, memory)
        except BaseException:  # noqa: BLE001 - a child that cannot even report exits non-zero
            os._exit(70)
        os._exit(0)
    os.close(write_end)
    chunks: list[bytes] = []
    deadline = time.monotonic() + wall_seconds
    hung = False
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                hung = True
                os.kill(pid, signal.SIGKILL)
                break
            ready, _, _ = select.select([read_end], [], [], left)
            if ready:
                chunk = os.read(read_end, 1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
    finally:
        os.close(read_end)
        _, status = os.waitpid(pid, 0)
    if hung:
        return Outcome(HUNG, f"still running after {wall_seconds:.0f} s of wall-clock time; killed", seconds=wall_seconds)
    if chunks:
        try:
            report = json.loads(b"".join(chunks))
        except ValueError:
            report = None
        if report is not None:
            return Outcome(report["kind"], report.get("message", ""), report.get("result"), report["seconds"],
                           report["cpu_seconds"], report["peak_mib"])
    if os.WIFSIGNALED(status):
        sig = signal.Signals(os.WTERMSIG(status))
        why = {signal.SIGXCPU: "the CPU limit", signal.SIGKILL: "SIGKILL (the hard CPU limit, or out of memory)",
               signal.SIGSEGV: "a segmentation fault (stack overflow in C code?)"}.get(sig, sig.name)
        return Outcome(KILLED, f"the child was killed by {sig.name}: {why}")
    return Outcome(KILLED, f"the child exited with status {os.WEXITSTATUS(status)} without a report")
