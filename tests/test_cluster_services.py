"""What trainers use besides their own pod: cluster DNS (CoreDNS) and the default StorageClass
(local-path-provisioner), on the real local cluster from our playbooks (marker: cluster)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import uuid

import pytest
import yaml
from kubernetes.client.rest import ApiException

from kubesweep.local import image
from kubesweep.k8s.versions import pins

from .conftest import EXAMPLES, ROOT

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def python_image(local_cluster):
    """An image with python3 in the cluster registry (the example trainer)."""
    return image.ensure(EXAMPLES, "kubesweep/mnist", build_args={"BASE": "kubesweep/python-base:bookworm"}).reference


@pytest.fixture
def namespace(api):
    name = f"svc-{uuid.uuid4().hex[:6]}"
    api["core"].create_namespace({"metadata": {"name": name}})
    yield name
    api["core"].delete_namespace(name, propagation_policy="Background")


def _pod(name, image_ref, script, **spec):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"restartPolicy": "Never", "containers": [
                {"name": "main", "image": image_ref, "command": ["python3", "-c", script]}], **spec}}


SERVE = "import http.server as h; h.HTTPServer(('', 8080), type('H', (h.BaseHTTPRequestHandler,), {'do_GET': " \
        "lambda s: (s.send_response(200), s.end_headers(), s.wfile.write(b'0.875'))})).serve_forever()"


def _wait(what, probe, timeout=120.0, every=1.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"{what} did not happen in {timeout:.0f}s (last: {last!r})")


def _running_ip(api, namespace, name):
    pod = api["core"].read_namespaced_pod(name, namespace)
    ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
    return pod.status.pod_ip if pod.status.phase == "Running" and ready else None


def _finished(api, namespace, name):
    pod = api["core"].read_namespaced_pod(name, namespace)
    return pod if pod.status.phase in ("Succeeded", "Failed") else None


def test_coredns_runs_from_the_image_built_here_behind_the_kube_dns_service(api):
    deployment = api["apps"].read_namespaced_deployment("coredns", "kube-system")
    assert deployment.status.available_replicas == deployment.spec.replicas >= 1
    images = {c.image for c in deployment.spec.template.spec.containers}
    assert images == {f"registry.k8s.io/coredns/coredns:v{pins()['coredns_version']}"}
    service = api["core"].read_namespaced_service("kube-dns", "kube-system")
    assert service.spec.cluster_ip == "10.96.0.10"


def test_names_resolve_in_a_pod_service_in_another_namespace_headless_records(api, namespace, python_image):
    core = api["core"]
    core.create_namespaced_pod(namespace, _pod("echo", python_image, SERVE))
    core.create_namespaced_service(namespace, {"metadata": {"name": "echo"}, "spec": {
        "selector": {"app": "echo"}, "ports": [{"port": 80, "targetPort": 8080}]}})
    # a headless Service and a pod with hostname/subdomain: the pod gets its own A record
    core.create_namespaced_service(namespace, {"metadata": {"name": "peers"}, "spec": {
        "clusterIP": "None", "selector": {"app": "web-0"}, "ports": [{"port": 8080}]}})
    core.create_namespaced_pod(namespace, _pod("web-0", python_image, SERVE, hostname="web-0", subdomain="peers"))
    echo_ip = _wait("echo running", lambda: _running_ip(api, namespace, "echo"))
    web_ip = _wait("web-0 running", lambda: _running_ip(api, namespace, "web-0"))
    echo_cluster_ip = core.read_namespaced_service("echo", namespace).spec.cluster_ip

    names = {"api": "kubernetes.default.svc.cluster.local", "short": f"echo.{namespace}",
             "full": f"echo.{namespace}.svc.cluster.local", "headless": f"peers.{namespace}.svc.cluster.local",
             "pod": f"web-0.peers.{namespace}.svc.cluster.local"}
    probe = textwrap.dedent(f"""\
        import json, socket, time, urllib.request
        names = {names!r}
        out = {{}}
        for key, name in names.items():
            for attempt in range(30):  # records appear once the endpoints are ready
                try:
                    out[key] = sorted({{a[4][0] for a in socket.getaddrinfo(name, 80, socket.AF_INET)}})
                    break
                except socket.gaierror as exc:
                    out[key] = str(exc)
                    time.sleep(1)
        out["body"] = urllib.request.urlopen("http://echo.{namespace}/", timeout=10).read().decode()
        print(json.dumps(out))
        """)
    client = f"dns-client-{uuid.uuid4().hex[:6]}"
    core.create_namespaced_pod("default", _pod(client, python_image, probe))  # another namespace
    try:
        pod = _wait("the DNS client pod", lambda: _finished(api, "default", client), timeout=180)
        log = core.read_namespaced_pod_log(client, "default")
        assert pod.status.phase == "Succeeded", log
        got = json.loads(log.strip().splitlines()[-1])
        assert got == {"api": ["10.96.0.1"], "short": [echo_cluster_ip], "full": [echo_cluster_ip],
                       "headless": [web_ip], "pod": [web_ip], "body": "0.875"}, (got, echo_ip)
    finally:
        core.delete_namespaced_pod(client, "default", grace_period_seconds=0)


def test_a_trial_reaches_a_service_by_name_and_reports_what_it_served(api, local_cluster, namespace, python_image,
                                                                      tmp_path):
    core = api["core"]
    core.create_namespaced_pod(namespace, _pod("metric-server", python_image, SERVE))
    core.create_namespaced_service(namespace, {"metadata": {"name": "metrics"}, "spec": {
        "selector": {"app": "metric-server"}, "ports": [{"port": 80, "targetPort": 8080}]}})
    _wait("metric-server running", lambda: _running_ip(api, namespace, "metric-server"))
    fetch = (f"import urllib.request; print('accuracy: ' + urllib.request.urlopen("
             f"'http://metrics.{namespace}.svc.cluster.local/', timeout=20).read().decode())")
    name = f"dns-{namespace[-6:]}"
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({
        "name": name, "namespace": namespace, "image": python_image,
        "command": ["python3", "-c", fetch, "${lr}"],
        "parameters": {"lr": [0.1]},
        "objective": {"metric": "accuracy", "direction": "maximize"},
        "resources": {"cpu": "100m", "memory": "128Mi"},
    }))
    r = subprocess.run([sys.executable, "-m", "invoke", "sweep", "--grid", str(grid), "--jobs-dir", str(tmp_path / "jobs"),
                        "--results-dir", str(tmp_path / "results"), "--kubeconfig", str(local_cluster["kubeconfig"])],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    best = json.loads((tmp_path / "results" / name / "best.json").read_text())
    assert best["succeeded"] == 1 and best["best"]["value"] == pytest.approx(0.875), best


def test_a_claim_on_the_default_class_binds_and_its_files_outlive_the_pod(api, namespace, python_image):
    core = api["core"]
    classes = api["storage"].list_storage_class().items
    default = [c.metadata.name for c in classes
               if (c.metadata.annotations or {}).get("storageclass.kubernetes.io/is-default-class") == "true"]
    assert default == ["local-path"]
    core.create_namespaced_persistent_volume_claim(namespace, {"metadata": {"name": "data"}, "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "64Mi"}}}})  # no class: the default
    volume = {"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]}

    def with_mount(pod):
        pod["spec"]["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
        return pod

    write = "import pathlib; pathlib.Path('/data/model.txt').write_text('epoch=3 accuracy=0.91')"
    core.create_namespaced_pod(namespace, with_mount(_pod("writer", python_image, write, **volume)))
    pod = _wait("the writer pod", lambda: _finished(api, namespace, "writer"), timeout=180)
    assert pod.status.phase == "Succeeded", core.read_namespaced_pod_log("writer", namespace)
    claim = core.read_namespaced_persistent_volume_claim("data", namespace)
    assert claim.status.phase == "Bound" and claim.spec.storage_class_name == "local-path"
    node = pod.spec.node_name
    core.delete_namespaced_pod("writer", namespace, grace_period_seconds=0)
    _wait("the writer pod gone", lambda: not core.list_namespaced_pod(namespace, field_selector="metadata.name=writer").items)

    read = "print(open('/data/model.txt').read())"
    core.create_namespaced_pod(namespace, with_mount(_pod("reader", python_image, read, **volume)))
    pod = _wait("the reader pod", lambda: _finished(api, namespace, "reader"), timeout=180)
    log = core.read_namespaced_pod_log("reader", namespace)
    assert pod.status.phase == "Succeeded" and log.strip() == "epoch=3 accuracy=0.91", log
    assert pod.spec.node_name == node  # a local volume keeps its pods on its node
    pv = core.read_persistent_volume(claim.spec.volume_name)
    assert pv.spec.storage_class_name == "local-path" and pv.spec.host_path.path.startswith("/opt/local-path-provisioner/")

    # Delete: the claim takes its volume (and the directory on the node) with it
    core.delete_namespaced_pod("reader", namespace, grace_period_seconds=0)
    core.delete_namespaced_persistent_volume_claim("data", namespace)

    def pv_gone():
        try:
            core.read_persistent_volume(claim.spec.volume_name)
        except ApiException as exc:
            return exc.status == 404
        return False

    _wait("the volume released and deleted", pv_gone, timeout=180)
