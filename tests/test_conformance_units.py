"""The conformance runner's parts that need no cluster: the command, the repo list, the junit counts."""

from __future__ import annotations

import dataclasses
import textwrap

import pytest

from kubesweep.local import conformance
from kubesweep.offline import e2e_images, gobuild, gomodules, gorecipes


def test_the_command_focuses_skips_and_tolerates_the_gpu_and_control_plane_taints(tmp_path):
    argv = conformance.command(tmp_path / "e2e.test", tmp_path / "k.conf", r"\[Conformance\]", "Serial", tmp_path)
    assert argv[0] == str(tmp_path / "e2e.test")
    assert f"--kubeconfig={tmp_path / 'k.conf'}" in argv and r"--ginkgo.focus=\[Conformance\]" in argv
    assert "--ginkgo.skip=Serial" in argv and "--provider=skeleton" in argv
    assert "--non-blocking-taints=node-role.kubernetes.io/control-plane,nvidia.com/gpu" in argv
    assert not any(a.startswith("--kubectl-path") for a in argv)
    assert f"--kubectl-path={tmp_path / 'kubectl'}" in conformance.command(tmp_path, tmp_path, "x", "", tmp_path,
                                                                           kubectl=tmp_path / "kubectl")
    assert not any(a.startswith("--ginkgo.skip") for a in conformance.command(tmp_path, tmp_path, "x", "", tmp_path))


def test_the_repo_list_points_the_e2e_images_pause_and_etcd_at_the_cluster_registry(tmp_path):
    text = conformance.repo_list(tmp_path / "r.yaml").read_text()
    assert text == ("promoterE2eRegistry: localhost:5000/e2e-test-images\ngcRegistry: localhost:5000\n"
                    "gcEtcdRegistry: localhost:5000\n")


def test_junit_counts_passed_failed_skipped_and_names_the_failures(tmp_path):
    (tmp_path / "junit_01.xml").write_text(textwrap.dedent("""\
        <testsuites><testsuite name="Kubernetes e2e suite" tests="5">
          <testcase name="[SynchronizedBeforeSuite]" status="passed"></testcase>
          <testcase name="[sig-network] DNS should provide DNS for the cluster [Conformance]" status="passed"></testcase>
          <testcase name="[It] [sig-apps] Job should run [Conformance]" status="failed"><failure message="x">boom</failure></testcase>
          <testcase name="[It] [sig-node] Pods not selected [Conformance]" status="skipped"><skipped message="skipped"/></testcase>
          <testcase name="[It] [sig-node] Pods need two nodes [Conformance]" status="skipped"><skipped message="skipped - needs 2 nodes"/></testcase>
          <testcase name="[SynchronizedAfterSuite]" status="failed"><failure message="y">cleanup</failure></testcase>
        </testsuite></testsuites>"""))
    assert conformance.parse_junit(tmp_path) == (
        1, 2, 1, ["[sig-apps] Job should run [Conformance]", "[SynchronizedAfterSuite]"])


