"""Go binaries built from the Go module proxy: Kubernetes, etcd, crictl, CNI plugins, kwok, pause,
CoreDNS, local-path-provisioner, minikube and the NVIDIA device plugin.

Why a wrapper module: this machine reaches the Go module proxy but not GitHub or dl.k8s.io, so
the sources come as Go modules. ``go build k8s.io/kubernetes/cmd/kubelet@v1.35.8`` does not work
(``go install pkg@version`` refuses modules whose go.mod has replace directives, and
k8s.io/kubernetes replaces its ~30 staging modules with ``./staging/src/...`` paths). So for each
project we generate a tiny module under ``CACHE/build/<name>-<version>/``:

* ``go.mod`` requiring the upstream module at the pinned version. For Kubernetes, every
  ``k8s.io/<x> => ./staging/src/k8s.io/<x>`` line of k8s.io/kubernetes@<v>'s own go.mod becomes
  ``k8s.io/<x> => k8s.io/<x> v0.<minor>.<patch>`` (the staging modules are published under
  that version), which is what upstream's build uses;
  for minikube, the replaces of k8s.io/minikube@<v>'s go.mod (forks such as docker/machine) are
  copied as they are, since Go ignores a dependency's replaces (copied_replaces);
* ``tools.go`` (build tag ``tools``) blank-importing the commands, so ``go mod tidy`` records
  every dependency and its checksum (verified against sum.golang.org, never bypassed);
* then ``go build -trimpath`` with ``CGO_ENABLED=0`` (static binaries) and ``GOFLAGS=-p=2``
  (two compile jobs: the machine has two cores and a Kubernetes link needs ~2 GiB).

The one exception to static binaries is the NVIDIA device plugin: go-nvml is cgo (its calls into
libnvidia-ml are C calls, resolved when the library is dlopen()ed at run time, which is why the
link ignores unresolved symbols exactly like upstream's Makefile). It is built with
``CGO_ENABLED=1`` and the host's gcc, so it links against the build host's glibc; the image it
goes into is a bookworm debootstrap (images.py), the release kubesweep's hosts run, and
tests/test_offline_build.py runs it there. Its stamp also records the C compiler.

Version strings are injected with ``-ldflags -X`` exactly where each project's own release
build puts them (for Kubernetes, hack/lib/version.sh: both ``k8s.io/client-go/pkg/version`` and
``k8s.io/component-base/version``), so ``kubelet --version`` prints ``Kubernetes v1.35.8``.
``buildDate`` is the module version's commit time from the proxy (not "now"), so the flags — and
the cache stamps that include them — stay the same from run to run; ``gitCommit`` is set when the
proxy's .info records the commit hash (it does not for every version).

Each binary carries a stamp (see cache.Stamp) of: package, ldflags, Go version, target, and the
SHA-256 of the wrapper's tidied go.mod + go.sum. ``go mod tidy`` itself reruns only when the
generated go.mod skeleton changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .cache import (
    GiB, BuildError, Cache, MissingToolError, OfflineError, Stamp, atomic_write, command_failed,
    raise_disk_error, remove_quietly, require_free_space, run, sha256_file, temp_sibling,
)

GO_MIN = "1.25"  # Kubernetes 1.35's go.mod says go 1.25.0; the other modules may ask for more
GO_FALLBACKS = ("/usr/local/go/bin/go",)
TARGET = {"CGO_ENABLED": "0", "GOOS": "linux", "GOARCH": "amd64"}
GOFLAGS = "-p=2 -buildvcs=false"
BUILD_FLAGS = ("-trimpath",)
CC_HINT = "apt-get install -y --no-install-recommends gcc libc6-dev"
GO_INSTALL_HINT = ("install Go >= {need} from the official linux-amd64 tarball into /usr/local/go and put "
                   "/usr/local/go/bin on PATH (Debian 12's `apt-get install golang-go` gives Go 1.19: too old)")


# --------------------------------------------------------------------------------- toolchain


def parse_go_version(text: str) -> tuple[int, ...]:
    """'go1.26.8' / '1.25.0' / 'go version go1.19.8 linux/amd64' -> (1, 26, 8)."""
    m = re.search(r"(?:go)?(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not m:
        raise ValueError(f"not a Go version: {text!r}")
    return tuple(int(g) for g in m.groups() if g is not None)


@dataclass(frozen=True)
class Toolchain:
    go: str       # absolute path of the go command
    version: str  # as `go env GOVERSION` prints it, e.g. go1.26.8

    def satisfies(self, needed: str) -> bool:
        return parse_go_version(self.version) >= parse_go_version(needed)

    def require(self, needed: str, why: str) -> None:
        if not self.satisfies(needed):
            raise MissingToolError(f"{why} needs Go >= {needed}, but {self.go} is {self.version}: "
                                   + GO_INSTALL_HINT.format(need=needed))

    def env(self, base: Mapping[str, str] | None = None, *, cgo: bool = False) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        env.update(build_target(cgo))
        env["GOFLAGS"] = GOFLAGS
        env["GOTOOLCHAIN"] = "local"  # never switch to (download) another toolchain behind our back
        env["GOWORK"] = "off"
        env["PATH"] = os.pathsep.join([str(Path(self.go).parent), env.get("PATH", "")])
        return env


def build_target(cgo: bool = False) -> dict[str, str]:
    """GOOS/GOARCH/CGO_ENABLED of a build: static (TARGET) unless the package needs cgo."""
    return {**TARGET, "CGO_ENABLED": "1"} if cgo else dict(TARGET)


def c_compiler(which: Callable[[str], str | None] = shutil.which) -> str:
    """``gcc --version``'s first line (part of a cgo binary's stamp); a clear error without gcc."""
    cc = which("gcc")
    if cc is None:
        raise MissingToolError(f"no `gcc` on PATH, and flanneld and the NVIDIA device plugin are cgo programs: {CC_HINT}")
    proc = subprocess.run([cc, "--version"], check=False, capture_output=True, text=True)
    first = (proc.stdout.splitlines() or [""])[0].strip()
    if proc.returncode != 0 or not first:
        raise MissingToolError(f"`{cc} --version` failed ({proc.stderr.strip()}): {CC_HINT}")
    return first


def find_go(which: Callable[[str], str | None] = shutil.which, fallbacks: Sequence[str] = GO_FALLBACKS,
            log: Path | None = None) -> Toolchain:
    """The Go toolchain on PATH (or in /usr/local/go), at least GO_MIN; a clear error otherwise."""
    go = which("go") or next((p for p in fallbacks if os.access(p, os.X_OK)), None)
    if go is None:
        raise MissingToolError("no `go` on PATH (nor in /usr/local/go/bin): " + GO_INSTALL_HINT.format(need=GO_MIN))
    proc = subprocess.run([go, "env", "GOVERSION"], check=False, capture_output=True, text=True,
                          env={**os.environ, "GOTOOLCHAIN": "local"})
    if proc.returncode != 0 or not proc.stdout.strip():
        raise MissingToolError(f"`{go} env GOVERSION` failed ({proc.stderr.strip()}): reinstall Go; "
                               + GO_INSTALL_HINT.format(need=GO_MIN))
    tc = Toolchain(str(Path(go).resolve()), proc.stdout.strip())
    tc.require(GO_MIN, "building Kubernetes from its Go modules")
    return tc


# ------------------------------------------------------------------------------------ go.mod


def parse_directives(text: str) -> list[tuple[str, list[str]]]:
    """go.mod as (verb, arguments) pairs, with ``verb ( ... )`` blocks expanded and comments dropped."""
    out: list[tuple[str, list[str]]] = []
    block: str | None = None
    for raw in text.splitlines():
        line = raw.split("//", 1)[0].strip()
        if not line:
            continue
        if block is not None:
            if line == ")":
                block = None
            else:
                out.append((block, _fields(line)))
            continue
        fields = _fields(line)
        if len(fields) == 2 and fields[1] == "(":
            block = fields[0]
        elif fields:
            out.append((fields[0], fields[1:]))
    return out


def _fields(line: str) -> list[str]:
    return [f.strip('"`') for f in re.findall(r'"[^"]*"|`[^`]*`|\S+', line)]


def go_directive(gomod: str) -> str | None:
    return next((args[0] for verb, args in parse_directives(gomod) if verb == "go" and args), None)


def staging_version(kube_version: str) -> str:
    """Kubernetes v1.X.Y publishes its staging modules (k8s.io/api, client-go, ...) as v0.X.Y."""
    v = kube_version if kube_version.startswith("v") else f"v{kube_version}"
    if not re.fullmatch(r"v1\.\d+\.\d+(-[0-9A-Za-z.-]+)?", v):
        raise OfflineError(f"cannot derive staging module versions from Kubernetes version {kube_version!r} "
                           "(expected 1.<minor>.<patch>)")
    return "v0." + v[len("v1."):]


def copied_replaces(gomod: str, module: str,
                    local: Callable[[str, str], str] | None = None) -> list[tuple[str, str]]:
    """The replace directives of ``module``'s go.mod, for a wrapper module that requires it.

    Go ignores replaces in dependencies, so a wrapper must repeat them to build what upstream
    builds. A replace by another module at a version is kept as it is; a replace by a local path
    (``./x``) cannot come from the module proxy, so ``local(old, path)`` must map it to a module
    version (Kubernetes' staging modules) or it is refused. Returns sorted (left, right) pairs.
    """
    out: dict[str, str] = {}
    for verb, args in parse_directives(gomod):
        if verb != "replace":
            continue
        if "=>" not in args:
            raise OfflineError(f"unreadable replace directive in {module}'s go.mod: {' '.join(args)}")
        arrow = args.index("=>")
        old, new = args[:arrow], args[arrow + 1:]
        if len(new) == 1 and new[0].startswith(("./", "../")):
            if local is None:
                raise OfflineError(f"{module} replaces {old[0]} with the local path {new[0]}: cannot reproduce "
                                   "it from the module proxy")
            out[old[0]] = local(old[0], new[0])
        elif len(new) == 2 and old:
            out[" ".join(old)] = " ".join(new)
        else:
            raise OfflineError(f"unreadable replace directive in {module}'s go.mod: {' '.join(args)}")
    return sorted(out.items())


def derived_replaces(gomod: str, kube_version: str) -> list[tuple[str, str]]:
    """Replace directives for a module depending on k8s.io/kubernetes, derived from its go.mod.

    ``X => ./staging/src/X`` becomes ``X => X <staging version>``; the other replaces are copied
    as they are (copied_replaces).
    """
    pinned = staging_version(kube_version)

    def staging(old: str, path: str) -> str:
        if not path.startswith("./staging/"):
            raise OfflineError(f"k8s.io/kubernetes replaces {old} with the local path {path}, which "
                               "is not a staging module: cannot reproduce it from the module proxy")
        return f"{old} {pinned}"

    return copied_replaces(gomod, "k8s.io/kubernetes", staging)


def render_gomod(module: str, go: str, requires: Sequence[tuple[str, str]],
                 replaces: Sequence[tuple[str, str]] = (), godebug: Sequence[str] = ()) -> str:
    lines = ["// Generated by kubesweep (src/kubesweep/offline/gobuild.py); `go mod tidy` fills in the rest.",
             f"module {module}", "", f"go {go}", ""]
    if godebug:
        lines += ["godebug (", *(f"\t{g}" for g in godebug), ")", ""]
    lines += ["require (", *(f"\t{m} {v}" for m, v in requires), ")", ""]
    if replaces:
        lines += ["replace (", *(f"\t{old} => {new}" for old, new in replaces), ")", ""]
    return "\n".join(lines)


_IMPORT_BLOCK = re.compile(r"^import\s*\((.*?)^\)", re.MULTILINE | re.DOTALL)
_IMPORT_LINE = re.compile(r'^\s*import\s+(?:[A-Za-z_.]\w*\s+)?"([^"]+)"', re.MULTILINE)
_QUOTED = re.compile(r'^\s*(?:[A-Za-z_.]\w*\s+)?"([^"]+)"', re.MULTILINE)


def go_imports(source: str) -> list[str]:
    """The import paths of one Go file (blocks and single lines), standard library included."""
    found = [m for block in _IMPORT_BLOCK.findall(source) for m in _QUOTED.findall(block)]
    return found + _IMPORT_LINE.findall(source)


def test_imports(module_dir: Path, module: str, package: str) -> list[str]:
    """Non-standard-library imports of ``package``'s *_test.go files (in-package tests)."""
    folder = module_dir / package.removeprefix(module).lstrip("/")
    files = sorted(folder.glob("*_test.go"))
    if not files:
        raise OfflineError(f"{package} has no *_test.go files in {folder}: nothing to build a test binary from")
    paths = {imp for f in files for imp in go_imports(f.read_text()) if "." in imp.split("/")[0]}
    return sorted(paths - {package})


def render_tools_go(packages: Sequence[str]) -> str:
    imports = "".join(f'\t_ "{p}"\n' for p in sorted(set(packages)))
    return ("//go:build tools\n\n// Package tools pins the commands this wrapper module builds, so that `go mod tidy`\n"
            "// records all their dependencies. It is never compiled (build tag \"tools\").\npackage tools\n\n"
            f"import (\n{imports})\n")


# ----------------------------------------------------------------------------------- ldflags


@dataclass(frozen=True)
class ModuleInfo:
    path: str
    version: str
    dir: Path
    gomod: Path
    time: str | None = None         # commit time, RFC 3339
    origin_hash: str | None = None  # VCS commit, when the proxy records it

    def gomod_text(self) -> str:
        return self.gomod.read_text()


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


@dataclass(frozen=True)
class Binary:
    name: str
    package: str
    test: bool = False  # the package's test binary (`go test -c`), like Kubernetes' e2e.test


@dataclass(frozen=True)
class Wrapper:
    """One generated module: what it requires and which commands it builds."""

    name: str
    version: str
    requires: tuple[tuple[str, str], ...]
    binaries: tuple[Binary, ...]
    ldflags: Callable[[Mapping[str, ModuleInfo]], str]
    kubernetes_replaces: bool = False  # derive replaces from the first required module (k8s.io/kubernetes)
    module_replaces: bool = False      # copy the first required module's replaces (copied_replaces)
    cgo: bool = False                  # CGO_ENABLED=1 (the host's gcc, dynamically linked against its glibc)
    # packages (of the first required module) whose *_test.go imports go into tools.go too, so that
    # `go mod tidy` records what their test binaries need
    test_imports_of: tuple[str, ...] = ()

    @property
    def module(self) -> str:
        return f"kubesweep.local/build/{self.name}"


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


# ------------------------------------------------------------------------------------ building


@dataclass
class Built:
    """One binary: where it is, its digest, and whether this run had to build it."""

    group: str
    name: str
    version: str
    path: Path
    sha256: str
    cached: bool
    seconds: float


def module_infos(tc: Toolchain, modules: Sequence[tuple[str, str]], log: Path) -> dict[str, ModuleInfo]:
    """``go mod download -json`` (instant when GOMODCACHE has them): source dirs, go.mod files, .info."""
    args = [tc.go, "mod", "download", "-json", *(f"{m}@{v}" for m, v in modules)]

    with tempfile.TemporaryDirectory(prefix="kubesweep-modinfo-") as cwd:
        proc = subprocess.run(args, check=False, cwd=cwd, env=tc.env(), capture_output=True, text=True)
    with open(log, "a") as f:
        f.write(f"\n$ {subprocess.list2cmdline(args)}\n{proc.stdout}{proc.stderr}")
    infos: dict[str, ModuleInfo] = {}
    errors: list[str] = []
    decoder = json.JSONDecoder()
    text, pos = proc.stdout, 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            break
        obj, pos = decoder.raw_decode(text, pos)
        if obj.get("Error"):
            errors.append(obj["Error"])
            continue
        info: dict = {}
        try:
            info = json.loads(Path(obj["Info"]).read_text())
        except (OSError, ValueError, KeyError):
            pass
        infos[obj["Path"]] = ModuleInfo(obj["Path"], obj["Version"], Path(obj["Dir"]), Path(obj["GoMod"]),
                                        info.get("Time"), (info.get("Origin") or {}).get("Hash"))
    if errors or proc.returncode != 0:
        detail = "\n".join(errors) or proc.stderr.strip()
        if "no space left on device" in detail.lower():
            raise command_failed("download Go modules", args, proc.returncode, log)
        raise BuildError(f"could not download Go modules {', '.join(f'{m}@{v}' for m, v in modules)} from the Go "
                         f"module proxy ({tc.env().get('GOPROXY') or 'GOPROXY default'}):\n{detail}\n"
                         "Check the network (or GOPROXY), or that this version exists on the proxy.")
    return infos


def prepare(cache: Cache, tc: Toolchain, wrapper: Wrapper, progress: Callable[[str], None]) -> tuple[Path, dict[str, ModuleInfo], str]:
    """Generate (or reuse) the wrapper module; return its directory, module infos and wrapper hash."""
    folder = cache.build_dir(wrapper.name, wrapper.version)
    folder.mkdir(parents=True, exist_ok=True)
    log = cache.log(f"go-{wrapper.name}")
    infos = module_infos(tc, wrapper.requires, log)
    go = GO_MIN + ".0"
    godebug: list[str] = []
    for mod, _ in wrapper.requires:
        gomod = infos[mod].gomod_text()
        need = go_directive(gomod)
        if need:
            tc.require(need, f"{mod}@{infos[mod].version}")
            if parse_go_version(need) > parse_go_version(go):
                go = need
    first = infos[wrapper.requires[0][0]].gomod_text()
    godebug = [" ".join(args) for verb, args in parse_directives(first) if verb == "godebug"]
    replaces: list[tuple[str, str]] = []
    if wrapper.kubernetes_replaces:
        replaces = derived_replaces(first, wrapper.version)
    elif wrapper.module_replaces:
        replaces = copied_replaces(first, wrapper.requires[0][0])
    skeleton = render_gomod(wrapper.module, go, wrapper.requires, replaces, godebug)
    extra = [imp for pkg in wrapper.test_imports_of
             for imp in test_imports(infos[wrapper.requires[0][0]].dir, wrapper.requires[0][0], pkg)]
    tools = render_tools_go([b.package for b in wrapper.binaries] + extra)
    tidy = Stamp(folder / "stamps" / "wrapper.json")
    tidy_inputs = {"go.mod": skeleton, "tools.go": tools, "go": tc.version}
    if not (tidy.is_fresh(tidy_inputs) and (folder / "go.mod").exists() and (folder / "go.sum").exists()):
        progress(f"  {wrapper.name} {wrapper.version}: generating the wrapper module and running `go mod tidy`")
        require_free_space(folder, 2 * GiB, f"download the Go modules of {wrapper.name}")
        atomic_write(folder / "tools.go", tools)
        atomic_write(folder / "go.mod", skeleton)
        (folder / "go.sum").unlink(missing_ok=True)
        run([tc.go, "mod", "tidy"], cwd=folder, env=tc.env(), log=log,
            what=f"resolve the dependencies of {wrapper.name} {wrapper.version} (`go mod tidy` in {folder})",
            hint=GO_INSTALL_HINT.format(need=GO_MIN))
        tidy.record(tidy_inputs)
    digest = sha256_file_pair(folder / "go.mod", folder / "go.sum")
    return folder, infos, digest


def sha256_file_pair(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def build_wrapper(cache: Cache, tc: Toolchain, wrapper: Wrapper, progress: Callable[[str], None]) -> tuple[list[Built], dict[str, ModuleInfo]]:
    """Build every binary of ``wrapper`` that is not already built from the same inputs."""
    cc = c_compiler() if wrapper.cgo else None  # before `go mod tidy`: fail fast without gcc
    folder, infos, wrapper_digest = prepare(cache, tc, wrapper, progress)
    ldflags = wrapper.ldflags(infos)
    built = []
    for binary in wrapper.binaries:
        inputs = {"package": binary.package, "ldflags": ldflags, "go": tc.version,
                  "target": build_target(wrapper.cgo), "flags": list(BUILD_FLAGS), "wrapper": wrapper_digest,
                  "module_version": wrapper.version}
        if cc:
            inputs["cc"] = cc  # only for cgo builds, so the static binaries' stamps stay as they were
        if binary.test:
            inputs["test"] = True
        built.append(compile_binary(cache, tc, group=wrapper.name, version=wrapper.version, name=binary.name,
                                    target=binary.package, cwd=folder, out=folder / "bin" / binary.name,
                                    ldflags=ldflags, inputs=inputs, progress=progress, cgo=wrapper.cgo,
                                    test=binary.test))
    return built, infos


def build_local(cache: Cache, tc: Toolchain, *, name: str, version: str, source: Path, ldflags: str,
                progress: Callable[[str], None]) -> Built:
    """Build a module of this repository (images/pause) the same way: static, trimmed, stamped."""
    folder = cache.build_dir(name, version)
    files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix in (".go", ".mod", ".sum"))
    if not any(p.name == "go.mod" for p in files):
        raise OfflineError(f"{source} has no go.mod: the {name} program is part of the kubesweep checkout")
    gomod = (source / "go.mod").read_text()
    need = go_directive(gomod)
    if need:
        tc.require(need, f"{source}/go.mod")
    inputs = {"sources": {str(p.relative_to(source)): sha256_file(p) for p in files}, "ldflags": ldflags,
              "go": tc.version, "target": TARGET, "flags": list(BUILD_FLAGS), "module_version": version}
    return compile_binary(cache, tc, group=name, version=version, name=name, target=".", cwd=source,
                          out=folder / "bin" / name, ldflags=ldflags, inputs=inputs, progress=progress)


def compile_binary(cache: Cache, tc: Toolchain, *, group: str, version: str, name: str, target: str, cwd: Path,
                   out: Path, ldflags: str, inputs: Mapping[str, object], progress: Callable[[str], None],
                   cgo: bool = False, test: bool = False) -> Built:
    stamp = Stamp(out.parent.parent / "stamps" / f"{name}.json")
    if stamp.is_fresh(inputs, out):
        return Built(group, name, version, out, stamp.get("sha256"), True, 0.0)
    progress(f"  building {name} ({group} {version}) ...")
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_quietly(out.parent.glob(f".{out.name}.tmp-*"))  # left by a build that was killed
    require_free_space(out.parent, 1 * GiB, f"build {name}")
    tmp = temp_sibling(out)
    started = time.monotonic()
    try:
        verb = ["test", "-c"] if test else ["build"]
        run([tc.go, *verb, *BUILD_FLAGS, "-ldflags", ldflags, "-o", str(tmp), target], cwd=cwd, env=tc.env(cgo=cgo),
            log=cache.log(f"go-{group}"), what=f"build {name} {version} (go {' '.join(verb)} {target})",
            hint=GO_INSTALL_HINT.format(need=GO_MIN))
        os.chmod(tmp, 0o755)
        digest = sha256_file(tmp)
        os.replace(tmp, out)
    except OSError as exc:
        raise_disk_error(exc, out)
    finally:
        remove_quietly([tmp])
    seconds = time.monotonic() - started
    stamp.record(inputs, out, sha256=digest, seconds=round(seconds, 1))
    progress(f"  built {name} in {seconds:.1f}s")
    return Built(group, name, version, out, digest, False, seconds)
