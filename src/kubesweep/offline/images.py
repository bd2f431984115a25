"""Container images built without pulling anything: debootstrap root filesystems and our binaries.

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
* ``nvcr.io/nvidia/k8s-device-plugin`` — a bare ``debootstrap --variant=minbase`` root filesystem
  (glibc, which the cgo-built plugin links against, and ldconfig, which the NVIDIA container
  runtime's hooks run) plus the plugin as /usr/bin/nvidia-device-plugin, with upstream's
  ENTRYPOINT and NVIDIA_* environment. Its registry path is nvidia/k8s-device-plugin:v<version>,
  which is what a node's containerd asks a mirror of nvcr.io for.

The root filesystems take minutes (debootstrap), so each is cached as a tarball
``CACHE/images/<name>.tar`` keyed by a hash of its recipe (suite, package list, masked units,
the script version below); the tarball is rebuilt only when the recipe changes. Images are
made with ``docker import`` (one layer, no builder, nothing pulled) and carry the label
``io.kubesweep.stamp`` = hash of everything that went in; an image whose label matches is not
rebuilt. Each image is tagged ``<local>`` and ``127.0.0.1:5000/<path>`` so that a plain
``docker push`` fills a registry listening there; ``CACHE/images.json`` lists them for the
offline_images role.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .cache import (
    GiB, BuildError, Cache, MissingToolError, OfflineError, Stamp, atomic_write, command_failed,
    remove_quietly, require_free_space, run, sha256_file, sha256_json, temp_sibling,
)

ROOTFS_SCRIPT_VERSION = 1   # bump when build_rootfs changes what ends up in a tarball
IMAGE_SCRIPT_VERSION = 1    # bump when the way images are assembled changes
STAMP_LABEL = "io.kubesweep.stamp"
REGISTRY = "127.0.0.1:5000"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DOCKER_HINT = "apt-get install -y --no-install-recommends docker.io"


# ------------------------------------------------------------------------------ root filesystems


@dataclass(frozen=True)
class RootfsSpec:
    """A debootstrap recipe. Everything here is part of the tarball's cache key."""

    name: str
    suite: str
    packages: tuple[str, ...]
    masked: tuple[str, ...] = ()
    disabled: tuple[str, ...] = ()
    dirs: tuple[str, ...] = ()
    empty_machine_id: bool = False
    files: tuple[tuple[str, str], ...] = ()     # (path, text) written into the tree (0644)
    links: tuple[tuple[str, str], ...] = ()     # (path, target) symlinks, e.g. enabling a unit
    removed: tuple[str, ...] = ()               # glob patterns deleted (keys every node must not share)

    def key(self) -> str:
        recipe = {"name": self.name, "suite": self.suite, "variant": "minbase",
                  "packages": sorted(self.packages), "masked": sorted(self.masked),
                  "disabled": sorted(self.disabled), "dirs": sorted(self.dirs),
                  "empty_machine_id": self.empty_machine_id, "script": ROOTFS_SCRIPT_VERSION}
        # only when set, so the recipes that use none keep the keys (and cached tarballs) they had
        for name, value in (("files", self.files), ("links", self.links), ("removed", self.removed)):
            if value:
                recipe[name] = sorted(map(list, value)) if name != "removed" else sorted(value)
        return sha256_json(recipe)


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


@dataclass
class Rootfs:
    spec: RootfsSpec
    path: Path
    sha256: str
    cached: bool
    seconds: float


