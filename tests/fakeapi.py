"""A stand-in API server on 127.0.0.1 for unit tests at the HTTP boundary: the client's own
requests, connection pool and error handling run for real; the answers come from ``answer``."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# (method, path with query, parsed JSON body or None) -> (status, JSON answer)
Answer = Callable[[str, str, Any], tuple[int, Any]]
# the status that closes the connection without answering, as a server timing out a kept-open one
DROP = 0


class FakeApiServer:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.connections: list[tuple[str, int]] = []
        self.requests: list[tuple[str, str]] = []
        self.authorizations: list[str | None] = []  # each request's Authorization header
        self.port = 0  # where it listens, once serving


def write_kubeconfig(path: Path, server: str) -> Path:
    """A kubeconfig for ``server`` with a bearer token (the stand-in checks none)."""
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "t",
        "clusters": [{"name": "t", "cluster": {"server": server}}],
        "users": [{"name": "t", "user": {"token": "t"}}],
        "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}]}))
    return path


@contextmanager
def serve(answer: Answer, kubeconfig: Path) -> Iterator[FakeApiServer]:
    """Serve ``answer`` and write a kubeconfig for it to ``kubeconfig``."""
    state = FakeApiServer(answer)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the API server

        def setup(self) -> None:
            state.connections.append(self.client_address)
            super().setup()

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            state.requests.append((self.command, self.path))
            state.authorizations.append(self.headers.get("Authorization"))
            status, reply = state.answer(self.command, self.path, body)
            if status == DROP:
                self.close_connection = True
                return
            data = reply if isinstance(reply, bytes) else json.dumps(reply).encode()  # bytes: as they are (a log)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_DELETE = _handle  # noqa: N815 - http.server's naming

        def log_message(self, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 256  # listen backlog: many requests may connect at once

        def handle_error(self, request: Any, client_address: Any) -> None:
            """A client that hung up mid-answer (or spoke TLS to it) is the test's business, not
            a traceback on stderr, where tests read what the command said."""

    server = Server(("127.0.0.1", 0), Handler)
    state.port = server.server_port
    threading.Thread(target=server.serve_forever, daemon=True).start()
    write_kubeconfig(kubeconfig, f"http://127.0.0.1:{server.server_port}")
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