def test_missing_binaries_name_the_command_that_builds_them(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBESWEEP_CACHE", str(tmp_path))
    with pytest.raises(conformance.ConformanceError, match=r"invoke artifacts --only conformance"):
        conformance.binaries("1.35.8")


def test_go_imports_reads_blocks_single_lines_and_aliases():
    src = textwrap.dedent('''\
        package e2e
        import "flag"
        import (
            "testing"
            yaml "go.yaml.in/yaml/v2"
            _ "k8s.io/kubernetes/test/e2e/apps"
            // "commented.out/pkg"
        )
        ''')
    assert sorted(gomodules.go_imports(src)) == ["flag", "go.yaml.in/yaml/v2", "k8s.io/kubernetes/test/e2e/apps", "testing"]


def test_test_images_come_from_the_pinned_manifest(tmp_path):
    manifest = tmp_path / "test" / "utils" / "image" / "manifest.go"
    manifest.parent.mkdir(parents=True)
    lines = ['configs[Agnhost] = Config{list.PromoterE2eRegistry, "agnhost", "2.59"}',
             'configs[AgnhostPrev] = Config{list.PromoterE2eRegistry, "agnhost", "2.55"}',
             'configs[BusyBox] = Config{list.PromoterE2eRegistry, "busybox", "1.37.0-1"}',
             'configs[Kitten] = Config{list.PromoterE2eRegistry, "kitten", "1.7"}',
             'configs[Nautilus] = Config{list.PromoterE2eRegistry, "nautilus", "1.7"}',
             'configs[Nginx] = Config{list.PromoterE2eRegistry, "nginx", "1.14-4"}',
             'configs[NginxNew] = Config{list.PromoterE2eRegistry, "nginx", "1.15-4"}',
             'configs[JessieDnsutils] = Config{list.PromoterE2eRegistry, "jessie-dnsutils", "1.7"}',
             'configs[NonRoot] = Config{list.PromoterE2eRegistry, "nonroot", "1.4"}',
             'configs[Nonewprivs] = Config{list.PromoterE2eRegistry, "nonewprivs", "1.3"}',
             'configs[APIServer] = Config{list.PromoterE2eRegistry, "sample-apiserver", "1.29.2"}',
             'configs[Etcd] = Config{list.GcEtcdRegistry, "etcd", "3.6.6-0"}']
    manifest.write_text("\n".join(lines))
    found = e2e_images.test_images(tmp_path)
    assert found["Agnhost"] == e2e_images.TestImage("Agnhost", "PromoterE2eRegistry", "agnhost", "2.59")
    # the Aggregator test's programs: the module versions the tags name, etcd beside the cluster's
    apiserver, etcd = e2e_images.go_wrappers(found)
    assert (apiserver.name, apiserver.version, apiserver.requires) == ("sample-apiserver", "0.29.2",
                                                                       (("k8s.io/sample-apiserver", "v0.29.2"),))
    assert (etcd.name, etcd.version) == ("etcd-e2e", "3.6.6") and etcd.module != gorecipes.etcd("3.6.6").module
    for key, tag, said in (("APIServer", "2.0.1", "is not 1.<minor>.<patch>"), ("Etcd", "3.6.6", "is not <version>-<n>")):
        with pytest.raises(Exception, match=said):
            e2e_images.go_wrappers({**found, key: dataclasses.replace(found[key], tag=tag)})
    manifest.write_text("\n".join(lines[:5]))
    with pytest.raises(Exception, match="names no image for Nginx, NginxNew, JessieDnsutils, NonRoot, Nonewprivs"):
        e2e_images.test_images(tmp_path)


def test_e2e_image_specs_use_the_tests_paths_and_carry_agnhost_and_porter_certificates(tmp_path, monkeypatch):
    from pathlib import Path

    from kubesweep.offline import debootstrap, image_recipes, image_tar

    porter = tmp_path / "test" / "images" / "agnhost" / "porter"
    porter.mkdir(parents=True)
    for name in ("localhost.crt", "localhost.key"):
        (porter / name).write_text(name)
    for name in ("nautilus", "kitten"):
        html = tmp_path / "test" / "images" / name / "html"
        html.mkdir(parents=True)
        (html / f"{name}.jpg").write_bytes(name.encode())
        (html / "data.json").write_text(f'{{"image": "{name}"}}')
    found = {k: e2e_images.TestImage(k, "PromoterE2eRegistry", n, t) for k, n, t in [
        ("Agnhost", "agnhost", "2.59"), ("AgnhostPrev", "agnhost", "2.55"), ("BusyBox", "busybox", "1.37.0-1"),
        ("Nautilus", "nautilus", "1.7"), ("Kitten", "kitten", "1.7"), ("Nginx", "nginx", "1.14-4"),
        ("NginxNew", "nginx", "1.15-4"), ("JessieDnsutils", "jessie-dnsutils", "1.7"), ("NonRoot", "nonroot", "1.4"),
        ("Nonewprivs", "nonewprivs", "1.3"), ("APIServer", "sample-apiserver", "1.29.2"), ("Etcd", "etcd", "3.6.6-0")]}
    built = {key: gobuild.Built(key.split("/")[0], key.split("/")[1], "1", Path(f"/b/{key}"), "d" * 64, True, 0)
             for key in ("sample-apiserver/sample-apiserver", "etcd-e2e/etcd", "etcd-e2e/etcdctl")}
    rootfs = {spec.name: debootstrap.Rootfs(spec, Path(f"/r/{spec.name}.tar"), spec.name[:8].ljust(64, "0"), True, 0)
              for spec in e2e_images.ROOTFS}
    minbase = debootstrap.Rootfs(image_recipes.MINBASE_ROOTFS, Path("/r/minbase.tar"), "m" * 64, True, 0)
    monkeypatch.setattr(e2e_images, "tar_names", lambda path: {"usr/bin/env"} if path == minbase.path else pytest.fail(path))
    fake = _fake_busybox(tmp_path, ["env", "sysctl"])
    specs = e2e_images.image_specs(found, tmp_path, image_tar.FileEntry("agnhost", Path("/b/agnhost"), "a" * 64), rootfs,
                                   nnp=(nnp_entry := image_tar.FileEntry("nnp", Path("/b/nnp"), "n" * 64)),
                                   busybox=image_tar.FileEntry("busybox", fake, "c" * 64), minbase=minbase, built=built)
    assert [s.path for s in specs] == ["e2e-test-images/agnhost:2.59", "e2e-test-images/agnhost:2.55",
                                       "e2e-test-images/busybox:1.37.0-1",
                                       "e2e-test-images/nautilus:1.7", "e2e-test-images/kitten:1.7",
                                       "e2e-test-images/nginx:1.14-4", "e2e-test-images/nginx:1.15-4",
                                       "e2e-test-images/jessie-dnsutils:1.7", "e2e-test-images/sample-apiserver:1.29.2",
                                       "etcd:3.6.6-0", "e2e-test-images/nonroot:1.4", "e2e-test-images/nonewprivs:1.3"]
    agnhost = specs[0]
    assert agnhost.upstream == "registry.k8s.io/e2e-test-images/agnhost:2.59"
    assert [f.dest for f in agnhost.files] == ["agnhost", "localhost.crt", "localhost.key"]
    assert agnhost.links == (("agnhost-2", "agnhost"),) and 'ENTRYPOINT ["/agnhost"]' in agnhost.changes
    assert agnhost.base == Path("/r/e2e-agnhost-bookworm.tar")
    assert specs[1].files == agnhost.files and specs[1].local != agnhost.local
    nautilus = specs[3]  # agnhost's file server over the module's pictures, at /
    assert nautilus.base == agnhost.base and 'CMD ["test-webserver"]' in nautilus.changes
    assert [(f.dest, f.mode) for f in nautilus.files] == [("agnhost", 0o755), ("nautilus.jpg", 0o644), ("data.json", 0o644)]
    assert specs[4].files[1].source.read_bytes() == b"kitten"
    assert specs[5].base == specs[6].base and 'CMD ["nginx", "-g", "daemon off;"]' in specs[5].changes
    assert len({s.local for s in specs}) == len(specs)
    busybox = specs[2]  # upstream's busybox on minbase, as sh and the applets minbase lacks
    assert busybox.base == minbase.path and [(f.dest, f.source) for f in busybox.files] == [("usr/bin/busybox", fake)]
    assert busybox.links == (("usr/bin/sh", "busybox"), ("usr/bin/sysctl", "busybox"))
    apiserver, etcd = specs[-4], specs[-3]
    assert apiserver.base == minbase.path and [f.source for f in apiserver.files] == [Path("/b/sample-apiserver/sample-apiserver")]
    assert etcd.upstream == "registry.k8s.io/etcd:3.6.6-0" and [f.dest for f in etcd.files] == [
        "usr/local/bin/etcd", "usr/local/bin/etcdctl"]
    newer = {**found, "BusyBox": e2e_images.TestImage("BusyBox", "PromoterE2eRegistry", "busybox", "1.38.0-1")}
    with pytest.raises(Exception, match="ask for busybox 1.38.0; offline/busybox.py builds 1.37.0"):
        e2e_images.image_specs(newer, tmp_path, agnhost.files[0], rootfs, nnp=nnp_entry, busybox=busybox.files[0],
                               minbase=minbase, built=built)
    with pytest.raises(Exception, match="etcd-e2e/etcd was not built"):
        e2e_images.image_specs(found, tmp_path, agnhost.files[0], rootfs, nnp=nnp_entry, busybox=busybox.files[0],
                               minbase=minbase, built={k: b for k, b in built.items() if not k.startswith("etcd")})
    nonroot, nnp = specs[-2], specs[-1]
    assert nonroot.base == minbase.path and "USER 1234" in nonroot.changes
    assert [(f.dest, f.mode) for f in nnp.files] == [("usr/local/bin/nnp", 0o4755)]  # setuid, as upstream


def test_in_parallel_the_ginkgo_cli_runs_the_binary_with_its_own_flags_after_the_separator(tmp_path):
    argv = conformance.command(tmp_path / "e2e.test", tmp_path / "k", "F", "S", tmp_path, procs=3,
                               ginkgo=tmp_path / "ginkgo", timeout="65m")
    cut = argv.index("--")
    assert argv[0] == str(tmp_path / "ginkgo") and "--procs=3" in argv[:cut] and "--focus=F" in argv[:cut]
    assert "--skip=S" in argv[:cut] and "--timeout=65m" in argv[:cut] and argv[cut - 1] == str(tmp_path / "e2e.test")
    assert f"--kubeconfig={tmp_path / 'k'}" in argv[cut:] and not any(a.startswith("--ginkgo.") for a in argv)
    with pytest.raises(conformance.ConformanceError, match="ginkgo CLI"):
        conformance.command(tmp_path, tmp_path, "F", "", tmp_path, procs=2)


def _fake_busybox(tmp_path, applets):
    fake = tmp_path / "busybox"
    fake.write_text("#!/bin/sh\n[ \"$1\" = --list ] && printf '%s\\n' " + " ".join(applets) + "\n")
    fake.chmod(0o755)
    return fake


def test_busybox_is_sh_and_its_applets_are_linked_only_where_minbase_has_no_program(tmp_path):
    fake = _fake_busybox(tmp_path, ["env", "sh", "sysctl", "wget", "../y", "busybox"])
    links = e2e_images.busybox_links(fake, {"usr/bin", "usr/bin/env", "usr/bin/sh", "usr/sbin/wget"})
    # Debian's env stays; sh is busybox's ash (not dash); /bin/sysctl and /bin/wget are applets
    assert links == (("usr/bin/sh", "busybox"), ("usr/bin/sysctl", "busybox"), ("usr/bin/wget", "busybox"))
    broken = tmp_path / "broken"
    broken.write_text("#!/bin/sh\necho no >&2; exit 3\n")
    broken.chmod(0o755)
    with pytest.raises(Exception, match="--list failed: no"):
        e2e_images.busybox_links(broken, set())


def test_a_file_or_link_added_on_top_replaces_the_base_entry_of_that_path(tmp_path):
    import io
    import tarfile
    from pathlib import Path

    from kubesweep.offline import cache as cachemod, image_tar

    base = tmp_path / "base.tar"
    with tarfile.open(base, "w") as tar:
        for name in ("./usr", "./usr/bin"):
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        for name, target in (("./usr/bin/sh", "dash"), ("./usr/bin/env", "coreutils")):
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    assert image_tar.tar_names(base) == {"usr", "usr/bin", "usr/bin/sh", "usr/bin/env"}
    binary = tmp_path / "busybox"
    binary.write_bytes(b"upstream")
    spec = image_tar.ImageSpec("", "p:1", "l:1", (), base=base, base_sha256="b" * 64,
                            files=(image_tar.FileEntry("usr/bin/busybox", binary, cachemod.sha256_file(binary)),),
                            links=(("usr/bin/sh", "busybox"),))
    out = io.BytesIO()
    image_tar.write_tar(out, spec)
    out.seek(0)
    with tarfile.open(fileobj=out) as tar:
        members = [(m.name, m.linkname) for m in tar.getmembers()]
    assert [m for m in members if m[0] == "./usr/bin/sh"] == [("./usr/bin/sh", "busybox")]
    assert ("./usr/bin/env", "coreutils") in members and ("./usr/bin/busybox", "") in members
    with pytest.raises(Exception, match="cannot read"):
        image_tar.tar_names(Path(tmp_path / "missing.tar"))


def test_conformance_without_a_cluster_says_which_command_brings_it_up_before_building(tmp_path, monkeypatch):
    from kubesweep.cli import develop as cli

    monkeypatch.setenv("KUBESWEEP_CACHE", str(tmp_path))
    monkeypatch.setattr(cli, "build_parts", lambda parts: pytest.fail("nothing is built without a cluster"))
    inventory = cli.Path(__file__).resolve().parents[1] / "inventory" / "local"
    with pytest.raises(conformance.ConformanceError,
                       match=r"no kubeconfig at .*local\.conf: `invoke cluster --inventory inventory/local` brings it up"):
        cli.conformance(inventory, focus=None, skip=None, kubeconfig=None, report_dir=None)
    with pytest.raises(conformance.ConformanceError, match=r"no kubeconfig at .*nope\.conf: give a running cluster's"):
        cli.conformance(inventory, focus=None, skip=None, kubeconfig=str(tmp_path / "nope.conf"), report_dir=None)
