"""The API's GET routes: experiments, trials, curves, logs, results, TensorBoard, events.

Every route answers an experiment the caller may not see (another team's namespace) with 404,
exactly as one that does not exist. JSON is encoded with orjson: an experiment of 2,000 trials is
a few hundred kilobytes, which FastAPI's own encoder walks value by value.
"""

from __future__ import annotations

import asyncio
import mimetypes
import threading
from pathlib import Path
from typing import Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, Response, StreamingResponse

from kubesweep.errors import KubesweepError
from kubesweep.run import report as reports
from kubesweep.serve import auth
from kubesweep.serve.store import Store

router = APIRouter(prefix="/api")

#: Seconds between the keepalive comments of an event stream (proxies close idle connections).
KEEPALIVE_S = 15.0


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


def store(request: Request) -> Store:
    return request.app.state.store


def _seen(s: Store, name: str, caller: auth.Caller) -> None:
    """404 unless the experiment exists and the caller sees its namespace."""
    if not s.exists(name) or not caller.sees(s.namespace(name)):
        raise HTTPException(404, f"no experiment {name}")


@router.get("/health")
def health() -> JSON:
    return JSON({"ok": True})


@router.get("/experiments", summary="Every experiment the caller sees, with counts by state and the best trial")
def experiments(request: Request, caller: auth.Caller = Depends(auth.reader)) -> JSON:
    s = store(request)
    found = []
    for name in s.names():
        summary = s.summary(name)
        if summary is not None and caller.sees(summary["namespace"]):
            found.append(summary)
    return JSON({"experiments": found})


@router.get("/experiments/{name}", summary="One experiment: its summary and every trial's row")
def experiment(name: str, request: Request, caller: auth.Caller = Depends(auth.reader)) -> JSON:
    s = store(request)
    _seen(s, name, caller)
    got = s.experiment(name)
    if got is None:
        raise HTTPException(404, f"no experiment {name}")
    return JSON(got)


@router.get("/experiments/{name}/curves", summary="Learning curves: trial -> [[step, value], ...]")
def curves(name: str, request: Request, caller: auth.Caller = Depends(auth.reader)) -> JSON:
    s = store(request)
    _seen(s, name, caller)
    got = s.curves(name)
    if got is None:
        raise HTTPException(404, f"no experiment {name}")
    return JSON(got)


def _trial_of(s: Store, name: str, trial: str) -> None:
    got = s.experiment(name)
    if got is None or not any(r["name"] == trial for r in got["trials"]):
        raise HTTPException(404, f"no trial {trial} in experiment {name}")


def _clients(request: Request) -> Any:
    from kubesweep.k8s import client as kube

    target = request.app.state.cfg.target
    return kube.clients(target.kubeconfig, target.context)


def _cluster_error(exc: Exception) -> HTTPException:
    """What the cluster said, as the CLI prints it: 404 for a log that is gone, 503 otherwise."""
    from kubernetes.client.exceptions import ApiException

    from kubesweep.k8s import client as kube

    if isinstance(exc, ApiException):
        return HTTPException(404 if exc.status == 404 else 502, kube.api_error(exc))
    if isinstance(exc, KubesweepError):
        return HTTPException(404 if str(exc).startswith("no pod") else 503, str(exc))
    why = kube.no_answer(exc)
    if why is None:
        raise exc
    return HTTPException(503, why)


@router.get("/experiments/{name}/trials/{trial}/log", response_class=StreamingResponse,
            summary="A trial's log as text; follow=1 streams it until the pod ends (?token= allowed)")
