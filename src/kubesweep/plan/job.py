"""Job manifests: one batch/v1 Job per trial, built once as a template and filled per trial.

``build_job`` makes the whole object for one trial (the reference, used to validate and in tests).
``JobTemplate`` dumps the same object once through libyaml with sentinels where the per-trial
values go, then renders each trial by joining text pieces with the values spelled as JSON
strings (which are valid YAML double-quoted scalars). The result loads to exactly what
``build_job`` returns — the tests assert it — at a small fraction of the cost of a YAML dump.
"""

from __future__ import annotations

import functools
import hashlib
import re
from json.encoder import encode_basestring_ascii as _json_quote
from dataclasses import dataclass
from typing import Any, Callable

import yaml

from kubesweep.k8s import quantity
from kubesweep.spec.rules import PLACEHOLDER
from kubesweep.spec.model import Experiment
from kubesweep.plan.trials import Trial, canonical_json, format_value

Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_SURROGATES = re.compile(r"\\u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})")


def _astral(m: re.Match[str]) -> str:
    return "\\U%08x" % (0x10000 + ((int(m.group(1), 16) - 0xD800) << 10) + (int(m.group(2), 16) - 0xDC00))


def quote(text: str) -> str:
    """``text`` as a YAML double-quoted scalar: JSON's ASCII spelling (C speed), except that a
    character beyond U+FFFF is written ``\\UXXXXXXXX``, since YAML refuses JSON's surrogate pairs."""
    quoted = _json_quote(text)
    return _SURROGATES.sub(_astral, quoted) if "\\ud" in quoted else quoted


Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

LABEL_PREFIX = "kubesweep.io/"
L_EXPERIMENT = LABEL_PREFIX + "experiment"
L_BATCH = LABEL_PREFIX + "batch"
L_TRIAL = LABEL_PREFIX + "trial"
A_PARAMS = LABEL_PREFIX + "params"
#: Set by `invoke cancel` on the Jobs it is about to delete: a sweep that sees it stops.
A_CANCELLED = LABEL_PREFIX + "cancelled"
#: The digest of the trial template the Job was made from (``trial_template``): a sweep resumed
#: with a changed image, command, env or resources tells the old Jobs apart by it.
A_TEMPLATE = LABEL_PREFIX + "template"
MANAGED_BY = {"app.kubernetes.io/managed-by": "kubesweep"}
CONTAINER = "trial"
OUTPUT_VOLUME = "output"


def batch_name(index: int) -> str:
    return f"batch-{index:03d}"


def output_dir(exp: Experiment, trial_name: str) -> str:
    mount = exp.output.mount_path if exp.output else "/output"
    return f"{mount.rstrip('/')}/{exp.name}/{trial_name}"


# --------------------------------------------------------------------- placeholder substitution


@functools.lru_cache(maxsize=4096)
def _compile(text: str) -> Callable[[dict[str, str]], str] | str:
    """A function of the trial's substitution table, or ``text`` itself when it has no ``${}``.
    Cached: a sweep builds the Job of each trial it submits from the same few texts."""
    pieces: list[str] = []
    refs: list[str] = []
    last = 0
    buf = ""
    for m in PLACEHOLDER.finditer(text):
        buf += text[last : m.start()]
        last = m.end()
        if m.group(0) == "$$":
            buf += "$"
            continue
        pieces.append(buf)
        refs.append(m.group(1))
        buf = ""
    buf += text[last:]
    if not refs:
        return buf
    pieces.append(buf)

    def fill(table: dict[str, str]) -> str:
        out = [pieces[0]]
        for ref, piece in zip(refs, pieces[1:]):
            out.append(table[ref])
            out.append(piece)
        return "".join(out)

    return fill


def kube_escape(text: str) -> str:
    """``text`` as it must be written in a container's command, args or env value for the
    container to receive it verbatim: Kubernetes replaces ``$(NAME)`` with the variable's value
    and ``$$`` with ``$`` there, and ``$$`` is also its escape for a literal ``$``."""
    return text.replace("$", "$$")


