"""The pull secret a sweep's trials use: a ``kubernetes.io/dockerconfigjson`` Secret made from the
user's docker credentials for the image's registry (local/registry.py reads them).

Created in the sweep's namespace, or updated there: an existing dockerconfigjson Secret of that
name keeps its entries for other registries and gets this registry's replaced. A Secret of that
name of another type is left alone and refused. Nothing of the credentials is printed or written
anywhere but into the Secret.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from kubesweep.errors import KubesweepError
from kubesweep.k8s import client as kube
from kubesweep.local import registry as registries

TYPE = "kubernetes.io/dockerconfigjson"
KEY = ".dockerconfigjson"
MANAGED_BY = {"app.kubernetes.io/managed-by": "kubesweep"}


def _merged(existing: dict[str, Any] | None, ours: bytes) -> bytes:
    if not existing:
        return ours
    try:
        old = json.loads(base64.b64decode((existing.get("data") or {}).get(KEY, "")) or b"{}")
    except ValueError:
        old = {}
    auths = dict(old.get("auths") or {}) if isinstance(old, dict) else {}
    auths.update(json.loads(ours)["auths"])
    return json.dumps({**(old if isinstance(old, dict) else {}), "auths": auths}, sort_keys=True).encode()


def ensure(c: kube.Clients, namespace: str, name: str, image: str) -> str:
    """Create or update Secret ``name`` in ``namespace`` so that the kubelet can pull ``image``
    with the user's docker credentials for its registry. Returns "created", "updated" or
    "unchanged"."""
    from kubernetes.client.exceptions import ApiException

    registry, _ = registries.split_reference(image)
    creds = registries.credentials(registry)
    if creds is None:
        login = "`docker login`" if registry == registries.DOCKER_HUB else f"`docker login {registry}`"
        raise registries.AuthError(f"pull secret {name}: there are no credentials for {registry} in "
                                   f"{registries.docker_config_dir() / 'config.json'}: run {login}")
    ours = registries.dockerconfigjson(registry, creds)
    kube.prepare_namespace(c, namespace, None)
    try:
        existing = c.plain(kube.patiently(lambda: c.core.read_namespaced_secret(name, namespace), c=c))
    except ApiException as exc:
        if exc.status != 404:
            raise KubesweepError(f"pull secret {name} in namespace {namespace}: {kube.api_error(exc)}") from None
        existing = None
    if existing is not None and existing.get("type") != TYPE:
        raise KubesweepError(f"Secret {name} in namespace {namespace} exists and is of type {existing.get('type')}, "
                             f"not {TYPE}: name another pull secret")
    data = _merged(existing, ours)
    encoded = base64.b64encode(data).decode()
    if existing is not None and (existing.get("data") or {}).get(KEY) == encoded:
        return "unchanged"
    body = {"apiVersion": "v1", "kind": "Secret", "type": TYPE, "data": {KEY: encoded},
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {**((existing or {}).get("metadata", {}).get("labels") or {}), **MANAGED_BY}}}
    try:
        if existing is None:
            kube.patiently(lambda: c.core.create_namespaced_secret(namespace, body), c=c)
            return "created"
        body["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
        kube.patiently(lambda: c.core.replace_namespaced_secret(name, namespace, body), c=c)
        return "updated"
    except ApiException as exc:
        raise KubesweepError(f"pull secret {name} in namespace {namespace}: {kube.api_error(exc)}") from None
