"""Provisioning without a cluster: roles are specified, playbooks parse with every inventory, bad
variables are refused by name, the GCP VM's module arguments and minikube's argv are what the
roles would send, containerd's config gets the nvidia runtime, and the GPU roles skip a host
without a GPU. Everything runs ansible-playbook against localhost (connection local); nothing
contacts GCP or changes this machine."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
import yaml

from kubesweep.offline import mirror_layout, versions

from .conftest import ROOT

BIN = Path(sys.executable).parent
ROLES = sorted(p for p in (ROOT / "roles").iterdir() if p.is_dir())
PLAYBOOKS = [ROOT / "site.yml", *sorted((ROOT / "playbooks").glob("*.yml"))]
SSH_INVENTORIES = ["baremetal", "gcp"]
VERSIONS = ROOT / "inventory" / "local" / "group_vars" / "all" / "versions.yml"
DOWNLOAD = ROOT / "inventory" / "local" / "group_vars" / "all" / "download.yml"


def ansible(tool: str, *args: str | Path, cwd: Path = ROOT, timeout: int = 180) -> subprocess.CompletedProcess[str]:
    env = {"ANSIBLE_ROLES_PATH": str(ROOT / "roles"), "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
           "ANSIBLE_CALLBACK_RESULT_FORMAT": "yaml", "ANSIBLE_RETRY_FILES_ENABLED": "0",
           "ANSIBLE_LOCALHOST_WARNING": "0", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
           "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin", "HOME": str(Path.home()), "LANG": "C.UTF-8"}
    return subprocess.run([str(BIN / tool), *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def local_play(tmp_path: Path, tasks: list[dict], name: str = "play.yml") -> Path:
    """A playbook of `tasks` for localhost over a local connection, without facts (run_local adds
    the pinned versions and the download hosts as extra vars, then `extra_vars`)."""
    path = tmp_path / name
    path.write_text(yaml.safe_dump([{"name": "Test", "hosts": "localhost", "connection": "local",
                                     "gather_facts": False, "tasks": tasks}], sort_keys=False))
    return path


def run_local(tmp_path: Path, tasks: list[dict], extra_vars: dict | None = None,
              *args: str) -> subprocess.CompletedProcess[str]:
    play = local_play(tmp_path, tasks)
    return ansible("ansible-playbook", "-i", "localhost,", play, "-e", f"@{VERSIONS}", "-e", f"@{DOWNLOAD}",
                   "-e", json.dumps(extra_vars or {}), *args, cwd=tmp_path)


def output(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stdout + proc.stderr


# ------------------------------------------------------------------------------- structure


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_every_role_has_argument_specs_covering_its_documented_defaults(role: Path):
    specs_file = role / "meta" / "argument_specs.yml"
    assert specs_file.is_file(), f"{role.name} has no meta/argument_specs.yml"
    specs = yaml.safe_load(specs_file.read_text())["argument_specs"]
    main = specs["main"]
    assert main.get("short_description"), f"{role.name}: argument spec main has no short_description"
    options = main.get("options", {})
    for name, spec in options.items():
        assert spec.get("type"), f"{role.name}: option {name} has no type"
        assert spec.get("description"), f"{role.name}: option {name} has no description"
    defaults_file = role / "defaults" / "main.yml"
    assert defaults_file.is_file(), f"{role.name} has no defaults/main.yml"
    text = defaults_file.read_text()
    first = next(line for line in text.splitlines() if line.strip() not in ("", "---"))
    assert first.startswith(f"# {role.name}"), f"{role.name}: defaults/main.yml must open with a comment saying what the role does"
    defaults = yaml.safe_load(text) or {}
    for name in defaults:
        assert name.startswith(f"{role.name}_"), f"{role.name}: default {name} is not prefixed with the role name"
        assert name in options, f"{role.name}: default {name} is not in meta/argument_specs.yml"


@pytest.mark.parametrize("inventory", ["local", "single", "baremetal"])
def test_every_playbook_passes_syntax_check(inventory):
    proc = ansible("ansible-playbook", "-i", ROOT / "inventory" / inventory, "--syntax-check", *PLAYBOOKS)
    assert proc.returncode == 0, output(proc)


def test_baremetal_inventory_groups_and_shared_version_pins():
    proc = ansible("ansible-inventory", "-i", ROOT / "inventory" / "baremetal", "--list")
    assert proc.returncode == 0, output(proc)
    inv = json.loads(proc.stdout)
    assert inv["kube_control_plane"]["hosts"] == ["cp-1", "cp-2", "cp-3"]
    assert inv["kube_node"]["hosts"] == ["worker-1", "worker-2"]
    assert inv["kube_node"]["children"] == ["kube_gpu_node"]
    assert inv["kube_gpu_node"]["hosts"] == ["gpu-1", "gpu-2"]
    assert set(inv["k8s_cluster"]["children"]) == {"kube_control_plane", "kube_node"}
    assert inv["registry"]["hosts"] == ["cp-1"]
    hostvars = inv["_meta"]["hostvars"]
    pins = yaml.safe_load(VERSIONS.read_text())
    for shared in ("versions.yml", "download.yml"):
        for inventory in SSH_INVENTORIES:
            assert (ROOT / "inventory" / inventory / "group_vars" / "all" / shared).is_symlink()
    assert hostvars["worker-1"]["kube_version"] == pins["kube_version"]
    assert hostvars["gpu-1"]["offline_mirror"] is False
    assert hostvars["gpu-1"]["node_labels"] == {"nvidia.com/gpu.present": "true"}
    assert "node_labels" not in hostvars["worker-1"]


@pytest.mark.parametrize("inventory", SSH_INVENTORIES)
def test_ssh_inventories_leave_localhost_alone(inventory):
    """group_vars/all also applies to localhost: no become or interpreter there, or the plays that
    run on this machine would sudo or lose the virtualenv's Python."""
    for path in (ROOT / "inventory" / inventory / "group_vars" / "all").glob("*.yml"):
        data = yaml.safe_load(path.read_text()) or {}
        bad = {"ansible_become", "ansible_python_interpreter", "ansible_connection"} & set(data)
        assert not bad, f"{path.relative_to(ROOT)} sets {sorted(bad)}"