def trial_log(name: str, trial: str, request: Request, follow: bool = False,
              tail: int | None = Query(None, ge=0), caller: auth.Caller = Depends(auth.stream_reader)) -> Response:
    s = store(request)
    _seen(s, name, caller)
    _trial_of(s, name, trial)
    namespace = s.namespace(name)
    try:
        c = _clients(request)
        if not follow:
            from kubesweep.run import lifecycle

            return Response(lifecycle.logs(c, trial, tail, namespace), media_type="text/plain; charset=utf-8")
        resp = _follow(c, namespace, trial, tail)  # errors (no pod, no permission) are answered here, before the 200
    except Exception as exc:  # noqa: BLE001 - sorted by _cluster_error, the rest raised again
        raise _cluster_error(exc) from None
    return StreamingResponse(_relay(resp), media_type="text/plain; charset=utf-8",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _follow(c: Any, namespace: str | None, trial: str, tail: int | None) -> Any:
    """The followed log of the trial's newest pod: the open response (the API server ends it when
    the container ends)."""
    from kubesweep.k8s import client as kube
    from kubesweep.plan import job as manifest

    pods = kube.request(c, "GET", kube.path("pods", namespace), query={"labelSelector": f"{manifest.L_TRIAL}={trial}"},
                        timeout=(10, 30)).get("items") or []
    if not pods:
        raise KubesweepError(f"no pod for trial {trial}" + (f" in namespace {namespace}" if namespace else "")
                             + " (finished Jobs may have been cleaned; see results/)")
    pod = max(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "")["metadata"]
    return kube.pod_log_stream(c, pod["namespace"], pod["name"], manifest.CONTAINER, tail=tail)


#: Chunks of a followed log held for a reader that is slower than the trial writes.
LOG_CHUNKS = 64


async def _relay(resp: Any) -> Any:
    """The chunks of a followed log, read by a thread of its own (a follow lasts as long as the
    trial: the server's thread pool, which the other routes need, is not held by it). When the
    reader leaves, the connection to the API server is shut, which ends the thread's read at once."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(LOG_CHUNKS)
    gone = threading.Event()

    def hand(item: bytes | None) -> None:
        try:
            put = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
        except RuntimeError:  # the event loop stopped
            return
        while True:
            try:
                put.result(timeout=1)
                return
            except TimeoutError:  # the queue is full: the reader is slow, or gone
                if gone.is_set():
                    put.cancel()
                    return
            except Exception:  # noqa: BLE001 - cancelled with the loop
                return

    def pump() -> None:
        try:
            for chunk in resp.stream(amt=4096, decode_content=True):
                if gone.is_set():
                    break
                hand(chunk)
        except Exception:  # noqa: BLE001 - shut by the reader leaving, or the API server going: the stream ends
            pass
        finally:
            resp.close()  # here, by the thread that reads it: a close waits for a read under way
            hand(None)

    threading.Thread(target=pump, name="log-follow", daemon=True).start()
    try:
        while (chunk := await queue.get()) is not None:
            yield chunk
    finally:
        gone.set()
        _shut(resp)  # the thread's read returns, and it closes the response


def _shut(resp: Any) -> None:
    """Shut the response's socket for reading (urllib3's ``shutdown``, TLS included), so that a
    thread blocked reading it returns at once; a syscall, which never waits."""
    try:
        resp.shutdown()
    except (AttributeError, ValueError, RuntimeError, OSError):  # its connection is gone already
        pass


def _results(s: Store, name: str) -> Path:
    return s.results_dir / name


@router.get("/experiments/{name}/results", summary="best.json of the experiment's report")
def results(name: str, request: Request, caller: auth.Caller = Depends(auth.reader)) -> Response:
    s = store(request)
    _seen(s, name, caller)
    path = _results(s, name) / reports.BEST
    if not path.is_file():
        raise HTTPException(404, f"{name} has no report yet (it is written when a sweep ends)")
    return Response(path.read_bytes(), media_type="application/json")


@router.get("/experiments/{name}/results/trials.csv", summary="trials.csv of the experiment's report")
def results_csv(name: str, request: Request, caller: auth.Caller = Depends(auth.reader)) -> Response:
    s = store(request)
    _seen(s, name, caller)
    path = _results(s, name) / reports.CSV
    if not path.is_file():
        raise HTTPException(404, f"{name} has no report yet (it is written when a sweep ends)")
    return FileResponse(path, media_type="text/csv; charset=utf-8", filename=f"{name}-trials.csv")


def inside(root: Path, relative: str) -> Path | None:
    """``root/relative`` when it is a file inside ``root`` once every link is followed; else None."""
    if not relative or "\x00" in relative:
        return None
    base = root.resolve()
    try:
        path = (base / relative).resolve()
    except (OSError, RuntimeError, ValueError):  # a link loop, a name the OS refuses
        return None
    if path == base or not path.is_relative_to(base):
        return None
    return path if path.is_file() else None


@router.get("/experiments/{name}/results/files/{file:path}", summary="A file of the report (PNG, HTML) under results/<experiment>/")
def results_file(name: str, file: str, request: Request, caller: auth.Caller = Depends(auth.reader)) -> Response:
    s = store(request)
    _seen(s, name, caller)
    path = inside(_results(s, name), file)
    if path is None:
        raise HTTPException(404, f"no file {file} in the results of {name}")
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=kind, headers={"X-Content-Type-Options": "nosniff"})


@router.get("/events", summary="Server-sent events: trial, experiment, progress (?token= allowed)",
            response_class=StreamingResponse)
async def events(request: Request, experiment: str | None = None,
                 caller: auth.Caller = Depends(auth.stream_reader)) -> StreamingResponse:
    s: Store = request.app.state.store
    sub = request.app.state.broker.subscribe()

    def visible(event: str, data: dict[str, Any]) -> bool:
        name = data.get("name") if event == "experiment" else data.get("experiment")
        if experiment is not None and name != experiment:
            return False
        if caller.namespaces is None:
            return True
        namespace = data.get("namespace") if "namespace" in data else (s.namespace(name) if name else None)
        return caller.sees(namespace)

    async def stream() -> Any:
        try:
            yield b"retry: 3000\n\n"
            while True:
                try:
                    item = await sub.get(KEEPALIVE_S)
                except StopAsyncIteration:  # dropped for falling behind: EventSource reconnects
                    return
                if item is None:
                    yield b": keepalive\n\n"
                    continue
                event, data = item
                if visible(event, data):
                    yield b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data, default=str) + b"\n\n"
        except asyncio.CancelledError:
            raise
        finally:
            sub.close()

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
