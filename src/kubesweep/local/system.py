"""Host prerequisites: the Debian packages and tools the local cluster is built with."""

from __future__ import annotations

import os
import shutil
import subprocess

from kubesweep.errors import KubesweepError

#: Debian packages the host needs: dockerd and iptables (docker.io), debootstrap for images,
#: gcc and libc6-dev for the cgo programs (flannel, the NVIDIA device plugin), make too for the
#: conformance tests' busybox (C, built from its source).
PACKAGES = ("docker.io", "debootstrap", "iptables", "gcc", "libc6-dev", "make")


class HostError(KubesweepError):
    pass


def missing_packages() -> list[str]:
    missing = []
    for pkg in PACKAGES:
        proc = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True)
        if "install ok installed" not in proc.stdout:
            missing.append(pkg)
    return missing


def install_packages() -> list[str]:
    """apt-get install what is missing (root only); return what was installed."""
    if shutil.which("dpkg-query") is None:
        raise HostError("this is not a Debian-family host; install docker and debootstrap yourself")
    missing = missing_packages()
    if not missing:
        return []
    if os.geteuid() != 0:
        raise HostError(f"missing Debian packages {', '.join(missing)}: run `sudo apt-get install {' '.join(missing)}`")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    return missing
