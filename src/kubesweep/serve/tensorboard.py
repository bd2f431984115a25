"""Each experiment's TensorBoard, through the server: started by a POST, then reached under
``/tensorboard/<experiment>/`` on the server itself, which passes every request there on to it.

``POST /api/experiments/{name}/tensorboard`` (the token header: it creates a Deployment and a
Service) starts the experiment's TensorBoard or reuses it (run/tensorboard.py), waits for its pod
and answers ``{"url": "/tensorboard/<name>/"}``. How the server reaches it depends on where it
runs: on a user's machine through a port-forward it holds (pods/portforward, as `kubesweep
tensorboard` does); in the cluster (the in-cluster configuration) at the Service's DNS name, which
a pod can reach and a laptop cannot. Either way the browser talks to the server only, so the
page's TensorBoard button works wherever the page does: on loopback, behind `kubectl
port-forward` to the in-cluster server, behind an Ingress.

TensorBoard runs with ``--path_prefix /tensorboard/<experiment>``, so a path is passed on as it
is. What TensorBoard's own page asks for (its scripts, ``data/...`` by XHR, some by POST) cannot
carry the Authorization header, so the POST that starts it also answers a cookie: an HMAC of the
experiment and an expiry under a key the process draws at start, ``HttpOnly``, ``SameSite=Strict``
and limited to that experiment's path. It opens that TensorBoard only, for reading: nothing under
``/tensorboard/`` changes state, and every other route still needs the header. On loopback without
a tokens file (reading open there) no cookie is needed. A server restart draws a new key; the
button then asks again.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from typing import Any, Callable

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from kubesweep.serve import auth
from kubesweep.spec.rules import DNS_LABEL

router = APIRouter()

#: How long the POST waits for the TensorBoard pod to be ready before answering 503.
WAIT_S = 120.0
#: How long the cookie the POST answers opens the experiment's TensorBoard.
COOKIE_S = 12 * 3600
COOKIE = "kubesweep-tensorboard"
#: Headers that belong to one hop (RFC 9110 7.6.1), and those that belong to this server (its
#: token, its cookie) or that httpx sets itself, neither passed on.
_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
        "transfer-encoding", "upgrade"}
_NOT_PASSED = _HOP | {"host", "authorization", "cookie", "content-length"}
_NOT_RETURNED = _HOP | {"set-cookie"}


def in_cluster(cfg: Any) -> bool:
    """Whether the server runs in a pod and talks to its own cluster (no kubeconfig named): it
    then reaches TensorBoard's Service by its DNS name instead of forwarding a port."""
    from kubesweep.k8s import client as kube

    return not cfg.target.kubeconfig and not cfg.target.context and kube.in_cluster()


