"""The offline build's logic, without Go builds or docker: generated go.mod, ldflags, stamps,
the mirror layout contract, SHA256SUMS, archives, image recipes and error messages."""

from __future__ import annotations

import gzip
import hashlib
import io
import dataclasses
import json
import os
import re
import tarfile
from pathlib import Path

import pytest

from kubesweep.errors import KubesweepError
from kubesweep.offline import cache as cachemod
from kubesweep.offline import (
    debootstrap, gobuild, gomodules, gorecipes, gotoolchain, image_import, image_recipes, image_tar, mirror, mirror_layout,
    versions,
)
from kubesweep.offline.cache import Cache, DigestCache, Stamp
from kubesweep.local.paths import checkout

FAKE_KUBE_GOMOD = """\
// This is a generated file. Do not edit directly.
module k8s.io/kubernetes

go 1.25.0

godebug default=go1.25

require (
\tgithub.com/blang/semver/v4 v4.0.0
\tk8s.io/api v0.0.0
\tk8s.io/client-go v0.0.0 // indirect
)

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/client-go => ./staging/src/k8s.io/client-go // the client
\tgithub.com/old/thing v1.0.0 => github.com/new/thing v1.2.3
)

replace k8s.io/kubectl => ./staging/src/k8s.io/kubectl
"""

V = versions.Versions(kube="1.35.8", etcd="3.6.16", pause="3.10.1", cni="1.9.1", crictl="1.36.0", kwok="0.8.0",
                    nvidia_device_plugin="0.19.0", flannel="0.26.7", minikube="1.36.0", coredns="1.13.1",
                    local_path_provisioner="0.0.30", kueue="0.17.0")

FAKE_MINIKUBE_GOMOD = """\
module k8s.io/minikube

go 1.24.0

toolchain go1.24.1

require (
\tgithub.com/docker/machine v0.16.2
\tk8s.io/cluster-bootstrap v0.33.0
)

replace (
\tgit.apache.org/thrift.git => github.com/apache/thrift v0.0.0-20180902110319-2566ecd5d999
\tgithub.com/briandowns/spinner => github.com/alonyb/spinner v1.12.7
\tgithub.com/docker/machine => github.com/minikube-machine/machine v0.0.0-20240815173309-ffb6b643c381 // fork
\tk8s.io/cluster-bootstrap => k8s.io/cluster-bootstrap v0.22.4
)
"""

MINIKUBE_REPLACES = [
    ("git.apache.org/thrift.git", "github.com/apache/thrift v0.0.0-20180902110319-2566ecd5d999"),
    ("github.com/briandowns/spinner", "github.com/alonyb/spinner v1.12.7"),
    ("github.com/docker/machine", "github.com/minikube-machine/machine v0.0.0-20240815173309-ffb6b643c381"),
    ("k8s.io/cluster-bootstrap", "k8s.io/cluster-bootstrap v0.22.4"),
]


# ------------------------------------------------------------------------------- go.mod


def test_staging_replaces_are_pinned_to_the_v0_release_of_the_same_minor():
    replaces = gomodules.derived_replaces(FAKE_KUBE_GOMOD, "1.35.8")
    assert replaces == [
        ("github.com/old/thing v1.0.0", "github.com/new/thing v1.2.3"),
        ("k8s.io/api", "k8s.io/api v0.35.8"),
        ("k8s.io/client-go", "k8s.io/client-go v0.35.8"),
        ("k8s.io/kubectl", "k8s.io/kubectl v0.35.8"),
    ]


def test_local_replace_outside_staging_is_refused():
    gomod = "module k8s.io/kubernetes\nreplace k8s.io/x => ../elsewhere/x\n"
    with pytest.raises(KubesweepError, match="not a staging module"):
        gomodules.derived_replaces(gomod, "1.35.8")


def test_main_module_replaces_are_copied_as_they_are():
    assert gomodules.copied_replaces(FAKE_MINIKUBE_GOMOD, "k8s.io/minikube") == MINIKUBE_REPLACES
    # a local path is not on the module proxy: refused unless the caller maps it (Kubernetes' staging)
    with pytest.raises(KubesweepError, match=r"k8s.io/minikube replaces x.io/y with the local path \./y"):
        gomodules.copied_replaces("module k8s.io/minikube\nreplace x.io/y => ./y\n", "k8s.io/minikube")
    with pytest.raises(KubesweepError, match="unreadable replace directive in k8s.io/minikube's go.mod"):
        gomodules.copied_replaces("module k8s.io/minikube\nreplace x.io/y\n", "k8s.io/minikube")


@pytest.mark.parametrize(("kube", "staging"), [("1.35.8", "v0.35.8"), ("v1.36.0", "v0.36.0"),
                                               ("1.37.0-rc.1", "v0.37.0-rc.1")])
def test_staging_version(kube, staging):
    assert gomodules.staging_version(kube) == staging


@pytest.mark.parametrize("bad", ["2.0.0", "1.35", "latest"])
def test_staging_version_rejects_what_it_cannot_map(bad):
    with pytest.raises(KubesweepError):
        gomodules.staging_version(bad)


def test_rendered_gomod_parses_back_to_the_same_directives():
    replaces = gomodules.derived_replaces(FAKE_KUBE_GOMOD, "1.35.8")
    text = gomodules.render_gomod("kubesweep.local/build/kubernetes", "1.25.0", [("k8s.io/kubernetes", "v1.35.8")],
                                replaces, ["default=go1.25"])
    parsed = gomodules.parse_directives(text)
    assert ("module", ["kubesweep.local/build/kubernetes"]) in parsed
    assert gomodules.go_directive(text) == "1.25.0"
    assert ("require", ["k8s.io/kubernetes", "v1.35.8"]) in parsed
    assert ("godebug", ["default=go1.25"]) in parsed
    got = [(" ".join(a[:a.index("=>")]), " ".join(a[a.index("=>") + 1:])) for verb, a in parsed if verb == "replace"]
    assert got == replaces


def test_directive_parser_handles_comments_blocks_and_single_lines():
    parsed = gomodules.parse_directives(FAKE_KUBE_GOMOD)
    assert parsed[0] == ("module", ["k8s.io/kubernetes"])
    assert ("require", ["k8s.io/client-go", "v0.0.0"]) in parsed  # "// indirect" dropped
    assert ("replace", ["k8s.io/kubectl", "=>", "./staging/src/k8s.io/kubectl"]) in parsed
    assert gomodules.go_directive(FAKE_KUBE_GOMOD) == "1.25.0"


def test_tools_go_blank_imports_each_command_once_behind_the_tools_tag():
    text = gomodules.render_tools_go(["k8s.io/kubernetes/cmd/kubelet", "k8s.io/kubernetes/cmd/kubeadm",
                                    "k8s.io/kubernetes/cmd/kubelet"])
    assert text.startswith("//go:build tools\n")
    assert re.findall(r'_ "([^"]+)"', text) == ["k8s.io/kubernetes/cmd/kubeadm", "k8s.io/kubernetes/cmd/kubelet"]
    assert "\npackage tools\n" in text


# ------------------------------------------------------------------------------- ldflags


def _x_flags(ldflags: str) -> dict[str, str]:
    return dict(m.split("=", 1) for m in re.findall(r"-X (\S+)", ldflags))


