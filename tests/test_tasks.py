"""The user's commands, run the way a user runs them: `invoke ...` in the repository root."""

import os
import subprocess
import sys

import pytest

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
    from kubesweep.cli.develop import run_pytest

    (tmp_path / "empty").mkdir()
    assert run_pytest([sys.executable, "-m", "pytest", "-q", str(tmp_path / "empty")], cwd=tmp_path) == 1


NASTY = """\
name: nasty
image: localhost:5000/demo/trainer:1
command: [python3, train.py, "${args}"]
objective: {metric: acc}
parameters:
  x: ["[/]", "[bold red]b", "\\e[2J\\e[31mred", "$(OUTPUT_DIR)", "a$$b"]
"""


def test_dry_run_shows_markup_and_escapes_in_values_literally(tmp_path):
    grid = tmp_path / "nasty.yaml"
    grid.write_text(NASTY)
    r = invoke("sweep", "--grid", str(grid), "--dry-run", "--jobs-dir", str(tmp_path / "jobs"))
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "\x1b" not in r.stdout
    assert "[/]" in r.stdout and "[bold red]b" in r.stdout and "\\x1b[2J\\x1b[31mred" in r.stdout


@pytest.mark.parametrize("command", [["sweep", "--dry-run"], ["render"]])  # rich's output, and plain print()
def test_output_into_a_closed_pipe_ends_quietly(tmp_path, command):
    cmd = [sys.executable, "-m", "invoke", command[0], "--grid", "examples/mnist/grid.yaml", *command[1:],
           "--jobs-dir", str(tmp_path)]
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written, as after `| head -1` on a slow plan
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=write_end, stderr=subprocess.PIPE)
    os.close(write_end)
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141  # 128 + SIGPIPE, as a shell reports `yes | head`
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err, err
    assert len(list((tmp_path / "mnist").glob("batch-*/*.yaml"))) == 12  # written before the plan was shown
