"""What the offline build pins and what it can build: the versions of kubesweep/versions.yml
(Versions, read through k8s.versions) and the parts of the build (COMPONENTS).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from kubesweep.k8s import versions as pinned
from .cache import OfflineError


# ----------------------------------------------------------------------------------- versions


@dataclass(frozen=True)
class Versions:
    kube: str
    etcd: str
    pause: str
    cni: str
    crictl: str
    kwok: str
    nvidia_device_plugin: str
    flannel: str
    minikube: str
    coredns: str
    local_path_provisioner: str
    kueue: str

    KEYS: ClassVar[dict[str, str]] = {"kube": "kube_version", "etcd": "etcd_version", "pause": "pause_version", "cni": "cni_version",
            "crictl": "crictl_version", "kwok": "kwok_version",
            "nvidia_device_plugin": "nvidia_device_plugin_version", "flannel": "flannel_version",
            "minikube": "minikube_offline_version", "coredns": "coredns_version",
            "local_path_provisioner": "local_path_provisioner_version", "kueue": "kueue_version"}

    @classmethod
    def load(cls, path: Path | None = None) -> Versions:
        try:
            data = pinned.read(path)
        except OSError as exc:
            raise OfflineError(f"cannot read the pinned versions from {path or 'kubesweep/versions.yml'} "
                               f"({exc.strerror})") from None
        path = path or Path("kubesweep/versions.yml")
        missing = [key for key in cls.KEYS.values() if not str(data.get(key) or "").strip()]
        if missing:
            raise OfflineError(f"{path} does not pin {', '.join(missing)}: add e.g. `{missing[0]}: \"1.2.3\"`")
        return cls(**{field: str(data[key]).strip().lstrip("v") for field, key in cls.KEYS.items()})


# -------------------------------------------------------------------------------- components

# What each part of the offline build is for. `invoke setup` builds only CLUSTER (plus GPU when its
# inventory has GPU workers); the rest is built when something asks for it (`invoke cluster
# --fake-nodes` for kwok, `invoke artifacts` and `invoke test` for everything).
CLUSTER = "cluster"          # a kubeadm cluster with DNS, storage and Kueue, and the trainer's base image
GPU = "gpu"                  # the NVIDIA device plugin image (GPU workers)
KWOK = "kwok"                # fake nodes for scale work
MINIKUBE = "minikube"        # the minikube path's binary
CONFORMANCE = "conformance"  # Kubernetes' e2e.test, ginkgo and the images its conformance tests run
COMPONENTS = (CLUSTER, GPU, KWOK, MINIKUBE, CONFORMANCE)


def parse_components(names: Sequence[str] | None) -> frozenset[str]:
    """None or empty: all of them. Unknown names are refused with the known ones listed."""
    if not names:
        return frozenset(COMPONENTS)
    unknown = sorted(set(names) - set(COMPONENTS))
    if unknown:
        raise OfflineError(f"unknown artifact component(s) {', '.join(unknown)}; known: {', '.join(COMPONENTS)}")
    return frozenset(names)
