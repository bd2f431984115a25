"""The images the offline cluster runs, as recipes: the root filesystems to debootstrap
(debootstrap.py) and the image specs (image_tar.py) built from them and our binaries.

Why not Dockerfiles ``FROM debian`` / ``FROM registry.k8s.io/...``: this machine cannot reach
Docker Hub or registry.k8s.io. What it can reach is the Debian mirror apt uses, and the Go
module proxy (see gobuild.py). So:

* ``kubesweep/node:bookworm`` — ``debootstrap --variant=minbase`` of bookworm with systemd,
  containerd, runc, the networking tools kubelet/kube-proxy call, python3 (+ python3-apt for
  Ansible's apt/package_facts modules) and docker-registry (for the node that serves the
  cluster registry; the package's own service is disabled in the image because its stock
  config turns on htpasswd auth — the registry role writes a config and enables it). Units that
  cannot work in a container (gettys, udev, module loading, remount-fs) are masked, exactly
  what ``systemctl mask`` does (a symlink to /dev/null); /etc/machine-id is empty so systemd
  makes one per container; /etc/kubernetes/manifests exists so a worker's kubelet does not log
  a missing static-pod path every second. ``CMD /sbin/init``, ``ENV container=docker``.
* ``kubesweep/python-base:bookworm`` — minbase + python3, numpy, scikit-learn from Debian: the
  base of trainer images (examples/mnist/Dockerfile).
* registry.k8s.io images kubeadm uses — kube-apiserver, kube-controller-manager, kube-scheduler,
  etcd: just the static binary in /usr/local/bin plus a 1777 /tmp (distroless upstream images
  are about the same); kube-proxy: the node root filesystem plus the binary, because it execs
  iptables, ip6tables, nft and conntrack; pause: our own program (images/pause).
* ``registry.k8s.io/kueue/kueue`` — Kueue's controller manager (static) as /manager, run as
  65532 like upstream's distroless image; its manifests are kueue_manifests.py's.
* ``nvcr.io/nvidia/k8s-device-plugin`` — a bare ``debootstrap --variant=minbase`` root filesystem
  (glibc, which the cgo-built plugin links against, and ldconfig, which the NVIDIA container
  runtime's hooks run) plus the plugin as /usr/bin/nvidia-device-plugin, with upstream's
  ENTRYPOINT and NVIDIA_* environment. Its registry path is nvidia/k8s-device-plugin:v<version>,
  which is what a node's containerd asks a mirror of nvcr.io for.

``image_specs`` is the list for one set of pinned versions (versions.py); the conformance tests'
images are e2e_images.py's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from .debootstrap import Rootfs, RootfsSpec
from .gobuild import Built
from .image_tar import FileEntry, ImageSpec
from .versions import Versions

PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


# ----------------------------------------------------------------------------- root filesystems


NODE_PACKAGES = ("systemd", "systemd-sysv", "dbus", "iproute2", "iptables", "containerd", "runc",
                 "ca-certificates", "python3", "kmod", "procps", "conntrack", "socat", "ethtool", "ebtables",
                 "ipset", "nftables", "curl", "docker-registry", "python3-apt", "openssh-server", "sudo")
NODE_MASKED = ("getty@tty1.service", "serial-getty@.service", "console-getty.service", "systemd-udevd.service",
               "systemd-udev-trigger.service", "systemd-modules-load.service", "sys-kernel-config.mount",
               "systemd-remount-fs.service")

# A node is reached over SSH like a server: sshd with keys only (no passwords, no root login).
# Host keys are not baked into the image (every node would share them): each node makes its
# own at first boot, before sshd starts.
NODE_HOST_KEYS_UNIT = """\
[Unit]
Description=Generate this host's SSH host keys
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key
Before=ssh.service

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=ssh.service
"""
# Docker mounts a container's /proc/sys read-only unless told `--security-opt systempaths=unconfined`,
# which the Docker API (and so community.docker, which the local_node role creates nodes with)
# does not take as an option. kubelet, kube-proxy and the CNI plugins write sysctls: the node
# remounts it read-write (it has CAP_SYS_ADMIN) before anything else starts.
NODE_PROC_SYS_UNIT = """\
[Unit]
Description=Make /proc/sys writable (a container's is mounted read-only)
DefaultDependencies=no
ConditionPathIsReadWrite=!/proc/sys
Before=sysinit.target systemd-sysctl.service

[Service]
Type=oneshot
ExecStart=/bin/mount -o remount,rw /proc/sys

[Install]
WantedBy=sysinit.target
"""
NODE_SSHD_CONFIG = "# kubesweep node: keys only\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin no\n"
NODE_ROOTFS = RootfsSpec("node-bookworm", "bookworm", NODE_PACKAGES, masked=NODE_MASKED,
                         disabled=("docker-registry.service",), dirs=("etc/kubernetes/manifests",),
                         empty_machine_id=True,
                         files=(("etc/systemd/system/ssh-host-keys.service", NODE_HOST_KEYS_UNIT),
                                ("etc/ssh/sshd_config.d/kubesweep.conf", NODE_SSHD_CONFIG),
                                ("etc/systemd/system/proc-sys-rw.service", NODE_PROC_SYS_UNIT)),
                         links=(("etc/systemd/system/sysinit.target.wants/proc-sys-rw.service",
                                 "/etc/systemd/system/proc-sys-rw.service"),
                                ("etc/systemd/system/ssh.service.wants/ssh-host-keys.service",
                                 "/etc/systemd/system/ssh-host-keys.service"),
                                ("etc/systemd/system/multi-user.target.wants/ssh.service",
                                 "/lib/systemd/system/ssh.service")),
                         removed=("etc/ssh/ssh_host_*",))
PYTHON_BASE_ROOTFS = RootfsSpec("python-base-bookworm", "bookworm",
                                ("python3", "python3-numpy", "python3-sklearn", "ca-certificates"))
# Nothing beyond minbase: the base of images that hold one dynamically linked program.
MINBASE_ROOTFS = RootfsSpec("minbase-bookworm", "bookworm", ())


# ----------------------------------------------------------------------------------- images


BINARY_DIRS = (("usr", 0o755), ("usr/local", 0o755), ("usr/local/bin", 0o755), ("tmp", 0o1777),
               ("var", 0o755), ("var/lib", 0o755))


def k8s_image(name: str, tag: str, files: Sequence[FileEntry], *, base: Path | None = None, base_sha256: str = "",
              changes: Sequence[str] = (f"ENV {PATH_ENV}",)) -> ImageSpec:
    """A registry.k8s.io/<name>:<tag> stand-in, tagged kubesweep/<name>:<tag> locally."""
    return ImageSpec(f"registry.k8s.io/{name}:{tag}", f"{name}:{tag}", f"kubesweep/{name}:{tag}", tuple(changes),
                     base=base, base_sha256=base_sha256, files=tuple(files), dirs=() if base else BINARY_DIRS)


NVIDIA_REGISTRY = "nvcr.io"


def nvidia_image(name: str, tag: str, rootfs: Rootfs, files: Sequence[FileEntry], changes: Sequence[str]) -> ImageSpec:
    """An nvcr.io/nvidia/<name>:<tag> stand-in on a Debian root, tagged kubesweep/<name>:<tag> locally.

    Its registry path keeps the nvidia/ namespace: a node's containerd, told to try the cluster
    registry for nvcr.io, asks it for /v2/nvidia/<name>/manifests/<tag>.
    """
    return ImageSpec(f"{NVIDIA_REGISTRY}/nvidia/{name}:{tag}", f"nvidia/{name}:{tag}", f"kubesweep/{name}:{tag}",
                     tuple(changes), base=rootfs.path, base_sha256=rootfs.sha256, files=tuple(files))


def own_image(name: str, tag: str, rootfs: Rootfs, changes: Sequence[str]) -> ImageSpec:
    ref = f"kubesweep/{name}:{tag}"
    return ImageSpec("", ref, ref, tuple(changes), base=rootfs.path, base_sha256=rootfs.sha256)


# upstream's Dockerfile: gcr.io/distroless/static:nonroot with the binary at /manager, WORKDIR /,
# USER 65532:65532 (the Deployment also asks runAsNonRoot), ENTRYPOINT ["/manager"]
KUEUE_CHANGES = ('ENTRYPOINT ["/manager"]', "USER 65532:65532", "WORKDIR /", f"ENV {PATH_ENV}")


def kueue_image(version: str, manager: FileEntry) -> ImageSpec:
    """registry.k8s.io/kueue/kueue:v<version>: the static controller manager at /manager and
    a 1777 /tmp, like upstream's distroless image (which has no shell either)."""
    return k8s_image("kueue/kueue", f"v{version.lstrip('v')}", [manager], changes=KUEUE_CHANGES)


NVIDIA_DEVICE_PLUGIN_CHANGES = (  # upstream's deployments/container/Dockerfile
    'ENTRYPOINT ["nvidia-device-plugin"]', f"ENV {PATH_ENV}", "ENV NVIDIA_DISABLE_REQUIRE=true",
    "ENV NVIDIA_VISIBLE_DEVICES=all", "ENV NVIDIA_DRIVER_CAPABILITIES=compute,utility")


def image_specs(v: Versions, art: Mapping[str, Built], node: Rootfs,
                pybase: Rootfs, minbase: Rootfs) -> list[ImageSpec]:
    """The images of the binaries in ``art`` (the device plugin's only when it was built)."""
    def file(key: str, dest: str) -> FileEntry:
        return FileEntry(dest, art[key].path, art[key].sha256)

    kv = f"v{v.kube}"
    specs = [ImageSpec(f"registry.k8s.io/pause:{v.pause}", f"pause:{v.pause}", f"kubesweep/pause:{v.pause}",
                       ('ENTRYPOINT ["/pause"]',), files=(file("pause/pause", "pause"),))]
    specs += [k8s_image(c, kv, [file(f"kubernetes/{c}", f"usr/local/bin/{c}")])
              for c in ("kube-apiserver", "kube-controller-manager", "kube-scheduler")]
    specs.append(k8s_image("kube-proxy", kv, [file("kubernetes/kube-proxy", "usr/local/bin/kube-proxy")],
                           base=node.path, base_sha256=node.sha256))
    specs.append(k8s_image("etcd", v.etcd, [file("etcd/etcd", "usr/local/bin/etcd"),
                                             file("etcd/etcdctl", "usr/local/bin/etcdctl")]))
    if "nvidia-device-plugin/nvidia-device-plugin" in art:
        specs.append(nvidia_image(
            "k8s-device-plugin", f"v{v.nvidia_device_plugin}", minbase,
            [file("nvidia-device-plugin/nvidia-device-plugin", "usr/bin/nvidia-device-plugin")],
            NVIDIA_DEVICE_PLUGIN_CHANGES))
    # flanneld links glibc (cgo), so it sits on the bare Debian root; upstream's image is
    # ghcr.io/flannel-io/flannel, pulled offline as localhost:5000/flannel-io/flannel.
    specs.append(ImageSpec(f"ghcr.io/flannel-io/flannel:v{v.flannel}", f"flannel-io/flannel:v{v.flannel}",
                           f"kubesweep/flannel:v{v.flannel}",
                           ('ENTRYPOINT ["/usr/local/bin/flanneld"]', f"ENV {PATH_ENV}"),
                           base=minbase.path, base_sha256=minbase.sha256,
                           files=(file("flannel/flanneld", "usr/local/bin/flanneld"),)))
    # kubeadm's CoreDNS Deployment runs `/coredns -conf /etc/coredns/Corefile` with NET_BIND_SERVICE;
    # upstream's image is distroless (no shell) with the binary at /coredns, like this one.
    specs.append(k8s_image("coredns/coredns", f"v{v.coredns}", [file("coredns/coredns", "coredns")],
                           changes=('ENTRYPOINT ["/coredns"]', f"ENV {PATH_ENV}")))
    # upstream's image is Alpine plus the binary; on the bare Debian root here it keeps a shell, so
    # the same image also serves as the helper pod that makes and removes volume directories.
    specs.append(ImageSpec(
        f"docker.io/rancher/local-path-provisioner:v{v.local_path_provisioner}",
        f"rancher/local-path-provisioner:v{v.local_path_provisioner}",
        f"kubesweep/local-path-provisioner:v{v.local_path_provisioner}",
        ('CMD ["local-path-provisioner"]', f"ENV {PATH_ENV}"), base=minbase.path, base_sha256=minbase.sha256,
        files=(file("local-path-provisioner/local-path-provisioner", "usr/bin/local-path-provisioner"),)))
    if "kueue/manager" in art:
        specs.append(kueue_image(v.kueue, file("kueue/manager", "manager")))
    specs.append(own_image("node", "bookworm", node,
                           ['CMD ["/sbin/init"]', "ENV container=docker"]))
    specs.append(own_image("python-base", "bookworm", pybase,
                           ['CMD ["python3"]', f"ENV {PATH_ENV}", "ENV LANG=C.UTF-8"]))
    return specs
