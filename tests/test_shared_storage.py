"""The shared_storage role (an NFS export at /share on every node), for what it would do.

This machine's kernel has no NFS, so nothing is ever mounted here: the role runs in check mode
on localhost with Ansible's json callback, and the tests read the arguments ansible.posix.mount
and the package module were called with (each result's ``invocation``). The fstab it is given
is a file of the test's, left unchanged by check mode (asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .test_provisioning import BIN, ROOT, output


def ansible(tool: str, *args, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """test_provisioning's environment for the ansible tools, with ``env`` added."""
    base = {"ANSIBLE_ROLES_PATH": str(ROOT / "roles"), "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_RETRY_FILES_ENABLED": "0", "ANSIBLE_LOCALHOST_WARNING": "0",
            "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0", "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(Path.home()), "LANG": "C.UTF-8"}
    return subprocess.run([str(BIN / tool), *map(str, args)], cwd=cwd, env={**base, **env}, capture_output=True,
                          text=True, timeout=180)


def _run(tmp_path: Path, play: Path, extra: dict, inventory: str = "localhost,") -> dict:
    fstab = tmp_path / "fstab"
    fstab.write_text("# empty\n")
    args = {"shared_storage_fstab": str(fstab), "ansible_python_interpreter": sys.executable, **extra}
    proc = ansible("ansible-playbook", "-i", inventory, play, "--check", "-e", json.dumps(args), cwd=tmp_path,
                   env={"ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"})
    assert fstab.read_text() == "# empty\n"
    result = json.loads(proc.stdout[proc.stdout.index("{"):])
    result["rc"] = proc.returncode
    result["text"] = output(proc)
    return result


def _tasks(result: dict) -> dict[str, dict]:
    """Each task's result on localhost, by the task's name without the role's prefix."""
    return {t["task"]["name"].split(" : ", 1)[-1]: t["hosts"]["localhost"]
            for play in result["plays"] for t in play["tasks"] if "localhost" in t["hosts"]}


def _role_play(tmp_path: Path) -> Path:
    play = tmp_path / "play.yml"
    play.write_text(yaml.safe_dump([{"name": "Shared storage", "hosts": "localhost", "connection": "local",
                                     "gather_facts": False, "roles": [{"role": "shared_storage"}]}]))
    return play


def test_the_mount_and_the_nfs_client_are_what_the_role_would_ask_for(tmp_path):
    result = _run(tmp_path, _role_play(tmp_path), {"shared_storage_export": "nfs1.example.com:/srv/share"})
    assert result["rc"] == 0, result["text"]
    tasks = _tasks(result)
    mount = tasks["Mount the shared storage"]["invocation"]["module_args"]
    assert {k: mount[k] for k in ("src", "path", "fstype", "opts", "state", "boot", "fstab")} == {
        "src": "nfs1.example.com:/srv/share", "path": "/share", "fstype": "nfs", "opts": "rw,hard,noatime,_netdev",
        "state": "mounted", "boot": True, "fstab": str(tmp_path / "fstab")}
    assert tasks["Mount the shared storage"]["changed"] is True  # this machine has no such mount
    package = tasks["Install the NFS client"]["invocation"]["module_args"]
    assert package["name"] == ["nfs-common"] and package["state"] == "present"  # Debian, by its vars file


def test_the_mount_point_type_and_options_are_variables(tmp_path):
    result = _run(tmp_path, _role_play(tmp_path), {
        "shared_storage_export": "10.0.0.5:/export/teams", "shared_storage_path": "/mnt/share",
        "shared_storage_fstype": "nfs4", "shared_storage_options": "rw,soft,timeo=100", "shared_storage_state": "present"})
    assert result["rc"] == 0, result["text"]
    mount = _tasks(result)["Mount the shared storage"]["invocation"]["module_args"]
    assert (mount["src"], mount["path"], mount["fstype"], mount["opts"], mount["state"]) == (
        "10.0.0.5:/export/teams", "/mnt/share", "nfs4", "rw,soft,timeo=100", "present")


@pytest.mark.parametrize("extra, message", [
    ({"shared_storage_export": "nfs1.example.com"}, "shared_storage_export nfs1.example.com must be server:/path"),
    ({"shared_storage_export": "nfs1:srv/share"}, "shared_storage_export nfs1:srv/share must be server:/path"),
    ({"shared_storage_export": "nfs1:/srv/share,rw"}, "shared_storage_export nfs1:/srv/share,rw must be server:/path"),
    ({"shared_storage_export": "nfs1:/srv", "shared_storage_path": "share"},
     "shared_storage_path share must be an absolute path other than /, without .."),
    ({"shared_storage_export": "nfs1:/srv", "shared_storage_path": "/"},
     "shared_storage_path / must be an absolute path other than /, without .."),
    ({"shared_storage_export": "nfs1:/srv", "shared_storage_path": "/a/../etc"},
     "shared_storage_path /a/../etc must be an absolute path other than /, without .."),
])
def test_a_bad_export_or_mount_point_stops_before_anything_is_installed_or_mounted(tmp_path, extra, message):
    result = _run(tmp_path, _role_play(tmp_path), extra)
    assert result["rc"] == 2, result["text"]
    tasks = _tasks(result)
    assert message in tasks["Check the export and the mount point"]["msg"]
    assert "Install the NFS client" not in tasks and "Mount the shared storage" not in tasks


def test_the_export_is_required_by_the_argument_spec(tmp_path):
    result = _run(tmp_path, _role_play(tmp_path), {})
    assert result["rc"] == 2
    assert "shared_storage_export" in json.dumps(result["plays"][0]["tasks"][0]["hosts"]["localhost"])


def test_the_playbook_mounts_only_where_an_export_is_set(tmp_path):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"children": {"k8s_cluster": {"hosts": {
        "localhost": {"ansible_connection": "local", "ansible_become": False}}}}}}))
    play = ROOT / "playbooks" / "shared_storage.yml"
    skipped = _tasks(_run(tmp_path, play, {}, str(inventory)))
    assert skipped["Mount the NFS export"].get("skipped") is True
    assert "Mount the shared storage" not in skipped
    mounted = _run(tmp_path, play, {"shared_storage_export": "nfs1:/srv/share"}, str(inventory))
    assert mounted["rc"] == 0, mounted["text"]
    assert _tasks(mounted)["Mount the shared storage"]["invocation"]["module_args"]["src"] == "nfs1:/srv/share"
