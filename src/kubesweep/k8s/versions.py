"""The Kubernetes version kubesweep pins; manifests are validated against its schema.

The same version is pinned for the cluster in inventory/group_vars (kube_version); a test keeps
the two equal.
"""

KUBERNETES_VERSION = "1.35.8"


def pins() -> dict[str, str]:
    """Every pinned version from the inventory's group_vars (the one place they are written)."""
    import yaml

    from kubesweep.local.paths import checkout

    path = checkout() / "inventory" / "local" / "group_vars" / "all" / "versions.yml"
    return {k: str(v) for k, v in (yaml.safe_load(path.read_text()) or {}).items()}