def test_gcp_inventory_is_a_gcp_compute_config_with_the_kubespray_groups():
    config = yaml.safe_load((ROOT / "inventory" / "gcp" / "gcp.yml").read_text())
    assert config["plugin"] == "google.cloud.gcp_compute"
    doc = ansible("ansible-doc", "-t", "inventory", "--json", "google.cloud.gcp_compute")
    assert doc.returncode == 0, output(doc)
    known = set(json.loads(doc.stdout)["google.cloud.gcp_compute"]["doc"]["options"])
    assert set(config) - {"plugin"} <= known, f"options the plugin does not know: {set(config) - {'plugin'} - known}"
    assert {"kube_control_plane", "kube_node", "kube_gpu_node", "registry"} <= set(config["groups"])
    assert "kubesweep-gpu" in config["groups"]["kube_gpu_node"]
    # Without credentials (or google-auth) the plugin fails, ansible-inventory still succeeds with
    # the static nesting of groups.yml, and the reason is credentials, not the configuration.
    proc = ansible("ansible-inventory", "-i", ROOT / "inventory" / "gcp", "--list", timeout=120)
    assert proc.returncode == 0, output(proc)
    inv = json.loads(proc.stdout)
    assert set(inv["k8s_cluster"]["children"]) == {"kube_control_plane", "kube_node"}
    assert inv["kube_node"]["children"] == ["kube_gpu_node"]
    if "Unable to parse" in proc.stderr:
        reasons = ("google-auth", "credentials", "Could not resolve", "Failed to resolve", "NameResolution",
                   "Max retries", "Connection", "403", "404")
        assert any(r in proc.stderr for r in reasons), proc.stderr


# ----------------------------------------------------------------------- argument checks


