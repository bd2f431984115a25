"""What reaches a running sweep's event loop, typed: the watches' changes and the answers of the
log reads done off the loop. One queue carries them all (``Sweep.events``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Union

Change = Literal["ADDED", "MODIFIED", "DELETED"]


@dataclass(frozen=True, slots=True)
class PodChanged:
    """A pod of the experiment, as the watch (or a relist) saw it."""

    change: Change
    pod: dict[str, Any]


@dataclass(frozen=True, slots=True)
class JobChanged:
    """A Job of the experiment, as the watch (or a relist) saw it."""

    change: Change
    job: dict[str, Any]


@dataclass(frozen=True, slots=True)
class WorkloadChanged:
    """A Kueue Workload of the sweep's namespace (any Job's: Workloads carry no kubesweep labels)."""

    change: Change
    workload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class LogRead:
    """A finished trial's log, read: how its Job ended (``outcome``, ``reason``, ``message``) and
    what it printed (``log``), or why it could not be read (``log_error``)."""

    trial: str
    outcome: str
    reason: str | None
    message: str | None
    log: str
    log_error: str | None = None


@dataclass(frozen=True, slots=True)
class LogFollowed:
    """What a running trial's pod logged since the last read (None: it could not be read now)."""

    trial: str
    pod: str
    text: str | None


@dataclass(frozen=True, slots=True)
class CreateFailed:
    """The Job controller could not create a trial's pod (its FailedCreate event): a quota full
    for now, or an admission refusal of the pod (PodSecurity, LimitRange, a webhook)."""

    job: str
    uid: str | None
    message: str


@dataclass(frozen=True, slots=True)
class WatchRefused:
    """A watch the sweep cannot do without was refused (401/403): the sweep stops, saying why."""

    what: str
    message: str


Event = Union[WorkloadChanged, PodChanged, JobChanged, LogRead, LogFollowed, CreateFailed, WatchRefused]
