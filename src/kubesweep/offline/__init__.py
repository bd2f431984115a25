"""The offline mirror, built from source: ``invoke artifacts``.

This machine reaches PyPI, Debian's apt mirror, npm, crates, Maven Central and the Go module
proxy — but not dl.k8s.io, GitHub releases, Docker Hub or registry.k8s.io. So everything the
cluster roles would normally download is produced here:

* gobuild.py — Kubernetes, etcd, crictl, the CNI plugins, kwok, the NVIDIA device plugin and our
  pause program, compiled from their Go modules through generated wrapper modules;
* images.py — the node and Python base images from debootstrap, and the registry.k8s.io images
  kubeadm needs (and nvcr.io/nvidia/k8s-device-plugin) from our binaries, imported into the local
  docker daemon;
* mirror.py — lays the binaries out under the official URL paths (``files_repo``) with their
  checksums, and is the entry point: ``mirror.build(progress=print) -> dict``;
* cache.py — paths under ``$KUBESWEEP_CACHE`` (default ~/.cache/kubesweep), build stamps,
  atomic writes, SHA256SUMS, and the errors raised (all KubesweepError subclasses).
"""

from .cache import BuildError, DiskFullError, MissingToolError, OfflineError

__all__ = ["BuildError", "DiskFullError", "MissingToolError", "OfflineError"]