BAD_VARIABLES = [
    pytest.param("gcp_vm", "vars", {"gcp_vm_project": "p", "gcp_vm_accelerator_count": -1},
                 "gcp_vm_accelerator_count", id="gcp_vm-negative-accelerators"),
    pytest.param("gcp_vm", "vars", {"gcp_vm_project": "p", "gcp_vm_machine_type": 8},
                 "gcp_vm_machine_type", id="gcp_vm-machine-type-not-a-name"),
    pytest.param("gcp_vm", "vars", {"gcp_vm_project": "p", "gcp_vm_auth_kind": "password"},
                 "gcp_vm_auth_kind", id="gcp_vm-auth-kind-choice"),
    pytest.param("minikube", "argv", {"minikube_version": "1.37.0", "kube_version": "1.35.8", "minikube_cpus": "many"},
                 "minikube_cpus", id="minikube-cpus-not-int"),
    pytest.param("nvidia_driver", "main", {"nvidia_driver_ubuntu_method": "snap"},
                 "nvidia_driver_ubuntu_method", id="nvidia_driver-method-choice"),
    pytest.param("nvidia_container_toolkit", "main",
                 {"nvidia_container_toolkit_version": "1.17.8-1", "nvidia_container_toolkit_default_runtime": "maybe"},
                 "nvidia_container_toolkit_default_runtime", id="nvidia_container_toolkit-bool"),
]


@pytest.mark.parametrize(("role", "entry", "extra_vars", "variable"), BAD_VARIABLES)
def test_bad_variables_are_refused_by_name(tmp_path, role, entry, extra_vars, variable):
    proc = run_local(tmp_path, [{"name": "Include", "ansible.builtin.include_role": {"name": role, "tasks_from": entry}}],
                     extra_vars, "--check")
    assert proc.returncode != 0, output(proc)
    assert variable in output(proc), output(proc)
    assert "failed=1" in proc.stdout


# --------------------------------------------------------------------- what the roles send


def dump_tasks(dest: Path, expression: str) -> list[dict]:
    return [{"name": "Dump", "ansible.builtin.copy": {"content": "{{ " + expression + " | to_nice_json }}",
                                                         "dest": str(dest), "mode": "0644"}}]


def test_gcp_vm_module_arguments(tmp_path):
    tasks = []
    for name, extra in {"gpu": {"gcp_vm_name": "ks-gpu-1", "gcp_vm_roles": ["node"], "gcp_vm_machine_type": "n1-standard-4",
                                "gcp_vm_accelerator_type": "nvidia-tesla-t4", "gcp_vm_accelerator_count": 2},
                        "cpu": {"gcp_vm_preemptible": True, "gcp_vm_network": "ks-net", "gcp_vm_disk_size_gb": 200,
                                "gcp_vm_ssh_public_key": "ssh-ed25519 AAAAC3Nza me@laptop\n"},
                        "plain": {}}.items():
        tasks.append({"name": f"Assemble {name}", "ansible.builtin.include_role": {"name": "gcp_vm", "tasks_from": "vars"},
                      "vars": extra})
        tasks += dump_tasks(tmp_path / f"{name}.json", "{'instance': gcp_vm_instance, 'firewalls': gcp_vm_firewalls, "
                                                       "'network': gcp_vm_network_link}")
    proc = run_local(tmp_path, tasks, {"gcp_vm_project": "proj-1", "gcp_vm_zone": "us-west1-b",
                                        "gcp_vm_firewall_source_ranges": ["203.0.113.0/24"],
                                        "gcp_vm_ssh_public_key_file": str(tmp_path / "none.pub")})
    assert proc.returncode == 0, output(proc)
    api = "https://www.googleapis.com/compute/v1/projects/proj-1"

    gpu = json.loads((tmp_path / "gpu.json").read_text())
    vm = gpu["instance"]
    assert vm["name"] == "ks-gpu-1" and vm["zone"] == "us-west1-b" and vm["machine_type"] == "n1-standard-4"
    assert vm["guest_accelerators"] == [{"accelerator_count": 2,
                                         "accelerator_type": f"{api}/zones/us-west1-b/acceleratorTypes/nvidia-tesla-t4"}]
    assert vm["scheduling"] == {"on_host_maintenance": "TERMINATE", "automatic_restart": True, "preemptible": False}
    assert vm["labels"] == {"kubesweep-cluster": "kubesweep", "kubesweep-node": "true", "kubesweep-gpu": "true"}
    assert vm["disks"][0]["boot"] is True and vm["disks"][0]["initialize_params"]["disk_size_gb"] == 150
    assert vm["metadata"] == {}
    assert gpu["network"] == {"selfLink": f"{api}/global/networks/default"}
    assert [f["name"] for f in gpu["firewalls"]] == ["kubesweep-ssh-api", "kubesweep-internal"]
    assert gpu["firewalls"][0]["allowed"] == [{"ip_protocol": "tcp", "ports": ["22", "6443"]}]
    assert gpu["firewalls"][0]["source_ranges"] == ["203.0.113.0/24"]

    cpu = json.loads((tmp_path / "cpu.json").read_text())
    vm = cpu["instance"]
    assert vm["guest_accelerators"] == []
    assert vm["scheduling"] == {"on_host_maintenance": "TERMINATE", "automatic_restart": False, "preemptible": True}
    assert "kubesweep-gpu" not in vm["labels"] and vm["labels"]["kubesweep-control-plane"] == "true"
    assert vm["metadata"] == {"ssh-keys": "kubesweep:ssh-ed25519 AAAAC3Nza me@laptop"}
    assert vm["disks"][0]["initialize_params"]["disk_size_gb"] == 200
    assert cpu["network"] == {"selfLink": f"{api}/global/networks/ks-net"}

    plain = json.loads((tmp_path / "plain.json").read_text())["instance"]
    assert plain["scheduling"]["on_host_maintenance"] == "MIGRATE" and plain["machine_type"] == "n1-standard-8"


