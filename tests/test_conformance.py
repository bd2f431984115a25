"""Kubernetes' own conformance tests (e2e.test built here) on the local cluster (marker: cluster).

A short focused subset runs in the suite (tests/conformance_names.py): cluster DNS, a Service's
ports by protocol, a Job, ConfigMap and Secret environment, the busybox image's shell, the
topology, a scheduler predicate. The whole selection is `invoke conformance` by hand
(docs/cluster.md)."""

from __future__ import annotations

import json
import re

import pytest

from kubesweep.cli import develop as cli
from kubesweep.local import conformance

from .conformance_names import SUBSET
from .conftest import INVENTORY

pytestmark = pytest.mark.cluster


def test_a_focused_conformance_subset_passes_on_the_three_node_cluster(local_cluster, tmp_path):
    focus = "|".join(re.escape(name) for name in SUBSET)
    code = cli.conformance(INVENTORY, focus=focus, skip=None, kubeconfig=None, report_dir=str(tmp_path))
    summary = json.loads((tmp_path / "summary.json").read_text())
    print(f"\nconformance subset: {summary['passed']} passed, {summary['failed']} failed, "
          f"{summary['skipped']} skipped in {summary['seconds']:.0f}s")
    assert summary["failures"] == [] and summary["passed"] == len(SUBSET), summary
    assert code == 0
    assert (tmp_path / "junit_01.xml").is_file()
    # the tests pulled their images from the cluster registry
    assert "localhost:5000/e2e-test-images" in (tmp_path / "repo-list.yaml").read_text()
    assert conformance.DEFAULT_FOCUS.startswith(r"\[(sig-apps|sig-network|sig-node|sig-scheduling)\]")
