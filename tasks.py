"""The user's commands. Each task parses its arguments and calls into the kubesweep package.

    invoke --list             all tasks
    invoke sweep --grid examples/mnist/grid.yaml --dry-run
    invoke test
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from invoke import Exit, task

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "src"))  # usable from a fresh clone before `pip install -e .`

from kubesweep.cli import commands as cli, develop  # noqa: E402
from kubesweep.sweep import Target, Workspace  # noqa: E402


def call(fn, *args, **kwargs) -> None:
    """Run a command of the library's front end; its exit code ends the task (0 goes on)."""
    code = cli.guard(fn, *args, **kwargs)
    if code:
        raise Exit(code=code)


def number(text: str | None, flag: str) -> int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        print(f"{flag} must be a whole number (got {text!r})", file=sys.stderr)
        raise Exit(code=2) from None


@task(help={
    "grid": "the sweep file: grid.yaml, a Katib Experiment or a W&B sweep config",
    "jobs_dir": "where batch directories are written (default: jobs/)",
    "image": "container image for the trials (required for W&B configs; overrides the file)",
    "wandb_secret": "W&B configs: WANDB_API_KEY from this Secret, NAME[:KEY] (key default api-key)",
    "experiment": "experiment name (overrides the file)",
    "namespace": "Kubernetes namespace (overrides the file)",
    "trial_limit": "refuse sweeps of more trials than this (overrides search.trialLimit)",
    "validate": "fast: schema-check the Job shape once and each trial's values; full: every Job",
})
def render(c, grid, jobs_dir="jobs", image=None, experiment=None, namespace=None, trial_limit=None, validate="fast",
           wandb_secret=None):
    """Validate a sweep file and write one Job manifest per trial into jobs/<experiment>/batch-NNN/."""
    call(cli.render, grid, Workspace(Path(jobs_dir)), image=image, name=experiment, namespace=namespace,
         trial_limit=number(trial_limit, "--trial-limit"), validate=validate, wandb_secret=wandb_secret)


SWEEP_HELP = {
    "grid": "the sweep file: grid.yaml, a Katib Experiment or a W&B sweep config",
    "dry_run": "validate, render and print the plan; submit nothing",
    "jobs_dir": "where batch directories are written (default: jobs/)",
    "results_dir": "where trials.csv, best.json, the plot and the report go (default: results/)",
    "image": "container image for the trials (required for W&B configs; overrides the file)",
    "wandb_secret": "W&B configs: WANDB_API_KEY from this Secret, NAME[:KEY] (key default api-key)",
    "experiment": "experiment name (overrides the file)",
    "namespace": "Kubernetes namespace (overrides the file)",
    "trial_limit": "refuse sweeps of more trials than this (overrides search.trialLimit)",
    "kubeconfig": "cluster to run on (default: $KUBECONFIG, merged; then the local cluster's; then ~/.kube/config)",
    "apply": "direct (Python client, default) or ansible (playbooks/sweep.yml: kubernetes.core, one module call per chunk of a batch)",
    "refill": "trial (start the next trial as soon as a slot frees, default) or batch",
    "retry_failed": "run failed trials again",
    "pull_secret": "make Secret NAME from your docker credentials for the image's registry; the trials pull with it",
    "max_trials": "ask at most N trials (searches asked batch by batch; random without search.trials runs until then)",
}


@task(help=SWEEP_HELP)
def sweep(c, grid, dry_run=False, jobs_dir="jobs", results_dir="results", image=None, experiment=None, namespace=None,
          trial_limit=None, kubeconfig=None, apply="direct", refill="trial", retry_failed=False, wandb_secret=None,
          pull_secret=None, max_trials=None):
    """Run a sweep: build the image, render its Jobs, submit, watch, collect, report the best. Rerun to resume."""
    call(cli.sweep, grid, Target(kubeconfig), Workspace(Path(jobs_dir), Path(results_dir)), dry_run=dry_run,
         image=image, name=experiment, namespace=namespace, trial_limit=number(trial_limit, "--trial-limit"),
         apply=apply, refill=refill, retry_failed=retry_failed, wandb_secret=wandb_secret, pull_secret=pull_secret,
         max_trials=number(max_trials, "--max-trials"))


