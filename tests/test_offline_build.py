"""The real offline build (marker: cluster): Go builds, debootstrap, docker images.

Runs ``mirror.build()`` against the real cache (``$KUBESWEEP_CACHE``, default ~/.cache/kubesweep),
so the first run takes ~10 minutes on 2 cores and later runs seconds. Then checks what the
cluster roles rely on: every binary in the mirror reports the pinned version, every ``.sha256``
and SHA256SUMS line matches, the images exist in docker under both tags with the stamp label,
and a second build is all cache hits. The NVIDIA device plugin (cgo, in an image of its own) runs
in its image and, without a GPU, waits instead of exiting.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from kubesweep.offline import image_import, kueue_manifests, mirror, mirror_layout, versions

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def built():
    summary = mirror.build(progress=print)
    return summary, versions.Versions.load()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _out(argv: list[str], env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60, env=env)
    return proc.stdout + proc.stderr


def test_every_binary_reports_the_pinned_version(built, tmp_path):
    summary, v = built
    root = Path(summary["mirror"]["root"])
    kube = root / f"dl.k8s.io/release/v{v.kube}/bin/linux/amd64"
    for cmd in ("kubelet", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy"):
        assert _out([str(kube / cmd), "--version"]).strip() == f"Kubernetes v{v.kube}", cmd
    assert _out([str(kube / "kubeadm"), "version", "-o", "short"]).strip() == f"v{v.kube}"
    assert f"Client Version: v{v.kube}" in _out([str(kube / "kubectl"), "version", "--client"])

    gh = root / "github.com"
    etcd = gh / f"etcd-io/etcd/releases/download/v{v.etcd}/etcd-v{v.etcd}-linux-amd64"
    assert f"etcd Version: {v.etcd}" in _out([str(etcd / "etcd"), "--version"])
    assert f"etcdctl version: {v.etcd}" in _out([str(etcd / "etcdctl"), "version"])
    kwok = gh / f"kubernetes-sigs/kwok/releases/download/v{v.kwok}/kwok-linux-amd64"
    assert _out([str(kwok), "--version"]).startswith(f"kwok version v{v.kwok} ")

    cni = gh / f"containernetworking/plugins/releases/download/v{v.cni}/cni-plugins-linux-amd64-v{v.cni}.tgz"
    with tarfile.open(cni) as tar:
        tar.extractall(tmp_path / "cni", filter="data")
    for plugin in ("bridge", "host-local", "loopback", "portmap"):
        # a CNI plugin run without CNI_COMMAND prints "CNI <name> plugin <version>"
        assert f"CNI {plugin} plugin v{v.cni}" in _out([str(tmp_path / "cni" / plugin)], env={"PATH": "/usr/bin"})
    crictl = gh / f"kubernetes-sigs/cri-tools/releases/download/v{v.crictl}/crictl-v{v.crictl}-linux-amd64.tar.gz"
    with tarfile.open(crictl) as tar:
        tar.extractall(tmp_path / "crictl", filter="data")
    assert _out([str(tmp_path / "crictl" / "crictl"), "--version"]).strip() == f"crictl version v{v.crictl}"

    plugin = next(Path(a["path"]) for a in summary["artifacts"] if a["name"] == "nvidia-device-plugin")
    assert _out([str(plugin), "--version"]).startswith(f"NVIDIA Device Plugin version v{v.nvidia_device_plugin}\n")


def test_minikube_reports_the_pinned_version(built, tmp_path):
    summary, v = built
    root = Path(summary["mirror"]["root"])
    minikube = root / f"storage.googleapis.com/minikube/releases/v{v.minikube}/minikube-linux-amd64"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "MINIKUBE_HOME": str(tmp_path / ".minikube")}
    assert _out([str(minikube), "version", "--short"], env=env).strip() == f"v{v.minikube}"
    assert _out([str(minikube), "version"], env=env).startswith(f"minikube version: v{v.minikube}\ncommit: ")
    # static like minikube's linux release (CGO_ENABLED=0): no interpreter to find on the host
    assert b"/lib64/ld-linux" not in minikube.read_bytes()[:4096]


def test_every_checksum_matches(built):
    summary, v = built
    root = Path(summary["mirror"]["root"])
    items = mirror_layout.layout(v)
    for item in items:
        path = root / item.rel
        if item.sha256_style == "none":  # Kueue's manifests.yaml: its release publishes no checksum file
            assert not (root / (item.rel + ".sha256")).exists(), item.rel
            continue
        text = (root / (item.rel + ".sha256")).read_text()
        if item.rel.startswith("dl.k8s.io/"):
            assert text == _sha(path), item.rel
        elif item.rel.startswith("storage.googleapis.com/minikube/"):
            assert text == f"{_sha(path)}\n", item.rel  # minikube's bucket: the digest and a newline
        else:
            assert text == f"{_sha(path)}  {path.name}\n", item.rel
    lines = (root / "SHA256SUMS").read_text().splitlines()
    listed = {}
    for line in lines:
        digest, rel = line.split("  ", 1)
        listed[rel] = digest
    for item in items:
        assert item.rel in listed and (item.rel + ".sha256" in listed) == (item.sha256_style != "none")
    for rel, digest in listed.items():
        assert _sha(root / rel) == digest, rel


def test_images_are_in_docker_under_both_tags_and_listed(built):
    summary, v = built
    listed = json.loads(Path(summary["images_json"]).read_text())
    assert [e["path"] for e in listed] == [
        f"pause:{v.pause}", f"kube-apiserver:v{v.kube}", f"kube-controller-manager:v{v.kube}",
        f"kube-scheduler:v{v.kube}", f"kube-proxy:v{v.kube}", f"etcd:{v.etcd}",
        f"nvidia/k8s-device-plugin:v{v.nvidia_device_plugin}", f"flannel-io/flannel:v{v.flannel}",
        f"coredns/coredns:v{v.coredns}", f"rancher/local-path-provisioner:v{v.local_path_provisioner}",
        f"kueue/kueue:v{v.kueue}", "kubesweep/node:bookworm", "kubesweep/python-base:bookworm",
        "e2e-test-images/agnhost:2.59", "e2e-test-images/agnhost:2.55", "e2e-test-images/busybox:1.37.0-1",
        "e2e-test-images/nautilus:1.7", "e2e-test-images/kitten:1.7", "e2e-test-images/nginx:1.14-4",
        "e2e-test-images/nginx:1.15-4", "e2e-test-images/jessie-dnsutils:1.7", "e2e-test-images/sample-apiserver:1.29.2",
        "etcd:3.6.6-0", "e2e-test-images/nonroot:1.4", "e2e-test-images/nonewprivs:1.3"]
    for entry in listed:
        local = image_import.inspect(entry["local"])
        remote = image_import.inspect(f"127.0.0.1:5000/{entry['path']}")
        assert local and remote and local["Id"] == remote["Id"], entry
        assert image_import.label_of(local), entry


def test_images_run_their_binaries(built):
    _, v = built

    def run(image: str, *argv: str) -> str:
        proc = subprocess.run(["docker", "run", "--rm", "--network", "none", "--entrypoint", argv[0], image,
                               *argv[1:]], check=False, capture_output=True, text=True, timeout=120)
        return proc.stdout + proc.stderr

    assert f"etcd Version: {v.etcd}" in run(f"kubesweep/etcd:{v.etcd}", "etcd", "--version")  # found on PATH
    assert f"Kubernetes v{v.kube}" in run(f"kubesweep/kube-proxy:v{v.kube}", "kube-proxy", "--version")
    assert "iptables v" in run(f"kubesweep/kube-proxy:v{v.kube}", "iptables", "--version")
    assert "nftables v" in run(f"kubesweep/kube-proxy:v{v.kube}", "nft", "--version")  # its nftables mode
    # the conformance busybox: upstream's ash as sh, which passes on variables no shell could name
    # and says what upstream's image says about a read-only file system
    busybox = "kubesweep/e2e-busybox:1.37.0-1"
    assert "BusyBox v1.37.0" in run(busybox, "busybox")
    assert "p-data-1=x" in run(busybox, "env", "p-data-1=x", "sh", "-c", "env")
    # the Aggregator test's: the sample API server, and etcd at the tag's version beside the cluster's
    assert "--etcd-servers" in run("kubesweep/e2e-sample-apiserver:1.29.2", "/sample-apiserver", "--help")
    assert "etcd Version: 3.6.6\n" in run("kubesweep/etcd:3.6.6-0", "etcd", "--version")
    readonly = subprocess.run(["docker", "run", "--rm", "--network", "none", "--read-only", busybox, "/bin/sh", "-c",
                               "echo test > /file"], check=False, capture_output=True, text=True, timeout=120)
    assert readonly.stderr == "/bin/sh: can't create /file: Read-only file system\n", readonly
    assert "sklearn 1." in run("kubesweep/python-base:bookworm", "python3", "-c",
                                "import numpy, sklearn; print('sklearn', sklearn.__version__)")
    assert f"pause {v.pause}" in run(f"kubesweep/pause:{v.pause}", "/pause", "-v")
    assert f"v{v.flannel}" in run(f"kubesweep/flannel:v{v.flannel}", "flanneld", "--version")
    # Kueue's controller says its version as it starts (then stops: no cluster to reach), as user 65532
    kueue = f"kubesweep/kueue/kueue:v{v.kueue}"
    assert f'"gitVersion":"v{v.kueue}"' in run(kueue, "/manager")
    assert image_import.inspect(kueue)["Config"]["User"] == "65532:65532"
    plugin = f"kubesweep/k8s-device-plugin:v{v.nvidia_device_plugin}"
    assert f"version v{v.nvidia_device_plugin}" in run(plugin, "nvidia-device-plugin", "--version")
    # cgo against the image's own glibc, and nothing else at link time (libnvidia-ml is dlopen()ed)
    linked = run(plugin, "ldd", "/usr/bin/nvidia-device-plugin")
    assert "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6" in linked and "not found" not in linked


def test_device_plugin_image_waits_without_a_gpu(built, tmp_path):
    _, v = built
    name = f"kubesweep-test-device-plugin-{os.getpid()}"
    # upstream's ENTRYPOINT, as the DaemonSet runs it: FAIL_ON_INIT_ERROR=false, the kubelet's socket directory
    subprocess.run(["docker", "run", "-d", "--name", name, "--network", "none", "-e", "FAIL_ON_INIT_ERROR=false",
                    "-v", f"{tmp_path}:/var/lib/kubelet/device-plugins",
                    f"kubesweep/k8s-device-plugin:v{v.nvidia_device_plugin}"], check=True, capture_output=True)
    try:
        logs = ""
        deadline = time.monotonic() + 30
        while "Waiting indefinitely" not in logs and time.monotonic() < deadline:
            time.sleep(0.5)
            logs = _out(["docker", "logs", name])
        assert "No devices found. Waiting indefinitely." in logs, logs
        state = _out(["docker", "inspect", "-f", "{{.State.Status}}", name]).strip()
        assert state == "running", logs
    finally:
        subprocess.run(["docker", "rm", "-f", name], check=False, capture_output=True)


@pytest.mark.skipif(shutil.which("unshare") is None or os.geteuid() != 0, reason="needs root and unshare")
def test_pause_reaps_orphans_and_exits_zero_on_sigterm(built):
    summary, _ = built
    pause = next(Path(a["path"]) for a in summary["artifacts"] if a["name"] == "pause")
    proc = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", str(pause)])
    try:
        deadline = time.monotonic() + 5
        pid = None
        while pid is None and time.monotonic() < deadline:
            out = subprocess.run(["pgrep", "-P", str(proc.pid), "-x", "pause"], check=False,
                                 capture_output=True, text=True).stdout
            pid = int(out.split()[0]) if out.split() else None
            time.sleep(0.05)
        assert pid, "pause did not start"
        # an orphan inside the pod's PID namespace is re-parented to pause; when it exits, pause must reap it
        subprocess.run(["nsenter", "-t", str(pid), "-p", "-m", "--", "sh", "-c", "sleep 0.2 & exit 0"], check=True)
        time.sleep(1.0)
        children = subprocess.run(["ps", "-o", "stat=", "--ppid", str(pid)], check=False, capture_output=True,
                                  text=True).stdout
        assert "Z" not in children, f"zombie left: {children!r}"
        os.kill(pid, 15)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_kueue_manifests_are_its_release_rendering_with_the_image_built_here(built):
    summary, v = built
    path = Path(summary["mirror"]["root"]) / f"github.com/kubernetes-sigs/kueue/releases/download/v{v.kueue}/manifests.yaml"
    kinds = kueue_manifests.check(path.read_text(), v.kueue)  # the Deployment runs registry.k8s.io/kueue/kueue:v<pin>
    assert kinds["CustomResourceDefinition"] >= 10 and kinds["Deployment"] == 1 and kinds["APIService"] == 2
    assert f"registry.k8s.io/kueue/kueue:v{v.kueue}" in [e["upstream"] for e in summary["images"]]


def test_second_build_is_all_cache_hits_in_seconds(built):
    again = mirror.build(progress=print)
    assert again["built"] == 0, [a for a in again["artifacts"] if not a["cached"]]
    assert again["mirror"]["changed"] == 0
    assert again["timings"]["total"] < 30


def test_kubeadm_accepts_the_configuration_the_role_renders(built, tmp_path):
    """The control_plane role's kubeadm configuration, rendered by Ansible's template module with
    the role's defaults, passes the built kubeadm's own validation; a GOGC other than Go's default
    becomes the API server's environment, and the default renders none (so upgrading the role
    regenerates nothing on a running cluster)."""
    import sys

    import yaml

    summary, v = built
    kubeadm = Path(summary["mirror"]["root"]) / f"dl.k8s.io/release/v{v.kube}/bin/linux/amd64/kubeadm"
    root = Path(__file__).resolve().parents[1]
    ansible = Path(sys.executable).parent / "ansible"
    envs = {}
    for gogc in (100, 400):
        out = tmp_path / f"kubeadm-{gogc}.yaml"
        run = subprocess.run(
            [str(ansible), "-i", "inventory/single", "ks-single", "-e", "ansible_connection=local",
             "-e", f"ansible_python_interpreter={sys.executable}", "-m", "ansible.builtin.template",
             "-a", f"src=roles/control_plane/templates/kubeadm-config.yaml.j2 dest={out}",
             "-e", "@roles/control_plane/defaults/main.yml", "-e", f"control_plane_apiserver_gogc={gogc}",
             "-e", "control_plane_advertise_address=10.0.0.2", "-e", "control_plane_endpoint=10.0.0.2:6443"],
            cwd=root, capture_output=True, text=True, timeout=120, env={**os.environ, "ANSIBLE_CONFIG": str(root / "ansible.cfg")})
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        check = subprocess.run([str(kubeadm), "config", "validate", "--config", str(out)], capture_output=True, text=True, timeout=60)
        assert check.returncode == 0, check.stdout + check.stderr
        docs = {d["kind"]: d for d in yaml.safe_load_all(out.read_text()) if d}
        envs[gogc] = docs["ClusterConfiguration"]["apiServer"].get("extraEnvs")
    assert envs == {100: None, 400: [{"name": "GOGC", "value": "400"}]}


def test_coredns_is_the_version_kubeadm_deploys_and_reports_it(built):
    """kubeadm asks for registry.k8s.io/coredns/coredns:<its CoreDNSVersion>: the pin must match it,
    read from the very Kubernetes module the binaries were built from."""
    summary, v = built
    modcache = _out(["go", "env", "GOMODCACHE"]).strip()
    constants = Path(modcache) / f"k8s.io/kubernetes@v{v.kube}/cmd/kubeadm/app/constants/constants.go"
    wanted = re.search(r'CoreDNSVersion = "v([0-9.]+)"', constants.read_text())
    assert wanted and wanted.group(1) == v.coredns, f"kubeadm {v.kube} deploys CoreDNS {wanted and wanted.group(1)}"
    binaries = {(a["group"], a["name"]): Path(a["path"]) for a in summary["artifacts"]}
    assert _out([str(binaries[("coredns", "coredns")]), "-version"]).startswith(f"CoreDNS-{v.coredns}\n")
    assert _out([str(binaries[("local-path-provisioner", "local-path-provisioner")]), "--version"]).strip() == \
        f"local-path-provisioner version v{v.local_path_provisioner}"
