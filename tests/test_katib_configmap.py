"""A Katib trialTemplate.configMap, read as Katib's controller reads it: the trialSpec is the YAML
text under templatePath of a ConfigMap in the cluster, fetched here from a stand-in API server
through the kubeconfig (one GET), then validated like an inline trialSpec."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from kubesweep import sweep
from kubesweep.cli.app import main
from kubesweep.errors import SpecError
from kubesweep.plan import job as manifest
from kubesweep.plan import planner, provenance

from .fakeapi import serve

CM_PATH = "/api/v1/namespaces/team-a/configmaps/trial-templates"
EXPERIMENT = """\
apiVersion: kubeflow.org/v1beta1
kind: Experiment
metadata:
  name: from-configmap
spec:
  objective: {type: maximize, objectiveMetricName: accuracy}
  algorithm: {algorithmName: grid}
  maxTrialCount: 4
  parameters:
    - name: lr
      parameterType: discrete
      feasibleSpace: {list: ["0.1", "0.2"]}
  trialTemplate:
    primaryContainerName: training-container
    trialParameters:
      - name: learningRate
        reference: lr
    configMap:
      configMapName: trial-templates
      configMapNamespace: team-a
      templatePath: train.yaml
"""
REFERENCE_LINE = EXPERIMENT.splitlines().index("    configMap:") + 1
TEMPLATE = """\
apiVersion: batch/v1
kind: Job
spec:
  template:
    spec:
      containers:
        - name: training-container
          image: registry.example/train:1
          command: ["python3", "train.py", "--lr=${trialParameters.learningRate}"]
      restartPolicy: Never
