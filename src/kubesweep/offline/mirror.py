"""``invoke artifacts``: build everything the offline cluster needs, lay out the file mirror.

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
    SHA256SUMS                                                        every file, "<hex>  <path>"

The NVIDIA device plugin is built too (gobuild.py) but is not a mirror file: NVIDIA publishes it
only as the image nvcr.io/nvidia/k8s-device-plugin, so it goes into that image (images.py).

The ``.sha256`` files use each host's own format (dl.k8s.io: the bare digest; GitHub releases:
``sha256sum`` output; minikube's bucket: the digest and a newline), so Ansible's ``get_url checksum: sha256:<url>.sha256`` works the same
against the mirror and upstream. Archives are built deterministically (fixed order, owner and
timestamps, gzip without a timestamp): the same binaries always give the same .tgz digest.
Binaries are hard links to the build outputs (no second copy of ~700 MB).

Everything comes from source (gobuild.py) or Debian (images.py); nothing is downloaded from
dl.k8s.io, GitHub, Docker Hub or registry.k8s.io. The Go builds and the debootstraps run side by
side (the compiler is CPU-bound, debootstrap mostly waits on the network and dpkg). Every step
is cached (cache.Stamp), so a second run only checks stamps and finishes in seconds.

``build(progress=print) -> dict`` is the entry point (tasks.py / cli.artifacts call it).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import tarfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import yaml

from kubesweep.local import services
from kubesweep.local.paths import checkout
from . import busybox, e2e_images, gobuild, images
from .cache import (
    GiB, Cache, DigestCache, OfflineError, Stamp, atomic_write, is_temp_name, raise_disk_error,
    remove_quietly, require_free_space, temp_sibling, write_if_changed, write_sha256sums,
)

VERSIONS_FILE = Path("inventory") / "local" / "group_vars" / "all" / "versions.yml"  # in the checkout
PAUSE_SOURCE = Path("images") / "pause"  # in the checkout
ARCHIVE_SCRIPT_VERSION = 1


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

    KEYS: ClassVar[dict[str, str]] = {"kube": "kube_version", "etcd": "etcd_version", "pause": "pause_version", "cni": "cni_version",
            "crictl": "crictl_version", "kwok": "kwok_version",
            "nvidia_device_plugin": "nvidia_device_plugin_version", "flannel": "flannel_version",
            "minikube": "minikube_offline_version", "coredns": "coredns_version",
            "local_path_provisioner": "local_path_provisioner_version"}

    @classmethod
    def load(cls, path: Path | None = None) -> Versions:
        path = Path(path or checkout() / VERSIONS_FILE)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except OSError as exc:
            raise OfflineError(f"cannot read the pinned versions from {path} ({exc.strerror}): run from a "
                               "kubesweep checkout (pip install -e .)") from None
        missing = [key for key in cls.KEYS.values() if not str(data.get(key) or "").strip()]
        if missing:
            raise OfflineError(f"{path} does not pin {', '.join(missing)}: add e.g. `{missing[0]}: \"1.2.3\"`")
        return cls(**{field: str(data[key]).strip().lstrip("v") for field, key in cls.KEYS.items()})


# -------------------------------------------------------------------------------- components

# What each part of the offline build is for. `invoke setup` builds only CLUSTER (plus GPU when its
# inventory has GPU workers); the rest is built when something asks for it (`invoke cluster
# --fake-nodes` for kwok, `invoke artifacts` and `invoke test` for everything).
CLUSTER = "cluster"          # a kubeadm cluster with DNS and storage, and the trainer's base image
GPU = "gpu"                  # the NVIDIA device plugin image (GPU workers)
KWOK = "kwok"                # fake nodes for scale work
MINIKUBE = "minikube"        # the minikube path's binary
CONFORMANCE = "conformance"  # Kubernetes' e2e.test, ginkgo and the images its conformance tests run
COMPONENTS = (CLUSTER, GPU, KWOK, MINIKUBE, CONFORMANCE)


def wrappers_for(v: Versions, components: frozenset[str]) -> list[gobuild.Wrapper]:
    """The Go modules to build for these components, cheapest-to-need first."""
    out: list[gobuild.Wrapper] = []
    if CLUSTER in components:
        out += [gobuild.kubernetes(v.kube), gobuild.etcd(v.etcd), gobuild.cri_tools(v.crictl),
                gobuild.cni_plugins(v.cni), gobuild.flannel(v.flannel), gobuild.coredns(v.coredns),
                gobuild.local_path_provisioner(v.local_path_provisioner)]
    if KWOK in components:
        out.append(gobuild.kwok(v.kwok, v.kube))
    if GPU in components:
        out.append(gobuild.nvidia_device_plugin(v.nvidia_device_plugin))
    if MINIKUBE in components:
        out.append(gobuild.minikube(v.minikube))
    if CONFORMANCE in components:
        out.append(gobuild.kubernetes_e2e(v.kube))
    return out


def parse_components(names: Sequence[str] | None) -> frozenset[str]:
    """None or empty: all of them. Unknown names are refused with the known ones listed."""
    if not names:
        return frozenset(COMPONENTS)
    unknown = sorted(set(names) - set(COMPONENTS))
    if unknown:
        raise OfflineError(f"unknown artifact component(s) {', '.join(unknown)}; known: {', '.join(COMPONENTS)}")
    return frozenset(names)


# ------------------------------------------------------------------------------------ layout


@dataclass(frozen=True)
class MirrorItem:
    """One file of the mirror: a binary (one source) or an archive of several, and its .sha256 style."""

    rel: str
    sources: tuple[tuple[str, str], ...]  # (name inside the archive, artifact key "group/name")
    archive: bool
    sha256_style: str                     # "hex" (dl.k8s.io), "hexline" (minikube) or "sum" (GitHub: "<hex>  <name>")
    dir_entry: bool = False               # archive starts with a "./" entry (like upstream CNI)


def layout(v: Versions) -> list[MirrorItem]:
    """The mirror's files for these versions: the contract the roles' download URLs rely on."""
    kube = f"dl.k8s.io/release/v{v.kube}/bin/linux/amd64"
    gh = "github.com"
    items = [MirrorItem(f"{kube}/{c}", ((c, f"kubernetes/{c}"),), False, "hex") for c in gobuild.KUBE_COMMANDS]
    items.append(MirrorItem(
        f"{gh}/containernetworking/plugins/releases/download/v{v.cni}/cni-plugins-linux-amd64-v{v.cni}.tgz",
        tuple((f"./{p}", f"cni-plugins/{p}") for p in sorted(gobuild.CNI_PLUGINS)), True, "sum", dir_entry=True))
    items.append(MirrorItem(
        f"{gh}/kubernetes-sigs/cri-tools/releases/download/v{v.crictl}/crictl-v{v.crictl}-linux-amd64.tar.gz",
        (("./crictl", "cri-tools/crictl"),), True, "sum"))
    etcd = f"{gh}/etcd-io/etcd/releases/download/v{v.etcd}/etcd-v{v.etcd}-linux-amd64"
    items += [MirrorItem(f"{etcd}/{b}", ((b, f"etcd/{b}"),), False, "sum") for b in ("etcd", "etcdctl")]
    items.append(MirrorItem(f"{gh}/kubernetes-sigs/kwok/releases/download/v{v.kwok}/kwok-linux-amd64",
                            (("kwok", "kwok/kwok"),), False, "sum"))
    items.append(MirrorItem(f"storage.googleapis.com/minikube/releases/v{v.minikube}/minikube-linux-amd64",
                            (("minikube", "minikube/minikube"),), False, "hexline"))
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
        changed += write_if_changed(root / (item.rel + ".sha256"), sha256_file_text(item, digest))
    listing = write_sha256sums(root, digests)
    digests.forget_missing()
    digests.save()
    return {"root": str(root), "files": len(listing), "changed": changed, "hashed": digests.hashed}


def kwok_stages(cache: Cache, module_dir: Path) -> list[Path]:
    """Copy kwok's stock stages (the Stage objects kwok needs to play kubelet) to CACHE/kwok-stages."""
    base = module_dir / "kustomize" / "stage"
    wanted = [base / "node" / "fast" / "node-initialize.yaml",
              *sorted((base / "node" / "heartbeat-with-lease").glob("*.yaml")),
              base / "pod" / "fast" / "pod-ready.yaml",
              # the general pod-complete stage: a pod "runs" for the delay in its annotation
              # pod-complete.stage.kwok.x-k8s.io/delay (default 1 s plus up to 5 s of jitter)
              base / "pod" / "general" / "pod-complete.yaml",
              base / "pod" / "fast" / "pod-delete.yaml"]
    out = cache.kwok_stages
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for src in wanted:
        try:
            data = src.read_bytes()
        except OSError:
            raise OfflineError(f"kwok's stage file {src} is missing from the module; is {module_dir} complete? "
                               "(`go clean -modcache` and rerun)") from None
        if b"kind: Stage" not in data:  # kustomization.yaml next to the stages is not one
            continue
        write_if_changed(out / src.name, data)
        written.append(out / src.name)
    for stale in set(out.glob("*.yaml")) - set(written):
        stale.unlink()
    return written