def debian_mirror(apt_dir: Path = Path("/etc/apt"), suite: str = "bookworm") -> str:
    """The Debian archive apt uses here (deb822 .sources or sources.list), for ``suite``."""
    candidates: list[tuple[list[str], list[str]]] = []  # (uris, suites)
    files = [apt_dir / "sources.list"] if (apt_dir / "sources.list").is_file() else []
    folder = apt_dir / "sources.list.d"
    if folder.is_dir():
        files += sorted(folder.iterdir())
    for path in files:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        if path.suffix == ".sources":
            for stanza in text.split("\n\n"):
                fields: dict[str, str] = {}
                for line in stanza.splitlines():
                    if line.startswith("#") or ":" not in line or line[:1].isspace():
                        continue
                    key, value = line.split(":", 1)
                    fields[key.strip().lower()] = value.strip()
                if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes").lower() != "no":
                    candidates.append((fields.get("uris", "").split(), fields.get("suites", "").split()))
        elif path.name == "sources.list" or path.suffix == ".list":
            for line in text.splitlines():
                words = line.split("#", 1)[0].split()
                if len(words) >= 3 and words[0] == "deb":
                    rest = words[1:]
                    if rest[0].startswith("["):  # options: [arch=amd64 signed-by=...]
                        while rest and not rest[0].endswith("]"):
                            rest = rest[1:]
                        rest = rest[1:]
                    if len(rest) >= 2:
                        candidates.append(([rest[0]], [rest[1]]))
    for uris, suites in candidates:
        if suite in suites:
            for uri in uris:
                if uri.startswith(("http://", "https://")):
                    return uri.rstrip("/")
    return DEFAULT_MIRROR


def build_rootfs(cache: Cache, spec: RootfsSpec, mirror: str, progress: Callable[[str], None]) -> Rootfs:
    """CACHE/images/<name>.tar from debootstrap, unless the tarball for this recipe is there."""
    out = cache.images_dir / f"{spec.name}.tar"
    stamp = Stamp(cache.images_dir / f"{spec.name}.json")
    inputs = {"key": spec.key()}
    if stamp.is_fresh(inputs, out):
        return Rootfs(spec, out, stamp.get("sha256"), True, 0.0)
    if os.geteuid() != 0:
        raise OfflineError(f"building the {spec.name} root filesystem runs debootstrap, which needs root: "
                           "rerun `invoke artifacts` as root (or with sudo)")
    for tool, pkg in (("debootstrap", "debootstrap"), ("tar", "tar")):
        if shutil.which(tool) is None:
            raise MissingToolError(f"`{tool}` is not installed, and the {spec.name} image is built with it: "
                                   f"apt-get install -y {pkg}")
    progress(f"  debootstrap {spec.suite} ({spec.name}, {len(spec.packages)} packages) from {mirror} ...")
    started = time.monotonic()
    work = cache.root / "build" / f"rootfs-{spec.name}"
    debs = cache.root / "build" / "debs"
    log = cache.log(f"rootfs-{spec.name}")
    log.write_text("")
    require_free_space(cache.root, 3 * GiB, f"build the {spec.name} root filesystem")
    remove_tree(work)
    work.mkdir(parents=True)
    debs.mkdir(parents=True, exist_ok=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_quietly(out.parent.glob(f".{out.name}.tmp-*"))  # left by a build that was killed
    tmp = temp_sibling(out)
    try:
        proc = run(debootstrap_args(spec, work, debs, mirror), log=log,
                   what=f"debootstrap {spec.suite} for {spec.name}", check=False)
        if proc.returncode != 0:
            inner = work / "debootstrap" / "debootstrap.log"
            if inner.exists():
                with open(log, "a") as f:
                    f.write("\n--- debootstrap/debootstrap.log (end) ---\n")
                    f.write("\n".join(inner.read_text(errors="replace").splitlines()[-30:]) + "\n")
            err = command_failed(f"debootstrap {spec.suite} for {spec.name} from {mirror} (is the Debian "
                                 "mirror reachable? `apt-get update` must work)", ["debootstrap"], proc.returncode, log)
            raise err
        customize(work, spec)
        run(["tar", "--numeric-owner", "--xattrs", "-C", str(work), "-cf", str(tmp), "."], log=log,
            what=f"pack the {spec.name} root filesystem into {out}")
        digest = sha256_file(tmp)
        os.replace(tmp, out)
    finally:
        remove_quietly([tmp])
        remove_tree(work)
    seconds = time.monotonic() - started
    stamp.record(inputs, out, sha256=digest, seconds=round(seconds, 1), mirror=mirror, spec=spec.__dict__)
    progress(f"  {spec.name}.tar: {out.stat().st_size / (1 << 20):.0f} MiB in {seconds:.0f}s")
    return Rootfs(spec, out, digest, False, seconds)


def debootstrap_args(spec: RootfsSpec, work: Path, debs: Path, mirror: str) -> list[str]:
    include = [f"--include={','.join(spec.packages)}"] if spec.packages else []  # none: bare minbase
    return ["nice", "-n", "10", "debootstrap", "--variant=minbase", *include, f"--cache-dir={debs}", spec.suite,
            str(work), mirror]


def customize(root: Path, spec: RootfsSpec) -> None:
    """The container-specific changes to a fresh debootstrap tree (all paths stay inside ``root``)."""
    systemd = root / "etc" / "systemd" / "system"
    systemd.mkdir(parents=True, exist_ok=True)
    for unit in spec.masked:  # what `systemctl mask` does, without needing a chroot
        link = systemd / unit
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to("/dev/null")
    for unit in spec.disabled:  # what `systemctl disable` does: drop the .wants/ links
        for wants in systemd.glob("*.wants"):
            target = wants / unit
            if target.is_symlink():
                target.unlink()
    for d in spec.dirs:
        (root / d).mkdir(parents=True, exist_ok=True)
    for rel, text in spec.files:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o644)
    for rel, target in spec.links:
        link = root / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target)
    for pattern in spec.removed:
        for path in root.glob(pattern):
            if path.is_file() or path.is_symlink():
                path.unlink()
    if spec.empty_machine_id:
        (root / "etc" / "machine-id").write_text("")
    for pattern in ("var/lib/apt/lists/*_*", "var/cache/apt/*.bin", "var/cache/apt/archives/*.deb"):
        for p in root.glob(pattern):
            if p.is_file() and not p.is_symlink():
                p.unlink()