"""


def _configmap(data: dict[str, str]) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "trial-templates", "namespace": "team-a"},
            "data": data}


def _status(code: int, reason: str, message: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code, "message": message}


@pytest.fixture
def experiment(tmp_path: Path) -> Path:
    path = tmp_path / "experiment.yaml"
    path.write_text(EXPERIMENT)
    return path


def _plan(tmp_path: Path, experiment: Path, status: int, reply: dict) -> tuple[planner.Plan | None, str, list]:
    """The plan (or the errors) with the ConfigMap answered ``status``/``reply``, and the requests sent."""
    with serve(lambda method, path, body: (status, reply), tmp_path / "kubeconfig") as server:
        try:
            p = planner.plan(experiment, configmaps=sweep.configmaps(sweep.Target(str(tmp_path / "kubeconfig"))))
            return p, "", server.requests
        except SpecError as exc:
            return None, str(exc), server.requests


def test_the_template_is_read_from_the_configmap_with_one_get_and_runs_as_an_inline_one(tmp_path, experiment):
    p, errors, requests = _plan(tmp_path, experiment, 200, _configmap({"train.yaml": TEMPLATE}))
    assert p is not None, errors
    assert requests == [("GET", CM_PATH)]
    container = manifest.build_job(p.experiment, p.trials[0])["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example/train:1"
    assert container["command"] == ["python3", "train.py", "--lr=0.1"]
    # the template's text is part of what the plan is made from
    index = json.loads(planner.plan_index(p))
    assert list(index["source"]["configMaps"]) == ["configmap team-a/trial-templates key train.yaml"]


def test_the_same_experiment_inline_and_from_a_configmap_give_the_same_jobs(tmp_path, experiment):
    p, errors, _ = _plan(tmp_path, experiment, 200, _configmap({"train.yaml": TEMPLATE}))
    assert p is not None, errors
    inline = tmp_path / "inline.yaml"
    body = "\n".join("      " + line for line in TEMPLATE.splitlines())
    inline.write_text(EXPERIMENT.split("    configMap:")[0] + "    trialSpec:\n" + body + "\n")
    q = planner.plan(inline)
    assert [manifest.build_job(p.experiment, t) for t in p.trials] == [manifest.build_job(q.experiment, t) for t in q.trials]


def test_a_changed_configmap_is_noticed_like_a_changed_grid(tmp_path, experiment):
    p, _, _ = _plan(tmp_path, experiment, 200, _configmap({"train.yaml": TEMPLATE}))
    results = tmp_path / "results"
    provenance.keep(results, manifest.trial_template(p.experiment, p.image), finished=1)
    q, _, _ = _plan(tmp_path, experiment, 200, _configmap({"train.yaml": TEMPLATE.replace("train.py", "train2.py")}))
    done = {"t": {"name": "t", "state": "succeeded"}}
    with pytest.raises(provenance.TemplateChanged, match="train2.py"):
        provenance.check_results(results, q.experiment.name, manifest.trial_template(q.experiment, q.image), done)


def test_a_missing_configmap_is_one_line_at_the_reference(tmp_path, experiment):
    _, errors, _ = _plan(tmp_path, experiment, 404, _status(404, "NotFound", 'configmaps "trial-templates" not found'))
    assert f"{experiment}:{REFERENCE_LINE}:5: the trial template is key 'train.yaml' of ConfigMap " \
           "team-a/trial-templates in the cluster, which cannot be read: the API server refused (404 Not Found): " \
           'configmaps "trial-templates" not found' in errors, errors


def test_a_configmap_the_identity_may_not_read_names_the_permission(tmp_path, experiment):
    message = ('configmaps "trial-templates" is forbidden: User "alice" cannot get resource "configmaps" in API group '
               '"" in the namespace "team-a"')
    _, errors, _ = _plan(tmp_path, experiment, 403, _status(403, "Forbidden", message))
    assert f"{experiment}:{REFERENCE_LINE}:5:" in errors
    assert "permission denied: alice may not get configmaps in namespace team-a" in errors, errors


def test_a_configmap_without_the_key_lists_its_keys(tmp_path, experiment):
    _, errors, _ = _plan(tmp_path, experiment, 200, _configmap({"other.yaml": TEMPLATE, "b": "x"}))
    assert f"{experiment}:{REFERENCE_LINE + 3}:21: ConfigMap team-a/trial-templates has no key 'train.yaml' " \
           "(its keys: b, other.yaml) (got 'train.yaml')" in errors, errors


def test_errors_inside_the_template_point_into_the_configmap_and_at_the_reference(tmp_path, experiment):
    where = f"(the trial template that spec.trialTemplate.configMap at {experiment}:{REFERENCE_LINE}:5 names)"
    bad_yaml = TEMPLATE.replace("      restartPolicy: Never", "      restartPolicy: [Never")
    _, errors, _ = _plan(tmp_path, experiment, 200, _configmap({"train.yaml": bad_yaml}))
    assert errors.startswith("configmap team-a/trial-templates key train.yaml:10:22: YAML syntax error"), errors
    assert where in errors
    wrong = TEMPLATE.replace("restartPolicy: Never", "restartPolicy: Always").replace("learningRate", "rate")
    _, errors, _ = _plan(tmp_path, experiment, 200, _configmap({"train.yaml": wrong}))
    lines = errors.splitlines()
    assert f"configmap team-a/trial-templates key train.yaml:9:44: ${{trialParameters.rate}} is not declared in " \
           f"trialTemplate.trialParameters {where}" in lines[0], errors
    assert lines[1].startswith("configmap team-a/trial-templates key train.yaml:10:22: restartPolicy must be Never"), errors
    assert lines[1].endswith(f"{where} (got 'Always')"), errors


def test_without_a_cluster_the_error_says_where_the_template_is_and_how_to_give_one(tmp_path, experiment):
    with pytest.raises(SpecError) as exc:
        planner.plan(experiment)
    assert f"{experiment}:{REFERENCE_LINE}:5: the trial template is key 'train.yaml' of ConfigMap team-a/trial-templates " \
           "in the cluster, and no cluster was given: name the one that holds it with --kubeconfig/--context" in str(exc.value)
    # `kubesweep render` with a kubeconfig that names no reachable cluster: nothing is written
    dead = tmp_path / "dead.conf"
    with serve(lambda *a: (200, {}), dead):
        pass  # its port is closed again
    shown = CliRunner().invoke(main, ["--kubeconfig", str(dead), "--project-dir", str(tmp_path), "render", str(experiment)])
    assert shown.exit_code == 2, shown.output
    assert "which cannot be read: no answer from the Kubernetes API server" in shown.output
    assert "--kubeconfig/--context name the cluster that holds it" in shown.output
    missing = CliRunner().invoke(main, ["--kubeconfig", str(tmp_path / "none.conf"), "--project-dir", str(tmp_path),
                                        "render", str(experiment)])
    assert missing.exit_code == 2 and f"no kubeconfig at {tmp_path / 'none.conf'}" in missing.output, missing.output
    assert not (tmp_path / "jobs").exists()


def test_render_reads_the_configmap_through_the_kubeconfig_and_context(tmp_path, experiment):
    with serve(lambda method, path, body: (200, _configmap({"train.yaml": TEMPLATE})), tmp_path / "kc") as server:
        shown = CliRunner().invoke(main, ["--kubeconfig", str(tmp_path / "kc"), "--context", "t", "--project-dir",
                                          str(tmp_path), "render", str(experiment)])
    assert shown.exit_code == 0, shown.output
    assert server.requests == [("GET", CM_PATH)]
    assert len(list((tmp_path / "jobs" / "from-configmap").rglob("*.yaml"))) == 2


@pytest.mark.parametrize("change, message", [
    (("    configMap:", "    trialSpec: {apiVersion: batch/v1, kind: Job}\n    configMap:"),
     "only one of spec.trialTemplate.trialSpec or spec.trialTemplate.configMap can be specified"),
    (("      templatePath: train.yaml\n", ""),
     "spec.trialTemplate.configMap needs configMapName, configMapNamespace and templatePath"),
    (("      templatePath: train.yaml", "      templatePath: train.yaml\n      path: x"),
     "unknown Katib field spec.trialTemplate.configMap.path"),
])
def test_a_configmap_reference_katib_would_refuse_is_refused_before_any_request(tmp_path, change, message):
    path = tmp_path / "experiment.yaml"
    path.write_text(EXPERIMENT.replace(*change))
    _, errors, requests = _plan(tmp_path, path, 200, _configmap({"train.yaml": TEMPLATE}))
    assert message in errors, errors
    if "unknown" not in message:
        assert requests == []


def test_a_configmap_reference_that_is_not_a_mapping_is_one_error(tmp_path):
    path = tmp_path / "experiment.yaml"
    path.write_text(EXPERIMENT.split("    configMap:")[0] + "    configMap: trial-templates\n")
    with pytest.raises(SpecError) as exc:
        planner.plan(path)
    assert [i.message for i in exc.value.issues] == ["spec.trialTemplate.configMap must be a mapping"]