def _escaped(table: dict[str, str]) -> dict[str, str]:
    """The substitution table for command and env values: every substituted value escaped, so a
    parameter value ``$(OUTPUT_DIR)`` or ``a$$b`` reaches the trainer as written. The user's own
    text around the placeholders is left alone (Kubernetes' ``$(VAR)`` works there as usual)."""
    if not any("$" in v for v in table.values()):
        return table  # the common case: nothing to escape, nothing to copy
    return {k: kube_escape(v) for k, v in table.items()}


def _table(exp: Experiment, trial: Trial) -> dict[str, str]:
    table = {k: format_value(v) for k, v in trial.params.items()}
    table["trial"] = trial.name
    table["experiment"] = exp.name
    table["namespace"] = exp.namespace
    table["output"] = output_dir(exp, trial.name)
    table["args_json"] = trial.key or canonical_json(trial.params)
    return table


def _argv(exp: Experiment) -> list[Callable[[Trial, dict[str, str]], list[str]]]:
    """Per command item, a function of the trial and its escaped table giving the argv items it
    becomes for a trial."""
    parts: list[Callable[[Trial, dict[str, str]], list[str]]] = []
    for item in exp.command:
        if item == "${args}":
            parts.append(lambda t, _: [f"--{k}={kube_escape(format_value(v))}" for k, v in t.params.items()])
        elif item == "${args_no_hyphens}":
            parts.append(lambda t, _: [f"{k}={kube_escape(format_value(v))}" for k, v in t.params.items()])
        else:
            fill = _compile(item)
            if isinstance(fill, str):
                parts.append(lambda t, _, s=fill: [s])
            else:
                parts.append(lambda t, table, f=fill: [f(table)])
    return parts


# ----------------------------------------------------------------------------- the Job object


def _labels(exp: Experiment, trial_name: str, batch: str) -> dict[str, str]:
    labels = dict(MANAGED_BY)
    labels.update(exp.labels)
    labels[L_EXPERIMENT] = exp.name
    labels[L_BATCH] = batch
    labels[L_TRIAL] = trial_name
    return labels


def build_job(exp: Experiment, trial: Trial, *, image: str | None = None) -> dict[str, Any]:
    """The complete Job for one trial, as a plain dict."""
    job = _build_job(exp, trial, image=image)
    job["metadata"]["annotations"][A_TEMPLATE] = template_digest(exp, image)
    return job


def _stand_in(exp: Experiment) -> Trial:
    """A trial whose every parameter value is "x": what a template is built from."""
    return Trial(f"{exp.name}-x", 0, 0, {k: "x" for k in exp.parameters})


def trial_template(exp: Experiment, image: str | None = None) -> dict[str, Any]:
    """What every trial of the experiment runs, apart from its parameter values: the pod template
    of a stand-in trial (image, command, env, resources, node selection, volumes, security, the
    pod's annotations), without its labels (bookkeeping, not behaviour) and the parameter
    annotation. Job-level settings (backoffLimit, activeDeadlineSeconds, the TTL) decide how
    long and how often a trial may run, not what it computes, and are left out."""
    pod = _build_job(exp, _stand_in(exp), image=image)["spec"]["template"]
    annotations = {k: v for k, v in pod["metadata"]["annotations"].items() if k != A_PARAMS}
    return {"metadata": {"annotations": annotations}, "spec": pod["spec"]}


_DIGESTS: dict[tuple[int, str | None], tuple[Experiment, str]] = {}


def template_digest(exp: Experiment, image: str | None = None) -> str:
    """A short digest of ``trial_template`` (cached per experiment object: build_job is called per trial)."""
    key = (id(exp), image)
    hit = _DIGESTS.get(key)
    if hit is not None and hit[0] is exp:
        return hit[1]
    digest = hashlib.sha256(canonical_json(trial_template(exp, image)).encode()).hexdigest()[:16]
    if len(_DIGESTS) > 64:
        _DIGESTS.clear()
    _DIGESTS[key] = (exp, digest)
    return digest


