"""One watch per resource kind (pods, Jobs) on the experiment's label selector, feeding the
sweep's event queue with ``PodChanged`` / ``JobChanged``; and one on the namespace's FailedCreate
events of Jobs (``CreateFailed``: a pod the Job controller could not create, a full quota above
all), which an identity that may not read events goes without. A sweep through Kueue also watches
the namespace's Workloads (``WorkloadChanged``: why a trial waits in the queue, or was evicted);
they carry no kubesweep labels, so all of the namespace's are watched, and an identity that may
not read them goes without.

Events are parsed as plain JSON (kube.watch), not into the generated models: at thousands of
trials the model round trip was most of the client's CPU.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

from kubesweep.k8s import client as kube
from kubesweep.run.events import CreateFailed, Event, JobChanged, PodChanged, WatchRefused, WorkloadChanged

RESOURCES = {"pod": "pods", "job": "jobs", "workload": "workloads"}
#: Watches the sweep can do without: a refusal ends that watch quietly instead of the sweep.
OPTIONAL = frozenset({"workload"})
#: The events that say a Job's pod could not be created.
FAILED_CREATE = "involvedObject.kind=Job,reason=FailedCreate"


def slim(meta: dict[str, Any]) -> dict[str, Any]:
    """The metadata the sweep reads from a deleted pod or Job: which trial, which Job, whether
    cancelled. Kept for every object watched, so without the rest (managed fields above all)."""
    return {k: meta[k] for k in ("name", "uid", "labels", "annotations", "ownerReferences") if k in meta}


def event(kind: str, change: str, obj: dict[str, Any]) -> Event:
    if kind == "workload":
        return WorkloadChanged(change, obj)  # type: ignore[arg-type]
    return PodChanged(change, obj) if kind == "pod" else JobChanged(change, obj)  # type: ignore[arg-type]


class Watcher:
    # An event that ended a wait on the socket is followed by a pause of GATHER_S[kind], so that
    # the next read finds the events of that time together instead of waking both this thread and
    # the event loop once per event: on this VM each wake-up cost more CPU than parsing the event.
    # Events already buffered (a burst) are passed on without pausing. A pod's events free and
    # fill slots (a trial is collected when its pod succeeds), so that watch pauses briefly. A
    # Job's events only tell of failures, deletions and its uid, which cost no slot time when
    # seen a second later, and they are half of all events (the Job controller's status updates).
    GATHER_S = {"pod": 0.1, "job": 1.0, "workload": 1.0}
    WAITED_S = 0.002

    def __init__(self, c: kube.Clients, namespace: str, selector: str, out: queue.Queue, *, workloads: bool = False):
        self.c, self.ns, self.selector, self.out = c, namespace, selector, out
        self.selectors = {"pod": selector, "job": selector, "workload": None}
        self.workloads = workloads
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        # kind -> object name -> what a DELETED event of it needs of its metadata (``slim``), as
        # last seen; each kind's own thread keeps its map. A relist compares with it to tell which
        # objects were deleted while the watch was away.
        self.known: dict[str, dict[str, dict[str, Any]]] = {"pod": {}, "job": {}, "workload": {}}

    def start(self, pods: dict[str, Any], jobs: dict[str, Any]) -> None:
        """Watch from the versions of these two lists (the sweep's own, just read)."""
        for kind, listed in (("pod", pods), ("job", jobs)):
            self.known[kind] = {o["metadata"]["name"]: slim(o["metadata"]) for o in listed.get("items") or []}
            t = threading.Thread(target=self.watch, args=(kind, listed["metadata"]["resourceVersion"]),
                                 daemon=True, name=f"watch-{kind}")
            t.start()
            self.threads.append(t)
        t = threading.Thread(target=self.failed_creates, daemon=True, name="watch-failed-creates")
        t.start()
        self.threads.append(t)
        if self.workloads:  # listed first by its own thread (relist), then watched
            t = threading.Thread(target=self.watch, args=("workload", None), daemon=True, name="watch-workload")
            t.start()
            self.threads.append(t)

    def failed_creates(self) -> None:
        """FailedCreate events of the namespace's Jobs (those listed first, then as they come),
        as ``CreateFailed``; the sweep keeps those of its own trials. Ends quietly when events may
        not be read."""
        from kubernetes.client.exceptions import ApiException

        path, rv = kube.path("events", self.ns), None
        while not self.stop.is_set():
            try:
                if rv is None:
                    listed = kube.request(self.c, "GET", path, query={"fieldSelector": FAILED_CREATE})
                    for item in listed.get("items") or []:
                        self._failed_create(item)
                    rv = listed["metadata"]["resourceVersion"]
                for ev in kube.watch(self.c, path, {"fieldSelector": FAILED_CREATE, "resourceVersion": rv}):
                    if self.stop.is_set():
                        break
                    if ev.get("type") == "ERROR":
                        rv = None  # too old (410) or another error: list again
                        break
                    item = ev.get("object") or {}
                    rv = (item.get("metadata") or {}).get("resourceVersion", rv)
                    if ev.get("type") in ("ADDED", "MODIFIED"):
                        self._failed_create(item)
            except ApiException as exc:
                # Refused by a ready server: may not read events, so a trial waiting on a quota shows
                # as submitted only. (One that has just restarted refuses everyone until it is ready.)
                if exc.status in (401, 403) and kube.ready(self.c):
                    return
                if exc.status == 410:
                    rv = None
                else:
                    time.sleep(1)
            except Exception:  # noqa: BLE001 - connection drops: reconnect
                time.sleep(1)

    def _failed_create(self, item: dict[str, Any]) -> None:
        obj = item.get("involvedObject") or {}
        if obj.get("name"):
            self.out.put(CreateFailed(obj["name"], obj.get("uid"), " ".join(str(item.get("message") or "").split())))

    def relist(self, kind: str) -> str:
        """After 410 Gone: every object again as MODIFIED, each one deleted meanwhile as DELETED first
        (with its metadata as last seen: a relist shows only what exists, and a trial whose Job
        vanished unseen would hold its slot for good), and the version to watch from."""
        listed = kube.request(self.c, "GET", kube.path(RESOURCES[kind], self.ns), query={"labelSelector": self.selectors[kind]})
        items = listed.get("items") or []
        now_there = {o["metadata"]["name"]: slim(o["metadata"]) for o in items}
        for name, meta in self.known[kind].items():
            if (now_there.get(name) or {}).get("uid") != meta.get("uid"):  # gone, or made again since
                self.out.put(event(kind, "DELETED", {"metadata": meta}))
        self.known[kind] = now_there
        for item in items:
            self.out.put(event(kind, "MODIFIED", item))
        return listed["metadata"]["resourceVersion"]

    def watch(self, kind: str, rv: str | None) -> None:
        """Watch ``kind`` from version ``rv`` until ``stop``: reconnecting, relisting after 410."""
        from kubernetes.client.exceptions import ApiException

        path = kube.path(RESOURCES[kind], self.ns)
        while not self.stop.is_set():
            try:
                if rv is None:  # after 410 Gone: list again (inside the try: a relist may fail too)
                    rv = self.relist(kind)
                before = time.monotonic()
                for ev in kube.watch(self.c, path, {"labelSelector": self.selectors[kind], "resourceVersion": rv}):
                    if self.stop.is_set():
                        break
                    etype, obj = ev.get("type"), ev.get("object") or {}
                    if etype == "ERROR":  # a Status; 410: our version is too old, relist and carry on
                        if obj.get("code") == 410:
                            rv = None
                        else:
                            time.sleep(1)
                        break
                    meta = obj.get("metadata") or {}
                    rv = meta.get("resourceVersion", rv)
                    if etype != "BOOKMARK":
                        if etype == "DELETED":
                            self.known[kind].pop(meta.get("name"), None)
                        else:
                            self.known[kind][meta.get("name")] = slim(meta)
                        self.out.put(event(kind, etype, obj))
                    after = time.monotonic()
                    if after - before > self.WAITED_S:
                        self.stop.wait(self.GATHER_S[kind])
                        after = time.monotonic()
                    before = after
            except ApiException as exc:
                if exc.status == 410:
                    rv = None
                elif kind in OPTIONAL and exc.status in (401, 403, 404) and kube.ready(self.c):
                    return  # a detail the sweep goes without (may not read Workloads; Kueue gone)
                elif exc.status in (401, 403) and kube.ready(self.c):  # the sweep cannot follow its trials:
                    self.out.put(WatchRefused(RESOURCES[kind], kube.api_error(exc)))  # it stops, saying why
                    return
                else:
                    time.sleep(1)
            except Exception:  # noqa: BLE001 - connection drops: reconnect
                time.sleep(1)

    def close(self) -> None:
        self.stop.set()
