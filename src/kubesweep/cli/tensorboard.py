"""`kubesweep tensorboard EXP`: start or reuse the experiment's TensorBoard and port-forward it
until Ctrl-C (run/tensorboard.py; the image from local/tensorboard_image.py unless --image)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Callable

from kubesweep.errors import KubesweepError
from kubesweep.sweep import Target, Workspace


def namespace_of(experiment: str, given: str | None, where: Workspace, target: Target) -> str:
    """--namespace; else the one jobs/<experiment>/plan.json names (the sweep ran from here); else
    the kubeconfig context's; else default."""
    from kubesweep.k8s.client import context_namespace
    from kubesweep.plan.planner import PLAN_FILE

    if given:
        return given
    plan = Path(where.jobs_dir) / experiment / PLAN_FILE
    try:
        with plan.open(encoding="utf-8") as f:  # the header line holds the namespace
            head = f.readline().rstrip().rstrip(",").split(', "trials"')[0]
        found = json.loads(head + "}").get("namespace")
    except (OSError, ValueError, AttributeError):
        found = None
    return found or context_namespace(target.kubeconfig, target.context) or "default"


def run(experiment: str, target: Target, where: Workspace, *, namespace: str | None, image: str | None,
        registry: str, share: str, port: int, address: str, hold: Callable[[], None] | None = None) -> int:
    from kubesweep.k8s import client as kube
    from kubesweep.run import tensorboard

    tensorboard.name_for(experiment)  # a bad name is refused before anything is built or sent
    ns = namespace_of(experiment, namespace, where, target)
    c = kube.clients(target.kubeconfig, target.context)
    if not image:
        from kubesweep.local import tensorboard_image

        built = tensorboard_image.ensure(registry)
        print(f"image {built.reference}: " + ("built and pushed" if built.built else "already in the registry"),
              flush=True)
        image = built.reference
    name = tensorboard.ensure(c, ns, experiment, image=image, share=share)
    print(f"TensorBoard {ns}/{name} reading {tensorboard.logdir(ns, experiment, share)}; waiting for its pod",
          flush=True)
    try:
        fwd = tensorboard.forward(c, ns, name, port, host=address, path=tensorboard.path_prefix(experiment) + "/")
    except OSError as exc:
        raise KubesweepError(f"cannot listen on {address}:{port}: {exc.strerror or exc}") from None
    with fwd:
        print(f"TensorBoard at {fwd.url} (Ctrl-C stops forwarding; the Deployment stays for the next time: "
              f"`kubectl -n {ns} delete deployment,service {name}` removes it)", flush=True)
        (hold or threading.Event().wait)()
    return 0
