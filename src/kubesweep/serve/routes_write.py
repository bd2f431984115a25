"""The routes that change state: submit a sweep, cancel an experiment, retry its failed trials.

Each needs the token header (auth.writer). Refusals are JSON ``{"message", "errors"}`` with the
status the Manager chose (413 too large, 415, 422 with the body's line numbers, 403, 404, 409).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from kubesweep.errors import KubesweepError
from kubesweep.serve import auth
from kubesweep.serve.forms import MAX_BODY, Refused

router = APIRouter(tags=["runs"])

SWEEP_BODY = {
    "required": True,
    "content": {
        "application/yaml": {"schema": {"type": "string"}, "example": "name: demo\nimage: ...\n"},
        "text/plain": {"schema": {"type": "string"}},
        "application/json": {"schema": {
            "type": "object", "required": ["name", "parameters"],
            "properties": {"name": {"type": "string"}, "image": {"type": "string"}, "model": {"type": "string"},
                           "type": {"enum": ["cpu", "gpu"]}, "gpus": {"type": "integer"},
                           "parameters": {"type": "object"}, "command": {"type": "array", "items": {"type": "string"}},
                           "metric": {"type": "string"}, "direction": {"enum": ["maximize", "minimize"]},
                           "namespace": {"type": "string"}, "cpu": {"type": "string"}, "memory": {"type": "string"},
                           "batchSize": {"type": "integer"}}}},
    },
}


def _answer(exc: Exception) -> JSONResponse:
    if isinstance(exc, Refused):
        return JSONResponse(exc.body(), status_code=exc.status)
    if isinstance(exc, KubesweepError):
        return JSONResponse({"message": str(exc), "errors": []}, status_code=422)
    from kubernetes.client.exceptions import ApiException

    from kubesweep.k8s.client import api_error, no_answer

    message = api_error(exc) if isinstance(exc, ApiException) else no_answer(exc)
    if message is None:
        raise exc
    return JSONResponse({"message": message, "errors": []}, status_code=502)


async def _read_body(request: Request) -> bytes:
    """The body, refused (413) as soon as it grows past MAX_BODY."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY:
        raise Refused(413, f"the body is larger than {MAX_BODY // 1024} KiB; a sweep file is a few kilobytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise Refused(413, f"the body is larger than {MAX_BODY // 1024} KiB; a sweep file is a few kilobytes")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post("/api/sweeps", status_code=201, openapi_extra={"requestBody": SWEEP_BODY},
             summary="Submit a sweep (a sweep file as text, or the JSON form)")
async def submit(request: Request, caller: auth.Caller = Depends(auth.writer), image: str | None = None,
                 name: str | None = None, namespace: str | None = None) -> Any:
    """The body is a sweep file (grid.yaml, Katib Experiment or W&B config: the format is detected
    from its content, as the CLI does) or the JSON form. Validated exactly as `kubesweep sweep`
    does; problems come back as 422 with ``body:LINE:COL`` positions. 201:
    ``{"experiment", "namespace", "trials"}``; the sweep runs on in the server. The query
    parameters are the CLI's --image (a W&B config names no image), --name and --namespace."""
    try:
        body = await _read_body(request)
        return JSONResponse(await run_in_threadpool(
            lambda: request.app.state.manager.submit(body, request.headers.get("content-type", ""), caller,
                                                     image=image, name=name, namespace=namespace)),
            status_code=201)
    except Exception as exc:
        return _answer(exc)


@router.post("/api/experiments/{name}/cancel", summary="Cancel an experiment: its unfinished Jobs are deleted")
async def cancel(name: str, request: Request, caller: auth.Caller = Depends(auth.writer)) -> Any:
    """As `kubesweep cancel`: ``{"cancelled": n}`` unfinished Jobs marked and deleted; a sweep this
    server runs stops, recording its trials in flight as cancelled."""
    try:
        return await run_in_threadpool(request.app.state.manager.cancel, name, caller)
    except Exception as exc:
        return _answer(exc)


@router.post("/api/experiments/{name}/retry", status_code=202,
             summary="Run an experiment's failed and cancelled trials again")
async def retry(name: str, request: Request, caller: auth.Caller = Depends(auth.writer)) -> Any:
    """The same sweep again with --retry-failed (202); 409 while it runs."""
    try:
        return JSONResponse(await run_in_threadpool(request.app.state.manager.retry, name, caller), status_code=202)
    except Exception as exc:
        return _answer(exc)
