"""The file mirror (``CACHE/mirror``, served as ``files_repo``): where each binary goes, its
``.sha256`` file, the archives, SHA256SUMS.

The cluster roles download binaries the way they would online — from dl.k8s.io and GitHub
release URLs, checked against the published ``.sha256`` — except that with ``offline_mirror``
the scheme+host prefix is replaced by ``files_repo``. So the mirror is a directory whose paths
are the official URLs minus ``https://`` (served over HTTP as files_repo)::

    dl.k8s.io/release/v{kube}/bin/linux/amd64/{kubeadm,kubelet,kubectl,kube-apiserver,
        kube-controller-manager,kube-scheduler,kube-proxy}           + <file>.sha256 (hex only)
    github.com/containernetworking/plugins/releases/download/v{cni}/cni-plugins-linux-amd64-v{cni}.tgz
    github.com/kubernetes-sigs/cri-tools/releases/download/v{crictl}/crictl-v{crictl}-linux-amd64.tar.gz
    github.com/etcd-io/etcd/releases/download/v{etcd}/etcd-v{etcd}-linux-amd64/{etcd,etcdctl}
    github.com/kubernetes-sigs/kwok/releases/download/v{kwok}/kwok-linux-amd64
                                                                      + <file>.sha256 ("<hex>  <name>")
    storage.googleapis.com/minikube/releases/v{minikube}/minikube-linux-amd64
                                                                      + <file>.sha256 ("<hex>\\n")
    github.com/kubernetes-sigs/kueue/releases/download/v{kueue}/manifests.yaml
                                                                      (no .sha256: the release has none)
    SHA256SUMS                                                        every file, "<hex>  <path>"

The NVIDIA device plugin is built too (gobuild.py) but is not a mirror file: NVIDIA publishes it
only as the image nvcr.io/nvidia/k8s-device-plugin, so it goes into that image (image_recipes.py).

The ``.sha256`` files use each host's own format (dl.k8s.io: the bare digest; GitHub releases:
``sha256sum`` output; minikube's bucket: the digest and a newline), so Ansible's ``get_url checksum: sha256:<url>.sha256`` works the same
against the mirror and upstream. Archives are built deterministically (fixed order, owner and
timestamps, gzip without a timestamp): the same binaries always give the same .tgz digest.
Binaries are hard links to the build outputs (no second copy of ~700 MB).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import tarfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import gorecipes
from .cache import (
    Cache, DigestCache, OfflineError, Stamp, atomic_write, is_temp_name, raise_disk_error, remove_quietly,
    temp_sibling, write_if_changed, write_sha256sums,
)
from .versions import Versions

ARCHIVE_SCRIPT_VERSION = 1


# ------------------------------------------------------------------------------------ layout


@dataclass(frozen=True)
class MirrorItem:
    """One file of the mirror: a binary (one source) or an archive of several, and its .sha256 style."""

    rel: str
    sources: tuple[tuple[str, str], ...]  # (name inside the archive, artifact key "group/name")
    archive: bool
    sha256_style: str                     # "hex" (dl.k8s.io), "hexline" (minikube), "sum" (GitHub: "<hex>  <name>")
                                          # or "none" (no .sha256 file, like Kueue's manifests.yaml upstream)
    dir_entry: bool = False               # archive starts with a "./" entry (like upstream CNI)


def layout(v: Versions) -> list[MirrorItem]:
    """The mirror's files for these versions: the contract the roles' download URLs rely on."""
    kube = f"dl.k8s.io/release/v{v.kube}/bin/linux/amd64"
    gh = "github.com"
    items = [MirrorItem(f"{kube}/{c}", ((c, f"kubernetes/{c}"),), False, "hex") for c in gorecipes.KUBE_COMMANDS]
    items.append(MirrorItem(
        f"{gh}/containernetworking/plugins/releases/download/v{v.cni}/cni-plugins-linux-amd64-v{v.cni}.tgz",
        tuple((f"./{p}", f"cni-plugins/{p}") for p in sorted(gorecipes.CNI_PLUGINS)), True, "sum", dir_entry=True))
    items.append(MirrorItem(
        f"{gh}/kubernetes-sigs/cri-tools/releases/download/v{v.crictl}/crictl-v{v.crictl}-linux-amd64.tar.gz",
        (("./crictl", "cri-tools/crictl"),), True, "sum"))
    etcd = f"{gh}/etcd-io/etcd/releases/download/v{v.etcd}/etcd-v{v.etcd}-linux-amd64"
    items += [MirrorItem(f"{etcd}/{b}", ((b, f"etcd/{b}"),), False, "sum") for b in ("etcd", "etcdctl")]
    items.append(MirrorItem(f"{gh}/kubernetes-sigs/kwok/releases/download/v{v.kwok}/kwok-linux-amd64",
                            (("kwok", "kwok/kwok"),), False, "sum"))
    items.append(MirrorItem(f"storage.googleapis.com/minikube/releases/v{v.minikube}/minikube-linux-amd64",
                            (("minikube", "minikube/minikube"),), False, "hexline"))
    # rendered from Kueue's module (kueue_manifests.py), not a binary
    items.append(MirrorItem(f"{gh}/kubernetes-sigs/kueue/releases/download/v{v.kueue}/manifests.yaml",
                            (("manifests.yaml", "kueue/manifests.yaml"),), False, "none"))
    return items


def sha256_file_text(item: MirrorItem, digest: str) -> str:
    if item.sha256_style == "hex":
        return digest  # dl.k8s.io's <file>.sha256 holds the bare digest, no newline
    if item.sha256_style == "hexline":
        return digest + "\n"  # minikube's release: `openssl sha256 f | awk '{print $2}' > f.sha256`
    return f"{digest}  {os.path.basename(item.rel)}\n"


@dataclass(frozen=True)
class Artifact:
    path: Path
    sha256: str
    mtime: int = 0  # for archive members: the source version's commit time


def place(src: Path, dst: Path) -> bool:
    """Make ``dst`` the same file as ``src`` (hard link, copy across filesystems); True if changed."""
    try:
        if dst.exists() and os.path.samefile(src, dst):
            return False
    except OSError:
        pass
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(dst)
    remove_quietly([tmp])
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
            os.chmod(tmp, 0o755)
        os.replace(tmp, dst)
    except OSError as exc:
        remove_quietly([tmp])
        raise_disk_error(exc, dst)
    return True


def deterministic_tgz(members: Sequence[tuple[str, Path]], mtime: int, dir_entry: bool) -> bytes:
    """A .tgz of ``members`` (arcname, file) that depends only on their bytes and ``mtime``."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        if dir_entry:
            info = tarfile.TarInfo("./")
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, mtime
            tar.addfile(info)
        for arcname, path in sorted(members):
            info = tarfile.TarInfo(arcname)
            info.size, info.mode, info.mtime = path.stat().st_size, 0o755, mtime
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            with open(path, "rb") as f:
                tar.addfile(info, f)
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=6, mtime=0, filename="") as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def lay_out(cache: Cache, items: Sequence[MirrorItem], artifacts: Mapping[str, Artifact],
            progress: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Materialize ``items`` under CACHE/mirror from built ``artifacts``; write .sha256 and SHA256SUMS."""
    root = cache.mirror
    root.mkdir(parents=True, exist_ok=True)
    for dirpath, _, filenames in os.walk(root):  # leftovers of an interrupted run
        remove_quietly(Path(dirpath, n) for n in filenames if is_temp_name(n))
    digests = DigestCache(cache.state / "mirror-digests.json")
    changed = 0
    for item in items:
        missing = [key for _, key in item.sources if key not in artifacts]
        if missing:
            raise OfflineError(f"mirror file {item.rel} needs {', '.join(missing)}, which was not built")
        dst = root / item.rel
        if item.archive:
            members = [(name, artifacts[key]) for name, key in item.sources]
            mtime = max(a.mtime for _, a in members)
            inputs = {"members": [[n, a.sha256] for n, a in members], "mtime": mtime, "dir": item.dir_entry,
                      "script": ARCHIVE_SCRIPT_VERSION}
            stamp = Stamp(cache.state / "mirror" / (item.rel.replace("/", "_") + ".json"))
            if stamp.is_fresh(inputs, dst):
                digest = stamp.get("sha256")
            else:
                data = deterministic_tgz([(n, a.path) for n, a in members], mtime, item.dir_entry)
                atomic_write(dst, data)
                digest = hashlib.sha256(data).hexdigest()
                stamp.record(inputs, dst, sha256=digest)
                changed += 1
        else:
            art = artifacts[item.sources[0][1]]
            changed += place(art.path, dst)
            digest = art.sha256
        digests.digest(dst, known=digest)
        if item.sha256_style == "none":
            continue
        changed += write_if_changed(root / (item.rel + ".sha256"), sha256_file_text(item, digest))
    listing = write_sha256sums(root, digests)
    digests.forget_missing()
    digests.save()
    return {"root": str(root), "files": len(listing), "changed": changed, "hashed": digests.hashed}
