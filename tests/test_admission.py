"""The dry run before a sweep's first Job (run/admission.py), the one-line refusals
(k8s/client.api_error), and where the namespace and credentials come from without a flag
(the kubeconfig context's namespace; in a pod, its ServiceAccount) — against a stand-in API server."""

from __future__ import annotations

import json

import pytest
import yaml

from kubesweep.k8s import client as kube
from kubesweep.run import admission

from .fakeapi import serve

JOB = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "exp-1-abc", "labels": {"a": "b"}},
       "spec": {"template": {"metadata": {"labels": {"a": "b"}}, "spec": {"restartPolicy": "Never", "containers": [
           {"name": "trial", "image": "r/t:1", "resources": {"requests": {"cpu": "300m"}}}]}}}}
RBAC = 'pods is forbidden: User "system:serviceaccount:team:bob" cannot create resource "pods" in API group "" in the namespace "team"'


def _status(code: int, message: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "message": message}


def _answers(job: tuple[int, dict], pod: tuple[int, dict]):
    sent: list[tuple[str, str, dict]] = []

    def answer(method, path, body):
        if path == "/readyz":
            return 200, {}
        sent.append((method, path, body))
        return job if "/jobs" in path else pod

    return sent, answer


def test_both_objects_are_dry_run_and_nothing_else_is_sent(tmp_path):
    sent, answer = _answers((201, JOB), (201, {}))
    with serve(answer, tmp_path / "config"):
        assert admission.check(kube.clients(tmp_path / "config"), "team", JOB) == []
    assert [(m, p) for m, p, _ in sent] == [("POST", "/apis/batch/v1/namespaces/team/jobs?dryRun=All"),
                                            ("POST", "/api/v1/namespaces/team/pods?dryRun=All")]
    job, pod = sent[0][2], sent[1][2]
    assert job["metadata"]["name"] == "exp-1-abc-dry-run" != JOB["metadata"]["name"]  # never the trial's own name
    assert pod["kind"] == "Pod" and pod["spec"] == JOB["spec"]["template"]["spec"]
    assert pod["metadata"]["labels"] == {"a": "b"}


@pytest.mark.parametrize(("job", "pod", "expected"), [
    pytest.param((201, {}), (403, _status(403, 'pods "x" is forbidden: violates PodSecurity "restricted:latest": '
                                                'runAsNonRoot != true')),
                 r"the cluster refuses the trials' Job's pod \(a dry run of exp-1-abc; nothing was created\): 403 "
                 r"Forbidden: pods \"x\" is forbidden: violates PodSecurity", id="pod-security"),
    pytest.param((201, {}), (403, _status(403, 'pods "x" is forbidden: maximum cpu usage per Container is 200m, '
                                                'but limit is 300m')),
                 r"Job's pod .*maximum cpu usage per Container is 200m", id="limit-range"),
    pytest.param((400, _status(400, 'admission webhook "policy.example.com" denied the request: no latest tags')),
                 (201, {}), r"the cluster refuses the trials' Job .*400 Bad Request: admission webhook "
                            r"\"policy.example.com\" denied the request: no latest tags", id="webhook"),
    pytest.param((201, {}), (403, _status(403, 'pods "x" is forbidden: exceeded quota: compute, requested: '
                                                'requests.cpu=300m, used: requests.cpu=0, limited: requests.cpu=250m')),
                 r"^exp-1-abc: no trial can ever run in namespace team: requests.cpu: one trial asks for 0.3, quota "
                 r"compute allows 0.25 in all .* Nothing was created\.$", id="quota-too-small"),
    pytest.param((403, _status(403, RBAC.replace("pods", "jobs").replace('group ""', 'group "batch"'))), (201, {}),
                 r"^permission denied: system:serviceaccount:team:bob may not create jobs.batch in namespace team\. ",
                 id="no-job-create"),
])
def test_a_refusal_stops_the_sweep_in_one_line(tmp_path, job, pod, expected):
    sent, answer = _answers(job, pod)
    with serve(answer, tmp_path / "config"):
        with pytest.raises(admission.Refused, match=expected) as err:
            admission.check(kube.clients(tmp_path / "config"), "team", JOB)
    assert "\n" not in str(err.value)


def test_a_quota_full_for_now_and_a_role_without_pods_are_not_refusals(tmp_path):
    full = _status(403, 'pods "x" is forbidden: exceeded quota: compute, requested: requests.cpu=300m, '
                        'used: requests.cpu=2, limited: requests.cpu=2')
    sent, answer = _answers((201, {}), (403, full))
    with serve(answer, tmp_path / "config"):
        notes = admission.check(kube.clients(tmp_path / "config"), "team", JOB)
    assert len(notes) == 1 and notes[0].startswith("the namespace's quota is full for now") and "trials wait" in notes[0]
    sent, answer = _answers((201, {}), (403, _status(403, RBAC)))
    with serve(answer, tmp_path / "config"):
        assert admission.check(kube.clients(tmp_path / "config"), "team", JOB) == []


