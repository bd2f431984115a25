"""Go modules as the module proxy serves them, and the go.mod and Go source text around them.

* ``module_infos`` — ``go mod download -json`` (instant when GOMODCACHE has them): each module's
  source directory, go.mod and .info (commit time and hash, when the proxy records them);
* go.mod text — ``parse_directives`` / ``go_directive`` read one; ``copied_replaces`` and
  ``derived_replaces`` turn a dependency's replace directives into ones a wrapper module can use
  (Kubernetes' ``./staging/src/k8s.io/<x>`` become the published ``k8s.io/<x> v0.<minor>.<patch>``);
  ``render_gomod`` writes a wrapper module's go.mod;
* Go sources — ``go_imports`` / ``test_imports`` (what a package's tests import) and
  ``render_tools_go``, the blank-import file that makes ``go mod tidy`` record every dependency.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .cache import BuildError, OfflineError, command_failed
from .gotoolchain import Toolchain


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
    # the comment names gobuild.py as it always has: the text is part of every wrapper's stamps
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


# ----------------------------------------------------------------------------------- modules


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
