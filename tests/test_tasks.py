"""The user's commands, run the way a user runs them: `invoke ...` in the repository root."""

import subprocess
import sys

from .conftest import ROOT


def invoke(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_sweep_dry_run_prints_the_plan_and_writes_jobs(tmp_path):
    r = invoke("sweep", "--grid", "examples/mnist/grid.yaml", "--dry-run", "--jobs-dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "12 in 3 batches" in r.stdout and "at once" in r.stdout and "cpu 2," in r.stdout
    assert len(list((tmp_path / "mnist").glob("batch-*/*.yaml"))) == 12


def test_render_task_and_errors_without_traceback(tmp_path, grid_file):
    r = invoke("render", "--grid", "examples/mnist/wandb.yaml", "--jobs-dir", str(tmp_path))
    assert r.returncode == 2
    assert "pass --image" in r.stderr and "Traceback" not in r.stderr
    assert not any(tmp_path.iterdir())
    r = invoke("render", "--grid", "examples/mnist/wandb.yaml", "--image", "localhost:5000/x/y:1", "--jobs-dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "rendered 8 trials in 3 batches" in r.stdout


def test_sweep_without_a_cluster_says_what_is_missing(tmp_path):
    r = invoke("sweep", "--grid", "examples/mnist/katib.yaml", "--jobs-dir", str(tmp_path),
               "--kubeconfig", str(tmp_path / "missing.conf"))
    assert r.returncode == 2 and "invoke cluster" in r.stderr and "Traceback" not in r.stderr


def test_invoke_test_fails_when_no_tests_are_collected(tmp_path):
    from kubesweep.cli import run_pytest

    (tmp_path / "empty").mkdir()
    assert run_pytest([sys.executable, "-m", "pytest", "-q", str(tmp_path / "empty")], cwd=tmp_path) == 1