def test_never_fits_compares_each_limited_resource():
    message = ("exceeded quota: gpu, requested: limits.cpu=1,requests.nvidia.com/gpu=2, used: requests.nvidia.com/gpu=0, "
               "limited: limits.cpu=4,requests.nvidia.com/gpu=1")
    assert admission.never_fits(message) == "requests.nvidia.com/gpu: one trial asks for 2, quota gpu allows 1 in all"
    assert admission.never_fits(message.replace("requests.nvidia.com/gpu=2", "requests.nvidia.com/gpu=1")) is None
    assert admission.never_fits("something else") is None


@pytest.mark.parametrize(("code", "message", "line"), [
    (403, 'jobs.batch is forbidden: User "alice" cannot list resource "jobs" in API group "batch" at the cluster scope',
     "permission denied: alice may not list jobs.batch cluster-wide."),
    (403, 'pods "p" is forbidden: User "system:serviceaccount:t:a" cannot get resource "pods/log" in API group "" '
          'in the namespace "t"', "permission denied: system:serviceaccount:t:a may not get pods/log in namespace t."),
    (401, "Unauthorized", "the API server does not accept this kubeconfig's credentials (401 Unauthorized)"),
    (422, 'Job.batch "x" is invalid: spec.template: Required value', "the API server refused (422 Unprocessable Entity): "
          'Job.batch "x" is invalid: spec.template: Required value'),
])
def test_api_errors_are_one_line_naming_what_is_missing(code, message, line):
    from kubernetes.client.exceptions import ApiException

    reasons = {401: "Unauthorized", 403: "Forbidden", 422: "Unprocessable Entity"}
    exc = ApiException(status=code, reason=reasons[code])
    exc.body = json.dumps(_status(code, message))
    text = kube.api_error(exc)
    assert text.startswith(line) and "\n" not in text


def test_the_namespace_comes_from_the_kubeconfig_context(tmp_path):
    config = tmp_path / "one"
    config.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "a",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "a", "context": {"cluster": "c", "user": "u", "namespace": "team-a"}},
                     {"name": "b", "context": {"cluster": "c", "user": "u"}}]}))
    assert kube.context_namespace(str(config)) == "team-a"
    assert kube.context_namespace(str(config), "b") is None
    assert kube.context_namespace(str(tmp_path / "missing")) is None


def test_a_sweep_file_without_a_namespace_takes_the_contexts(tmp_path):
    from kubesweep.plan import planner

    grid = tmp_path / "grid.yaml"
    grid.write_text("name: e\nimage: r/t:1\ncommand: [t, \"${i}\"]\nparameters: {i: [1]}\nobjective: {metric: m}\n")
    assert planner.plan(grid).experiment.namespace == "default"
    assert planner.plan(grid, default_namespace="team-a").experiment.namespace == "team-a"
    assert planner.plan(grid, namespace="x", default_namespace="team-a").experiment.namespace == "x"
    grid.write_text(grid.read_text() + "namespace: mine\n")
    assert planner.plan(grid, default_namespace="team-a").experiment.namespace == "mine"


def test_in_a_pod_without_a_kubeconfig_the_service_account_is_used(tmp_path, monkeypatch):
    """In-cluster configuration: the token, CA and namespace files of the pod's ServiceAccount and
    KUBERNETES_SERVICE_HOST/PORT make the client's configuration (the address over https, the CA,
    the token as bearer)."""
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("pod-token")
    (sa / "namespace").write_text("team-b\n")
    (sa / "ca.crt").write_text("a CA (not read here)")

    with serve(lambda m, p, b: (200, {"kind": "JobList", "metadata": {}, "items": []}), tmp_path / "config") as server:
        host, port = "127.0.0.1", server.port
        monkeypatch.setattr(kube, "SERVICE_ACCOUNT_DIR", sa)
        monkeypatch.setattr(kube, "default_kubeconfig", lambda: None)
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", host)
        monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(port))
        from kubernetes.config import incluster_config

        monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(sa / "token"))
        monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(sa / "ca.crt"))
        assert kube.in_cluster()
        assert kube.context_namespace() == "team-b"
        c = kube.clients()
        assert c.namespace == "team-b"
        cfg = c.api.configuration
        assert cfg.host == f"https://{host}:{port}" and cfg.ssl_ca_cert == str(sa / "ca.crt")
        assert cfg.api_key["BearerToken"].lower() == "bearer pod-token"  # re-read as the token file rotates
        with pytest.raises(kube.ClusterUnreachable, match="--context x: there is no kubeconfig here"):
            kube.clients(context="x")
        with pytest.raises(kube.ClusterUnreachable, match="no kubeconfig at /nowhere"):
            kube.clients("/nowhere")
