"""What the offline build compiles, one wrapper module recipe (gobuild.Wrapper) per project:
Kubernetes, etcd, crictl, the CNI plugins, kwok, flannel, CoreDNS, local-path-provisioner,
Kueue, minikube, the NVIDIA device plugin, the sample API server and Kubernetes' e2e tests; and the
flags of pause (built from this checkout by gobuild.build_local).

Version strings are injected with ``-ldflags -X`` exactly where each project's own release
build puts them (for Kubernetes, hack/lib/version.sh: both ``k8s.io/client-go/pkg/version`` and
``k8s.io/component-base/version``), so ``kubelet --version`` prints ``Kubernetes v1.35.8``.
``buildDate`` is the module version's commit time from the proxy (not "now"), so the flags — and
the cache stamps that include them — stay the same from run to run; ``gitCommit`` is set when the
proxy's .info records the commit hash (it does not for every version).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from .cache import OfflineError
from .gobuild import Binary, Wrapper
from .gomodules import ModuleInfo


# ----------------------------------------------------------------------------------- ldflags


def kube_ldflags(version: str, info: ModuleInfo | None) -> str:
    """hack/lib/version.sh's -X flags, into both packages that carry Kubernetes' version."""
    v = version.lstrip("v")
    major, minor = v.split(".")[:2]
    values = {
        "gitVersion": f"v{v}",
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        "buildDate": (info.time if info and info.time else "1970-01-01T00:00:00Z"),
    }
    if info and info.origin_hash:
        values["gitCommit"] = info.origin_hash
    flags = ["-s", "-w"]
    for pkg in ("k8s.io/client-go/pkg/version", "k8s.io/component-base/version"):
        flags += [f"-X {pkg}.{k}={val}" for k, val in values.items()]
    return " ".join(flags)


def etcd_ldflags(version: str) -> str:
    # version.Version is a constant in go.etcd.io/etcd/api/v3/version; GitSHA is the only variable
    return f"-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=v{version.lstrip('v')}"


def crictl_ldflags(version: str) -> str:
    return f"-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=v{version.lstrip('v')}"


def cni_ldflags(version: str) -> str:
    return f"-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=v{version.lstrip('v')}"


def kwok_ldflags(version: str, kube_version: str) -> str:
    return (f"-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=v{version.lstrip('v')}"
            f" -X sigs.k8s.io/kwok/pkg/consts.KubeVersion={kube_version.lstrip('v')}")


def pause_ldflags(version: str) -> str:
    return f"-s -w -X main.version={version.lstrip('v')}"


# upstream's Makefile: go-nvml's C symbols are resolved by dlopen("libnvidia-ml.so.1") at run time
NVIDIA_EXTLDFLAGS = "-Wl,--export-dynamic -Wl,--unresolved-symbols=ignore-in-object-files"


def nvidia_device_plugin_ldflags(version: str, info: ModuleInfo | None) -> str:
    """The device plugin Makefile's BUILDFLAGS: internal/info.version (with the v) and gitCommit."""
    pkg = "github.com/NVIDIA/k8s-device-plugin/internal/info"
    flags = f"-s -w '-extldflags={NVIDIA_EXTLDFLAGS}' -X {pkg}.version=v{version.lstrip('v')}"
    if info and info.origin_hash:
        flags += f" -X {pkg}.gitCommit={info.origin_hash}"
    return flags


KUEUE_MODULE = "sigs.k8s.io/kueue"


def kueue_ldflags(version: str, info: ModuleInfo | None) -> str:
    """Kueue's Makefile LD_FLAGS: pkg/version's GitVersion (the tag, with the v), GitCommit and
    BuildDate (here the version's commit time, not "now"). GitCommit is empty when the proxy does
    not know the commit: the package's own default is a made-up hash (abcd01234)."""
    pkg = f"{KUEUE_MODULE}/pkg/version"
    values = {"GitVersion": f"v{version.lstrip('v')}",
              "GitCommit": info.origin_hash if info and info.origin_hash else "",
              "BuildDate": info.time if info and info.time else "1970-01-01T00:00:00Z"}
    return " ".join(["-s", "-w", *(f"-X {pkg}.{k}={val}" for k, val in values.items())])


MINIKUBE_MODULE = "k8s.io/minikube"


def makefile_defaults(text: str) -> dict[str, str]:
    """A Makefile's ``NAME ?= value`` lines (single-word values), e.g. minikube's ISO_VERSION."""
    return {m.group(1): m.group(2) for m in re.finditer(r"^([A-Za-z_][A-Za-z0-9_]*)[ \t]*\?=[ \t]*(\S+)[ \t]*$",
                                                       text, re.MULTILINE)}


