"""A sweep rerun after its image, command or resources changed must not take the old trials'
results (or Jobs) for its own: it stops before creating anything and says what changed."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from kubesweep.sweep import Target, Workspace

from kubesweep.run import journal
from kubesweep.plan import job as manifest
from kubesweep.plan import provenance
from kubesweep.plan import planner as render
from kubesweep.run import runner

from .fakeapi import serve

GRID = """\
name: same
image: localhost:5000/t:1
command: [train, "${{i}}"{extra}]
parameters: {{i: {values}}}
objective: {{metric: acc}}
resources: {{cpu: {cpu}, memory: 64Mi}}
labels: {{team: {team}}}
backoffLimit: {backoff}
"""


def _plan(tmp_path: Path, *, extra: str = "", values: str = "[1, 2]", cpu: str = "100m", team: str = "a",
          backoff: int = 0) -> render.Plan:
    grid = tmp_path / "grid.yaml"
    grid.write_text(GRID.format(extra=extra, values=values, cpu=cpu, team=team, backoff=backoff))
    return render.plan(grid)


class Api:
    """A stand-in API server that lists ``jobs`` and records every request that would change something."""

    def __init__(self, jobs: list[dict] | None = None) -> None:
        self.jobs = jobs or []
        self.writes: list[tuple[str, str]] = []

    def __call__(self, method: str, path: str, body):
        if "watch=true" in path:
            time.sleep(0.2)
            return 200, {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "1"}}}
        if method != "GET":
            self.writes.append((method, path))
            if method == "DELETE":
                self.jobs = [j for j in self.jobs if j["metadata"]["name"] != path.split("?")[0].rsplit("/", 1)[-1]]
            return (201, body) if method == "POST" else (200, {})
        items = self.jobs if "/jobs" in path else []
        return 200, {"metadata": {"resourceVersion": "1"}, "items": items}


def _run(tmp_path: Path, plan: render.Plan, api: Api) -> None:
    with serve(api, tmp_path / "config"):
        runner.Sweep(plan, tmp_path / "jobs", tmp_path / "results", kubeconfig=tmp_path / "config",
                     stop_after=lambda: True).run()


def _finished(tmp_path: Path, plan: render.Plan) -> Path:
    """Run the experiment once (its template is kept) and journal its first trial as finished."""
    _run(tmp_path, plan, Api())
    results = tmp_path / "results" / plan.experiment.name
    t = plan.trials[0]
    journal.append(results, {"name": t.name, "batch": "batch-000", "params": dict(t.params),
                             "state": "succeeded", "metrics": {"acc": 0.5}})
    return results


def test_the_template_is_what_the_trial_runs_and_not_its_bookkeeping(tmp_path):
    base = _plan(tmp_path)
    digest = manifest.template_digest(base.experiment, base.image)
    # labels and the Job's retry settings decide nothing the trial computes
    assert manifest.template_digest(_plan(tmp_path, team="b").experiment, base.image) == digest
    assert manifest.template_digest(_plan(tmp_path, backoff=2).experiment, base.image) == digest
    # nor do the parameter values: every trial of the experiment has the one template
    assert manifest.template_digest(_plan(tmp_path, values="[1, 2, 3]").experiment, base.image) == digest
    # the command, the resources and the image do
    assert manifest.template_digest(_plan(tmp_path, extra=', "--fast"').experiment, base.image) != digest
    assert manifest.template_digest(_plan(tmp_path, cpu="200m").experiment, base.image) != digest
    assert manifest.template_digest(base.experiment, "localhost:5000/t:2") != digest
    # every Job carries it, rendered file and built object alike
    job = manifest.build_job(base.experiment, base.trials[0], image=base.image)
    assert job["metadata"]["annotations"][manifest.A_TEMPLATE] == digest
    assert manifest.A_TEMPLATE not in job["spec"]["template"]["metadata"]["annotations"]


def test_a_rerun_with_another_command_stops_before_anything_is_created_and_says_what_changed(tmp_path):
    results = _finished(tmp_path, _plan(tmp_path))
    kept = json.loads((results / provenance.FILE).read_text())
    assert kept["spec"]["containers"][0]["command"] == ["train", "x"]
    before = journal.path(results).read_bytes()

    api = Api()
    with pytest.raises(provenance.TemplateChanged) as err:
        _run(tmp_path, _plan(tmp_path, extra=', "--fast"', cpu="200m"), api)
    text = str(err.value)
    assert text.startswith(f"same: 1 finished trial (1 succeeded) in {results} ran with another trial template"), text
    assert "--retry-failed" not in text  # a result that succeeded is not thrown away by a retry
    assert 'spec.containers[0].command[2]: (absent) -> "--fast"' in text
    assert 'spec.containers[0].resources.requests.cpu: "100m" -> "200m"' in text
    assert "kubesweep clean -e same --outputs" in text and "Nothing was created" in text
    assert api.writes == []  # not even a dry run
    assert journal.path(results).read_bytes() == before
    assert json.loads((results / provenance.FILE).read_text()) == kept


def test_a_fixed_trainer_reruns_the_trials_that_failed_with_retry_failed(tmp_path):
    """The usual case of a changed template: every trial failed on a bug, the bug is fixed."""
    plan = _plan(tmp_path)
    results = _finished(tmp_path, plan)
    journal.append(results, {"name": plan.trials[0].name, "batch": "batch-000", "params": dict(plan.trials[0].params),
                             "state": "failed", "reason": "Error", "metrics": {}})
    fixed = _plan(tmp_path, extra=', "--fixed"')
    with pytest.raises(provenance.TemplateChanged, match=r"(?s)\(0 succeeded\).* `kubesweep sweep --retry-failed` runs them again"):
        _run(tmp_path, fixed, Api())

    old_job = manifest.build_job(plan.experiment, plan.trials[0], image=plan.image)  # the failed trial's Job
    old_job["metadata"]["uid"] = "u1"
    api = Api([old_job])
    with serve(api, tmp_path / "config"):
        runner.Sweep(fixed, tmp_path / "jobs", tmp_path / "results", kubeconfig=tmp_path / "config",
                     retry_failed=True, stop_after=lambda: True).run()
    assert ("DELETE", f"/apis/batch/v1/namespaces/default/jobs/{plan.trials[0].name}") in \
        [(m, p.split("?")[0]) for m, p in api.writes]
    assert journal.load(results) == {}
    assert json.loads((results / provenance.FILE).read_text()) == manifest.trial_template(fixed.experiment, fixed.image)


def test_more_parameter_values_extend_the_experiment(tmp_path):
    results = _finished(tmp_path, _plan(tmp_path))
    api = Api()
    _run(tmp_path, _plan(tmp_path, values="[1, 2, 3]"), api)
    assert any(m == "POST" and "/jobs" in p for m, p in api.writes)  # it went ahead (admission dry run, Jobs)
    assert (results / provenance.FILE).exists()


def test_a_template_with_no_finished_trial_is_simply_replaced(tmp_path):
    plan = _plan(tmp_path)
    _run(tmp_path, plan, Api())  # a first sweep that finished nothing
    changed = _plan(tmp_path, cpu="200m")
    _run(tmp_path, changed, Api())
    kept = json.loads((tmp_path / "results" / "same" / provenance.FILE).read_text())
    assert kept == manifest.trial_template(changed.experiment, changed.image)


def test_jobs_on_the_cluster_from_another_image_are_not_re_attached(tmp_path):
    """The results directory may be gone while the old Jobs are still there (or still running)."""
    old = _plan(tmp_path)
    job = manifest.build_job(old.experiment, old.trials[0], image="localhost:5000/t:old")
    job["metadata"]["uid"] = "u1"
    api = Api([job])
    with pytest.raises(provenance.TemplateChanged) as err:
        _run(tmp_path, old, api)
    text = str(err.value)
    assert text.startswith("same: 1 Job on the cluster ran with another trial template"), text
    assert "image: localhost:5000/t:old -> localhost:5000/t:1" in text
    assert api.writes == [] and not (tmp_path / "results" / "same").exists()

    # a Job made before templates were recorded carries no digest and is taken as it is
    del job["metadata"]["annotations"][manifest.A_TEMPLATE]
    _run(tmp_path, old, Api([job]))


def test_changes_lists_each_field_and_counts_the_rest():
    old = {"spec": {"containers": [{"image": "a", "env": [{"name": "X", "value": "1"}]}], "nodeSelector": {}}}
    new = {"spec": {"containers": [{"image": "b", "env": []}], "nodeSelector": {"gpu": "true"}}}
    assert provenance.changes(old, new) == [
        'spec.containers[0].env: (absent) -> []',
        'spec.containers[0].env[0].name: "X" -> (absent)',
        'spec.containers[0].env[0].value: "1" -> (absent)',
        'spec.containers[0].image: "a" -> "b"',
        'spec.nodeSelector: {} -> (absent)',
        'spec.nodeSelector.gpu: (absent) -> "true"',
    ]
    err = provenance.refusal("e", "x", [f"f{i}" for i in range(provenance.SHOWN + 2)])
    assert f"f{provenance.SHOWN - 1}" in str(err) and f"f{provenance.SHOWN}" not in str(err)
    assert "... and 2 more" in str(err)


def test_invoke_sweep_refuses_before_it_builds_renders_or_reaches_the_cluster(tmp_path):
    """The kept template is checked first: no image build, no jobs/ written, no API server asked
    (the kubeconfig here points nowhere)."""
    from kubesweep.cli import commands as cli

    old = _plan(tmp_path)
    results = tmp_path / "results" / "same"
    provenance.keep(results, manifest.trial_template(old.experiment, old.image), 0)
    journal.append(results, {"name": old.trials[0].name, "batch": "batch-000", "params": dict(old.trials[0].params),
                             "state": "succeeded", "metrics": {"acc": 0.5}})
    grid = tmp_path / "grid.yaml"
    grid.write_text(GRID.format(extra="", values="[1, 2]", cpu="100m", team="a", backoff=0)
                    .replace("image: localhost:5000/t:1", "image: localhost:5000/t\nbuild: {context: ctx}"))
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text("FROM scratch\n")
    with pytest.raises(provenance.TemplateChanged, match=r"spec\.containers\[0\]\.image: \"localhost:5000/t:1\" -> "
                                                         r"\"localhost:5000/t:[0-9a-f]+\""):
        cli.sweep(str(grid), Target(str(tmp_path / "nowhere.conf")), Workspace(tmp_path / "jobs", tmp_path / "results"))
    assert not (tmp_path / "jobs").exists()


def test_a_dry_run_says_that_the_sweep_would_stop(tmp_path, capsys):
    from kubesweep.cli import commands as cli

    old = _plan(tmp_path)
    results = tmp_path / "results" / "same"
    provenance.keep(results, manifest.trial_template(old.experiment, old.image), 0)
    journal.append(results, {"name": old.trials[0].name, "batch": "batch-000", "params": dict(old.trials[0].params),
                             "state": "succeeded", "metrics": {"acc": 0.5}})
    _plan(tmp_path, cpu="200m")  # the grid file now asks for another cpu
    cli.sweep(str(tmp_path / "grid.yaml"), where=Workspace(tmp_path / "jobs", tmp_path / "results"), dry_run=True)
    err = capsys.readouterr().err
    assert err.startswith("without --dry-run the sweep would stop: same: 1 finished trial (1 succeeded)"), err
    assert 'resources.limits.cpu: "100m" -> "200m"' in err
    assert (tmp_path / "jobs" / "same" / "plan.json").exists()  # the dry run itself did its job

    _plan(tmp_path)  # back as it was: nothing to say
    cli.sweep(str(tmp_path / "grid.yaml"), where=Workspace(tmp_path / "jobs", tmp_path / "results"), dry_run=True)
    assert capsys.readouterr().err == ""


def test_invoke_results_shows_results_of_another_template_with_a_note(tmp_path, capsys):
    """`invoke results` only reads: it still prints the table, and says on stderr that those
    results ran with another template than the grid now gives (train.py edited since, say)."""
    from kubesweep.cli import commands as cli

    old = _plan(tmp_path)
    results = tmp_path / "results" / "same"
    provenance.keep(results, manifest.trial_template(old.experiment, old.image), 0)
    journal.append(results, {"name": old.trials[0].name, "batch": "batch-000", "params": dict(old.trials[0].params),
                             "state": "succeeded", "metrics": {"acc": 0.5}})
    cli.results(str(tmp_path / "grid.yaml"), Workspace(results_dir=tmp_path / "results"))
    assert capsys.readouterr().err == ""  # the same template: nothing to say

    _plan(tmp_path, extra=', "--fast"')  # the grid now runs another command
    cli.results(str(tmp_path / "grid.yaml"), Workspace(results_dir=tmp_path / "results"))
    out, err = capsys.readouterr()
    assert old.trials[0].name[:20] in out and "0.5" in out  # the table as before
    assert err.startswith("note: same: these results (1 finished trial (1 succeeded) in "), err
    assert 'spec.containers[0].command[2]: (absent) -> "--fast"' in err
    assert "a sweep of this file stops" in err

    provenance.path(results).write_text("{not json")  # damaged: the report is still printed, with why
    cli.results(str(tmp_path / "grid.yaml"), Workspace(results_dir=tmp_path / "results"))
    out, err = capsys.readouterr()
    assert "0.5" in out
    assert err.startswith(f"note: {provenance.path(results)}: cannot be read"), err
