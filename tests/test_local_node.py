"""The local hosts are made by Ansible (playbooks/local_nodes.yml: roles local_node and node_login).

What needs no cluster: a local inventory's bad SSH settings stop on their host, each with its name
and cause, before any container, network or key is made; a missing offline mirror stops
`ansible-playbook site.yml` at once with one line naming the command that builds it. The real
path (containers made, sshd reached, a rerun changing nothing) runs in every cluster test, whose
fixture is `ansible-playbook site.yml`; test_cluster.py checks the SSH login and the refusal of a
second local cluster, test_fleet.py a node added by scale.yml.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from kubesweep.local import cluster

from .conftest import INVENTORY

BAD = {  # host: (its variables, what the message must say)
    "ks-t-low": ({"ansible_port": 22}, "ansible_port 22 must be a port number in 1024-65535"),
    "ks-t-high": ({"ansible_port": 70000}, "ansible_port 70000 must be a port number in 1024-65535"),
    "ks-t-unset": ({}, "ansible_port unset must be a port number"),
    "ks-t-registry": ({"ansible_port": 5000}, "ansible_port 5000 is the cluster registry's or the mirror's port"),
    "ks-t-mirror": ({"ansible_port": 8081}, "ansible_port 8081 is the cluster registry's or the mirror's port"),
    "ks-t-root": ({"ansible_port": 2301, "ansible_user": "root"}, "ansible_user root must be a non-root user name"),
    "ks-t-inject": ({"ansible_port": 2302, "ansible_user": "ops; rm -rf /"},
                    "ansible_user ops; rm -rf / must be a non-root user name"),
    "ks-t-upper": ({"ansible_port": 2303, "ansible_user": "Ops"}, "ansible_user Ops must be a non-root user name"),
    "ks-t-long": ({"ansible_port": 2304, "ansible_user": "a" * 33}, "must be a non-root user name"),
    "ks-t-newline": ({"ansible_port": 2307, "ansible_user": "ops\n"}, "must be a non-root user name"),
    "ks-t-portline": ({"ansible_port": "2308\n"}, "must be a port number in 1024-65535"),
    "ks-t-dup-a": ({"ansible_port": 2305}, "ansible_port 2305 is also ks-t-dup-b's"),
    "ks-t-dup-b": ({"ansible_port": 2305}, "ansible_port 2305 is also ks-t-dup-a's"),
    "ks-t-remote": ({"ansible_host": "192.0.2.5", "ansible_port": 2306}, "ansible_host must be 127.0.0.1"),
}


def _inventory(tmp_path: Path, hosts: dict[str, dict]) -> Path:
    """A local inventory (the repository's group_vars, so local_node is true) with these workers."""
    inv = tmp_path / "inv" / "t-local"
    inv.mkdir(parents=True)
    workers = {name: {"ansible_host": "127.0.0.1", **hostvars} for name, hostvars in hosts.items()}
    (inv / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {"k8s_cluster": {"children": {
        "kube_control_plane": {"hosts": {}}, "kube_node": {"hosts": workers}}}}}}))
    (inv / "group_vars").symlink_to(INVENTORY / "group_vars")
    return inv


def _play(inventory: Path, play: str, cache: Path, monkeypatch) -> cluster.PlaybookRun:
    monkeypatch.setenv("KUBESWEEP_CACHE", str(cache))
    return cluster.playbook(inventory, play, echo=False)


def _containers(names) -> list[str]:
    proc = subprocess.run(["docker", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True)
    return sorted(set(proc.stdout.split()) & set(names)) if proc.returncode == 0 else []


def test_bad_ssh_settings_stop_each_host_with_its_cause_before_anything_is_made(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    hosts = {name: hostvars for name, (hostvars, _) in BAD.items()}
    hosts["ks-t-name"] = {"ansible_port": "ssh"}  # Ansible itself refuses it, naming the file and line
    run = _play(_inventory(tmp_path, hosts), "playbooks/local_nodes.yml", cache, monkeypatch)
    said = " ".join(run.output.split())
    assert run.returncode != 0
    recap = run.recap
    assert set(recap) == set(hosts) and all(r["failed"] == 1 for r in recap.values()), recap
    assert "fatal: [ks-t-name]" in said and "The value 'ssh' could not be converted to 'int'" in said
    assert "hosts.yml:" in said
    for name, (_, cause) in BAD.items():
        assert f"host {name}: " in said and cause in said.split(f"host {name}: ", 1)[1].split("host ks-t-")[0], \
            (name, cause, run.output[-4000:])
    assert "TASK [local_node : Look for the offline mirror]" not in run.output  # stopped at the check
    assert _containers(BAD) == [] and list(cache.iterdir()) == []  # no container, no key


def test_a_missing_mirror_stops_site_yml_at_once_with_one_line_naming_the_command(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    run = _play(_inventory(tmp_path, {"ks-t-fine": {"ansible_port": 2309}}), "site.yml", cache, monkeypatch)
    assert run.returncode != 0
    line = (f"the offline mirror is not built ({cache}/mirror has no SHA256SUMS): "
            "`invoke artifacts --only cluster` builds it")
    assert f"[ERROR]: Task failed: Action failed: {line}" in run.output, run.output[-3000:]
    assert "PLAY [Cluster image registry]" not in run.output and "TASK [registry" not in run.output
    assert _containers(["ks-t-fine"]) == [] and list(cache.iterdir()) == []
