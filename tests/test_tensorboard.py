"""TensorBoard per experiment without a cluster: the Deployment and Service (names, labels, the
read-only share, non-root), ensure's create-or-reuse against a stand-in API, the port-forward's
byte pumping, the command's argv and namespace, and the event files examples/mnist/train.py writes."""

from __future__ import annotations

import json
import socket
import struct
import threading
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from kubesweep.cli import tensorboard as tb_cli
from kubesweep.cli.app import main
from kubesweep.k8s import client as kube
from kubesweep.plan import job as manifest
from kubesweep.run import tensorboard as tb
from kubesweep.local import tensorboard_image
from kubesweep.spec.rules import DNS_LABEL
from kubesweep.sweep import Target, Workspace

from .conftest import EXAMPLES


# ------------------------------------------------------------------------------ manifests


def test_names_are_dns_labels_of_at_most_63_and_long_experiments_stay_apart():
    assert tb.name_for("mnist") == "tensorboard-mnist"
    long_a, long_b = "a" * 60 + "-x1", "a" * 60 + "-x2"
    names = {tb.name_for(long_a), tb.name_for(long_b)}
    assert len(names) == 2
    for name in names | {tb.name_for("b" * 63)}:
        assert len(name) <= 63 and DNS_LABEL.fullmatch(name) and name.startswith("tensorboard-")
    for bad in ("Mnist", "a_b", "-a", "", "a" * 64, "a/b"):
        with pytest.raises(tb.TensorBoardError, match="not a Kubernetes name"):
            tb.name_for(bad)


