"""Writing is atomic: on any error nothing under jobs/ changes, and nothing is ever lost."""

import os

import pytest

from kubesweep import render
from kubesweep.writer import replace_tree

from .conftest import EXAMPLES


def _snapshot(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_failure_midway_leaves_the_old_tree(tmp_path):
    target = tmp_path / "jobs" / "exp"
    replace_tree(target, [("batch-000/a.yaml", b"old a"), ("plan.json", b"{}")])
    before = _snapshot(tmp_path / "jobs")

    def files():
        yield "batch-000/a.yaml", b"new a"
        yield "batch-000/b.yaml", b"new b"
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        replace_tree(target, files())
    assert _snapshot(tmp_path / "jobs") == before
    assert sorted(os.listdir(tmp_path / "jobs")) == ["exp"]  # no temporary leftovers


def test_replacement_drops_stale_files(tmp_path):
    target = tmp_path / "exp"
    replace_tree(target, [("batch-000/a.yaml", b"a"), ("batch-001/b.yaml", b"b")])
    replace_tree(target, [("batch-000/c.yaml", b"c")])
    assert _snapshot(target) == {"batch-000/c.yaml": b"c"}


def test_crash_between_renames_is_recovered(tmp_path):
    target = tmp_path / "exp"
    replace_tree(target, [("a.yaml", b"a")])
    os.rename(target, tmp_path / ".exp.old")  # as if killed between the two renames
    replace_tree(target, [("b.yaml", b"b")])
    assert _snapshot(target) == {"b.yaml": b"b"}
    assert not (tmp_path / ".exp.old").exists()


def test_plan_index_maps_trials_to_params_batches_and_files(tmp_path):
    import json

    plan = render.plan(EXAMPLES / "grid.yaml")
    target = render.write(plan, tmp_path)
    index = json.loads((target / "plan.json").read_text())
    assert index["experiment"] == "mnist" and index["batches"] == 3 and index["batchSize"] == 4
    assert len(index["trials"]) == 12
    for row, trial in zip(index["trials"], plan.trials):
        assert row["name"] == trial.name and row["params"] == trial.params
        assert (target / row["file"]).is_file() and row["file"].startswith(row["batch"] + "/")


def test_invalid_input_writes_nothing(tmp_path, grid_file):
    from kubesweep.errors import SpecError

    good = render.write(render.plan(EXAMPLES / "grid.yaml", name="demo"), tmp_path / "jobs")
    before = _snapshot(tmp_path / "jobs")
    bad = grid_file((EXAMPLES / "grid.yaml").read_text().replace("memory: 512Mi", "memory: lots").replace("name: mnist", "name: demo"))
    with pytest.raises(SpecError):
        render.write(render.plan(bad), tmp_path / "jobs")
    assert _snapshot(tmp_path / "jobs") == before and good.exists()