def test_kube_ldflags_set_the_version_in_both_packages_like_hack_lib_version_sh():
    info = gomodules.ModuleInfo("k8s.io/kubernetes", "v1.35.8", Path("/x"), Path("/x.mod"), "2026-08-20T15:16:14Z", None)
    flags = gorecipes.kube_ldflags("1.35.8", info)
    assert flags.startswith("-s -w ")
    x = _x_flags(flags)
    for pkg in ("k8s.io/client-go/pkg/version", "k8s.io/component-base/version"):
        assert x[f"{pkg}.gitVersion"] == "v1.35.8"
        assert x[f"{pkg}.gitMajor"] == "1"
        assert x[f"{pkg}.gitMinor"] == "35"
        assert x[f"{pkg}.gitTreeState"] == "clean"
        assert x[f"{pkg}.buildDate"] == "2026-08-20T15:16:14Z"
        assert f"{pkg}.gitCommit" not in x  # the proxy recorded no commit for this version
    assert len(x) == 10


def test_kube_ldflags_carry_the_commit_when_the_proxy_knows_it_and_are_stable():
    info = gomodules.ModuleInfo("k8s.io/kubernetes", "v1.36.4", Path("/x"), Path("/x.mod"), "2026-01-02T03:04:05Z", "abc123")
    x = _x_flags(gorecipes.kube_ldflags("v1.36.4", info))
    assert x["k8s.io/component-base/version.gitCommit"] == "abc123"
    assert x["k8s.io/client-go/pkg/version.gitMinor"] == "36"
    assert gorecipes.kube_ldflags("1.36.4", info) == gorecipes.kube_ldflags("1.36.4", info)  # no "now" in it


def test_other_ldflags_match_what_each_project_release_build_sets():
    assert _x_flags(gorecipes.etcd_ldflags("3.6.16")) == {"go.etcd.io/etcd/api/v3/version.GitSHA": "v3.6.16"}
    assert _x_flags(gorecipes.crictl_ldflags("1.36.0")) == {"sigs.k8s.io/cri-tools/pkg/version.Version": "v1.36.0"}
    assert _x_flags(gorecipes.cni_ldflags("1.9.1")) == {
        "github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion": "v1.9.1"}
    assert _x_flags(gorecipes.kwok_ldflags("0.8.0", "1.35.8")) == {
        "sigs.k8s.io/kwok/pkg/consts.Version": "v0.8.0", "sigs.k8s.io/kwok/pkg/consts.KubeVersion": "1.35.8"}
    assert _x_flags(gorecipes.pause_ldflags("3.10.1")) == {"main.version": "3.10.1"}


def test_device_plugin_ldflags_are_its_makefiles_buildflags():
    info = gomodules.ModuleInfo(gorecipes.NVIDIA_DEVICE_PLUGIN_MODULE, "v0.19.0", Path("/x"), Path("/x.mod"),
                              "2026-03-17T06:49:47Z", "1ae8e5f0")
    flags = gorecipes.nvidia_device_plugin_ldflags("0.19.0", info)
    pkg = "github.com/NVIDIA/k8s-device-plugin/internal/info"
    assert _x_flags(flags) == {f"{pkg}.version": "v0.19.0", f"{pkg}.gitCommit": "1ae8e5f0"}
    # go-nvml's C symbols come from libnvidia-ml at run time: the link must not insist on them
    assert flags.startswith("-s -w '-extldflags=-Wl,--export-dynamic -Wl,--unresolved-symbols=ignore-in-object-files' ")
    assert f"{pkg}.gitCommit" not in gorecipes.nvidia_device_plugin_ldflags("0.19.0", None)


MINIKUBE_MAKEFILE = """\
VERSION_MAJOR ?= 1
ISO_VERSION ?= v1.36.0
KIC_VERSION ?= $(shell grep -E "Version =" pkg/drivers/kic/types.go | cut -d \\" -f2)
STORAGE_PROVISIONER_TAG ?= v5
MINIKUBE_LDFLAGS := -X k8s.io/minikube/pkg/version.version=$(VERSION)
"""


def test_minikube_ldflags_are_its_makefiles_minikube_ldflags():
    make = gorecipes.makefile_defaults(MINIKUBE_MAKEFILE)
    assert make["ISO_VERSION"] == "v1.36.0" and make["STORAGE_PROVISIONER_TAG"] == "v5"
    assert "KIC_VERSION" not in make and "MINIKUBE_LDFLAGS" not in make  # not a single-word `?=` default
    info = gomodules.ModuleInfo(gorecipes.MINIKUBE_MODULE, "v1.36.0", Path("/x"), Path("/x.mod"),
                              "2025-05-22T00:00:00Z", "f8f52f5de11fc6ad8244afac475e1d0f96841df1")
    flags = gorecipes.minikube_ldflags("1.36.0", info, make)
    pkg = "k8s.io/minikube/pkg/version"
    assert flags.startswith("-s -w ")
    assert _x_flags(flags) == {f"{pkg}.version": "v1.36.0", f"{pkg}.isoVersion": "v1.36.0",
                               f"{pkg}.storageProvisionerVersion": "v5",
                               f"{pkg}.gitCommitID": "f8f52f5de11fc6ad8244afac475e1d0f96841df1"}
    assert f"{pkg}.gitCommitID" not in gorecipes.minikube_ldflags("v1.36.0", None, make)
    # without the storage-provisioner tag the addon's image would have none: refuse, naming it
    with pytest.raises(KubesweepError, match="STORAGE_PROVISIONER_TAG"):
        gorecipes.minikube_ldflags("1.36.0", info, {"ISO_VERSION": "v1.36.0"})


def test_wrappers_build_the_commands_the_mirror_needs():
    kube = gorecipes.kubernetes("1.35.8")
    assert kube.requires == (("k8s.io/kubernetes", "v1.35.8"),) and kube.kubernetes_replaces
    assert {b.name for b in kube.binaries} == {"kubeadm", "kubelet", "kubectl", "kube-apiserver",
                                              "kube-controller-manager", "kube-scheduler", "kube-proxy"}
    assert {b.package for b in gorecipes.cni_plugins("1.9.1").binaries} == {
        "github.com/containernetworking/plugins/plugins/main/bridge",
        "github.com/containernetworking/plugins/plugins/ipam/host-local",
        "github.com/containernetworking/plugins/plugins/main/loopback",
        "github.com/containernetworking/plugins/plugins/meta/portmap"}
    assert [b.package for b in gorecipes.etcd("3.6.16").binaries] == ["go.etcd.io/etcd/server/v3", "go.etcd.io/etcd/etcdctl/v3"]
    mk = gorecipes.minikube("v1.36.0")
    assert mk.requires == (("k8s.io/minikube", "v1.36.0"),) and mk.module_replaces and not mk.kubernetes_replaces
    assert [(b.name, b.package) for b in mk.binaries] == [("minikube", "k8s.io/minikube/cmd/minikube")]
    assert not mk.cgo  # static, like minikube's linux release
    plugin = gorecipes.nvidia_device_plugin("v0.19.0")
    assert plugin.requires == (("github.com/NVIDIA/k8s-device-plugin", "v0.19.0"),) and plugin.version == "0.19.0"
    assert [(b.name, b.package) for b in plugin.binaries] == [
        ("nvidia-device-plugin", "github.com/NVIDIA/k8s-device-plugin/cmd/nvidia-device-plugin")]
    flannel = gorecipes.flannel("0.26.7")
    assert [(b.name, b.package) for b in flannel.binaries] == [("flanneld", "github.com/flannel-io/flannel")]
    assert plugin.cgo and flannel.cgo and not kube.cgo  # go-nvml and flannel's udp proxy are cgo; the rest static
    # every archive/binary the mirror lists is produced by some wrapper or the pause build
    produced = {f"{w.name}/{b.name}" for w in (kube, gorecipes.etcd("1"), gorecipes.cri_tools("1"),
                                               gorecipes.cni_plugins("1"), gorecipes.kwok("1", "1"), mk)
                for b in w.binaries}
    needed = {key for item in mirror_layout.layout(V) for _, key in item.sources}
    assert needed - produced == {"kueue/manifests.yaml"}  # rendered by kueue_manifests.py, not compiled