def test_the_deployment_reads_the_experiments_share_read_only_as_a_non_root_user():
    dep = tb.deployment("vision", "mnist", image="localhost:5000/kubesweep/tensorboard:abc")
    pod = dep["spec"]["template"]["spec"]
    (ctr,) = pod["containers"]
    assert ctr["args"][:2] == ["--logdir", "/share/vision/mnist"]
    # served under /tensorboard/<experiment>/, which `kubesweep serve` passes through as it is
    assert ctr["args"][ctr["args"].index("--path_prefix") + 1] == tb.path_prefix("mnist") == "/tensorboard/mnist"
    assert ctr["readinessProbe"]["httpGet"] == {"path": "/tensorboard/mnist/data/environment", "port": 6006}
    assert ctr["image"] == "localhost:5000/kubesweep/tensorboard:abc"
    assert {"name": "share", "mountPath": "/share", "readOnly": True} in ctr["volumeMounts"]
    assert {"name": "share", "hostPath": {"path": "/share", "type": "Directory"}} in pod["volumes"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 1000
    assert ctr["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                      "capabilities": {"drop": ["ALL"]}}
    assert pod["automountServiceAccountToken"] is False
    assert ctr["resources"]["requests"] == {"cpu": "50m", "memory": "128Mi"}
    # its own label, not the trials': the runner and `status` read kubesweep.io/experiment as trials
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert manifest.L_EXPERIMENT not in labels and labels[tb.L_TENSORBOARD] == "mnist"
    assert labels["app.kubernetes.io/managed-by"] == "kubesweep"
    svc = tb.service("vision", "mnist")
    selector = svc["spec"]["selector"]
    assert selector == dep["spec"]["selector"]["matchLabels"] and selector.items() <= labels.items()
    assert svc["metadata"]["name"] == dep["metadata"]["name"] == "tensorboard-mnist"
    assert svc["spec"]["ports"][0]["targetPort"] == ctr["ports"][0]["containerPort"] == 6006


def test_another_share_is_mounted_where_the_trials_mount_it_and_bad_ones_are_refused():
    dep = tb.deployment("ns", "e", image="i", share="/mnt/nfs/")
    pod = dep["spec"]["template"]["spec"]
    assert pod["containers"][0]["args"][1] == "/mnt/nfs/ns/e"
    assert pod["volumes"][0]["hostPath"]["path"] == "/mnt/nfs"
    for bad in ("share", "/", "/share/../etc", "/a//b", ""):
        with pytest.raises(tb.TensorBoardError, match="absolute, normalised"):
            tb.deployment("ns", "e", image="i", share=bad)
    with pytest.raises(tb.TensorBoardError, match="namespace 'Bad'"):
        tb.deployment("Bad", "e", image="i")


# ---------------------------------------------------------------------- ensure, stand-in API


class FakeApi:
    """Deployments and Services by path, as the API server keeps them; every write recorded."""

    def __init__(self) -> None:
        self.objects: dict[str, dict] = {}
        self.writes: list[tuple[str, str]] = []

    def request(self, c, method, path, *, query=None, body=None, **_):
        from kubernetes.client.exceptions import ApiException

        if method == "GET":
            if path in self.objects:
                return self.objects[path]
            raise ApiException(status=404, reason="Not Found")
        self.writes.append((method, path))
        if method == "POST":
            path = f"{path}/{body['metadata']['name']}"
            if path in self.objects:
                raise ApiException(status=409, reason="AlreadyExists")
        self.objects[path] = {**body, "metadata": {**body["metadata"], "resourceVersion": str(len(self.writes))}}
        return self.objects[path]


@pytest.fixture
def fake(monkeypatch):
    api = FakeApi()
    monkeypatch.setattr(tb.kube, "request", api.request)
    return api


def test_ensure_creates_once_and_a_second_call_writes_nothing(fake):
    assert tb.ensure(None, "team-a", "mnist", image="img:1") == "tensorboard-mnist"
    assert fake.writes == [("POST", "/apis/apps/v1/namespaces/team-a/deployments"),
                           ("POST", "/api/v1/namespaces/team-a/services")]
    assert tb.ensure(None, "team-a", "mnist", image="img:1") == "tensorboard-mnist"
    assert len(fake.writes) == 2
    # another image: the Deployment is updated in place, the Service left
    tb.ensure(None, "team-a", "mnist", image="img:2")
    assert fake.writes[2:] == [("PUT", "/apis/apps/v1/namespaces/team-a/deployments/tensorboard-mnist")]
    dep = fake.objects["/apis/apps/v1/namespaces/team-a/deployments/tensorboard-mnist"]
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "img:2"
    assert dep["metadata"]["resourceVersion"] == "3"


def test_ensure_leaves_an_object_of_the_same_name_it_did_not_make(fake):
    foreign = tb.deployment("team-a", "mnist", image="x")
    foreign["metadata"]["labels"] = {"app": "someone-elses"}
    fake.objects["/apis/apps/v1/namespaces/team-a/deployments/tensorboard-mnist"] = foreign
    with pytest.raises(tb.TensorBoardError, match="is not experiment mnist's TensorBoard"):
        tb.ensure(None, "team-a", "mnist", image="img:1")
    assert fake.writes == []


def test_bad_input_sends_nothing(fake):
    for kwargs in ({"image": ""}, {"image": "i", "share": "rel"}):
        with pytest.raises(tb.TensorBoardError):
            tb.ensure(None, "team-a", "mnist", **kwargs)
    with pytest.raises(tb.TensorBoardError):
        tb.ensure(None, "team-a", "Not_A_Name", image="i")
    assert fake.writes == []


# ------------------------------------------------------------------------------ forward


class FakePortForward:
    """kubernetes.stream.portforward's object: .socket(port) is this end of a socket pair whose
    other end a small HTTP server answers (standing in for the pod's TensorBoard)."""

    opened: list[tuple[str, str, str]] = []

    def __init__(self, pod: str, namespace: str, ports: str) -> None:
        FakePortForward.opened.append((pod, namespace, ports))
        self.mine, theirs = socket.socketpair()
        threading.Thread(target=self._answer, args=(theirs,), daemon=True).start()

    @staticmethod
    def _answer(sock: socket.socket) -> None:
        with sock:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    return
                data += chunk
            path = data.split(b" ")[1]
            body = json.dumps({"path": path.decode()}).encode() + b"x" * 200_000  # several reads' worth
            sock.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\n\r\n" + body)

    def socket(self, port: int) -> socket.socket:
        assert port == 6006
        return self.mine

    def close(self) -> None:
        self.mine.close()


def test_forward_carries_each_connection_through_its_own_stream_until_closed(monkeypatch, tmp_path):
    import kubernetes.stream

    from .fakeapi import write_kubeconfig

    monkeypatch.setattr(tb, "ready_pod", lambda c, ns, svc, timeout_s=0: ("tensorboard-mnist-abc", 6006))
    monkeypatch.setattr(kubernetes.stream, "portforward",
                        lambda method, pod, ns, ports: FakePortForward(pod, ns, ports))
    FakePortForward.opened = []
    c = kube.clients(str(write_kubeconfig(tmp_path / "config", "http://127.0.0.1:9")))
    with tb.forward(c, "team-a", "tensorboard-mnist", path="/tensorboard/mnist/") as fwd:
        assert fwd.url == f"http://127.0.0.1:{fwd.port}/tensorboard/mnist/" and fwd.port > 0
        for path in ("data/plugin/scalars/tags", "data/environment"):
            body = urllib.request.urlopen(fwd.url + path, timeout=10).read()
            assert json.loads(body[: body.index(b"}") + 1]) == {"path": "/tensorboard/mnist/" + path}
            assert len(body) > 200_000
    assert FakePortForward.opened == [("tensorboard-mnist-abc", "team-a", "6006")] * 2
    with pytest.raises(OSError):  # no longer listening
        socket.create_connection(("127.0.0.1", fwd.port), timeout=2)


def test_ready_pod_says_why_none_is_ready(monkeypatch):
    svc = tb.service("team-a", "mnist")
    pod = {"metadata": {"name": "p"}, "status": {"conditions": [{"type": "Ready", "status": "False"}],
                                                 "containerStatuses": [{"state": {"waiting": {
                                                     "reason": "ImagePullBackOff", "message": "not found"}}}]}}

    def request(c, method, path, *, query=None, **_):
        return svc if path.endswith("/services/tensorboard-mnist") else {"items": [pod]}

    monkeypatch.setattr(tb.kube, "request", request)
    with pytest.raises(tb.TensorBoardError, match="ImagePullBackOff: not found"):
        tb.ready_pod(None, "team-a", "tensorboard-mnist", timeout_s=0)
    pod["status"]["conditions"][0]["status"] = "True"
    assert tb.ready_pod(None, "team-a", "tensorboard-mnist", timeout_s=0) == ("p", 6006)


# ------------------------------------------------------------------------------ the command


def test_the_command_takes_its_namespace_from_the_flag_the_plan_or_the_context(tmp_path, monkeypatch):
    where = Workspace.under(tmp_path)
    target = Target(str(tmp_path / "none"), None)
    assert tb_cli.namespace_of("mnist", "given", where, target) == "given"
    assert tb_cli.namespace_of("mnist", None, where, target) == "default"
    plan = tmp_path / "jobs" / "mnist" / "plan.json"
    plan.parent.mkdir(parents=True)
    plan.write_text('{"experiment": "mnist", "namespace": "vision", "image": "i", "batches": 1, "trials": [\n'
                    '  {"name": "mnist-1", "batch": "batch-000", "file": "f", "params": {}}\n]}\n')
    assert json.loads(plan.read_text())["namespace"] == "vision"
    assert tb_cli.namespace_of("mnist", None, where, target) == "vision"


def test_the_command_refuses_a_bad_name_before_building_or_sending(monkeypatch):
    built = []
    monkeypatch.setattr(tensorboard_image, "ensure", lambda *a, **k: built.append(a))
    result = CliRunner().invoke(main, ["--kubeconfig", "/nonexistent", "tensorboard", "Bad_Name"])
    assert result.exit_code == 2 and "experiment 'Bad_Name' is not a Kubernetes name" in result.output
    assert built == []
    result = CliRunner().invoke(main, ["--kubeconfig", "/nonexistent", "tensorboard", "mnist", "--image", "i"])
    assert result.exit_code == 2 and "no kubeconfig at /nonexistent" in result.output


def test_the_image_is_installed_for_the_images_python_by_pip_from_wheels_only(tmp_path):
    argv = tensorboard_image.pip_argv(tmp_path, "2.21.0")
    assert argv[1:4] == ["-m", "pip", "install"] and "tensorboard==2.21.0" in argv
    for flag, value in (("--python-version", "3.11"), ("--platform", "manylinux2014_x86_64"), ("--target", str(tmp_path))):
        assert argv[argv.index(flag) + 1] == value
    assert "--only-binary=:all:" in argv
    assert tensorboard_image.version() == "2.21.0"  # versions.yml's pin
    assert 'ENTRYPOINT ["python3", "-m", "tensorboard.main"]' in tensorboard_image.DOCKERFILE
    assert "USER 1000:1000" in tensorboard_image.DOCKERFILE


# ------------------------------------------------------------- the trainer's event files


def _records(path: Path):
    """The TFRecord records of an event file, each CRC checked."""
    train = _train()
    data, at = path.read_bytes(), 0
    while at < len(data):
        head = data[at:at + 8]
        (length,) = struct.unpack("<Q", head)
        assert data[at + 8:at + 12] == train._masked(head)
        body = data[at + 12:at + 12 + length]
        assert data[at + 12 + length:at + 16 + length] == train._masked(body)
        at += 16 + length
        yield body


def _fields(buf: bytes):
    """(field number, value) of a protobuf message: varints, 64-bit, length-delimited, 32-bit."""
    at = 0

    def varint():
        nonlocal at
        shift = value = 0
        while True:
            byte = buf[at]
            at += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    while at < len(buf):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            yield number, varint()
        elif wire == 1:
            yield number, buf[at:at + 8]
            at += 8
        elif wire == 2:
            n = varint()
            yield number, buf[at:at + n]
            at += n
        elif wire == 5:
            yield number, buf[at:at + 4]
            at += 4
        else:
            raise AssertionError(f"wire type {wire}")


def _train():
    import importlib.util

    spec = importlib.util.spec_from_file_location("mnist_train", EXAMPLES / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_crc32c_is_castagnolis():
    assert _train().crc32c(b"123456789") == 0xE3069283  # the check value of CRC-32C


def test_train_py_writes_an_event_file_of_its_curve_and_without_it_none(tmp_path, capsys):
    train = _train()
    assert train.main(["2", "adam", "0.1", "--output-dir", str(tmp_path / "t")]) == 0
    (events,) = (tmp_path / "t").glob("events.out.tfevents.*")
    records = [dict(_fields(r)) for r in _records(events)]
    assert records[0][3] == b"brain.Event:2"
    scalars: dict[str, list[tuple[int, float]]] = {}
    for event in records[1:]:
        for number, value in _fields(event[5]):
            fields = dict(_fields(value))
            assert number == 1
            scalars.setdefault(fields[1].decode(), []).append((event[2], struct.unpack("<f", fields[2])[0]))
    metrics = json.loads((tmp_path / "t" / "metrics.json").read_text())
    assert [s for s, _ in scalars["val_accuracy"]] == [1, 2]
    assert [round(v, 4) for _, v in scalars["val_accuracy"]] == [e["val_accuracy"] for e in metrics["epochs"]]
    assert round(scalars["test_accuracy"][0][1], 4) == metrics["test_accuracy"] and scalars["test_accuracy"][0][0] == 2
    assert sorted(scalars) == ["loss", "test_accuracy", "test_loss", "train_accuracy", "val_accuracy"]
    assert train.main(["1", "--no-tensorboard", "--output-dir", str(tmp_path / "n")]) == 0
    assert not list((tmp_path / "n").glob("events.*")) and (tmp_path / "n" / "metrics.json").is_file()


def test_a_refusal_is_one_line_and_nothing_is_created(monkeypatch):
    from kubernetes.client.exceptions import ApiException

    sent = []

    def request(c, method, path, **_):
        sent.append((method, path))
        exc = ApiException(status=403, reason="Forbidden")
        exc.body = json.dumps({"kind": "Status", "message": 'deployments.apps "tensorboard-mnist" is forbidden: '
                               'User "alice" cannot get resource "deployments" in API group "apps" in the namespace '
                               '"team-a"', "reason": "Forbidden", "code": 403})
        raise exc

    monkeypatch.setattr(tb.kube, "request", request)
    with pytest.raises(tb.TensorBoardError, match="alice may not get deployments") as err:
        tb.ensure(None, "team-a", "mnist", image="i")
    assert "\n" not in str(err.value) and sent == [("GET", "/apis/apps/v1/namespaces/team-a/deployments/tensorboard-mnist")]
