"""BusyBox from upstream's source (offline/busybox.py): configuration and the pinned source.

The real build runs where the conformance images are built (tests/test_conformance.py: its
subset includes the tests that need upstream's ash)."""

from __future__ import annotations

import bz2
import io
import tarfile

import pytest

from kubesweep.offline import busybox
from kubesweep.offline.cache import Cache, OfflineError, sha256_file


def test_the_configuration_sets_each_key_whether_defconfig_had_it_unset_set_or_missing(tmp_path):
    config = tmp_path / ".config"
    config.write_text("CONFIG_A=y\n# CONFIG_STATIC is not set\nCONFIG_PIE=y\n# CONFIG_STATICX is not set\n")
    busybox.set_config(config, {"CONFIG_STATIC": "y", "CONFIG_PIE": "n", "CONFIG_NEW": "y"})
    assert config.read_text().splitlines() == ["CONFIG_A=y", "CONFIG_STATIC=y", "CONFIG_PIE=n",
                                               "# CONFIG_STATICX is not set", "CONFIG_NEW=y"]


def _mirror_with(tmp_path, payload: bytes):
    pool = tmp_path / "mirror" / "pool" / "main" / "b" / "busybox"
    pool.mkdir(parents=True)
    tarball = pool / f"busybox_{busybox.VERSION}.orig.tar.bz2"
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo(f"busybox-{busybox.VERSION}/Makefile")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    tarball.write_bytes(bz2.compress(raw.getvalue()))
    return f"file://{tmp_path / 'mirror'}", tarball


def test_a_source_that_is_not_the_pinned_one_is_refused_and_nothing_is_kept(tmp_path):
    mirror, _ = _mirror_with(tmp_path, b"all:\n\ttrue\n")
    cache = Cache(tmp_path / "cache")
    with pytest.raises(OfflineError, match=r"has sha256 [0-9a-f]{64}, not the pinned"):
        busybox.build(cache, mirror, lambda line: None)
    folder = cache.build_dir("busybox", busybox.VERSION)
    assert not (folder / "bin" / "busybox").exists()
    assert not list(folder.glob("*.tar.bz2*")), "a refused download stays on disk"


def test_a_missing_source_names_the_address(tmp_path):
    with pytest.raises(OfflineError, match=r"cannot fetch the busybox source file://.*orig\.tar\.bz2"):
        busybox.build(Cache(tmp_path / "cache"), f"file://{tmp_path}/none", lambda line: None)


def test_a_build_that_fails_says_so_with_the_log_and_leaves_no_binary(tmp_path):
    # the pinned digest is this tarball's: a Makefile whose defconfig fails, as a broken source would
    mirror, tarball = _mirror_with(tmp_path, b"defconfig:\n\t@echo defconfig is broken here; exit 2\n")
    cache = Cache(tmp_path / "cache")
    with pytest.raises(OfflineError, match=r"could not configure busybox .*make.* exited with status 2"):
        busybox.build(cache, mirror, lambda line: None, source_sha256=sha256_file(tarball))
    folder = cache.build_dir("busybox", busybox.VERSION)
    assert not (folder / "bin" / "busybox").exists() and not (folder / "src").exists()
    assert "defconfig is broken here" in cache.log("busybox").read_text()
