"""The `kubesweep` command: kubectl's global flags, exit codes scripts rely on, help for each argument."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner

from kubesweep.cli.app import main
from kubesweep.sweep import Outcome

from .fakeapi import serve

ROOT = Path(__file__).resolve().parents[1]
KUBESWEEP = Path(sys.executable).parent / "kubesweep"
MNIST = ROOT / "examples" / "mnist" / "grid.yaml"


def kubesweep(*args: str, cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(KUBESWEEP), *args], cwd=cwd, capture_output=True, text=True, timeout=120, **kwargs)


def test_the_console_script_is_installed_and_each_subcommand_explains_its_arguments():
    runner = CliRunner()
    top = runner.invoke(main, ["--help"])
    assert top.exit_code == 0
    for flag in ("--kubeconfig", "--context", "-n, --namespace", "--project-dir"):
        assert flag in top.output
    commands = {"sweep": ["--dry-run", "-e, --experiment", "--image", "--trial-limit", "--apply", "--refill",
                          "--retry-failed"],
                "render": ["-e, --experiment", "--validate"], "results": ["--rows"], "status": ["-e, --experiment"],
                "logs": ["--tail"], "cancel": ["-e, --experiment"], "clean": ["--outputs"], "image": ["FILE"],
                "cluster": ["up", "down"]}
    for name, flags in commands.items():
        shown = runner.invoke(main, [name, "--help"])
        assert shown.exit_code == 0, shown.output
        for flag in flags:
            assert flag in shown.output, (name, flag, shown.output)
    assert subprocess.run([str(KUBESWEEP), "--version"], capture_output=True, text=True).stdout.startswith("kubesweep")


def test_a_dry_run_from_any_directory_writes_under_the_project_dir(tmp_path):
    """Installed, the command needs no checkout: jobs/ goes where the user says (or the cwd)."""
    elsewhere = tmp_path / "work"
    elsewhere.mkdir()
    r = kubesweep("--project-dir", str(tmp_path / "proj"), "-n", "team-a", "sweep", str(MNIST), "--dry-run",
                  "-e", "renamed", cwd=elsewhere)
    assert r.returncode == 0, r.stderr
    files = sorted((tmp_path / "proj" / "jobs" / "renamed").glob("batch-*/*.yaml"))
    assert len(files) == 12 and not list(elsewhere.iterdir())
    assert "namespace: team-a" in files[0].read_text()
    cwd_run = kubesweep("render", str(MNIST), cwd=elsewhere)
    assert cwd_run.returncode == 0 and len(list((elsewhere / "jobs" / "mnist").glob("batch-*/*.yaml"))) == 12


def test_bad_input_exits_2_with_positions_and_writes_nothing(tmp_path):
    bad = tmp_path / "grid.yaml"
    bad.write_text("name: bad\nimage: x:1\ncommand: [train]\nparameters: {lr: []}\nobjective: {metric: acc}\n")
    r = kubesweep("sweep", str(bad), "--dry-run", cwd=tmp_path)
    assert r.returncode == 2 and f"{bad}:4:" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "jobs").exists()
    typed = kubesweep("sweep", str(MNIST), "--trial-limit", "many", cwd=tmp_path)
    assert typed.returncode == 2 and "'many' is not a valid integer" in typed.stderr, typed.stderr
    assert kubesweep("cancel", cwd=tmp_path).returncode == 2  # -e is required


def test_a_closed_pipe_ends_the_command_quietly_with_141(tmp_path):
    read_end, write_end = os.pipe()
    os.close(read_end)
    proc = subprocess.Popen([str(KUBESWEEP), "sweep", str(MNIST), "--dry-run"], cwd=tmp_path, stdout=write_end,
                            stderr=subprocess.PIPE)
    os.close(write_end)
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert "Traceback" not in err and "Exception ignored" not in err, err


def _kubeconfig(path: Path, name: str, server: str, *, current: bool) -> Path:
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", **({"current-context": name} if current else {}),
        "clusters": [{"name": name, "cluster": {"server": server}}],
        "users": [{"name": name, "user": {"token": name}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}]}))
    return path


def _empty(method: str, path: str, body) -> tuple[int, dict]:
    return 200, {"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": []}


def test_a_merged_kubeconfig_and_a_context_pick_the_cluster_and_n_the_namespace(tmp_path):
    """KUBECONFIG=a:b is merged as kubectl merges it: the first file's current context by default,
    --context picks another; -n narrows status to one namespace (a Role's reach)."""
    with serve(_empty, tmp_path / "unused-a") as a, serve(_empty, tmp_path / "unused-b") as b:
        first = _kubeconfig(tmp_path / "a.conf", "prod", f"http://127.0.0.1:{a.port}", current=True)
        second = _kubeconfig(tmp_path / "b.conf", "lab", f"http://127.0.0.1:{b.port}", current=False)
        env = {"KUBECONFIG": f"{first}{os.pathsep}{second}"}
        runner = CliRunner()
        shown = runner.invoke(main, ["status"], env=env)
        assert shown.exit_code == 0 and "no kubesweep experiments on the cluster" in shown.output, shown.output
        assert a.requests and not b.requests
        narrowed = runner.invoke(main, ["--context", "lab", "-n", "team-a", "status", "-e", "exp"], env=env)
        assert narrowed.exit_code == 0, narrowed.output
        assert {urlsplit(p).path for _, p in b.requests} == {"/apis/batch/v1/namespaces/team-a/jobs",
                                                             "/api/v1/namespaces/team-a/pods"}
        missing = runner.invoke(main, ["--context", "nope", "status"], env=env)
        assert missing.exit_code == 2 and "nope" in missing.output
        given = runner.invoke(main, ["--kubeconfig", str(second), "--context", "lab", "status"], env={"KUBECONFIG": ""})
        assert given.exit_code == 0, given.output


@pytest.mark.parametrize(("stopped", "succeeded", "code"), [
    (None, 3, 0), ("goal", 1, 0), (None, 0, 1), ("max-failed", 2, 1), ("cancelled", 1, 1)])
def test_the_exit_code_says_how_a_sweep_ended(stopped, succeeded, code):
    outcome = Outcome("e", {"succeeded": succeeded, "failed": 1}, stopped, 1.0, None)
    assert outcome.exit_code == code


def test_shell_completion_offers_subcommands_and_their_options(tmp_path):
    def complete(words: str, cword: int) -> list[str]:
        env = {**os.environ, "COMP_WORDS": words, "COMP_CWORD": str(cword), "_KUBESWEEP_COMPLETE": "bash_complete"}
        return kubesweep(cwd=tmp_path, env=env).stdout.split()

    assert complete("kubesweep sw", 1) == ["plain,sweep"]
    assert "plain,--apply" in complete("kubesweep sweep grid.yaml --ap", 3)
    assert {"plain,direct", "plain,ansible"} <= set(complete("kubesweep sweep grid.yaml --apply ", 4))


def test_cluster_commands_outside_a_checkout_say_so_and_exit_2(tmp_path):
    """An installed kubesweep sweeps without a checkout; `cluster up` needs the playbooks and says
    where it looked, before anything is built (a minute is far less than any build takes)."""
    env = {**os.environ, "KUBESWEEP_CHECKOUT": str(tmp_path), "KUBESWEEP_CACHE": str(tmp_path / "cache")}
    r = subprocess.run([str(KUBESWEEP), "cluster", "up"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                       env=env)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.strip() == (f"KUBESWEEP_CHECKOUT={tmp_path} is not a kubesweep checkout "
                                "(no site.yml, playbooks, roles, inventory)")
    assert not (tmp_path / "cache").exists()
