"""The local-cluster plumbing that needs no cluster: recap parsing, fake nodes, services, inventories."""

import os
import sys
import time

import kubernetes_validate
import yaml

from kubesweep.local import cluster
from kubesweep.local.paths import checkout
from kubesweep.local import fake_nodes
from kubesweep.local import nodes
from kubesweep.local import services
from kubesweep.k8s.versions import KUBERNETES_VERSION, pins

RECAP = """
PLAY RECAP *********************************************************************
ks-control-plane           : ok=41   changed=0    unreachable=0    failed=0    skipped=7    rescued=0    ignored=0
ks-worker-1                : ok=30   changed=2    unreachable=0    failed=0    skipped=9    rescued=0    ignored=0
localhost                  : ok=3    changed=0    unreachable=0    failed=1    skipped=0    rescued=0    ignored=0
"""


def test_parse_recap():
    recap = cluster.parse_recap("TASK [x]\nok: [a]\n" + RECAP)
    assert recap["ks-control-plane"] == {"ok": 41, "changed": 0, "unreachable": 0, "failed": 0, "skipped": 7}
    assert recap["ks-worker-1"]["changed"] == 2
    run = cluster.PlaybookRun(0, 1.0, recap)
    assert run.changed == 2 and not run.ok  # localhost failed


def test_fake_node_objects_are_valid_nodes_advertising_gpus():
    node = fake_nodes.node_object("kwok-gpu-0001", 8, "32", "256Gi", 110)
    kubernetes_validate.validate(node, KUBERNETES_VERSION, strict=True)
    assert node["status"]["capacity"]["nvidia.com/gpu"] == "8"
    assert node["metadata"]["annotations"][fake_nodes.ANNOTATION] == "fake"
    assert node["spec"]["taints"][0]["effect"] == "NoSchedule"
    assert "kubernetes.io/os" not in node["metadata"]["labels"]  # kube-proxy's DaemonSet selects on it


def test_kwok_lists_pods_on_new_nodes_with_more_workers_than_it_plays_node_stages(tmp_path, monkeypatch):
    """kwok's per-node pod list must finish before a node is schedulable (see POD_SYNC_WORKERS),
    and kwok must keep node leases (see NODE_LEASE_SECONDS)."""
    monkeypatch.setenv("KUBESWEEP_CACHE", str(tmp_path))
    stages = tmp_path / "kwok-stages"
    stages.mkdir()
    (stages / "pod-ready.yaml").write_text("kind: Stage\n")
    binary = fake_nodes.kwok_binary("0.0.0")
    binary.parent.mkdir(parents=True)
    binary.write_text("")
    started = {}

    def start_background(name, argv):  # the boundary: the process itself is started in test_cluster
        started[name] = argv
        return 1

    monkeypatch.setattr(fake_nodes.services, "start_background", start_background)
    fake_nodes.start_kwok(tmp_path / "kubeconfig", "0.0.0")
    options = yaml.safe_load((tmp_path / "run" / "kwok-configuration.yaml").read_text())["options"]
    assert options["podsOnNodeSyncParallelism"] > options["nodePlayStageParallelism"]
    assert options["podPlayStageParallelism"] == fake_nodes.POD_STAGE_WORKERS
    assert options["nodeLeaseDurationSeconds"] == fake_nodes.NODE_LEASE_SECONDS > 0  # kwok's own default keeps no leases
    argv = started["kwok"]
    assert argv[argv.index("--config") + 1] == str(tmp_path / "run" / "kwok-configuration.yaml")
    assert str(stages / "pod-ready.yaml") in argv


def test_background_service_start_and_stop(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBESWEEP_CACHE", str(tmp_path))
    pid = services.start_background("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"])
    assert services.start_background("sleeper", ["false"]) == pid  # already running: not started twice
    assert services.pid_alive(pid)
    assert services.stop_background("sleeper") is True
    assert not services.pid_alive(pid)
    assert services.stop_background("sleeper") is False


def test_a_background_service_gets_the_environment_it_is_given(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBESWEEP_CACHE", str(tmp_path))
    out = tmp_path / "env.txt"
    code = ("import os, sys; t = sys.argv[1] + '.tmp'; open(t, 'w').write(os.environ['GOGC'] + ' ' + os.environ['KUBESWEEP_CACHE']);"
            " os.replace(t, sys.argv[1])")
    services.start_background("envy", [sys.executable, "-c", code, str(out)], {"GOGC": "200"})
    deadline = time.monotonic() + 10
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert out.read_text() == f"200 {tmp_path}"  # added to this process's environment, not instead of it
    assert "GOGC" not in os.environ or os.environ["GOGC"] != "200"  # and not left in ours
    services.stop_background("envy")


def test_port_check_sees_a_listener():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert not services.port_free("127.0.0.1", s.getsockname()[1])


def test_pins_are_complete():
    p = pins()
    assert p["kube_version"] == KUBERNETES_VERSION
    for key in ("etcd_version", "pause_version", "cni_version", "crictl_version", "kwok_version"):
        assert p.get(key), key


def test_failure_excerpt_names_the_failing_task():
    out = ("TASK [containerd : Install] ***\nok: [a]\nTASK [control_plane : Run kubeadm init] ****\n"
           "fatal: [cp]: FAILED! =>\n    msg: non-zero return code\n    rc: 1\n\nPLAY RECAP ***\n")
    text = cluster.failure_excerpt(out)
    assert text.startswith("TASK [control_plane : Run kubeadm init]")
    assert "msg: non-zero return code" in text and "containerd" not in text


def test_inventory_hosts_carry_their_variables():
    hosts = {h.name: h for h in nodes.inventory_hosts(checkout() / "inventory" / "local")}
    assert set(hosts) == {"ks-control-plane", "ks-worker-1", "ks-gpu-1"}
    ports = {name: h.vars["ansible_port"] for name, h in hosts.items()}
    assert len(set(ports.values())) == 3 and all(1024 <= p <= 65535 for p in ports.values()), ports
    assert {h.vars["ansible_user"] for h in hosts.values()} == {"kubesweep"}
    assert all(h.vars["local_node"] is True and h.vars["ansible_host"] == "127.0.0.1" for h in hosts.values())
