"""``invoke artifacts``: build everything the offline cluster needs, lay out the file mirror.

``build(progress=print) -> dict`` is the entry point (tasks.py / cli.artifacts call it). For the
components asked for (versions.py) it compiles the Go programs (gobuild.py, the recipes of
gorecipes.py) and debootstraps the root filesystems (debootstrap.py), lays the binaries out as
the file mirror (mirror_layout.py), copies kwok's stages, and imports the images
(image_recipes.py, e2e_images.py) into the local docker (image_import.py).

Everything comes from source (gobuild.py) or Debian (debootstrap.py); nothing is downloaded from
dl.k8s.io, GitHub, Docker Hub or registry.k8s.io; Kueue's release manifests are rendered from its
module (kueue_manifests.py). The Go builds and the debootstraps run side by
side (the compiler is CPU-bound, debootstrap mostly waits on the network and dpkg). Every step
is cached (cache.Stamp), so a second run only checks stamps and finishes in seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from kubesweep.local import services
from kubesweep.local.paths import checkout
from . import (
    busybox, debootstrap, e2e_images, gobuild, gomodules, gorecipes, gotoolchain, image_import, image_recipes, image_tar,
    kueue_manifests,
)
from .cache import GiB, Cache, OfflineError, require_free_space, write_if_changed
from .mirror_layout import Artifact, lay_out, layout
# the component names are versions.py's; cli/develop.py reaches them as mirror.CLUSTER etc.
from .versions import CLUSTER, COMPONENTS, CONFORMANCE, GPU, KWOK, MINIKUBE, Versions, parse_components

PAUSE_SOURCE = Path("images") / "pause"  # in the checkout


def wrappers_for(v: Versions, components: frozenset[str]) -> list[gobuild.Wrapper]:
    """The Go modules to build for these components, cheapest-to-need first."""
    out: list[gobuild.Wrapper] = []
    if CLUSTER in components:
        out += [gorecipes.kubernetes(v.kube), gorecipes.etcd(v.etcd), gorecipes.cri_tools(v.crictl),
                gorecipes.cni_plugins(v.cni), gorecipes.flannel(v.flannel), gorecipes.coredns(v.coredns),
                gorecipes.local_path_provisioner(v.local_path_provisioner), gorecipes.kueue(v.kueue)]
    if KWOK in components:
        out.append(gorecipes.kwok(v.kwok, v.kube))
    if GPU in components:
        out.append(gorecipes.nvidia_device_plugin(v.nvidia_device_plugin))
    if MINIKUBE in components:
        out.append(gorecipes.minikube(v.minikube))
    if CONFORMANCE in components:
        out.append(gorecipes.kubernetes_e2e(v.kube))
    return out


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
        f"pause {v.pause}, NVIDIA device plugin {v.nvidia_device_plugin}, flannel {v.flannel}, Kueue {v.kueue}, "
        f"minikube {v.minikube} -> {cache.root}")
    tc = gotoolchain.find_go()
    docker_state = None
    if with_images:
        docker_state = services.ensure_docker()  # fail before minutes of compiling, not after
        if docker_state == "started":
            say("  started a Docker daemon (dockerd) for the images")
    require_free_space(cache.root, 1 * GiB, "build the offline artifacts")

    timings: dict[str, float] = {}
    built: dict[str, gobuild.Built] = {}
    infos: dict[str, gomodules.ModuleInfo] = {}
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
                                    ldflags=gorecipes.pause_ldflags(v.pause), progress=say)
            built[f"pause/{b.name}"] = b
        except BaseException:
            failed.set()
            raise
        finally:
            timings["go"] = round(time.monotonic() - t, 1)

    rootfs: dict[str, debootstrap.Rootfs] = {}

    def rootfs_lane() -> None:
        t = time.monotonic()
        try:
            apt_mirror = debootstrap.debian_mirror()
            specs = [image_recipes.NODE_ROOTFS, image_recipes.PYTHON_BASE_ROOTFS, image_recipes.MINBASE_ROOTFS]
            if CONFORMANCE in wanted:
                specs += e2e_images.ROOTFS
            for spec in specs:
                if failed.is_set():
                    return
                rootfs[spec.name] = debootstrap.build_rootfs(cache, spec, apt_mirror, say)
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
    if CLUSTER in wanted:  # Kueue's release manifests, rendered by the kubectl just built
        b = kueue_manifests.render(cache, kubectl=built["kubernetes/kubectl"].path,
                                   module_dir=infos[gorecipes.KUEUE_MODULE].dir, version=v.kueue, progress=say)
        built[f"kueue/{b.name}"] = b
    arts = {key: Artifact(b.path, b.sha256, _epoch(infos.get(_module_of(b.group), _NO_INFO).time))
            for key, b in built.items()}
    # the mirror files of what was built (files of parts built by an earlier run stay where they are)
    items = [item for item in layout(v) if all(key in arts for _, key in item.sources)]
    mirror = lay_out(cache, items, arts, say)
    stages = kwok_stages(cache, infos["sigs.k8s.io/kwok"].dir) if KWOK in wanted else []
    timings["mirror"] = round(time.monotonic() - t, 1)

    image_results: list[image_import.ImportedImage] = []
    if with_images:
        t = time.monotonic()
        specs = image_recipes.image_specs(v, built, rootfs[image_recipes.NODE_ROOTFS.name],
                                          rootfs[image_recipes.PYTHON_BASE_ROOTFS.name],
                                          rootfs[image_recipes.MINBASE_ROOTFS.name])
        if CONFORMANCE in wanted:
            module = infos["k8s.io/kubernetes"].dir
            agnhost, nnp, bb = built["kubernetes-e2e/agnhost"], built["kubernetes-e2e/nnp"], built["busybox/busybox"]
            specs += e2e_images.image_specs(e2e_images.test_images(module), module,
                                            image_tar.FileEntry("agnhost", agnhost.path, agnhost.sha256), rootfs,
                                            nnp=image_tar.FileEntry("nnp", nnp.path, nnp.sha256),
                                            busybox=image_tar.FileEntry("busybox", bb.path, bb.sha256),
                                            minbase=rootfs[image_recipes.MINBASE_ROOTFS.name], built=built)
        for spec in specs:
            image_results.append(image_import.ensure_image(cache, spec, say))
        image_import.write_images_json(cache, specs, keep=True)
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


_NO_INFO = gomodules.ModuleInfo("", "", Path(), Path())
_GROUP_MODULES = {"kubernetes": "k8s.io/kubernetes", "etcd": "go.etcd.io/etcd/server/v3",
                  "cri-tools": "sigs.k8s.io/cri-tools", "cni-plugins": "github.com/containernetworking/plugins",
                  "kwok": "sigs.k8s.io/kwok", "nvidia-device-plugin": gorecipes.NVIDIA_DEVICE_PLUGIN_MODULE,
                  "minikube": gorecipes.MINIKUBE_MODULE, "kueue": gorecipes.KUEUE_MODULE}


def _module_of(group: str) -> str:
    return _GROUP_MODULES.get(group, "")
