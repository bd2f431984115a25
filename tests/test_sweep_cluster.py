"""`invoke sweep` on the real local cluster: end to end, resume after kill -9, failure causes,
GPU trials on kwok GPU nodes, and the kubernetes.core apply path (marker: cluster)."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path
import textwrap
import time

import pytest
import yaml

from kubesweep.local import fake_nodes
from kubesweep.local import image
from kubesweep.run import journal
from kubesweep.k8s import client as kube
from kubesweep.plan import job as manifest
from kubesweep.run import placement
from kubesweep.plan import planner as render
from kubesweep.run import runner
from kubesweep.k8s.versions import pins

from .conftest import EXAMPLES, ROOT, ProgressSeen

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def trainer(local_cluster):
    return image.ensure(EXAMPLES, "kubesweep/mnist", build_args={"BASE": "kubesweep/python-base:bookworm"}).reference


def invoke(*args, timeout=900):
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def sweep_args(grid, tmp_path, kubeconfig, *extra):
    return ("sweep", "--grid", str(grid), "--jobs-dir", str(tmp_path / "jobs"), "--results-dir",
            str(tmp_path / "results"), "--kubeconfig", str(kubeconfig), *extra)


@contextlib.contextmanager
def _reaped(proc):
    """However the block ends, a sweep process still alive after it, stopped (SIGSTOP) or not, is
    woken and killed: no test leaves one behind."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()


def status_rows(text):
    """`invoke status` tables as {first cell: the other cells}."""
    return {cells[0]: cells[1:] for line in text.splitlines()
            if len(cells := [c.strip() for c in line.strip("│ ").split("│")]) >= 3}


def jobs_of(api, experiment):
    return api["batch"].list_namespaced_job("default", label_selector=f"{manifest.L_EXPERIMENT}={experiment}").items


def test_mnist_example_end_to_end(tmp_path, local_cluster, api):
    started = time.monotonic()
    r = invoke(*sweep_args(EXAMPLES / "grid.yaml", tmp_path, local_cluster["kubeconfig"], "--experiment", "mnist-e2e"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "best trial: mnist-e2e-" in r.stdout and "plot:" in r.stdout
    best = json.loads((tmp_path / "results" / "mnist-e2e" / "best.json").read_text())
    assert best["succeeded"] >= 6 and best["best"]["value"] > 0.85
    assert (tmp_path / "results" / "mnist-e2e" / "metric_vs_params.png").stat().st_size > 5000
    rows = (tmp_path / "results" / "mnist-e2e" / "trials.csv").read_text().splitlines()
    assert len(rows) == 1 + 12
    print(f"\nmnist example: 12 trials end to end in {time.monotonic() - started:.0f}s")
    # a rerun resumes: nothing is created again
    uids = {j.metadata.name: j.metadata.uid for j in jobs_of(api, "mnist-e2e")}
    again = invoke(*sweep_args(EXAMPLES / "grid.yaml", tmp_path, local_cluster["kubeconfig"], "--experiment", "mnist-e2e"))
    assert again.returncode == 0, again.stderr[-2000:]
    assert {j.metadata.name: j.metadata.uid for j in jobs_of(api, "mnist-e2e")} == uids
    shown = invoke("results", "--grid", str(EXAMPLES / "grid.yaml"), "--experiment", "mnist-e2e", "--results-dir",
                   str(tmp_path / "results"))
    assert shown.returncode == 0 and best["best"]["trial"] in shown.stdout
    status = invoke("status", "--experiment", "mnist-e2e", "--kubeconfig", str(local_cluster["kubeconfig"]))
    assert status.returncode == 0 and status_rows(status.stdout)["default/mnist-e2e"] == ["0", "0", "12", "0", "0"], status.stdout
    logs = invoke("logs", best["best"]["trial"], "--kubeconfig", str(local_cluster["kubeconfig"]))
    assert "Test accuracy:" in logs.stdout
    clean = invoke("clean", "mnist-e2e", "--kubeconfig", str(local_cluster["kubeconfig"]))
    assert clean.returncode == 0 and "deleted 12 Job(s)" in clean.stdout


def _grid(tmp_path, name, body):
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(body))
    return path


def test_kill_minus_nine_twenty_times_then_resume_exactly_once(tmp_path, local_cluster, api, trainer):
    grid = _grid(tmp_path, "resume", f"""\
    name: resume
    image: {trainer}
    command: [python3, -c, "import time, sys; time.sleep(float(sys.argv[1])); print('score=' + sys.argv[2])", "${{sleep}}", "${{i}}"]
    parameters:
      sleep: [4, 6, 8]
      i: {{min: 1, max: 8}}
    batchSize: 3
    objective: {{metric: score}}
    resources: {{cpu: 100m, memory: 64Mi}}
    """)
    argv = [sys.executable, "-m", "invoke", *sweep_args(grid, tmp_path, local_cluster["kubeconfig"])]
    rng = random.Random(11)
    first_uid: dict[str, str] = {}
    # Ctrl-C first: the sweep says what it leaves and exits 130; the Jobs it made stay, untouched
    # (SIGINT is set back to its default: a shell running this in the background ignores it)
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not jobs_of(api, "resume") and time.monotonic() < deadline:
        time.sleep(0.2)
    before = {j.metadata.name: j.metadata.uid for j in jobs_of(api, "resume")}
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert err.startswith("resume: interrupted. ") and "stay on the cluster and go on" in err, err[-2000:]
    assert before and all({j.metadata.name: j.metadata.uid for j in jobs_of(api, "resume")}.get(n) == uid
                          for n, uid in before.items()), "Ctrl-C deleted or replaced a Job"
    first_uid.update(before)
    kills = 0
    while kills < 20:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.5, 3.0))
        if proc.poll() is not None:
            break  # finished before the kill
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
        for j in jobs_of(api, "resume"):
            assert first_uid.setdefault(j.metadata.name, j.metadata.uid) == j.metadata.uid, "a Job was created twice"
    assert kills == 20, f"the sweep finished after {kills} kill -9s"
    final = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stdout[-2000:] + final.stderr[-2000:]
    jobs = jobs_of(api, "resume")
    assert len(jobs) == 24 and len({j.metadata.name for j in jobs}) == 24
    for j in jobs:
        assert first_uid.get(j.metadata.name, j.metadata.uid) == j.metadata.uid
    done = journal.load(tmp_path / "results" / "resume")
    assert len(done) == 24 and all(r["state"] == "succeeded" for r in done.values())
    assert {r["params"]["i"]: r["metrics"]["score"] for r in done.values()} == {i: float(i) for i in range(1, 9)}
    print(f"\nresume: a Ctrl-C and {kills} kill -9s, 24 trials, 24 Jobs, 24 results")
    assert kills >= 20
    invoke("clean", "resume", "--kubeconfig", str(local_cluster["kubeconfig"]))


