"""The FastAPI application of `kubesweep serve`: the routers, the shared objects, the lifespan.

``create_app`` wires what the modules hold: the event broker, the sweeps' manager (started with
the server: it resumes the sweeps it was running; stopped with it), the store the GET routes read,
and the experiments' TensorBoards the server reaches (serve/tensorboard.py). Its OpenAPI schema is at /openapi.json.
"""

from __future__ import annotations

import socket
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from kubesweep import __version__
from kubesweep.serve import auth, events, page, routes_read, routes_write, tensorboard
from kubesweep.serve.config import ServeConfig
from kubesweep.serve.store import Store


def create_app(cfg: ServeConfig, *, manager: Any = None) -> FastAPI:
    """The application for ``cfg``; ``manager``: a runs.Manager already made (tests), else one is."""
    broker = events.Broker()
    if manager is None:
        from kubesweep.serve import runs

        manager = runs.Manager(cfg, broker)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(manager.start)  # resuming may read the cluster: not on the event loop
        try:
            yield
        finally:
            await run_in_threadpool(manager.stop)
            await app.state.tensorboards.close()

    app = FastAPI(title="kubesweep", version=__version__, lifespan=lifespan, redoc_url=None,
                  description="Run hyperparameter sweeps as Kubernetes Jobs and follow them: the API of "
                              "`kubesweep serve`.")
    app.state.cfg = cfg
    app.state.broker = broker
    app.state.manager = manager
    app.state.store = Store(cfg.where.jobs_dir, cfg.where.results_dir, live=manager.live, driven=manager.driven)
    app.state.tensorboards = tensorboard.TensorBoards()
    if cfg.loopback:
        app.add_middleware(auth.HostCheck)
    app.include_router(routes_read.router)
    app.include_router(routes_write.router)
    app.include_router(tensorboard.router)
    app.include_router(page.router)
    return app


def listen(host: str, port: int) -> socket.socket:
    """The server's listening socket, bound here (OSError: the address is in use, or not this
    machine's). Its connections send at once (TCP_NODELAY, which accepted sockets inherit): uvicorn
    given a socket leaves Nagle on, and every small answer then waited 40 ms for the client's
    delayed ACK (bench/serve.py found it)."""
    sock = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock
