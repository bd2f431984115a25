"""kubesweep serve inside the cluster (marker: cluster): the image of this tree built and pushed
(`invoke serve-image`'s library step), playbooks/serve.yml installs it in a namespace of its own,
the Deployment becomes available, /api/health answers through a port-forward of the Service and
the API asks for the tokens of the Secret, the pod runs as non-root, its ServiceAccount may run
sweeps in its namespace and nowhere else, its state volume outlives the pod, a rerun of the
playbook changes nothing, and the page's TensorBoard button works through the server: it starts
the experiment's TensorBoard (the image `invoke serve-image` built beside its own) and passes
/tensorboard/<experiment>/ on to its Service."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from .conftest import EXAMPLES, INVENTORY

pytestmark = pytest.mark.cluster

NAMESPACE = "kubesweep-serve-test"
NAME = "kubesweep-serve"
TOKEN = "ops-" + "0123456789abcdef" * 2
SETTINGS = {"kubesweep_serve_enabled": True, "kubesweep_serve_namespace": NAMESPACE,
            "kubesweep_serve_tokens": [{"name": "ops", "token": TOKEN, "admin": True}]}


def _play(kubeconfig, image: str, **settings):
    from kubesweep.local import cluster

    return cluster.playbook(INVENTORY, "playbooks/serve.yml",
                            extra=["-e", json.dumps({**SETTINGS, "kubesweep_serve_image": image, **settings})], echo=False)


def _kubectl(kubeconfig, *args: str, timeout: int = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), "-n", NAMESPACE, *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(local_cluster, api):
    from kubernetes.client.exceptions import ApiException

    from kubesweep.local import serve_image, tensorboard_image

    image = serve_image.ensure().reference
    tensorboard_image.ensure()  # its reference file is the role's default kubesweep_serve_tensorboard_image
    deadline = time.monotonic() + 120  # an earlier run's namespace may still be going away
    while time.monotonic() < deadline and NAMESPACE in [n.metadata.name for n in api["core"].list_namespace().items]:
        time.sleep(2)
    first = _play(local_cluster["kubeconfig"], image)
    try:
        assert first.ok, first.output[-4000:]
        yield {"image": image, "first": first, "kubeconfig": local_cluster["kubeconfig"]}
    finally:
        try:
            api["core"].delete_namespace(NAMESPACE)
        except ApiException as exc:
            if exc.status != 404:
                raise


@contextlib.contextmanager
def forwarded(kubeconfig):
    """kubectl port-forward of the Service (to one of its ready pods) on a free local port."""
    forward = subprocess.Popen(["kubectl", "--kubeconfig", str(kubeconfig), "-n", NAMESPACE, "port-forward",
                                f"service/{NAME}", ":8080"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = forward.stdout.readline()
        match = re.search(r"127\.0\.0\.1:(\d+) ->", line)
        assert match, line
        yield int(match.group(1))
    finally:
        forward.terminate()
        forward.wait(timeout=10)


def _get(port: int, path: str, token: str | None = None, body: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        request.add_header("Content-Type", "application/yaml")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_the_playbook_installs_an_available_server_that_answers_through_its_service(installed, api):
    assert installed["first"].recap, installed["first"].output[-2000:]
    assert any(r["changed"] > 0 for r in installed["first"].recap.values())
    deployment = api["apps"].read_namespaced_deployment(NAME, NAMESPACE)
    available = [c for c in deployment.status.conditions if c.type == "Available"]
    assert available and available[0].status == "True"
    assert deployment.spec.template.spec.containers[0].image == installed["image"]
    with forwarded(installed["kubeconfig"]) as port:
        assert _get(port, "/api/health") == (200, b'{"ok":true}')
        # the tokens file is the Secret's: no token, 401; the inventory's token, the API
        assert _get(port, "/api/experiments")[0] == 401
        status, body = _get(port, "/api/experiments", TOKEN)
        assert status == 200 and json.loads(body) == {"experiments": []}


def test_its_service_account_may_run_sweeps_in_its_namespace_only(installed, api):
    from kubernetes import client

    authz = client.AuthorizationV1Api(api["core"].api_client)
    user = f"system:serviceaccount:{NAMESPACE}:{NAME}"

    def allowed(verb: str, resource: str, namespace: str | None = None, group: str = "", sub: str | None = None) -> bool:
        review = authz.create_subject_access_review({"spec": {"user": user, "resourceAttributes": {
            "verb": verb, "resource": resource, "group": group, "namespace": namespace, "subresource": sub}}})
        return review.status.allowed

    assert allowed("create", "jobs", NAMESPACE, "batch") and allowed("watch", "pods", NAMESPACE)
    assert allowed("get", "pods", NAMESPACE, sub="log") and allowed("list", "events", NAMESPACE)
    assert allowed("get", "configmaps", NAMESPACE)
    assert allowed("list", "localqueues", NAMESPACE, "kueue.x-k8s.io") and allowed("watch", "workloads", NAMESPACE, "kueue.x-k8s.io")
    assert not allowed("create", "jobs", "default", "batch")
    assert not allowed("list", "jobs", None, "batch")  # not cluster-wide
    assert not allowed("list", "nodes")
    assert not allowed("get", "secrets", NAMESPACE)  # not even its own tokens
    # with a TensorBoard image (the fixture's): the experiments' TensorBoards, in its namespace only
    assert allowed("create", "deployments", NAMESPACE, "apps") and allowed("create", "services", NAMESPACE)
    assert not allowed("create", "deployments", "default", "apps") and not allowed("create", "services", "default")
    assert not allowed("patch", "deployments", NAMESPACE, "apps")  # TensorBoard's are replaced whole (update)
    assert not allowed("create", "rolebindings", NAMESPACE, "rbac.authorization.k8s.io")


def _pod(api) -> str:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        pods = api["core"].list_namespaced_pod(NAMESPACE, label_selector=f"app.kubernetes.io/instance={NAME}").items
        ready = [p for p in pods if p.metadata.deletion_timestamp is None and p.status.container_statuses
                 and all(c.ready for c in p.status.container_statuses)]
        if len(ready) == 1 and len(pods) == 1:
            return ready[0].metadata.name
        time.sleep(2)
    raise AssertionError(f"no single ready pod of {NAME} in {NAMESPACE} after 180 s")


def test_the_pod_runs_as_non_root_and_its_state_survives_a_pod_delete(installed, api):
    pod = _pod(api)
    uid = _kubectl(installed["kubeconfig"], "exec", pod, "--", "id", "-u")
    assert uid.returncode == 0 and uid.stdout.strip() == "1000", uid.stdout + uid.stderr
    # the server made its state directory on the volume
    listing = _kubectl(installed["kubeconfig"], "exec", pod, "--", "ls", "-a", "/var/lib/kubesweep")
    assert listing.returncode == 0, listing.stderr
    marker = f"written by {pod}"
    wrote = _kubectl(installed["kubeconfig"], "exec", pod, "--", "python3", "-c",
                     f"open('/var/lib/kubesweep/marker', 'w').write({marker!r})")
    assert wrote.returncode == 0, wrote.stderr
    root = _kubectl(installed["kubeconfig"], "exec", pod, "--", "touch", "/opt/kubesweep/x")
    assert root.returncode != 0  # a read-only root filesystem
    api["core"].delete_namespaced_pod(pod, NAMESPACE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and pod in [p.metadata.name for p in api["core"].list_namespaced_pod(NAMESPACE).items]:
        time.sleep(2)
    again = _pod(api)
    assert again != pod
    read = _kubectl(installed["kubeconfig"], "exec", again, "--", "cat", "/var/lib/kubesweep/marker")
    assert read.returncode == 0 and read.stdout == marker, read.stdout + read.stderr


def test_a_rerun_of_the_playbook_changes_nothing(installed):
    again = _play(installed["kubeconfig"], installed["image"])
    assert again.ok, again.output[-4000:]
    assert again.recap and all(r["changed"] == 0 for r in again.recap.values()), again.output[-3000:]


def test_a_server_that_does_not_start_is_said_with_its_pods_state(installed, api):
    from kubernetes.client.exceptions import ApiException

    bad = "kubesweep-serve-bad"
    try:
        run = _play(installed["kubeconfig"], "localhost:5000/kubesweep/serve:absent000000", kubesweep_serve_namespace=bad,
                    kubesweep_serve_ready_timeout_s=20)
        text = " ".join(run.output.split())
        assert not run.ok
        assert f"Deployment {bad}/{NAME} is not available after 20 s (image localhost:5000/kubesweep/serve:absent000000)" in text, \
            run.output[-3000:]
        assert "ErrImagePull" in text or "ImagePullBackOff" in text, run.output[-3000:]
        assert TOKEN not in run.output
    finally:
        try:
            api["core"].delete_namespace(bad)
        except ApiException as exc:
            if exc.status != 404:
                raise


SLEEPER = """\
name: inpod
image: {trainer}
command: [python3, -c, "import time, sys; time.sleep(float(sys.argv[1])); print('score=' + sys.argv[2])", "${{sleep}}", "${{i}}"]
parameters:
  sleep: [10]
  i: {{min: 1, max: 4}}
