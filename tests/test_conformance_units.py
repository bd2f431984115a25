"""The conformance runner's parts that need no cluster: the command, the repo list, the junit counts."""

from __future__ import annotations

import os
import textwrap

import pytest

from kubesweep import conformance
from kubesweep.offline import e2e_images, gobuild


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


def test_the_repo_list_points_the_e2e_images_and_pause_at_the_cluster_registry(tmp_path):
    text = conformance.repo_list(tmp_path / "r.yaml").read_text()
    assert text == "promoterE2eRegistry: localhost:5000/e2e-test-images\ngcRegistry: localhost:5000\n"


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
    assert sorted(gobuild.go_imports(src)) == ["flag", "go.yaml.in/yaml/v2", "k8s.io/kubernetes/test/e2e/apps", "testing"]


def test_test_images_come_from_the_pinned_manifest(tmp_path):
    manifest = tmp_path / "test" / "utils" / "image" / "manifest.go"
    manifest.parent.mkdir(parents=True)
    lines = ['configs[Agnhost] = Config{list.PromoterE2eRegistry, "agnhost", "2.59"}',
             'configs[AgnhostPrev] = Config{list.PromoterE2eRegistry, "agnhost", "2.55"}',
             'configs[BusyBox] = Config{list.PromoterE2eRegistry, "busybox", "1.37.0-1"}',
             'configs[Nginx] = Config{list.PromoterE2eRegistry, "nginx", "1.14-4"}',
             'configs[NginxNew] = Config{list.PromoterE2eRegistry, "nginx", "1.15-4"}',
             'configs[JessieDnsutils] = Config{list.PromoterE2eRegistry, "jessie-dnsutils", "1.7"}',
             'configs[NonRoot] = Config{list.PromoterE2eRegistry, "nonroot", "1.4"}',
             'configs[Nonewprivs] = Config{list.PromoterE2eRegistry, "nonewprivs", "1.3"}']
    manifest.write_text("\n".join(lines))
    found = e2e_images.test_images(tmp_path)
    assert found["Agnhost"] == e2e_images.TestImage("Agnhost", "PromoterE2eRegistry", "agnhost", "2.59")
    manifest.write_text("\n".join(lines[:3]))
    with pytest.raises(Exception, match="names no image for Nginx, NginxNew, JessieDnsutils, NonRoot, Nonewprivs"):
        e2e_images.test_images(tmp_path)


def test_e2e_image_specs_use_the_tests_paths_and_carry_agnhost_and_porter_certificates(tmp_path):
    from pathlib import Path

    from kubesweep.offline import images

    porter = tmp_path / "test" / "images" / "agnhost" / "porter"
    porter.mkdir(parents=True)
    for name in ("localhost.crt", "localhost.key"):
        (porter / name).write_text(name)
    found = {k: e2e_images.TestImage(k, "PromoterE2eRegistry", n, t) for k, n, t in [
        ("Agnhost", "agnhost", "2.59"), ("AgnhostPrev", "agnhost", "2.55"), ("BusyBox", "busybox", "1.37.0-1"), ("Nginx", "nginx", "1.14-4"),
        ("NginxNew", "nginx", "1.15-4"), ("JessieDnsutils", "jessie-dnsutils", "1.7"), ("NonRoot", "nonroot", "1.4"),
        ("Nonewprivs", "nonewprivs", "1.3")]}
    rootfs = {spec.name: images.Rootfs(spec, Path(f"/r/{spec.name}.tar"), spec.name[:8].ljust(64, "0"), True, 0)
              for spec in e2e_images.ROOTFS}
    minbase = images.Rootfs(images.MINBASE_ROOTFS, Path("/r/minbase.tar"), "m" * 64, True, 0)
    specs = e2e_images.image_specs(found, tmp_path, images.FileEntry("agnhost", Path("/b/agnhost"), "a" * 64), rootfs,
                                   nnp=images.FileEntry("nnp", Path("/b/nnp"), "n" * 64), minbase=minbase)
    assert [s.path for s in specs] == ["e2e-test-images/agnhost:2.59", "e2e-test-images/agnhost:2.55",
                                       "e2e-test-images/busybox:1.37.0-1",
                                       "e2e-test-images/nginx:1.14-4", "e2e-test-images/nginx:1.15-4",
                                       "e2e-test-images/jessie-dnsutils:1.7", "e2e-test-images/nonroot:1.4",
                                       "e2e-test-images/nonewprivs:1.3"]
    agnhost = specs[0]
    assert agnhost.upstream == "registry.k8s.io/e2e-test-images/agnhost:2.59"
    assert [f.dest for f in agnhost.files] == ["agnhost", "localhost.crt", "localhost.key"]
    assert agnhost.links == (("agnhost-2", "agnhost"),) and 'ENTRYPOINT ["/agnhost"]' in agnhost.changes
    assert agnhost.base == Path("/r/e2e-agnhost-bookworm.tar")
    assert specs[1].files == agnhost.files and specs[1].local != agnhost.local
    assert specs[3].base == specs[4].base and 'CMD ["nginx", "-g", "daemon off;"]' in specs[3].changes
    assert len({s.local for s in specs}) == len(specs)
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


def test_busybox_applets_are_linked_only_where_the_tree_has_no_program(tmp_path):
    from kubesweep.offline import images

    root = tmp_path / "root"
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "bin").symlink_to("usr/bin")  # Debian's merged /usr
    (root / "usr" / "bin" / "env").write_text("debian's env")
    fake = root / "usr" / "bin" / "busybox"
    fake.write_text("#!/bin/sh\n[ \"$1\" = --list ] && printf 'env\\nsysctl\\nwget\\n../y\\n'\n")
    fake.chmod(0o755)
    assert images.link_busybox_applets(root) == ["sysctl", "wget"]
    assert (root / "usr" / "bin" / "env").read_text() == "debian's env"
    assert os.readlink(root / "usr" / "bin" / "sysctl") == "/bin/busybox"
    assert not (tmp_path / "y").exists()
    assert e2e_images.BUSYBOX_ROOTFS.busybox_applets and ("usr/bin/sh", "bash") in e2e_images.BUSYBOX_ROOTFS.links


def test_conformance_without_a_cluster_says_which_command_brings_it_up_before_building(tmp_path, monkeypatch):
    from kubesweep import cli

    monkeypatch.setenv("KUBESWEEP_CACHE", str(tmp_path))
    monkeypatch.setattr(cli, "build_parts", lambda parts: pytest.fail("nothing is built without a cluster"))
    inventory = cli.Path(__file__).resolve().parents[1] / "inventory" / "local"
    with pytest.raises(conformance.ConformanceError,
                       match=r"no kubeconfig at .*local\.conf: `invoke cluster --inventory inventory/local` brings it up"):
        cli.conformance(inventory, focus=None, skip=None, kubeconfig=None, report_dir=None)
    with pytest.raises(conformance.ConformanceError, match=r"no kubeconfig at .*nope\.conf: give a running cluster's"):
        cli.conformance(inventory, focus=None, skip=None, kubeconfig=str(tmp_path / "nope.conf"), report_dir=None)