def mounts_under(path: Path, mountinfo: str | None = None) -> list[str]:
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            return []
    prefix = str(path.resolve() if path.exists() else path).rstrip("/") + "/"
    found = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 4:
            point = fields[4].replace("\\040", " ")
            if point.startswith(prefix) or point + "/" == prefix:
                found.append(point)
    return sorted(found, key=len, reverse=True)


def remove_tree(path: Path) -> None:
    """Delete a debootstrap tree, first unmounting what a failed run left mounted inside it."""
    if not path.exists():
        return
    for point in mounts_under(path):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)
    left = mounts_under(path)
    if left:
        raise OfflineError(f"{path} still has mounts ({', '.join(left)}); unmount them and delete it by hand")
    shutil.rmtree(path)


# ----------------------------------------------------------------------------------- images


@dataclass(frozen=True)
class FileEntry:
    """A file to put into an image: where it goes, where it comes from, its digest."""

    dest: str
    source: Path
    sha256: str
    mode: int = 0o755


@dataclass(frozen=True)
class ImageSpec:
    upstream: str               # "registry.k8s.io/kube-apiserver:v1.35.8", or "" for our own images
    path: str                   # repository:tag under the local registry
    local: str                  # tag in the local docker
    changes: tuple[str, ...]    # docker import --change instructions (LABEL added automatically)
    base: Path | None = None    # a root filesystem tarball ...
    base_sha256: str = ""
    files: tuple[FileEntry, ...] = ()  # ... and/or files added on top
    dirs: tuple[tuple[str, int], ...] = ()  # directories (path, mode) created in a files-only image
    links: tuple[tuple[str, str], ...] = ()  # symlinks (path, target) added on top

    @property
    def registry_ref(self) -> str:
        return f"{REGISTRY}/{self.path}"

    def stamp(self) -> str:
        recipe = {"script": IMAGE_SCRIPT_VERSION, "path": self.path, "local": self.local,
                  "changes": list(self.changes), "base": self.base_sha256,
                  "files": [[f.dest, f.sha256, f.mode] for f in self.files],
                  "dirs": [list(d) for d in self.dirs]}
        if self.links:  # only when set: the images without links keep their stamps
            recipe["links"] = [list(link) for link in self.links]
        return sha256_json(recipe)

    def entry(self) -> dict[str, str]:
        return {"upstream": self.upstream, "local": self.local, "path": self.path}


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


