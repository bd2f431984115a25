"""The images Kubernetes' conformance tests run, built here: agnhost from its Go package, the rest
from Debian packages (upstream builds them on Alpine or on old Debian releases; what the tests
use of them is the same programs).

Which tag each test expects comes from the pinned Kubernetes module itself
(test/utils/image/manifest.go), so a new Kubernetes pin asks for the tags it needs. The images
go into the cluster registry under the paths the tests ask for (e2e-test-images/<name>:<tag>),
and the tests are pointed at that registry with KUBE_TEST_REPO_LIST (conformance.py).

What differs from upstream, and why it does not matter to the selected tests:

* agnhost: the pinned Kubernetes' agnhost under both the current and the previous tag (the tests
  only roll from one to the other); Debian instead of Alpine for the tools around it (dig, curl, nc, ip, iperf, bash); no
  CoreDNS binary and no fake registry (used by tests outside the conformance set), no user 1000
  made in the image;
* busybox: upstream's busybox (the version of the tag, built from its source by busybox.py:
  Debian's package drops environment variables named like `data-1`, which some tests pass
  through `sh -c env`) as `sh`, on Debian's minbase, whose programs (`sleep`, `cat`, `env` ...)
  come first, busybox's applets for the rest (`sysctl`, `wget`, `nslookup` ...);
* nautilus and kitten: agnhost's test-webserver and the pictures of the pinned module on the
  agnhost root (upstream: the previous agnhost image);
* sample-apiserver and etcd (the Aggregator test): the module at the version of the tag, built
  here, on Debian's minbase / as the cluster's etcd image is made (upstream: Alpine / distroless);
* nginx: Debian's nginx 1.22 serving its default page on port 80, under both tags the tests use;
* jessie-dnsutils: dig and nslookup from Debian 12, not Debian 8;
* nonroot and nonewprivs: Debian 12 minbase (upstream: Kubernetes' Debian base image), user 1234
  / the setuid nnp built from its Go package.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from . import busybox as busybox_build
from . import gobuild, gorecipes
from .cache import OfflineError, sha256_file
from .debootstrap import Rootfs, RootfsSpec
from .image_recipes import PATH_ENV, k8s_image
from .image_tar import FileEntry, ImageSpec, tar_names

E2E_REGISTRY = "registry.k8s.io/e2e-test-images"
E2E_PATH = "e2e-test-images"
BUSYBOX = "usr/bin/busybox"  # where the busybox image has it (/bin is a link to usr/bin)

AGNHOST_ROOTFS = RootfsSpec("e2e-agnhost-bookworm", "bookworm",
                            ("bash", "bind9-dnsutils", "ca-certificates", "curl", "iperf", "iproute2",
                             "netcat-openbsd"), dirs=("uploads",))
NGINX_ROOTFS = RootfsSpec("e2e-nginx-bookworm", "bookworm", ("nginx",))
DNSUTILS_ROOTFS = RootfsSpec("e2e-dnsutils-bookworm", "bookworm", ("bind9-dnsutils", "iproute2"))
ROOTFS = (AGNHOST_ROOTFS, NGINX_ROOTFS, DNSUTILS_ROOTFS)

# manifest.go's entries: configs[Agnhost] = Config{list.PromoterE2eRegistry, "agnhost", "2.59"}
_CONFIG = re.compile(r'configs\[(\w+)\]\s*=\s*Config\{list\.(\w+),\s*"([^"]+)",\s*"([^"]+)"\}')


@dataclass(frozen=True)
class TestImage:
    key: str        # manifest.go's name: Agnhost, BusyBox, ...
    registry: str   # the RegistryList field: PromoterE2eRegistry, GcRegistry, ...
    name: str
    tag: str


def test_images(kubernetes_module: Path) -> dict[str, TestImage]:
    """Every image of the pinned Kubernetes' e2e manifest, by manifest.go's key."""
    path = kubernetes_module / "test" / "utils" / "image" / "manifest.go"
    try:
        text = path.read_text()
    except OSError as exc:
        raise OfflineError(f"cannot read the e2e image list {path} ({exc.strerror}): `go clean -modcache` and rerun") from None
    found = {m.group(1): TestImage(*m.groups()) for m in _CONFIG.finditer(text)}
    missing = [k for k in ("Agnhost", "AgnhostPrev", "BusyBox", "Nautilus", "Kitten", "Nginx", "NginxNew",
                           "JessieDnsutils", "NonRoot", "Nonewprivs", "APIServer", "Etcd") if k not in found]
    if missing:
        raise OfflineError(f"{path} names no image for {', '.join(missing)}: has its format changed?")
    return found


E2E_ETCD = "etcd-e2e"  # the wrapper of the tests' etcd (its own pin, beside the cluster's)


def go_wrappers(images: Mapping[str, TestImage]) -> list[gobuild.Wrapper]:
    """The Go modules of the images whose version the manifest gives: the sample API server
    (image 1.29.2 is module v0.29.2) and the etcd the Aggregator test runs beside it (3.6.6-0)."""
    apiserver, etcd = images["APIServer"].tag, images["Etcd"].tag
    major, _, rest = apiserver.partition(".")
    if major != "1" or not re.fullmatch(r"\d+\.\d+", rest):
        raise OfflineError(f"sample-apiserver's tag {apiserver} is not 1.<minor>.<patch>: has manifest.go changed?")
    if not re.fullmatch(r"\d+\.\d+\.\d+-\d+", etcd):
        raise OfflineError(f"etcd's tag {etcd} is not <version>-<n>: has manifest.go changed?")
    return [gorecipes.sample_apiserver(f"0.{rest}"), gorecipes.etcd(etcd.rsplit("-", 1)[0], name=E2E_ETCD)]


def image_specs(images: Mapping[str, TestImage], kubernetes_module: Path, agnhost: FileEntry,
                rootfs: Mapping[str, Rootfs], *, nnp: FileEntry, busybox: FileEntry, minbase: Rootfs,
                built: Mapping[str, gobuild.Built]) -> list[ImageSpec]:
    """The conformance images, each under the registry path the tests ask for. ``built``: the
    binaries of go_wrappers (sample-apiserver, the tests' etcd)."""
    wanted = images["BusyBox"].tag.split("-")[0]
    if wanted != busybox_build.VERSION:
        raise OfflineError(f"the pinned Kubernetes' tests ask for busybox {wanted}; offline/busybox.py builds "
                           f"{busybox_build.VERSION}: pin that version and its source's sha256 there")

    def spec(key: str, root: Rootfs, changes: tuple[str, ...], files: tuple[FileEntry, ...] = (),
             links: tuple[tuple[str, str], ...] = ()) -> ImageSpec:
        image = images[key]
        return ImageSpec(f"{E2E_REGISTRY}/{image.name}:{image.tag}", f"{E2E_PATH}/{image.name}:{image.tag}",
                         f"kubesweep/e2e-{image.name}:{image.tag}", (f"ENV {PATH_ENV}", *changes),
                         base=root.path, base_sha256=root.sha256, files=files, links=links)

    porter = kubernetes_module / "test" / "images" / "agnhost" / "porter"
    certs = tuple(FileEntry(name, porter / name, _sha256(porter / name), 0o644)
                  for name in ("localhost.crt", "localhost.key"))  # porter serves TLS with them
    nginx = ('CMD ["nginx", "-g", "daemon off;"]',)  # docker import takes no STOPSIGNAL: SIGTERM, a fast stop
    agnhost_files = (FileEntry("agnhost", agnhost.source, agnhost.sha256), *certs)
    agnhost_changes = ('ENTRYPOINT ["/agnhost"]', 'CMD ["pause"]')
    return [
        spec("Agnhost", rootfs[AGNHOST_ROOTFS.name], agnhost_changes, files=agnhost_files,
             links=(("agnhost-2", "agnhost"),)),
        # the StatefulSet and Deployment tests roll pods from the previous agnhost to the current:
        # the same program under the previous tag is enough for them
        spec("AgnhostPrev", rootfs[AGNHOST_ROOTFS.name], agnhost_changes, files=agnhost_files,
             links=(("agnhost-2", "agnhost"),)),
        spec("BusyBox", minbase, ('CMD ["sh"]',), files=(FileEntry(BUSYBOX, busybox.source, busybox.sha256),),
             links=busybox_links(busybox.source, tar_names(minbase.path))),
        # kubectl's Update Demo: agnhost's file server over the pictures of the pinned module
        *(spec(key, rootfs[AGNHOST_ROOTFS.name], ('ENTRYPOINT ["/agnhost"]', 'CMD ["test-webserver"]'),
               files=(FileEntry("agnhost", agnhost.source, agnhost.sha256), *_pictures(kubernetes_module, name)))
          for key, name in (("Nautilus", "nautilus"), ("Kitten", "kitten"))),
        spec("Nginx", rootfs[NGINX_ROOTFS.name], nginx),
        spec("NginxNew", rootfs[NGINX_ROOTFS.name], nginx),
        spec("JessieDnsutils", rootfs[DNSUTILS_ROOTFS.name], ('CMD ["sh"]',)),
        # the Aggregator test: the sample API server (upstream: on Alpine) and, beside it, etcd
        spec("APIServer", minbase, ('ENTRYPOINT ["/sample-apiserver"]',),
             files=(_built(built, "sample-apiserver/sample-apiserver", "sample-apiserver"),)),
        k8s_image("etcd", images["Etcd"].tag, [_built(built, f"{E2E_ETCD}/etcd", "usr/local/bin/etcd"),
                                               _built(built, f"{E2E_ETCD}/etcdctl", "usr/local/bin/etcdctl")]),
        # upstream: Debian's base image run as user 1234 / the setuid program nnp on it
        spec("NonRoot", minbase, ("USER 1234", 'CMD ["sh"]')),
        spec("Nonewprivs", minbase, ('CMD ["nnp"]',), files=(FileEntry("usr/local/bin/nnp", nnp.source, nnp.sha256, 0o4755),)),
    ]


def _built(built: Mapping[str, gobuild.Built], key: str, dest: str) -> FileEntry:
    try:
        b = built[key]
    except KeyError:
        raise OfflineError(f"{key} was not built: rerun `invoke artifacts --only conformance`") from None
    return FileEntry(dest, b.path, b.sha256)


def _pictures(kubernetes_module: Path, name: str) -> tuple[FileEntry, ...]:
    """test/images/<name>/html/{<name>.jpg,data.json}, at / (where upstream's Dockerfile copies them)."""
    html = kubernetes_module / "test" / "images" / name / "html"
    return tuple(FileEntry(file, html / file, _sha256(html / file), 0o644) for file in (f"{name}.jpg", "data.json"))


def busybox_links(busybox: Path, base: set[str]) -> tuple[tuple[str, str], ...]:
    """`sh`, and each applet of ``busybox`` that the base tree has no program for in /usr/bin (=
    /bin: upstream's image has every applet there, and tests call /bin/sysctl), linked to it."""
    try:
        proc = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, check=False)
    except OSError as exc:
        raise OfflineError(f"cannot run {busybox} --list ({exc.strerror}): rerun `invoke artifacts`") from None
    if proc.returncode != 0:
        raise OfflineError(f"{busybox} --list failed: {proc.stderr.strip()}")
    links = [("usr/bin/sh", "busybox")]
    for name in sorted(set(proc.stdout.split())):
        if "/" in name or name in (".", "..", "busybox", "sh") or f"usr/bin/{name}" in base:
            continue
        links.append((f"usr/bin/{name}", "busybox"))
    return tuple(links)


def _sha256(path: Path) -> str:
    try:
        return sha256_file(path)
    except OSError as exc:
        raise OfflineError(f"cannot read {path} ({exc.strerror}): `go clean -modcache` and rerun") from None