def _build_job(exp: Experiment, trial: Trial, *, image: str | None = None) -> dict[str, Any]:
    table = _table(exp, trial)
    escaped = _escaped(table)
    argv = [a for part in _argv(exp) for a in part(trial, escaped)]
    batch = batch_name(trial.batch)
    labels = _labels(exp, trial.name, batch)
    annotations = {}
    for key, value in exp.annotations.items():  # values may use ${placeholders} (e.g. kwok's delays)
        fill = _compile(value)
        annotations[key] = fill if isinstance(fill, str) else fill(table)
    annotations[A_PARAMS] = table["args_json"]

    env = [
        {"name": "OUTPUT_DIR", "value": escaped["output"]},
        {"name": "KUBESWEEP_EXPERIMENT", "value": exp.name},
        {"name": "KUBESWEEP_TRIAL", "value": trial.name},
    ]
    for key, value in exp.env.items():
        text = value if isinstance(value, str) else format_value(value)
        fill = _compile(text)
        env.append({"name": key, "value": fill if isinstance(fill, str) else fill(escaped)})

    r = exp.resources
    requests: dict[str, Any] = {"cpu": quantity.text(r.cpu), "memory": quantity.text(r.memory)}
    if r.limits is None:  # the requests are the limits (Guaranteed QoS unless a GPU is asked)
        limits: dict[str, Any] = dict(requests)
    else:
        limits = {k: quantity.text(v) for k in ("cpu", "memory") if (v := getattr(r.limits, k)) is not None}
    if r.gpu:
        limits["nvidia.com/gpu"] = str(r.gpu)  # a quantity string, as the API (and its client) types it

    if exp.output is None:
        volume: dict[str, Any] = {"name": OUTPUT_VOLUME, "emptyDir": {}}
        mount = "/output"
    elif exp.output.host_path is not None:
        volume = {"name": OUTPUT_VOLUME, "hostPath": {"path": exp.output.host_path, "type": "DirectoryOrCreate"}}
        mount = exp.output.mount_path
    else:
        volume = {"name": OUTPUT_VOLUME, "persistentVolumeClaim": {"claimName": exp.output.pvc}}
        mount = exp.output.mount_path

    sc = exp.security_context
    pod_security: dict[str, Any] = {
        "runAsNonRoot": True,
        "runAsUser": sc.run_as_user,
        "runAsGroup": sc.run_as_group,
    }
    if sc.fs_group is not None:
        pod_security["fsGroup"] = sc.fs_group
    pod_security["seccompProfile"] = {"type": "RuntimeDefault"}

    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": image or exp.image,
        "imagePullPolicy": exp.image_pull_policy,
        "command": argv,
        "env": env,
        "resources": {"requests": requests, "limits": limits},
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": OUTPUT_VOLUME, "mountPath": mount}],
    }
    pod_spec: dict[str, Any] = {"restartPolicy": "Never"}
    if exp.service_account:
        pod_spec["serviceAccountName"] = exp.service_account
    pod_spec["automountServiceAccountToken"] = False
    pod_spec["securityContext"] = pod_security
    if exp.node_selector:
        pod_spec["nodeSelector"] = dict(exp.node_selector)
    # A trial on a node that is lost is evicted after node_loss_grace_seconds (not the default
    # 5 minutes) and, through podFailurePolicy below, rerun elsewhere without counting as failed.
    grace = exp.node_loss_grace_seconds
    pod_spec["tolerations"] = [dict(t) for t in exp.tolerations] + [
        {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": grace}
        for key in ("node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready")]
    pod_spec["containers"] = [container]
    pod_spec["volumes"] = [volume]

    spec: dict[str, Any] = {
        "backoffLimit": exp.backoff_limit,
        "podFailurePolicy": {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]},
    }
    if exp.active_deadline_seconds is not None:
        spec["activeDeadlineSeconds"] = exp.active_deadline_seconds
    if exp.ttl_seconds_after_finished is not None:
        spec["ttlSecondsAfterFinished"] = exp.ttl_seconds_after_finished
    spec["template"] = {
        "metadata": {"labels": dict(labels), "annotations": dict(annotations)},
        "spec": pod_spec,
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": trial.name,
            "namespace": exp.namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": spec,
    }


def dump(obj: Any) -> str:
    """Deterministic YAML for one object (key order as built, no line folding)."""
    return yaml.dump(obj, Dumper=Dumper, sort_keys=False, default_flow_style=False, width=1 << 20, allow_unicode=True)


