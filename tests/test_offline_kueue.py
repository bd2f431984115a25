"""Kueue in the offline build, without Go builds or docker: its wrapper and version flags, its
image recipe, the release manifests rendered from its module, and their place in the mirror."""

from __future__ import annotations

import hashlib
import os
import stat
import sys
from pathlib import Path

import pytest
import yaml

from kubesweep.errors import KubesweepError
from kubesweep.offline import gorecipes, image_recipes, image_tar, kueue_manifests, mirror, mirror_layout, versions
from kubesweep.offline.cache import Cache
from kubesweep.offline.gomodules import ModuleInfo

V = versions.Versions(kube="1.35.8", etcd="3.6.16", pause="3.10.1", cni="1.9.1", crictl="1.36.0", kwok="0.8.0",
                      nvidia_device_plugin="0.19.0", flannel="0.26.7", minikube="1.36.0", coredns="1.13.1",
                      local_path_provisioner="0.0.30", kueue="0.17.0")
MANIFESTS_REL = "github.com/kubernetes-sigs/kueue/releases/download/v0.17.0/manifests.yaml"


def _x_flags(ldflags: str) -> dict[str, str]:
    parts = ldflags.split()
    return dict(parts[i + 1].split("=", 1) for i, p in enumerate(parts) if p == "-X")


# ------------------------------------------------------------------------------ the binary


def test_kueue_is_built_as_its_makefiles_manager_with_its_version_flags():
    w = gorecipes.kueue("v0.17.0")
    assert w.requires == (("sigs.k8s.io/kueue", "v0.17.0"),) and w.version == "0.17.0"
    assert [(b.name, b.package) for b in w.binaries] == [("manager", "sigs.k8s.io/kueue/cmd/kueue")]
    assert not (w.cgo or w.kubernetes_replaces or w.module_replaces)  # static; its go.mod replaces nothing
    info = ModuleInfo("sigs.k8s.io/kueue", "v0.17.0", Path(), Path(), time="2026-03-31T10:20:15Z",
                      origin_hash="0123456789abcdef0123456789abcdef01234567")
    flags = w.ldflags({"sigs.k8s.io/kueue": info})
    assert flags.startswith("-s -w ")
    assert _x_flags(flags) == {"sigs.k8s.io/kueue/pkg/version.GitVersion": "v0.17.0",
                               "sigs.k8s.io/kueue/pkg/version.GitCommit": info.origin_hash,
                               "sigs.k8s.io/kueue/pkg/version.BuildDate": "2026-03-31T10:20:15Z"}
    # the proxy does not always know the commit: empty, not the package's made-up default; and the
    # date is the version's, so the flags (and the binary's stamp) are the same on every run
    bare = _x_flags(w.ldflags({"sigs.k8s.io/kueue": ModuleInfo("sigs.k8s.io/kueue", "v0.17.0", Path(), Path(),
                                                              time="2026-03-31T10:20:15Z")}))
    assert bare["sigs.k8s.io/kueue/pkg/version.GitCommit"] == ""
    assert bare["sigs.k8s.io/kueue/pkg/version.BuildDate"] == "2026-03-31T10:20:15Z"
    assert w.ldflags({}) == w.ldflags({})


def test_the_cluster_part_builds_kueue_and_the_pin_comes_from_versions_yml():
    kueue = [w for w in mirror.wrappers_for(V, frozenset({versions.CLUSTER})) if w.name == "kueue"]
    assert [(w.requires, w.binaries) for w in kueue] == [((("sigs.k8s.io/kueue", "v0.17.0"),),
                                                          gorecipes.kueue("0.17.0").binaries)]
    assert versions.Versions.load().kueue == "0.17.0"


# ------------------------------------------------------------------------------- the image


def test_kueue_image_is_upstreams_path_with_the_manager_as_entrypoint_and_nonroot(tmp_path):
    manager = tmp_path / "manager"
    manager.write_bytes(b"\x7fELF kueue")
    digest = hashlib.sha256(manager.read_bytes()).hexdigest()
    spec = image_recipes.kueue_image("v0.17.0", image_tar.FileEntry("manager", manager, digest))
    assert spec.entry() == {"upstream": "registry.k8s.io/kueue/kueue:v0.17.0", "path": "kueue/kueue:v0.17.0",
                            "local": "kubesweep/kueue/kueue:v0.17.0"}
    assert spec.registry_ref == "127.0.0.1:5000/kueue/kueue:v0.17.0"
    # upstream's Dockerfile: ENTRYPOINT ["/manager"], USER 65532:65532 (the Deployment runs as non-root)
    assert 'ENTRYPOINT ["/manager"]' in spec.changes and "USER 65532:65532" in spec.changes
    out = tmp_path / "image.tar"
    with open(out, "wb") as f:
        image_tar.write_tar(f, spec)
    names = image_tar.tar_names(out)
    assert "manager" in names and "tmp" in names
    import tarfile
    with tarfile.open(out) as tar:
        member = tar.getmember("./manager")
        assert member.mode == 0o755 and member.uid == 0 and tar.extractfile(member).read() == b"\x7fELF kueue"
        assert tar.getmember("./tmp").mode == 0o1777


