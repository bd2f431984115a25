"""The Kubernetes API, through the official Python client: clients, and what a sweep needs to exist."""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import orjson

from kubesweep.errors import KubesweepError


# Job creates in flight at once (submit.create_jobs); measured in bench/submit.py --workers.
SUBMIT_WORKERS = 64
# Connections kept open to the API server: the creates, the two watches of a running sweep and
# its log reads.
POOL_CONNECTIONS = SUBMIT_WORKERS + 8


class ClusterUnreachable(KubesweepError):
    pass


@dataclass
class Clients:
    core: Any
    batch: Any
    rbac: Any
    api: Any  # ApiClient (serialisation)
    namespace: str | None = None  # the kubeconfig context's (or the pod's) namespace, if it names one

    def plain(self, obj: Any) -> dict[str, Any]:
        """An API object as the camelCase dict the server sent."""
        return obj if isinstance(obj, dict) else self.api.sanitize_for_serialization(obj)


# The API group of each resource kubesweep reads or writes: every path is spelled here only.
GROUPS = {"pods": "/api/v1", "nodes": "/api/v1", "events": "/api/v1", "configmaps": "/api/v1",
          "jobs": "/apis/batch/v1",
          "services": "/api/v1", "deployments": "/apis/apps/v1",  # an experiment's TensorBoard (run/tensorboard.py)
          # Kueue (run/kueue.py): its storage version in v0.17
          "localqueues": "/apis/kueue.x-k8s.io/v1beta2", "workloads": "/apis/kueue.x-k8s.io/v1beta2"}


def path(resource: str, namespace: str | None = None, name: str | None = None, sub: str | None = None) -> str:
    """The API path of a resource: all of them (every namespace, or a cluster-scoped kind), those
    of one namespace, one object, or one of its subresources (``pods/NAME/log``)."""
    scope = f"/namespaces/{namespace}" if namespace else ""
    return (f"{GROUPS[resource]}{scope}/{resource}" + (f"/{name}" if name else "")
            + (f"/{sub}" if sub else ""))


def default_kubeconfig() -> str | None:
    """The kubeconfig used when none is given, as kubectl chooses it, with the local cluster's
    before the home directory's: $KUBECONFIG (a list of files, merged, as kubectl merges it), the
    cluster `invoke cluster` brought up, ~/.kube/kubesweep-single.conf (written by
    `ansible-playbook site.yml` run by hand), ~/.kube/config. None when there is none."""
    from kubesweep.local.cluster import DEFAULT_INVENTORY_NAME, kubeconfig_path

    if os.environ.get("KUBECONFIG"):
        return os.environ["KUBECONFIG"]
    try:
        local = kubeconfig_path(Path(DEFAULT_INVENTORY_NAME))
        candidates = (local, Path(f"~/.kube/kubesweep-{DEFAULT_INVENTORY_NAME}.conf").expanduser(),
                      Path("~/.kube/config").expanduser())
    except RuntimeError:  # no home directory (a pod's user without one, HOME unset): no kubeconfig there
        return None
    for path in candidates:
        if path.exists():
            return str(path)
    return None


