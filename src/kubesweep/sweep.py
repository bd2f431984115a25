"""A sweep as one library call: what the `kubesweep` command, the invoke tasks and the benches share.

    from kubesweep import sweep
    plan = sweep.plan("grid.yaml", namespace="team-a")
    outcome = sweep.run(plan, sweep.Target(context="prod"))
    print(outcome.best, outcome.exit_code)

``plan`` validates and expands (nothing is written on error); ``render`` writes the batch
directories; ``run`` checks the results already kept, builds the image, renders, submits, watches,
collects and reports, asking an adaptive sampler (or an unbounded random search) for each next batch; it resumes whatever an earlier run
left. Nothing here prints: what a person should see comes through ``Hooks``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from kubesweep.errors import Interrupted, KubesweepError
from kubesweep.plan import job, provenance
from kubesweep.plan.planner import PLAN_FILE, Plan, build_context, write
from kubesweep.plan.planner import plan as _plan
from kubesweep.run import journal
from kubesweep.run.trialstate import FINAL, TrialRecord

plan = _plan
render = write

__all__ = ["PLAN_FILE", "Hooks", "Outcome", "Plan", "Target", "Workspace", "build_image", "configmaps", "dry_run", "limit",
           "make_pull_secret", "plan", "render", "report", "run", "with_pull_secret", "with_queue"]


@dataclass(frozen=True)
class Target:
    """Which cluster: a kubeconfig (a file, or files joined by os.pathsep and merged; None: as
    kubectl chooses, the local cluster's before ~/.kube/config) and a context in it (None: its
    current one)."""

    kubeconfig: str | None = None
    context: str | None = None


def configmaps(target: Target) -> Callable[[str, str], dict[str, str]]:
    """The reader of a Katib trialTemplate.configMap: (namespace, name) -> the ConfigMap's data,
    one GET through ``target``'s kubeconfig and context, made only when a sweep file names one
    (so that a file without one never needs a cluster). Why it cannot be read is one line:
    spec.formats.katib_trial.ConfigMapUnavailable."""

    def read(namespace: str, name: str) -> dict[str, str]:
        from kubernetes.client.exceptions import ApiException

        from kubesweep.k8s import client as kube
        from kubesweep.spec.formats.katib_trial import ConfigMapUnavailable

        try:
            c = kube.clients(target.kubeconfig, target.context)
            got = kube.request(c, "GET", kube.path("configmaps", namespace, name), timeout=(10, 30))
        except kube.ClusterUnreachable as exc:
            raise ConfigMapUnavailable(f"{exc} (--kubeconfig/--context name the cluster that holds it)") from None
        except ApiException as exc:
            raise ConfigMapUnavailable(kube.api_error(exc)) from None
        except Exception as exc:
            why = kube.no_answer(exc)
            if why is None:
                raise
            raise ConfigMapUnavailable(f"{why.split('. Nothing was lost')[0]} (--kubeconfig/--context name the cluster "
                                       "that holds it)") from None
        return {k: v for k, v in (got.get("data") or {}).items() if isinstance(v, str)}

    return read


@dataclass(frozen=True)
class Workspace:
    """Where a sweep's files go: jobs/<experiment>/ (manifests) and results/<experiment>/ (journal,
    report), relative to the directory the command runs in unless given absolute."""

    jobs_dir: Path = Path("jobs")
    results_dir: Path = Path("results")

    @classmethod
    def under(cls, project_dir: str | Path) -> Workspace:
        root = Path(project_dir)
        return cls(root / "jobs", root / "results")


@dataclass
class Hooks:
    """What a front end wants to hear while a sweep runs (every one optional)."""

    notice: Callable[[str], None] = lambda text: None        # a warning worth showing (placement, admission)
    built: Callable[[Any], None] = lambda image: None         # the trainer image was built or found
    change: Callable[[TrialRecord], None] | None = None      # a trial's state changed
    resumed: Callable[[list[TrialRecord]], None] | None = None  # trials earlier runs finished
    progress: Any = None                                      # runner.Progress: running trials' metric so far
    #: a cancel the front end made itself (kubesweep serve's API, after lifecycle.cancel): the sweep
    #: stops at its next look, without waiting for its Job watch to bring the cancel marks
    cancelled: Callable[[], bool] | None = None


@dataclass
class Outcome:
    """How a sweep ended: counts by state, why it stopped early (None, "goal", "max-failed",
    "cancelled"), the best trial (None: none succeeded), the report's files, and with several
    objectives the Pareto front."""

    experiment: str
    counts: dict[str, int]
    stopped: str | None
    seconds: float
    best: dict[str, Any] | None
    files: dict[str, Path] = field(default_factory=dict)
    #: several objectives: the Pareto-optimal trials ({trial, values, params}); ``best`` is then
    #: the best by the first objective alone
    pareto_front: list[dict[str, Any]] | None = None

    @property
    def exit_code(self) -> int:
        """0: finished within its limits (its goal reached counts); 1: stopped on maxFailedTrials,
        cancelled, or no trial succeeded."""
        if self.stopped in ("max-failed", "cancelled") or not self.counts.get("succeeded"):
            return 1
        return 0


def _check_kept(plan_: Plan, results_dir: Path, retry_failed: bool) -> None:
    """Results of another trial template are not this grid's: refuse before anything is done."""
    exp = plan_.experiment
    kept = results_dir / exp.name
    provenance.check_results(kept, exp.name, job.trial_template(exp, plan_.image),
                             provenance.kept(journal.load(kept), retry_failed))