def load(data: bytes | str) -> Any:
    """A rendered manifest back as data (libyaml when present; we wrote it, so no positions)."""
    return yaml.load(data, Loader=Loader)


# ------------------------------------------------------------------------- the fast renderer

_SENTINEL = "KUBESWEEPSLOT{:06d}X"
_SENTINEL_RX = re.compile(r"KUBESWEEPSLOT(\d{6})X")


@dataclass
class _Slot:
    kind: str  # "name", "batch", "params", "argv", "env"
    index: int = 0


class JobTemplate:
    """Renders the YAML text of each trial's Job by filling a pre-dumped template."""

    def __init__(self, exp: Experiment, *, image: str | None = None):
        self.exp = exp
        self.image = image
        self._argv = _argv(exp)
        self._env = []
        for key, value in exp.env.items():
            text = value if isinstance(value, str) else format_value(value)
            self._env.append(_compile(text))
        self._ann = [(key, _compile(value)) for key, value in exp.annotations.items()]
        self.argc = self._count_argv()
        slots: list[_Slot] = []

        def slot(kind: str, index: int = 0) -> str:
            slots.append(_Slot(kind, index))
            return _SENTINEL.format(len(slots) - 1)

        # Build the reference object for a stand-in trial, then swap every per-trial value
        # for a sentinel, in the exact places build_job puts them.
        obj = build_job(exp, _stand_in(exp), image=image)
        meta = obj["metadata"]
        meta["name"] = slot("name")
        meta["labels"][L_BATCH] = slot("batch")
        meta["labels"][L_TRIAL] = slot("name")
        meta["annotations"][A_PARAMS] = slot("params")
        tmeta_ann = obj["spec"]["template"]["metadata"]["annotations"]
        for i, (key, fill) in enumerate(self._ann):
            if not isinstance(fill, str):
                meta["annotations"][key] = slot("ann", i)
                tmeta_ann[key] = slot("ann", i)
        tmeta = obj["spec"]["template"]["metadata"]
        tmeta["labels"][L_BATCH] = slot("batch")
        tmeta["labels"][L_TRIAL] = slot("name")
        tmeta["annotations"][A_PARAMS] = slot("params")
        container = obj["spec"]["template"]["spec"]["containers"][0]
        container["command"] = [slot("argv", i) for i in range(self.argc)]
        env = container["env"]
        env[0]["value"] = slot("output")
        env[2]["value"] = slot("name")
        for i, fill in enumerate(self._env):
            if not isinstance(fill, str):
                env[3 + i]["value"] = slot("env", i)
        text = dump(obj)
        parts = _SENTINEL_RX.split(text)
        self._static = parts[0::2]
        self._order = [slots[int(n)] for n in parts[1::2]]
        if len(self._order) != len(slots):  # pragma: no cover - guards the sentinel scheme
            raise AssertionError("template sentinel lost in YAML dump")

    def _count_argv(self) -> int:
        n = 0
        for item in self.exp.command:
            n += len(self.exp.parameters) if item in ("${args}", "${args_no_hyphens}") else 1
        return n

    def render(self, trial: Trial) -> str:
        exp = self.exp
        table = _table(exp, trial)
        escaped = _escaped(table)
        argv = [quote(a) for part in self._argv for a in part(trial, escaped)]
        env = [quote(f) if isinstance(f, str) else quote(f(escaped)) for f in self._env]
        ann = [quote(f) if isinstance(f, str) else quote(f(table)) for _, f in self._ann]
        values = {
            "name": quote(trial.name),
            "batch": batch_name(trial.batch),
            "params": quote(table["args_json"]),
            "output": quote(escaped["output"]),
        }
        out = [self._static[0]]
        for slot, static in zip(self._order, self._static[1:]):
            kind = slot.kind
            if kind == "argv":
                out.append(argv[slot.index])
            elif kind == "env":
                out.append(env[slot.index])
            elif kind == "ann":
                out.append(ann[slot.index])
            else:
                out.append(values[kind])
            out.append(static)
        return "".join(out)
