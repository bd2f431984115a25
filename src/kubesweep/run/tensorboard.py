"""TensorBoard per experiment: a Deployment and Service in the experiment's namespace reading its
shared output directory (output.share: ``<share>/<namespace>/<experiment>``, one run per trial),
and a port-forward to it from this machine.

``ensure`` creates them or reuses those already there (a second call creates nothing; a changed
image or share updates the Deployment in place). ``forward`` listens on a local port and opens one
port-forward stream (the Kubernetes API's pods/portforward, through the Python client: no kubectl)
to a ready TensorBoard pod for each connection; its ``url`` is what a browser opens. The CLI
(`kubesweep tensorboard EXP`) and `kubesweep serve` both use the two; a server in the cluster
reaches the Service directly (``service_url``) instead of forwarding.

TensorBoard serves under ``/tensorboard/<experiment>/`` (its ``--path_prefix``), so that
`kubesweep serve` can pass that path through to it as it is, beside its own routes.

The objects carry ``app.kubernetes.io/managed-by: kubesweep`` and ``kubesweep.io/tensorboard:
<experiment>`` (not the trials' ``kubesweep.io/experiment``, which the runner and ``status`` read
as trials); ``delete`` removes them by that label.
"""

from __future__ import annotations

import hashlib
import posixpath
import select
import socket
import threading
import time
from typing import Any

from kubesweep.errors import KubesweepError
from kubesweep.k8s import client as kube
from kubesweep.plan import job as manifest
from kubesweep.spec.rules import DNS_LABEL

#: The label that names the experiment a TensorBoard reads (selector of its Service and pods).
L_TENSORBOARD = manifest.LABEL_PREFIX + "tensorboard"
PORT = 6006
#: Where every node mounts the shared storage (output.share's usual value; docs/grid.md).
DEFAULT_SHARE = "/share"
PREFIX = "tensorboard-"
CONTAINER = "tensorboard"
SHARE_VOLUME = "share"
# TensorBoard's own state (.tensorboard-info) goes to /tmp; the root filesystem is read-only.
TMP_VOLUME = "tmp"
RESOURCES = {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
RUN_AS = 1000  # the trials' default user: it reads what they wrote


class TensorBoardError(KubesweepError):
    pass


def _check(what: str, value: str) -> None:
    if not (isinstance(value, str) and DNS_LABEL.fullmatch(value) and len(value) <= 63):
        raise TensorBoardError(f"{what} {value!r} is not a Kubernetes name (lowercase letters, digits and '-', "
                               "starting and ending with a letter or digit, at most 63)")


def _check_share(share: str) -> str:
    normal = posixpath.normpath(share or "")
    if not share.startswith("/") or normal != share.rstrip("/") or normal == "/" or "\0" in share:
        raise TensorBoardError(f"share {share!r} must be an absolute, normalised path other than / "
                               "(where every node mounts the shared storage, output.share)")
    return normal


def name_for(experiment: str) -> str:
    """The Deployment's and Service's name: ``tensorboard-<experiment>``, a DNS-1035 label of at
    most 63 characters (a longer experiment name is cut and a hash of the whole keeps it unique)."""
    _check("experiment", experiment)
    name = PREFIX + experiment
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(experiment.encode()).hexdigest()[:8]
    return f"{(PREFIX + experiment)[:63 - 9].rstrip('-')}-{digest}"


def logdir(namespace: str, experiment: str, share: str = DEFAULT_SHARE) -> str:
    """The experiment's directory on the shared storage: every trial's (a TensorBoard run each)."""
    return f"{_check_share(share)}/{namespace}/{experiment}"


def labels(experiment: str) -> dict[str, str]:
    return {**manifest.MANAGED_BY, "app.kubernetes.io/name": "tensorboard", L_TENSORBOARD: experiment}


def path_prefix(experiment: str) -> str:
    """Where TensorBoard serves: ``/tensorboard/<experiment>`` (its pages under that path and a /)."""
    _check("experiment", experiment)
    return f"/tensorboard/{experiment}"


def argv(namespace: str, experiment: str, share: str = DEFAULT_SHARE) -> list[str]:
    """TensorBoard's arguments (the image's entrypoint is ``python3 -m tensorboard.main``)."""
    return ["--logdir", logdir(namespace, experiment, share), "--host", "0.0.0.0", "--port", str(PORT),
            "--path_prefix", path_prefix(experiment), "--reload_interval", "10"]


def service_url(namespace: str, service_name: str) -> str:
    """The Service's address from a pod in the same cluster (its DNS name, found through the
    pod's search domains whatever the cluster's domain is), with TensorBoard's port."""
    _check("namespace", namespace)
    _check("service", service_name)
    return f"http://{service_name}.{namespace}.svc:{PORT}"


def deployment(namespace: str, experiment: str, *, image: str, share: str = DEFAULT_SHARE) -> dict[str, Any]:
    """One TensorBoard pod, non-root on a read-only root filesystem, with the nodes' share mounted
    read-only where the trials mount it (a hostPath of type Directory: a node without the share
    refuses the mount rather than making an empty directory)."""
    _check("namespace", namespace)
    share = _check_share(share)
    name, lab = name_for(experiment), labels(experiment)
    container = {
        "name": CONTAINER,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "args": argv(namespace, experiment, share),
        "ports": [{"name": "http", "containerPort": PORT}],
        "resources": RESOURCES,
        "readinessProbe": {"httpGet": {"path": f"{path_prefix(experiment)}/data/environment", "port": PORT},
                           "periodSeconds": 5},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": SHARE_VOLUME, "mountPath": share, "readOnly": True},
                         {"name": TMP_VOLUME, "mountPath": "/tmp"}],
    }
    pod = {
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": [{"name": SHARE_VOLUME, "hostPath": {"path": share, "type": "Directory"}},
                    {"name": TMP_VOLUME, "emptyDir": {"sizeLimit": "256Mi"}}],
    }
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": lab},
        "spec": {"replicas": 1, "selector": {"matchLabels": {L_TENSORBOARD: experiment}},
                 "strategy": {"type": "Recreate"},
                 "template": {"metadata": {"labels": lab}, "spec": pod}},
    }


