"""The benchmarks' own logic, without a cluster: the makespan workload, and how
bench/bare_control_plane.py turns kubeadm's manifests into host processes."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import bare_control_plane as bare  # noqa: E402 - bench/bare_control_plane.py
import makespan  # noqa: E402 - bench/makespan.py


def test_exact_levels_repeat_and_a_spread_gives_each_trial_its_own_duration():
    assert makespan.trial_durations([30, 60], 10, 0) == ([30, 60], 5)
    values, reps = makespan.trial_durations([30, 45, 60, 75, 90], 2000, 0.1)
    assert reps == 1 and len(values) == 2000 == len(set(values))
    for i, level in enumerate([30, 45, 60, 75, 90]):
        mine = values[i::5]  # levels stay interleaved in plan order
        assert all(0.9 * level <= v <= 1.1 * level for v in mine)
        assert sum(mine) / len(mine) == pytest.approx(level, rel=0.005)  # spread evenly: the sum stays
        assert mine[:10] != sorted(mine[:10])  # and not from short to long in plan order
    # what a zero-overhead client makes of them, longest first: near the ideal, not on it
    ideal = sum(values) / 400
    assert ideal < makespan.list_schedule(sorted(values, reverse=True), 400) < 1.02 * ideal


def test_a_spread_that_would_give_two_trials_one_duration_is_refused():
    with pytest.raises(SystemExit, match="same duration"):
        makespan.trial_durations([1], 10, 0.001)  # ten trials within 1 s ± 1 ms, in millisecond steps


# bench/bare_control_plane.py: the control plane from kubeadm's manifests, as host processes

NODE_IP = "172.29.0.2"


def _manifest(bundle: Path, component: str, command: list[str], env: dict[str, str] | None = None) -> None:
    spec = {"name": component, "image": f"registry.k8s.io/{component}:v1", "command": command}
    if env:
        spec["env"] = [{"name": k, "value": v} for k, v in env.items()]
    (bundle / "manifests").mkdir(parents=True, exist_ok=True)
    (bundle / "manifests" / f"{component}.yaml").write_text(yaml.safe_dump(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": component}, "spec": {"containers": [spec]}}))


def test_bare_command_lines_are_the_manifests_with_local_paths_and_address(tmp_path):
    bundle, bindir, data = tmp_path / "bundle", tmp_path / "bin", tmp_path / "data"
    _manifest(bundle, "kube-apiserver", ["kube-apiserver", f"--advertise-address={NODE_IP}",
                                         "--tls-cert-file=/etc/kubernetes/pki/apiserver.crt",
                                         "--etcd-servers=https://127.0.0.1:2379"], env={"GOGC": "200"})
    _manifest(bundle, "etcd", ["etcd", "--data-dir=/var/lib/etcd",
                               f"--listen-client-urls=https://127.0.0.1:2379,https://{NODE_IP}:2379",
                               f"--initial-cluster=ks-single=https://{NODE_IP}:2380",
                               f"--peer-urls=https://{NODE_IP}5:2380"])  # another address that starts alike
    argv, env = bare.command_line(bundle, "kube-apiserver", bindir, data)
    assert argv == [str(bindir / "kube-apiserver"), "--advertise-address=127.0.0.1",
                    f"--tls-cert-file={bundle}/pki/apiserver.crt", "--etcd-servers=https://127.0.0.1:2379"]
    assert env == {"GOGC": "200"}  # the role's extraEnvs travel with the flags
    argv, env = bare.command_line(bundle, "etcd", bindir, data)
    assert argv == [str(bindir / "etcd"), f"--data-dir={data}/etcd",
                    "--listen-client-urls=https://127.0.0.1:2379",  # the two addresses are one now
                    "--initial-cluster=ks-single=https://127.0.0.1:2380",
                    f"--peer-urls=https://{NODE_IP}5:2380"]  # left alone
    assert env == {}


def test_bare_kubeconfigs_point_at_127_0_0_1_and_check_a_name_the_certificate_holds(tmp_path):
    cfg = {"apiVersion": "v1", "kind": "Config", "current-context": "a",
           "clusters": [{"name": "kubernetes", "cluster": {"server": f"https://{NODE_IP}:6443",
                                                           "certificate-authority-data": "Q0E="}}]}
    (tmp_path / "admin.conf").write_text(yaml.safe_dump(cfg))
    out = bare.local_kubeconfig(tmp_path, "admin.conf", tmp_path / "local.conf")
    cluster = yaml.safe_load(out.read_text())["clusters"][0]["cluster"]
    assert cluster == {"server": "https://127.0.0.1:6443", "tls-server-name": "kubernetes",
                       "certificate-authority-data": "Q0E="}


def test_bare_refuses_ports_another_control_plane_holds():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert bare.busy((port,)) == [port]
    assert bare.busy((port,)) == []


def test_bare_run_refuses_a_bundle_that_is_not_an_export_before_starting_anything(tmp_path, monkeypatch):
    started = []
    monkeypatch.setattr(bare, "start", lambda *a, **k: started.append(a))
    _manifest(tmp_path, "etcd", ["etcd"])
    with pytest.raises(bare.BareError, match=r"lacks manifests/kube-apiserver\.yaml, .*super-admin\.conf, pki/ca\.crt"):
        bare.run(tmp_path, tmp_path / "bin", ["true"])
    assert started == []
