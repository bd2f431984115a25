"""kubesweep inside the cluster (marker: cluster): the image of examples/in-cluster/Dockerfile,
built here from this tree (the wheel and its dependencies installed into the build context for
the image's Python 3.11, from PyPI through pip's cache), runs examples/in-cluster/kubesweep-job.yaml
in a namespace of its own: with no kubeconfig, only its ServiceAccount and the example's Role, it
runs the mnist sweep in that namespace and reports the best trial."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from kubesweep.local import image

from .conftest import EXAMPLES, ROOT

pytestmark = pytest.mark.cluster

EXAMPLE = ROOT / "examples" / "in-cluster"
NAMESPACE = "kubesweep-in-cluster"


# Debian bookworm's glibc is 2.36: wheels for any manylinux up to it run there.
PLATFORMS = ["manylinux2014_x86_64"] + [f"manylinux_2_{v}_x86_64" for v in range(17, 37)]


def _site(tmp: Path) -> Path:
    """kubesweep and its dependencies installed for CPython 3.11 on x86-64 Linux into tmp/site."""
    dist = tmp / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist),
                    str(ROOT)], check=True, capture_output=True, timeout=300)
    (wheel,) = dist.glob("kubesweep-*.whl")
    site = tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(site), "--python-version", "3.11",
                    "--implementation", "cp", *(arg for p in PLATFORMS for arg in ("--platform", p)), "--only-binary=:all:", "-c", str(ROOT / "requirements.lock"), str(wheel)],
                   check=True, capture_output=True, timeout=900)
    return site


@pytest.fixture(scope="module")
def kubesweep_image(local_cluster, tmp_path_factory):
    context = tmp_path_factory.mktemp("in-cluster")
    shutil.copy(EXAMPLE / "Dockerfile", context / "Dockerfile")
    _site(context)
    return image.ensure(context, "kubesweep/kubesweep", build_args={"BASE": "kubesweep/python-base:bookworm"}).reference


@pytest.fixture(scope="module")
def trainer(local_cluster):
    return image.ensure(EXAMPLES, "kubesweep/mnist", build_args={"BASE": "kubesweep/python-base:bookworm"}).reference


def _objects(kubesweep_ref: str, trainer_ref: str) -> list[dict]:
    """The example's objects, in this test's namespace and with the images built here."""
    docs = [d for d in yaml.safe_load_all((EXAMPLE / "kubesweep-job.yaml").read_text()) if d]
    for doc in docs:
        doc["metadata"]["namespace"] = NAMESPACE
        for subject in doc.get("subjects") or []:
            subject["namespace"] = NAMESPACE
        if doc["kind"] == "ConfigMap":
            grid = yaml.safe_load(doc["data"]["grid.yaml"])
            assert "namespace" not in grid  # the pod's namespace is the sweep's
            grid["image"] = trainer_ref
            doc["data"]["grid.yaml"] = yaml.safe_dump(grid)
        if doc["kind"] == "Job":
            doc["spec"]["template"]["spec"]["containers"][0]["image"] = kubesweep_ref
    return docs


def test_kubesweep_runs_a_sweep_from_a_pod_with_only_its_service_account(api, kubesweep_image, trainer):
    from kubernetes import utils
    from kubernetes.client.exceptions import ApiException

    api["core"].create_namespace({"metadata": {"name": NAMESPACE}})
    try:
        utils.create_from_yaml(api["core"].api_client, yaml_objects=_objects(kubesweep_image, trainer))
        deadline = time.monotonic() + 600
        job = None
        while time.monotonic() < deadline:
            job = api["batch"].read_namespaced_job("kubesweep-mnist", NAMESPACE)
            if job.status.succeeded or job.status.failed:
                break
            time.sleep(2)
        pods = api["core"].list_namespaced_pod(NAMESPACE, label_selector="job-name=kubesweep-mnist").items
        log = api["core"].read_namespaced_pod_log(pods[-1].metadata.name, NAMESPACE) if pods else ""
        assert job is not None and job.status.succeeded == 1, log[-3000:]
        assert "Traceback" not in log and "best trial: mnist-" in log, log[-3000:]
        trials = api["batch"].list_namespaced_job(NAMESPACE, label_selector="kubesweep.io/experiment=mnist").items
        assert len(trials) == 2 and all(t.status.succeeded == 1 for t in trials)
        assert not api["batch"].list_namespaced_job("default", label_selector="kubesweep.io/experiment=mnist").items
    finally:
        try:
            api["core"].delete_namespace(NAMESPACE)
        except ApiException as exc:
            if exc.status != 404:
                raise