# ------------------------------------------------------------------ GCP firewall sources

GCP_PLAYBOOK = ROOT / "playbooks" / "gcp_vm.yml"
GCP_SETTINGS = ROOT / "inventory" / "gcp" / "group_vars" / "all" / "gcp.yml"
EXAMPLE = 'gcp_vm_firewall_source_ranges: ["203.0.113.0/24"]'
NOT_A_CIDR = "is not an IPv4 or IPv6 CIDR"
WHOLE_INTERNET = "would open tcp 22, 6443 (SSH and the Kubernetes API server, firewall rule kubesweep-ssh-api) to the whole internet"


def gcp_play(tmp_path: Path, extra_vars: dict, *settings: Path) -> subprocess.CompletedProcess[str]:
    """playbooks/gcp_vm.yml itself (the whole role) on localhost, with a project set and no SSH key."""
    base = {"gcp_vm_project": "proj-1", "gcp_vm_ssh_public_key_file": str(tmp_path / "none.pub")}
    return ansible("ansible-playbook", "-i", "localhost,", GCP_PLAYBOOK, *[a for f in settings for a in ("-e", f"@{f}")],
                   "-e", json.dumps({**base, **extra_vars}), cwd=tmp_path)


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    return " ".join(output(proc).split())


GCP_TASKS = ("Create the VPC network", "Create the firewall rules", "Create the VM", "Delete the VM")


def assert_refused_before_gcp(proc: subprocess.CompletedProcess[str], *phrases: str) -> None:
    text = one_line(proc)
    assert proc.returncode == 2, output(proc)
    assert "TASK [gcp_vm : Check the firewall source ranges]" in text
    assert "failed=1" in proc.stdout and "changed=0" in proc.stdout, proc.stdout
    for phrase in phrases:
        assert phrase in text, f"{phrase!r} not in:\n{output(proc)}"
    started = [t for t in GCP_TASKS if f"TASK [gcp_vm : {t}]" in text]
    assert started == [], f"GCP tasks ran after the refusal: {started}"


def test_gcp_inventory_opens_nothing_by_default(tmp_path):
    """The shipped settings, as a user runs them before editing: no ranges, so the play refuses by
    the variable's name with an example of what to set, before any GCP module runs."""
    assert yaml.safe_load(GCP_SETTINGS.read_text())["gcp_vm_firewall_source_ranges"] == []
    defaults = yaml.safe_load((ROOT / "roles" / "gcp_vm" / "defaults" / "main.yml").read_text())
    assert defaults["gcp_vm_firewall_source_ranges"] == [] and defaults["gcp_vm_firewall_allow_any_source"] is False
    proc = gcp_play(tmp_path, {}, GCP_SETTINGS)
    assert_refused_before_gcp(proc, "gcp_vm_firewall_source_ranges is empty and has no default",
                              "no firewall rule is created until it is given", EXAMPLE)


