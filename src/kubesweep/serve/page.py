"""The page: ``GET /`` (one HTML file, hash routes) and ``GET /static/<file>`` (its script and style,
and plotly.js from the installed plotly package, so the page works with no network beyond this server).

Only the files named in ``FILES`` are served (no path from the request reaches the filesystem). Each
answer carries an ETag (a revalidation answers 304) and, where the browser accepts it, is gzipped once
and kept in memory: plotly.min.js is 4.8 MB, 1.4 MB gzipped, which matters through a port-forward.
The page reads the token from the URL fragment (``#token=...``, never sent to a server) and keeps it in
sessionStorage; nothing here sets a cookie.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
from importlib import resources
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

STATIC = Path(__file__).with_name("static")

#: what /static/ serves: name -> media type
FILES = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "plotly.min.js": "text/javascript; charset=utf-8",
}

#: the page loads scripts and styles from this server only and talks to nothing else. Plotly adds
#: style elements and attributes (style-src 'unsafe-inline'); its WebGL traces (parallel coordinates,
#: through regl) compile their shaders' wrappers with Function ('unsafe-eval'). The page's own
#: script has no inline code and sets text through textContent.
CSP = ("default-src 'none'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; worker-src blob:; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
HEADERS = {
    "Cache-Control": "no-cache",          # always revalidated (ETag): a new kubesweep's page is seen at once
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",     # log streams and events carry ?token=
}

router = APIRouter(include_in_schema=False)


def plotly_js() -> Path:
    """plotly.min.js as the plotly Python package ships it (the one its offline HTML inlines)."""
    path = Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the plotly package ships no plotly.min.js (reinstall plotly)")
    return path


def _path(name: str) -> Path:
    return plotly_js() if name == "plotly.min.js" else STATIC / name


@functools.lru_cache(maxsize=16)
def _load(path: Path, mtime_ns: int, size: int) -> tuple[bytes, bytes, str]:
    """(body, gzipped body, ETag) of one file version (keyed by its mtime and size)."""
    body = path.read_bytes()
    return body, gzip.compress(body, compresslevel=6, mtime=0), '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _send(request: Request, path: Path, media_type: str, extra: dict[str, str] | None = None) -> Response:
    st = path.stat()
    body, packed, etag = _load(path, st.st_mtime_ns, st.st_size)
    headers = {**HEADERS, **(extra or {}), "ETag": etag, "Vary": "Accept-Encoding"}
    if etag in (t.strip() for t in request.headers.get("if-none-match", "").split(",")):
        return Response(status_code=304, headers=headers)
    if "gzip" in request.headers.get("accept-encoding", ""):
        return Response(packed, media_type=media_type, headers={**headers, "Content-Encoding": "gzip"})
    return Response(body, media_type=media_type, headers=headers)


@router.get("/")
def index(request: Request) -> Response:
    return _send(request, STATIC / "index.html", "text/html; charset=utf-8", {"Content-Security-Policy": CSP})


@router.get("/static/{name}")
def static(name: str, request: Request) -> Response:
    if name not in FILES:
        raise HTTPException(status_code=404, detail=f"no static file {name!r}")
    return _send(request, _path(name), FILES[name])
