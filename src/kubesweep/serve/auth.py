"""Who may call the API: the tokens file, callers, and the checks every request goes through.

    tokens:
      - {name: alice, token: "...", team: team-a, namespaces: [team-a]}
      - {name: ops, token: "...", admin: true}

A request that changes state (POST, DELETE) needs ``Authorization: Bearer <token>``: a header a
page on another site cannot make a browser send, so no API route takes a cookie and there is no
CSRF (the one cookie, serve/tensorboard.py's, opens an experiment's TensorBoard only). A GET needs
it too, unless the server listens on loopback without a tokens file (one person's machine);
EventSource and the log stream cannot set headers, so those two take ``?token=`` instead. A team
token sees only its namespaces: another team's experiment is answered 404, as if absent. On
loopback the Host header must name loopback too, so that a page whose DNS name was rebound to
127.0.0.1 cannot read the API.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request

from kubesweep.errors import Collector, Mark
from kubesweep.spec import yamlsource
from kubesweep.spec.rules import DNS_LABEL

#: The shortest token the tokens file accepts: anything shorter could be guessed.
MIN_TOKEN = 16
_KEYS = {"name", "token", "team", "namespaces", "admin"}


@dataclass(frozen=True)
class Caller:
    """Who made a request: a token's name and the namespaces it sees (None: every one, an admin)."""

    name: str
    namespaces: frozenset[str] | None

    def sees(self, namespace: str | None) -> bool:
        if self.namespaces is None:
            return True
        return namespace is not None and namespace in self.namespaces


@dataclass(frozen=True)
class Token:
    name: str
    secret: str
    namespaces: frozenset[str] | None  # None: admin
    team: str | None = None

    def caller(self) -> Caller:
        return Caller(self.name, self.namespaces)


@dataclass(frozen=True)
class Tokens:
    """The tokens that may call the server. ``from_file``: read from --tokens (without one, GETs on
    loopback are open and the one generated admin token is needed only to change state)."""

    entries: tuple[Token, ...]
    from_file: bool

    @classmethod
    def generated(cls) -> Tokens:
        return cls((Token("admin", secrets.token_urlsafe(32), None),), from_file=False)

    def match(self, presented: str) -> Caller | None:
        """The caller whose token this is; every entry is compared, in constant time each."""
        found = None
        for t in self.entries:
            if hmac.compare_digest(t.secret.encode(), presented.encode()):
                found = t
        return None if found is None else found.caller()


def load(path: str | Path) -> Tokens:
    """Read and validate a tokens file; SpecError with file:line:column for every problem."""
    data, pos = yamlsource.load(path)
    problems = Collector()
    if not isinstance(data, dict) or not isinstance(data.get("tokens"), list):
        problems.add(pos.value(("tokens",) if isinstance(data, dict) else ()),
                     "a tokens file is a mapping with a list `tokens:` of {name, token, namespaces | admin: true}")
        problems.raise_if_any()
    for key in data:
        if key != "tokens":
            problems.add(pos.key((key,)), f"unknown key {key!r} (a tokens file has only `tokens:`)")
    entries: list[Token] = []
    names: dict[str, Mark] = {}
    secrets_seen: dict[str, Mark] = {}
    for i, item in enumerate(data["tokens"]):
        here = ("tokens", i)
        if not isinstance(item, dict):
            problems.add(pos.value(here), "each token is a mapping {name, token, team, namespaces, admin}", item)
            continue
        for key in item:
            if key not in _KEYS:
                problems.add(pos.key(here + (key,)), f"unknown key {key!r} (expected one of {', '.join(sorted(_KEYS))})")
        name, token, team = item.get("name"), item.get("token"), item.get("team")
        admin, namespaces = item.get("admin", False), item.get("namespaces")
        if not isinstance(name, str) or not name:
            problems.add(pos.value(here + ("name",)), "name: is required, a non-empty string", name)
        elif name in names:
            problems.add(pos.value(here + ("name",)), f"name {name!r} is given twice (first at {names[name]})")
        else:
            names[name] = pos.value(here + ("name",))
        if not isinstance(token, str):
            problems.add(pos.value(here + ("token",)), "token: is required, a string (quote it)", token)
        elif len(token) < MIN_TOKEN:
            problems.add(pos.value(here + ("token",)), f"the token is {len(token)} characters; at least {MIN_TOKEN} "
                         "are needed (`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'` makes one)")
        elif token in secrets_seen:
            problems.add(pos.value(here + ("token",)), f"the same token is given twice (first at {secrets_seen[token]})")
        else:
            secrets_seen[token] = pos.value(here + ("token",))
        if not isinstance(admin, bool):
            problems.add(pos.value(here + ("admin",)), "admin: is true or false", admin)
        if team is not None and not (isinstance(team, str) and DNS_LABEL.fullmatch(team)):
            problems.add(pos.value(here + ("team",)), "team: is a name (lowercase letters, digits and '-')", team)
        if admin is True and namespaces is not None:
            problems.add(pos.key(here + ("namespaces",)), "an admin token sees every namespace: give admin: true "
                         "or namespaces:, not both")
        seen: frozenset[str] | None = None
        if namespaces is None and admin is not True:
            if isinstance(team, str):
                seen = frozenset([team])  # a team's namespace is named after it unless said otherwise
            else:
                problems.add(pos.value(here), "a token needs namespaces: [..] (or team:, whose namespace it then "
                             "sees), or admin: true")
        elif namespaces is not None:
            if not isinstance(namespaces, list) or not namespaces:
                problems.add(pos.value(here + ("namespaces",)), "namespaces: is a non-empty list of namespace names",
                             namespaces)
            else:
                for j, ns in enumerate(namespaces):
                    if not (isinstance(ns, str) and DNS_LABEL.fullmatch(ns) and len(ns) <= 63):
                        problems.add(pos.value(here + ("namespaces", j)), "not a namespace name (lowercase "
                                     "letters, digits and '-', at most 63)", ns)
                seen = frozenset(n for n in namespaces if isinstance(n, str))
        if isinstance(name, str) and isinstance(token, str):
            entries.append(Token(name, token, seen, team if isinstance(team, str) else None))
    if not data["tokens"]:
        problems.add(pos.value(("tokens",)), "no token is listed: nobody could call the server")
    problems.raise_if_any()
    return Tokens(tuple(entries), from_file=True)


