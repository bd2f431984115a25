"""Katib's File metrics collector on the real cluster: the trial writes JSON lines to a file, the
native sidecar streams it into its log, and the sweep reads the metrics from there (marker: cluster)."""

from __future__ import annotations

import json
import textwrap

import pytest

from kubesweep.local import image
from kubesweep.plan import job as manifest
from kubesweep.plan import planner as render
from kubesweep.run import journal, runner
from kubesweep.run.trialstate import SUCCEEDED

from .conftest import EXAMPLES

pytestmark = pytest.mark.cluster

# Writes three JSON lines as Katib's hypertune logger does (values as strings), the last one just
# before it exits, and prints a decoy on stdout, which the File collector does not read.
TRAINER = ("import json, sys, time\n"
           "q = float(sys.argv[1])\n"
           "print('accuracy=0.01', flush=True)\n"
           "with open('/katib/metrics.json', 'a') as f:\n"
           "    for e in (1, 2, 3):\n"
           "        if e > 1:\n"
           "            time.sleep(1.5)\n"
           "        f.write(json.dumps({'accuracy': str(q * e / 3), 'global_step': str(e)}) + '\\n')\n"
           "        f.flush()\n")


def test_katib_file_collector_reads_the_file_through_the_sidecar(tmp_path, local_cluster, api):
    trainer = image.ensure(EXAMPLES, "kubesweep/mnist", build_args={"BASE": "kubesweep/python-base:bookworm"}).reference
    experiment = tmp_path / "file-collector.yaml"
    experiment.write_text(textwrap.dedent(f"""\
        apiVersion: kubeflow.org/v1beta1
        kind: Experiment
        metadata: {{name: file-collector, namespace: default}}
        spec:
          objective: {{type: maximize, objectiveMetricName: accuracy}}
          algorithm: {{algorithmName: grid}}
          parallelTrialCount: 2
          maxTrialCount: 2
          maxFailedTrialCount: 0
          metricsCollectorSpec:
            source: {{fileSystemPath: {{path: /katib/metrics.json, kind: File, format: JSON}}}}
            collector: {{kind: File}}
          parameters:
            - {{name: q, parameterType: discrete, feasibleSpace: {{list: ["0.6", "0.9"]}}}}
          trialTemplate:
            primaryContainerName: training-container
            trialParameters: [{{name: q, reference: q}}]
            trialSpec:
              apiVersion: batch/v1
              kind: Job
              spec:
                template:
                  spec:
                    containers:
                      - name: training-container
                        image: {trainer}
                        command: [python3, -u, -c, {json.dumps(TRAINER)}, "${{trialParameters.q}}"]
                        resources: {{limits: {{cpu: 100m, memory: 64Mi}}}}
                    restartPolicy: Never
        """))
    plan = render.plan(experiment)
    render.write(plan, tmp_path / "jobs")
    out = runner.Sweep(plan, tmp_path / "jobs", tmp_path / "results", kubeconfig=local_cluster["kubeconfig"]).run()
    try:
        assert out.stopped is None
        recs = journal.load(tmp_path / "results" / "file-collector")
        got = {rec["params"]["q"]: (rec["state"], rec["metrics"]) for rec in recs.values()}
        # the last line, written as the trial exits, is read: the sidecar copies what is left when stopped
        assert got == {0.6: (SUCCEEDED, {"accuracy": 0.6}), 0.9: (SUCCEEDED, {"accuracy": 0.9})}, got
        pods = api["core"].list_namespaced_pod("default", label_selector=f"{manifest.L_EXPERIMENT}=file-collector").items
        assert len(pods) == 2 and all(p.status.phase == "Succeeded" for p in pods)
        log = api["core"].read_namespaced_pod_log(pods[0].metadata.name, "default", container=manifest.METRICS_CONTAINER)
        lines = [json.loads(line) for line in log.splitlines()]
        assert [line["global_step"] for line in lines] == ["1", "2", "3"], log  # each line once, in order
    finally:
        for job in api["batch"].list_namespaced_job(
                "default", label_selector=f"{manifest.L_EXPERIMENT}=file-collector").items:
            api["batch"].delete_namespaced_job(job.metadata.name, "default", propagation_policy="Background")
