"""Runs last: `invoke cluster --down` leaves no containers, network, processes, mounts or cgroups."""

import subprocess

import pytest

from kubesweep.local import cluster
from kubesweep.local import nodes
from kubesweep.local import services

pytestmark = pytest.mark.cluster


def test_down_leaves_nothing_behind():
    cluster.down()
    if services.docker_running():
        assert nodes.existing() == []
        mirror = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={nodes.MIRROR_LABEL}=true"],
                                capture_output=True, text=True)
        assert mirror.returncode == 0 and mirror.stdout.strip() == ""
        assert subprocess.run(["docker", "network", "inspect", nodes.NETWORK], capture_output=True).returncode != 0
    for name in ("kwok", "dockerd"):
        assert services.running_pid(name) is None, name
    mounts = open("/proc/mounts").read()
    assert "/var/lib/kubelet" not in mounts and "kubesweep" not in mounts
    found = subprocess.run(["find", "/sys/fs/cgroup", "-maxdepth", "2", "-name", "kubesweep"], capture_output=True, text=True)
    assert found.stdout.strip() == ""
