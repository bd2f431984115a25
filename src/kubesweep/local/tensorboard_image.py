"""The TensorBoard image, built here on first use: tensorboard (the version versions.yml pins)
and its dependencies from PyPI, installed on this machine with pip for the image's Python
(CPython 3.11, manylinux wheels only: nothing is compiled) into
``~/.cache/kubesweep/tensorboard/<version>/site``, copied onto a Python base image and pushed
to the cluster registry under a content tag, like trainer images (local/image.py): a second
call finds the tag in the registry and builds nothing.

Why not in the offline build (`invoke artifacts`): the cluster does not need it to come up, it
is some 140 MB that only teams who open TensorBoard use, and what it needs from outside is PyPI,
which trainer images already need. The wheels stay in the cache: once downloaded, rebuilding the
image needs no network.

The base is ``kubesweep/python-base:bookworm`` (Debian's python3 3.11, no pip) where this
machine's docker has it, as on the local cluster; elsewhere ``python:3.11-slim``. Either way the
image runs ``python3 -m tensorboard.main`` as uid 1000.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from kubesweep.k8s.versions import pins
from kubesweep.local import image
from kubesweep.local.paths import cache_root

REPOSITORY = "kubesweep/tensorboard"
LOCAL_BASE = "kubesweep/python-base:bookworm"
ONLINE_BASE = "python:3.11-slim"
PYTHON_VERSION = "3.11"  # Debian bookworm's python3, and ONLINE_BASE's
PLATFORM = "manylinux2014_x86_64"

DOCKERFILE = """\
# kubesweep's TensorBoard: tensorboard and its dependencies as installed by pip --target on the
# building machine (site/), on a Python 3.11 base. Built by kubesweep.local.tensorboard_image.
ARG BASE=kubesweep/python-base:bookworm
FROM ${BASE}
COPY site /opt/tensorboard
ENV PYTHONPATH=/opt/tensorboard
USER 1000:1000
EXPOSE 6006
ENTRYPOINT ["python3", "-m", "tensorboard.main"]
CMD ["--help"]
"""


class TensorBoardImageError(image.ImageError):
    pass


def version() -> str:
    return pins()["tensorboard_version"]


def context_dir(tb_version: str | None = None) -> Path:
    return cache_root() / "tensorboard" / (tb_version or version())


def pip_argv(target: Path, tb_version: str) -> list[str]:
    """pip installing tensorboard==tb_version for the image's Python, not this one's."""
    return [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--no-compile",
            "--quiet", "--target", str(target), "--only-binary=:all:", "--python-version", PYTHON_VERSION,
            "--implementation", "cp", "--platform", PLATFORM, f"tensorboard=={tb_version}"]


def prepare(tb_version: str | None = None) -> Path:
    """The build context (Dockerfile + site/), pip-installed once: a finished one is reused."""
    tb_version = tb_version or version()
    ctx = context_dir(tb_version)
    site, done = ctx / "site", ctx / ".installed"
    if not done.exists():
        partial = ctx / "site.partial"
        shutil.rmtree(partial, ignore_errors=True)
        ctx.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(pip_argv(partial, tb_version), capture_output=True, text=True)
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-10:])
            raise TensorBoardImageError(f"pip could not install tensorboard=={tb_version} for Python {PYTHON_VERSION} "
                                        f"({PLATFORM}) into {partial}:\n{tail}\nGive an image with tensorboard "
                                        "instead (--image)")
        shutil.rmtree(site, ignore_errors=True)
        partial.rename(site)
        shutil.rmtree(site / "bin", ignore_errors=True)  # console scripts naming this machine's python
        done.write_text(tb_version + "\n")
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    (ctx / ".dockerignore").write_text("site.partial\n.installed\n")
    return ctx


def _have_locally(ref: str) -> bool:
    try:
        proc = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", ref], capture_output=True,
                              text=True)
    except OSError:
        return False
    return proc.returncode == 0


def default_base() -> str:
    return LOCAL_BASE if _have_locally(LOCAL_BASE) else ONLINE_BASE


def reference_file() -> Path:
    """Where the last reference pushed is written: roles/kubesweep_serve reads it for the server's
    TensorBoard image (``kubesweep_serve_tensorboard_image``)."""
    return cache_root() / "tensorboard" / "reference"


def ensure(registry: str = "localhost:5000", *, base: str | None = None,
           tb_version: str | None = None) -> image.BuiltImage:
    """Build and push ``registry/kubesweep/tensorboard:<content tag>`` unless it is there; its
    reference is written to reference_file()."""
    ctx = prepare(tb_version)
    built = image.ensure(ctx, REPOSITORY, registry=registry, build_args={"BASE": base or default_base()})
    reference_file().write_text(built.reference + "\n")
    return built