# ----------------------------------------------------------------------------- toolchain


def test_no_go_says_how_to_install_it():
    with pytest.raises(cachemod.MissingToolError) as exc:
        gotoolchain.find_go(which=lambda name: None, fallbacks=["/nonexistent/go"])
    text = str(exc.value)
    assert "no `go` on PATH" in text and "Go >= 1.25" in text and "golang-go" in text


def test_old_go_is_refused_with_the_version_needed():
    old = gotoolchain.Toolchain("/usr/lib/go-1.19/bin/go", "go1.19.8")
    with pytest.raises(cachemod.MissingToolError, match=r"needs Go >= 1\.26\.2, but .* is go1\.19\.8"):
        old.require("1.26.2", "sigs.k8s.io/cri-tools@v1.36.0")
    assert gotoolchain.Toolchain("/go", "go1.26.8").satisfies("1.26.2")
    assert not gotoolchain.Toolchain("/go", "go1.26.1").satisfies("1.26.2")
    assert gotoolchain.parse_go_version("go version go1.19.8 linux/amd64") == (1, 19, 8)


def test_go_environment_is_static_two_jobs_local_toolchain():
    env = gotoolchain.Toolchain("/usr/local/go/bin/go", "go1.26.8").env({"PATH": "/usr/bin", "GOFLAGS": "-mod=vendor"})
    assert env["CGO_ENABLED"] == "0" and env["GOOS"] == "linux" and env["GOARCH"] == "amd64"
    assert env["GOFLAGS"].split() == ["-p=2", "-buildvcs=false"]
    assert env["GOTOOLCHAIN"] == "local" and env["GOWORK"] == "off"
    assert env["PATH"].split(os.pathsep)[0] == "/usr/local/go/bin"
    assert "GONOSUMDB" not in env and "GOINSECURE" not in env
    cgo = gotoolchain.Toolchain("/usr/local/go/bin/go", "go1.26.8").env({"PATH": "/usr/bin"}, cgo=True)
    assert cgo["CGO_ENABLED"] == "1" and cgo["GOFLAGS"] == env["GOFLAGS"]
    assert gotoolchain.build_target() == gotoolchain.TARGET  # the static binaries' stamps are unchanged


def test_no_gcc_says_what_to_install_for_the_cgo_build():
    with pytest.raises(cachemod.MissingToolError, match="no `gcc`.*NVIDIA device plugin") as exc:
        gotoolchain.c_compiler(which=lambda name: None)
    assert str(exc.value).endswith("apt-get install -y --no-install-recommends gcc libc6-dev")


# ----------------------------------------------------------------------------- stamps


def test_stamp_is_fresh_only_for_the_same_inputs_and_the_same_file(tmp_path):
    out = tmp_path / "bin" / "kubelet"
    out.parent.mkdir()
    out.write_bytes(b"binary")
    stamp = Stamp(tmp_path / "stamps" / "kubelet.json")
    inputs = {"ldflags": "-s -w -X a=b", "wrapper": "abc", "go": "go1.26.8"}
    assert not stamp.is_fresh(inputs, out)  # no stamp yet
    stamp.record(inputs, out, sha256="0" * 64)
    assert stamp.is_fresh(dict(inputs), out)
    assert not stamp.is_fresh({**inputs, "ldflags": "-s -w -X a=c"}, out)  # flags changed
    assert not stamp.is_fresh({**inputs, "wrapper": "def"}, out)  # go.mod/go.sum changed
    out.write_bytes(b"truncat")  # the file is not the one that was stamped
    assert not stamp.is_fresh(inputs, out)
    out.unlink()
    assert not stamp.is_fresh(inputs, out)


def test_stamp_of_another_format_or_garbage_is_stale(tmp_path):
    path = tmp_path / "s.json"
    path.write_text("{not json")
    assert not Stamp(path).is_fresh({})
    path.write_text(json.dumps({"format": 999, "inputs": {}}))
    assert not Stamp(path).is_fresh({})


def _fake_toolchain(tmp_path: Path, script: str) -> gotoolchain.Toolchain:
    go = tmp_path / "fake-go"
    go.write_text("#!/bin/sh\n" + script)
    go.chmod(0o755)
    return gotoolchain.Toolchain(str(go), "go1.26.8")


def test_compile_is_skipped_on_a_stamp_hit_and_rerun_when_ldflags_change(tmp_path):
    # A stand-in `go` that writes its -ldflags into the -o file and counts its runs.
    counter = tmp_path / "runs"
    tc = _fake_toolchain(tmp_path, f'echo run >> {counter}\nwhile [ "$1" != -o ]; do [ "$1" = -ldflags ] && LD="$2"; '
                                   'shift; done\nprintf "%s" "$LD" > "$2"\n')
    cache = Cache(tmp_path / "cache")

    def compile(ldflags: str) -> gobuild.Built:
        out = cache.build_dir("demo", "1.0") / "bin" / "demo"
        return gobuild.compile_binary(cache, tc, group="demo", version="1.0", name="demo", target="./cmd/demo",
                                      cwd=tmp_path, out=out, ldflags=ldflags, inputs={"ldflags": ldflags},
                                      progress=lambda s: None)

    stale = cache.build_dir("demo", "1.0") / "bin" / ".demo.tmp-999-1"  # from a build that was killed
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half")
    first = compile("-X v=1")
    assert not stale.exists()
    assert not first.cached and first.path.read_text() == "-X v=1"
    assert first.sha256 == hashlib.sha256(b"-X v=1").hexdigest()
    again = compile("-X v=1")
    assert again.cached and again.sha256 == first.sha256
    assert counter.read_text().count("run") == 1
    changed = compile("-X v=2")
    assert not changed.cached and changed.path.read_text() == "-X v=2"
    assert counter.read_text().count("run") == 2
    assert [p.name for p in changed.path.parent.iterdir()] == ["demo"]  # no temp files left


def test_cgo_compile_runs_go_with_cgo_enabled(tmp_path):
    tc = _fake_toolchain(tmp_path, 'while [ "$1" != -o ]; do shift; done\n'
                                   'printf "CGO_ENABLED=%s" "$CGO_ENABLED" > "$2"\n')
    cache = Cache(tmp_path / "cache")
    for cgo in (False, True):
        out = cache.build_dir(f"cgo-{cgo}", "1") / "bin" / "x"
        built = gobuild.compile_binary(cache, tc, group="x", version="1", name="x", target=".", cwd=tmp_path, out=out,
                                       ldflags="", inputs={"cgo": cgo}, progress=lambda s: None, cgo=cgo)
        assert built.path.read_text() == f"CGO_ENABLED={int(cgo)}"


def _fake_go_for_prepare(tmp_path: Path, monkeypatch, kube_gomod: str) -> gotoolchain.Toolchain:
    """A `go` that answers `mod download -json` from files and counts `mod tidy` runs."""
    mod = tmp_path / "kubernetes@v1.35.8.mod"
    mod.write_text(kube_gomod)
    info = tmp_path / "v1.35.8.info"
    info.write_text('{"Version":"v1.35.8","Time":"2026-08-20T15:16:14Z"}')
    answer = tmp_path / "download.json"
    answer.write_text(json.dumps({"Path": "k8s.io/kubernetes", "Version": "v1.35.8", "Info": str(info),
                                  "GoMod": str(mod), "Dir": str(tmp_path / "src")}))
    monkeypatch.setenv("FAKE_ANSWER", str(answer))
    monkeypatch.setenv("FAKE_TIDIES", str(tmp_path / "tidies"))
    return _fake_toolchain(tmp_path, 'case "$1 $2" in\n'
                                     '"mod download") cat "$FAKE_ANSWER" ;;\n'
                                     '"mod tidy") echo tidy >> "$FAKE_TIDIES"; echo "require x v1 // indirect" >> go.mod;'
                                     ' echo "x v1 h1:abc=" > go.sum ;;\n'
                                     'esac\n')


