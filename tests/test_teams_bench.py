"""bench/teams.py: two teams on kwok GPU nodes, Kueue against each sweep's own throttling. Its
figures from trial spans without a cluster; the whole benchmark at toy size on the cluster."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import teams  # noqa: E402 - bench/teams.py

from .conftest import ROOT  # noqa: E402


def test_both_teams_busy_at_quota_then_a_borrows_the_idle_half():
    # 4 GPUs, quota 2: each team runs two trials at a time for 10 s; b's last trials (started at
    # 10) end at 20, a's third round starts at 22 on all four GPUs
    a = [(0, 10), (0, 10), (10, 22), (10, 22), (22, 30), (22, 30), (22, 30), (22, 30)]
    b = [(0, 10), (0, 10), (10, 20), (10, 20)]
    m = teams.measure(a, b, gpus=4, quota=2)
    assert m["share"] == {"a": 0.5, "b": 0.5} and m["of_quota"] == {"a": 1.0, "b": 1.0}
    assert m["busy_window"] == 10  # until b's last start
    assert m["utilisation"] == 1.0 and m["work_window"] == 20  # until b's last end
    assert m["b_idle"] == 20 and m["borrow"] == 2 and m["borrowed_at"] == 22
    assert m["peak_a"] == 4 and m["makespan"] == 30 and m["startup"] == 0


def test_a_team_that_never_exceeds_its_quota_never_borrows_and_idle_gpus_count_against_utilisation():
    a = [(0, 10), (0, 10), (10, 20), (10, 20), (20, 30), (20, 30)]
    b = [(0, 10), (2, 10), (10, 15)]  # b starts one trial 2 s late; then one GPU of b's idles from 15
    m = teams.measure(a, b, gpus=4, quota=2)
    assert m["borrow"] is None and m["peak_a"] == 2
    assert m["utilisation"] == pytest.approx((30 + 23) / (4 * 15))  # a 30, b 10 + 8 + 5 GPU-s until b ends at 15
    assert m["share"]["a"] == pytest.approx(20 / 38)  # both busy until b's last start at 10
    assert m["of_quota"]["b"] == pytest.approx(18 / 20)
    assert m["alone"] == pytest.approx(10 / (4 * 5))  # from b's end (15) to a's last start (20): 2 of 4 GPUs


def test_borrowing_already_under_way_when_b_leaves_its_first_gpu_counts_as_none_needed():
    a = [(0, 30), (0, 30), (5, 30)]  # a took a third GPU at 5
    b = [(0, 5), (0, 10), (5, 10)]   # b's last start is 5, its first end after that is 10
    m = teams.measure(a, b, gpus=4, quota=2)
    assert m["b_idle"] == 10 and m["borrow"] == 0


def test_runs_kueue_preempted_count_as_used_and_are_summed_as_lost():
    a = [(0, 10), (0, 10), (10, 20), (10, 20)]
    b = [(5, 15), (5, 15)]
    m = teams.measure(a, b, gpus=4, quota=2, lost={"a": [(0, 5), (0, 5)]})  # a borrowed b's half until 5
    assert m["lost_gpu_s"] == 10 and m["peak_a"] == 4
    assert m["utilisation"] == 1.0  # [0, 15]: 4 GPUs held throughout


def test_first_above_counts_one_seconds_changes_together():
    # at 10 one trial ends and another starts: never three at once
    spans = [(0, 10), (0, 20), (10, 20)]
    assert teams.first_above(spans, 0, 2) is None
    assert teams.first_above(spans, 0, 1) == 0
    assert teams.first_above(spans + [(15, 20)], 0, 2) == 15
    assert teams.first_above(spans + [(15, 20)], 17, 2) == 17  # above at 17 already
    assert teams.reach(spans, 2) == 0 and teams.reach(spans, 3) is None


def test_the_sweep_files_and_the_queues_give_each_team_half_with_the_other_half_to_borrow():
    text = teams.grid("kueue", "b", 1000, teams.levels([30, 45, 60, 75, 90], 0.5), 1000)
    sweep = yaml.safe_load(text)
    assert sweep["namespace"] == "bench-kueue-b" and sweep["batchSize"] == 1000
    assert sweep["parameters"]["duration"] == [15, 22.5, 30, 37.5, 45] and len(sweep["parameters"]["rep"]) == 200
    assert sweep["resources"]["nvidia.com/gpu"] == 1
    objs = teams.kueue_objects("kueue", 200)
    flavor = objs[0]
    assert flavor["kind"] == "ResourceFlavor" and flavor["spec"]["nodeLabels"] == {"kubesweep.io/fake-node": "true"}
    cqs = [o for o in objs if o["kind"] == "ClusterQueue"]
    assert [q["metadata"]["name"] for q in cqs] == ["bench-kueue-a", "bench-kueue-b"]
    for q in cqs:
        assert q["spec"]["cohortName"] == teams.COHORT
        (group,) = q["spec"]["resourceGroups"]
        assert set(group["coveredResources"]) == {"cpu", "memory", "nvidia.com/gpu"}
        gpu = next(r for r in group["flavors"][0]["resources"] if r["name"] == "nvidia.com/gpu")
        assert gpu == {"name": "nvidia.com/gpu", "nominalQuota": "200", "borrowingLimit": "200"}
    assert all("preemption" not in q["spec"] for q in cqs)  # as the teams role makes them
    reclaim = [o for o in teams.kueue_objects("kueue-reclaim", 200, reclaim=True) if o["kind"] == "ClusterQueue"]
    assert [q["spec"]["preemption"] for q in reclaim] == [{"reclaimWithinCohort": "Any"}] * 2
    lqs = [o for o in objs if o["kind"] == "LocalQueue"]
    assert [(q["metadata"]["namespace"], q["spec"]["clusterQueue"]) for q in lqs] == [
        ("bench-kueue-a", "bench-kueue-a"), ("bench-kueue-b", "bench-kueue-b")]


@pytest.mark.parametrize("argv, message", [
    (["--nodes", "1", "--gpus", "3"], "even number of GPUs"),
    (["--arms", "kueue,fifo"], "--arms"),
    (["--durations", "1,x"], "--durations"),
])
def test_bad_flags_are_refused_before_the_cluster_is_touched(argv, message):
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "teams.py"), *argv, "--kubeconfig", "/nonexistent"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and message in run.stderr, run.stderr


@pytest.mark.cluster
def test_the_teams_benchmark_runs_at_toy_size_and_leaves_nothing_behind(local_cluster, api):
    """bench/teams.py gives the figures docs/benchmarks.md quotes; run small here (4 nodes × 2
    GPUs, 10 trials a team of a few seconds) so it cannot rot between measurements: counts and
    structure, not times, are asserted — and that the fake nodes and every queue are gone."""
    from kubesweep.local import fake_nodes

    run = subprocess.run([sys.executable, str(ROOT / "bench" / "teams.py"), "--nodes", "4", "--gpus", "2",
                          "--trials", "10", "--durations", "3,4,5,6,7", "--kubeconfig", str(local_cluster["kubeconfig"])],
                         cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    rows = {}
    for line in run.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0] in teams.ARMS:
            rows[cells[0]] = dict(zip(("arm", "finished", "labelled", "util", "share", "of_quota", "borrow", "alone",
                                       "peak", "preempted", "startup", "makespan", "cores"), cells))
    assert set(rows) == {"kueue", "throttle"}, run.stdout  # the default arms
    for arm, row in rows.items():
        assert row["finished"] == "10 / 10", run.stdout  # every trial of both teams ended
        assert re.fullmatch(r"[\d.]+ % \(\d+ s\)", row["util"]), run.stdout
    assert rows["kueue"]["labelled"] == "20" and rows["throttle"]["labelled"] == "0", run.stdout
    assert rows["throttle"]["borrow"] == "never" and int(rows["throttle"]["peak"]) <= 4, run.stdout
    assert rows["throttle"]["preempted"] == "0 / 0 (0)", run.stdout
    assert int(rows["kueue"]["peak"]) <= 8, run.stdout  # quota 4 + borrowing limit 4
    assert "kueue a: namespace bench-kueue-a has Kueue LocalQueue bench" in run.stdout, run.stdout
    assert re.search(r"^kueue: utilisation [\d.]+ % \(goal ≥ 95 %\): (met|missed)", run.stdout, re.M), run.stdout
    assert not api["core"].list_node(label_selector=f"{fake_nodes.LABEL}=true").items
    assert not api["core"].list_namespace(label_selector=f"{teams.BENCH_LABEL}={teams.BENCH}").items
    from kubernetes import client, config

    custom = client.CustomObjectsApi(config.new_client_from_config(str(local_cluster["kubeconfig"])))
    for plural in ("clusterqueues", "resourceflavors"):
        left = custom.list_cluster_custom_object("kueue.x-k8s.io", "v1beta2", plural,
                                                 label_selector=f"{teams.BENCH_LABEL}={teams.BENCH}")["items"]
        assert not left, plural