@pytest.mark.parametrize(("ranges", "phrases"), [
    pytest.param(None, ["argument 'gcp_vm_firewall_source_ranges' is of type NoneType"], id="null"),
    pytest.param([], ["gcp_vm_firewall_source_ranges is empty and has no default", EXAMPLE], id="empty"),
    pytest.param(["0.0.0.0/0"], ["gcp_vm_firewall_source_ranges: 0.0.0.0/0 " + WHOLE_INTERNET,
                                 "set gcp_vm_firewall_allow_any_source: true"], id="ipv4-any"),
    pytest.param(["203.0.113.0/24", "::/0"], ["gcp_vm_firewall_source_ranges: ::/0 " + WHOLE_INTERNET], id="ipv6-any"),
    pytest.param(["198.51.100.9/0"], ["gcp_vm_firewall_source_ranges: 198.51.100.9/0 " + WHOLE_INTERNET], id="any-prefix-0"),
    pytest.param(["10.0.0.256/8"], [f'"10.0.0.256/8" {NOT_A_CIDR}'], id="octet-over-255"),
    pytest.param(["10.0.0.0/33"], [f'"10.0.0.0/33" {NOT_A_CIDR}'], id="ipv4-prefix-over-32"),
    pytest.param(["2001:db8::/129"], [f'"2001:db8::/129" {NOT_A_CIDR}'], id="ipv6-prefix-over-128"),
    pytest.param(["2001:db8:::1/64"], [f'"2001:db8:::1/64" {NOT_A_CIDR}'], id="ipv6-triple-colon"),
    pytest.param(["203.0.113.7"], [f'"203.0.113.7" {NOT_A_CIDR}'], id="no-prefix"),
    pytest.param(["office.example.com/32"], [f'"office.example.com/32" {NOT_A_CIDR}'], id="a-name"),
    pytest.param(["203.0.113.0/24", "any"], [f'"any" {NOT_A_CIDR}'], id="one-bad-among-good"),
    pytest.param("203.0.113.0/24", ["gcp_vm_firewall_source_ranges must be a list of CIDRs", EXAMPLE], id="a-string"),
])
def test_gcp_firewall_sources_are_refused_before_any_gcp_call(tmp_path, ranges, phrases):
    proc = gcp_play(tmp_path, {"gcp_vm_firewall_source_ranges": ranges})
    if ranges is None:  # the argument spec refuses it, before the role's own check
        assert proc.returncode == 2 and "failed=1" in proc.stdout, output(proc)
        assert all(p in one_line(proc) for p in phrases), output(proc)
        assert not any(f"TASK [gcp_vm : {t}]" in output(proc) for t in GCP_TASKS), output(proc)
        return
    assert_refused_before_gcp(proc, *phrases)


def test_gcp_any_source_needs_the_explicit_switch(tmp_path):
    """0.0.0.0/0 passes the check only with gcp_vm_firewall_allow_any_source, and only then reaches
    the firewall rule's arguments; `false` given explicitly still refuses."""
    tasks = [{"name": "Check and assemble", "ansible.builtin.include_role": {"name": "gcp_vm", "tasks_from": "vars"}},
             *dump_tasks(tmp_path / "firewalls.json", "gcp_vm_firewalls")]
    refused = run_local(tmp_path, tasks, {"gcp_vm_project": "p", "gcp_vm_firewall_source_ranges": ["0.0.0.0/0", "::/0"],
                                          "gcp_vm_firewall_allow_any_source": False})
    assert refused.returncode == 2 and "failed=1" in refused.stdout, output(refused)
    assert "0.0.0.0/0 " + WHOLE_INTERNET in one_line(refused) and "::/0 " + WHOLE_INTERNET in one_line(refused)
    assert not (tmp_path / "firewalls.json").exists()
    allowed = run_local(tmp_path, tasks, {"gcp_vm_project": "p", "gcp_vm_firewall_source_ranges": ["0.0.0.0/0", "::/0"],
                                          "gcp_vm_firewall_allow_any_source": True})
    assert allowed.returncode == 0, output(allowed)
    assert json.loads((tmp_path / "firewalls.json").read_text())[0]["source_ranges"] == ["0.0.0.0/0", "::/0"]