def service(namespace: str, experiment: str) -> dict[str, Any]:
    _check("namespace", namespace)
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name_for(experiment), "namespace": namespace, "labels": labels(experiment)},
        "spec": {"selector": {L_TENSORBOARD: experiment},
                 "ports": [{"name": "http", "port": PORT, "targetPort": PORT, "protocol": "TCP"}]},
    }


def _get(c: kube.Clients, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
    from kubernetes.client.exceptions import ApiException

    try:
        return kube.request(c, "GET", kube.path(resource, namespace, name))
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _owned(found: dict[str, Any], experiment: str, what: str) -> None:
    meta = found.get("metadata") or {}
    if (meta.get("labels") or {}).get(L_TENSORBOARD) != experiment:
        raise TensorBoardError(f"{what} {meta.get('namespace')}/{meta.get('name')} exists and is not "
                               f"experiment {experiment}'s TensorBoard (no label {L_TENSORBOARD}={experiment}): "
                               "left as it is")


def _differs(found: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether the Deployment there runs another image, arguments or mounts than wanted."""
    def key(d: dict[str, Any]) -> Any:
        spec = d["spec"]["template"]["spec"]
        (ctr,) = spec["containers"][:1] or [{}]
        return (ctr.get("image"), ctr.get("args"), [v.get("hostPath") for v in spec.get("volumes") or []])

    try:
        return key(found) != key(wanted)
    except (KeyError, TypeError, ValueError):
        return True


def ensure(c: kube.Clients, namespace: str, experiment: str, *, image: str, share: str = DEFAULT_SHARE) -> str:
    """Create experiment's TensorBoard Deployment and Service in ``namespace``, or reuse them:
    nothing is sent but two GETs when they are there as wanted; a Deployment with another image or
    share is updated in place. Returns their name."""
    if not image:
        raise TensorBoardError("no TensorBoard image given")
    dep, svc = deployment(namespace, experiment, image=image, share=share), service(namespace, experiment)
    name = dep["metadata"]["name"]
    try:
        found = _get(c, "deployments", namespace, name)
        if found is None:
            kube.request(c, "POST", kube.path("deployments", namespace), body=dep)
        else:
            _owned(found, experiment, "Deployment")
            if _differs(found, dep):
                kube.request(c, "PUT", kube.path("deployments", namespace, name),
                             body={**dep, "metadata": {**dep["metadata"],
                                                       "resourceVersion": found["metadata"]["resourceVersion"]}})
        there = _get(c, "services", namespace, name)
        if there is None:
            kube.request(c, "POST", kube.path("services", namespace), body=svc)
        else:
            _owned(there, experiment, "Service")
    except _api_exception() as exc:
        if exc.status in (401, 403):
            raise TensorBoardError(kube.api_error(exc)) from None
        if exc.status == 409:  # made by another caller meanwhile: theirs is the same
            return name
        raise TensorBoardError(f"TensorBoard {namespace}/{name}: {kube.api_error(exc)}") from None
    return name


def _api_exception() -> type[Exception]:
    from kubernetes.client.exceptions import ApiException

    return ApiException


def delete(c: kube.Clients, namespace: str, experiment: str) -> int:
    """Remove experiment's TensorBoard (Deployment, its pods, Service); how many objects went."""
    _check("namespace", namespace)
    _check("experiment", experiment)
    selector = f"{L_TENSORBOARD}={experiment}"
    gone = 0
    for resource in ("deployments", "services"):
        for item in kube.request(c, "GET", kube.path(resource, namespace), query={"labelSelector": selector}).get("items") or []:
            try:
                kube.request(c, "DELETE", kube.path(resource, namespace, item["metadata"]["name"]),
                             query={"propagationPolicy": "Background"})
                gone += 1
            except _api_exception() as exc:
                if exc.status != 404:
                    raise
    return gone


# ----------------------------------------------------------------------------- port-forward


def _ready(pod: dict[str, Any]) -> bool:
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(cd.get("type") == "Ready" and cd.get("status") == "True" for cd in conditions)


def _waiting(pods: list[dict[str, Any]]) -> str:
    """Why no pod is ready, in the kubelet's or scheduler's words."""
    for pod in pods:
        status = pod.get("status") or {}
        for cs in status.get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason"):
                return f"{waiting['reason']}: {waiting.get('message') or ''}".rstrip(": ")
        for cd in status.get("conditions") or []:
            if cd.get("status") == "False" and cd.get("message"):
                return f"{cd.get('reason') or cd.get('type')}: {cd['message']}"
    return "no pod yet" if not pods else "not ready yet"


def ready_pod(c: kube.Clients, namespace: str, service_name: str, *, timeout_s: float = 180.0) -> tuple[str, int]:
    """A ready pod behind the Service and the port it serves on: (pod name, port). Waits up to
    ``timeout_s`` (a new TensorBoard pulls its image and starts), then says why not."""
    svc = _get(c, "services", namespace, service_name)
    if svc is None:
        raise TensorBoardError(f"no Service {namespace}/{service_name}")
    spec = svc.get("spec") or {}
    selector = ",".join(f"{k}={v}" for k, v in sorted((spec.get("selector") or {}).items()))
    if not selector:
        raise TensorBoardError(f"Service {namespace}/{service_name} selects no pods")
    ports = spec.get("ports") or [{}]
    target = ports[0].get("targetPort") or ports[0].get("port")
    if not isinstance(target, int):
        raise TensorBoardError(f"Service {namespace}/{service_name}: a named targetPort ({target}) is not supported")
    deadline = time.monotonic() + timeout_s
    while True:
        pods = kube.request(c, "GET", kube.path("pods", namespace), query={"labelSelector": selector}).get("items") or []
        for pod in pods:
            if _ready(pod):
                return pod["metadata"]["name"], target
        if time.monotonic() >= deadline:
            raise TensorBoardError(f"no ready pod behind Service {namespace}/{service_name} after {timeout_s:.0f} s: "
                                   f"{_waiting(pods)}")
        time.sleep(1.0)


class Forward:
    """A local listening socket; each connection to it is carried to ``port`` of a pod of the
    Service through its own port-forward stream. ``url`` is where to point a browser; ``close()``
    stops listening and ends the connections."""

    def __init__(self, c: kube.Clients, namespace: str, service_name: str, *, local_port: int = 0,
                 host: str = "127.0.0.1", timeout_s: float = 180.0, path: str = "/") -> None:
        from kubernetes import client

        self.namespace, self.service = namespace, service_name
        self._c = c
        self._pod, self._port = ready_pod(c, namespace, service_name, timeout_s=timeout_s)
        # Its own ApiClient: the client's portforward swaps its ApiClient's call_api for the
        # duration of the call, which must not catch another thread's requests on a shared one.
        self._core = client.CoreV1Api(client.ApiClient(c.api.configuration))
        self._open = threading.Lock()
        self._closed = threading.Event()
        self._conns: set[Any] = set()
        self._listener = socket.create_server((host, local_port))
        self._listener.settimeout(0.5)
        bound = self._listener.getsockname()
        self.host, self.port = host, bound[1]
        shown = f"[{host}]" if ":" in host else host
        #: where the forward listens, and the page a browser opens there (``path`` on it)
        self.base = f"http://{shown}:{self.port}"
        self.url = self.base + "/" + path.lstrip("/")
        self._thread = threading.Thread(target=self._accept, name=f"tensorboard-forward-{service_name}", daemon=True)
        self._thread.start()

    def __enter__(self) -> Forward:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _stream(self) -> Any:
        from kubernetes.stream import portforward

        with self._open:
            try:
                pf = portforward(self._core.connect_get_namespaced_pod_portforward, self._pod, self.namespace,
                                 ports=str(self._port))
            except _api_exception():  # the pod went (a new one replaced it): find the ready one
                self._pod, self._port = ready_pod(self._c, self.namespace, self.service, timeout_s=60)
                pf = portforward(self._core.connect_get_namespaced_pod_portforward, self._pod, self.namespace,
                                 ports=str(self._port))
        return pf

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._carry, args=(conn,), daemon=True).start()

    def _carry(self, conn: socket.socket) -> None:
        self._conns.add(conn)
        pf = None
        try:
            pf = self._stream()
            remote = pf.socket(self._port)
            remote.setblocking(True)
            conn.setblocking(True)
            ends = [conn, remote]
            while not self._closed.is_set():
                readable, _, _ = select.select(ends, [], [], 0.5)
                done = False
                for end in readable:
                    data = end.recv(65536)
                    if not data:
                        done = True
                        break
                    (remote if end is conn else conn).sendall(data)
                if done:
                    break
        except Exception:  # a stream that fails ends this connection only; the browser retries
            pass
        finally:
            self._conns.discard(conn)
            for end in (conn, pf):
                try:
                    if end is not None:
                        end.close()
                except Exception:
                    pass

    def close(self) -> None:
        self._closed.set()
        try:
            self._listener.close()
        except OSError:
            pass
        for conn in list(self._conns):
            try:
                conn.close()
            except OSError:
                pass
        self._thread.join(timeout=2)


def forward(target: Any, namespace: str, service_name: str, local_port: int = 0, *, host: str = "127.0.0.1",
            timeout_s: float = 180.0, path: str = "/") -> Forward:
    """Port-forward the TensorBoard Service ``service_name`` to ``host:local_port`` (0: a free
    port); the forward's ``url`` is ``path`` there (``path_prefix(experiment) + "/"``: the page).
    ``target`` is a ``kubesweep.sweep.Target`` (kubeconfig and context) or ready ``Clients``.
    Waits up to ``timeout_s`` for a ready pod."""
    _check("namespace", namespace)
    c = target if isinstance(target, kube.Clients) else kube.clients(target.kubeconfig, target.context)
    return Forward(c, namespace, service_name, local_port=local_port, host=host, timeout_s=timeout_s, path=path)
