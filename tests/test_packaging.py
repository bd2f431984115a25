"""kubesweep installed as a wheel works from any directory, with no checkout behind it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel built from this tree (no build isolation: nothing is fetched), installed into a
    directory of its own, which goes first on PYTHONPATH (before the editable install)."""
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp),
                    str(ROOT)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp.glob("kubesweep-*.whl")
    site = tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(site),
                    str(wheel)], check=True, capture_output=True, timeout=300)
    return site


def _run(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "KUBESWEEP_CHECKOUT"}
    env["PYTHONPATH"] = str(site)
    env["KUBESWEEP_CACHE"] = str(cwd / "cache")  # whatever happens, nothing of the real cache is touched
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_the_wheel_plans_a_sweep_outside_any_checkout(installed, tmp_path):
    where = _run(installed, tmp_path, "-c", "import kubesweep, kubesweep.k8s.versions as v; "
                                            "print(kubesweep.__file__); print(v.KUBERNETES_VERSION)")
    module, version = where.stdout.split()
    assert Path(module).is_relative_to(installed), where  # the wheel's copy, not the checkout's
    assert version == (ROOT / "src" / "kubesweep" / "versions.yml").read_text().split('kube_version: "')[1].split('"')[0]
    swept = _run(installed, tmp_path, "-m", "kubesweep.cli.app", "sweep", str(ROOT / "examples" / "mnist" / "grid.yaml"),
                 "--dry-run")
    assert swept.returncode == 0, swept.stderr
    assert len(list((tmp_path / "jobs" / "mnist").glob("batch-*/*.yaml"))) == 12  # under the cwd
    cluster = _run(installed, tmp_path, "-m", "kubesweep.cli.app", "cluster", "up")
    assert cluster.returncode == 2 and cluster.stderr.startswith("this command runs the playbooks of a kubesweep "
                                                                 "checkout"), cluster.stderr
    assert not (tmp_path / "cache").exists()  # refused before building anything