def test_wrapper_module_is_generated_from_kubernetes_go_mod_and_tidied_once(tmp_path, monkeypatch):
    tc = _fake_go_for_prepare(tmp_path, monkeypatch, FAKE_KUBE_GOMOD)
    cache = Cache(tmp_path / "cache")
    folder, infos, digest = gobuild.prepare(cache, tc, gorecipes.kubernetes("1.35.8"), lambda s: None)
    assert folder == tmp_path / "cache" / "build" / "kubernetes-1.35.8"
    gomod = (folder / "go.mod").read_text()
    assert "\tk8s.io/api => k8s.io/api v0.35.8\n" in gomod and "\tk8s.io/kubectl => k8s.io/kubectl v0.35.8\n" in gomod
    assert "\tk8s.io/kubernetes v1.35.8\n" in gomod and "\ngo 1.25.0\n" in gomod and "default=go1.25" in gomod
    assert len(re.findall(r'_ "k8s.io/kubernetes/cmd/', (folder / "tools.go").read_text())) == 7
    assert infos["k8s.io/kubernetes"].time == "2026-08-20T15:16:14Z"
    assert (tmp_path / "tidies").read_text().count("tidy") == 1
    # same skeleton: no second tidy, same wrapper digest (so binaries stay cached)
    _, _, again = gobuild.prepare(cache, tc, gorecipes.kubernetes("1.35.8"), lambda s: None)
    assert again == digest and (tmp_path / "tidies").read_text().count("tidy") == 1
    # upstream's go.mod gains a staging module: the skeleton changes, tidy reruns
    (tmp_path / "kubernetes@v1.35.8.mod").write_text(
        FAKE_KUBE_GOMOD + "replace k8s.io/kms => ./staging/src/k8s.io/kms\n")
    gobuild.prepare(cache, tc, gorecipes.kubernetes("1.35.8"), lambda s: None)
    assert "k8s.io/kms => k8s.io/kms v0.35.8" in (folder / "go.mod").read_text()
    assert (tmp_path / "tidies").read_text().count("tidy") == 2