def test_a_running_trial_s_metric_so_far_is_read_from_its_log(tmp_path, local_cluster, trainer, monkeypatch):
    """What the live view shows beside a running trial: its metric as last printed, read from
    the tail of its real log while it runs; the journal keeps only the value it finished with."""
    monkeypatch.setattr(runner, "PROGRESS_EVERY_S", 1.0)
    grid = _grid(tmp_path, "progress", f"""\
    name: progress
    image: {trainer}
    command: [python3, -u, -c, "import time; print('score=0.25'); time.sleep(15); print('score=0.75')", "${{i}}"]
    parameters: {{i: [1]}}
    objective: {{metric: score}}
    resources: {{cpu: 100m, memory: 64Mi}}
    """)
    plan = render.plan(grid)
    render.write(plan, tmp_path / "jobs")
    name = plan.trials[0].name
    shown = ProgressSeen([name])
    sweep = runner.Sweep(plan, tmp_path / "jobs", tmp_path / "results", kubeconfig=local_cluster["kubeconfig"],
                         progress=shown)
    sweep.run()
    assert (sweep.records[name].state, sweep.records[name].metrics) == ("succeeded", {"score": 0.75})
    assert (name, 0.25) in shown.values, shown.values  # seen while the trial still ran
    assert [r["metrics"] for r in journal.load(tmp_path / "results" / "progress").values()] == [{"score": 0.75}]
    invoke("clean", "progress", "--kubeconfig", str(local_cluster["kubeconfig"]))


def test_failure_causes_are_named(tmp_path, local_cluster, api, trainer):
    grid = _grid(tmp_path, "failures", f"""\
    name: failures
    image: {trainer}
    command: [python3, -c, "${{script}}"]
    parameters:
      script:
        - "print('acc=0.5')"
        - "print('about to fail'); raise SystemExit(1)"
        - "x = bytearray(512 * 1024 * 1024); print(len(x))"
        - "print('no metric here')"
    batchSize: 4
    objective: {{metric: acc}}
    resources: {{cpu: 100m, memory: 64Mi}}
    """)
    r = invoke(*sweep_args(grid, tmp_path, local_cluster["kubeconfig"]))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    by_script = {rec["params"]["script"]: rec for rec in journal.load(tmp_path / "results" / "failures").values()}
    assert by_script["print('acc=0.5')"]["state"] == "succeeded"
    exit1 = by_script["print('about to fail'); raise SystemExit(1)"]
    assert exit1["state"] == "failed" and exit1["reason"] == "Error" and "exit code 1" in exit1["message"]
    assert "about to fail" in exit1["message"]  # the last log lines come along
    oom = by_script["x = bytearray(512 * 1024 * 1024); print(len(x))"]
    assert oom["state"] == "failed" and oom["reason"] == "OOMKilled"
    missing = by_script["print('no metric here')"]
    assert missing["state"] == "failed" and missing["reason"] == "MetricMissing"

    bad = _grid(tmp_path, "badimage", """\
    name: badimage
    image: localhost:5000/kubesweep/does-not-exist:1
    command: [python3, "${x}"]
    parameters: {x: [a]}
    objective: {metric: acc}
    resources: {cpu: 100m, memory: 64Mi}
    """)
    started = time.monotonic()
    r = invoke(*sweep_args(bad, tmp_path, local_cluster["kubeconfig"]))
    took = time.monotonic() - started
    rec = next(iter(journal.load(tmp_path / "results" / "badimage").values()))
    assert rec["state"] == "failed" and rec["reason"] in ("ErrImagePull", "ImagePullBackOff"), rec
    assert took < 90, f"a missing image took {took:.0f}s to be reported"
    unplaceable = _grid(tmp_path, "unplaceable", """\
    name: unplaceable
    image: localhost:5000/kubesweep/does-not-matter:1
    command: [python3, "${x}"]
    parameters: {x: [a]}
    objective: {metric: acc}
    resources: {cpu: 100m, memory: 4096Gi}
    unschedulableSeconds: 5
    """)
    r = invoke(*sweep_args(unplaceable, tmp_path, local_cluster["kubeconfig"]))
    rec = next(iter(journal.load(tmp_path / "results" / "unplaceable").values()))
    assert rec["state"] == "failed" and rec["reason"] == "Unschedulable", rec
    assert "Insufficient memory" in rec["message"]  # the scheduler's own words
    for exp in ("failures", "badimage", "unplaceable"):
        invoke("clean", exp, "--kubeconfig", str(local_cluster["kubeconfig"]))


