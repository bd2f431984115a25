"""Registry credentials and the distribution v2 auth flow, as docker itself uses them.

Credentials come from the user's docker configuration (``$DOCKER_CONFIG/config.json``, else
``~/.docker/config.json``): a credential helper named for the registry in ``credHelpers``, else
the ``credsStore`` helper, else the ``auths`` entry (base64 ``user:password``). A helper is run as
``docker-credential-<name> get`` with the server on stdin (an argv list, no shell).

A request is sent without credentials first; on 401 the ``WWW-Authenticate`` challenge says how
to authenticate: ``Basic`` (sent again with the user and password) or ``Bearer realm=...,
service=...,scope=...`` (a token fetched from the realm, with the user and password or an
identity token when there are any, then the request again with the token). Registries are
reached over https, trusting the system CAs and docker's ``/etc/docker/certs.d/<host:port>/*.crt``;
plain http only for localhost and the registries dockerd lists as insecure (``--insecure`` here).

No secret is ever put in a message, a log line or an exception.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import re
import shutil
import ssl
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubesweep.errors import KubesweepError

DOCKER_HUB = "docker.io"
HUB_API = "registry-1.docker.io"
HUB_CONFIG_KEY = "https://index.docker.io/v1/"  # the key `docker login` (no server) writes
MANIFESTS = ("application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, "
             "application/vnd.docker.distribution.manifest.list.v2+json, "
             "application/vnd.docker.distribution.manifest.v2+json")
CERTS_DIRS = (Path("/etc/docker/certs.d"),)
DAEMON_JSON = Path("/etc/docker/daemon.json")
TIMEOUT = 10.0


class RegistryError(KubesweepError):
    """A registry could not be asked: unreachable, untrusted, or it refused."""


class AuthError(RegistryError):
    """A registry refused the credentials it was given, or wants some and there are none."""


@dataclass(frozen=True)
class Credentials:
    """A user and password, or an identity token (OAuth2 refresh token) for the token flow.
    ``source`` says where they came from, for messages; the secret is never in repr()."""

    username: str
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)
    source: str = ""


def docker_config_dir() -> Path:
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")


def split_reference(image: str) -> tuple[str, str]:
    """(registry, repository) of an image name without its tag or digest, as docker reads it:
    a first component with a '.' or ':' or that is 'localhost' names the registry, anything
    else is on Docker Hub (where single names are under library/)."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name = name[: len(name) - len(last)] + last.split(":", 1)[0]
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first, rest
    else:
        registry, repository = DOCKER_HUB, name
    if registry in (DOCKER_HUB, "index.docker.io", HUB_API):
        registry = DOCKER_HUB
        if "/" not in repository:
            repository = f"library/{repository}"
    return registry, repository


