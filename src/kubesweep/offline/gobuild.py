"""Go binaries built from the Go module proxy, through a generated wrapper module per project.

Which projects, at which versions and with which version flags, is gorecipes.py (Kubernetes,
etcd, crictl, the CNI plugins, kwok, CoreDNS, local-path-provisioner, minikube, the NVIDIA
device plugin, ...); finding Go is gotoolchain.py; reading and writing go.mod is gomodules.py.

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
goes into is a bookworm debootstrap (debootstrap.py), the release kubesweep's hosts run, and
tests/test_offline_build.py runs it there. Its stamp also records the C compiler.

Each binary carries a stamp (see cache.Stamp) of: package, ldflags, Go version, target, and the
SHA-256 of the wrapper's tidied go.mod + go.sum. ``go mod tidy`` itself reruns only when the
generated go.mod skeleton changes.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .cache import (
    GiB, Cache, OfflineError, Stamp, atomic_write, raise_disk_error, remove_quietly, require_free_space, run,
    sha256_file, temp_sibling,
)
from .gomodules import (
    ModuleInfo, copied_replaces, derived_replaces, go_directive, module_infos, parse_directives, render_gomod,
    render_tools_go, test_imports,
)
from .gotoolchain import (
    BUILD_FLAGS, GO_INSTALL_HINT, GO_MIN, TARGET, Toolchain, build_target, c_compiler, parse_go_version,
)


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