def minikube_ldflags(version: str, info: ModuleInfo | None, makefile: Mapping[str, str]) -> str:
    """minikube's Makefile MINIKUBE_LDFLAGS: pkg/version's version (with the v), isoVersion and
    storageProvisionerVersion (the Makefile's ISO_VERSION and STORAGE_PROVISIONER_TAG: the
    storage-provisioner addon's image tag) and gitCommitID when the proxy knows the commit."""
    missing = [k for k in ("ISO_VERSION", "STORAGE_PROVISIONER_TAG") if not makefile.get(k)]
    if missing:
        raise OfflineError(f"minikube {version}'s Makefile sets no {' or '.join(missing)} (`NAME ?= value`): "
                           "cannot set the version flags its release build sets")
    pkg = f"{MINIKUBE_MODULE}/pkg/version"
    values = {"version": f"v{version.lstrip('v')}", "isoVersion": makefile["ISO_VERSION"],
              "storageProvisionerVersion": makefile["STORAGE_PROVISIONER_TAG"]}
    if info and info.origin_hash:
        values["gitCommitID"] = info.origin_hash
    return " ".join(["-s", "-w", *(f"-X {pkg}.{k}={val}" for k, val in values.items())])


def _minikube_flags(version: str, infos: Mapping[str, ModuleInfo]) -> str:
    info = infos.get(MINIKUBE_MODULE)
    try:
        text = (info.dir / "Makefile").read_text() if info else ""
    except OSError as exc:
        raise OfflineError(f"cannot read minikube's Makefile in {info.dir if info else '?'} ({exc.strerror}): "
                           "`go clean -modcache` and rerun") from None
    return minikube_ldflags(version, info, makefile_defaults(text))


# ---------------------------------------------------------------------------------- wrappers


KUBE_COMMANDS = ("kubeadm", "kubelet", "kubectl", "kube-apiserver", "kube-controller-manager",
                 "kube-scheduler", "kube-proxy")
CNI_PLUGINS = {"bridge": "main/bridge", "host-local": "ipam/host-local", "loopback": "main/loopback",
               "portmap": "meta/portmap"}


def kubernetes(version: str) -> Wrapper:
    v = version.lstrip("v")
    return Wrapper("kubernetes", v, (("k8s.io/kubernetes", f"v{v}"),),
                   tuple(Binary(c, f"k8s.io/kubernetes/cmd/{c}") for c in KUBE_COMMANDS),
                   lambda infos: kube_ldflags(v, infos.get("k8s.io/kubernetes")), kubernetes_replaces=True)


def etcd(version: str, name: str = "etcd") -> Wrapper:
    """etcd and etcdctl. ``name``: another wrapper for another pin (the conformance tests' etcd)."""
    v = version.lstrip("v")
    return Wrapper(name, v, (("go.etcd.io/etcd/server/v3", f"v{v}"), ("go.etcd.io/etcd/etcdctl/v3", f"v{v}")),
                   (Binary("etcd", "go.etcd.io/etcd/server/v3"), Binary("etcdctl", "go.etcd.io/etcd/etcdctl/v3")),
                   lambda infos: etcd_ldflags(v))


def cri_tools(version: str) -> Wrapper:
    v = version.lstrip("v")
    return Wrapper("cri-tools", v, (("sigs.k8s.io/cri-tools", f"v{v}"),),
                   (Binary("crictl", "sigs.k8s.io/cri-tools/cmd/crictl"),), lambda infos: crictl_ldflags(v))


def cni_plugins(version: str) -> Wrapper:
    v = version.lstrip("v")
    return Wrapper("cni-plugins", v, (("github.com/containernetworking/plugins", f"v{v}"),),
                   tuple(Binary(n, f"github.com/containernetworking/plugins/plugins/{p}") for n, p in CNI_PLUGINS.items()),
                   lambda infos: cni_ldflags(v))


def kwok(version: str, kube_version: str) -> Wrapper:
    v = version.lstrip("v")
    return Wrapper("kwok", v, (("sigs.k8s.io/kwok", f"v{v}"),), (Binary("kwok", "sigs.k8s.io/kwok/cmd/kwok"),),
                   lambda infos: kwok_ldflags(v, kube_version))


FLANNEL_MODULE = "github.com/flannel-io/flannel"


def flannel(version: str) -> Wrapper:
    """flanneld, the pod network's route agent. cgo like upstream's release build: its udp
    backend's C proxy does not compile without it (undefined: runCProxy)."""
    v = version.lstrip("v")
    return Wrapper("flannel", v, ((FLANNEL_MODULE, f"v{v}"),), (Binary("flanneld", FLANNEL_MODULE),),
                   lambda infos: f"-s -w -X {FLANNEL_MODULE}/pkg/version.Version=v{v}", cgo=True)


NVIDIA_DEVICE_PLUGIN_MODULE = "github.com/NVIDIA/k8s-device-plugin"