#: Where a pod finds its ServiceAccount's token, CA and namespace (in-cluster configuration).
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def in_cluster() -> bool:
    """Whether this process runs in a pod that may use its ServiceAccount's token (as the
    client's in-cluster configuration needs: the service's address and the token file)."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and (SERVICE_ACCOUNT_DIR / "token").is_file()


def _chosen(kubeconfig: str | Path | None) -> tuple[str | None, list[Path]]:
    chosen = str(kubeconfig) if kubeconfig else default_kubeconfig()
    return chosen, [Path(f).expanduser() for f in (chosen or "").split(os.pathsep) if f]


def context_namespace(kubeconfig: str | Path | None = None, context: str | None = None) -> str | None:
    """The namespace the kubeconfig's context names (kubectl's default namespace), or in a pod
    without a kubeconfig its ServiceAccount's namespace; None when neither says. Read from the
    files only: no request is sent, and an unreadable kubeconfig is left for ``clients`` to report."""
    from kubernetes import config
    from kubernetes.config.config_exception import ConfigException

    chosen, files = _chosen(kubeconfig)
    present = [f for f in files if f.exists()]
    if not present:
        ns_file = SERVICE_ACCOUNT_DIR / "namespace"
        if not kubeconfig and in_cluster() and ns_file.is_file():
            return ns_file.read_text().strip() or None
        return None
    try:
        contexts, active = config.list_kube_config_contexts(os.pathsep.join(str(f) for f in present))
    except (ConfigException, OSError, ValueError, TypeError, AttributeError):
        return None
    chosen_ctx = next((c for c in contexts or [] if c.get("name") == context), None) if context else active
    return ((chosen_ctx or {}).get("context") or {}).get("namespace") or None


def clients(kubeconfig: str | Path | None = None, context: str | None = None) -> Clients:
    """Clients of the cluster that ``kubeconfig`` (a file, or a list of files joined by
    os.pathsep and merged; default: ``default_kubeconfig()``) names, in its ``context``
    (default: its current context). With no kubeconfig at all, in a pod: the pod's
    ServiceAccount (in-cluster configuration), as kubectl does."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    chosen, files = _chosen(kubeconfig)
    cfg = client.Configuration()
    if not any(f.exists() for f in files):
        if kubeconfig or chosen or not in_cluster():
            where = f" at {chosen}" if chosen else ""
            raise ClusterUnreachable(f"no kubeconfig{where}: bring the local cluster up with `invoke cluster`, "
                                     "or set KUBECONFIG / pass --kubeconfig")
        if context:
            raise ClusterUnreachable(f"--context {context}: there is no kubeconfig here, only this pod's "
                                     "ServiceAccount (in-cluster configuration), which has no contexts")
        try:
            config.load_incluster_config(client_configuration=cfg)
        except ConfigException as exc:
            raise ClusterUnreachable(f"in-cluster configuration (this pod's ServiceAccount): {exc}") from None
    else:
        try:
            config.load_kube_config(config_file=os.pathsep.join(str(f) for f in files if f.exists()),
                                    context=context, client_configuration=cfg)
        except ConfigException as exc:  # no such context, no current context, a user without credentials
            raise ClusterUnreachable(f"kubeconfig {chosen}: {exc}") from None
    # Set before the ApiClient exists: its urllib3 pool is sized once, when it is made (a size set
    # afterwards is ignored, and the default is 5 per CPU). A connection beyond the pool is closed
    # after its request, so each create beyond it paid for a new connection and TLS handshake.
    cfg.connection_pool_maxsize = POOL_CONNECTIONS
    api = client.ApiClient(cfg)
    return Clients(client.CoreV1Api(api), client.BatchV1Api(api), client.RbacAuthorizationV1Api(api), api,
                   context_namespace(kubeconfig, context))


def request(c: Clients, method: str, path: str, *, query: dict[str, Any] | None = None, body: Any = None,
            stream: bool = False, timeout: float | tuple[float, float] | None = None) -> Any:
    """One API call as plain JSON, skipping the generated models.

    The hot paths of a sweep (creating Jobs, watching pods and Jobs, listing them on resume) go
    through here: the generated client validates every request body into pydantic models and
    turns every response into model objects, which costs far more CPU than the HTTP itself.
    Authentication, TLS and connection pooling are still the client's. Non-2xx answers raise
    the client's ApiException, so callers handle errors exactly as with the generated API.
    With ``stream`` the open urllib3 response is returned (for watches); close it when done.
    Answers are parsed with orjson: a watch event is a whole pod or Job, and parsing them was the
    largest part of a sweep client's CPU (bench/makespan.py); orjson takes under half the time
    of the standard library's json on these objects.
    """
    resp = _call(c, method, path, query=query, body=body, timeout=timeout, accept="application/json")
    if stream:
        return resp.response
    data = resp.read()
    return orjson.loads(data) if data else {}


def pod_log(c: Clients, namespace: str, pod: str, container: str, *, tail: int | None = None,
            since_time: str | None = None, timestamps: bool = False,
            timeout: float | tuple[float, float] | None = None) -> str:
    """A container's log as text (the last ``tail`` lines, or all of it; from ``since_time``, an
    RFC 3339 time the kubelet reads to the second; each line led by its RFC 3339 nanosecond time
    and a space with ``timestamps``)."""
    query = {"container": container, "tailLines": tail, "sinceTime": since_time, "timestamps": timestamps or None}
    resp = _call(c, "GET", path("pods", namespace, pod, "log"), query=query, timeout=timeout, accept="*/*")
    return _text(resp.read())