def limit(plan_: Plan, max_trials: int | None) -> Plan:
    """The plan of a search asked batch by batch, its first batch cut to ``max_trials`` (--max-trials);
    a plan made in advance (grid, random with search.trials) refuses the limit, which it could not keep."""
    from kubesweep.plan.adaptive import incremental

    if max_trials is None:
        return plan_
    exp = plan_.experiment
    if max_trials < 1:
        raise KubesweepError(f"--max-trials must be at least 1 (got {max_trials})")
    if not incremental(exp):
        raise KubesweepError(f"--max-trials limits a search asked batch by batch; {exp.search.algorithm} search "
                             f"{'with search.trials ' if exp.search.algorithm == 'random' else ''}plans its "
                             f"{len(plan_.trials):,} trials in advance: set search.trials (or --trial-limit) instead")
    plan_.trials = plan_.trials[:max_trials]
    return plan_


def dry_run(plan_: Plan, where: Workspace = Workspace(), *, retry_failed: bool = False) -> tuple[Path, str | None]:
    """Write the manifests and plan.json; return where, and why a real run would stop (or None)."""
    target = write(plan_, where.jobs_dir)
    try:
        _check_kept(plan_, where.results_dir, retry_failed)
    except provenance.TemplateChanged as exc:
        return target, str(exc)
    return target, None


def build_image(plan_: Plan) -> Any:
    """Build and push the experiment's image unless the registry has its content tag already."""
    from kubesweep.local import image as images

    exp = plan_.experiment
    if exp.build is None:
        raise KubesweepError(f"{plan_.source.path} has no build: section; its image {exp.image} is used as it is")
    context, dockerfile, args = build_context(plan_.source)
    registry, _, repository = exp.image.partition("/")
    built = images.ensure(context, repository, registry=registry, dockerfile=dockerfile, build_args=args)
    if built.reference != plan_.image:
        raise KubesweepError(f"the built image {built.reference} differs from the planned {plan_.image}")
    return built


def with_pull_secret(plan_: Plan, name: str) -> Plan:
    """The plan, its trials pulling their image with Secret ``name`` too (imagePullSecrets; not
    part of the trial template, so kept results stay this sweep's)."""
    from dataclasses import replace

    from kubesweep.spec.rules import DNS_SUBDOMAIN

    if not DNS_SUBDOMAIN.fullmatch(name) or len(name) > 253:
        raise KubesweepError(f"--pull-secret {name!r} is not a Secret name (a DNS subdomain: lowercase letters, "
                             "digits, '-' and '.')")
    exp = plan_.experiment
    if name not in exp.image_pull_secrets:
        secrets = (*exp.image_pull_secrets, name)
        plan_.source = replace(plan_.source, experiment=exp.model_copy(update={"image_pull_secrets": secrets}))
    return plan_