def test_minikube_wrapper_copies_minikubes_replaces_and_reads_its_makefile(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    (src / "Makefile").write_text(MINIKUBE_MAKEFILE)
    mod = tmp_path / "minikube@v1.36.0.mod"
    mod.write_text(FAKE_MINIKUBE_GOMOD)
    info = tmp_path / "v1.36.0.info"
    info.write_text('{"Version":"v1.36.0","Time":"2025-05-22T00:00:00Z","Origin":{"Hash":"f8f52f5d"}}')
    answer = tmp_path / "download.json"
    answer.write_text(json.dumps({"Path": "k8s.io/minikube", "Version": "v1.36.0", "Info": str(info),
                                  "GoMod": str(mod), "Dir": str(src)}))
    monkeypatch.setenv("FAKE_ANSWER", str(answer))
    tc = _fake_toolchain(tmp_path, 'case "$1 $2" in\n"mod download") cat "$FAKE_ANSWER" ;;\n'
                                   '"mod tidy") echo "x v1 h1:abc=" > go.sum ;;\nesac\n')
    wrapper = gorecipes.minikube("1.36.0")
    folder, infos, _ = gobuild.prepare(Cache(tmp_path / "cache"), tc, wrapper, lambda s: None)
    assert folder == tmp_path / "cache" / "build" / "minikube-1.36.0"
    gomod = (folder / "go.mod").read_text()
    assert "\tk8s.io/minikube v1.36.0\n" in gomod and "\ngo 1.25.0\n" in gomod  # never below GO_MIN
    got = [(" ".join(a[:a.index("=>")]), " ".join(a[a.index("=>") + 1:]))
           for verb, a in gomodules.parse_directives(gomod) if verb == "replace"]
    assert got == MINIKUBE_REPLACES
    assert '_ "k8s.io/minikube/cmd/minikube"' in (folder / "tools.go").read_text()
    x = _x_flags(wrapper.ldflags(infos))
    assert x["k8s.io/minikube/pkg/version.version"] == "v1.36.0"
    assert x["k8s.io/minikube/pkg/version.storageProvisionerVersion"] == "v5"
    assert x["k8s.io/minikube/pkg/version.gitCommitID"] == "f8f52f5d"


def test_a_module_needing_a_newer_go_is_refused_before_building(tmp_path, monkeypatch):
    tc = _fake_go_for_prepare(tmp_path, monkeypatch, FAKE_KUBE_GOMOD.replace("go 1.25.0", "go 1.99.0"))
    with pytest.raises(cachemod.MissingToolError, match=r"k8s.io/kubernetes@v1.35.8 needs Go >= 1.99.0"):
        gobuild.prepare(Cache(tmp_path / "cache"), tc, gorecipes.kubernetes("1.35.8"), lambda s: None)


def test_a_failed_compile_leaves_no_binary_and_quotes_the_log(tmp_path):
    tc = _fake_toolchain(tmp_path, 'while [ "$1" != -o ]; do shift; done\nprintf half > "$2"\n'
                                   'echo "cmd/x/main.go:3: undefined: y" >&2\nexit 1\n')
    cache = Cache(tmp_path / "cache")
    out = cache.build_dir("x", "1") / "bin" / "x"
    with pytest.raises(cachemod.BuildError, match="undefined: y"):
        gobuild.compile_binary(cache, tc, group="x", version="1", name="x", target=".", cwd=tmp_path, out=out,
                               ldflags="", inputs={}, progress=lambda s: None)
    assert list(out.parent.iterdir()) == []  # the half-written temp file is gone, no `x`


def test_disk_full_in_a_command_log_is_reported_as_such(tmp_path):
    log = tmp_path / "logs" / "go.log"
    with pytest.raises(cachemod.DiskFullError, match="disk filled up"):
        cachemod.run(["sh", "-c", "echo 'write /tmp/go-build/x: no space left on device' >&2; exit 1"],
                     log=log, what="build kubelet")
    with pytest.raises(cachemod.MissingToolError, match="`no-such-tool-xyz` is not installed: apt-get install it"):
        cachemod.run(["no-such-tool-xyz"], log=log, what="do it", hint="apt-get install it")


def test_enospc_while_writing_becomes_a_disk_full_error(tmp_path):
    with pytest.raises(cachemod.DiskFullError, match="disk is full while writing"):
        cachemod.raise_disk_error(OSError(28, "No space left on device"), tmp_path / "x")
    with pytest.raises(PermissionError):
        cachemod.raise_disk_error(PermissionError(13, "denied"), tmp_path / "x")


def test_require_free_space_names_the_need(tmp_path):
    with pytest.raises(cachemod.DiskFullError, match="need about"):
        cachemod.require_free_space(tmp_path, 1 << 60, "build kubelet")
    cachemod.require_free_space(tmp_path / "not" / "yet", 1, "build kubelet")  # walks up to an existing dir


def test_cache_root_follows_kubesweep_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBESWEEP_CACHE", str(tmp_path / "c"))
    assert Cache.default().root == tmp_path / "c"
    monkeypatch.delenv("KUBESWEEP_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert Cache.default().root == tmp_path / "home" / ".cache" / "kubesweep"
    assert Cache(tmp_path).build_dir("kubernetes", "1.35.8") == tmp_path / "build" / "kubernetes-1.35.8"


# ------------------------------------------------------------------------------ SHA256SUMS


def test_sha256sums_lists_every_file_sorted_in_sha256sum_format(tmp_path):
    (tmp_path / "b" / "c").mkdir(parents=True)
    (tmp_path / "b" / "c" / "f").write_bytes(b"hello")
    (tmp_path / "a.sha256").write_text("x")
    (tmp_path / "b" / ".f.tmp-1-2").write_text("partial")  # never listed
    digests = DigestCache(tmp_path / "state.json")
    listing = cachemod.write_sha256sums(tmp_path, digests)
    text = (tmp_path / "SHA256SUMS").read_text()
    assert text == (f"{hashlib.sha256(b'x').hexdigest()}  a.sha256\n"
                    f"{hashlib.sha256(b'hello').hexdigest()}  b/c/f\n")
    assert set(listing) == {"a.sha256", "b/c/f"}
    # the same result from the sha256sum tool's point of view: "<64 hex><2 spaces><path>"
    assert all(re.fullmatch(r"[0-9a-f]{64}  \S+", line) for line in text.splitlines())


def test_sha256sums_rejects_what_is_not_a_digest_or_a_relative_path():
    with pytest.raises(ValueError):
        cachemod.sha256sums_text({"a": "xyz"})
    with pytest.raises(ValueError):
        cachemod.sha256sums_text({"../a": "0" * 64})


def test_digest_cache_rehashes_only_changed_files(tmp_path):
    f = tmp_path / "f"
    f.write_bytes(b"one")
    dc = DigestCache(tmp_path / "d.json")
    assert dc.digest(f) == hashlib.sha256(b"one").hexdigest()
    dc.save()
    dc2 = DigestCache(tmp_path / "d.json")
    assert dc2.digest(f) == hashlib.sha256(b"one").hexdigest() and dc2.hashed == 0
    f.write_bytes(b"two!")
    assert dc2.digest(f) == hashlib.sha256(b"two!").hexdigest() and dc2.hashed == 1


# -------------------------------------------------------------------------------- layout


def test_mirror_paths_are_the_official_urls_minus_the_scheme():
    rels = [item.rel for item in mirror_layout.layout(V)]
    k = "dl.k8s.io/release/v1.35.8/bin/linux/amd64/"
    assert rels == [
        k + "kubeadm", k + "kubelet", k + "kubectl", k + "kube-apiserver", k + "kube-controller-manager",
        k + "kube-scheduler", k + "kube-proxy",
        "github.com/containernetworking/plugins/releases/download/v1.9.1/cni-plugins-linux-amd64-v1.9.1.tgz",
        "github.com/kubernetes-sigs/cri-tools/releases/download/v1.36.0/crictl-v1.36.0-linux-amd64.tar.gz",
        "github.com/etcd-io/etcd/releases/download/v3.6.16/etcd-v3.6.16-linux-amd64/etcd",
        "github.com/etcd-io/etcd/releases/download/v3.6.16/etcd-v3.6.16-linux-amd64/etcdctl",
        "github.com/kubernetes-sigs/kwok/releases/download/v0.8.0/kwok-linux-amd64",
        "storage.googleapis.com/minikube/releases/v1.36.0/minikube-linux-amd64",
        "github.com/kubernetes-sigs/kueue/releases/download/v0.17.0/manifests.yaml",
    ]


def _fake_artifacts(tmp_path: Path) -> dict[str, mirror_layout.Artifact]:
    arts = {}
    for item in mirror_layout.layout(V):
        for _, key in item.sources:
            path = tmp_path / "build" / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(f"#!binary {key}\n".encode())
            arts[key] = mirror_layout.Artifact(path, hashlib.sha256(path.read_bytes()).hexdigest(), 1_700_000_000)
    return arts


def test_lay_out_writes_each_file_its_sha256_and_sha256sums(tmp_path):
    cache = Cache(tmp_path / "cache")
    arts = _fake_artifacts(tmp_path)
    result = mirror_layout.lay_out(cache, mirror_layout.layout(V), arts)
    root = cache.mirror
    kubelet = root / "dl.k8s.io/release/v1.35.8/bin/linux/amd64/kubelet"
    assert kubelet.read_bytes() == arts["kubernetes/kubelet"].path.read_bytes()
    assert os.path.samefile(kubelet, arts["kubernetes/kubelet"].path)  # a hard link, not a copy
    # dl.k8s.io style: the bare digest
    assert (root / (str(kubelet.relative_to(root)) + ".sha256")).read_text() == arts["kubernetes/kubelet"].sha256
    # GitHub style: "<hex>  <name>\n", and it matches the file
    tgz = root / "github.com/containernetworking/plugins/releases/download/v1.9.1/cni-plugins-linux-amd64-v1.9.1.tgz"
    hexd, name = (tgz.parent / (tgz.name + ".sha256")).read_text().rstrip("\n").split("  ")
    assert name == tgz.name and hexd == hashlib.sha256(tgz.read_bytes()).hexdigest()
    with tarfile.open(tgz) as tar:
        assert tar.getnames() == [".", "./bridge", "./host-local", "./loopback", "./portmap"]
        bridge = tar.getmember("./bridge")
        assert bridge.mode == 0o755 and bridge.uid == 0
        assert tar.extractfile(bridge).read() == arts["cni-plugins/bridge"].path.read_bytes()
    # minikube's bucket style: the digest and a newline (`openssl sha256 | awk '{print $2}'`)
    mk = root / "storage.googleapis.com/minikube/releases/v1.36.0/minikube-linux-amd64"
    assert os.path.samefile(mk, arts["minikube/minikube"].path)
    assert (mk.parent / (mk.name + ".sha256")).read_text() == arts["minikube/minikube"].sha256 + "\n"
    crictl = root / "github.com/kubernetes-sigs/cri-tools/releases/download/v1.36.0/crictl-v1.36.0-linux-amd64.tar.gz"
    with tarfile.open(crictl) as tar:
        assert tar.getnames() == ["./crictl"]
    sums = dict(reversed(line.split("  ", 1)) for line in (root / "SHA256SUMS").read_text().splitlines())
    on_disk = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} - {"SHA256SUMS"}
    # every file has its .sha256 but Kueue's manifests.yaml (its release publishes none)
    assert set(sums) == on_disk and len(on_disk) == 2 * len(mirror_layout.layout(V)) - 1
    assert not (root / "github.com/kubernetes-sigs/kueue/releases/download/v0.17.0/manifests.yaml.sha256").exists()
    for rel, hexd in sums.items():
        assert hashlib.sha256((root / rel).read_bytes()).hexdigest() == hexd
    assert result["files"] == len(on_disk)


def test_second_lay_out_changes_nothing_and_hashes_nothing(tmp_path):
    cache = Cache(tmp_path / "cache")
    arts = _fake_artifacts(tmp_path)
    mirror_layout.lay_out(cache, mirror_layout.layout(V), arts)
    before = {p: p.stat().st_mtime_ns for p in cache.mirror.rglob("*") if p.is_file()}
    again = mirror_layout.lay_out(cache, mirror_layout.layout(V), arts)
    assert again["changed"] == 0 and again["hashed"] == 0
    assert {p: p.stat().st_mtime_ns for p in cache.mirror.rglob("*") if p.is_file()} == before


def test_lay_out_follows_a_rebuilt_binary(tmp_path):
    cache = Cache(tmp_path / "cache")
    arts = _fake_artifacts(tmp_path)
    mirror_layout.lay_out(cache, mirror_layout.layout(V), arts)
    new = tmp_path / "kubeadm.new"
    new.write_bytes(b"rebuilt")
    arts["kubernetes/kubeadm"] = mirror_layout.Artifact(new, hashlib.sha256(b"rebuilt").hexdigest())
    mirror_layout.lay_out(cache, mirror_layout.layout(V), arts)
    dst = cache.mirror / "dl.k8s.io/release/v1.35.8/bin/linux/amd64/kubeadm"
    assert dst.read_bytes() == b"rebuilt"
    assert (dst.parent / "kubeadm.sha256").read_text() == hashlib.sha256(b"rebuilt").hexdigest()
    assert f"{hashlib.sha256(b'rebuilt').hexdigest()}  dl.k8s.io/release/v1.35.8/bin/linux/amd64/kubeadm\n" in (
        cache.mirror / "SHA256SUMS").read_text()


def test_lay_out_refuses_a_missing_artifact(tmp_path):
    arts = _fake_artifacts(tmp_path)
    del arts["etcd/etcd"]
    with pytest.raises(KubesweepError, match="needs etcd/etcd"):
        mirror_layout.lay_out(Cache(tmp_path / "cache"), mirror_layout.layout(V), arts)


def test_archives_are_reproducible_and_carry_the_given_mtime(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"A" * 1000)
    b.write_bytes(b"B")
    one = mirror_layout.deterministic_tgz([("./b", b), ("./a", a)], 1_700_000_000, True)
    os.utime(a, (1, 1))  # file timestamps do not leak in
    two = mirror_layout.deterministic_tgz([("./a", a), ("./b", b)], 1_700_000_000, True)
    assert one == two
    assert gzip.decompress(one)  # a valid gzip stream
    assert one[4:8] == b"\0\0\0\0"  # gzip header MTIME: none, so rebuilding later gives the same bytes
    with tarfile.open(fileobj=io.BytesIO(one)) as tar:
        assert [m.mtime for m in tar.getmembers()] == [1_700_000_000] * 3


def test_versions_are_read_from_versions_yml_and_missing_pins_are_named(tmp_path):
    good = versions.Versions.load()  # the repository's own file pins all of them
    assert good.kube == "1.35.8" and good.kwok
    path = tmp_path / "versions.yml"
    path.write_text('kube_version: "1.35.8"\netcd_version: "v3.6.16"\n')
    with pytest.raises(KubesweepError, match="does not pin pause_version, cni_version, crictl_version, kwok_version"):
        versions.Versions.load(path)
    path.write_text('kube_version: "1.35.8"\netcd_version: "v3.6.16"\npause_version: "3.10.1"\n'
                    'cni_version: 1.9.1\ncrictl_version: "1.36.0"\nkwok_version: "0.8.0"\n')
    with pytest.raises(KubesweepError, match="does not pin nvidia_device_plugin_version"):
        versions.Versions.load(path)
    path.write_text(path.read_text() + 'nvidia_device_plugin_version: "v0.19.0"\n')
    with pytest.raises(KubesweepError, match="does not pin flannel_version"):
        versions.Versions.load(path)
    path.write_text(path.read_text() + 'flannel_version: "0.26.7"\n')
    with pytest.raises(KubesweepError, match="does not pin minikube_offline_version"):
        versions.Versions.load(path)
    path.write_text(path.read_text() + 'minikube_offline_version: "v1.36.0"\n')
    with pytest.raises(KubesweepError, match="does not pin coredns_version, local_path_provisioner_version"):
        versions.Versions.load(path)
    path.write_text(path.read_text() + 'coredns_version: "v1.13.1"\nlocal_path_provisioner_version: "0.0.30"\n')
    with pytest.raises(KubesweepError, match="does not pin kueue_version"):
        versions.Versions.load(path)
    path.write_text(path.read_text() + 'kueue_version: "v0.17.0"\n')
    assert versions.Versions.load(path).kueue == "0.17.0"
    assert versions.Versions.load(path).coredns == "1.13.1"
    assert versions.Versions.load(path).etcd == "3.6.16"
    assert versions.Versions.load(path).minikube == "1.36.0"
    assert versions.Versions.load(path).nvidia_device_plugin == "0.19.0"
    with pytest.raises(KubesweepError, match="cannot read the pinned versions"):
        versions.Versions.load(tmp_path / "nope.yml")


def test_kwok_stages_copies_only_stage_objects_and_drops_stale_ones(tmp_path):
    mod = tmp_path / "kwok@v0.8.0"
    stage = mod / "kustomize" / "stage"
    files = {"node/fast/node-initialize.yaml": "kind: Stage\nmetadata: {name: node-initialize}\n",
             "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml": "kind: Stage\n",
             "node/heartbeat-with-lease/kustomization.yaml": "kind: Kustomization\n",
             "pod/fast/pod-ready.yaml": "kind: Stage\n", "pod/general/pod-complete.yaml": "kind: Stage\n",
             "pod/fast/pod-delete.yaml": "kind: Stage\n", "pod/fast/pod-other.yaml": "kind: Stage\n"}
    for rel, text in files.items():
        (stage / rel).parent.mkdir(parents=True, exist_ok=True)
        (stage / rel).write_text(text)
    cache = Cache(tmp_path / "cache")
    cache.kwok_stages.mkdir(parents=True)
    (cache.kwok_stages / "old.yaml").write_text("kind: Stage\n")
    written = mirror.kwok_stages(cache, mod)
    assert sorted(p.name for p in written) == sorted(p.name for p in cache.kwok_stages.iterdir()) == [
        "node-heartbeat-with-lease.yaml", "node-initialize.yaml", "pod-complete.yaml", "pod-delete.yaml",
        "pod-ready.yaml"]
    (stage / "pod/fast/pod-delete.yaml").unlink()
    with pytest.raises(KubesweepError, match="pod-delete.yaml is missing"):
        mirror.kwok_stages(cache, mod)


# -------------------------------------------------------------------------------- images


def test_node_recipe_is_the_spike_list_plus_registry_and_apt_bindings():
    pkgs = set(image_recipes.NODE_ROOTFS.packages)
    assert {"systemd", "containerd", "runc", "iptables", "conntrack", "python3", "docker-registry", "python3-apt"} <= pkgs
    assert "etc/kubernetes/manifests" in image_recipes.NODE_ROOTFS.dirs and image_recipes.NODE_ROOTFS.empty_machine_id
    assert {"python3", "python3-numpy", "python3-sklearn", "ca-certificates"} == set(image_recipes.PYTHON_BASE_ROOTFS.packages)


def test_debootstrap_gets_include_only_when_there_are_packages(tmp_path):
    node = debootstrap.debootstrap_args(image_recipes.NODE_ROOTFS, tmp_path / "w", tmp_path / "d", "http://m/debian")
    assert f"--include={','.join(image_recipes.NODE_PACKAGES)}" in node
    bare = debootstrap.debootstrap_args(image_recipes.MINBASE_ROOTFS, tmp_path / "w", tmp_path / "d", "http://m/debian")
    assert not any(a.startswith("--include") for a in bare)
    assert bare[-3:] == ["bookworm", str(tmp_path / "w"), "http://m/debian"] and "--variant=minbase" in bare


def test_rootfs_key_changes_with_the_package_list_only_when_the_set_changes():
    base = image_recipes.NODE_ROOTFS
    same = dataclasses.replace(base, packages=tuple(reversed(base.packages)))
    more = dataclasses.replace(base, packages=base.packages + ("vim",))
    assert same.key() == base.key()
    assert more.key() != base.key()


def test_customize_masks_disables_and_prepares_the_tree(tmp_path):
    wants = tmp_path / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True)
    (wants / "docker-registry.service").symlink_to("/lib/systemd/system/docker-registry.service")
    (wants / "containerd.service").symlink_to("/lib/systemd/system/containerd.service")
    (tmp_path / "etc/machine-id").write_text("0123456789abcdef\n")
    lists = tmp_path / "var/lib/apt/lists"
    lists.mkdir(parents=True)
    (lists / "deb.debian.org_debian_dists_bookworm_InRelease").write_text("x")
    (lists / "lock").write_text("")
    debootstrap.customize(tmp_path, image_recipes.NODE_ROOTFS)
    assert os.readlink(tmp_path / "etc/systemd/system/systemd-udevd.service") == "/dev/null"
    assert os.readlink(tmp_path / "etc/systemd/system/serial-getty@.service") == "/dev/null"
    assert not (wants / "docker-registry.service").is_symlink()
    assert (wants / "containerd.service").is_symlink()
    assert (tmp_path / "etc/kubernetes/manifests").is_dir()
    assert (tmp_path / "etc/machine-id").read_text() == ""
    assert sorted(p.name for p in lists.iterdir()) == ["lock"]