# --- requests ----------------------------------------------------------------------------------

_LOOPBACK_NAMES = {"localhost", "localhost.", "ip6-localhost"}
_HOST = re.compile(r"^(?:\[(?P<v6>[0-9a-fA-F:.]+)\]|(?P<name>[^:\[\]]+))(?::(?P<port>[0-9]{1,5}))?$")


def loopback(host: str) -> bool:
    """Whether an address (or name) is this machine only: 127.0.0.0/8, ::1, localhost."""
    host = host.strip("[]")
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_allowed(header: str | None) -> bool:
    """A Host header naming loopback (127.0.0.1, localhost, [::1], with any port)."""
    m = _HOST.match(header or "")
    return bool(m) and loopback(m.group("v6") or m.group("name"))


class HostCheck:
    """ASGI middleware, on a server bound to loopback: a request whose Host is not loopback comes
    from a page whose DNS name was rebound to 127.0.0.1 (DNS rebinding); it is refused (403)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            host = next((v.decode("latin-1") for k, v in scope.get("headers") or [] if k == b"host"), None)
            if not host_allowed(host):
                body = b'{"detail":"the Host header must name this machine (127.0.0.1, localhost or [::1])"}'
                await send({"type": "http.response.start", "status": 403,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else ""


def _denied(message: str) -> HTTPException:
    return HTTPException(401, message, headers={"WWW-Authenticate": "Bearer"})


def _caller(request: Request, *, write: bool, query_token: bool) -> Caller:
    tokens: Tokens = request.app.state.cfg.tokens
    presented = _bearer(request)
    if presented is None and query_token:
        presented = request.query_params.get("token")
    if presented is None:
        if not write and not tokens.from_file and request.app.state.cfg.loopback:
            return Caller("local", None)  # one person's machine: reading is open, changing needs the token
        raise _denied("this request needs a token: Authorization: Bearer <token>")
    caller = tokens.match(presented)
    if caller is None:
        raise _denied("the token is not known to this server")
    return caller


def reader(request: Request) -> Caller:
    """The caller of a GET (the header; open on loopback without a tokens file)."""
    return _caller(request, write=False, query_token=False)


def stream_reader(request: Request) -> Caller:
    """The caller of an EventSource or log stream, which cannot set headers: ``?token=`` too."""
    return _caller(request, write=False, query_token=True)


def writer(request: Request) -> Caller:
    """The caller of a request that changes state: always the token header."""
    return _caller(request, write=True, query_token=False)
