"""The local-cluster plumbing that needs no cluster: recap parsing, node flags, fake nodes, services."""

import os
import sys
import time

import kubernetes_validate
import pytest
import yaml

from kubesweep import cluster, fake_nodes, nodes, services
from kubesweep.versions import KUBERNETES_VERSION, pins

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


def test_node_container_flags_never_ask_for_privileged():
    args = nodes._run_args(nodes.Host("ks-worker-1", ("kube_node",)))
    assert "--privileged" not in args
    assert "--cap-drop=SYS_RESOURCE" in args and "/dev/kmsg" in args and "/var/lib/containerd" in args
    assert args[-1] == nodes.IMAGE and "-p" not in args
    reg = nodes._run_args(nodes.Host("ks-control-plane", ("kube_control_plane", "registry")))
    assert "127.0.0.1:5000:5000" in reg  # the registry host is reachable from this VM's docker


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
    assert services._pid_alive(pid)
    assert services.stop_background("sleeper") is True
    assert not services._pid_alive(pid)
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


def test_file_server_refuses_an_empty_mirror(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBESWEEP_CACHE", str(tmp_path))
    with pytest.raises(services.ServiceError, match="invoke artifacts"):
        services.ensure_file_server(tmp_path / "mirror", "127.0.0.1", 18081)


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


def _host(name="n1", **hostvars):
    return nodes.Host(name, ("kube_node",), hostvars)


def test_a_local_host_with_a_loopback_address_and_port_is_published_on_loopback_only():
    host = _host(ansible_host="127.0.0.1", ansible_port=2231, ansible_user="ops")
    args = nodes._run_args(host)
    assert args[args.index(f"127.0.0.1:{2231}:22") - 1] == "-p"
    assert not any(a.startswith(("0.0.0.0", ":")) or a == "2231:22" for a in args)
    assert (host.ssh_port, host.ssh_user) == (2231, "ops")
    # no loopback address: not a node reached through a published port (docker connection)
    assert _host(ansible_host="192.0.2.5", ansible_port=22).ssh_port is None
    assert _host().ssh_port is None and _host().ssh_user is None


@pytest.mark.parametrize("hostvars, message", [
    ({"ansible_port": "ssh"}, r"ansible_port 'ssh' is not a port number"),
    ({"ansible_port": 22}, r"ansible_port 22 is outside 1024-65535"),
    ({"ansible_port": 70000}, r"outside 1024-65535"),
    ({"ansible_port": 2231, "ansible_user": "root"}, r"ansible_user 'root' must be a non-root user name"),
    ({"ansible_port": 2231, "ansible_user": "ops; rm -rf /"}, r"must be a non-root user name"),
    ({"ansible_port": 2231, "ansible_user": "Ops"}, r"must be a non-root user name"),
    ({"ansible_port": 2231, "ansible_user": "a" * 33}, r"must be a non-root user name"),
    ({"ansible_port": 5000}, r"ansible_port 5000 is the cluster registry's port"),
])
def test_bad_local_ssh_settings_are_refused_before_any_container_is_made(hostvars, message, monkeypatch):
    calls = []
    monkeypatch.setattr(nodes, "_docker", lambda *a, **k: calls.append(a))
    host = _host(ansible_host="127.0.0.1", **hostvars)
    with pytest.raises(nodes.NodeError, match=message):
        nodes.up([host])
    assert calls == []


def test_two_hosts_on_one_port_are_refused(monkeypatch):
    monkeypatch.setattr(nodes, "_docker", lambda *a, **k: pytest.fail("docker was called"))
    hosts = [_host("a", ansible_host="127.0.0.1", ansible_port=2231), _host("b", ansible_host="127.0.0.1", ansible_port=2231)]
    with pytest.raises(nodes.NodeError, match="hosts a and b both have ansible_port 2231"):
        nodes.up(hosts)


def test_each_cluster_gets_its_own_ed25519_key_and_down_forgets_them(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBESWEEP_CACHE", str(tmp_path))
    key = nodes.ssh_key(tmp_path / "inventory" / "local")
    assert key == tmp_path / "ssh" / "local" / "id_ed25519"
    assert key.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert key.with_suffix(".pub").read_text().startswith("ssh-ed25519 ")
    assert key.stat().st_mode & 0o777 == 0o600 and key.parent.stat().st_mode & 0o777 == 0o700
    assert nodes.ssh_key(tmp_path / "x" / "local") == key and key.read_text() == key.read_text()  # kept
    other = nodes.ssh_key(tmp_path / "inventory" / "single")
    assert other.with_suffix(".pub").read_text() != key.with_suffix(".pub").read_text()
    nodes.remove_ssh_keys()
    assert not (tmp_path / "ssh").exists()


def test_inventory_hosts_carry_their_variables():
    hosts = {h.name: h for h in nodes.inventory_hosts(cluster.REPO / "inventory" / "local")}
    assert set(hosts) == {"ks-control-plane", "ks-worker-1", "ks-gpu-1"}
    ports = {name: h.ssh_port for name, h in hosts.items()}
    assert all(ports.values()) and len(set(ports.values())) == 3, ports
    assert {h.ssh_user for h in hosts.values()} == {"kubesweep"}


def test_up_refuses_while_another_local_cluster_s_nodes_run(monkeypatch):
    monkeypatch.setattr(services, "ensure_docker", lambda: "running")
    monkeypatch.setattr(nodes, "inventory_hosts", lambda inv: [_host("ks-single")])
    monkeypatch.setattr(nodes, "existing", lambda: ["ks-control-plane", "ks-single", "ks-worker-1"])
    monkeypatch.setattr(nodes, "up", lambda *a, **k: pytest.fail("no container may be made"))
    with pytest.raises(cluster.ClusterError, match=r"another local cluster are running \(ks-control-plane, ks-worker-1\)"
                                                   r".*`invoke cluster --down` removes them first"):
        cluster.up(cluster.REPO / "inventory" / "single")
