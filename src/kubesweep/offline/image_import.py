"""Images imported into the local docker daemon, and ``CACHE/images.json`` that lists them.

Images are made with ``docker import`` (one layer, no builder, nothing pulled) from the tar
stream of image_tar.py, and carry the label ``io.kubesweep.stamp`` = hash of everything that
went in (ImageSpec.stamp); an image whose label matches is not rebuilt. Each image is tagged
``<local>`` and ``127.0.0.1:5000/<path>`` so that a plain ``docker push`` fills a registry
listening there; ``CACHE/images.json`` lists them for the offline_images role.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cache import BuildError, Cache, MissingToolError, OfflineError, atomic_write, command_failed
from .image_tar import ImageSpec, write_tar

STAMP_LABEL = "io.kubesweep.stamp"
DOCKER_HINT = "apt-get install -y --no-install-recommends docker.io"


@dataclass
class ImportedImage:
    """An image imported into the local docker: its spec, its image ID, whether it was there already
    (``cached``) and how long the import took."""

    spec: ImageSpec
    id: str
    cached: bool
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


def docker(args: Sequence[str], *, log: Path | None = None, what: str = "") -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(["docker", *args], check=False, capture_output=True, text=True)
    except FileNotFoundError:
        raise MissingToolError(f"no `docker` command: {DOCKER_HINT}") from None
    if log is not None:
        with open(log, "a") as f:
            f.write(f"\n$ docker {subprocess.list2cmdline(list(args))}\n{proc.stdout}{proc.stderr}")
    if what and proc.returncode != 0:
        text = (proc.stderr or proc.stdout).strip()
        if "no space left on device" in text.lower():
            raise command_failed(what, ["docker", *args], proc.returncode, log or Path("/dev/null"))
        if "Cannot connect to the Docker daemon" in text or "Is the docker daemon running" in text:
            raise OfflineError(f"could not {what}: the Docker daemon stopped answering ({text})")
        raise BuildError(f"could not {what}: docker {args[0]} exited with status {proc.returncode}: {text}")
    return proc


def inspect(ref: str) -> dict[str, Any] | None:
    proc = docker(["image", "inspect", ref])
    if proc.returncode != 0:
        return None
    data = json.loads(proc.stdout or "[]")
    return data[0] if data else None


def label_of(info: dict[str, Any] | None) -> str | None:
    if not info:
        return None
    return ((info.get("Config") or {}).get("Labels") or {}).get(STAMP_LABEL)


def ensure_image(cache: Cache, spec: ImageSpec, progress: Callable[[str], None]) -> ImportedImage:
    """Import ``spec`` into docker unless an image with the same stamp label is already tagged."""
    stamp = spec.stamp()
    log = cache.log("images")
    local = inspect(spec.local)
    if local and label_of(local) == stamp:
        remote = inspect(spec.registry_ref)
        if not remote or remote.get("Id") != local["Id"]:
            docker(["tag", spec.local, spec.registry_ref], log=log, what=f"tag {spec.local} as {spec.registry_ref}")
        return ImportedImage(spec, local["Id"], True, 0.0)
    progress(f"  docker import {spec.local} ...")
    started = time.monotonic()
    old_ids = {info["Id"] for info in (local, inspect(spec.registry_ref)) if info and label_of(info)}
    changes = [*spec.changes, f"LABEL {STAMP_LABEL}={stamp}"]
    args = ["import"]
    for change in changes:
        args += ["--change", change]
    if spec.base is not None and not spec.files:
        docker([*args, str(spec.base), spec.local], log=log, what=f"import {spec.base} as {spec.local}")
    else:
        stream_import(args + ["-", spec.local], spec, log)
    docker(["tag", spec.local, spec.registry_ref], log=log, what=f"tag {spec.local} as {spec.registry_ref}")
    new = inspect(spec.local)
    if not new or label_of(new) != stamp:
        raise BuildError(f"docker import of {spec.local} did not produce an image with label {STAMP_LABEL}={stamp} "
                         f"(see {log})")
    for old in old_ids - {new["Id"]}:  # our previous build, now untagged; fails harmlessly when still used
        docker(["image", "rm", old], log=log)
    seconds = time.monotonic() - started
    progress(f"  {spec.local} ({new['Id'][7:19]}) in {seconds:.1f}s")
    return ImportedImage(spec, new["Id"], False, seconds)


def stream_import(args: Sequence[str], spec: ImageSpec, log: Path) -> None:
    """docker import from a tar written straight into its stdin: base tarball members + files."""
    with open(log, "ab") as out:
        out.write(f"\n$ docker {subprocess.list2cmdline(list(args))}  (tar on stdin)\n".encode())
        out.flush()
        try:
            proc = subprocess.Popen(["docker", *args], stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT)
        except FileNotFoundError:
            raise MissingToolError(f"no `docker` command: {DOCKER_HINT}") from None
        assert proc.stdin is not None
        broken = False
        try:
            write_tar(proc.stdin, spec)
        except BrokenPipeError:
            broken = True
        finally:
            try:
                proc.stdin.close()
            except BrokenPipeError:
                broken = True
        code = proc.wait()
    if code != 0 or broken:
        raise command_failed(f"import {spec.local} into docker", ["docker", *args], code or 1, log)


def write_images_json(cache: Cache, specs: Sequence[ImageSpec], *, keep: bool = False) -> Path:
    """The list the offline_images role pushes. With ``keep``, entries of an earlier run for
    other repositories stay (a build of fewer parts must not drop the images of the others);
    an entry for the same repository is replaced (a new tag)."""
    entries = [s.entry() for s in specs]
    if keep:
        try:
            earlier = json.loads(cache.images_json.read_text())
        except (OSError, ValueError):
            earlier = []
        mine = {e["path"].rsplit(":", 1)[0] for e in entries}
        entries += [e for e in earlier if isinstance(e, dict) and isinstance(e.get("path"), str)
                    and e["path"].rsplit(":", 1)[0] not in mine and inspect(e.get("local", "")) is not None]
    atomic_write(cache.images_json, json.dumps(entries, indent=2) + "\n")
    return cache.images_json
