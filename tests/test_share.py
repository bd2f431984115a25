"""output.share: the trial's pod mounts the node's shared storage at the same path, writes to
<share>/<namespace>/<experiment>/<trial>/ and archives its own stdout there (plan/job.py)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import kubernetes_validate
import pytest
import yaml

from kubesweep.errors import SpecError
from kubesweep.k8s.versions import KUBERNETES_VERSION
from kubesweep.plan import job as manifest
from kubesweep.plan import planner as render

from .conftest import MINIMAL

SHARED = MINIMAL.replace("command: [python3, train.py,", 'command: [python3, train.py, "--out=${output}",') + \
    "namespace: vision\noutput: {share: /share}\n"


def _kubelet_argv(command: list[str], env: dict[str, str]) -> list[str]:
    """The argv the container gets: Kubernetes expands $(VAR) from the env and turns $$ into $."""
    def expand(text: str) -> str:
        return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                      lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), text)
    return [expand(part) for part in command]


def test_share_mounts_the_nodes_directory_at_the_same_path_and_sets_the_trials_directory(grid_file):
    p = render.plan(grid_file(SHARED))
    trial = p.trials[1]
    job = manifest.build_job(p.experiment, trial)
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    where = f"/share/vision/demo/{trial.name}"
    assert pod["volumes"][0] == {"name": "output", "hostPath": {"path": "/share", "type": "Directory"}}
    assert container["volumeMounts"][0] == {"name": "output", "mountPath": "/share"}
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    assert env["OUTPUT_DIR"] == env["KUBESWEEP_OUTPUT_DIR"] == where
    # the trial's own command follows the archiving script, its placeholders filled as always
    assert container["command"][:2] == ["sh", "-c"] and container["command"][3] == "kubesweep-archive"
    assert container["command"][4:] == ["python3", "train.py", f"--out={where}", str(trial.params["epochs"]),
                                        trial.params["optimizer"]]
    kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)
    template = manifest.JobTemplate(p.experiment)
    for t in p.trials:
        assert yaml.safe_load(template.render(t)) == manifest.build_job(p.experiment, t)


def test_the_team_directory_is_the_namespace_the_sweep_runs_in(grid_file):
    p = render.plan(grid_file(SHARED.replace("output: {share: /share}", "output: {share: /mnt/team-data/}")),
                    namespace="nlp")
    trial = p.trials[0]
    container = manifest.build_job(p.experiment, trial)["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KUBESWEEP_OUTPUT_DIR"] == f"/mnt/team-data/nlp/demo/{trial.name}"
    assert container["volumeMounts"][0]["mountPath"] == "/mnt/team-data/"


def test_without_share_the_job_is_as_before(grid_file):
    for extra in ("", "output: {hostPath: /share/kubesweep}\n", "output: {pvc: data, mountPath: /data}\n"):
        p = render.plan(grid_file(MINIMAL + extra))
        trial = p.trials[0]
        container = manifest.build_job(p.experiment, trial)["spec"]["template"]["spec"]["containers"][0]
        assert container["command"] == ["python3", "train.py", str(trial.params["epochs"]), trial.params["optimizer"]]
        assert "KUBESWEEP_OUTPUT_DIR" not in {e["name"] for e in container["env"]}


def test_share_changes_the_trial_template(grid_file):
    plain = render.plan(grid_file(MINIMAL + "namespace: vision\n")).experiment
    shared = render.plan(grid_file(SHARED)).experiment
    assert manifest.template_digest(plain) != manifest.template_digest(shared)


@pytest.mark.parametrize("extra, at, message", [
    ("output: {share: share}\n", "8:17", "output.share must be the absolute path where every node mounts the shared "
     "storage (e.g. /share), not / and without '..' (got 'share')"),
    ("output: {share: /share/../etc}\n", "8:17", "output.share must be the absolute path where every node mounts "
     "the shared storage (e.g. /share), not / and without '..' (got '/share/../etc')"),
    ("output: {share: /}\n", "8:17", "output.share must be the absolute path where every node mounts the shared "
     "storage (e.g. /share), not / and without '..' (got '/')"),
    ("output: {share: /share, mountPath: /out}\n", "8:25", "output.mountPath is for hostPath and pvc: the share is "
     "mounted at its own path in the trial, the path every node has it at"),
    ("output: {share: /share, hostPath: /data}\n", "8:9", "output needs exactly one of 'hostPath', 'pvc' or 'share'"),
    ("output: {shares: /share}\n", "8:10", "unknown key 'shares' in output (did you mean 'share'?)"),
    ("output: {share: 7}\n", "8:17", "output.share must be a string (got 7)"),
    ('output: {share: "/share/${trial}"}\n', "8:17", "output.share is the same for every trial, so placeholders are "
     "not substituted there; each trial writes to <share>/<namespace>/<experiment>/<trial> ($OUTPUT_DIR, ${output}) "
     "(got '/share/${trial}')"),
])
def test_bad_share_values_are_refused_at_their_line(grid_file, extra, at, message):
    path = grid_file(MINIMAL + extra)
    with pytest.raises(SpecError) as err:
        render.plan(path)
    assert f"{path}:{at}: {message}" in str(err.value).splitlines(), str(err.value)


# ---------------------------------------------------------------- the archiving script, run here

needs_sh = pytest.mark.skipif(shutil.which("sh") is None or shutil.which("mkfifo") is None, reason="no POSIX sh here")


def _start(grid_file, tmp_path, program: str, path: str | None = None) -> tuple[subprocess.Popen, str]:
    """Start the rendered container command of a trial whose command is ``python3 -c program``,
    as the kubelet would (with its env; ``path`` first on its PATH), and return it and the trial's
    directory on the share."""
    text = SHARED.replace('command: [python3, train.py, "--out=${output}", "${epochs}", "${optimizer}"]',
                          'command: [python3, -c, %s, "${epochs}", "${optimizer}"]' % json.dumps(program))
    p = render.plan(grid_file(text))
    container = manifest.build_job(p.experiment, p.trials[0])["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    share = tmp_path / "share"
    share.mkdir(exist_ok=True)
    env = {k: v.replace("/share/", f"{share}/", 1) for k, v in env.items()}
    argv = _kubelet_argv(container["command"], env)
    argv[4] = sys.executable  # python3 here
    if path is not None:
        env["PATH"] = f"{path}{os.pathsep}{os.environ.get('PATH', '')}"
    proc = subprocess.Popen(argv, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    return proc, env["KUBESWEEP_OUTPUT_DIR"]


@needs_sh
def test_the_archive_holds_what_the_log_shows_and_the_exit_status_is_the_commands(grid_file, tmp_path):
    program = "import sys; print('Test accuracy:', 0.9, sys.argv[1:]); print('oops', file=sys.stderr); sys.exit(7)"
    proc, where = _start(grid_file, tmp_path, program)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 7
    lines = sorted(out.splitlines())
    assert lines == ["Test accuracy: 0.9 ['1', 'adam']", "oops"]
    with open(os.path.join(where, manifest.SHARE_STDOUT), encoding="utf-8") as f:
        assert sorted(f.read().splitlines()) == lines


@needs_sh
def test_a_stopped_trial_gets_the_signal_and_its_last_words_are_archived(grid_file, tmp_path):
    program = ("import signal, sys, time\n"
               "def stop(*_): print('saved checkpoint', flush=True); sys.exit(3)\n"
               "signal.signal(signal.SIGTERM, stop); print('started', flush=True); time.sleep(60)")
    proc, where = _start(grid_file, tmp_path, program)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "started"
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)  # what the kubelet sends the container's first process
    out, _ = proc.communicate(timeout=30)
    assert time.monotonic() - started < 10
    assert (proc.returncode, out.strip()) == (3, "saved checkpoint")
    with open(os.path.join(where, manifest.SHARE_STDOUT), encoding="utf-8") as f:
        assert f.read().splitlines() == ["started", "saved checkpoint"]


@needs_sh
def test_a_signal_before_the_command_has_started_stops_the_trial_there(grid_file, tmp_path):
    # A pod deleted while its shell is still making the trial's directory: the trial stops there,
    # with the signal's status, and its command is never started (the shell used to die alone,
    # or, once started, the command could miss a signal sent to it before its exec).
    shims = tmp_path / "bin"
    shims.mkdir()
    ready = tmp_path / "mkdir-started"
    (shims / "mkdir").write_text(f'#!/bin/sh\n: > {ready}\nsleep 1\nexec {shutil.which("mkdir")} "$@"\n')
    (shims / "mkdir").chmod(0o755)
    proc, where = _start(grid_file, tmp_path, "print('started', flush=True)", path=str(shims))
    deadline = time.monotonic() + 10
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    # 128 + 15 is the shell's own exit status; a shell killed by the signal shows as -15 here.
    assert proc.returncode == 128 + signal.SIGTERM
    assert "started" not in out
    assert os.path.isdir(where) and not os.path.exists(os.path.join(where, manifest.SHARE_STDOUT))


@needs_sh
def test_a_trial_directory_that_cannot_be_made_fails_the_trial_with_the_reason(grid_file, tmp_path):
    (tmp_path / "share").mkdir()
    (tmp_path / "share" / "vision").write_text("a file where the team's directory should be")
    proc, _ = _start(grid_file, tmp_path, "print('never')")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 1 and "mkdir" in out and "never" not in out