# ------------------------------------------------------------------------------------- build


def _epoch(rfc3339: str | None) -> int:
    if not rfc3339:
        return 0
    try:
        return int(datetime.fromisoformat(rfc3339).timestamp())
    except ValueError:
        return 0


NVIDIA_DEVICE_PLUGIN_CHANGES = (  # upstream's deployments/container/Dockerfile
    'ENTRYPOINT ["nvidia-device-plugin"]', f"ENV {images.PATH_ENV}", "ENV NVIDIA_DISABLE_REQUIRE=true",
    "ENV NVIDIA_VISIBLE_DEVICES=all", "ENV NVIDIA_DRIVER_CAPABILITIES=compute,utility")


def image_specs(v: Versions, art: Mapping[str, gobuild.Built], node: images.Rootfs,
                pybase: images.Rootfs, minbase: images.Rootfs) -> list[images.ImageSpec]:
    """The images of the binaries in ``art`` (the device plugin's only when it was built)."""
    def file(key: str, dest: str) -> images.FileEntry:
        return images.FileEntry(dest, art[key].path, art[key].sha256)

    kv = f"v{v.kube}"
    specs = [images.ImageSpec(f"registry.k8s.io/pause:{v.pause}", f"pause:{v.pause}", f"kubesweep/pause:{v.pause}",
                              ('ENTRYPOINT ["/pause"]',), files=(file("pause/pause", "pause"),))]
    specs += [images.k8s_image(c, kv, [file(f"kubernetes/{c}", f"usr/local/bin/{c}")])
              for c in ("kube-apiserver", "kube-controller-manager", "kube-scheduler")]
    specs.append(images.k8s_image("kube-proxy", kv, [file("kubernetes/kube-proxy", "usr/local/bin/kube-proxy")],
                                  base=node.path, base_sha256=node.sha256))
    specs.append(images.k8s_image("etcd", v.etcd, [file("etcd/etcd", "usr/local/bin/etcd"),
                                                    file("etcd/etcdctl", "usr/local/bin/etcdctl")]))
    if "nvidia-device-plugin/nvidia-device-plugin" in art:
        specs.append(images.nvidia_image(
            "k8s-device-plugin", f"v{v.nvidia_device_plugin}", minbase,
            [file("nvidia-device-plugin/nvidia-device-plugin", "usr/bin/nvidia-device-plugin")],
            NVIDIA_DEVICE_PLUGIN_CHANGES))
    # flanneld links glibc (cgo), so it sits on the bare Debian root; upstream's image is
    # ghcr.io/flannel-io/flannel, pulled offline as localhost:5000/flannel-io/flannel.
    specs.append(images.ImageSpec(f"ghcr.io/flannel-io/flannel:v{v.flannel}", f"flannel-io/flannel:v{v.flannel}",
                                  f"kubesweep/flannel:v{v.flannel}",
                                  ('ENTRYPOINT ["/usr/local/bin/flanneld"]', f"ENV {images.PATH_ENV}"),
                                  base=minbase.path, base_sha256=minbase.sha256,
                                  files=(file("flannel/flanneld", "usr/local/bin/flanneld"),)))
    # kubeadm's CoreDNS Deployment runs `/coredns -conf /etc/coredns/Corefile` with NET_BIND_SERVICE;
    # upstream's image is distroless (no shell) with the binary at /coredns, like this one.
    specs.append(images.k8s_image("coredns/coredns", f"v{v.coredns}", [file("coredns/coredns", "coredns")],
                                  changes=('ENTRYPOINT ["/coredns"]', f"ENV {images.PATH_ENV}")))
    # upstream's image is Alpine plus the binary; on the bare Debian root here it keeps a shell, so
    # the same image also serves as the helper pod that makes and removes volume directories.
    specs.append(images.ImageSpec(
        f"docker.io/rancher/local-path-provisioner:v{v.local_path_provisioner}",
        f"rancher/local-path-provisioner:v{v.local_path_provisioner}",
        f"kubesweep/local-path-provisioner:v{v.local_path_provisioner}",
        ('CMD ["local-path-provisioner"]', f"ENV {images.PATH_ENV}"), base=minbase.path, base_sha256=minbase.sha256,
        files=(file("local-path-provisioner/local-path-provisioner", "usr/bin/local-path-provisioner"),)))
    specs.append(images.own_image("node", "bookworm", node,
                                  ['CMD ["/sbin/init"]', "ENV container=docker"]))
    specs.append(images.own_image("python-base", "bookworm", pybase,
                                  ['CMD ["python3"]', f"ENV {images.PATH_ENV}", "ENV LANG=C.UTF-8"]))
    return specs


