#!/usr/bin/env python3
"""The control plane that site.yml makes, run as plain processes: benchmarks on a bigger machine.

The benchmarks measure kubesweep against the real API server, etcd, controller-manager and
scheduler, and on this project's 2-core VM those share two cores with the sweep client and kwok.
To tell what the control plane's cores cost from what kubesweep costs, the same control plane
must run on a machine with more of them, which may have no Docker or systemd (a lent GPU box, a
CI runner). This runs it there from what kubeadm wrote on the local cluster's control-plane node:

    python bench/bare_control_plane.py export DIR     # after `invoke cluster`, once
    python bench/bare_control_plane.py run DIR --bin BINDIR -- \\
        python bench/makespan.py --kubeconfig {kubeconfig} --policies longest

`export` copies the static pod manifests (every flag and environment variable kubeadm and the
control_plane role gave the four components), the PKI and the kubeconfigs. `run` starts etcd,
then the API server, then the controller-manager and the scheduler, each with its manifest's own
command line, with only the paths (/etc/kubernetes, /var/lib/etcd) and the node's address
(127.0.0.1) replaced; waits until each is healthy; starts kwok serving the kubelet API of the fake
nodes; runs the command with ``{kubeconfig}`` replaced by the super-admin kubeconfig (a fresh
etcd has none of kubeadm's RBAC bindings); then stops everything it started, kwok included, and
removes the etcd data. BINDIR holds etcd, kube-apiserver, kube-controller-manager and
kube-scheduler of the pinned versions (`invoke artifacts` builds them into the mirror cache).
kwok comes from the cache root ($KUBESWEEP_CACHE) as for the local cluster. No CoreDNS, no
kube-proxy, no kubelet: the benchmarks' trials run on kwok's fake nodes.
"""

from __future__ import annotations

import argparse
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from kubesweep.local import fake_nodes
from kubesweep.local import nodes
from kubesweep.local import services  # noqa: E402
from kubesweep.local.cluster import default_inventory  # noqa: E402
from kubesweep.k8s.versions import pins  # noqa: E402

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
KUBECONFIGS = ("admin.conf", "super-admin.conf", "controller-manager.conf", "scheduler.conf")
PORTS = (2379, 2380, 2381, 6443, 10250, 10257, 10259)  # etcd, API server, kwok's kubelet API, controllers
HEALTH = {  # each component's own health endpoint, on the ports kubeadm gives them
    "etcd": "http://127.0.0.1:2381/health",
    "kube-apiserver": "https://127.0.0.1:6443/readyz",
    "kube-controller-manager": "https://127.0.0.1:10257/healthz",
    "kube-scheduler": "https://127.0.0.1:10259/healthz",
}


class BareError(RuntimeError):
    pass


def control_plane_node(inventory: Path) -> str:
    """The inventory's (first) control-plane host: its node container's name."""
    for host in nodes.inventory_hosts(inventory):
        if "kube_control_plane" in host.groups:
            return host.name
    raise BareError(f"the inventory {inventory} has no kube_control_plane host")


def export(out: Path, node: str) -> None:
    """Copy the control-plane node's /etc/kubernetes (manifests, pki, kubeconfigs) into ``out``;
    the kubeconfigs are pointed at 127.0.0.1, where `run` serves the API."""
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(["docker", "cp", f"{node}:/etc/kubernetes/.", str(out)], check=True)
    lacks = missing(out)
    if lacks:
        raise BareError(f"{node}:/etc/kubernetes lacks {', '.join(lacks)}")
    for name in KUBECONFIGS:
        if (out / name).is_file():
            local_kubeconfig(out, name, out / name)
    print(f"exported {node}:/etc/kubernetes to {out}")


def missing(bundle: Path) -> list[str]:
    """What `run` needs from an export that ``bundle`` lacks."""
    need = [f"manifests/{c}.yaml" for c in COMPONENTS] + ["super-admin.conf", "pki/ca.crt"]
    return [n for n in need if not (bundle / n).is_file()]


def node_address(bundle: Path) -> str:
    """The address kubeadm advertised the API server on (the node container's IP)."""
    for arg in container(bundle, "kube-apiserver")["command"]:
        if arg.startswith("--advertise-address="):
            return arg.split("=", 1)[1]
    raise BareError("the API server's manifest has no --advertise-address")


def container(bundle: Path, component: str) -> dict[str, Any]:
    pod = yaml.safe_load((bundle / "manifests" / f"{component}.yaml").read_text())
    return pod["spec"]["containers"][0]


def command_line(bundle: Path, component: str, bindir: Path, data: Path) -> tuple[list[str], dict[str, str]]:
    """The manifest's command and env, with its paths and the node's address made local."""
    spec = container(bundle, component)
    address = node_address(bundle)
    swaps = (("/etc/kubernetes", str(bundle)), ("/var/lib/etcd", str(data / "etcd")))
    node = re.compile(rf"(?<![0-9.]){re.escape(address)}(?![0-9])")  # not inside a longer address

    def local(arg: str) -> str:
        for old, new in swaps:
            arg = arg.replace(old, new)
        return node.sub("127.0.0.1", arg)

    argv = [str(bindir / Path(spec["command"][0]).name)] + [local(a) for a in spec["command"][1:]]
    if component == "etcd":  # listen/advertise lists now name 127.0.0.1 twice
        argv = [_dedupe(a) for a in argv]
    env = {e["name"]: str(e["value"]) for e in spec.get("env", []) if "value" in e}
    return argv, env