GOOD_RANGES = ["203.0.113.0/24", "198.51.100.7/32", "10.0.0.0/8", "192.0.2.0/25", "2001:db8::/32", "2001:DB8:0:1::/64",
               "fd00::1/128", "::1/128", "2001:db8:1:2:3:4:5:6/128", "fe80::/10"]


def test_gcp_good_ranges_pass_the_check_and_reach_the_firewall_rule(tmp_path):
    """The real check (the role's vars.yml) accepts IPv4 and IPv6 CIDRs and goes on to assemble
    the rule with exactly those sources; it stops there, before the tasks that call GCP."""
    tasks = [{"name": "Check and assemble", "ansible.builtin.include_role": {"name": "gcp_vm", "tasks_from": "vars"}},
             *dump_tasks(tmp_path / "firewalls.json", "gcp_vm_firewalls")]
    proc = run_local(tmp_path, tasks, {"gcp_vm_project": "p", "gcp_vm_firewall_source_ranges": GOOD_RANGES})
    assert proc.returncode == 0, output(proc)
    assert "TASK [gcp_vm : Check the firewall source ranges]" in proc.stdout
    assert "failed=0" in proc.stdout
    rules = json.loads((tmp_path / "firewalls.json").read_text())
    assert rules[0]["name"] == "kubesweep-ssh-api" and rules[0]["source_ranges"] == GOOD_RANGES
    assert "source_ranges" not in rules[1]  # the internal rule: by network tag only


def test_gcp_delete_needs_no_ranges(tmp_path):
    """gcp_vm_state=absent opens nothing, so the firewall check does not stand in its way."""
    tasks = [{"name": "Check and assemble", "ansible.builtin.include_role": {"name": "gcp_vm", "tasks_from": "vars"}}]
    proc = run_local(tmp_path, tasks, {"gcp_vm_project": "p", "gcp_vm_state": "absent"})
    assert proc.returncode == 0, output(proc)
    assert "skipping: [localhost]" in proc.stdout


def test_minikube_start_is_one_argv_with_the_seed_settings(tmp_path):
    tasks = [{"name": "Default", "ansible.builtin.include_role": {"name": "minikube", "tasks_from": "argv"}},
             *dump_tasks(tmp_path / "default.json", "minikube_start_argv"),
             {"name": "Offline", "ansible.builtin.include_role": {"name": "minikube", "tasks_from": "argv"},
              "vars": {"minikube_image_repository": "10.0.0.5:5000", "minikube_cpus": 4,
                       "minikube_extra_args": ["--extra-config=apiserver.service-account-issuer=api", "--addons=metrics-server"]}},
             *dump_tasks(tmp_path / "offline.json", "minikube_start_argv")]
    proc = run_local(tmp_path, tasks, {"minikube_version": "1.36.0", "kube_version": "1.35.8"})
    assert proc.returncode == 0, output(proc)
    default = json.loads((tmp_path / "default.json").read_text())
    assert default == ["/usr/local/bin/minikube", "start", "--profile=minikube", "--driver=docker", "--cpus=6",
                       "--memory=12288", "--disk-size=120g", "--kubernetes-version=v1.35.8", "--container-runtime=containerd"]
    offline = json.loads((tmp_path / "offline.json").read_text())
    assert "--cpus=4" in offline and "--image-repository=10.0.0.5:5000" in offline
    assert offline[-2:] == ["--extra-config=apiserver.service-account-issuer=api", "--addons=metrics-server"]


