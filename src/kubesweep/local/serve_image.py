"""The image of `kubesweep serve` in the cluster (roles/kubesweep_serve): kubesweep and its serve
extra installed on the python-base image, built from this checkout and pushed to the cluster
registry, tagged by content like a trainer image (local/image.py): a rebuild of the same tree and
lock pushes nothing.

python-base (offline/image_recipes.py) is Debian bookworm's python3 without pip, so nothing is
installed inside the image: on this machine the checkout's wheel is built and installed with its
locked dependencies (requirements.lock) into ``site/`` of a build context under the cache, for the
image's CPython 3.11 on x86-64 Linux (binary wheels only, from PyPI or pip's cache), and the image is
examples/in-cluster/Dockerfile (``COPY site/``, ``python3 -S -m kubesweep`` as user 1000) on
``kubesweep/python-base:bookworm``. Why not a recipe of the offline build (``invoke artifacts``):
those images are built from Debian packages and our Go binaries before any cluster exists, and
this one changes with every commit of the package; it needs the cluster registry to push to, as
trainer images do.

The reference pushed is also written to ``<cache>/serve-image/reference``, which the role reads
when the inventory names no image.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from kubesweep.local import image, paths

REPOSITORY = "kubesweep/serve"
BASE = "kubesweep/python-base:bookworm"
PYTHON = "3.11"  # bookworm's python3
# Debian bookworm's glibc is 2.36: wheels for any manylinux up to it run there.
PLATFORMS = ("manylinux2014_x86_64", *(f"manylinux_2_{v}_x86_64" for v in range(17, 37)))


class ServeImageError(image.ImageError):
    pass


def build_dir() -> Path:
    return paths.cache_root() / "serve-image"


def reference_file() -> Path:
    return build_dir() / "reference"


def _pip(args: list[str], what: str, timeout: int) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise ServeImageError(f"{what} failed:\n{tail}")


def site(checkout: Path, into: Path) -> Path:
    """kubesweep[serve] of ``checkout`` with its locked dependencies installed for the image's
    Python into ``into``/site (made anew: nothing of an earlier tree is left in it)."""
    dist = into / "dist"
    target = into / "site"
    for old in (dist, target):
        shutil.rmtree(old, ignore_errors=True)
    _pip(["wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist), str(checkout)],
         f"building the wheel of {checkout}", 300)
    (wheel,) = dist.glob("kubesweep-*.whl")
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    # --no-compile: no .pyc, whose bytes differ from one build to the next (the content tag would too);
    # the image's interpreter runs with PYTHONDONTWRITEBYTECODE.
    _pip(["install", "-q", "--no-compile", "--target", str(target), "--python-version", PYTHON,
          "--implementation", "cp", *platforms, "--only-binary=:all:", "-c", str(checkout / "requirements.lock"),
          f"kubesweep[serve] @ {wheel.as_uri()}"],
         f"installing kubesweep[serve] for Python {PYTHON} into {target}", 900)
    shutil.rmtree(dist)
    return target


def ensure(registry: str = "localhost:5000") -> image.BuiltImage:
    """Build ``<registry>/kubesweep/serve:<content tag>`` from this checkout and push it (nothing
    when the registry has that tag); the reference is written to reference_file()."""
    checkout = paths.checkout()
    context = build_dir() / "context"
    context.mkdir(parents=True, exist_ok=True)
    site(checkout, context)
    shutil.copyfile(checkout / "examples" / "in-cluster" / "Dockerfile", context / "Dockerfile")
    built = image.ensure(context, REPOSITORY, registry=registry, build_args={"BASE": BASE})
    reference_file().write_text(built.reference + "\n")
    return built