def _dedupe(arg: str) -> str:
    if not arg.startswith("--") or "=" not in arg or "," not in arg:
        return arg
    flag, value = arg.split("=", 1)
    return f"{flag}={','.join(dict.fromkeys(value.split(',')))}"


def local_kubeconfig(bundle: Path, name: str, out: Path) -> Path:
    """``name`` pointed at 127.0.0.1:6443; the certificate is checked against a name it holds."""
    cfg = yaml.safe_load((bundle / name).read_text())
    for cluster in cfg["clusters"]:
        cluster["cluster"]["server"] = "https://127.0.0.1:6443"
        cluster["cluster"]["tls-server-name"] = "kubernetes"  # in every kubeadm API server certificate
    out.write_text(yaml.safe_dump(cfg))
    return out


def healthy(url: str, bundle: Path) -> bool:
    """Each health endpoint answers anyone (system:public-info-viewer, the components'
    always-allowed paths); the API server's certificate is checked against the cluster's CA."""
    ctx = None
    if url.startswith("https"):
        ctx = ssl.create_default_context(cafile=str(bundle / "pki" / "ca.crt"))
        ctx.check_hostname = False
        if ":6443/" not in url:  # the controllers serve self-signed certificates
            ctx.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=2, context=ctx) as r:  # noqa: S310 - fixed local URLs
            return r.status == 200
    except OSError:
        return False


def busy(ports: tuple[int, ...] = PORTS) -> list[int]:
    """Ports on 127.0.0.1 that something already listens on: a health check there would ask it."""
    return [p for p in ports if not services.port_free("127.0.0.1", p)]


def start(bundle: Path, bindir: Path, data: Path, timeout: float = 120.0) -> None:
    taken = busy()
    if taken:
        raise BareError(f"127.0.0.1 port(s) {', '.join(map(str, taken))} already in use: "
                        "is another control plane running here?")
    if services.background_pid("kwok") is not None:  # it plays the fake nodes of another cluster
        raise BareError("kwok already runs for another cluster: `invoke cluster --down` (or stop it) first")
    for component in COMPONENTS:
        argv, env = command_line(bundle, component, bindir, data)
        if not Path(argv[0]).is_file():
            raise BareError(f"{argv[0]} is missing: put the pinned {component} binary in {bindir}")
        services.start_background(component, argv, env)  # env: e.g. the API server's GOGC, from the manifest
        deadline = time.monotonic() + timeout
        while not healthy(HEALTH[component], bundle):
            if time.monotonic() > deadline:
                raise BareError(f"{component} not healthy after {timeout:.0f} s:\n{services.log_tail(component)}")
            time.sleep(0.5)
        print(f"{component} up ({' '.join(f'{k}={v}' for k, v in env.items())})", flush=True)
    # Fake nodes have the address 127.0.0.1. In a node container that is the node's own kubelet,
    # which answers a log request for a fake pod at once (404); here nothing listens there, so the
    # API server answers 500 (connection refused), which the sweep client retries as a passing
    # outage. kwok serves the kubelet API itself on that port instead, as it does under kwokctl
    # (any certificate: the API server does not check the kubelet's unless told a CA).
    pki = bundle / "pki"
    services.start_background("kwok", fake_nodes.kwok_argv(bundle / "super-admin.conf", pins()["kwok_version"]) + [
        "--server-address=127.0.0.1:10250", "--node-port=10250",
        "--tls-cert-file", str(pki / "apiserver.crt"), "--tls-private-key-file", str(pki / "apiserver.key")])


def stop() -> None:
    fake_nodes.stop()
    for component in reversed(COMPONENTS):
        services.stop_background(component)


def run(bundle: Path, bindir: Path, command: list[str]) -> int:
    lacks = missing(bundle)
    if lacks:
        raise BareError(f"{bundle} lacks {', '.join(lacks)}: make it with `export` first")
    data = Path(tempfile.mkdtemp(prefix="kubesweep-bare-"))
    try:
        start(bundle, bindir, data)
        # super-admin (system:masters): the fresh etcd has no binding for admin.conf's kubeadm group
        kc = bundle / "super-admin.conf"  # made local by export
        return subprocess.call([a.replace("{kubeconfig}", str(kc)) for a in command])
    finally:
        stop()
        shutil.rmtree(data, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="verb", required=True)
    ex = sub.add_parser("export", help="copy the local cluster's /etc/kubernetes")
    ex.add_argument("dir", type=Path)
    ex.add_argument("-i", "--inventory", type=Path, default=None,
                    help="the inventory `invoke cluster` brought up (default: the checkout's inventory/single)")
    rn = sub.add_parser("run", help="start the control plane, run a command, stop it")
    rn.add_argument("dir", type=Path)
    rn.add_argument("--bin", type=Path, required=True)
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args, command = ap.parse_args(argv[:cut]), argv[cut + 1:]
    if getattr(args, "inventory", "unset") is None:
        args.inventory = default_inventory()
    try:
        if args.verb == "export":
            export(args.dir, control_plane_node(args.inventory))
            return 0
        if not command:
            ap.error("run: give the command to run after --")
        return run(args.dir.resolve(), args.bin.resolve(), command)
    except (BareError, nodes.NodeError, subprocess.CalledProcessError) as exc:
        print(f"bare_control_plane: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