@dataclass
class BuiltImage:
    spec: ImageSpec
    id: str
    cached: bool
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


def docker(args: Sequence[str], *, log: Path | None = None, what: str = "") -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(["docker", *args], check=False, capture_output=True, text=True)
    except FileNotFoundError:
        raise MissingToolError(f"no `docker` command: {DOCKER_HINT}") from None
    if log is not None:
        with open(log, "a") as f:
            f.write(f"\n$ docker {subprocess.list2cmdline(list(args))}\n{proc.stdout}{proc.stderr}")
    if what and proc.returncode != 0:
        text = (proc.stderr or proc.stdout).strip()
        if "no space left on device" in text.lower():
            raise command_failed(what, ["docker", *args], proc.returncode, log or Path("/dev/null"))
        if "Cannot connect to the Docker daemon" in text or "Is the docker daemon running" in text:
            raise OfflineError(f"could not {what}: the Docker daemon stopped answering ({text})")
        raise BuildError(f"could not {what}: docker {args[0]} exited with status {proc.returncode}: {text}")
    return proc


def inspect(ref: str) -> dict[str, Any] | None:
    proc = docker(["image", "inspect", ref])
    if proc.returncode != 0:
        return None
    data = json.loads(proc.stdout or "[]")
    return data[0] if data else None


def label_of(info: dict[str, Any] | None) -> str | None:
    if not info:
        return None
    return ((info.get("Config") or {}).get("Labels") or {}).get(STAMP_LABEL)


def ensure_image(cache: Cache, spec: ImageSpec, progress: Callable[[str], None]) -> BuiltImage:
    """Import ``spec`` into docker unless an image with the same stamp label is already tagged."""
    stamp = spec.stamp()
    log = cache.log("images")
    local = inspect(spec.local)
    if local and label_of(local) == stamp:
        remote = inspect(spec.registry_ref)
        if not remote or remote.get("Id") != local["Id"]:
            docker(["tag", spec.local, spec.registry_ref], log=log, what=f"tag {spec.local} as {spec.registry_ref}")
        return BuiltImage(spec, local["Id"], True, 0.0)
    progress(f"  docker import {spec.local} ...")
    started = time.monotonic()
    old_ids = {info["Id"] for info in (local, inspect(spec.registry_ref)) if info and label_of(info)}
    changes = [*spec.changes, f"LABEL {STAMP_LABEL}={stamp}"]
    args = ["import"]
    for change in changes:
        args += ["--change", change]
    if spec.base is not None and not spec.files:
        docker([*args, str(spec.base), spec.local], log=log, what=f"import {spec.base} as {spec.local}")
    else:
        stream_import(args + ["-", spec.local], spec, log)
    docker(["tag", spec.local, spec.registry_ref], log=log, what=f"tag {spec.local} as {spec.registry_ref}")
    new = inspect(spec.local)
    if not new or label_of(new) != stamp:
        raise BuildError(f"docker import of {spec.local} did not produce an image with label {STAMP_LABEL}={stamp} "
                         f"(see {log})")
    for old in old_ids - {new["Id"]}:  # our previous build, now untagged; fails harmlessly when still used
        docker(["image", "rm", old], log=log)
    seconds = time.monotonic() - started
    progress(f"  {spec.local} ({new['Id'][7:19]}) in {seconds:.1f}s")
    return BuiltImage(spec, new["Id"], False, seconds)