def test_the_kueue_image_is_listed_only_when_kueue_was_built(tmp_path):
    from kubesweep.offline.debootstrap import Rootfs, RootfsSpec
    from kubesweep.offline.gobuild import Built

    def built(key: str) -> Built:
        path = tmp_path / key.replace("/", "_")
        path.write_bytes(key.encode())
        return Built(key.split("/")[0], key.split("/")[1], "1", path, hashlib.sha256(path.read_bytes()).hexdigest(),
                     True, 0.0)

    keys = ["pause/pause", "kubernetes/kube-apiserver", "kubernetes/kube-controller-manager",
            "kubernetes/kube-scheduler", "kubernetes/kube-proxy", "etcd/etcd", "etcd/etcdctl", "flannel/flanneld",
            "coredns/coredns", "local-path-provisioner/local-path-provisioner"]
    art = {k: built(k) for k in keys}
    root = Rootfs(RootfsSpec("x", "bookworm", ()), tmp_path / "root.tar", "0" * 64, True, 0.0)
    upstream = lambda a: [s.upstream for s in image_recipes.image_specs(V, a, root, root, root)]  # noqa: E731
    assert "registry.k8s.io/kueue/kueue:v0.17.0" not in upstream(art)
    art["kueue/manager"] = built("kueue/manager")
    assert upstream(art).count("registry.k8s.io/kueue/kueue:v0.17.0") == 1


# --------------------------------------------------------------------------- the manifests


def test_set_image_is_kustomize_edit_set_image():
    k = {"resources": ["manager.yaml"],
         "images": [{"name": "controller", "newName": "us-central1-docker.pkg.dev/k8s-staging-images/kueue/kueue",
                     "newTag": "main"}, {"name": "other", "newTag": "1"}]}
    out = kueue_manifests.set_image(k, "controller", "registry.k8s.io/kueue/kueue:v0.17.0")
    assert out["images"] == [{"name": "controller", "newName": "registry.k8s.io/kueue/kueue", "newTag": "v0.17.0"},
                             {"name": "other", "newTag": "1"}]
    assert k["images"][0]["newTag"] == "main"  # the input is not modified
    assert kueue_manifests.set_image({}, "controller", "r.example/k:v1")["images"] == [
        {"name": "controller", "newName": "r.example/k", "newTag": "v1"}]
    with pytest.raises(ValueError, match="no tag"):
        kueue_manifests.set_image({}, "controller", "localhost:5000/kueue")


def _rendered(image: str) -> str:
    docs = [{"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
             "metadata": {"name": "clusterqueues.kueue.x-k8s.io"}},
            {"apiVersion": "apps/v1", "kind": "Deployment",
             "metadata": {"name": "kueue-controller-manager", "namespace": "kueue-system"},
             "spec": {"template": {"spec": {"containers": [{"name": "manager", "image": image}]}}}},
            {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
             "metadata": {"name": "kueue-validating-webhook-configuration"}},
            {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
             "metadata": {"name": "kueue-mutating-webhook-configuration"}}]
    return yaml.safe_dump_all(docs)


def test_check_refuses_manifests_without_the_release_image_or_the_webhooks():
    assert kueue_manifests.check(_rendered("registry.k8s.io/kueue/kueue:v0.17.0"), "0.17.0") == {
        "CustomResourceDefinition": 1, "Deployment": 1, "ValidatingWebhookConfiguration": 1,
        "MutatingWebhookConfiguration": 1}
    with pytest.raises(KubesweepError, match="runs .*kueue:main.*not registry.k8s.io/kueue/kueue:v0.17.0"):
        kueue_manifests.check(_rendered("us-central1-docker.pkg.dev/k8s-staging-images/kueue/kueue:main"), "0.17.0")
    no_webhook = "\n---\n".join(_rendered("registry.k8s.io/kueue/kueue:v0.17.0").split("\n---\n")[:3])
    with pytest.raises(KubesweepError, match="no MutatingWebhookConfiguration"):
        kueue_manifests.check(no_webhook, "0.17.0")
    with pytest.raises(KubesweepError, match="renders no Deployment kueue-controller-manager"):
        kueue_manifests.check("kind: Namespace\nmetadata: {name: kueue-system}\n", "0.17.0")