def pod_log_stream(c: Clients, namespace: str, pod: str, container: str, *, tail: int | None = None) -> Any:
    """A container's log followed as it is written (``follow``): the open urllib3 response, whose
    ``stream()`` ends when the container does; close it when done. No read timeout: a trial may
    print nothing for a long while."""
    query = {"container": container, "tailLines": tail, "follow": True}
    return _call(c, "GET", path("pods", namespace, pod, "log"), query=query, timeout=(10, None), accept="*/*").response


def _text(data: bytes | None) -> str:
    return data.decode("utf-8", "replace") if data else ""


def _call(c: Clients, method: str, path: str, *, query: dict[str, Any] | None, body: Any = None,
          timeout: float | tuple[float, float] | None, accept: str) -> Any:
    from kubernetes.client.exceptions import ApiException

    headers = {"Accept": accept}
    if body is not None:
        headers["Content-Type"] = "application/json"
    params = [(k, str(v).lower() if isinstance(v, bool) else v) for k, v in (query or {}).items() if v is not None]
    req = c.api.param_serialize(method=method, resource_path=path, query_params=params, header_params=headers,
                                body=body, auth_settings=["BearerToken"])
    resp = c.api.call_api(*req, _request_timeout=timeout)
    if not 200 <= resp.status <= 299:
        data = resp.read()
        ApiException.from_response(http_resp=resp, body=_text(data) or None, data=None)
    return resp


# How many times ``sender`` sends a request whose connection closed before any answer came.
SEND_ATTEMPTS = 3

# How long a running sweep keeps trying a request that fails for a reason that passes: the API
# server restarting (site.yml changing one of its flags does that, and so does a certificate
# renewal) or overloaded, a node's kubelet restarting under a log read. Waits between tries
# double from FIRST_WAIT_S up to MAX_WAIT_S.
OUTAGE_S = 120.0
FIRST_WAIT_S, MAX_WAIT_S = 1.0, 10.0
# Answers that say "not now" rather than "no": throttled, and the server or what it proxies to
# failing (an etcd timeout is a 500, an unreachable kubelet under a log read too).
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})

T = TypeVar("T")


def transient(exc: BaseException) -> bool:
    """Whether a failed request may succeed if sent again later."""
    import urllib3
    from kubernetes.client.exceptions import ApiException

    if isinstance(exc, ApiException):
        return exc.status in TRANSIENT_STATUSES
    return isinstance(exc, (urllib3.exceptions.HTTPError, OSError))  # no connection, closed, timed out


def no_answer(exc: BaseException) -> str | None:
    """A plain sentence for a request that got no answer from the API server (refused, timed out,
    cut off, TLS failed): the usual first error on a machine where the cluster is not up yet, and
    no reason for a traceback. None for any other error."""
    import urllib3

    if not isinstance(exc, urllib3.exceptions.HTTPError):
        return None
    pool = getattr(exc, "pool", None)
    where = f" at {pool.scheme}://{pool.host}:{pool.port}" if pool is not None else ""
    reason = getattr(exc, "reason", None) or exc  # MaxRetryError: what the last try ran into
    cause = reason.__cause__ or reason.__context__
    if isinstance(reason, urllib3.exceptions.NameResolutionError):  # a NewConnectionError too: first
        why = f"its name {pool.host if pool is not None else ''} does not resolve"
    elif isinstance(reason, urllib3.exceptions.NewConnectionError) and isinstance(cause, OSError) and cause.strerror:
        why = cause.strerror.lower()  # "connection refused", "no route to host"
    elif isinstance(reason, urllib3.exceptions.ConnectTimeoutError):
        why = "connecting timed out"
    elif isinstance(reason, urllib3.exceptions.ReadTimeoutError):
        why = "it did not answer in time"
    elif isinstance(reason, urllib3.exceptions.SSLError):
        why = (f"TLS failed: {reason.args[0] if reason.args else reason} (a kubeconfig for another cluster, or one "
               "made before its certificates changed)")
    else:
        why = str(reason.args[0] if reason.args else reason)
    return (f"no answer from the Kubernetes API server{where}: {why}. Is the cluster up? `invoke cluster` brings up "
            "the local one; for another, check KUBECONFIG or --kubeconfig. Nothing was lost: run the command again "
            "once the server answers (a sweep resumes where it stopped).")


def ready(c: Clients) -> bool:
    """Whether the API server says it is ready (``/readyz``, which waits among others for the
    informers its authorizer reads). One that has just restarted answers requests before that,
    and refuses some it will allow a few seconds later: 403 Forbidden for the admin itself."""
    try:
        return _call(c, "GET", "/readyz", query=None, timeout=5, accept="*/*").status == 200
    except Exception:  # noqa: BLE001 - no answer, or not ready: either way not ready
        return False


