"""The Kubernetes API, through the official Python client: clients, and what a sweep needs to exist."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import KubesweepError


class ClusterUnreachable(KubesweepError):
    pass


@dataclass
class Clients:
    core: Any
    batch: Any
    rbac: Any
    api: Any  # ApiClient (serialisation)

    def plain(self, obj: Any) -> dict[str, Any]:
        """An API object as the camelCase dict the server sent."""
        return obj if isinstance(obj, dict) else self.api.sanitize_for_serialization(obj)


def default_kubeconfig() -> Path | None:
    from .cluster import DEFAULT_INVENTORY, kubeconfig_path

    if os.environ.get("KUBECONFIG"):
        return Path(os.environ["KUBECONFIG"].split(os.pathsep)[0])
    local = kubeconfig_path(DEFAULT_INVENTORY)
    if local.exists():
        return local
    # `ansible-playbook site.yml` run by hand writes ~/.kube/kubesweep-<inventory>.conf
    for home in (Path(f"~/.kube/kubesweep-{DEFAULT_INVENTORY.name}.conf").expanduser(), Path("~/.kube/config").expanduser()):
        if home.exists():
            return home
    return None


def clients(kubeconfig: Path | None = None) -> Clients:
    from kubernetes import client, config

    path = kubeconfig or default_kubeconfig()
    if path is None or not Path(path).exists():
        where = f" at {path}" if path else ""
        raise ClusterUnreachable(f"no kubeconfig{where}: bring the local cluster up with `invoke cluster`, "
                                 "or set KUBECONFIG / pass --kubeconfig")
    api = config.new_client_from_config(str(path))
    api.configuration.connection_pool_maxsize = 8
    return Clients(client.CoreV1Api(api), client.BatchV1Api(api), client.RbacAuthorizationV1Api(api), api)


def _create(fn: Any, *args: Any) -> bool:
    from kubernetes.client.exceptions import ApiException

    try:
        fn(*args)
        return True
    except ApiException as exc:
        if exc.status == 409:
            return False
        raise


def ensure_namespace(c: Clients, namespace: str, service_account: str | None) -> list[str]:
    """Namespace, ServiceAccount and a namespace-scoped Role (+ binding) for sweeps, if absent."""
    made = []
    if _create(c.core.create_namespace, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}):
        made.append(f"namespace/{namespace}")
    sa = service_account or "kubesweep"
    if _create(c.core.create_namespaced_service_account, namespace,
               {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa, "namespace": namespace}}):
        made.append(f"serviceaccount/{sa}")
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "kubesweep", "namespace": namespace},
            "rules": [{"apiGroups": ["batch"], "resources": ["jobs"],
                       "verbs": ["create", "get", "list", "watch", "delete", "deletecollection"]},
                      {"apiGroups": [""], "resources": ["pods", "pods/log", "events"], "verbs": ["get", "list", "watch"]}]}
    if _create(c.rbac.create_namespaced_role, namespace, role):
        made.append("role/kubesweep")
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "kubesweep", "namespace": namespace},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "kubesweep"},
               "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": namespace}]}
    if _create(c.rbac.create_namespaced_role_binding, namespace, binding):
        made.append("rolebinding/kubesweep")
    return made
