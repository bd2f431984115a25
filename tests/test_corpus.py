"""Katib's and W&B's own examples, rendered as they are.

tests/corpus/ holds kubeflow/katib's examples/v1beta1 Experiments and wandb/examples' sweep
configs, unchanged, under their upstream paths (tests/corpus/MANIFEST: commits and licenses).
Each file either renders (its plan and every trial's Job written, as `kubesweep render` does) or
is refused with the reason listed in REFUSED: a file that starts rendering fails the test until
it is taken off the list, and so does one that stops rendering or is refused for another reason.

``python -m tests.test_corpus`` prints the counts.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import pytest
import yaml

from kubesweep import sweep
from kubesweep.errors import SpecError
from kubesweep.plan import job as manifest
from kubesweep.plan import planner
from kubesweep.spec.formats.katib_trial import ConfigMaps

from .fakeapi import serve

CORPUS = Path(__file__).resolve().parent / "corpus"
#: W&B configs name no image (kubesweep takes it from --image).
WANDB_IMAGE = "localhost:5000/kubesweep/mnist:latest"
#: Options a file is rendered with, as one would pass them on the command line.
OPTIONS: dict[str, dict[str, object]] = {
    # a W&B grid runs every point: 14,580 here, past kubesweep's guard of 10,000 (--trial-limit)
    "wandb/examples/keras/keras-cnn-fashion/sweep-grid-hyperband.yaml": {"trial_limit": 14_580},
}

_OPERATOR = "trialSpec must be a batch/v1 Job (other trial kinds need their operators)"
#: Each refused file → a substring of one of its messages: the reason it does not render.
REFUSED: dict[str, str] = {
    # not a batch/v1 Job: the trial needs another operator (Argo, Tekton, Kubeflow Trainer, MPI, ...)
    "katib/examples/v1beta1/argo/argo-workflow.yaml": _OPERATOR,
    "katib/examples/v1beta1/tekton/pipeline-run.yaml": _OPERATOR,
    "katib/examples/v1beta1/kubeflow-trainer/trainjob-pytorch.yaml": _OPERATOR,
    "katib/examples/v1beta1/kubeflow-training-operator/mpijob-horovod.yaml": _OPERATOR,
    "katib/examples/v1beta1/kubeflow-training-operator/pytorchjob-mnist.yaml": _OPERATOR,
    "katib/examples/v1beta1/kubeflow-training-operator/tfjob-mnist-with-summaries.yaml": _OPERATOR,
    "katib/examples/v1beta1/kubeflow-training-operator/xgboostjob-lightgbm.yaml": _OPERATOR,
    # neural architecture search and population-based training
    "katib/examples/v1beta1/nas/darts-cpu.yaml": "neural architecture search is out of scope",
    "katib/examples/v1beta1/nas/darts-gpu.yaml": "neural architecture search is out of scope",
    "katib/examples/v1beta1/nas/enas-cpu.yaml": "neural architecture search is out of scope",
    "katib/examples/v1beta1/nas/enas-gpu.yaml": "neural architecture search is out of scope",
    # its trialTemplate.configMap names Katib's own trial-templates ConfigMap (served below as Katib's
    # controller reads it), whose defaultTrialTemplate.yaml uses ${trialParameters.momentum}, which the
    # Experiment does not declare (and does not use its numberLayers and optimizer): Katib's webhook
    # refuses the pair too ("parameters ... in spec.trialTemplate not found in spec.trialParameters")
    "katib/examples/v1beta1/trial-template/trial-configmap-source.yaml":
        "configmap kubeflow/trial-templates key defaultTrialTemplate.yaml:15:15: ${trialParameters.momentum} is not declared",
    # W&B Launch: the trial is a Launch job, run by W&B Launch's scheduler
    "wandb/examples/launch/launch-sweeps/quickstart/launch_sweep_config.yaml": "a W&B Launch job is run by W&B Launch",
}
_SUGGESTION = "other adaptive algorithms need Katib's suggestion services"
_TORCH = "needs torch"  # Optuna's GPSampler, where torch is not installed
_BAYES = "bayes needs the W&B server"
#: Files whose fate is the samplers' (algorithms, distributions, metricStrategies, bayes, random
#: without a trial count), in the works beside this test: each renders, or is refused with one of
#: the reasons listed (before their work, or after it).
PENDING: dict[str, tuple[str, ...]] = {
    "katib/examples/v1beta1/hp-tuning/bayesian-optimization.yaml": (_SUGGESTION, _TORCH),
    "katib/examples/v1beta1/hp-tuning/simple-pbt.yaml": (_SUGGESTION, "algorithm pbt is not supported"),
    "katib/examples/v1beta1/hp-tuning/multivariate-tpe.yaml": (_SUGGESTION,),
    "katib/examples/v1beta1/hp-tuning/sobol.yaml": (_SUGGESTION,),
    "katib/examples/v1beta1/hp-tuning/hyperopt-distribution.yaml": ("distribution 'normal' is not supported",),
    "katib/examples/v1beta1/metrics-collector/metrics-collection-strategy.yaml": ("only the 'latest' metric strategy",),
    "wandb/colabs/pyg/pointnet-classification/sweep_config.yaml": (_BAYES, _TORCH),
    "wandb/examples/fastai/fastai-v1-examples/fastai1-simpsons/sweep.yaml": (_BAYES, _TORCH),
    "wandb/examples/keras/keras-cnn-fashion/sweep-bayes-hyperband.yaml": (_BAYES, _TORCH),
    "wandb/examples/minimal-hydra-example/wandb_sweep.yaml": (_BAYES, _TORCH),
    "wandb/examples/keras/keras-cnn-fashion/sweep-random-hyperband.yaml": ("random search needs run_cap",),
    "wandb/examples/llama-cpp/sweep.yaml": ("random search needs run_cap",),
    "wandb/examples/wandb-sweeps/sweeps-cross-validation/sweep-cross-validation.yaml": ("random search needs run_cap",),
}
#: The nine sweep configs of wandb/examples' examples/ that the W&B agent runs (not Launch).
WANDB_AGENT = [
    "examples/fastai/fastai-v1-examples/fastai1-simpsons/sweep.yaml",
    "examples/keras/keras-cnn-fashion/sweep-bayes-hyperband.yaml",
    "examples/keras/keras-cnn-fashion/sweep-grid-hyperband.yaml",
    "examples/keras/keras-cnn-fashion/sweep-random-hyperband.yaml",
    "examples/llama-cpp/sweep.yaml",
    "examples/minimal-hydra-example/wandb_sweep.yaml",
    "examples/pytorch/pytorch-cnn-fashion/sweep-grid-hyperband.yaml",
    "examples/wandb-sweeps/sweeps-boolean-parameters/sweep-bool.yaml",
    "examples/wandb-sweeps/sweeps-cross-validation/sweep-cross-validation.yaml",
]


#: Katib's own ConfigMap of trial templates (the one its manifests install), vendored with the examples.
KATIB_CONFIGMAP = CORPUS / "katib/manifests/v1beta1/components/controller/trial-templates.yaml"


def corpus(fmt: str) -> list[str]:
    return sorted(p.relative_to(CORPUS).as_posix() for p in (CORPUS / fmt).rglob("*.y*ml")
                  if p.relative_to(CORPUS / fmt).parts[0] != "manifests")


@contextmanager
def katib_cluster() -> Iterator[ConfigMaps]:
    """A stand-in API server holding Katib's trial-templates ConfigMap; yields the reader of
    ConfigMaps through it, as `kubesweep render` reads a trialTemplate.configMap from a cluster."""
    configmap = yaml.safe_load(KATIB_CONFIGMAP.read_text())
    meta = configmap["metadata"]

    def answer(method: str, path: str, body: object) -> tuple[int, object]:
        if method == "GET" and path == f"/api/v1/namespaces/{meta['namespace']}/configmaps/{meta['name']}":
            return 200, configmap
        return 404, {"kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404,
                     "message": f"{path} not found"}

    with tempfile.TemporaryDirectory() as tmp, serve(answer, Path(tmp) / "kubeconfig"):
        yield sweep.configmaps(sweep.Target(kubeconfig=str(Path(tmp) / "kubeconfig")))


def render(case: str, jobs_dir: Path) -> planner.Plan:
    """The file's plan, with every trial's Job written as `kubesweep render` writes them (a Katib
    trialTemplate.configMap read from a cluster that holds Katib's trial-templates ConfigMap)."""
    options = dict(OPTIONS.get(case, {}))
    if case.startswith("wandb/"):
        options["image"] = WANDB_IMAGE
    with katib_cluster() if "configMap:" in (CORPUS / case).read_text() else nullcontext(None) as configmaps:
        p = planner.plan(CORPUS / case, configmaps=configmaps, **options)  # type: ignore[arg-type]
    planner.write(p, jobs_dir)
    return p


def outcome(case: str, jobs_dir: Path) -> str | None:
    """None when the file renders, else every message it is refused with, one a line."""
    try:
        render(case, jobs_dir)
    except SpecError as exc:
        return "\n".join(str(i) for i in exc.issues)
    return None


def test_the_corpus_is_the_upstream_files():
    assert len(corpus("katib")) == 33
    assert set(WANDB_AGENT) <= {c.removeprefix("wandb/") for c in corpus("wandb")}
    assert set(REFUSED) | set(PENDING) <= set(corpus("katib") + corpus("wandb"))
    assert not set(REFUSED) & set(PENDING)
    assert "kubeflow/katib" in (CORPUS / "MANIFEST").read_text()
    assert KATIB_CONFIGMAP.relative_to(CORPUS / "katib").as_posix() in (CORPUS / "MANIFEST").read_text()


@pytest.mark.parametrize("case", corpus("katib") + corpus("wandb"))
def test_corpus_file_renders_or_is_refused_with_its_reason(case, tmp_path):
    refused = outcome(case, tmp_path / "jobs")
    if case in PENDING:
        assert refused is None or any(reason in refused for reason in PENDING[case]), refused
    elif case in REFUSED:
        assert refused is not None, f"{case} renders now: take it off REFUSED"
        assert REFUSED[case] in refused, refused
    else:
        assert refused is None, refused
        assert list((tmp_path / "jobs").rglob("*.yaml")), "no Job written"


def test_katib_file_collector_streams_the_file_from_a_native_sidecar():
    p = planner.plan(CORPUS / "katib/examples/v1beta1/metrics-collector/file-metrics-collector.yaml")
    pod = manifest.build_job(p.experiment, p.trials[0])["spec"]["template"]["spec"]
    sidecar, = pod["initContainers"]
    assert (sidecar["name"], sidecar["restartPolicy"], sidecar["image"]) == (
        "metrics", "Always", "ghcr.io/kubeflow/katib/pytorch-mnist-cpu:latest")
    assert sidecar["command"][-1] == "/katib/mnist.log"
    assert {"name": "metrics", "mountPath": "/katib"} in pod["containers"][0]["volumeMounts"]
    assert {"name": "metrics", "emptyDir": {}} in pod["volumes"]
    assert manifest.metrics_container(p.experiment) == "metrics"
    assert p.experiment.objective.regex == "{metricName: ([\\w|-]+), metricValue: ((-?\\d+)(\\.\\d+)?)}"


def test_katib_custom_collector_of_a_file_is_read_like_the_file_collector_without_its_container():
    p = planner.plan(CORPUS / "katib/examples/v1beta1/metrics-collector/custom-metrics-collector.yaml")
    job = manifest.build_job(p.experiment, p.trials[0])
    pod = job["spec"]["template"]["spec"]
    sidecar, = pod["initContainers"]
    assert (sidecar["name"], sidecar["command"][-1]) == ("metrics", "/katib/mnist.log")
    assert len(pod["containers"]) == 1  # the trial's own
    assert {"name": "metrics", "mountPath": "/katib"} in pod["containers"][0]["volumeMounts"]
    # the collector's image, which would report to katib-db-manager, is nowhere in the Job ...
    assert "custom-metrics-collector:latest" not in json.dumps(job)
    assert p.experiment.objective.regex is None  # Katib's File collector default: name=value lines
    # ... and the user is told so, by plan and sweep, and in the plan's index
    note, = p.source.notes
    assert "ghcr.io/kubeflow/katib/custom-metrics-collector:latest" in note and "/katib/mnist.log" in note
    assert json.loads(planner.plan_index(p))["source"]["notes"] == [note]


def test_katib_early_stopping_and_trial_metadata_map_to_the_native_keys():
    p = planner.plan(CORPUS / "katib/examples/v1beta1/early-stopping/median-stop-with-json-format.yaml")
    es = p.experiment.early_stopping
    assert (es.pruner, es.min_trials, es.start_step) == ("medianstop", 1, 2)
    from kubesweep.run.metrics import read_objective
    # hypertune's JSON lines (values as strings, or numbers), the later ones the larger (so that Katib's
    # default strategy for a maximized objective, max, and latest agree)
    assert read_objective('{"accuracy": "0.5", "loss": "0.25", "global_step": "1"}\n{"loss": 2.5e-1, "accuracy": "0.9"}\n',
                          p.experiment.objective) == {"accuracy": 0.9, "loss": 0.25}
    p = planner.plan(CORPUS / "katib/examples/v1beta1/trial-template/trial-metadata-substitution.yaml")
    job = manifest.build_job(p.experiment, p.trials[0])
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert (env["TRIAL_NAME"], env["TRIAL_NAMESPACE"], env["TRIAL_KIND"], env["TRIAL_API_VERSION"],
            env["TRIAL_LABEL_CUSTOM"], env["TRIAL_ANNOTATION_CUSTOM"]) == (
        job["metadata"]["name"], "kubeflow", "Job", "batch/v1", "custom-label", "custom-annotation")


def test_wandb_hyperband_becomes_asha_from_max_iter_and_s():
    p = planner.plan(CORPUS / "wandb/examples/pytorch/pytorch-cnn-fashion/sweep-grid-hyperband.yaml", image=WANDB_IMAGE)
    es = p.experiment.early_stopping
    assert (es.pruner, es.min_resource, es.reduction_factor) == ("asha", 3, 3)  # 27 / 3^2


def counts(jobs_dir: Path) -> str:
    katib = [c for c in corpus("katib") if outcome(c, jobs_dir / c) is None]
    agent = [c for c in WANDB_AGENT if outcome("wandb/" + c, jobs_dir / c) is None]
    others = [c for c in corpus("wandb") if c.removeprefix("wandb/") not in WANDB_AGENT]
    other_ok = [c for c in others if outcome(c, jobs_dir / c) is None]
    return (f"renders {len(katib)} of {len(corpus('katib'))} Katib Experiments / {len(agent)} of {len(WANDB_AGENT)} "
            f"W&B sweep configs (and {len(other_ok)} of {len(others)} others: {', '.join(others)})")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        print(counts(Path(tmp)))


def test_wandb_default_name_is_a_dns_label_and_a_builtin_named_parameter_passes_through_args(tmp_path):
    config = tmp_path / "My_Sweep.yaml"
    config.write_text("program: main.py\nmethod: grid\nmetric: {name: loss}\n"
                      "parameters: {experiment: {values: [expt001]}, lr: {value: 0.1}}\n")
    p = planner.plan(config, image=WANDB_IMAGE)
    assert p.experiment.name == "my-sweep"
    argv = manifest.build_job(p.experiment, p.trials[0])["spec"]["template"]["spec"]["containers"][0]["command"]
    assert argv[-2:] == ["--experiment=expt001", "--lr=0.1"], argv


def test_a_wandb_sweep_without_a_metric_runs_every_point_and_names_no_best(tmp_path):
    from kubesweep import sweep
    from kubesweep.run.collector import judge

    p = planner.plan(CORPUS / "wandb/examples/wandb-sweeps/sweeps-boolean-parameters/sweep-bool.yaml", image=WANDB_IMAGE)
    assert (p.experiment.objective.metric, len(p.trials)) == (None, 8)
    # a trial that exits 0 succeeds whatever it prints (no MetricMissing)
    assert judge(p.experiment.objective, "t", "succeeded", None, None, "done\n", None, {}) == ("succeeded", None, None, {})
    done = {t.name: {"name": t.name, "batch": "batch-000", "params": t.params, "state": "succeeded", "metrics": {}}
            for t in p.trials}
    files = sweep.report(p, tmp_path, done)
    best = json.loads(files["best"].read_text())
    assert (best["best"], best["succeeded"], best["metric"]) == (None, 8, None)
    assert files["csv"].read_text().splitlines()[0].split(",")[5:] == [
        "state", "node", "start", "end", "duration_s", "last_step", "reason", "message"]


@pytest.mark.parametrize("extra, message", [
    ("method: bayes\nrun_cap: 4\n", "gp search needs metric.name"),
    ("method: grid\nearly_terminate: {type: hyperband, min_iter: 3}\n", "earlyStopping needs metric.name"),
])
def test_what_needs_a_metric_is_refused_without_one(tmp_path, extra, message):
    config = tmp_path / "nometric.yaml"
    config.write_text("program: train.py\n" + extra + "parameters: {lr: {values: [0.1, 0.2]}}\n")
    with pytest.raises(SpecError) as exc:
        planner.plan(config, image=WANDB_IMAGE)
    assert message in str(exc.value), str(exc.value)


def test_render_tells_what_it_did_with_a_custom_collector(tmp_path):
    import subprocess
    import sys

    case = CORPUS / "katib/examples/v1beta1/metrics-collector/custom-metrics-collector.yaml"
    done = subprocess.run([sys.executable, "-m", "kubesweep", "render", str(case)], cwd=tmp_path,
                          capture_output=True, text=True, check=True)
    assert "note: the Custom metrics collector 'custom-metrics-logger-and-collector'" in done.stderr, done.stderr
    assert "is not run" in done.stderr and "rendered 12 trials" in done.stdout