def patiently(fn: Callable[[], T], *, c: Clients | None = None, stop: threading.Event | None = None,
              budget_s: float | None = None) -> T:
    """``fn()``, called again while it fails with a ``transient`` error, for up to ``budget_s``
    (``OUTAGE_S``) seconds; then, or on any other error, or once ``stop`` is set, its error is
    raised. Given the clients ``c``, a 401 or 403 is tried again too while the API server is not
    ``ready``. Only for requests that may be sent twice: reads, deletes, and creates by name (a
    create that did land is answered 409 the second time)."""
    from kubernetes.client.exceptions import ApiException

    budget = OUTAGE_S if budget_s is None else budget_s
    started, wait = time.monotonic(), FIRST_WAIT_S
    while True:
        try:
            return fn()
        except Exception as exc:
            starting = c is not None and isinstance(exc, ApiException) and exc.status in (401, 403) and not ready(c)
            if not (transient(exc) or starting) or time.monotonic() + wait - started > budget:
                raise
            if stop is None:
                time.sleep(wait)
            elif stop.wait(wait):  # set while waiting
                raise
        wait = min(wait * 2, MAX_WAIT_S)


def sender(c: Clients, method: str, path: str, timeout_s: float = 60) -> Callable[[bytes], None]:
    """A function sending many requests that differ only in their JSON-encoded body, for creating
    thousands of named objects: URL, headers and credentials are prepared once (per call of this,
    so a refreshed token is picked up by the next batch), each send is one request on the client's
    connection pool. Non-2xx raises ApiException like ``request``. The answer is drained unread:
    the object created comes back through the watch anyway.

    The API server closes a kept-open connection after 90 s without a request (its http.Server's
    IdleTimeout). A create sent on one just as it closes gets no answer (``RemoteDisconnected``),
    and urllib3 does not resend a POST; a sweep whose trials run about 90 s lost that race. Such a
    request is sent again, on a fresh connection, up to SEND_ATTEMPTS times in all. That is safe
    for creates by name: if the first one did reach the server after all, the second is answered
    409 AlreadyExists, which the callers already read as "the object is there". Past the last
    attempt the urllib3 error is raised."""
    import urllib3
    from kubernetes.client.exceptions import ApiException

    _, url, headers, _, _ = c.api.param_serialize(method=method, resource_path=path, auth_settings=["BearerToken"],
                                                  header_params={"Accept": "application/json", "Content-Type": "application/json"})
    pool = c.api.rest_client.pool_manager
    timeout = urllib3.Timeout(connect=10, read=timeout_s)

    def send(body: bytes) -> None:
        for attempt in range(1, SEND_ATTEMPTS + 1):
            try:
                resp = pool.request(method, url, body=body, headers=headers, preload_content=False, timeout=timeout)
                break
            except urllib3.exceptions.ProtocolError:  # closed before an answer; a timeout is not resent
                if attempt == SEND_ATTEMPTS:
                    raise
        try:
            if not 200 <= resp.status <= 299:
                raise ApiException(status=resp.status, reason=resp.reason, body=resp.read().decode("utf-8", "replace"))
            resp.drain_conn()
        finally:
            resp.release_conn()

    return send


def watch(c: Clients, path: str, query: dict[str, Any], timeout: int = 30) -> Iterator[dict[str, Any]]:
    """The events of one watch request, as plain dicts ({"type": ..., "object": {...}}).

    Ends when the server closes the watch (after ``timeout`` seconds); an ERROR event (410 Gone
    among them) is yielded like any other, for the caller to relist.
    """
    resp = request(c, "GET", path, query={**query, "watch": True, "timeoutSeconds": timeout,
                                          "allowWatchBookmarks": True},
                   stream=True, timeout=(10, timeout + 15))
    buf = b""
    ended = False
    try:
        for chunk in resp.stream(amt=None, decode_content=False):
            *lines, buf = (buf + chunk).split(b"\n")
            for line in lines:
                if line.strip():
                    yield orjson.loads(line)
        ended = True
        if buf.strip():
            yield orjson.loads(buf)
    finally:
        if ended:  # the server closed the watch: the connection can be reused
            resp.release_conn()
        else:  # left early: unread data on it, so it must not go back to the pool
            resp.close()


