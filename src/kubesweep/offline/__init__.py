"""The offline mirror, built from source: ``invoke artifacts``.

This machine reaches PyPI, Debian's apt mirror, npm, crates, Maven Central and the Go module
proxy — but not dl.k8s.io, GitHub releases, Docker Hub or registry.k8s.io. So everything the
cluster roles would normally download is produced here:

* gobuild.py — Kubernetes, etcd, crictl, the CNI plugins, kwok, the NVIDIA device plugin and our
  pause program, compiled from their Go modules through generated wrapper modules; what is built
  and with which version flags is gorecipes.py, the Go toolchain gotoolchain.py, go.mod and the
  module proxy gomodules.py;
* image_recipes.py — the node and Python base images from debootstrap (debootstrap.py), and the
  registry.k8s.io images kubeadm needs (and nvcr.io/nvidia/k8s-device-plugin) from our binaries
  (image_tar.py), imported into the local docker daemon (image_import.py); e2e_images.py and
  busybox.py, the images of Kubernetes' conformance tests;
* versions.py — the pinned versions and the parts (components) of the build;
* mirror_layout.py — lays the binaries out under the official URL paths (``files_repo``) with
  their checksums;
* mirror.py — the entry point: ``mirror.build(progress=print) -> dict``;
* cache.py — paths under ``$KUBESWEEP_CACHE`` (default ~/.cache/kubesweep), build stamps,
  atomic writes, SHA256SUMS, and the errors raised (all KubesweepError subclasses).
"""

from .cache import BuildError, DiskFullError, MissingToolError, OfflineError

__all__ = ["BuildError", "DiskFullError", "MissingToolError", "OfflineError"]