def build(progress: Callable[[str], None] = print, *, cache_root: Path | str | None = None,
          versions_file: Path | None = None, with_images: bool = True, parallel: bool = True,
          components: Sequence[str] | None = None) -> dict[str, Any]:
    """Build the offline mirror (and, with_images, the container images); return a summary.

    ``components`` (default: all of COMPONENTS) says which parts; what was built before for
    others stays in the mirror and in images.json.

    The summary: ``artifacts`` (each binary: path, sha256, cached, seconds), ``images`` (each:
    upstream, local, path, id, cached, seconds), ``mirror`` (root, file count), ``timings``
    (seconds per phase and total), ``cache_hits`` / ``built`` counts, and where images.json and
    the kwok stages are.
    """
    started = time.monotonic()
    lock = threading.Lock()

    def say(text: str) -> None:
        with lock:
            progress(text)

    cache = Cache(Path(cache_root).expanduser()) if cache_root else Cache.default()
    cache.root.mkdir(parents=True, exist_ok=True)
    v = Versions.load(versions_file)
    wanted = parse_components(components)
    if CLUSTER not in wanted:
        wanted |= {CLUSTER}  # every other part runs on (or beside) the cluster
    say(f"artifacts ({', '.join(c for c in COMPONENTS if c in wanted)}): Kubernetes {v.kube}, etcd {v.etcd}, CNI plugins {v.cni}, crictl {v.crictl}, kwok {v.kwok}, "
        f"pause {v.pause}, NVIDIA device plugin {v.nvidia_device_plugin}, flannel {v.flannel}, minikube {v.minikube} -> {cache.root}")
    tc = gobuild.find_go()
    docker_state = None
    if with_images:
        docker_state = services.ensure_docker()  # fail before minutes of compiling, not after
        if docker_state == "started":
            say("  started a Docker daemon (dockerd) for the images")
    require_free_space(cache.root, 1 * GiB, "build the offline artifacts")

    timings: dict[str, float] = {}
    built: dict[str, gobuild.Built] = {}
    infos: dict[str, gobuild.ModuleInfo] = {}
    failed = threading.Event()

    def go_lane() -> None:
        t = time.monotonic()
        wrappers = wrappers_for(v, wanted)
        try:
            for w in wrappers:
                if failed.is_set():
                    return
                results, mods = gobuild.build_wrapper(cache, tc, w, say)
                infos.update(mods)
                for b in results:
                    built[f"{b.group}/{b.name}"] = b
            if CONFORMANCE in wanted:  # the modules whose versions the pinned tests' manifest gives
                module = infos["k8s.io/kubernetes"].dir
                for w in e2e_images.go_wrappers(e2e_images.test_images(module)):
                    if failed.is_set():
                        return
                    results, _ = gobuild.build_wrapper(cache, tc, w, say)
                    for b in results:
                        built[f"{b.group}/{b.name}"] = b
            b = gobuild.build_local(cache, tc, name="pause", version=v.pause, source=checkout() / PAUSE_SOURCE,
                                    ldflags=gobuild.pause_ldflags(v.pause), progress=say)
            built[f"pause/{b.name}"] = b
        except BaseException:
            failed.set()
            raise
        finally:
            timings["go"] = round(time.monotonic() - t, 1)

    rootfs: dict[str, images.Rootfs] = {}

    def rootfs_lane() -> None:
        t = time.monotonic()
        try:
            apt_mirror = images.debian_mirror()
            specs = [images.NODE_ROOTFS, images.PYTHON_BASE_ROOTFS, images.MINBASE_ROOTFS]
            if CONFORMANCE in wanted:
                specs += e2e_images.ROOTFS
            for spec in specs:
                if failed.is_set():
                    return
                rootfs[spec.name] = images.build_rootfs(cache, spec, apt_mirror, say)
            if CONFORMANCE in wanted and not failed.is_set():
                built["busybox/busybox"] = busybox.build(cache, apt_mirror, say)
        except BaseException:
            failed.set()
            raise
        finally:
            timings["rootfs"] = round(time.monotonic() - t, 1)

    lanes = [go_lane] + ([rootfs_lane] if with_images else [])
    if parallel and len(lanes) > 1:
        with ThreadPoolExecutor(max_workers=len(lanes), thread_name_prefix="artifacts") as pool:
            futures = [pool.submit(lane) for lane in lanes]
            errors = [f.exception() for f in futures]  # waits for both: never leave a lane running
        first = next((e for e in errors if e is not None), None)
        if first is not None:
            raise first
    else:
        for lane in lanes:
            lane()

    t = time.monotonic()
    arts = {key: Artifact(b.path, b.sha256, _epoch(infos.get(_module_of(b.group), _NO_INFO).time))
            for key, b in built.items()}
    # the mirror files of what was built (files of parts built by an earlier run stay where they are)
    items = [item for item in layout(v) if all(key in arts for _, key in item.sources)]
    mirror = lay_out(cache, items, arts, say)
    stages = kwok_stages(cache, infos["sigs.k8s.io/kwok"].dir) if KWOK in wanted else []
    timings["mirror"] = round(time.monotonic() - t, 1)

    image_results: list[images.BuiltImage] = []
    if with_images:
        t = time.monotonic()
        specs = image_specs(v, built, rootfs[images.NODE_ROOTFS.name], rootfs[images.PYTHON_BASE_ROOTFS.name],
                            rootfs[images.MINBASE_ROOTFS.name])
        if CONFORMANCE in wanted:
            module = infos["k8s.io/kubernetes"].dir
            agnhost, nnp, bb = built["kubernetes-e2e/agnhost"], built["kubernetes-e2e/nnp"], built["busybox/busybox"]
            specs += e2e_images.image_specs(e2e_images.test_images(module), module,
                                            images.FileEntry("agnhost", agnhost.path, agnhost.sha256), rootfs,
                                            nnp=images.FileEntry("nnp", nnp.path, nnp.sha256),
                                            busybox=images.FileEntry("busybox", bb.path, bb.sha256),
                                            minbase=rootfs[images.MINBASE_ROOTFS.name], built=built)
        for spec in specs:
            image_results.append(images.ensure_image(cache, spec, say))
        images.write_images_json(cache, specs, keep=True)
        timings["images"] = round(time.monotonic() - t, 1)
    timings["total"] = round(time.monotonic() - started, 1)

    hits = sum(b.cached for b in built.values()) + sum(r.cached for r in rootfs.values()) + sum(
        i.cached for i in image_results)
    made = len(built) + len(rootfs) + len(image_results) - hits
    summary = {
        "cache": str(cache.root),
        "versions": {key: getattr(v, field) for field, key in Versions.KEYS.items()},
        "components": [c for c in COMPONENTS if c in wanted],
        "go": tc.version,
        "artifacts": [{"name": b.name, "group": b.group, "version": b.version, "path": str(b.path),
                       "sha256": b.sha256, "cached": b.cached, "seconds": round(b.seconds, 1)}
                      for b in built.values()],
        "rootfs": [{"name": r.spec.name, "path": str(r.path), "sha256": r.sha256, "cached": r.cached,
                    "seconds": round(r.seconds, 1)} for r in rootfs.values()],
        "mirror": mirror,
        "kwok_stages": [str(p) for p in stages],
        "images": [{**r.spec.entry(), "registry_ref": r.spec.registry_ref, "id": r.id, "cached": r.cached,
                    "seconds": round(r.seconds, 1)} for r in image_results],
        "images_json": str(cache.images_json) if with_images else None,
        "docker": docker_state,
        "timings": timings,
        "cache_hits": hits,
        "built": made,
    }
    say(f"artifacts: {made} built, {hits} from cache in {timings['total']:.1f}s "
        f"(go {timings.get('go', 0):.0f}s, root filesystems {timings.get('rootfs', 0):.0f}s, "
        f"mirror {timings['mirror']:.1f}s, images {timings.get('images', 0):.1f}s); "
        f"mirror: {mirror['root']} ({mirror['files']} files)"
        + (f"; images: {cache.images_json}" if with_images else ""))
    return summary


_NO_INFO = gobuild.ModuleInfo("", "", Path(), Path())
_GROUP_MODULES = {"kubernetes": "k8s.io/kubernetes", "etcd": "go.etcd.io/etcd/server/v3",
                  "cri-tools": "sigs.k8s.io/cri-tools", "cni-plugins": "github.com/containernetworking/plugins",
                  "kwok": "sigs.k8s.io/kwok", "nvidia-device-plugin": gobuild.NVIDIA_DEVICE_PLUGIN_MODULE,
                  "minikube": gobuild.MINIKUBE_MODULE}


def _module_of(group: str) -> str:
    return _GROUP_MODULES.get(group, "")
