"""The Kubernetes version kubesweep pins; manifests are validated against its schema.

The same version is pinned for the cluster in inventory/group_vars (kube_version); a test keeps
the two equal.
"""

KUBERNETES_VERSION = "1.35.8"
