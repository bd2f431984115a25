"""Early stopping on the real cluster: a lagging trial's real log, read as it grows, prunes it."""

from __future__ import annotations

import json
import textwrap

import pytest

from kubesweep.cli import commands as cli
from kubesweep.local import image
from kubesweep.plan import job as manifest
from kubesweep.plan import planner as render
from kubesweep.run import journal, lifecycle, runner
from kubesweep.run.trialstate import PRUNED, SUCCEEDED, elapsed
from kubesweep.sweep import Target, Workspace

from .conftest import EXAMPLES

pytestmark = pytest.mark.cluster

# Six epochs two seconds apart, each printing acc = q * epoch / 6: q says how good the trial is.
TRAINER = ("import sys, time\n"
           "for e in range(1, 7):\n"
           "    print(f'epoch={e} acc={float(sys.argv[1]) * e / 6:.4f}', flush=True)\n"
           "    time.sleep(2)\n")


def test_a_lagging_trial_is_pruned_its_job_deleted_and_a_rerun_leaves_it_so(tmp_path, local_cluster, api, capsys):
    trainer = image.ensure(EXAMPLES, "kubesweep/mnist", build_args={"BASE": "kubesweep/python-base:bookworm"}).reference
    grid = tmp_path / "prune.yaml"
    grid.write_text(textwrap.dedent(f"""\
        name: prune
        image: {trainer}
        command: [python3, -u, -c, {json.dumps(TRAINER)}, "${{q}}"]
        parameters: {{q: ["0.9", "0.1"]}}
        batchSize: 1
        maxFailedTrials: 0
        objective: {{metric: acc, step: epoch}}
        earlyStopping: {{pruner: medianstop, minTrials: 1, startStep: 2, intervalSeconds: 1}}
        resources: {{cpu: 100m, memory: 64Mi}}
        """))
    plan = render.plan(grid)
    render.write(plan, tmp_path / "jobs")
    good, bad = (t.name for t in plan.trials)
    kubeconfig = local_cluster["kubeconfig"]
    try:
        out = runner.Sweep(plan, tmp_path / "jobs", tmp_path / "results", kubeconfig=kubeconfig).run()
        assert out.stopped is None  # a pruned trial is no failure (maxFailedTrials: 0)
        recs = journal.load(tmp_path / "results" / "prune")
        assert recs[good]["state"] == SUCCEEDED and [s for s, _ in recs[good]["curves"]["acc"]] == [1, 2, 3, 4, 5, 6]
        cut = recs[bad]
        assert cut["state"] == PRUNED and cut["reason"] == "Pruned" and "medianstop" in cut["message"], cut
        steps = [s for s, _ in cut["curves"]["acc"]]
        assert 2 <= steps[-1] < 6 and steps == list(range(1, steps[-1] + 1)), cut  # stopped part way, curve kept
        assert elapsed(cut["start"], cut["end"]) < elapsed(recs[good]["start"], recs[good]["end"])
        names = [j.metadata.name for j in api["batch"].list_namespaced_job(
            "default", label_selector=f"{manifest.L_EXPERIMENT}=prune").items if j.metadata.deletion_timestamp is None]
        assert bad not in names  # its Job was deleted at once

        again = runner.Sweep(plan, tmp_path / "jobs", tmp_path / "results", kubeconfig=kubeconfig).run()
        assert again.created == 0 and again.records[bad].state == PRUNED  # a rerun never revives it

        cli.status(Target(str(kubeconfig)), "prune", where=Workspace(tmp_path / "jobs", tmp_path / "results"))
        shown = capsys.readouterr().out
        row = next(line for line in shown.splitlines() if bad in line)
        assert f"│ {steps[-1]} " in row and "early stopped" in row, shown
    finally:
        from kubesweep.k8s import client as kube

        lifecycle.clean(kube.clients(kubeconfig), "prune")


def test_the_pruning_benchmark_runs_at_toy_size(local_cluster):
    """bench/pruning.py gives the figures docs/benchmarks.md quotes; run small here (two arms, one
    seed, short trials) so it cannot rot between measurements: counts, not times, are asserted."""
    import re
    import subprocess
    import sys

    from .conftest import ROOT

    run = subprocess.run([sys.executable, str(ROOT / "bench" / "pruning.py"), "--arms", "random,random+asha",
                          "--trials", "4", "--epochs", "4", "--epoch-seconds", "0.5", "--batch-size", "2",
                          "--kubeconfig", str(local_cluster["kubeconfig"])],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    rows = dict(re.findall(r"^\| (random|random\+asha) \| (\d+) \|", run.stdout, re.M))
    assert rows == {"random": "4", "random+asha": "4"}, run.stdout  # every trial of both arms ran or was pruned
    assert re.search(r"^random\+asha: [\d.]+× random's trial-seconds, best -?[\d.]+ points below it", run.stdout, re.M), run.stdout