@task(help={"grid": "the sweep file", "results_dir": "default: results/", "rows": "how many rows (default 20)",
            "experiment": "experiment name (as given to sweep --experiment)", "image": "as given to sweep --image"})
def results(c, grid, results_dir="results", rows=20, experiment=None, image=None):
    """The experiment's trials, best first, with where the CSV, plot and report are."""
    call(cli.results, grid, Workspace(results_dir=Path(results_dir)), rows=number(str(rows), "--rows"), name=experiment,
         image=image)


KUBECONFIG_HELP = "default: $KUBECONFIG, then the local cluster's, then ~/.kube/config"
# the lifecycle commands list across all namespaces unless given one (a Role may cover one only)
NAMESPACE_HELP = "only this namespace (default: all; needs a cluster-wide list)"


@task(help={"experiment": "only this experiment, with its trials in flight listed", "kubeconfig": KUBECONFIG_HELP,
            "namespace": NAMESPACE_HELP})
def status(c, experiment=None, kubeconfig=None, namespace=None):
    """Every experiment on the cluster (or one): trials pending, running, succeeded, failed."""
    call(cli.status, Target(kubeconfig), experiment, namespace)


@task(help={"trial": "the trial (Job) name", "tail": "only the last N lines", "kubeconfig": KUBECONFIG_HELP,
            "namespace": NAMESPACE_HELP})
def logs(c, trial, tail=None, kubeconfig=None, namespace=None):
    """A trial's output."""
    call(cli.logs, Target(kubeconfig), trial, number(tail, "--tail"), namespace)


@task(help={"experiment": "the experiment name", "kubeconfig": KUBECONFIG_HELP,
            "namespace": NAMESPACE_HELP})
def cancel(c, experiment, kubeconfig=None, namespace=None):
    """Stop an experiment, from any shell: a sweep running it stops; its unfinished Jobs are deleted."""
    call(cli.cancel, Target(kubeconfig), experiment, namespace)


@task(help={"experiment": "the experiment name", "outputs": "also delete results/<experiment> and jobs/<experiment>",
            "kubeconfig": KUBECONFIG_HELP, "namespace": NAMESPACE_HELP})
def clean(c, experiment, outputs=False, kubeconfig=None, namespace=None):
    """Delete an experiment's Jobs and pods (and, with --outputs, its local results and manifests)."""
    call(cli.clean, Target(kubeconfig), experiment, outputs=outputs, namespace=namespace)


@task(help={"grid": "the sweep file whose build: section says what to build",
            "pull_secret": "then make Secret NAME in the sweep's namespace from your docker credentials",
            "kubeconfig": KUBECONFIG_HELP, "namespace": "Kubernetes namespace of the pull secret (overrides the file)"})
def image(c, grid, pull_secret=None, kubeconfig=None, namespace=None):
    """Build and push the trainer image, tagged by content (nothing happens when it is already pushed)."""
    call(cli.image, grid, Target(kubeconfig), pull_secret=pull_secret, namespace=namespace)


@task(help={"host": "address to listen on (default 127.0.0.1; anything else needs --tokens)",
            "port": "port to listen on (default 8080)", "tokens": "YAML file of the tokens that may call it",
            "state": "where it remembers the sweeps it drives (default .kubesweep-serve)",
            "jobs_dir": "default: jobs/", "results_dir": "default: results/", "kubeconfig": KUBECONFIG_HELP,
            "tensorboard_image": "the TensorBoard image (default: built here and pushed to localhost:5000)"})
def serve(c, host="127.0.0.1", port=8080, tokens=None, state=None, jobs_dir="jobs", results_dir="results",
          kubeconfig=None, tensorboard_image=None):
    """The HTTP API and live page (`kubesweep serve`): submit, follow, cancel and retry sweeps from a browser."""
    call(cli.serve, Target(kubeconfig), Workspace(Path(jobs_dir), Path(results_dir)), host=host,
         port=int(port), state=Path(state) if state else None, tokens=Path(tokens) if tokens else None,
         tensorboard_image=tensorboard_image)


