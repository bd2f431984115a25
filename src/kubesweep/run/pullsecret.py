"""The pull secret a sweep's trials use: a ``kubernetes.io/dockerconfigjson`` Secret made from the
user's docker credentials for the image's registry (local/registry.py reads them).

Created in the sweep's namespace, or, when it exists, patched to hold those credentials (a Secret
of that name of another type is refused by the API server: its type cannot change). The Secret
is never read back, here or anywhere in kubesweep, and nothing of the credentials is printed or
written anywhere but into it.
"""

from __future__ import annotations

import base64

from kubesweep.errors import KubesweepError
from kubesweep.k8s import client as kube
from kubesweep.local import registry as registries

TYPE = "kubernetes.io/dockerconfigjson"
KEY = ".dockerconfigjson"
MANAGED_BY = {"app.kubernetes.io/managed-by": "kubesweep"}


def body(name: str, registry: str, creds: registries.Credentials) -> dict:
    """The Secret: the credentials for ``registry`` as its .dockerconfigjson."""
    encoded = base64.b64encode(registries.dockerconfigjson(registry, creds)).decode()
    return {"apiVersion": "v1", "kind": "Secret", "type": TYPE, "data": {KEY: encoded},
            "metadata": {"name": name, "labels": dict(MANAGED_BY)}}


def ensure(c: kube.Clients, namespace: str, name: str, image: str) -> str:
    """Create Secret ``name`` in ``namespace``, or update it, so that the kubelet can pull
    ``image`` with the user's docker credentials for its registry. Returns "created" or "updated"."""
    from kubernetes.client.exceptions import ApiException

    registry, _ = registries.split_reference(image)
    creds = registries.credentials(registry)
    if creds is None:
        login = "`docker login`" if registry == registries.DOCKER_HUB else f"`docker login {registry}`"
        raise registries.AuthError(f"pull secret {name}: there are no credentials for {registry} in "
                                   f"{registries.docker_config_dir() / 'config.json'}: run {login}")
    secret = body(name, registry, creds)
    kube.prepare_namespace(c, namespace, None)
    try:
        try:
            kube.patiently(lambda: c.core.create_namespaced_secret(namespace, secret), c=c)
            return "created"
        except ApiException as exc:
            if exc.status != 409:
                raise
        patch = {"type": TYPE, "metadata": {"labels": dict(MANAGED_BY)}, "data": secret["data"]}
        kube.patiently(lambda: c.core.patch_namespaced_secret(name, namespace, patch), c=c)
        return "updated"
    except ApiException as exc:
        if exc.status == 422 and "type" in kube.status_message(exc):
            raise KubesweepError(f"Secret {name} in namespace {namespace} exists and is not of type {TYPE} (a type "
                                 "cannot change): name another pull secret") from None
        raise KubesweepError(f"pull secret {name} in namespace {namespace}: {kube.api_error(exc)}") from None