class TensorBoards:
    """The experiments' TensorBoards this server has started or found: where each answers (a
    port-forward it holds, or a Service's address), the cookies' key, the HTTP client that passes
    requests on. One per application; ``close`` stops the forwards."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # guards the dicts below (held for a moment, never across a wait)
        self._starting: dict[str, threading.Lock] = {}  # one start at a time per experiment, however many ask
        self._image_lock = threading.Lock()
        self.bases: dict[str, str] = {}
        self.forwards: dict[str, Any] = {}
        self._image: str | None = None
        self.key = secrets.token_bytes(32)
        self._http: Any = None

    # -- cookies -----------------------------------------------------------------------------

    def _mac(self, name: str, expires: int) -> str:
        return hmac.new(self.key, f"{name}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def ticket(self, name: str, now: float | None = None) -> str:
        expires = int((time.time() if now is None else now) + COOKIE_S)
        return f"{expires}.{self._mac(name, expires)}"

    def admits(self, name: str, ticket: str | None, now: float | None = None) -> bool:
        expires, _, mac = (ticket or "").partition(".")
        if not expires.isdigit() or int(expires) < (time.time() if now is None else now):
            return False
        return hmac.compare_digest(mac, self._mac(name, int(expires)))

    # -- where each answers ------------------------------------------------------------------

    def start(self, cfg: Any, c: Any, namespace: str, name: str, image: Callable[[], str]) -> str:
        """Start (or reuse) ``name``'s TensorBoard and remember where it answers; its base URL.
        Every call makes sure the Deployment and Service are there (two GETs when they are), so a
        TensorBoard removed meanwhile (`kubesweep clean`) is made again; ``image()`` is asked once."""
        from kubesweep.run import tensorboard as tb

        with self._image_lock:  # built or looked up once, however many experiments ask at first
            if self._image is None:
                self._image = image()
        with self.lock:
            starting = self._starting.setdefault(name, threading.Lock())
        # Waiting for one experiment's pod (up to WAIT_S) holds up only that experiment's callers.
        with starting:
            service = tb.ensure(c, namespace, name, image=self._image)
            if in_cluster(cfg):
                tb.ready_pod(c, namespace, service, timeout_s=WAIT_S)
                base = tb.service_url(namespace, service)
            elif name in self.forwards:  # the forward finds the ready pod again when its pod went
                base = self.forwards[name].base
            else:
                held = tb.forward(c, namespace, service, timeout_s=WAIT_S, path=tb.path_prefix(name) + "/")
                with self.lock:
                    self.forwards[name] = held
                base = held.base
            with self.lock:
                self.bases[name] = base
            return base

    def http(self) -> Any:
        import httpx

        if self._http is None:  # made on the event loop that uses it
            self._http = httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=10.0), follow_redirects=False)
        return self._http

    async def close(self) -> None:
        with self.lock:
            held_now = list(self.forwards.values())
            self.forwards.clear()
            self.bases.clear()
        for held in held_now:
            held.close()
        if self._http is not None:
            await self._http.aclose()
            self._http = None


def image(cfg: Any) -> str:
    """--tensorboard-image, else (not in the cluster) the image built here with tensorboard from
    PyPI and pushed to the local registry, as `kubesweep tensorboard` does."""
    if cfg.tensorboard_image:
        return cfg.tensorboard_image
    if in_cluster(cfg):
        raise HTTPException(501, "this server has no TensorBoard image (it runs in the cluster, where none can be "
                                 "built): install it with kubesweep_serve_tensorboard_image, or start it with "
                                 "--tensorboard-image REF")
    from kubesweep.local import tensorboard_image

    return tensorboard_image.ensure().reference


@router.post("/api/experiments/{name}/tensorboard",
             summary="Start or reuse the experiment's TensorBoard; its path on this server")
def start(name: str, request: Request, caller: auth.Caller = Depends(auth.writer)) -> JSONResponse:
    """A POST with the token: it may create a Deployment and a Service in the cluster, which a GET
    (open on loopback, and sent by any page's <img>) must never do. The answer sets the cookie that
    opens this experiment's TensorBoard in a browser tab, which cannot send the header."""
    from kubesweep.run import tensorboard as tb
    from kubesweep.serve import routes_read

    s = routes_read.store(request)
    routes_read._seen(s, name, caller)
    namespace = s.namespace(name)
    if namespace is None:
        raise HTTPException(404, f"{name} has no plan (jobs/{name}/plan.json), so its namespace is unknown")
    boards: TensorBoards = request.app.state.tensorboards
    cfg = request.app.state.cfg
    try:
        boards.start(cfg, routes_read._clients(request), namespace, name, lambda: image(cfg))
    except HTTPException:
        raise
    except Exception as exc:  # noqa: BLE001 - sorted by _cluster_error, the rest raised again
        raise routes_read._cluster_error(exc) from None
    path = tb.path_prefix(name) + "/"
    answer = JSONResponse({"url": path})
    answer.set_cookie(COOKIE, boards.ticket(name), max_age=COOKIE_S, path=path, httponly=True, samesite="strict")
    return answer


def _admitted(request: Request, name: str, boards: TensorBoards) -> None:
    """The header's caller if there is one (who must see the experiment), else this experiment's
    cookie, else reading open on loopback without a tokens file; 401 otherwise."""
    from kubesweep.serve import routes_read

    if request.headers.get("authorization") is not None:
        routes_read._seen(routes_read.store(request), name, auth.reader(request))
        return
    if boards.admits(name, request.cookies.get(COOKIE)):
        return
    cfg = request.app.state.cfg
    if cfg.loopback and not cfg.tokens.from_file:
        return
    raise HTTPException(401, f"open this TensorBoard from the page's TensorBoard button, or POST "
                             f"/api/experiments/{name}/tensorboard with your token first (its answer sets the cookie "
                             "that opens it)")


def _named(name: str) -> None:
    """An experiment's name, or 404: nothing else is looked up, nor written into a redirect."""
    if not (DNS_LABEL.fullmatch(name) and len(name) <= 63):
        raise HTTPException(404, "no such experiment")


@router.api_route("/tensorboard/{name}", methods=["GET", "HEAD"], include_in_schema=False)
def slash(name: str) -> Response:
    _named(name)
    return RedirectResponse(f"{name}/", status_code=308)


@router.api_route("/tensorboard/{name}/{path:path}", methods=["GET", "HEAD", "POST"], include_in_schema=False)
async def passed_on(name: str, path: str, request: Request) -> Response:
    """The request, as it came, to the experiment's TensorBoard; its answer, as it came, back."""
    import httpx

    _named(name)
    boards: TensorBoards = request.app.state.tensorboards
    await run_in_threadpool(_admitted, request, name, boards)
    base = boards.bases.get(name)
    if base is None:
        raise HTTPException(404, f"the TensorBoard of {name} is not started on this server: POST "
                                 f"/api/experiments/{name}/tensorboard (the page's TensorBoard button) starts it")
    raw = request.scope.get("raw_path") or request.url.path.encode()  # as sent: TensorBoard decodes it
    url = f"{base}{raw.decode('latin-1')}" + (f"?{request.url.query}" if request.url.query else "")
    headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _NOT_PASSED]
    body = await request.body() if request.method == "POST" else None
    client = boards.http()
    try:
        upstream = await client.send(client.build_request(request.method, url, headers=headers, content=body),
                                     stream=True)
    except httpx.HTTPError as exc:
        raise HTTPException(502, f"the TensorBoard of {name} does not answer ({type(exc).__name__}: {exc}); "
                                 "its pod may be restarting: try again in a moment") from None
    out = [(k, v) for k, v in upstream.headers.multi_items() if k.lower() not in _NOT_RETURNED]
    out = [(k, v[len(base):] if k.lower() == "location" and v.startswith(base) else v) for k, v in out]
    response = StreamingResponse(upstream.aiter_raw(), status_code=upstream.status_code,
                                 background=BackgroundTask(upstream.aclose))
    response.raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in out]
    return response
