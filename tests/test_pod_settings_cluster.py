"""The pod settings real trainers need on the real local cluster (marker: cluster): the
API server accepts a Job with all of them (dryRun=All) and refuses what kubesweep refuses; a real
trial sees its /dev/shm size and env values from a Secret and a ConfigMap the test created, while
the Secret's value appears nowhere under jobs/, results/ or in the sweep's output."""

from __future__ import annotations

import hashlib
import secrets
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kubesweep.k8s import apirules
from kubesweep.k8s import client as kube
from kubesweep.k8s import jobschema as validation
from kubesweep.local import image
from kubesweep.plan import job as manifest
from kubesweep.plan import planner as render
from kubesweep.run import lifecycle

from .conftest import EXAMPLES
from .test_cluster_inputs import _dry_run
from .test_manifest import PODS

pytestmark = pytest.mark.cluster

KUBESWEEP = Path(sys.executable).parent / "kubesweep"


@pytest.fixture(scope="module")
def trainer(local_cluster):
    return image.ensure(EXAMPLES, "kubesweep/mnist", build_args={"BASE": "kubesweep/python-base:bookworm"}).reference


def _pods_job(tmp_path):
    path = tmp_path / "pods.yaml"
    path.write_text(PODS)
    p = render.plan(path)
    return manifest.build_job(p.experiment, p.trials[0])


def test_the_api_server_accepts_a_job_with_every_pod_setting(tmp_path, local_cluster, api):
    """Secrets and ConfigMaps by reference, envFrom, /dev/shm, extended resources, affinity,
    priority and runtime class, pull secrets, a root user: as rendered, accepted. (A Job's pod
    template is validated, not admitted: the classes and Secrets need not exist for this.)"""
    job = _pods_job(tmp_path)
    assert apirules.job_problems(job) == [] and validation.schema_errors(job) == []
    assert _dry_run(api, job) is None


def _pod(job):
    return job["spec"]["template"]["spec"]


def _affinity(job):
    return _pod(job)["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]


# One change each to the accepted Job that kubesweep's rules refuse: the API server must refuse it too.
BREAKS = {
    "an extended resource in halves": lambda j: _pod(j)["containers"][0]["resources"]["limits"].update({"amd.com/gpu": "500m"}),
    "an extended request other than its limit": lambda j: _pod(j)["containers"][0]["resources"]["requests"].update(
        {"amd.com/gpu": "2"}),
    "affinity weight 0": lambda j: _pod(j)["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    .update(weight=0),
    "affinity Gt with two values": lambda j: _affinity(j)["matchExpressions"][0].update(operator="Gt", values=["1", "2"]),
    "affinity In without values": lambda j: _affinity(j)["matchExpressions"][0].update(values=[]),
    "affinity operator unknown": lambda j: _affinity(j)["matchExpressions"][0].update(operator="Equals"),
    "pod affinity without topologyKey": lambda j: _pod(j)["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"].update(topologyKey=""),
}


@pytest.mark.parametrize("change", sorted(BREAKS))
def test_what_kubesweep_refuses_in_pod_settings_the_api_server_refuses(tmp_path, local_cluster, api, change):
    job = _pods_job(tmp_path)
    BREAKS[change](job)
    assert apirules.job_problems(job) or validation.schema_errors(job), f"kubesweep's rules let {change!r} through"
    assert _dry_run(api, job) is not None, f"the API server accepted {change!r}"


TRAINER = ("import hashlib, os; s = os.statvfs('/dev/shm'); "
           "print('shm=%d' % (s.f_blocks * s.f_frsize)); "
           "print('keyhash=' + hashlib.sha256(os.environ['API_KEY'].encode()).hexdigest()); "
           "print('cfg=' + os.environ.get('CFG_MODE', '-')); print('score=1')")


def test_a_trial_sees_its_shm_size_and_secret_values_that_are_written_nowhere(tmp_path, local_cluster, api, trainer):
    from kubernetes import client

    suffix = secrets.token_hex(4)
    secret_name, config_name, name = f"ks-test-key-{suffix}", f"ks-test-cfg-{suffix}", f"shm-secret-{suffix}"
    value = "ks-" + secrets.token_hex(24)  # what must never be written by kubesweep
    api["core"].create_namespaced_secret("default", client.V1Secret(
        metadata=client.V1ObjectMeta(name=secret_name), string_data={"token": value}))
    api["core"].create_namespaced_config_map("default", client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name=config_name), data={"MODE": "fast"}))
    grid = tmp_path / "grid.yaml"
    grid.write_text(textwrap.dedent(f"""\
    name: {name}
    namespace: default
    image: {trainer}
    command: [python3, -c, "{TRAINER}", "${{i}}"]
    parameters: {{i: [1]}}
    objective: {{metric: score}}
    resources: {{cpu: 100m, memory: 256Mi}}
    shmSize: 128Mi
    env:
      API_KEY: {{secretKeyRef: {{name: {secret_name}, key: token}}}}
    envFrom:
      - {{configMapRef: {{name: {config_name}}}, prefix: CFG_}}
    """))
    kubeconfig = str(local_cluster["kubeconfig"])
    c = kube.clients(kubeconfig)
    try:
        run = subprocess.run([str(KUBESWEEP), "--kubeconfig", kubeconfig, "--project-dir", str(tmp_path), "sweep", str(grid)],
                             capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stdout + run.stderr
        trial = render.plan(grid).trials[0].name
        log = lifecycle.logs(c, trial, namespace="default")
        assert "shm=134217728" in log, log  # 128Mi, not the runtime's 64Mi
        assert f"keyhash={hashlib.sha256(value.encode()).hexdigest()}" in log, log
        assert "cfg=fast" in log, log
        # the manifests name the Secret; its value is nowhere kubesweep writes
        job_files = list((tmp_path / "jobs").rglob("*.yaml"))
        assert job_files and all(secret_name in f.read_text() for f in job_files)
        written = [f for f in tmp_path.rglob("*") if f.is_file() and value.encode() in f.read_bytes()]
        assert written == [] and value not in run.stdout + run.stderr
        assert (tmp_path / "results" / name).is_dir()
    finally:
        lifecycle.clean(c, name, namespace="default")
        api["core"].delete_namespaced_secret(secret_name, "default")
        api["core"].delete_namespaced_config_map(config_name, "default")