def test_minikube_downloads_follow_the_offline_switch(tmp_path):
    tasks = [{"name": "Include", "ansible.builtin.include_role": {"name": "minikube", "tasks_from": "argv", "public": True}},
             *dump_tasks(tmp_path / "urls.json", "[minikube_url, minikube_kubectl_url, minikube_crictl_url, minikube_cni_url]")]
    proc = run_local(tmp_path, tasks, {"minikube_version": "1.36.0", "kube_version": "1.35.8", "crictl_version": "1.36.0",
                                        "cni_version": "1.9.1", "offline_mirror": True, "files_repo": "http://10.0.0.1:8081"})
    assert proc.returncode == 0, output(proc)
    urls = json.loads((tmp_path / "urls.json").read_text())
    assert urls == [
        "http://10.0.0.1:8081/storage.googleapis.com/minikube/releases/v1.36.0/minikube-linux-amd64",
        "http://10.0.0.1:8081/dl.k8s.io/release/v1.35.8/bin/linux/amd64/kubectl",
        # the none driver's crictl and CNI plugins
        "http://10.0.0.1:8081/github.com/kubernetes-sigs/cri-tools/releases/download/v1.36.0/crictl-v1.36.0-linux-amd64.tar.gz",
        "http://10.0.0.1:8081/github.com/containernetworking/plugins/releases/download/v1.9.1/cni-plugins-linux-amd64-v1.9.1.tgz"]
    # 1.37.0 fails the checksum database: offline the role takes the version `invoke artifacts`
    # builds, online upstream's; both files are where the mirror lays them out
    pins = yaml.safe_load(VERSIONS.read_text())
    assert (pins["minikube_offline_version"], pins["minikube_online_version"]) == ("1.36.0", "1.37.0")
    assert "minikube_offline_version if (offline_mirror" in pins["minikube_version"]
    rels = {item.rel for item in mirror_layout.layout(versions.Versions.load(VERSIONS))}
    assert {u.removeprefix("http://10.0.0.1:8081/").replace("1.35.8", pins["kube_version"]) for u in urls[:2]} <= rels


DOWNLOAD_PLAY = """\
- name: Resolve the roles' download locations
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  roles: [kube_binaries, cni_plugins, nvidia_container_toolkit, pod_network]
  post_tasks:
    - name: Write them
      tags: [dump]
      ansible.builtin.copy:
        dest: "{{ out }}"
        mode: "0644"
        content: >-
          {{ [kube_binaries_url, kube_binaries_crictl_url, cni_plugins_url,
              nvidia_container_toolkit_repo_url, pod_network_flannel_image] | to_json }}
"""


@pytest.mark.parametrize(("inventory", "prefix", "registry"), [
    ("local", "http://172.29.0.1:8081/", "localhost:5000"),  # offline_mirror: true
    ("baremetal", "https://", "ghcr.io"),                     # offline_mirror: false
    (None, "https://", "ghcr.io")])                           # no download.yml: the switch alone changes nothing
def test_download_hosts_follow_the_offline_switch_of_download_yml(tmp_path, inventory, prefix, registry):
    """group_vars/all/download.yml applies the offline switch once; the roles' defaults take its hosts
    and fall back to the official ones without it (the role tasks are skipped: only the dump runs)."""
    play = tmp_path / "urls.yml"
    play.write_text(DOWNLOAD_PLAY)
    where = ["-i", ROOT / "inventory" / inventory] if inventory else [
        "-i", "localhost,", "-e", f"@{VERSIONS}", "-e", "offline_mirror=true", "-e", "files_repo=http://10.0.0.1:8081"]
    proc = ansible("ansible-playbook", *where, play, "--tags", "dump", "--skip-tags", "always",
                   "-e", f"out={tmp_path / 'urls.json'}", cwd=tmp_path)
    assert proc.returncode == 0, output(proc)
    pins = yaml.safe_load(VERSIONS.read_text())
    kube, crictl, cni = pins["kube_version"], pins["crictl_version"], pins["cni_version"]
    assert json.loads((tmp_path / "urls.json").read_text()) == [
        f"{prefix}dl.k8s.io/release/v{kube}/bin/linux/amd64",
        f"{prefix}github.com/kubernetes-sigs/cri-tools/releases/download/v{crictl}/crictl-v{crictl}-linux-amd64.tar.gz",
        f"{prefix}github.com/containernetworking/plugins/releases/download/v{cni}/cni-plugins-linux-amd64-v{cni}.tgz",
        f"{prefix}nvidia.github.io/libnvidia-container/stable/deb/amd64",
        f"{registry}/flannel-io/flannel:v{pins['flannel_version']}"]


