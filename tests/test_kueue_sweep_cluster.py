"""A sweep through Kueue on the real cluster (Kueue installed by the kueue role, which site.yml
runs): the namespace's LocalQueue is found without the sweep file naming it, the Jobs are created
suspended and admitted by Kueue one at a time (its quota holds one trial), the others wait as
queued with Kueue's reason, a trial Kueue evicts part way (its Workload deactivated) waits in the
queue again and then finishes — no failure, no second Job — and a rerun creates nothing."""

from __future__ import annotations

import json
import textwrap
import threading
import time

import pytest

from kubesweep import sweep
from kubesweep.local import image
from kubesweep.plan import job as manifest
from kubesweep.run import kueue
from kubesweep.run.trialstate import RUNNING, SUBMITTED, SUCCEEDED

from .conftest import EXAMPLES

pytestmark = pytest.mark.cluster

NS, CQ, FLAVOR, LQ = "ks-kueue-sweep", "ks-kueue-sweep", "ks-kueue-sweep", "lq"
GROUP, VERSION = "kueue.x-k8s.io", "v1beta2"
# Eight seconds of work, one line a second; q is the metric.
TRAINER = ("import sys, time\n"
           "for e in range(1, 9):\n"
           "    print(f'epoch={e}', flush=True)\n"
           "    time.sleep(1)\n"
           "print(f'acc={float(sys.argv[1]):.2f}', flush=True)\n")


@pytest.fixture
def queue(api, local_cluster):
    """A namespace with one LocalQueue whose ClusterQueue holds one trial (150m of 200m cpu)."""
    from kubernetes import client, config

    custom = client.CustomObjectsApi(config.new_client_from_config(str(local_cluster["kubeconfig"])))
    _wait_for_kueue(custom)
    api["core"].create_namespace({"metadata": {"name": NS}})
    custom.create_cluster_custom_object(GROUP, VERSION, "resourceflavors", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ResourceFlavor", "metadata": {"name": FLAVOR}})
    custom.create_cluster_custom_object(GROUP, VERSION, "clusterqueues", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ClusterQueue", "metadata": {"name": CQ},
        "spec": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NS}},
                 "resourceGroups": [{"coveredResources": ["cpu", "memory"], "flavors": [{
                     "name": FLAVOR, "resources": [{"name": "cpu", "nominalQuota": "200m"},
                                                   {"name": "memory", "nominalQuota": "256Mi"}]}]}]}})
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, "localqueues", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "LocalQueue", "metadata": {"name": LQ, "namespace": NS},
        "spec": {"clusterQueue": CQ}})
    try:
        yield custom
    finally:
        api["core"].delete_namespace(NS)
        _gone(lambda: api["core"].read_namespace(NS))
        for plural, name in (("clusterqueues", CQ), ("resourceflavors", FLAVOR)):
            try:
                custom.delete_cluster_custom_object(GROUP, VERSION, plural, name)
            except client.ApiException as exc:
                if exc.status != 404:
                    raise


