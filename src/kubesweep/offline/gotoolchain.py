"""The Go toolchain the offline build compiles with, and the C compiler of its cgo builds.

``find_go()`` finds ``go`` on PATH (or in /usr/local/go) and refuses one older than GO_MIN, saying
how to install a newer one (Debian 12's golang-go is too old). ``Toolchain.env()`` is the
environment of every go command the build runs: the target (``build_target``: static
linux/amd64 with ``CGO_ENABLED=0``, or cgo for the programs that need it), ``GOFLAGS=-p=2``
(two compile jobs: the machine has two cores and a Kubernetes link needs ~2 GiB),
``GOTOOLCHAIN=local`` (never download another toolchain) and no workspace. ``c_compiler()`` is
gcc's version line, which a cgo binary's stamp records.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .cache import MissingToolError

GO_MIN = "1.25"  # Kubernetes 1.35's go.mod says go 1.25.0; the other modules may ask for more
GO_FALLBACKS = ("/usr/local/go/bin/go",)
TARGET = {"CGO_ENABLED": "0", "GOOS": "linux", "GOARCH": "amd64"}
GOFLAGS = "-p=2 -buildvcs=false"
BUILD_FLAGS = ("-trimpath",)
CC_HINT = "apt-get install -y --no-install-recommends gcc libc6-dev"
GO_INSTALL_HINT = ("install Go >= {need} from the official linux-amd64 tarball into /usr/local/go and put "
                   "/usr/local/go/bin on PATH (Debian 12's `apt-get install golang-go` gives Go 1.19: too old)")


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