def test_containerd_config_gets_runtimes_from_local_facts(tmp_path):
    """The nvidia_container_toolkit role records its runtime as a local fact; the containerd
    role's one template renders it (and makes it the default when asked), valid TOML."""
    facts = tmp_path / "facts.d"
    facts.mkdir()
    (facts / "containerd_runtime_nvidia.fact").write_text(json.dumps(
        {"name": "nvidia", "binary_name": "/usr/bin/nvidia-container-runtime", "runtime_type": "io.containerd.runc.v2",
         "default": True}))
    template = ROOT / "roles" / "containerd" / "templates" / "config.toml.j2"

    def render(dest: str) -> dict:
        return {"name": f"Render {dest}", "ansible.builtin.template": {"src": str(template), "dest": str(tmp_path / dest),
                                                                         "mode": "0644"}}

    tasks = [{"name": "Role defaults", "ansible.builtin.include_vars": str(ROOT / "roles" / "containerd" / "defaults" / "main.yml")},
             render("plain.toml"),
             {"name": "Local facts", "ansible.builtin.setup": {"gather_subset": ["!all", "!min", "local"], "fact_path": str(facts)}},
             render("nvidia.toml")]
    proc = run_local(tmp_path, tasks, {"pause_version": "3.10.1"})
    assert proc.returncode == 0, output(proc)
    plain = tomllib.loads((tmp_path / "plain.toml").read_text())["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]
    assert set(plain["runtimes"]) == {"runc"} and "default_runtime_name" not in plain
    cri = tomllib.loads((tmp_path / "nvidia.toml").read_text())["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["sandbox_image"] == "registry.k8s.io/pause:3.10.1"
    assert cri["containerd"]["default_runtime_name"] == "nvidia"
    assert cri["containerd"]["runtimes"]["nvidia"] == {
        "runtime_type": "io.containerd.runc.v2",
        "options": {"BinaryName": "/usr/bin/nvidia-container-runtime", "SystemdCgroup": True}}


# ------------------------------------------------------------------------------ GPU skip


def has_nvidia_gpu() -> bool:
    for vendor in Path("/sys/bus/pci/devices").glob("*/vendor"):
        try:
            if vendor.read_text().strip() == "0x10de":
                return True
        except OSError:
            continue
    return False


@pytest.mark.skipif(has_nvidia_gpu(), reason="this machine has an NVIDIA GPU: the roles would not skip it")
def test_gpu_playbook_skips_a_host_without_a_gpu(tmp_path):
    """playbooks/gpu.yml itself, in check mode, with this machine as the only GPU worker."""
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(textwrap.dedent("""\
        all:
          children:
            kube_node:
              children:
                kube_gpu_node:
                  hosts:
                    localhost:
                      ansible_connection: local
        """))
    proc = ansible("ansible-playbook", "-i", inventory, ROOT / "playbooks" / "gpu.yml", "--check",
                   "-e", f"@{VERSIONS}", "-e", json.dumps({"ansible_become": False,
                                                           "ansible_python_interpreter": sys.executable}), cwd=tmp_path)
    assert proc.returncode == 0, output(proc)
    assert "no NVIDIA GPU on localhost: skipping the driver" in proc.stdout
    assert "no NVIDIA GPU on localhost: skipping the container toolkit" in " ".join(proc.stdout.split())
    assert "failed=0" in proc.stdout and "changed=0" in proc.stdout


def test_a_host_with_an_unsupported_os_stops_before_anything_is_changed(tmp_path):
    """node_prereqs' first task: this machine (Debian 12) against a list that does not have it."""
    play = tmp_path / "play.yml"
    play.write_text(yaml.safe_dump([{"name": "OS check", "hosts": "localhost", "connection": "local",
                                     "gather_facts": True, "gather_subset": ["min"],
                                     "roles": [{"role": "node_prereqs"}]}]))
    supported = [{"distribution": "Rocky", "min_major": 9}, {"distribution": "Debian", "min_major": 13}]
    proc = ansible("ansible-playbook", "-i", "localhost,", play, "--check", "-e",
                   json.dumps({"node_prereqs_supported_os": supported, "ansible_python_interpreter": sys.executable}),
                   cwd=tmp_path)
    assert proc.returncode == 2 and "failed=1" in proc.stdout and "changed=0" in proc.stdout, output(proc)
    text = " ".join(output(proc).split())
    assert "TASK [node_prereqs : Check the operating system]" in text
    assert ("localhost runs Debian 12." in text and "these roles support Rocky >= 9, Debian >= 13 "
            "(node_prereqs_supported_os)" in text), text
    assert "Load the OS-specific variables" not in text  # stopped at the check
