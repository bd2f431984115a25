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
* busybox: Debian's busybox-static 1.35 behind the tag the tests ask for, on a Debian base whose
  programs (`sleep`, `cat`, `env` ...) come first, busybox's applets for the rest (`sysctl`,
  `wget`, `nslookup` ...), and bash as `sh` (the tests' scripts use `[[`, and some pass
  environment variables named like `data-1`, which busybox 1.35's ash and dash drop);
* nginx: Debian's nginx 1.22 serving its default page on port 80, under both tags the tests use;
* jessie-dnsutils: dig and nslookup from Debian 12, not Debian 8;
* nonroot and nonewprivs: Debian 12 minbase (upstream: Kubernetes' Debian base image), user 1234
  / the setuid nnp built from its Go package.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .cache import OfflineError, sha256_file
from .images import PATH_ENV, FileEntry, ImageSpec, Rootfs, RootfsSpec

E2E_REGISTRY = "registry.k8s.io/e2e-test-images"
E2E_PATH = "e2e-test-images"

AGNHOST_ROOTFS = RootfsSpec("e2e-agnhost-bookworm", "bookworm",
                            ("bash", "bind9-dnsutils", "ca-certificates", "curl", "iperf", "iproute2",
                             "netcat-openbsd"), dirs=("uploads",))
# busybox's applets where Debian has no program of that name (sysctl, wget, nslookup, ...), as in
# upstream's image; sh is bash: it has `[[` like busybox's ash and, like upstream's busybox 1.37,
# passes environment variables with names no shell accepts (data-1=...) on to the commands it runs
BUSYBOX_ROOTFS = RootfsSpec("e2e-busybox-bookworm", "bookworm", ("busybox-static",),
                            links=(("usr/bin/sh", "bash"),), busybox_applets=True)
NGINX_ROOTFS = RootfsSpec("e2e-nginx-bookworm", "bookworm", ("nginx",))
DNSUTILS_ROOTFS = RootfsSpec("e2e-dnsutils-bookworm", "bookworm", ("bind9-dnsutils", "iproute2"))
ROOTFS = (AGNHOST_ROOTFS, BUSYBOX_ROOTFS, NGINX_ROOTFS, DNSUTILS_ROOTFS)

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
    missing = [k for k in ("Agnhost", "AgnhostPrev", "BusyBox", "Nginx", "NginxNew", "JessieDnsutils", "NonRoot",
                           "Nonewprivs") if k not in found]
    if missing:
        raise OfflineError(f"{path} names no image for {', '.join(missing)}: has its format changed?")
    return found


def image_specs(images: Mapping[str, TestImage], kubernetes_module: Path, agnhost: FileEntry,
                rootfs: Mapping[str, Rootfs], *, nnp: FileEntry, minbase: Rootfs) -> list[ImageSpec]:
    """The conformance images, each under registry.k8s.io/e2e-test-images/<name>:<tag>."""
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
        spec("BusyBox", rootfs[BUSYBOX_ROOTFS.name], ('CMD ["sh"]',)),
        spec("Nginx", rootfs[NGINX_ROOTFS.name], nginx),
        spec("NginxNew", rootfs[NGINX_ROOTFS.name], nginx),
        spec("JessieDnsutils", rootfs[DNSUTILS_ROOTFS.name], ('CMD ["sh"]',)),
        # upstream: Debian's base image run as user 1234 / the setuid program nnp on it
        spec("NonRoot", minbase, ("USER 1234", 'CMD ["sh"]')),
        spec("Nonewprivs", minbase, ('CMD ["nnp"]',), files=(FileEntry("usr/local/bin/nnp", nnp.source, nnp.sha256, 0o4755),)),
    ]


def _sha256(path: Path) -> str:
    try:
        return sha256_file(path)
    except OSError as exc:
        raise OfflineError(f"cannot read {path} ({exc.strerror}): `go clean -modcache` and rerun") from None