def stream_import(args: Sequence[str], spec: ImageSpec, log: Path) -> None:
    """docker import from a tar written straight into its stdin: base tarball members + files."""
    with open(log, "ab") as out:
        out.write(f"\n$ docker {subprocess.list2cmdline(list(args))}  (tar on stdin)\n".encode())
        out.flush()
        try:
            proc = subprocess.Popen(["docker", *args], stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT)
        except FileNotFoundError:
            raise MissingToolError(f"no `docker` command: {DOCKER_HINT}") from None
        assert proc.stdin is not None
        broken = False
        try:
            write_tar(proc.stdin, spec)
        except BrokenPipeError:
            broken = True
        finally:
            try:
                proc.stdin.close()
            except BrokenPipeError:
                broken = True
        code = proc.wait()
    if code != 0 or broken:
        raise command_failed(f"import {spec.local} into docker", ["docker", *args], code or 1, log)


def tar_names(path: Path) -> set[str]:
    """The paths in a root filesystem tarball, as ``usr/bin/env`` (no ``./``, no trailing ``/``)."""
    try:
        with tarfile.open(path, mode="r|") as tar:
            return {_tar_path(member.name) for member in tar}
    except (OSError, tarfile.TarError) as exc:
        raise OfflineError(f"cannot read {path} ({exc}): rerun `invoke artifacts`") from None


def _tar_path(name: str) -> str:
    return name.removeprefix("./").rstrip("/")


def write_tar(stream: IO[bytes], spec: ImageSpec) -> None:
    # a file or link added on top replaces the base's entry of that path (not a second entry)
    replaced = {f.dest for f in spec.files} | {path for path, _ in spec.links}
    with tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        have: set[str] = set()
        if spec.base is not None:
            with tarfile.open(spec.base, mode="r|") as base:
                for member in base:
                    name = _tar_path(member.name)
                    if name in replaced and not member.isdir():
                        continue
                    have.add(name)
                    tar.addfile(member, base.extractfile(member) if member.isreg() else None)
        else:
            tar.addfile(_dir_info(".", 0o755))
        for path, mode in spec.dirs:
            if path not in have:
                tar.addfile(_dir_info(f"./{path}", mode))
                have.add(path)
        for f in spec.files:
            parent = os.path.dirname(f.dest)
            if parent and parent not in have:
                raise OfflineError(f"image {spec.local}: no directory {parent!r} for {f.dest}")
            if sha256_file(f.source) != f.sha256:
                raise OfflineError(f"{f.source} changed while building {spec.local}; rerun `invoke artifacts`")
            info = tarfile.TarInfo(f"./{f.dest}")
            info.size = f.source.stat().st_size
            info.mode = f.mode
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = 0
            with open(f.source, "rb") as src:
                tar.addfile(info, src)
        for path, target in spec.links:
            info = tarfile.TarInfo(f"./{path}")
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = 0
            tar.addfile(info)


def _dir_info(name: str, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = 0
    return info


def write_images_json(cache: Cache, specs: Sequence[ImageSpec], *, keep: bool = False) -> Path:
    """The list the offline_images role pushes. With ``keep``, entries of an earlier run for
    other repositories stay (a build of fewer parts must not drop the images of the others);
    an entry for the same repository is replaced (a new tag)."""
    entries = [s.entry() for s in specs]
    if keep:
        try:
            earlier = json.loads(cache.images_json.read_text())
        except (OSError, ValueError):
            earlier = []
        mine = {e["path"].rsplit(":", 1)[0] for e in entries}
        entries += [e for e in earlier if isinstance(e, dict) and isinstance(e.get("path"), str)
                    and e["path"].rsplit(":", 1)[0] not in mine and inspect(e.get("local", "")) is not None]
    atomic_write(cache.images_json, json.dumps(entries, indent=2) + "\n")
    return cache.images_json