def test_debian_mirror_is_read_from_deb822_and_one_line_sources(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\n# comment\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\n"
        "Components: main\n")
    assert debootstrap.debian_mirror(tmp_path) == "http://mirror.example/debian"
    other = tmp_path / "one"
    other.mkdir()
    (other / "sources.list").write_text("deb [arch=amd64 signed-by=/k.gpg] https://m2.example/debian bookworm main\n")
    assert debootstrap.debian_mirror(other) == "https://m2.example/debian"
    assert debootstrap.debian_mirror(tmp_path / "empty") == debootstrap.DEFAULT_MIRROR


def test_mounts_under_finds_only_mounts_inside_the_tree(tmp_path):
    info = ("22 1 0:21 / /proc rw - proc proc rw\n"
            f"90 22 0:5 / {tmp_path}/rootfs/proc rw - proc proc rw\n"
            f"91 22 0:6 / {tmp_path}/rootfs/sys/fs rw - sysfs sys rw\n"
            f"92 22 0:7 / {tmp_path}/rootfs-other/proc rw - proc proc rw\n")
    assert debootstrap.mounts_under(tmp_path / "rootfs", info) == [f"{tmp_path}/rootfs/sys/fs", f"{tmp_path}/rootfs/proc"]


def test_image_list_entries_and_registry_tags():
    node = debootstrap.Rootfs(image_recipes.NODE_ROOTFS, Path("/c/images/node-bookworm.tar"), "a" * 64, True, 0)
    pybase = debootstrap.Rootfs(image_recipes.PYTHON_BASE_ROOTFS, Path("/c/images/python-base-bookworm.tar"), "b" * 64, True, 0)
    minbase = debootstrap.Rootfs(image_recipes.MINBASE_ROOTFS, Path("/c/images/minbase-bookworm.tar"), "d" * 64, True, 0)
    keys = ["pause/pause", "kubernetes/kube-apiserver", "kubernetes/kube-controller-manager",
            "kubernetes/kube-scheduler", "kubernetes/kube-proxy", "etcd/etcd", "etcd/etcdctl",
            "nvidia-device-plugin/nvidia-device-plugin", "flannel/flanneld", "coredns/coredns",
            "local-path-provisioner/local-path-provisioner"]
    built = {k: gobuild.Built(k.split("/")[0], k.split("/")[1], "1", Path(f"/b/{k}"), "c" * 64, True, 0) for k in keys}
    specs = image_recipes.image_specs(V, built, node, pybase, minbase)
    entries = [s.entry() for s in specs]
    assert entries[:2] == [
        {"upstream": "registry.k8s.io/pause:3.10.1", "local": "kubesweep/pause:3.10.1", "path": "pause:3.10.1"},
        {"upstream": "registry.k8s.io/kube-apiserver:v1.35.8", "local": "kubesweep/kube-apiserver:v1.35.8",
         "path": "kube-apiserver:v1.35.8"}]
    assert {"upstream": "registry.k8s.io/etcd:3.6.16", "local": "kubesweep/etcd:3.6.16", "path": "etcd:3.6.16"} in entries
    # containerd asks a mirror of nvcr.io for nvidia/k8s-device-plugin: the path keeps the namespace
    assert {"upstream": "nvcr.io/nvidia/k8s-device-plugin:v0.19.0", "local": "kubesweep/k8s-device-plugin:v0.19.0",
            "path": "nvidia/k8s-device-plugin:v0.19.0"} in entries
    # nodes pull flannel as localhost:5000/flannel-io/flannel (pod_network's offline default)
    assert {"upstream": "ghcr.io/flannel-io/flannel:v0.26.7", "local": "kubesweep/flannel:v0.26.7",
            "path": "flannel-io/flannel:v0.26.7"} in entries
    assert entries[-2:] == [
        {"upstream": "", "local": "kubesweep/node:bookworm", "path": "kubesweep/node:bookworm"},
        {"upstream": "", "local": "kubesweep/python-base:bookworm", "path": "kubesweep/python-base:bookworm"}]
    # kubeadm's CoreDNS (registry.k8s.io/coredns/coredns) and the default StorageClass's provisioner
    # (docker.io, mirrored by the cluster registry like the others)
    assert {"upstream": "registry.k8s.io/coredns/coredns:v1.13.1", "local": "kubesweep/coredns/coredns:v1.13.1",
            "path": "coredns/coredns:v1.13.1"} in entries
    assert {"upstream": "docker.io/rancher/local-path-provisioner:v0.0.30",
            "local": "kubesweep/local-path-provisioner:v0.0.30", "path": "rancher/local-path-provisioner:v0.0.30"} in entries
    assert all(re.fullmatch(r"[^:]+:[^:]+", e["path"]) for e in entries)  # what the offline_images role checks
    by_path = {s.path: s for s in specs}
    assert by_path["kube-proxy:v1.35.8"].base == node.path  # iptables & co. come from the node filesystem
    assert by_path["kube-proxy:v1.35.8"].registry_ref == "127.0.0.1:5000/kube-proxy:v1.35.8"
    assert [f.dest for f in by_path["etcd:3.6.16"].files] == ["usr/local/bin/etcd", "usr/local/bin/etcdctl"]
    assert any("PATH=/usr/local" in c for c in by_path["etcd:3.6.16"].changes)
    assert ("tmp", 0o1777) in by_path["kube-scheduler:v1.35.8"].dirs
    assert 'CMD ["/sbin/init"]' in by_path["kubesweep/node:bookworm"].changes
    plugin = by_path["nvidia/k8s-device-plugin:v0.19.0"]
    assert plugin.base == minbase.path and plugin.base_sha256 == minbase.sha256  # glibc for the cgo binary
    assert [(f.dest, f.source) for f in plugin.files] == [
        ("usr/bin/nvidia-device-plugin", Path("/b/nvidia-device-plugin/nvidia-device-plugin"))]
    assert plugin.changes[0] == 'ENTRYPOINT ["nvidia-device-plugin"]'
    assert "ENV NVIDIA_VISIBLE_DEVICES=all" in plugin.changes
    coredns = by_path["coredns/coredns:v1.13.1"]
    assert [f.dest for f in coredns.files] == ["coredns"] and coredns.changes[0] == 'ENTRYPOINT ["/coredns"]'
    storage = by_path["rancher/local-path-provisioner:v0.0.30"]
    assert storage.base == minbase.path  # a shell for the helper pod that makes and removes volume directories
    assert [f.dest for f in storage.files] == ["usr/bin/local-path-provisioner"]