def with_queue(plan_: Plan, target: Target = Target()) -> str | None:
    """The plan, its trials going to the Kueue LocalQueue of their namespace (or the one the sweep
    file names, which must exist there: ``run.kueue.QueueMissing`` otherwise); what is worth saying.
    A namespace without a LocalQueue (or a cluster without Kueue) leaves the plan as it is."""
    from dataclasses import replace

    from kubesweep.k8s import client as kube
    from kubesweep.run import kueue

    exp = plan_.experiment
    choice = kueue.choose(kube.clients(target.kubeconfig, target.context), exp.namespace, exp.queue)
    if choice.queue != exp.queue:
        plan_.source = replace(plan_.source, experiment=exp.model_copy(update={"queue": choice.queue}))
    return choice.note


def make_pull_secret(plan_: Plan, name: str, target: Target = Target()) -> str:
    """Create or update Secret ``name`` (kubernetes.io/dockerconfigjson) in the sweep's namespace
    from the user's docker credentials for the image's registry; say what was done."""
    from kubesweep.k8s import client as kube
    from kubesweep.local.registry import split_reference
    from kubesweep.run import pullsecret

    exp = plan_.experiment
    done = pullsecret.ensure(kube.clients(target.kubeconfig, target.context), exp.namespace, name, plan_.image)
    return (f"pull secret {name} in namespace {exp.namespace}: {done} from the docker credentials for "
            f"{split_reference(plan_.image)[0]}")


def run(plan_: Plan, target: Target = Target(), where: Workspace = Workspace(), *, apply: Literal["direct", "ansible"] = "direct",
        refill: Literal["trial", "batch"] = "trial", retry_failed: bool = False, hooks: Hooks | None = None,
        pull_secret: str | None = None, max_trials: int | None = None) -> Outcome:
    """Run the sweep to its end (or its goal, or maxFailedTrials) and write its report. With
    ``pull_secret``, that Secret is made from the user's docker credentials and the trials
    pull with it. A sweep asked batch by batch stops asking once ``max_trials`` trials are
    asked (a search without search.trials runs until then, its goal, a cancel, or
    search.trialLimit).

    Ctrl-C raises ``Interrupted`` saying what was left running; the same call resumes. One sweep
    of an experiment at a time per project (run/lease.py): a second is refused while one runs."""
    from kubesweep.run import lease

    with lease.hold(where.results_dir, plan_.experiment.name):
        return _run(plan_, target, where, apply=apply, refill=refill, retry_failed=retry_failed, hooks=hooks,
                    pull_secret=pull_secret, max_trials=max_trials)


