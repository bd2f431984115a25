"""Writing is atomic: on any error nothing under jobs/ changes, and nothing is ever lost."""

import os

import pytest

from kubesweep.plan import planner as render
from kubesweep.plan.writer import replace_tree

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


# ------------------------------------------------------------ what may stand at jobs/<experiment>


def _plan(tmp_path):
    return render.plan(EXAMPLES / "grid.yaml")


def test_a_link_to_a_directory_is_written_through_and_kept(tmp_path):
    p = _plan(tmp_path)
    jobs, real = tmp_path / "jobs", tmp_path / "bigdisk" / "mnist"
    real.mkdir(parents=True)
    (real / "stale.yaml").write_text("old\n")
    jobs.mkdir()
    (jobs / "mnist").symlink_to(real)
    for _ in range(2):  # and again: the second write replaces the first, the link stays
        render.write(p, jobs)
        assert (jobs / "mnist").is_symlink() and (jobs / "mnist").resolve() == real
        assert not (real / "stale.yaml").exists() and (real / "plan.json").is_file()
        assert sorted(x.name for x in tmp_path.joinpath("bigdisk").iterdir()) == ["mnist"]


@pytest.mark.parametrize("make, message", [
    (lambda t: t.write_text("my notes\n"), "exists and is not a directory"),
    (lambda t: t.symlink_to(t.parent / "nowhere"), "is a link to"),
])
def test_something_else_in_the_way_is_refused_before_anything_is_written(tmp_path, make, message):
    from kubesweep.plan.writer import NotADirectory

    p = _plan(tmp_path)
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    make(jobs / "mnist")
    before = sorted(os.listdir(jobs))
    with pytest.raises(NotADirectory, match=message):
        render.write(p, jobs)
    assert sorted(os.listdir(jobs)) == before
    assert (jobs / "mnist").is_symlink() or (jobs / "mnist").read_text() == "my notes\n"


def test_a_jobs_dir_under_a_file_is_refused(tmp_path):
    from kubesweep.plan.writer import NotADirectory

    (tmp_path / "jobs").write_text("x")
    with pytest.raises(NotADirectory, match="is not a directory"):
        render.write(_plan(tmp_path), tmp_path / "jobs" / "sub")


def test_a_stray_old_link_does_not_break_later_writes(tmp_path):
    target = tmp_path / "jobs" / "exp"
    replace_tree(target, [("a.yaml", b"a")])
    (tmp_path / "jobs" / ".exp.old").symlink_to(tmp_path)  # left by a crash between the renames
    replace_tree(target, [("b.yaml", b"b")])
    assert sorted(os.listdir(target)) == ["b.yaml"] and not os.path.lexists(tmp_path / "jobs" / ".exp.old")
    assert (tmp_path / "jobs").exists()
