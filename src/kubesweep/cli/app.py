"""`kubesweep`: the command. It parses, calls cli/commands.py (which calls the library) and exits
with a code scripts can rely on:

    0    the sweep finished within its limits (every other command: it did what was asked)
    1    the sweep stopped on maxFailedTrials, was cancelled, or no trial succeeded
    2    bad input (file:line:column errors; nothing was written or applied), no cluster, a
         missing permission, or trials the cluster would refuse (the admission dry run)
    130  Ctrl-C (a sweep's trials in flight go on; the same command resumes)
    141  the reader of the output left (`kubesweep sweep --dry-run | head`), quietly

Cluster options come before the subcommand, as kubectl's global flags:
``kubesweep --context prod -n team-a sweep grid.yaml``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

import click

from kubesweep import __version__
from kubesweep.sweep import Target, Workspace

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class Globals:
    """What the group's options say, handed to every subcommand."""

    def __init__(self, kubeconfig: str | None, context: str | None, namespace: str | None, project_dir: Path | None):
        self.target = Target(kubeconfig, context)
        self.namespace = namespace
        self.where = Workspace.under(project_dir) if project_dir else Workspace()


def _exit(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    from kubesweep.cli import commands

    code = commands.guard(fn, *args, **kwargs)
    sys.exit(code)


@click.group(context_settings=CONTEXT_SETTINGS)
@click.option("--kubeconfig", metavar="PATH", envvar=None,
              help="Kubeconfig file, or files joined by ':' (merged). Default: $KUBECONFIG, then the local "
                   "cluster's (`invoke cluster`), then ~/.kube/config.")
@click.option("--context", metavar="NAME", help="Context in the kubeconfig. Default: its current context.")
@click.option("-n", "--namespace", metavar="NS",
              help="sweep/render: run the trials in this namespace (overrides the sweep file's; a file "
                   "without one uses the kubeconfig context's, else default). status/logs/cancel/clean: look "
                   "in this namespace only (default: all namespaces, or the context's where listing all is "
                   "not allowed).")
@click.option("--project-dir", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="Where jobs/ and results/ are. Default: the current directory.")
@click.version_option(__version__, "--version", prog_name="kubesweep")
@click.pass_context
def main(ctx: click.Context, kubeconfig: str | None, context: str | None, namespace: str | None,
         project_dir: Path | None) -> None:
    """Hyperparameter sweeps as plain Kubernetes Jobs: plan a sweep file's trials, run them on a
    cluster, watch them, read each trial's metric and report the best. Rerun to resume."""
    ctx.obj = Globals(kubeconfig, context, namespace, project_dir)


FILE = click.argument("file", type=click.Path(dir_okay=False, path_type=str), metavar="FILE")
EXPERIMENT = click.option("-e", "--experiment", metavar="NAME",
                          help="Experiment name (overrides the sweep file's metadata.name / name).")
IMAGE = click.option("--image", metavar="REF",
                     help="Container image of the trials (overrides the file's; required for W&B configs).")
# W&B configs name no API key: the trials read it from this Secret (a reference; its value is never read
# here). Kept in ctx.meta and added by _overrides, so the commands' signatures do not change.
WANDB_SECRET = click.option("--wandb-secret", metavar="NAME[:KEY]", expose_value=False,
                            callback=lambda ctx, _param, value: ctx.meta.__setitem__("wandb_secret", value),
                            help="W&B configs: set WANDB_API_KEY in each trial from this Secret's KEY (default api-key).")
PULL_SECRET = click.option("--pull-secret", metavar="NAME",
                           help="Create or update Secret NAME (kubernetes.io/dockerconfigjson) in the sweep's "
                                "namespace from your docker credentials for the image's registry (`docker login`), "
                                "and pull the trials' image with it.")
TRIAL_LIMIT = click.option("--trial-limit", type=click.IntRange(min=1), metavar="N",
                           help="Refuse sweeps of more trials than this (overrides search.trialLimit).")


def _overrides(g: Globals, experiment: str | None, image: str | None = None,
               trial_limit: int | None = None) -> dict[str, Any]:
    return {"name": experiment, "namespace": g.namespace, "image": image, "trial_limit": trial_limit,
            "wandb_secret": click.get_current_context().meta.get("wandb_secret")}


@main.command(context_settings=CONTEXT_SETTINGS)
@FILE
@click.option("--dry-run", is_flag=True, help="Validate, render and print the plan; submit nothing.")
@EXPERIMENT
@IMAGE
@WANDB_SECRET
@TRIAL_LIMIT
@click.option("--apply", type=click.Choice(["direct", "ansible"]), default="direct", show_default=True,
              help="How Jobs are created: the Python client, or playbooks/sweep.yml (kubernetes.core).")
@click.option("--refill", type=click.Choice(["trial", "batch"]), default="trial", show_default=True,
              help="Start the next trial as soon as a slot frees (trial) or when the whole batch is done.")
@click.option("--retry-failed", is_flag=True, help="Run the trials that failed in earlier runs again.")
@PULL_SECRET
@click.option("--max-trials", type=click.IntRange(min=1), metavar="N",
              help="Ask no more than N trials in all (searches asked batch by batch: tpe, gp, cmaes, sobol, nsga2, "
              "and random without search.trials, which otherwise runs until cancelled or its goal).")
@click.pass_obj
def sweep(g: Globals, file: str, dry_run: bool, experiment: str | None, image: str | None, trial_limit: int | None,
          apply: str, refill: str, retry_failed: bool, pull_secret: str | None, max_trials: int | None) -> None:
    """Run the sweep in FILE (grid.yaml, a Katib Experiment or a W&B sweep config): build its
    image, render its Jobs into jobs/<experiment>/, submit, watch, collect, report the best."""
    from kubesweep.cli import commands

    _exit(commands.sweep, file, g.target, g.where, dry_run=dry_run, apply=apply, refill=refill,
          retry_failed=retry_failed, pull_secret=pull_secret, max_trials=max_trials,
          **_overrides(g, experiment, image, trial_limit))


@main.command(context_settings=CONTEXT_SETTINGS)
@FILE
@EXPERIMENT
@IMAGE
@WANDB_SECRET
@TRIAL_LIMIT
@click.option("--validate", type=click.Choice(["fast", "full"]), default="fast", show_default=True,
              help="fast: schema-check the Job's shape once and each trial's values; full: every Job.")
@click.pass_obj
def render(g: Globals, file: str, experiment: str | None, image: str | None, trial_limit: int | None,
           validate: str) -> None:
    """Validate FILE and write one Job manifest per trial into jobs/<experiment>/batch-NNN/."""
    from kubesweep.cli import commands

    _exit(commands.render, file, g.where, validate=validate, target=g.target,
          **_overrides(g, experiment, image, trial_limit))


@main.command(context_settings=CONTEXT_SETTINGS)
@FILE
@EXPERIMENT
@IMAGE
@WANDB_SECRET
@click.option("--rows", type=click.IntRange(min=1), default=20, show_default=True, help="How many trials to list.")
@click.pass_obj
def results(g: Globals, file: str, experiment: str | None, image: str | None, rows: int) -> None:
    """The experiment's trials, best first, and where its CSV, plot and report are."""
    from kubesweep.cli import commands

    _exit(commands.results, file, g.where, rows=rows, target=g.target, **_overrides(g, experiment, image))


@main.command(context_settings=CONTEXT_SETTINGS)
@click.option("-e", "--experiment", metavar="NAME", help="Only this experiment, with its trials in flight listed.")
@click.pass_obj
def status(g: Globals, experiment: str | None) -> None:
    """Every experiment on the cluster (or one): trials pending, running, succeeded, failed, and
    pruned (from the journal under --results-dir: a pruned trial's Job is deleted)."""
    from kubesweep.cli import commands

    _exit(commands.status, g.target, experiment, g.namespace, g.where)


@main.command(context_settings=CONTEXT_SETTINGS)
@click.argument("trial", metavar="TRIAL")
@click.option("--tail", type=click.IntRange(min=0), metavar="N", help="Only the last N lines.")
@click.pass_obj
def logs(g: Globals, trial: str, tail: int | None) -> None:
    """The output of TRIAL (its Job's name, as status and the results list it)."""
    from kubesweep.cli import commands

    _exit(commands.logs, g.target, trial, tail, g.namespace)


@main.command(context_settings=CONTEXT_SETTINGS)
@click.option("-e", "--experiment", metavar="NAME", required=True, help="The experiment to stop.")
@click.pass_obj
def cancel(g: Globals, experiment: str) -> None:
    """Stop an experiment from any shell: a sweep running it stops; its unfinished Jobs are deleted."""
    from kubesweep.cli import commands

    _exit(commands.cancel, g.target, experiment, g.namespace)


@main.command(context_settings=CONTEXT_SETTINGS)
@click.option("-e", "--experiment", metavar="NAME", required=True, help="The experiment to delete.")
@click.option("--outputs", is_flag=True, help="Also delete its results/<experiment> and jobs/<experiment>.")
@click.pass_obj
def clean(g: Globals, experiment: str, outputs: bool) -> None:
    """Delete an experiment's Jobs and pods (and, with --outputs, its local results and manifests)."""
    from kubesweep.cli import commands

    _exit(commands.clean, g.target, experiment, outputs=outputs, where=g.where, namespace=g.namespace)


@main.command("tensorboard", context_settings=CONTEXT_SETTINGS)
@click.argument("experiment", metavar="EXPERIMENT")
@click.option("--image", metavar="REF", help="A TensorBoard image to run (its entrypoint: tensorboard). Default: "
              "build kubesweep/tensorboard (tensorboard from PyPI on python-base) and push it to --registry.")
@click.option("--registry", default="localhost:5000", show_default=True, metavar="HOST[:PORT]",
              help="Where the built TensorBoard image is pushed (the cluster's nodes pull it from there).")
@click.option("--share", default="/share", show_default=True, metavar="PATH",
              help="Where the nodes mount the shared storage (the sweep file's output.share).")
@click.option("--port", type=click.IntRange(0, 65535), default=6006, show_default=True,
              help="Local port to forward (0: any free one).")
@click.option("--address", default="127.0.0.1", show_default=True, metavar="ADDR", help="Local address to listen on.")
@click.pass_obj
def tensorboard(g: Globals, experiment: str, image: str | None, registry: str, share: str, port: int,
                address: str) -> None:
    """Start (or reuse) EXPERIMENT's TensorBoard in its namespace, reading its shared output
    (<share>/<namespace>/<experiment>: one run per trial), and port-forward it here until Ctrl-C.
    The namespace: -n, else jobs/EXPERIMENT/plan.json's, else the kubeconfig context's."""
    from kubesweep.cli import tensorboard as tb

    _exit(tb.run, experiment, g.target, g.where, namespace=g.namespace, image=image, registry=registry,
          share=share, port=port, address=address)


@main.command(context_settings=CONTEXT_SETTINGS)
@FILE
@PULL_SECRET
@click.pass_obj
def image(g: Globals, file: str, pull_secret: str | None) -> None:
    """Build and push the trainer image of FILE's build: section, tagged by content (nothing
    happens when the registry has it already), with your docker credentials for its registry."""
    from kubesweep.cli import commands

    _exit(commands.image, file, g.target, pull_secret=pull_secret, namespace=g.namespace)


@main.command(context_settings=CONTEXT_SETTINGS)
@click.option("--host", default="127.0.0.1", show_default=True, metavar="ADDR",
              help="Address to listen on. Anything but loopback needs --tokens.")
@click.option("--port", type=click.IntRange(min=1, max=65535), default=8080, show_default=True, metavar="PORT",
              help="Port to listen on.")
@click.option("--state", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="Where the server remembers the sweeps it drives and the bodies submitted. "
                   "Default: <project-dir>/.kubesweep-serve.")
@click.option("--tokens", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="YAML file of the tokens that may call the server ({name, token, namespaces | admin: true}). "
                   "Without it: loopback only, reading is open and one admin token is printed.")
@click.option("--tensorboard-image", metavar="REF",
              help="The TensorBoard image an experiment's TensorBoard runs. Default: build kubesweep/tensorboard "
                   "here (tensorboard from PyPI) and push it to localhost:5000, as `kubesweep tensorboard` does.")
@click.pass_obj
def serve(g: Globals, host: str, port: int, state: Path | None, tokens: Path | None,
          tensorboard_image: str | None) -> None:
    """Serve the HTTP API and the live page: submit sweeps, follow their trials, read logs and
    results, cancel and retry, from a browser or a script. The sweeps it runs go on without one."""
    from kubesweep.cli import commands

    _exit(commands.serve, g.target, g.where, host=host, port=port, state=state, tokens=tokens,
          tensorboard_image=tensorboard_image)


@main.group(context_settings=CONTEXT_SETTINGS)
def cluster() -> None:
    """The local cluster from the repository's playbooks (needs root and a checkout of kubesweep)."""


INVENTORY = click.option("--inventory", type=click.Path(file_okay=False, exists=True, path_type=Path), metavar="DIR",
                         help="Ansible inventory of the local cluster. Default: the checkout's inventory/single.")


@cluster.command("up", context_settings=CONTEXT_SETTINGS)
@INVENTORY
@click.option("--fake-nodes", type=click.IntRange(min=0), metavar="N",
              help="Also run kwok with N fake GPU nodes against the real control plane.")
@click.option("--gpus-per-node", type=click.IntRange(min=0), default=8, show_default=True,
              help="nvidia.com/gpu each fake node advertises.")
def cluster_up(inventory: Path | None, fake_nodes: int | None, gpus_per_node: int) -> None:
    """Bring the local cluster up (idempotent: a rerun changes nothing that is right)."""
    from kubesweep.cli import develop

    _exit(develop.cluster, inventory, down=False, fake_nodes=fake_nodes, gpus_per_node=gpus_per_node)


@cluster.command("down", context_settings=CONTEXT_SETTINGS)
def cluster_down() -> None:
    """Tear the local cluster down: nodes, volumes, mirror, kwok, the dockerd kubesweep started."""
    from kubesweep.cli import develop

    _exit(develop.cluster, None, down=True, fake_nodes=None, gpus_per_node=0)


if __name__ == "__main__":  # pragma: no cover
    main()