def test_image_stamp_follows_content_not_time(tmp_path):
    f = image_tar.FileEntry("usr/local/bin/etcd", tmp_path / "etcd", "1" * 64)
    spec = image_recipes.k8s_image("etcd", "3.6.16", [f])
    assert spec.stamp() == image_recipes.k8s_image("etcd", "3.6.16", [f]).stamp()
    g = image_tar.FileEntry("usr/local/bin/etcd", tmp_path / "etcd", "2" * 64)
    assert spec.stamp() != image_recipes.k8s_image("etcd", "3.6.16", [g]).stamp()


def test_image_tar_has_the_files_dirs_and_modes(tmp_path):
    binary = tmp_path / "kube-scheduler"
    binary.write_bytes(b"\x7fELF fake")
    f = image_tar.FileEntry("usr/local/bin/kube-scheduler", binary, hashlib.sha256(binary.read_bytes()).hexdigest())
    spec = image_recipes.k8s_image("kube-scheduler", "v1.35.8", [f])
    buf = io.BytesIO()
    image_tar.write_tar(buf, spec)
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert members["./tmp"].mode == 0o1777 and members["./tmp"].isdir()
        assert members["./usr/local/bin/kube-scheduler"].mode == 0o755
        assert tar.extractfile("./usr/local/bin/kube-scheduler").read() == b"\x7fELF fake"
    binary.write_bytes(b"changed")  # a binary swapped under us is refused, not packed
    with pytest.raises(KubesweepError, match="changed while building"):
        image_tar.write_tar(io.BytesIO(), spec)