@task(help={"registry": "where to push it (default localhost:5000, the local cluster's registry)"})
def serve_image(c, registry="localhost:5000"):
    """Build and push the images of `kubesweep serve` in the cluster (this checkout with its serve extra on
    python-base) and of the experiments' TensorBoard, tagged by content; roles/kubesweep_serve takes the
    references it prints."""
    call(develop.serve_image, registry)


@task(help={"inventory": "the Ansible inventory of the local cluster (default inventory/single)",
            "down": "tear the local cluster down: nodes, volumes, mirror, kwok, the dockerd kubesweep started",
            "fake_nodes": "also run kwok with this many fake nodes against the real control plane",
            "gpus_per_node": "nvidia.com/gpu each fake node advertises (default 8)"})
def cluster(c, inventory="inventory/single", down=False, fake_nodes=None, gpus_per_node=8):
    """Bring the local cluster up from our own playbooks (idempotent), or --down to remove it."""
    call(develop.cluster, ROOT / inventory, down=down, fake_nodes=number(fake_nodes, "--fake-nodes"),
         gpus_per_node=number(str(gpus_per_node), "--gpus-per-node"))


@task(help={"only": "comma-separated parts: cluster, gpu, kwok, minikube (default: all)"})
def artifacts(c, only=None):
    """Build the offline mirror from source: Kubernetes, etcd, CNI, crictl, CoreDNS, kwok, node and base images."""
    call(develop.artifacts, only)


@task(help={"inventory": "the Ansible inventory of the local cluster (default inventory/single)"})
def setup(c, inventory="inventory/single"):
    """Everything from a fresh Debian machine: host packages, what the cluster needs of the offline mirror, the cluster."""
    call(develop.setup, ROOT / inventory)


@task(help={"focus": "ginkgo focus regex (default: the [Conformance] tests of sig-apps, sig-network, sig-node, sig-scheduling)",
            "skip": "ginkgo skip regex, added to the tests that cannot run offline",
            "inventory": "the local cluster to test (default inventory/local)",
            "kubeconfig": "another cluster instead (its nodes must reach localhost:5000's images)",
            "report_dir": "where junit_01.xml, e2e.log and summary.json go (default under the cache)",
            "procs": "parallel test processes under the ginkgo CLI (default 1: e2e.test alone)",
            "timeout": "stop the whole run after this long, reporting what finished (default 4h)"})
def conformance(c, focus=None, skip=None, inventory="inventory/local", kubeconfig=None, report_dir=None, procs=1,
                timeout="4h"):
    """Kubernetes' own conformance tests (e2e.test built here) against the local cluster."""
    call(develop.conformance, ROOT / inventory, focus=focus, skip=skip, kubeconfig=kubeconfig,
         report_dir=report_dir, procs=number(str(procs), "--procs") or 1, timeout=timeout)


@task(help={"quick": "skip the tests that need the local cluster (and building its artifacts)",
            "k": "pytest -k expression"})
def test(c, quick=False, k=None):
    """The test suite, as .ci/run runs it: artifacts (cached), then every test, cluster ones included.
    No tests collected is a failure."""
    args = [sys.executable, "-m", "pytest", "-q"]
    if quick:
        args += ["-m", "not cluster"]
    else:
        call(develop.artifacts)
    if k:
        args += ["-k", k]
    code = develop.run_pytest(args, cwd=ROOT)
    if code:
        raise Exit(code=code)


@task
def lint(c):
    """ansible-lint (production profile, no skip list) over roles and playbooks."""
    code = develop.run_checked([sys.executable, "-m", "ansiblelint", "--offline", "--profile", "production"], cwd=ROOT)
    if code:
        raise Exit(code=code)


@task(help={"trials": "how many trials to render (default 100000)", "out": "directory to write into"})
def bench(c, trials=100_000, out=None):
    """Benchmarks: render + validate speed and memory (bench/render.py)."""
    args = [sys.executable, str(ROOT / "bench" / "render.py"), "--trials", str(trials)]
    if out:
        args += ["--out", out]
    code = develop.run_checked(args, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    if code:
        raise Exit(code=code)