def _run(plan_: Plan, target: Target, where: Workspace, *, apply: Literal["direct", "ansible"],
         refill: Literal["trial", "batch"], retry_failed: bool, hooks: Hooks | None, pull_secret: str | None,
         max_trials: int | None) -> Outcome:
    from kubesweep.k8s import client as kube
    from kubesweep.plan import adaptive, search
    from kubesweep.run import placement, runner

    hooks = hooks or Hooks()
    if pull_secret:
        with_pull_secret(plan_, pull_secret)
    _check_kept(plan_, where.results_dir, retry_failed)  # before the image is built or anything written
    for remark in plan_.source.notes:  # what reading a Katib or W&B file did that is worth knowing
        hooks.notice(remark)
    note = with_queue(plan_, target)  # Kueue: the namespace's LocalQueue, or the one named (which must exist)
    if note:
        hooks.notice(note)
    exp = plan_.experiment
    if exp.build is not None:
        hooks.built(build_image(plan_))
    if pull_secret:
        hooks.notice(make_pull_secret(plan_, pull_secret, target))
    incremental = adaptive.incremental(exp)
    if incremental:  # continue the study earlier runs asked (jobs/<exp>/plan.json), if any
        earlier = adaptive.asked(exp, where.jobs_dir, PLAN_FILE)
        if earlier:
            plan_.trials = earlier
        else:  # a first batch larger than the limit is cut
            limit(plan_, max_trials)
    else:
        limit(plan_, max_trials)  # refused: a plan made in advance
    unplaceable = placement.check(kube.clients(target.kubeconfig, target.context), plan_)
    if unplaceable:
        hooks.notice(unplaceable)
    seconds, stopped = 0.0, None
    sweep_: runner.Sweep | None = None
    try:
        while True:
            write(plan_, where.jobs_dir)
            sweep_ = runner.Sweep(plan_, where.jobs_dir, where.results_dir, kubeconfig=target.kubeconfig,
                                  context=target.context, apply=apply, refill=refill, retry_failed=retry_failed,
                                  on_change=hooks.change, on_resume=hooks.resumed, progress=hooks.progress,
                                  notice=hooks.notice, stop_after=hooks.cancelled)
            result = sweep_.run()
            seconds += result.seconds
            stopped = result.stopped
            retry_failed = False
            if not incremental or stopped:
                break
            # the batch is done; ask the sampler for the next one, given every result so far
            following = search.next_batch(exp, plan_.trials, journal.load(where.results_dir / exp.name),
                                          plan_.source.positions.key(("parameters",)), limit=max_trials)
            if not following:
                break
            plan_.trials = plan_.trials + following
    except KeyboardInterrupt:
        raise Interrupted(interrupted(exp.name, sweep_, where.results_dir)) from None
    files = report(plan_, where.results_dir)
    summary = json.loads(files["best"].read_text())
    return Outcome(exp.name, sweep_.counts(), stopped, seconds, summary["best"], files, summary.get("pareto_front"))


def interrupted(name: str, sweep_: Any, results_dir: Path) -> str:
    """What Ctrl-C left: the trials in flight run on (their GPU time is not thrown away), every
    result seen so far is journaled, and the same command resumes (as after a kill -9)."""
    text = f"{name}: interrupted."
    if sweep_ is not None:  # None: stopped before the first trial was submitted (building the image, say)
        running, waiting = sweep_.holding()
        done = sum(r.state in FINAL for r in sweep_.records.values())
        text += (f" {running} running and {waiting} waiting {'trial stays' if running + waiting == 1 else 'trials stay'}"
                 f" on the cluster and go on; {done} finished {'is' if done == 1 else 'are'} kept in"
                 f" {results_dir / name / journal.FILE}.")
    return (text + " Run the same sweep command again to resume: it collects the trials in flight and runs"
            f" the rest, creating none twice. `kubesweep cancel -e {name}` stops the ones in flight instead.")


def report(plan_: Plan, results_dir: Path, done: dict[str, dict[str, Any]] | None = None) -> dict[str, Path]:
    """Write the experiment's report (trials.csv, best.json, plots, report.html, interactive.html) from its journal
    (``done``, read here unless given); return the files by kind."""
    from kubesweep.run import report as reports

    exp = plan_.experiment
    done = journal.load(results_dir / exp.name) if done is None else done
    records = [done.get(t.name) or {"name": t.name, "batch": job.batch_name(t.batch),
                                    "params": t.params, "state": "pending", "metrics": {}} for t in plan_.trials]
    planned = {t.name for t in plan_.trials}
    records += [r for n, r in done.items() if n not in planned]  # batches asked after the first
    objectives = exp.objective.terms()
    multi: dict[str, Any] = {}
    if len(objectives) > 1:  # a Pareto front instead of one best (run/pareto.py)
        from kubesweep.run.pareto import pareto_front

        multi = {"objectives": objectives, "front": pareto_front(records, objectives)}
    extra = [m for m, _ in objectives[1:]] + [m for m in exp.objective.additional_metrics if m not in dict(objectives)]
    return reports.write(results_dir / exp.name, records, experiment=exp.name, metric=exp.objective.metric,
                         direction=exp.objective.direction, params=list(exp.parameters),
                         extra_metrics=extra, **multi,
                         log_params={n for n, p in exp.parameters.items() if p.scale == "log"},
                         early_metric=exp.early_stopping.metric if exp.early_stopping else None)