def test_kube_proxy_tar_is_the_base_filesystem_plus_the_binary(tmp_path):
    root = tmp_path / "root"
    (root / "usr/local/bin").mkdir(parents=True)
    (root / "usr/sbin").mkdir(parents=True)
    (root / "usr/sbin/iptables").write_text("iptables")
    base = tmp_path / "base.tar"
    with tarfile.open(base, "w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(root, arcname=".")
    binary = tmp_path / "kube-proxy"
    binary.write_bytes(b"kp")
    spec = image_recipes.k8s_image("kube-proxy", "v1.35.8",
                            [image_tar.FileEntry("usr/local/bin/kube-proxy", binary, hashlib.sha256(b"kp").hexdigest())],
                            base=base, base_sha256="x")
    buf = io.BytesIO()
    image_tar.write_tar(buf, spec)
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as tar:
        names = tar.getnames()
        assert "./usr/sbin/iptables" in names and "./usr/local/bin/kube-proxy" in names
        assert tar.extractfile("./usr/sbin/iptables").read() == b"iptables"



def test_the_node_image_runs_sshd_with_its_own_host_keys_and_no_passwords(tmp_path):
    """customize() on a tree shaped like debootstrap's: keys baked by the package are removed, a
    unit makes them at first boot before sshd, sshd is enabled, passwords and root are refused."""
    root = tmp_path / "root"
    (root / "etc" / "ssh").mkdir(parents=True)
    for name in ("ssh_host_ed25519_key", "ssh_host_ed25519_key.pub", "ssh_host_rsa_key"):
        (root / "etc" / "ssh" / name).write_text("baked")
    (root / "etc" / "ssh" / "sshd_config").write_text("Include /etc/ssh/sshd_config.d/*.conf\n")
    debootstrap.customize(root, image_recipes.NODE_ROOTFS)
    assert sorted(p.name for p in (root / "etc" / "ssh").iterdir()) == ["sshd_config", "sshd_config.d"]
    unit = (root / "etc/systemd/system/ssh-host-keys.service").read_text()
    assert "ExecStart=/usr/bin/ssh-keygen -A" in unit and "Before=ssh.service" in unit
    assert os.readlink(root / "etc/systemd/system/ssh.service.wants/ssh-host-keys.service") == \
        "/etc/systemd/system/ssh-host-keys.service"
    assert os.readlink(root / "etc/systemd/system/multi-user.target.wants/ssh.service") == "/lib/systemd/system/ssh.service"
    config = (root / "etc/ssh/sshd_config.d/kubesweep.conf").read_text()
    assert "PasswordAuthentication no" in config and "PermitRootLogin no" in config
    assert {"openssh-server", "sudo"} <= set(image_recipes.NODE_PACKAGES)
    # the recipes without files keep their cache keys: adding the fields did not rebuild them
    spec = image_recipes.MINBASE_ROOTFS
    assert spec.key() == cachemod.sha256_json({
        "name": spec.name, "suite": spec.suite, "variant": "minbase", "packages": [], "masked": [], "disabled": [],
        "dirs": [], "empty_machine_id": False, "script": debootstrap.ROOTFS_SCRIPT_VERSION})
    assert image_recipes.NODE_ROOTFS.key() != dataclasses.replace(image_recipes.NODE_ROOTFS, files=()).key()


def test_the_cluster_part_builds_no_minikube_kwok_or_device_plugin():
    names = lambda parts: [w.name for w in mirror.wrappers_for(V, frozenset(parts))]  # noqa: E731
    assert names([versions.CLUSTER]) == ["kubernetes", "etcd", "cri-tools", "cni-plugins", "flannel", "coredns",
                                       "local-path-provisioner", "kueue"]
    assert names([versions.CLUSTER, versions.GPU]) == names([versions.CLUSTER]) + ["nvidia-device-plugin"]
    assert set(names(versions.COMPONENTS)) == set(names([versions.CLUSTER])) | {"kwok", "nvidia-device-plugin", "minikube",
                                                                          "kubernetes-e2e"}
    assert versions.parse_components(None) == frozenset(versions.COMPONENTS)
    assert versions.parse_components(["kwok"]) == {"kwok"}
    with pytest.raises(KubesweepError, match="unknown artifact component.s. e2e; known: cluster, gpu, kwok, minikube, conformance"):
        versions.parse_components(["e2e"])


def test_a_smaller_build_keeps_the_images_json_entries_of_the_other_parts(tmp_path, monkeypatch):
    cache = Cache(tmp_path)
    cache.root.mkdir(exist_ok=True)
    plugin = image_tar.ImageSpec("nvcr.io/nvidia/k8s-device-plugin:v0.19.0", "nvidia/k8s-device-plugin:v0.19.0",
                              "kubesweep/k8s-device-plugin:v0.19.0", ())
    old_pause = image_tar.ImageSpec("registry.k8s.io/pause:3.9", "pause:3.9", "kubesweep/pause:3.9", ())
    gone = image_tar.ImageSpec("", "kubesweep/gone:1", "kubesweep/gone:1", ())
    image_import.write_images_json(cache, [plugin, old_pause, gone])
    present = {"kubesweep/k8s-device-plugin:v0.19.0", "kubesweep/pause:3.9"}
    monkeypatch.setattr(image_import, "inspect", lambda ref: {"Id": ref} if ref in present else None)
    pause = image_tar.ImageSpec("registry.k8s.io/pause:3.10.1", "pause:3.10.1", "kubesweep/pause:3.10.1", ())
    image_import.write_images_json(cache, [pause], keep=True)
    paths = [e["path"] for e in json.loads(cache.images_json.read_text())]
    # the new pause replaces the old tag; the plugin stays; an image no longer in docker is dropped
    assert paths == ["pause:3.10.1", "nvidia/k8s-device-plugin:v0.19.0"]
    image_import.write_images_json(cache, [pause])
    assert [e["path"] for e in json.loads(cache.images_json.read_text())] == ["pause:3.10.1"]


def test_a_local_cluster_builds_the_device_plugin_only_for_gpu_workers_and_kwok_only_for_fake_nodes():
    from kubesweep.cli import develop as cli

    root = checkout()
    assert cli.needed_parts(root / "inventory" / "single") == ["cluster"]
    assert cli.needed_parts(root / "inventory" / "local") == ["cluster", "gpu"]
    assert cli.needed_parts(root / "inventory" / "single", fake_nodes=True) == ["cluster", "kwok"]