def test_gpu_trials_land_on_gpu_nodes_and_the_ansible_path_applies_batches(tmp_path, local_cluster, api):
    grid = _grid(tmp_path, "gpu", f"""\
    name: gpu
    image: localhost:5000/kubesweep/fake:1
    command: [train, "${{args}}"]
    parameters:
      lr: [0.1, 0.01, 0.001]
      layers: [2, 4]
    batchSize: 6
    objective: {{metric: acc}}
    resources: {{cpu: "1", memory: 1Gi, nvidia.com/gpu: 4}}
    nodeSelector: {{nvidia.com/gpu.present: "true"}}
    tolerations: [{{key: {fake_nodes.ANNOTATION}, operator: Exists, effect: NoSchedule}}]
    """)
    # before the fake GPU nodes join, no node of the real cluster can take these trials, and the
    # sweep's check says why for each (the GPU worker has the label but no device: no GPU here)
    c = kube.clients(local_cluster["kubeconfig"])
    nodes = [n.metadata.name for n in api["core"].list_node().items]
    warned = placement.check(c, render.plan(grid))
    assert warned and warned.startswith("warning: no node of the cluster can take a trial of gpu (cpu 1, memory 1Gi, "
                                        "nvidia.com/gpu 4; nodeSelector"), warned
    assert all(f"{n}: " in warned for n in nodes[:placement.SHOWN]), (nodes, warned)
    fake_nodes.ensure(local_cluster["kubeconfig"], 4, 8, version=pins()["kwok_version"])
    try:
        assert placement.check(c, render.plan(grid)) is None
        # the `kubesweep` command, from a directory outside the checkout (jobs/ and results/ under
        # --project-dir); no trial can succeed (below), which it says with exit code 1
        r = subprocess.run([str(Path(sys.executable).parent / "kubesweep"), "--kubeconfig", str(local_cluster["kubeconfig"]),
                            "--project-dir", str(tmp_path), "sweep", str(grid), "--apply", "ansible", "--refill", "batch"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=900)
        assert r.returncode == 1, r.stdout[-2000:] + r.stderr[-2000:]
        assert "0 succeeded, 6 failed" in r.stdout and "warning: no node" not in r.stderr, r.stdout[-2000:] + r.stderr[-2000:]
        assert len(list((tmp_path / "jobs" / "gpu").glob("batch-*/*.yaml"))) == 6
        done = journal.load(tmp_path / "results" / "gpu")
        assert len(done) == 6
        assert all(rec["node"] and rec["node"].startswith(fake_nodes.PREFIX) for rec in done.values())
        # kwok's pods print nothing, so the metric is honestly missing rather than invented
        assert all(rec["reason"] == "MetricMissing" for rec in done.values())
        invoke("clean", "gpu", "--kubeconfig", str(local_cluster["kubeconfig"]))
    finally:
        fake_nodes.ensure(local_cluster["kubeconfig"], 0, 8, version=pins()["kwok_version"])


def _wait(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"{what} did not happen in {timeout}s")


def test_tpe_asks_each_batch_from_the_results_and_resumes_the_same_study_after_kill(tmp_path, local_cluster, api,
                                                                                   trainer):
    from kubesweep.errors import Mark
    from kubesweep.plan import adaptive
    from kubesweep.spec.formats import load_experiment

    grid = _grid(tmp_path, "tpe", f"""\
    name: tpe
    image: {trainer}
    command: [python3, -c, "import sys; x = float(sys.argv[1]); print('loss=%f' % ((x - 0.3) ** 2))", "${{x}}"]
    parameters:
      x: {{min: 0.0, max: 1.0}}
    search: {{algorithm: tpe, trials: 6, seed: 3}}
    batchSize: 2
    objective: {{metric: loss, direction: minimize}}
    resources: {{cpu: 100m, memory: 64Mi}}
    """)
    argv = [sys.executable, "-m", "invoke", *sweep_args(grid, tmp_path, local_cluster["kubeconfig"])]
    plan_json = tmp_path / "jobs" / "tpe" / "plan.json"
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:  # kill it once the second batch has been asked
        _wait(lambda: plan_json.exists() and json.loads(plan_json.read_text())["batches"] >= 2, 300, "a second batch")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    uids = {j.metadata.name: j.metadata.uid for j in jobs_of(api, "tpe")}
    final = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stdout[-2000:] + final.stderr[-2000:]
    plan = json.loads(plan_json.read_text())
    names = [t["name"] for t in plan["trials"]]
    assert plan["batches"] == 3 and len(names) == 6 == len(set(names))
    jobs = jobs_of(api, "tpe")
    assert sorted(j.metadata.name for j in jobs) == sorted(names)
    assert all(uids.get(j.metadata.name, j.metadata.uid) == j.metadata.uid for j in jobs), "a Job was created twice"
    done = journal.load(tmp_path / "results" / "tpe")
    assert len(done) == 6 and all(r["state"] == "succeeded" for r in done.values())
    for r in done.values():
        assert r["metrics"]["loss"] == pytest.approx((r["params"]["x"] - 0.3) ** 2, abs=1e-5)
    # the last batch is exactly what the study asks given the first four results
    exp = load_experiment(grid).experiment
    asked = adaptive.asked(exp, tmp_path / "jobs", "plan.json")
    again = adaptive.next_batch(exp, asked[:4], {n: r for n, r in done.items() if n in names[:4]}, Mark("g", 1, 1))
    assert [t.name for t in again] == names[4:]
    invoke("clean", "tpe", "--kubeconfig", str(local_cluster["kubeconfig"]))


def test_a_sweep_reordered_by_longest_first_resumes_without_a_second_job(tmp_path, local_cluster, api, trainer):
    """longestFirst added to an experiment that has already run: the plan is cut into batches
    anew, but trials keep their names, so the resume re-attaches what exists and creates only
    the rest, longest first."""
    body = f"""\
    name: reorder
    image: {trainer}
    command: [python3, -c, "import time, sys; time.sleep(float(sys.argv[1])); print('score=' + sys.argv[1])", "${{sleep}}"]
    parameters:
      sleep: [1, 2, 3, 4, 5, 6]
    batchSize: 2
    objective: {{metric: score}}
    resources: {{cpu: 100m, memory: 64Mi}}
    """
    grid = _grid(tmp_path, "reorder", body)
    argv = [sys.executable, "-m", "invoke", *sweep_args(grid, tmp_path, local_cluster["kubeconfig"])]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:  # stop it while the first batch (sleep 1 and 2, plan order) is on the cluster
        _wait(lambda: len(jobs_of(api, "reorder")) >= 2, 120, "the first batch's Jobs")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    before = {j.metadata.name: j.metadata.uid for j in jobs_of(api, "reorder")}
    first_params = {json.loads(j.metadata.annotations[manifest.A_PARAMS])["sleep"] for j in jobs_of(api, "reorder")}
    assert first_params <= {1, 2, 3, 4}, first_params

    _grid(tmp_path, "reorder", textwrap.dedent(body) + "search: {longestFirst: [sleep]}\n")
    final = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stdout[-2000:] + final.stderr[-2000:]
    plan = json.loads((tmp_path / "jobs" / "reorder" / "plan.json").read_text())
    assert [t["params"]["sleep"] for t in plan["trials"]] == [6, 5, 4, 3, 2, 1]
    jobs = jobs_of(api, "reorder")
    assert len(jobs) == 6 == len({j.metadata.name for j in jobs})
    assert all(before.get(j.metadata.name, j.metadata.uid) == j.metadata.uid for j in jobs), "a Job was created twice"
    done = journal.load(tmp_path / "results" / "reorder")
    assert {r["params"]["sleep"]: r["metrics"]["score"] for r in done.values() if r["state"] == "succeeded"} == \
        {s: float(s) for s in range(1, 7)}
    # what had not been created yet started longest first
    # (creation times have 1 s resolution: a longer trial was never created after a shorter one)
    created = [(json.loads(j.metadata.annotations[manifest.A_PARAMS])["sleep"], j.metadata.creation_timestamp)
               for j in jobs if j.metadata.name not in before]
    assert created and all(ta <= tb for sa, ta in created for sb, tb in created if sa > sb), sorted(created)

    # the same experiment with another command is refused: its old results are not this grid's
    _grid(tmp_path, "reorder", textwrap.dedent(body).replace("print('score='", "print('loss='")
          .replace("metric: score", "metric: loss"))
    changed = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert changed.returncode == 2, changed.stdout[-2000:] + changed.stderr[-2000:]
    assert f"reorder: 6 finished trials (6 succeeded) in {tmp_path / 'results' / 'reorder'} ran with another trial template" \
        in changed.stderr, changed.stderr
    assert "spec.containers[0].command[2]" in changed.stderr, changed.stderr
    assert {j.metadata.name: j.metadata.uid for j in jobs_of(api, "reorder")} == {j.metadata.name: j.metadata.uid for j in jobs}
    assert journal.load(tmp_path / "results" / "reorder") == done
    invoke("clean", "reorder", "--kubeconfig", str(local_cluster["kubeconfig"]))


def _pods(api, experiment):
    return api["core"].list_namespaced_pod("default", label_selector=f"{manifest.L_EXPERIMENT}={experiment}").items


def test_cancel_from_another_shell_stops_the_running_sweep(tmp_path, local_cluster, api, trainer):
    grid = _grid(tmp_path, "cancel", f"""\
    name: cancel
    image: {trainer}
    command: [python3, -c, "import time, sys; time.sleep(300); print('score=' + sys.argv[1])", "${{i}}"]
    parameters:
      i: {{min: 1, max: 6}}
    batchSize: 2
    objective: {{metric: score}}
    resources: {{cpu: 100m, memory: 64Mi}}
    """)
    argv = [sys.executable, "-m", "invoke", *sweep_args(grid, tmp_path, local_cluster["kubeconfig"])]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with _reaped(proc):
        _wait(lambda: sum(p.status.phase == "Running" for p in _pods(api, "cancel")) == 2, 180, "2 trials running")
        names = {j.metadata.name for j in jobs_of(api, "cancel")}
        shown = invoke("status", "--experiment", "cancel", "--namespace", "default", "--kubeconfig",
                       str(local_cluster["kubeconfig"]))
        assert shown.returncode == 0, shown.stdout + shown.stderr
        rows = status_rows(shown.stdout)
        assert rows["default/cancel"] == ["0", "2", "0", "0", "0"], shown.stdout  # pending, running, succeeded, failed, pruned
        for pod in _pods(api, "cancel"):  # each trial in flight, on the node it runs on
            assert rows[pod.metadata.labels[manifest.L_TRIAL]][:2] == ["running", pod.spec.node_name], shown.stdout
        cancelled = invoke("cancel", "cancel", "--kubeconfig", str(local_cluster["kubeconfig"]))
        assert cancelled.returncode == 0 and "2 unfinished Job(s)" in cancelled.stdout, cancelled.stdout + cancelled.stderr
        out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, out[-3000:]  # cancelled: the sweep did not finish
    assert "0 succeeded, 0 failed, 2 cancelled" in out and "(stopped: cancelled)" in out, out[-2000:]
    done = journal.load(tmp_path / "results" / "cancel")
    assert set(done) == names and all(r["state"] == "cancelled" and r["reason"] == "Cancelled" for r in done.values())
    assert {j.metadata.name for j in jobs_of(api, "cancel")} <= names, "a Job was created after the cancel"
    invoke("clean", "cancel", "--kubeconfig", str(local_cluster["kubeconfig"]))


def test_trials_on_a_lost_node_are_submitted_again_on_another(tmp_path, local_cluster, api, trainer):
    lost = "ks-gpu-1"  # its GPU taint is tolerated below, so trials spread over it and ks-worker-1
    grid = _grid(tmp_path, "nodeloss", f"""\
    name: nodeloss
    image: {trainer}
    command: [python3, -c, "import time, sys; time.sleep(25); print('score=' + sys.argv[1])", "${{i}}"]
    parameters:
      i: {{min: 1, max: 4}}
    batchSize: 4
    maxFailedTrials: 4
    nodeLossGraceSeconds: 5
    objective: {{metric: score}}
    resources: {{cpu: 100m, memory: 64Mi}}
    tolerations: [{{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}}]
    """)
    argv = [sys.executable, "-m", "invoke", *sweep_args(grid, tmp_path, local_cluster["kubeconfig"])]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        with _reaped(proc):
            on_lost = _wait(lambda: [p.metadata.labels[manifest.L_TRIAL] for p in _pods(api, "nodeloss")
                                     if p.spec.node_name == lost and p.status.phase == "Running"], 120, f"a trial running on {lost}")
            stopped = time.monotonic()
            subprocess.run(["docker", "stop", lost], check=True, capture_output=True)
            out, _ = proc.communicate(timeout=600)
            took = time.monotonic() - stopped
    finally:
        subprocess.run(["docker", "start", lost], check=True, capture_output=True)
    assert proc.returncode == 0, out[-3000:]
    done = journal.load(tmp_path / "results" / "nodeloss")
    assert len(done) == 4 and all(r["state"] == "succeeded" for r in done.values()), done
    for name in on_lost:
        assert done[name]["attempt"] >= 2 and done[name]["node"] != lost, done[name]
    assert {r["params"]["i"]: r["metrics"]["score"] for r in done.values()} == {i: float(i) for i in range(1, 5)}
    assert len(jobs_of(api, "nodeloss")) == 4
    print(f"\nnode loss: {len(on_lost)} trial(s) on {lost} submitted again and finished {took:.0f}s after the node stopped")
    invoke("clean", "nodeloss", "--kubeconfig", str(local_cluster["kubeconfig"]))
    _wait(lambda: any(c.type == "Ready" and c.status == "True" for c in api["core"].read_node(lost).status.conditions),
          180, f"{lost} Ready again")


def _short_sweep(tmp_path, local_cluster, trainer, name, seconds, values, batch, extra=""):
    """Start `invoke sweep` on trials that sleep ``seconds`` (a Python expression of i) and print
    score=i; return the running process."""
    grid = _grid(tmp_path, name, f"""\
    name: {name}
    image: {trainer}
    command: [python3, -c, "import time, sys; i = int(sys.argv[1]); time.sleep({seconds}); print('score=%d' % i)", "${{i}}"]
    parameters:
      i: {values}
    batchSize: {batch}
    objective: {{metric: score}}
    resources: {{cpu: 100m, memory: 64Mi}}
    {extra}""")
    argv = [sys.executable, "-m", "invoke", *sweep_args(grid, tmp_path, local_cluster["kubeconfig"])]
    return subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


CONTROL_PLANE = ["docker", "exec", "ks-control-plane"]


def _stop_api_server() -> set[str]:
    """Stop kube-apiserver's container; the kubelet starts a new one. Returns the old one's id."""
    old = subprocess.run([*CONTROL_PLANE, "crictl", "ps", "-q", "--name", "kube-apiserver"], capture_output=True,
                         text=True, check=True).stdout.split()
    subprocess.run([*CONTROL_PLANE, "crictl", "stop", *old], check=True, capture_output=True)
    return set(old)


def _answers(api) -> bool:
    try:
        api["core"].get_api_resources(_request_timeout=5)
        return True
    except Exception:  # noqa: BLE001 - down or starting: not yet
        return False


def test_a_job_deleted_while_the_api_server_restarted_ends_its_trial(tmp_path, local_cluster, api, trainer):
    """The API server restarts (site.yml changing a control-plane flag does that) while the sweep
    client is stopped, and a trial's Job is deleted before the client is back. Its watches come
    back to a new watch cache, which answers 410 Gone: the client lists again, and the deleted
    Job, which no list shows, must still end its trial, or the sweep waits for it for good."""
    proc = _short_sweep(tmp_path, local_cluster, trainer, "restart", "30 * i ** 3", "[1, 3]", 2)  # 30 s, and 810 s
    started = time.monotonic()
    with _reaped(proc):
        _wait(lambda: sum(p.status.phase == "Running" for p in _pods(api, "restart")) == 2, 180, "2 trials running")
        deleted = next(p.metadata.labels[manifest.L_TRIAL] for p in _pods(api, "restart")
                       if p.metadata.labels[manifest.L_TRIAL].startswith("restart-3-"))
        os.kill(proc.pid, signal.SIGSTOP)
        old = _stop_api_server()
        _wait(lambda: set(subprocess.run([*CONTROL_PLANE, "crictl", "ps", "-q", "--name", "kube-apiserver"],
                                         capture_output=True, text=True).stdout.split()) - old, 120, "a new API server container")
        _wait(lambda: _answers(api), 120, "the restarted API server answering")
        back = time.monotonic() - started
        api["batch"].delete_namespaced_job(deleted, "default", propagation_policy="Background")
        _wait(lambda: deleted not in {j.metadata.name for j in jobs_of(api, "restart")}, 60, "the Job gone")
        os.kill(proc.pid, signal.SIGCONT)
        out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out[-3000:]
    done = journal.load(tmp_path / "results" / "restart")
    assert (done[deleted]["state"], done[deleted]["reason"]) == ("cancelled", "Deleted"), done[deleted]
    (other,) = set(done) - {deleted}
    assert done[other]["state"] == "succeeded" and done[other]["metrics"]["score"] == 1.0, done[other]
    print(f"\nAPI server restart: answering again {back:.0f}s after the sweep started; the sweep ended "
          f"{time.monotonic() - started:.0f}s after it started")
    invoke("clean", "restart", "--kubeconfig", str(local_cluster["kubeconfig"]))
    _control_plane_ready(api)


def _control_plane_ready(api):
    """After an API server restart: the controller-manager and scheduler may restart too, having
    lost their leases; the tests after this one need them."""
    for component in ("kube-controller-manager", "kube-scheduler"):
        _wait(lambda: any(c.type == "Ready" and c.status == "True" for c in api["core"].read_namespaced_pod(
            f"{component}-ks-control-plane", "kube-system").status.conditions or []), 180, f"{component} Ready")


def test_a_sweep_goes_on_through_an_api_server_restart(tmp_path, local_cluster, api, trainer):
    """The API server goes down just as a trial ends: the client reads that trial's log and
    creates the next trial's Job while nothing answers. Both are tried again until the
    restarted API server answers; the sweep ends with every trial and its score."""
    proc = _short_sweep(tmp_path, local_cluster, trainer, "outage", "3", "[1, 2]", 1)
    with _reaped(proc):
        _wait(lambda: any(p.status.phase == "Running" for p in _pods(api, "outage")), 180, "the first trial running")
        os.kill(proc.pid, signal.SIGSTOP)  # its watch keeps the trial's end for it, unread
        _wait(lambda: any(p.status.phase == "Succeeded" for p in _pods(api, "outage")), 60, "the first trial succeeded")
        _stop_api_server()
        os.kill(proc.pid, signal.SIGCONT)
        stopped = time.monotonic()
        _wait(lambda: _answers(api), 180, "the restarted API server answering")
        back = time.monotonic() - stopped
        out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out[-3000:]
    done = journal.load(tmp_path / "results" / "outage")
    assert {r["params"]["i"]: (r["state"], r["metrics"].get("score")) for r in done.values()} == {
        1: ("succeeded", 1.0), 2: ("succeeded", 2.0)}, done
    assert len(jobs_of(api, "outage")) == 2
    print(f"\nAPI server down for about {back:.0f}s while the sweep read a log and created a Job; it went on")
    invoke("clean", "outage", "--kubeconfig", str(local_cluster["kubeconfig"]))
    _control_plane_ready(api)


def test_a_log_read_while_the_kubelet_restarts_is_tried_again(tmp_path, local_cluster, api, trainer):
    """A trial succeeds, and its node's kubelet is down when the client reads its log (the API
    server answers 500, connection refused). The read is tried again, the kubelet comes back,
    and the trial is recorded with its metric, not as MetricMissing."""
    node = "ks-worker-1"
    proc = _short_sweep(tmp_path, local_cluster, trainer, "logretry", "3", "[7]", 1,
                        extra=f"nodeSelector: {{kubernetes.io/hostname: {node}}}\n")
    kubelet = ["docker", "exec", node, "systemctl"]
    try:
        with _reaped(proc):
            _wait(lambda: any(p.status.phase == "Running" for p in _pods(api, "logretry")), 180, "the trial running")
            os.kill(proc.pid, signal.SIGSTOP)  # before it sees the trial end
            _wait(lambda: any(p.status.phase == "Succeeded" for p in _pods(api, "logretry")), 60, "the trial succeeded")
            subprocess.run([*kubelet, "stop", "kubelet"], check=True, capture_output=True)
            os.kill(proc.pid, signal.SIGCONT)
            time.sleep(4)  # the client's first reads are refused meanwhile
            subprocess.run([*kubelet, "start", "kubelet"], check=True, capture_output=True)
            out, _ = proc.communicate(timeout=120)
    finally:
        subprocess.run([*kubelet, "start", "kubelet"], capture_output=True)
    assert proc.returncode == 0, out[-3000:]
    (rec,) = journal.load(tmp_path / "results" / "logretry").values()
    assert rec["state"] == "succeeded" and rec["metrics"]["score"] == 7.0, rec
    invoke("clean", "logretry", "--kubeconfig", str(local_cluster["kubeconfig"]))


def _suspended_jobs(grid, tmp_path):
    """Render the grid's first batch with every Job suspended (the API path is under test, not
    pods); return the files."""
    from kubesweep.plan import planner as render

    target = render.write(render.plan(grid), tmp_path / "jobs")
    files = sorted((target / "batch-000").glob("*.yaml"))
    for f in files:
        doc = yaml.safe_load(f.read_text())
        doc["spec"]["suspend"] = True
        f.write_text(yaml.safe_dump(doc))
    return files


def test_create_jobs_tells_created_from_existing_and_names_what_the_api_server_refused(tmp_path, local_cluster):
    from kubernetes.client.exceptions import ApiException

    from kubesweep.k8s import client as kube
    from kubesweep.run import submit

    grid = _grid(tmp_path, "submit-paths", """\
        name: submit-paths
        image: localhost:5000/kubesweep/fake:1
        command: [train, "${i}"]
        parameters: {i: {min: 1, max: 3}}
        objective: {metric: acc}
        """)
    bodies = [(f.stem, yaml.safe_load(f.read_text())) for f in _suspended_jobs(grid, tmp_path)]
    c = kube.clients(local_cluster["kubeconfig"])
    ns = "kubesweep-submit-test"
    doc_ns = [(n, {**b, "metadata": {**b["metadata"], "namespace": ns}}) for n, b in bodies]
    kube.prepare_namespace(c, ns, None)
    try:
        assert submit.create_jobs(c, ns, doc_ns) == {n: True for n, _ in doc_ns}
        assert submit.create_jobs(c, ns, doc_ns) == {n: False for n, _ in doc_ns}  # 409: re-attached, not an error
        listed = kube.request(c, "GET", kube.path("jobs", ns))["items"]
        assert sorted(j["metadata"]["name"] for j in listed) == sorted(n for n, _ in doc_ns)
        good = doc_ns[0][1]
        bad = {**good, "metadata": {**good["metadata"], "name": "Not_A_DNS_Name"}}
        with pytest.raises(submit.SubmitError, match=r"creating Job Not_A_DNS_Name: the API server refused \(422 .*metadata\.name"):
            submit.create_jobs(c, ns, [("Not_A_DNS_Name", bad)])
    finally:
        try:
            c.core.delete_namespace(ns)
        except ApiException:
            pass


def test_kubernetes_core_path_creates_every_chunk_verbatim_and_reports_a_refused_job(tmp_path, local_cluster):
    """playbooks/sweep.yml with the batch in 3 chunks (3 module invocations side by side): every
    Job lands once, a rerun is not an error, a "{{" in a command is not templated by Ansible, and
    a Job the API server refuses fails the apply with the server's reason."""
    from kubernetes.client.exceptions import ApiException

    from kubesweep.k8s import client as kube
    from kubesweep.run import submit_ansible

    grid = _grid(tmp_path, "ansible-chunks", """\
        name: ansible-chunks
        namespace: kubesweep-ansible-test
        image: localhost:5000/kubesweep/fake:1
        command: [train, "${i}", "{{ 6 * 7 }}"]
        parameters: {i: {min: 1, max: 7}}
        batchSize: 7
        objective: {metric: acc}
        """)
    files = _suspended_jobs(grid, tmp_path)
    assert len(files) == 7
    c = kube.clients(local_cluster["kubeconfig"])
    ns = "kubesweep-ansible-test"
    kube.prepare_namespace(c, ns, None)
    try:
        submit_ansible.apply(files, local_cluster["kubeconfig"], n_chunks=3)
        listed = kube.request(c, "GET", kube.path("jobs", ns))["items"]
        assert sorted(j["metadata"]["name"] for j in listed) == sorted(f.stem for f in files)
        assert {j["spec"]["template"]["spec"]["containers"][0]["command"][2] for j in listed} == {"{{ 6 * 7 }}"}
        submit_ansible.apply(files, local_cluster["kubeconfig"], n_chunks=3)  # already there: unchanged
        assert len(kube.request(c, "GET", kube.path("jobs", ns))["items"]) == 7
        bad = tmp_path / "Not_A_DNS_Name.yaml"
        doc = yaml.safe_load(files[0].read_text())
        doc["metadata"]["name"] = "Not_A_DNS_Name"
        bad.write_text(yaml.safe_dump(doc))
        with pytest.raises(submit_ansible.AnsibleApplyError, match=r"(?s)playbooks/sweep.yml failed.*Not_A_DNS_Name"):
            submit_ansible.apply([bad], local_cluster["kubeconfig"])
    finally:
        try:
            c.core.delete_namespace(ns)
        except ApiException:
            pass


def _bench(script, *args):
    run = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run.stdout


def test_the_benchmarks_run_at_toy_size(local_cluster):
    """bench/submit.py and bench/makespan.py give the figures docs/benchmarks.md quotes; run them
    small here so they cannot rot between measurements (sizes, not times, are asserted)."""
    import re

    kc = str(local_cluster["kubeconfig"])
    out = _bench("submit.py", "--jobs", "30", "--rounds", "1", "--per-file-sample", "2", "--kubeconfig", kc)
    rows = dict(re.findall(r"^(direct|k8s-batch|k8s-one-call|kubectl|k8s-per-file)\s+([\d.]+)\s", out, re.M))
    assert set(rows) == {"direct", "k8s-batch", "k8s-one-call", "kubectl", "k8s-per-file"}, out
    assert all(float(v) > 0 for v in rows.values()), out
    assert re.search(r"^direct: [\d.]+x kubectl apply -f dir, [\d.]+x the per-file", out, re.M), out
    assert re.search(r"^direct\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+", out, re.M), out  # rate, s/1000, busy, stolen
    # the control plane's own CPU, read from its processes in the node container: creating Jobs costs the API server
    api_ms = re.search(r"^control-plane CPU per Job created, ms \(median\): direct apiserver ([\d.]+), etcd ([\d.]+)", out, re.M)
    assert api_ms and float(api_ms[1]) > 0, out

    out = _bench("makespan.py", "--trials", "8", "--nodes", "2", "--gpus", "2", "--durations", "2,3",
                 "--policies", "trial", "--kubeconfig", kc)
    row = re.search(r"^trial\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s", out, re.M)
    assert row and int(row[1]) == 8, out  # every trial finished
    assert float(row[2]) >= float(row[3]) > 0, out  # no faster than the ideal bound
    # trial times come from the sweep's records; pods kwok rewrote afterwards are counted
    assert re.search(r"^trial: mean seconds per trial, from API timestamps: .*\((\d+) pods' end rewritten later by kwok", out, re.M), out
    # where the time and the cluster's work went: every slot got a trial, and the API server's own
    # count of writes shows each trial's Job created exactly once among the cluster's writes
    phases = re.search(r"^trial: as the client saw it: start-up ([\d.]+) s, refill mean ([\d.]+) s", out, re.M)
    assert phases and 0 < float(phases[1]) < float(row[2]), out
    writes = re.search(r"^trial: the machine's cores busy ([\d.]+) of (\d+) \(([\d.]+) stolen by the hypervisor\); "
                       r"from the first trial's end to the last start \(\d+ s\) ([\d.]+) \([\d.]+ stolen\), "
                       r"at least 90% of them busy in (\d+)% of its seconds; "
                       r"([\d.]+) API writes per trial: (.*)$", out, re.M)
    assert writes and "1.00 POST jobs" in writes[7].split(", "), out
    assert float(writes[6]) > 1, out  # the controllers', scheduler's and kwok's writes besides the create
    # the cluster and the client ran (busy), and busy plus stolen fit in the machine's cores; the
    # refill phase (4 trials started after the first end) was measured on the same counters
    assert 0 < float(writes[1]) and float(writes[1]) + float(writes[3]) <= int(writes[2]) + 0.05, out
    assert 0 < float(writes[4]) <= int(writes[2]) + 0.05 and 0 <= int(writes[5]) <= 100, out
    procs = re.search(r"^trial: control-plane CPU per trial, ms: apiserver ([\d.]+), etcd [\d.]+, controller-manager ([\d.]+), "
                      r"scheduler ([\d.]+), kwok ([\d.]+)$", out, re.M)
    assert procs and all(float(v) > 0 for v in procs.groups()), out  # each had work to do for every trial
    # the kernel's run-queue delay of the same processes, per timeslice and per CPU second they used
    waited = re.findall(r"(apiserver|etcd|controller-manager|scheduler|kwok) ([\d.]+) ms \(([\d.]+) s per CPU second\)",
                        next((ln for ln in out.splitlines() if ln.startswith("trial: waited for a core, per timeslice: ")), ""))
    assert [w[0] for w in waited] == ["apiserver", "etcd", "controller-manager", "scheduler", "kwok"], out
    assert float(waited[0][1]) > 0, out  # the API server's threads waited at least to be woken
    # and, inside the API server, its goroutines' wait for one of its threads (Go's own scheduler)
    goroutines = re.search(r"the API server's goroutines waited ([\d.]+) ms on average to run$", out, re.M)
    assert goroutines and float(goroutines[1]) > 0, out
