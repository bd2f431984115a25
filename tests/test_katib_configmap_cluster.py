"""A Katib Experiment whose trialTemplate.configMap names a ConfigMap on the real cluster:
`kubesweep render` and `kubesweep sweep` read the template from there through the kubeconfig and
run its one trial with the template's container (marker: cluster)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kubesweep.local import image
from kubesweep.plan import job as manifest

from .conftest import EXAMPLES

pytestmark = pytest.mark.cluster

KUBESWEEP = Path(sys.executable).parent / "kubesweep"
NAMESPACE = "ks-katib-configmap"


def test_a_katib_trial_template_is_read_from_a_configmap_on_the_cluster(tmp_path, local_cluster, api):
    from kubernetes.client.exceptions import ApiException

    trainer = image.ensure(EXAMPLES, "kubesweep/mnist", build_args={"BASE": "kubesweep/python-base:bookworm"}).reference
    command = ["python3", "-c", "import sys; print('score=' + sys.argv[1])", "${trialParameters.x}"]
    template = textwrap.dedent(f"""\
        apiVersion: batch/v1
        kind: Job
        spec:
          template:
            spec:
              containers:
                - name: training-container
                  image: {trainer}
                  command: {json.dumps(command)}
                  resources: {{limits: {{cpu: 100m, memory: 64Mi}}}}
              restartPolicy: Never
        """)
    experiment = tmp_path / "experiment.yaml"
    experiment.write_text(textwrap.dedent(f"""\
        apiVersion: kubeflow.org/v1beta1
        kind: Experiment
        metadata: {{name: cm-template, namespace: {NAMESPACE}}}
        spec:
          objective: {{type: maximize, objectiveMetricName: score}}
          algorithm: {{algorithmName: grid}}
          maxTrialCount: 1
          parameters:
            - {{name: x, parameterType: discrete, feasibleSpace: {{list: ["7"]}}}}
          trialTemplate:
            primaryContainerName: training-container
            trialParameters: [{{name: x, reference: x}}]
            configMap: {{configMapName: trial-templates, configMapNamespace: {NAMESPACE}, templatePath: train.yaml}}
        """))
    core, batch = api["core"], api["batch"]
    try:
        core.create_namespace({"metadata": {"name": NAMESPACE}})
    except ApiException as exc:
        assert exc.status == 409, exc  # left by an earlier run that was cut short
    try:
        core.create_namespaced_config_map(NAMESPACE, {"metadata": {"name": "trial-templates"},
                                                      "data": {"train.yaml": template}})
        cli = [str(KUBESWEEP), "--kubeconfig", str(local_cluster["kubeconfig"]), "--project-dir", str(tmp_path)]
        rendered = subprocess.run([*cli, "render", str(experiment)], capture_output=True, text=True, timeout=120)
        assert rendered.returncode == 0, rendered.stdout + rendered.stderr
        swept = subprocess.run([*cli, "sweep", str(experiment)], capture_output=True, text=True, timeout=600)
        assert swept.returncode == 0, swept.stdout[-3000:] + swept.stderr[-3000:]
        assert "best trial: cm-template-" in swept.stdout and "score = 7" in swept.stdout, swept.stdout
        jobs = batch.list_namespaced_job(NAMESPACE, label_selector=f"{manifest.L_EXPERIMENT}=cm-template").items
        assert len(jobs) == 1
        container = jobs[0].spec.template.spec.containers[0]
        assert (container.image, container.command) == (trainer, [*command[:-1], "7"])
    finally:
        core.delete_namespace(NAMESPACE, propagation_policy="Background")