def prepare_namespace(c: Clients, namespace: str, service_account: str | None) -> list[str]:
    """What a sweep needs before its first Job: the namespace, created only when the API server
    says it is missing (404), and the ServiceAccount the sweep file names, which must exist.
    Nothing else is created: trial pods run as the namespace's ``default`` ServiceAccount (or the
    named one) without its token. An identity that may not read namespaces or ServiceAccounts
    (a kubeconfig scoped to one namespace: 403) is taken at its word; a namespace that is missing
    after all is then reported by the first Job create. Returns what was created."""
    from kubernetes.client.exceptions import ApiException

    def exists(read: Callable[[], Any]) -> bool | None:
        try:
            patiently(read, c=c)
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            if exc.status in (401, 403):
                return None
            raise

    made = []
    have_namespace = exists(lambda: c.core.read_namespace(namespace))
    if service_account and have_namespace is not False:
        if exists(lambda: c.core.read_namespaced_service_account(service_account, namespace)) is False:
            raise KubesweepError(f"serviceAccount {service_account!r} does not exist in namespace {namespace}: "
                                 "create it (kubectl create serviceaccount), or leave serviceAccount out to run "
                                 "the trials as the namespace's default one")
    if have_namespace is False:
        if service_account:
            raise KubesweepError(f"namespace {namespace} does not exist, so neither does the serviceAccount "
                                 f"{service_account!r} the sweep file names: create both first")
        try:
            patiently(lambda: c.core.create_namespace({"apiVersion": "v1", "kind": "Namespace",
                                                       "metadata": {"name": namespace}}), c=c)
            made.append(f"namespace/{namespace}")
        except ApiException as exc:
            if exc.status != 409:  # made meanwhile by someone else: fine
                raise KubesweepError(f"namespace {namespace} does not exist and cannot be created: "
                                     f"{api_error(exc)}") from None
    return made


_RBAC = re.compile(r'User "(?P<user>[^"]*)" cannot (?P<verb>\S+) resource "(?P<resource>[^"]+)"'
                   r'(?: in API group "(?P<group>[^"]*)")?(?: in the namespace "(?P<ns>[^"]+)"| at the cluster scope)?')


def status_message(exc: Any) -> str:
    """The message of an ApiException's Status body (or its reason when the body is not one)."""
    try:
        body = orjson.loads(exc.body or b"{}")
    except (orjson.JSONDecodeError, TypeError):
        body = {}
    message = body.get("message") if isinstance(body, dict) else None
    return " ".join(str(message or exc.reason or "").split())


def rbac_denial(message: str) -> bool:
    """Whether a 403's message is RBAC's (a missing permission), not an admission refusal."""
    return _RBAC.search(message) is not None


def dry_run_create(c: Clients, resource: str, namespace: str, body: dict[str, Any]) -> list[str]:
    """Create ``body`` with ``dryRun=All``: everything runs, authorization and admission included,
    and nothing is stored. Returns the server's warnings (the Warning headers: PodSecurity's
    "would violate" among them); a refusal raises ApiException."""
    resp = patiently(lambda: _call(c, "POST", path(resource, namespace), query={"dryRun": "All"}, body=body,
                                   timeout=30, accept="application/json"), c=c)
    resp.read()  # the object as it would be: not needed, but read so that the connection is reused
    raw = resp.getheader("Warning") or ""
    # RFC 7234 warn-values: 299 - "text", joined with ", " when there are several
    return [w.replace('\\"', '"') for w in re.findall(r'\d{3} \S+ "((?:[^"\\]|\\.)*)"', raw)]


def api_error(exc: Any) -> str:
    """One line for an API server's refusal (an ApiException). A missing permission names the
    identity, verb, resource and namespace, and where the Role a sweep needs is written down."""
    message = status_message(exc)
    m = _RBAC.search(message)
    if exc.status == 403 and m:
        resource = m["resource"] + (f".{m['group']}" if m["group"] else "")
        where = f"in namespace {m['ns']}" if m["ns"] else "cluster-wide"
        return (f"permission denied: {m['user']} may not {m['verb']} {resource} {where}. Ask the cluster's admin "
                "for it (docs/kubeconfig.md lists the Role a sweep needs), or use a namespace where you have it "
                "(-n/--namespace).")
    if exc.status == 401:
        return ("the API server does not accept this kubeconfig's credentials (401 Unauthorized): its token or "
                "certificate expired or was revoked; get a new kubeconfig")
    return f"the API server refused ({exc.status} {exc.reason}): {message}"
