"""Trainer images tagged by content: build and push only when the build context changed.

The tag is the first 12 hex digits of a SHA-256 over the Dockerfile, every file of the build
context (path, mode and bytes, in sorted order, honouring .dockerignore's simple patterns) and
the build arguments. Same inputs, same tag: when the registry already has that tag, nothing is
built or pushed, and the rendered Jobs reference that exact tag.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from kubesweep.errors import KubesweepError


class ImageError(KubesweepError):
    pass


@dataclass(frozen=True)
class BuiltImage:
    reference: str  # registry/repository:tag, as Jobs name it
    tag: str
    built: bool
    pushed: bool
    seconds: float


def _ignored(context: Path) -> list[str]:
    path = context / ".dockerignore"
    if not path.exists():
        return []
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def context_files(context: Path) -> list[Path]:
    patterns = _ignored(context)
    files = []
    for path in sorted(context.rglob("*")):
        rel = path.relative_to(context).as_posix()
        if path.is_dir() or any(fnmatch.fnmatch(rel, p) or rel.startswith(p.rstrip("/") + "/") for p in patterns):
            continue
        if "__pycache__" in rel.split("/"):
            continue
        files.append(path)
    return files


def content_tag(context: Path, dockerfile: Path, build_args: dict[str, str]) -> str:
    h = hashlib.sha256()
    h.update(b"dockerfile\0" + dockerfile.read_bytes())
    for path in context_files(context):
        h.update(f"\0{path.relative_to(context).as_posix()}\0{path.stat().st_mode & 0o777:o}\0".encode())
        h.update(path.read_bytes())
    h.update(json.dumps(build_args, sort_keys=True).encode())
    return h.hexdigest()[:12]


def registry_has(registry: str, repository: str, tag: str) -> bool:
    """Ask a registry (distribution v2 API) whether repository:tag exists, authenticating as docker
    does, with the user's docker credentials for it (local/registry.py)."""
    from kubesweep.local import registry as registries

    return registries.manifest_exists(registry, repository, tag)


def _docker(args: list[str], what: str) -> None:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        refused = [line for line in lines if re.search(r"unauthorized|denied|authentication required", line, re.I)]
        if refused:  # docker's own words, one line: it never prints a secret
            raise ImageError(f"{what} was refused: {refused[-1].strip()}; run `docker login` for that registry")
        tail = "\n".join(lines[-15:])
        raise ImageError(f"{what} failed:\n{tail}")


def ensure(context: Path, repository: str, *, registry: str = "localhost:5000", dockerfile: Path | None = None,
           build_args: dict[str, str] | None = None) -> BuiltImage:
    """Build and push ``registry/repository:<content tag>`` unless the registry already has it."""
    started = time.monotonic()
    context = Path(context)
    dockerfile = dockerfile or context / "Dockerfile"
    if not dockerfile.exists():
        raise ImageError(f"no Dockerfile at {dockerfile}")
    args = dict(build_args or {})
    tag = content_tag(context, dockerfile, args)
    reference = f"{registry}/{repository}:{tag}"
    if registry_has(registry, repository, tag):
        return BuiltImage(reference, tag, False, False, time.monotonic() - started)
    argv = ["build", "-t", reference, "-f", str(dockerfile)]
    for key, value in sorted(args.items()):
        argv += ["--build-arg", f"{key}={value}"]
    _docker([*argv, str(context)], f"docker build of {reference}")
    _docker(["push", reference], f"docker push of {reference}")
    return BuiltImage(reference, tag, True, True, time.monotonic() - started)