def _hostname(key: str) -> str:
    """A config.json key (``host``, ``https://host``, ``https://host/v1/``) as host[:port]."""
    key = re.sub(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", "", key)
    return key.split("/", 1)[0]


def _config_key(registry: str) -> str:
    return HUB_CONFIG_KEY if registry == DOCKER_HUB else registry


def _api_host(registry: str) -> str:
    return HUB_API if registry == DOCKER_HUB else registry


def _read_config(config_dir: Path) -> dict[str, Any]:
    path = config_dir / "config.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise RegistryError(f"cannot read {path}: {exc}") from None
    return data if isinstance(data, dict) else {}


def _from_helper(helper: str, registry: str, where: str) -> Credentials | None:
    program = f"docker-credential-{helper}"
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", helper):
        raise RegistryError(f"{where} names the credential helper {helper!r}, which is not a helper name")
    path = shutil.which(program)
    if path is None:
        raise RegistryError(f"{where} names the credential helper {program}, which is not on PATH; install it "
                            f"or run `docker login {registry}` with another credential store")
    try:
        proc = subprocess.run([path, "get"], input=_config_key(registry), capture_output=True, text=True,
                              timeout=60)
    except subprocess.TimeoutExpired:
        raise RegistryError(f"{program} get did not answer within 60s (for {registry})") from None
    if proc.returncode != 0:
        if "not found" in (proc.stdout + proc.stderr).lower():
            return None
        first = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[:1]
        raise RegistryError(f"{program} get failed for {registry}: {first[0] if first else f'exit {proc.returncode}'}")
    try:
        answer = json.loads(proc.stdout)
        user, secret = answer.get("Username", ""), answer.get("Secret", "")
    except (ValueError, AttributeError):
        raise RegistryError(f"{program} get answered something that is not its JSON for {registry}") from None
    if not secret:
        return None
    if user == "<token>":
        return Credentials("", identity_token=secret, source=program)
    return Credentials(user, secret, source=program)


def credentials(registry: str, config_dir: Path | None = None) -> Credentials | None:
    """What docker would log in to ``registry`` with (None: no credentials for it)."""
    config_dir = config_dir or docker_config_dir()
    config = _read_config(config_dir)
    where = str(config_dir / "config.json")
    helpers = config.get("credHelpers") or {}
    entries = {_hostname(k): v for k, v in (config.get("auths") or {}).items() if isinstance(v, dict)}
    host = _hostname(_config_key(registry))
    helper = helpers.get(host) or helpers.get(registry)
    if helper:
        return _from_helper(helper, registry, where)
    if config.get("credsStore"):
        found = _from_helper(config["credsStore"], registry, where)
        if found is not None:
            return found
    entry = entries.get(host)
    if not entry:
        return None
    if entry.get("identitytoken"):
        return Credentials(entry.get("username", ""), identity_token=entry["identitytoken"], source=where)
    if entry.get("auth"):
        try:
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise RegistryError(f"{where}: the auth entry for {registry} is not base64 of user:password") from None
        return Credentials(user, password, source=where)
    if entry.get("username") and entry.get("password"):
        return Credentials(entry["username"], entry["password"], source=where)
    return None


def dockerconfigjson(registry: str, creds: Credentials) -> bytes:
    """A ``kubernetes.io/dockerconfigjson`` Secret's ``.dockerconfigjson`` for ``registry``."""
    if not creds.password:
        raise AuthError(f"the credentials for {registry} ({creds.source}) are an identity token, which the kubelet "
                        "cannot pull with; create a pull secret yourself and name it in imagePullSecrets")
    auth = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
    entry = {"username": creds.username, "password": creds.password, "auth": auth}
    return json.dumps({"auths": {_config_key(registry): entry}}, sort_keys=True).encode()


# ---------------------------------------------------------------------------------- the flow


def _is_local(registry: str) -> bool:
    host = registry.rsplit(":", 1)[0] if not registry.endswith("]") else registry
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def daemon_insecure(registry: str, daemon_json: Path = DAEMON_JSON) -> bool:
    """Whether dockerd is told to use ``registry`` over plain http (daemon.json's
    insecure-registries, as host:port or a CIDR its address falls in)."""
    try:
        listed = json.loads(daemon_json.read_text()).get("insecure-registries") or []
    except (OSError, ValueError, AttributeError):
        return False
    host = registry.rsplit(":", 1)[0].strip("[]")
    for item in listed:
        if item == registry or _hostname(item) == registry:
            return True
        try:
            if ipaddress.ip_address(host) in ipaddress.ip_network(item, strict=False):
                return True
        except ValueError:
            continue
    return False


def tls_context(registry: str, certs_dirs: tuple[Path, ...] = CERTS_DIRS, *, verify: bool = True) -> ssl.SSLContext:
    """The system CAs plus docker's certs.d CAs for this registry (every ``*.crt`` there), and
    its client certificate (``*.cert`` with its ``*.key``) when there is one."""
    ctx = ssl.create_default_context()
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    for base in certs_dirs:
        d = base / registry
        if not d.is_dir():
            continue
        for ca in sorted(d.glob("*.crt")):
            ctx.load_verify_locations(cafile=str(ca))
        for cert in sorted(d.glob("*.cert")):
            key = cert.with_suffix(".key")
            if key.exists():
                ctx.load_cert_chain(str(cert), str(key))
    return ctx


@dataclass
class _Answer:
    status: int
    headers: Any
    body: bytes


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:  # a HEAD is answered where asked
        return None


def _send(url: str, *, method: str = "GET", headers: dict[str, str] | None = None, secret_headers: dict[str, str] | None = None,
          ctx: ssl.SSLContext | None = None, data: bytes | None = None, follow: bool = True) -> _Answer:
    req = urllib.request.Request(url, method=method, headers=headers or {}, data=data)
    for key, value in (secret_headers or {}).items():
        req.add_unredirected_header(key, value)  # never sent on to where a redirect points
    handlers: list[Any] = [urllib.request.HTTPSHandler(context=ctx)]
    if not follow:
        handlers.append(_NoRedirect())
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(req, timeout=TIMEOUT) as r:  # noqa: S310 - the configured registry
            return _Answer(r.status, r.headers, r.read() if method != "HEAD" else b"")
    except urllib.error.HTTPError as exc:
        body = b""
        try:
            body = exc.read()[:4096]
        except OSError:
            pass
        return _Answer(exc.code, exc.headers, body)


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="https://x/token",service="x",scope="repository:a:pull"`` -> ("bearer", {...})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
              for m in re.finditer(r'([A-Za-z_]+)\s*=\s*(?:"([^"]*)"|([^\s,]+))', rest)}
    return scheme.lower(), params