batchSize: 2
objective: {{metric: score}}
resources: {{cpu: 100m, memory: 64Mi}}
"""


def _until(what, timeout: float, said: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        time.sleep(2)
    raise AssertionError(f"waited {timeout:.0f} s for {said}")


def test_a_sweep_goes_on_when_the_servers_pod_is_replaced(installed, api):
    """Submitted to the server in the cluster, a sweep runs in the server's namespace with nobody
    attached; the pod deleted mid-sweep, the next one resumes it from the state volume and creates
    no Job twice."""
    from kubesweep.local import image

    trainer = image.ensure(EXAMPLES, "kubesweep/mnist", build_args={"BASE": "kubesweep/python-base:bookworm"}).reference

    def jobs():
        return {j.metadata.name: j for j in api["batch"].list_namespaced_job(
            NAMESPACE, label_selector="kubesweep.io/experiment=inpod").items}

    def experiment(port):
        status, body = _get(port, "/api/experiments/inpod", TOKEN)
        return json.loads(body) if status == 200 else None

    pod = _pod(api)
    with forwarded(installed["kubeconfig"]) as port:
        status, body = _get(port, "/api/sweeps", TOKEN, SLEEPER.format(trainer=trainer).encode())
        assert status == 201, body
        assert json.loads(body) == {"experiment": "inpod", "namespace": NAMESPACE, "trials": 4}
        _until(lambda: len(jobs()) >= 2 and (experiment(port) or {}).get("counts", {}).get("running", 0) >= 1, 180,
               "the first trials to run")
    before = {name: job.metadata.uid for name, job in jobs().items()}
    assert 2 <= len(before) < 4
    api["core"].delete_namespaced_pod(pod, NAMESPACE)
    _until(lambda: pod not in [p.metadata.name for p in api["core"].list_namespaced_pod(NAMESPACE).items], 120,
           f"pod {pod} to go")
    _pod(api)
    with forwarded(installed["kubeconfig"]) as port:
        done = _until(lambda: (e := experiment(port)) and e["state"] == "finished" and e, 300, "inpod to finish")
    assert done["counts"]["succeeded"] == 4, done
    after = jobs()
    assert len(after) == 4 and all(after[name].metadata.uid == uid for name, uid in before.items())


TRAINER_WITH_EVENTS = """\
name: tbpod
image: {trainer}
command: [python3, /app/train.py, --epochs=2, "--optimizer=${{opt}}"]
parameters: {{opt: [adam]}}
objective: {{metric: Test accuracy}}
resources: {{cpu: 250m, memory: 256Mi}}
output: {{share: /share}}
"""


def test_the_tensorboard_button_works_through_the_server_in_the_cluster(installed, api):
    """A sweep submitted to the server writes event files on the share; the server's POST starts
    the experiment's TensorBoard with the role's image (its ServiceAccount may, in its namespace)
    and answers a path of its own, which, with the cookie the POST set, serves the trial's scalars
    as TensorBoard reads them, reached at the Service's address from the server's pod; without the
    cookie or the token it is refused."""
    from http.cookies import SimpleCookie

    from kubesweep.local import image
    from kubesweep.local.paths import cache_root

    trainer = image.ensure(EXAMPLES, "kubesweep/mnist", build_args={"BASE": "kubesweep/python-base:bookworm"}).reference
    share = cache_root() / "share" / INVENTORY.name / NAMESPACE / "tbpod"
    try:
        with forwarded(installed["kubeconfig"]) as port:
            status, body = _get(port, "/api/sweeps", TOKEN, TRAINER_WITH_EVENTS.format(trainer=trainer).encode())
            assert status == 201, body
            done = _until(lambda: (e := json.loads(_get(port, "/api/experiments/tbpod", TOKEN)[1]))
                          and e.get("state") == "finished" and e, 300, "tbpod to finish")
            assert done["counts"]["succeeded"] == 1, done
            (trial,) = [t["name"] for t in done["trials"]]
            assert list((share / trial).glob("events.out.tfevents.*")), list(share.glob("*/*"))

            request = urllib.request.Request(f"http://127.0.0.1:{port}/api/experiments/tbpod/tensorboard", data=b"",
                                             headers={"Authorization": f"Bearer {TOKEN}"})
            with urllib.request.urlopen(request, timeout=180) as answer:
                assert json.loads(answer.read()) == {"url": "/tensorboard/tbpod/"}
                cookie = SimpleCookie(answer.headers["Set-Cookie"])
            ticket = cookie["kubesweep-tensorboard"]
            assert ticket["path"] == "/tensorboard/tbpod/" and ticket["httponly"]

            def tags(headers: dict[str, str]) -> tuple[int, object]:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/tensorboard/tbpod/data/plugin/scalars/tags",
                                                 headers=headers)
                try:
                    with urllib.request.urlopen(request, timeout=30) as answer:
                        return answer.status, json.loads(answer.read())
                except urllib.error.HTTPError as exc:
                    return exc.code, None

            with_cookie = {"Cookie": f"kubesweep-tensorboard={ticket.value}"}
            found = _until(lambda: (got := tags(with_cookie))[0] == 200 and trial in got[1] and got[1], 60,
                           "TensorBoard to list the trial's run")
            assert sorted(found[trial]) == ["loss", "test_accuracy", "test_loss", "train_accuracy", "val_accuracy"]
            assert tags({})[0] == 401
            assert tags({"Cookie": "kubesweep-tensorboard=1.00"})[0] == 401
            assert tags({"Authorization": f"Bearer {TOKEN}"})[0] == 200
            status, page = _get(port, "/tensorboard/tbpod/", None)
            assert status == 401
        deployment = api["apps"].read_namespaced_deployment("tensorboard-tbpod", NAMESPACE)
        assert deployment.spec.template.spec.containers[0].image == \
            _pod_spec(api).containers[0].args[_pod_spec(api).containers[0].args.index("--tensorboard-image") + 1]
    finally:
        import shutil

        shutil.rmtree(share, ignore_errors=True)
        try:
            share.parent.rmdir()
        except OSError:
            pass


def _pod_spec(api):
    return api["apps"].read_namespaced_deployment(NAME, NAMESPACE).spec.template.spec


def test_other_tokens_restart_the_pod_and_a_secret_made_by_hand_is_used_as_it_is(installed, api):
    """Runs last: it leaves the server with another token."""
    pod = _pod(api)
    other = "other-" + "fedcba9876543210" * 2
    changed = _play(installed["kubeconfig"], installed["image"],
                    kubesweep_serve_tokens=[{"name": "ops", "token": other, "admin": True}])
    assert changed.ok and changed.changed > 0, changed.output[-3000:]
    assert other not in changed.output
    again = _pod(api)
    assert again != pod  # the tokens file is read at start: the pod template's digest changed
    with forwarded(installed["kubeconfig"]) as port:
        assert _get(port, "/api/experiments", TOKEN)[0] == 401
        assert _get(port, "/api/experiments", other)[0] == 200
    # no tokens in the inventory: the Secret in the namespace is used as it is (here the one just
    # written, as if made by hand), so nothing changes and the pod stays
    kept = _play(installed["kubeconfig"], installed["image"], kubesweep_serve_tokens=[])
    assert kept.ok and kept.changed == 0, kept.output[-3000:]
    assert _pod(api) == again