def _wait_for_kueue(custom, timeout_s: float = 120) -> None:
    """The kueue role waits for its webhook; a cluster test after a rerun of site.yml may still race it."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            custom.create_cluster_custom_object(GROUP, VERSION, "resourceflavors", {
                "apiVersion": f"{GROUP}/{VERSION}", "kind": "ResourceFlavor", "metadata": {"name": "ks-probe"}},
                dry_run="All")
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


def _gone(read, timeout_s: float = 120) -> None:
    from kubernetes.client import ApiException

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            read()
        except ApiException as exc:
            if exc.status == 404:
                return
            raise
        time.sleep(1)


def _set_active(custom, trial: str, active: bool) -> None:
    for wl in custom.list_namespaced_custom_object(GROUP, VERSION, NS, "workloads")["items"]:
        if kueue.owner_job(wl) == trial:
            custom.patch_namespaced_custom_object(GROUP, VERSION, NS, "workloads", wl["metadata"]["name"],
                                                  {"spec": {"active": active}})
            return
    raise AssertionError(f"no Workload for {trial}")


def test_a_sweep_through_kueue_waits_in_its_queue_survives_an_eviction_and_resumes(tmp_path, queue, api,
                                                                                   local_cluster):
    trainer = image.ensure(EXAMPLES, "kubesweep/mnist", build_args={"BASE": "kubesweep/python-base:bookworm"}).reference
    grid = tmp_path / "kq.yaml"
    grid.write_text(textwrap.dedent(f"""\
        name: kq
        namespace: {NS}
        image: {trainer}
        command: [python3, -u, -c, {json.dumps(TRAINER)}, "${{q}}"]
        parameters: {{q: ["0.5", "0.7", "0.9"]}}
        batchSize: 3
        maxFailedTrials: 0
        objective: {{metric: acc}}
        resources: {{cpu: 150m, memory: 64Mi}}
        """))
    where = sweep.Workspace(tmp_path / "jobs", tmp_path / "results")
    target = sweep.Target(str(local_cluster["kubeconfig"]))
    seen: list[tuple[str, str, str | None, str | None]] = []
    notes: list[str] = []
    evicted_one = threading.Event()
    state = {"victim": None, "reactivated": False}

    def change(rec):
        seen.append((rec.name, rec.state, rec.reason, rec.message))
        if rec.state == RUNNING and state["victim"] is None:  # the first to run is evicted part way
            state["victim"] = rec.name
            threading.Timer(3, _set_active, (queue, rec.name, False)).start()
        elif rec.name == state["victim"] and rec.state == SUBMITTED and rec.reason == kueue.EVICTED \
                and not state["reactivated"]:
            state["reactivated"] = True
            evicted_one.set()
            threading.Timer(1, _set_active, (queue, rec.name, True)).start()

    plan = sweep.plan(str(grid))
    assert plan.experiment.queue is None  # the file names no queue: the namespace's own is found
    out = sweep.run(plan, target, where, hooks=sweep.Hooks(notice=notes.append, change=change))
    assert any(f"namespace {NS} has Kueue LocalQueue {LQ}" in n for n in notes), notes
    assert out.counts["succeeded"] == 3 and out.counts["failed"] == 0 and out.stopped is None, (out.counts, seen)
    assert out.best is not None and out.best["value"] == 0.9

    # the others waited in the queue with Kueue's own reason
    queued = [m for _, s, r, m in seen if s == SUBMITTED and r == kueue.QUEUED]
    assert any("insufficient unused quota" in (m or "") for m in queued), seen
    # the evicted trial went back to waiting, then ran again to the end
    assert evicted_one.is_set(), seen
    victim = [(s, r) for n, s, r, _ in seen if n == state["victim"]]
    back = victim.index((SUBMITTED, kueue.EVICTED))
    assert (RUNNING, None) in victim[back:] and victim[-1][0] == SUCCEEDED, victim

    jobs = api["batch"].list_namespaced_job(NS, label_selector=f"{manifest.L_EXPERIMENT}=kq").items
    assert sorted(j.metadata.name for j in jobs) == sorted(t.name for t in plan.trials)  # one Job each, never two
    assert all(j.metadata.labels[kueue.QUEUE_LABEL] == LQ for j in jobs)

    again = sweep.run(sweep.plan(str(grid)), target, where)
    assert again.counts["succeeded"] == 3 and again.exit_code == 0
    assert len(api["batch"].list_namespaced_job(NS, label_selector=f"{manifest.L_EXPERIMENT}=kq").items) == 3


def test_a_sweep_naming_a_queue_its_namespace_lacks_is_refused_before_anything_is_created(tmp_path, queue, api,
                                                                                       local_cluster):
    grid = tmp_path / "nq.yaml"
    grid.write_text(textwrap.dedent(f"""\
        name: nq
        namespace: {NS}
        queue: not-there
        image: localhost:5000/none:1
        command: [t, "${{i}}"]
        parameters: {{i: [1, 2]}}
        objective: {{metric: acc}}
        """))
    with pytest.raises(kueue.QueueMissing) as err:
        sweep.run(sweep.plan(str(grid)), sweep.Target(str(local_cluster["kubeconfig"])),
                  sweep.Workspace(tmp_path / "jobs", tmp_path / "results"))
    assert f"namespace {NS} has no LocalQueue not-there (it has {LQ})" in str(err.value)
    assert not (tmp_path / "jobs").exists()
    assert api["batch"].list_namespaced_job(NS).items == []


def test_kill_minus_nine_while_trials_wait_in_the_queue_then_resume_creates_nothing_twice(tmp_path, queue, api,
                                                                                        local_cluster):
    """The sweep process killed again and again while Kueue holds most of its Jobs suspended:
    each rerun re-attaches the suspended and the running Jobs, `status` shows the queued ones
    with Kueue's reason, and the last run finishes every trial on its first Job."""
    import os
    import random
    import signal
    import subprocess
    import sys

    from kubesweep.run import journal

    from .conftest import ROOT

    trainer = image.ensure(EXAMPLES, "kubesweep/mnist", build_args={"BASE": "kubesweep/python-base:bookworm"}).reference
    grid = tmp_path / "kk.yaml"
    grid.write_text(textwrap.dedent(f"""\
        name: kk
        namespace: {NS}
        image: {trainer}
        command: [python3, -c, "import time, sys; time.sleep(3); print('acc=' + sys.argv[1])", "${{i}}"]
        parameters: {{i: [1, 2, 3, 4, 5]}}
        batchSize: 5
        objective: {{metric: acc}}
        resources: {{cpu: 150m, memory: 64Mi}}
        """))
    kubeconfig = str(local_cluster["kubeconfig"])
    argv = [sys.executable, "-m", "invoke", "sweep", "--grid", str(grid), "--jobs-dir", str(tmp_path / "jobs"),
            "--results-dir", str(tmp_path / "results"), "--kubeconfig", kubeconfig]

    def jobs():
        return {j.metadata.name: j.metadata.uid
                for j in api["batch"].list_namespaced_job(NS, label_selector=f"{manifest.L_EXPERIMENT}=kk").items}

    rng = random.Random(5)
    uids: dict[str, str] = {}
    shown = ""
    for kill in range(4):
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120
            while len(jobs()) < 5 and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.2)
            time.sleep(rng.uniform(0.5, 2.5))
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        for name, uid in jobs().items():
            assert uids.setdefault(name, uid) == uid, f"{name}: a Job was created twice"
        if kill == 0:  # Kueue holds all but one: status says so, in Kueue's words
            status = subprocess.run([sys.executable, "-m", "invoke", "status", "--experiment", "kk", "--namespace", NS,
                                     "--kubeconfig", kubeconfig], cwd=ROOT, capture_output=True, text=True, timeout=120,
                                    env={**os.environ, "COLUMNS": "400"})  # one line per trial
            shown = status.stdout
    assert len(uids) == 5
    assert f"queued in {LQ}" in shown and "insufficient unused quota" in shown, shown
    final = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stdout[-2000:] + final.stderr[-2000:]
    assert jobs() == uids  # every trial ran on the Job it was first given
    done = journal.load(tmp_path / "results" / "kk")
    assert sorted(r["metrics"]["acc"] for r in done.values()) == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert all(r["state"] == SUCCEEDED for r in done.values())