def _fake_module(tmp_path: Path) -> Path:
    module = tmp_path / "kueue@v0.17.0"
    (module / "config" / "default").mkdir(parents=True)
    (module / "config" / "components" / "manager").mkdir(parents=True)
    (module / "config" / "default" / "kustomization.yaml").write_text("resources: [../components/manager]\n")
    (module / "config" / "components" / "manager" / "kustomization.yaml").write_text(
        "resources:\n- manager.yaml\nimages:\n- name: controller\n  newName: staging/kueue\n  newTag: main\n")
    for p in sorted(module.rglob("*"), reverse=True):  # read-only, like the Go module cache
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    return module


def _fake_kubectl(tmp_path: Path, calls: Path, image: str | None = None) -> Path:
    """A kubectl whose `kustomize DIR --output FILE` writes a rendering with the image that DIR's
    manager kustomization sets (or ``image``), and records its arguments."""
    script = tmp_path / "kubectl"
    script.write_text(f"""#!{sys.executable}
import sys, yaml
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_offline_kueue import _rendered
args = sys.argv[1:]
open({str(calls)!r}, "a").write(" ".join(args) + "\\n")
assert args[0] == "kustomize" and args[2] == "--output", args
k = yaml.safe_load(open(args[1] + "/../components/manager/kustomization.yaml"))
image = {image!r} or [i["newName"] + ":" + i["newTag"] for i in k["images"] if i["name"] == "controller"][0]
open(args[3], "w").write(_rendered(image))
""")
    script.chmod(0o755)
    return script


def test_render_sets_the_release_image_in_a_copy_and_stamps_the_output(tmp_path):
    cache = Cache(tmp_path / "cache")
    module = _fake_module(tmp_path)
    calls = tmp_path / "calls"
    kubectl = _fake_kubectl(tmp_path, calls)
    first = kueue_manifests.render(cache, kubectl=kubectl, module_dir=module, version="v0.17.0")
    assert not first.cached and first.path == cache.build_dir("kueue", "0.17.0") / "manifests.yaml"
    assert (first.group, first.name, first.version) == ("kueue", "manifests.yaml", "0.17.0")
    docs = list(yaml.safe_load_all(first.path.read_text()))
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.k8s.io/kueue/kueue:v0.17.0"
    assert first.sha256 == hashlib.sha256(first.path.read_bytes()).hexdigest()
    # the module itself is untouched; the work copy is gone
    assert "newTag: main" in (module / "config/components/manager/kustomization.yaml").read_text()
    assert [p.name for p in first.path.parent.iterdir() if p.name.startswith(("kueue-config-", ".manifests"))] == []
    # a second run renders nothing
    again = kueue_manifests.render(cache, kubectl=kubectl, module_dir=module, version="0.17.0")
    assert again.cached and again.sha256 == first.sha256
    assert len(calls.read_text().splitlines()) == 1
    # another kubectl (a rebuilt Kubernetes) renders again
    kubectl.write_text(kubectl.read_text() + "# changed\n")
    assert not kueue_manifests.render(cache, kubectl=kubectl, module_dir=module, version="0.17.0").cached
    assert len(calls.read_text().splitlines()) == 2


def test_a_rendering_without_the_release_image_leaves_no_file(tmp_path):
    cache = Cache(tmp_path / "cache")
    kubectl = _fake_kubectl(tmp_path, tmp_path / "calls", image="staging/kueue:main")
    with pytest.raises(KubesweepError, match="was not replaced"):
        kueue_manifests.render(cache, kubectl=kubectl, module_dir=_fake_module(tmp_path), version="0.17.0")
    out = cache.build_dir("kueue", "0.17.0")
    assert not (out / "manifests.yaml").exists() and [p.name for p in out.iterdir() if p.is_file()] == []


def test_a_module_without_kueues_config_is_named(tmp_path):
    cache = Cache(tmp_path / "cache")
    (tmp_path / "empty").mkdir()
    with pytest.raises(KubesweepError, match="has no default/kustomization.yaml .*go clean -modcache"):
        kueue_manifests.render(cache, kubectl=_fake_kubectl(tmp_path, tmp_path / "calls"),
                               module_dir=tmp_path / "empty", version="0.17.0")


def test_the_manifests_go_to_the_release_url_without_a_sha256_file(tmp_path):
    items = [i for i in mirror_layout.layout(V) if i.rel == MANIFESTS_REL]
    assert len(items) == 1 and items[0].sources == (("manifests.yaml", "kueue/manifests.yaml"),)
    src = tmp_path / "manifests.yaml"
    src.write_text(_rendered("registry.k8s.io/kueue/kueue:v0.17.0"))
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    cache = Cache(tmp_path / "cache")
    mirror_layout.lay_out(cache, items, {"kueue/manifests.yaml": mirror_layout.Artifact(src, digest)})
    dst = cache.mirror / MANIFESTS_REL
    assert os.path.samefile(dst, src)
    assert not (cache.mirror / (MANIFESTS_REL + ".sha256")).exists()  # upstream's release has none
    assert (cache.mirror / "SHA256SUMS").read_text() == f"{digest}  {MANIFESTS_REL}\n"
