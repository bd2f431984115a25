"""Plan and render a sweep: input file → validated experiment → trials → Job manifests on disk.

This is the planning half of ``invoke sweep``: nothing here talks to a cluster. Everything is
validated before anything is written, and the write itself is atomic (see writer.py).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

from kubesweep.spec import rules as checks
from kubesweep.plan import job as manifest
from kubesweep.k8s import jobschema as validation
from kubesweep.errors import Collector, Issue, SpecError
from kubesweep.spec.formats import Source, load_experiment
from kubesweep.spec.formats.katib_trial import ConfigMaps
from kubesweep.plan.search import expand
from kubesweep.plan.trials import Trial
from kubesweep.k8s.versions import KUBERNETES_VERSION

PLAN_FILE = "plan.json"


@dataclass
class Plan:
    source: Source
    trials: list[Trial]
    image: str

    @property
    def experiment(self):  # noqa: ANN201 - the Experiment model
        return self.source.experiment

    @property
    def batches(self) -> int:
        return (len(self.trials) + self.experiment.batch_size - 1) // self.experiment.batch_size

    def file_of(self, trial: Trial) -> str:
        return f"{manifest.batch_name(trial.batch)}/{trial.name}.yaml"


def plan(path: str | Path, *, image: str | None = None, name: str | None = None,
         namespace: str | None = None, trial_limit: int | None = None, default_namespace: str | None = None,
         wandb_secret: str | None = None, configmaps: ConfigMaps | None = None) -> Plan:
    """Validate the input and expand its trials; raise SpecError (with positions) if anything is
    wrong. ``namespace`` overrides the file's; ``default_namespace`` (the kubeconfig context's)
    applies only where the file names none (else: ``default``). ``wandb_secret`` (NAME[:KEY], W&B
    configs only) is the Secret the trials read WANDB_API_KEY from. ``configmaps`` reads a Katib
    trialTemplate.configMap from the cluster (sweep.configmaps)."""
    source = load_experiment(path, image=image, name=name, namespace=namespace, trial_limit=trial_limit,
                             default_namespace=default_namespace, wandb_secret=wandb_secret, configmaps=configmaps)
    exp = source.experiment
    try:
        trials = expand(exp, source.positions)
        # The Job's shape is the same for every trial: validate the whole object once against
        # the pinned Kubernetes schema, pointing any error back at the input.
        problems = Collector()
        if trials:
            validation.check_job(manifest.build_job(exp, trials[0]), source.positions, problems)
        problems.raise_if_any()
    except SpecError as exc:
        raise source.explain(exc) from None
    return Plan(source, trials, image_reference(source))


def build_context(source: Source) -> tuple[Path, Path, dict[str, str]]:
    """(context dir, Dockerfile, build args) of an experiment with ``build``, relative to its file."""
    b = source.experiment.build
    assert b is not None
    base = Path(source.path).resolve().parent
    context = (base / b.context).resolve()
    dockerfile = (context / b.dockerfile) if b.dockerfile else context / "Dockerfile"
    if not dockerfile.is_file():
        raise SpecError([Issue(source.positions.value(("build",)), f"no Dockerfile at {dockerfile}")])
    return context, dockerfile, dict(b.args)


def image_reference(source: Source) -> str:
    """The exact image the Jobs run: with ``build``, the repository tagged by content hash."""
    exp = source.experiment
    if exp.build is None:
        return exp.image
    from kubesweep.local.image import content_tag

    context, dockerfile, args = build_context(source)
    return f"{exp.image}:{content_tag(context, dockerfile, args)}"


def _check_values(p: Plan, trial: Trial) -> None:
    # The only per-trial strings that land in constrained fields: the name (metadata.name, the
    # trial label, and through the Job controller the job-name label) and the batch label.
    if len(trial.name) > 63 or not checks.DNS_LABEL.fullmatch(trial.name):
        raise SpecError([Issue(p.source.positions.value(("name",)), f"trial name {trial.name!r} is not a DNS-1123 label")])


def _files(p: Plan, validate: Literal["fast", "full"]) -> Iterator[tuple[str, bytes]]:
    template = manifest.JobTemplate(p.experiment, image=p.image)
    full = validate == "full"
    problems = Collector()
    for trial in p.trials:
        _check_values(p, trial)
        if full:
            validation.check_job(manifest.build_job(p.experiment, trial, image=p.image), p.source.positions, problems)
            problems.raise_if_any()
        yield p.file_of(trial), template.render(trial).encode()
    yield PLAN_FILE, plan_index(p).encode()


def plan_index(p: Plan) -> str:
    """The experiment's index: every trial with its parameters, batch and file."""
    exp = p.experiment
    index = {
        "experiment": exp.name,
        "namespace": exp.namespace,
        "image": p.image,
        "source": {"path": p.source.path, "format": p.source.format,
                   # a trial template read from the cluster is part of what the plan is made from
                   **({"configMaps": {file: hashlib.sha256(text.encode()).hexdigest()
                                      for file, (_, text) in p.source.configmaps.items()}}
                      if p.source.configmaps else {}),
                   **({"notes": list(p.source.notes)} if p.source.notes else {})},
        "kubernetesVersion": KUBERNETES_VERSION,
        "search": exp.search.model_dump(by_alias=True),
        "objective": exp.objective.model_dump(by_alias=True, exclude_none=True),
        "batchSize": exp.batch_size,
        "maxFailedTrials": exp.max_failed_trials,
        "batches": p.batches,
    }
    # One trial per line: readable, diff-friendly, and the C JSON encoder (indent= is pure Python).
    head = json.dumps(index, separators=(", ", ": "), allow_nan=False)[:-1]
    rows = ",\n  ".join(
        json.dumps({"name": t.name, "batch": manifest.batch_name(t.batch), "file": p.file_of(t), "params": t.params}, allow_nan=False)
        for t in p.trials
    )
    return f'{head}, "trials": [\n  {rows}\n]}}\n'


def write(p: Plan, jobs_dir: str | Path, *, validate: Literal["fast", "full"] = "fast") -> Path:
    """Render every trial into ``jobs_dir/<experiment>/batch-NNN/<trial>.yaml`` atomically."""
    from kubesweep.plan.writer import replace_tree, resolve_target

    target = Path(jobs_dir) / p.experiment.name
    resolve_target(target)  # a file in the way is refused before any manifest is rendered
    replace_tree(target, _files(p, validate))
    return target