def nvidia_device_plugin(version: str) -> Wrapper:
    v = version.lstrip("v")
    return Wrapper("nvidia-device-plugin", v, ((NVIDIA_DEVICE_PLUGIN_MODULE, f"v{v}"),),
                   (Binary("nvidia-device-plugin", f"{NVIDIA_DEVICE_PLUGIN_MODULE}/cmd/nvidia-device-plugin"),),
                   lambda infos: nvidia_device_plugin_ldflags(v, infos.get(NVIDIA_DEVICE_PLUGIN_MODULE)), cgo=True)


def minikube(version: str) -> Wrapper:
    """minikube's CLI (static, CGO_ENABLED=0 like its linux release). Its go.mod replaces a few
    forks (docker/machine, spinner, ...), so the wrapper copies them (module_replaces)."""
    v = version.lstrip("v")
    return Wrapper("minikube", v, ((MINIKUBE_MODULE, f"v{v}"),), (Binary("minikube", f"{MINIKUBE_MODULE}/cmd/minikube"),),
                   lambda infos: _minikube_flags(v, infos), module_replaces=True)


COREDNS_MODULE = "github.com/coredns/coredns"


def coredns(version: str) -> Wrapper:
    """CoreDNS, the cluster DNS kubeadm deploys (its image registry.k8s.io/coredns/coredns). Static,
    with the plugins of its own release build (core/plugin/zplugin.go); the Makefile's one flag:
    coremain.GitCommit, the short commit hash, when the proxy knows it."""
    v = version.lstrip("v")

    def flags(infos: Mapping[str, ModuleInfo]) -> str:
        info = infos.get(COREDNS_MODULE)
        commit = info.origin_hash[:8] if info and info.origin_hash else ""
        return "-s -w" + (f" -X {COREDNS_MODULE}/coremain.GitCommit={commit}" if commit else "")

    return Wrapper("coredns", v, ((COREDNS_MODULE, f"v{v}"),), (Binary("coredns", COREDNS_MODULE),), flags)


LOCAL_PATH_PROVISIONER_MODULE = "github.com/rancher/local-path-provisioner"


def local_path_provisioner(version: str) -> Wrapper:
    """Rancher's local-path-provisioner: the default StorageClass's dynamic provisioner (a
    directory on the node per volume). scripts/build's flags: main.VERSION, static."""
    v = version.lstrip("v")
    return Wrapper("local-path-provisioner", v, ((LOCAL_PATH_PROVISIONER_MODULE, f"v{v}"),),
                   (Binary("local-path-provisioner", LOCAL_PATH_PROVISIONER_MODULE),),
                   lambda infos: f"-s -w -X main.VERSION=v{v}")


def kueue(version: str) -> Wrapper:
    """Kueue's controller manager (the Makefile's `build`: cmd/kueue as bin/manager, static like
    its distroless image). kueue_manifests.py renders the release manifests from the same module."""
    v = version.lstrip("v")
    return Wrapper("kueue", v, ((KUEUE_MODULE, f"v{v}"),), (Binary("manager", f"{KUEUE_MODULE}/cmd/kueue"),),
                   lambda infos: kueue_ldflags(v, infos.get(KUEUE_MODULE)))


SAMPLE_APISERVER_MODULE = "k8s.io/sample-apiserver"


def sample_apiserver(version: str) -> Wrapper:
    """Kubernetes' sample aggregated API server, the program of the Aggregator conformance test's
    image (upstream's Makefile: `go install` of the module at the image's version, static)."""
    v = version.lstrip("v")
    return Wrapper("sample-apiserver", v, ((SAMPLE_APISERVER_MODULE, f"v{v}"),),
                   (Binary("sample-apiserver", SAMPLE_APISERVER_MODULE),), lambda infos: "-s -w")


E2E_PACKAGE = "k8s.io/kubernetes/test/e2e"
GINKGO_PACKAGE = "github.com/onsi/ginkgo/v2/ginkgo"
AGNHOST_PACKAGE = "k8s.io/kubernetes/test/images/agnhost"
NNP_PACKAGE = "k8s.io/kubernetes/test/images/nonewprivs"  # the no-new-privileges test's setuid program


def kubernetes_e2e(version: str) -> Wrapper:
    """Kubernetes' end-to-end tests for one version: e2e.test (`go test -c` of test/e2e, the
    version flags of the release build), the ginkgo CLI at the version k8s.io/kubernetes pins, and
    agnhost, the test image's program. A module of its own, so the cluster's binaries keep their
    stamps; the Go build cache makes the shared packages free."""
    v = version.lstrip("v")
    return Wrapper("kubernetes-e2e", v, (("k8s.io/kubernetes", f"v{v}"),),
                   (Binary("e2e.test", E2E_PACKAGE, test=True), Binary("ginkgo", GINKGO_PACKAGE),
                    Binary("agnhost", AGNHOST_PACKAGE), Binary("nnp", NNP_PACKAGE)),
                   lambda infos: kube_ldflags(v, infos.get("k8s.io/kubernetes")), kubernetes_replaces=True,
                   test_imports_of=(E2E_PACKAGE,))