def _basic(creds: Credentials) -> str:
    return "Basic " + base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()


class Client:
    """One registry, asked the way docker asks it (see the module's docstring)."""

    def __init__(self, registry: str, creds: Credentials | None = None, *, insecure: bool | None = None,
                 certs_dirs: tuple[Path, ...] = CERTS_DIRS, daemon_json: Path = DAEMON_JSON) -> None:
        self.registry = registry
        self.host = _api_host(registry)
        self.creds = creds
        self.insecure = (_is_local(registry) or daemon_insecure(registry, daemon_json)) if insecure is None else insecure
        self.certs_dirs = certs_dirs
        self._scheme: str | None = None

    # -- messages (one line each, naming the registry, never a secret)
    def _login_hint(self) -> str:
        return "`docker login`" if self.registry == DOCKER_HUB else f"`docker login {self.registry}`"

    def _wrong(self) -> AuthError:
        c = self.creds
        assert c is not None
        who = f"user {c.username}" if c.username else "identity token"
        return AuthError(f"registry {self.registry} refused the {who} from {c.source} (wrong user name or password?): "
                         f"run {self._login_hint()} again")

    def _needs_login(self, what: str) -> AuthError:
        return AuthError(f"registry {self.registry} wants credentials for {what} and there are none for it in "
                         f"{docker_config_dir() / 'config.json'}: run {self._login_hint()}")

    def _transport(self, why: object) -> RegistryError:
        if isinstance(why, ssl.SSLCertVerificationError):
            return RegistryError(f"registry {self.registry}: its certificate is not trusted ({why.verify_message}); put "
                                 f"the CA that signed it in /etc/docker/certs.d/{self.registry}/ca.crt")
        if isinstance(why, ssl.SSLError):  # a TLS handshake with something that does not speak it
            return RegistryError(f"registry {self.registry} does not answer https ({why.reason or why}): a registry "
                                 "on plain http must be in /etc/docker/daemon.json's insecure-registries (dockerd "
                                 "needs that too)")
        hint = "; is the cluster up (`invoke cluster`)?" if _is_local(self.registry) else ""
        return RegistryError(f"registry {self.registry} is not reachable ({why}){hint}")

    # -- transport
    def _url(self, path: str) -> str:
        if self._scheme is None:
            self._scheme = self._probe() if self.insecure else "https"
        return f"{self._scheme}://{self.host}{path}"

    def _probe(self) -> str:
        """An insecure registry, as dockerd tries it: https (unverified), else plain http."""
        try:
            _send(f"https://{self.host}/v2/", ctx=self._ctx(), follow=False)
            return "https"
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, (ssl.SSLError, ConnectionResetError)):
                return "http"
            raise self._transport(exc.reason) from None
        except (ssl.SSLError, ConnectionResetError):
            return "http"
        except OSError as exc:
            raise self._transport(exc) from None

    def _ctx(self) -> ssl.SSLContext:
        return tls_context(self.registry, self.certs_dirs, verify=not self.insecure)

    def _call(self, url: str, method: str, headers: dict[str, str], auth: str | None) -> _Answer:
        try:
            return _send(url, method=method, headers=headers, secret_headers={"Authorization": auth} if auth else None,
                         ctx=self._ctx(), follow=method != "HEAD")
        except urllib.error.URLError as exc:
            raise self._transport(exc.reason) from None
        except OSError as exc:
            raise self._transport(exc) from None

    def _token(self, params: dict[str, str], scope: str) -> str:
        realm = params.get("realm")
        if not realm:
            raise RegistryError(f"registry {self.registry} asked for a bearer token without naming where to get it")
        query = {k: v for k, v in (("service", params.get("service")), ("scope", params.get("scope") or scope)) if v}
        c = self.creds
        if c is not None and c.identity_token:  # docker's OAuth2 refresh-token grant
            form = urllib.parse.urlencode({**query, "grant_type": "refresh_token", "client_id": "kubesweep",
                                           "refresh_token": c.identity_token}).encode()
            answer = self._realm_call(realm, "POST", form, None)
        else:
            url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query)
            answer = self._realm_call(url, "GET", None, _basic(c) if c is not None else None)
        if answer.status in (401, 403):
            if c is not None:
                raise self._wrong()
            raise self._needs_login(scope)
        if answer.status != 200:
            raise RegistryError(f"registry {self.registry}: its token service {urllib.parse.urlsplit(realm).netloc} "
                                f"answered {answer.status}")
        try:
            data = json.loads(answer.body)
            return data.get("token") or data["access_token"]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise RegistryError(f"registry {self.registry}: its token service answered without a token") from None

    def _realm_call(self, url: str, method: str, data: bytes | None, auth: str | None) -> _Answer:
        scheme = urllib.parse.urlsplit(url).scheme
        if scheme != "https" and not (scheme == "http" and self.insecure):
            raise RegistryError(f"registry {self.registry} sends tokens from {url.split('?')[0]}, which is not https")
        headers = {"Content-Type": "application/x-www-form-urlencoded"} if data else {}
        try:
            return _send(url, method=method, headers=headers, data=data,
                         secret_headers={"Authorization": auth} if auth else None,
                         ctx=tls_context(_hostname(url), self.certs_dirs, verify=not self.insecure))
        except urllib.error.URLError as exc:
            raise RegistryError(f"registry {self.registry}: its token service {urllib.parse.urlsplit(url).netloc} "
                                f"is not reachable ({exc.reason})") from None

    def request(self, path: str, *, method: str = "GET", headers: dict[str, str] | None = None,
                scope: str = "") -> _Answer:
        """Send, and on a 401 authenticate as the challenge asks and send again."""
        url = self._url(path)
        headers = dict(headers or {})
        answer = self._call(url, method, headers, None)
        if answer.status != 401:
            return answer
        scheme, params = parse_challenge(answer.headers.get("WWW-Authenticate", "") if answer.headers else "")
        if scheme == "basic":
            if self.creds is None:
                raise self._needs_login(scope or path)
            if not self.creds.password:
                raise AuthError(f"registry {self.registry} asks for a password and {self.creds.source} has an identity "
                                f"token for it: run {self._login_hint()}")
            again = self._call(url, method, headers, _basic(self.creds))
            if again.status == 401:
                raise self._wrong()
            return again
        if scheme == "bearer":
            token = self._token(params, scope)
            again = self._call(url, method, headers, f"Bearer {token}")
            if again.status in (401, 403) and self.creds is None:
                raise self._needs_login(scope or path)
            if again.status == 401:
                raise self._wrong()
            return again
        raise RegistryError(f"registry {self.registry} answered 401 with a challenge kubesweep does not know "
                            f"({scheme or 'none'})")

    def manifest_exists(self, repository: str, reference: str) -> bool:
        """Whether ``repository:reference`` (a tag or digest) is in the registry."""
        answer = self.request(f"/v2/{repository}/manifests/{reference}", method="HEAD", headers={"Accept": MANIFESTS},
                              scope=f"repository:{repository}:pull")
        if answer.status == 200:
            return True
        if answer.status == 404:
            return False
        if answer.status == 403:
            who = f"user {self.creds.username}" if self.creds and self.creds.username else "these credentials"
            raise AuthError(f"registry {self.registry} does not let {who} read {repository} (403)")
        raise RegistryError(f"registry {self.registry} answered {answer.status} for {repository}:{reference}")


def manifest_exists(registry: str, repository: str, reference: str, *, insecure: bool | None = None,
                    config_dir: Path | None = None, certs_dirs: tuple[Path, ...] = CERTS_DIRS) -> bool:
    """Ask ``registry`` whether ``repository:reference`` is there, with the user's docker credentials."""
    creds = credentials(registry, config_dir)
    return Client(registry, creds, insecure=insecure, certs_dirs=certs_dirs).manifest_exists(repository, reference)
