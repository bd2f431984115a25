"""Kueue's release manifests (``manifests.yaml``: CRDs, RBAC, the controller Deployment, webhooks,
the internal certificate Secret, the visibility APIService), rendered from its Go module.

Upstream's release (its Makefile's ``artifacts`` target) sets the controller image in
config/components/manager (``kustomize edit set image controller=registry.k8s.io/kueue/kueue:<tag>``)
and runs ``kustomize build config/default -o artifacts/manifests.yaml``, published as
https://github.com/kubernetes-sigs/kueue/releases/download/<tag>/manifests.yaml. Here the same
happens to a copy of the module's config/ (the module cache is read-only) with the kubectl built
from Kubernetes' module (``kubectl kustomize``), and the file goes into the mirror at that URL's
path (mirror_layout.py), so the kueue role downloads it the same way online and offline.

The output is stamped (the Kueue version, the image, kubectl's digest, MANIFESTS_SCRIPT_VERSION):
a second run renders nothing.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from .cache import Cache, OfflineError, Stamp, raise_disk_error, remove_quietly, run, sha256_file, temp_sibling
from .gobuild import Built

MANIFESTS_SCRIPT_VERSION = 1
IMAGE_REPOSITORY = "registry.k8s.io/kueue/kueue"  # upstream's release image
CONTROLLER_IMAGE_NAME = "controller"              # the image name config/components/manager sets
DEPLOYMENT = "kueue-controller-manager"
NAMESPACE = "kueue-system"
MANIFESTS = "manifests.yaml"


def image(version: str) -> str:
    return f"{IMAGE_REPOSITORY}:v{version.lstrip('v')}"


def set_image(kustomization: dict[str, Any], name: str, ref: str) -> dict[str, Any]:
    """``kustomize edit set image <name>=<repository>:<tag>``: the images entry of ``name``
    gets newName/newTag (added when there is none); other entries stay as they are."""
    repository, _, tag = ref.rpartition(":")
    if not repository or "/" in tag:
        raise ValueError(f"image reference {ref!r} has no tag")
    entries = [dict(e) for e in kustomization.get("images") or []]
    for entry in entries:
        if entry.get("name") == name:
            entry.pop("digest", None)
            entry.update(newName=repository, newTag=tag)
            break
    else:
        entries.append({"name": name, "newName": repository, "newTag": tag})
    return {**kustomization, "images": entries}


def check(text: str, version: str) -> dict[str, int]:
    """The rendered manifests hold Kueue's CRDs, its Deployment with the release image and the
    webhook configurations; returns the count of each kind."""
    try:
        docs = [d for d in yaml.load_all(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) if d]
    except yaml.YAMLError as exc:
        raise OfflineError(f"kubectl kustomize wrote Kueue manifests that are not YAML: {exc}") from None
    kinds: dict[str, int] = {}
    for d in docs:
        kinds[d.get("kind", "?")] = kinds.get(d.get("kind", "?"), 0) + 1
    deployments = [d for d in docs if d.get("kind") == "Deployment" and d["metadata"].get("name") == DEPLOYMENT]
    if not deployments:
        raise OfflineError(f"Kueue {version}'s config/default renders no Deployment {DEPLOYMENT}: "
                           "its layout changed; update kueue_manifests.py")
    images = [c.get("image") for c in deployments[0]["spec"]["template"]["spec"]["containers"]]
    if images != [image(version)]:
        raise OfflineError(f"Kueue {version}'s Deployment runs {images}, not {image(version)}: "
                           f"the `{CONTROLLER_IMAGE_NAME}` image of config/components/manager was not replaced")
    for kind in ("CustomResourceDefinition", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        if not kinds.get(kind):
            raise OfflineError(f"Kueue {version}'s manifests have no {kind}: its config/default changed")
    return kinds


def _writable_copy(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, symlinks=True)
    for dirpath, dirnames, filenames in os.walk(dst):  # the module cache's files are read-only
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            if not p.is_symlink():
                p.chmod(p.stat().st_mode | stat.S_IWUSR)


def render(cache: Cache, *, kubectl: Path, module_dir: Path, version: str,
           progress: Callable[[str], None] = lambda s: None) -> Built:
    """CACHE/build/kueue-<version>/manifests.yaml, rendered unless its stamp is fresh."""
    v = version.lstrip("v")
    out = cache.build_dir("kueue", v) / MANIFESTS
    inputs = {"script": MANIFESTS_SCRIPT_VERSION, "version": v, "image": image(v), "kubectl": sha256_file(kubectl)}
    stamp = Stamp(out.parent / "stamps" / "manifests.json")
    if stamp.is_fresh(inputs, out):
        return Built("kueue", MANIFESTS, v, out, stamp.get("sha256"), True, 0.0)
    config = module_dir / "config"
    manager = Path("components") / "manager" / "kustomization.yaml"
    if not (config / "default" / "kustomization.yaml").is_file() or not (config / manager).is_file():
        raise OfflineError(f"{config} has no default/kustomization.yaml or {manager}: is the Kueue module in "
                           f"{module_dir} complete? (`go clean -modcache` and rerun)")
    progress(f"  rendering Kueue {v}'s manifests (kubectl kustomize config/default, image {image(v)})")
    started = time.monotonic()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(out)
    try:
        with tempfile.TemporaryDirectory(prefix="kueue-config-", dir=out.parent) as work:
            copy = Path(work) / "config"
            _writable_copy(config, copy)
            kustomization = yaml.safe_load((copy / manager).read_text()) or {}
            (copy / manager).write_text(yaml.safe_dump(set_image(kustomization, CONTROLLER_IMAGE_NAME, image(v)),
                                                       sort_keys=False))
            run([kubectl, "kustomize", copy / "default", "--output", tmp], log=cache.log("kueue-manifests"),
                what=f"render Kueue {v}'s manifests (kubectl kustomize {copy / 'default'})")
        kinds = check(tmp.read_text(), v)
        digest = sha256_file(tmp)
        os.replace(tmp, out)
    except OSError as exc:
        raise_disk_error(exc, out)
    finally:
        remove_quietly([tmp])
    seconds = time.monotonic() - started
    stamp.record(inputs, out, sha256=digest, kinds=kinds)
    progress(f"  rendered {sum(kinds.values())} Kueue objects in {seconds:.1f}s")
    return Built("kueue", MANIFESTS, v, out, digest, False, seconds)
