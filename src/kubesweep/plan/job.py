"""Job manifests: one batch/v1 Job per trial, from one definition (``_assemble``).

A trial's per-trial strings (name, batch, parameters, output directory, argv, env values,
annotations) are computed once (``TrialValues``); ``_assemble`` puts them into the experiment's
Job. ``build_job`` returns that Job as a dict; ``JobTemplate`` is its cached text form: the same
Job dumped once through libyaml with a sentinel where each per-trial value goes, filled per
trial at a small fraction of the cost of a YAML dump. Both load to the same object (tested).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import re
from json.encoder import encode_basestring_ascii as _json_quote
from dataclasses import dataclass
from typing import Any, Callable

import yaml

from kubesweep.k8s import quantity
from kubesweep.spec.rules import PLACEHOLDER
from kubesweep.spec.model import QUEUE_LABEL, EnvSource, Experiment
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
#: Set by `kubesweep cancel` on the Jobs it is about to delete: a sweep that sees it stops.
A_CANCELLED = LABEL_PREFIX + "cancelled"
#: The digest of the trial template the Job was made from (``trial_template``): a sweep resumed
#: with a changed image, command, env or resources tells the old Jobs apart by it.
A_TEMPLATE = LABEL_PREFIX + "template"
MANAGED_BY = {"app.kubernetes.io/managed-by": "kubesweep"}
CONTAINER = "trial"
OUTPUT_VOLUME = "output"
SHM_VOLUME = "dshm"
#: The native sidecar that streams a metrics file (``metricsFile``) to its own log, and its volume.
METRICS_CONTAINER = "metrics"
METRICS_VOLUME = "metrics"


def metrics_container(exp: Experiment) -> str:
    """The container whose log holds the trial's metrics: the trial's own, or with ``metricsFile``
    the sidecar that streams that file."""
    return METRICS_CONTAINER if exp.metrics_file else CONTAINER


# The sidecar's script: copy what the file gains to stdout every second (a file rewritten shorter
# starts again from its top), and once more when the kubelet stops the sidecar after the trial's
# container has ended, so the last lines written are in the log before the pod finishes. POSIX sh,
# wc, tail -c and head -c: coreutils or busybox.
_STREAM = (
    'f=$1; n=0; flush() { [ -f "$f" ] || return 0; s=$(wc -c < "$f"); [ "$s" -lt "$n" ] && n=0; '
    '[ "$s" -gt "$n" ] && tail -c +$((n + 1)) "$f" | head -c $((s - n)); n=$s; return 0; }; '
    "trap 'flush; exit 0' TERM INT; while :; do flush; sleep 1 & wait $!; done"
)


def _metrics_sidecar(exp: Experiment, image: str, security: dict[str, Any]) -> dict[str, Any]:
    """A native sidecar (an init container that keeps running: Kubernetes 1.29 and later) in the
    trial's image, sharing the metrics file's directory with the trial's container."""
    folder = exp.metrics_file.rsplit("/", 1)[0] or "/"  # type: ignore[union-attr]
    return {
        "name": METRICS_CONTAINER,
        "image": image,
        "imagePullPolicy": exp.image_pull_policy,
        "restartPolicy": "Always",
        "command": ["sh", "-c", kube_escape(_STREAM), "metrics", kube_escape(exp.metrics_file)],  # type: ignore[arg-type]
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "32Mi"}},
        "securityContext": copy.deepcopy(security),
        "volumeMounts": [{"name": METRICS_VOLUME, "mountPath": folder, "readOnly": True}],
    }


def batch_name(index: int) -> str:
    return f"batch-{index:03d}"


def output_dir(exp: Experiment, trial_name: str) -> str:
    """The trial's own directory: <mountPath>/<experiment>/<trial>, or on the shared storage
    (output.share) <share>/<namespace>/<experiment>/<trial>, the namespace standing for the team."""
    if exp.output is not None and exp.output.share is not None:
        return f"{exp.output.share.rstrip('/')}/{exp.namespace}/{exp.name}/{trial_name}"
    mount = exp.output.mount_path if exp.output else "/output"
    return f"{mount.rstrip('/')}/{exp.name}/{trial_name}"


#: With output.share, the file in the trial's directory that holds everything its command printed.
SHARE_STDOUT = "stdout.log"
#: With output.share the trial's command runs under this POSIX sh script (sh, mkdir, mktemp,
#: mkfifo and tee: coreutils or busybox), so its output is archived by the pod itself, wherever
#: kubesweep runs: it makes the trial's directory ($KUBESWEEP_OUTPUT_DIR; a failure there fails
#: the trial with mkdir's message), runs the command with stdout and stderr into a FIFO that tee
#: copies both to the container's log (read for the metrics, as before) and to stdout.log there,
#: passes SIGTERM and SIGINT (a deleted Job, a pruned trial) on to the command, and exits with
#: the command's status once tee has written the last line. The traps are set first: a signal
#: while the shell is still making the directory stops the trial before its command starts (the
#: shell ends 128+signal), where a trap set after the start left a window in which the signal
#: killed the shell alone and the command never heard of it. A ``wait`` that a trapped signal
#: interrupts returns 128+signal, not the command's status, so the shell waits again after
#: every trap: ``wait`` on a command the shell has already reaped still gives its status (a loop
#: on ``kill -0`` missed a command that had exited and been reaped in between, and the trial
#: ended 143 where its command had exited 3). One window stays: a signal in the microseconds
#: between the fork of the command and its exec reaches the forked shell, not the command.
_ARCHIVE = (
    "c=; s=; trap 's=15; [ -z \"$c\" ] || kill -TERM $c 2>/dev/null' TERM; "
    "trap 's=2; [ -z \"$c\" ] || kill -TERM $c 2>/dev/null' INT; "
    'd=$KUBESWEEP_OUTPUT_DIR; mkdir -p "$d" || exit 1; p=$(mktemp -d) && mkfifo "$p/out" || exit 1; '
    '[ -z "$s" ] || { rm -rf "$p"; exit $((128 + s)); }; '
    f'tee -a "$d/{SHARE_STDOUT}" < "$p/out" & t=$!; "$@" > "$p/out" 2>&1 & c=$!; '
    '[ -z "$s" ] || kill -TERM $c 2>/dev/null; '
    'wait $c; rc=$?; while [ -n "$s" ]; do s=; wait $c; r=$?; [ $r -eq 127 ] || rc=$r; done; '
    'wait $t; rm -rf "$p"; exit $rc'
)


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


class _Compiled:
    """The experiment's texts with placeholders, compiled once: per command item the argv items it
    becomes for a trial, per env value and annotation a fill (or the text itself)."""

    def __init__(self, exp: Experiment):
        self.argv: list[Callable[[Trial, dict[str, str]], list[str]]] = []
        for item in exp.command:
            if item == "${args}":
                self.argv.append(lambda t, _: [f"--{k}={kube_escape(format_value(v))}" for k, v in t.params.items()])
            elif item == "${args_no_hyphens}":
                self.argv.append(lambda t, _: [f"{k}={kube_escape(format_value(v))}" for k, v in t.params.items()])
            else:
                fill = _compile(item)
                self.argv.append((lambda t, _, s=fill: [s]) if isinstance(fill, str)
                                 else (lambda t, table, f=fill: [f(table)]))
        # a value read from a Secret, ConfigMap or field is a reference, the same for every trial ("")
        self.env = [_compile(v if isinstance(v, str) else format_value(v)) if not isinstance(v, EnvSource) else ""
                    for v in exp.env.values()]
        self.annotations = [_compile(v) for v in exp.annotations.values()]


@dataclass(slots=True)
class TrialValues:
    """Every per-trial string of a trial's Job, computed once; ``_assemble`` puts them in place."""

    name: str
    batch: str
    params: str
    output: str
    argv: list[str]
    env: list[str]
    annotations: list[str]

    @classmethod
    def of(cls, exp: Experiment, trial: Trial, compiled: _Compiled) -> TrialValues:
        table = _table(exp, trial)
        escaped = _escaped(table)  # command and env values; annotations are not expanded by Kubernetes
        return cls(trial.name, batch_name(trial.batch), table["args_json"], escaped["output"],
                   [a for part in compiled.argv for a in part(trial, escaped)],
                   [f if isinstance(f, str) else f(escaped) for f in compiled.env],
                   [f if isinstance(f, str) else f(table) for f in compiled.annotations])


def _labels(exp: Experiment, v: TrialValues) -> dict[str, str]:
    labels = dict(MANAGED_BY)
    labels.update(exp.labels)
    labels[L_EXPERIMENT] = exp.name
    labels[L_BATCH] = v.batch
    labels[L_TRIAL] = v.name
    return labels


def _stand_in(exp: Experiment) -> Trial:
    """A trial whose every parameter value is "x": what a template is built from."""
    return Trial(f"{exp.name}-x", 0, 0, {k: "x" for k in exp.parameters})


def _values(exp: Experiment, trial: Trial) -> TrialValues:
    return TrialValues.of(exp, trial, _Compiled(exp))


def build_job(exp: Experiment, trial: Trial, *, image: str | None = None) -> dict[str, Any]:
    """The complete Job for one trial, as a plain dict."""
    job = _assemble(exp, _values(exp, trial), image)
    job["metadata"]["annotations"][A_TEMPLATE] = template_digest(exp, image)
    return job


def trial_template(exp: Experiment, image: str | None = None) -> dict[str, Any]:
    """What every trial of the experiment runs, apart from its parameter values: the pod template
    of a stand-in trial (image, command, env, resources, node selection, volumes, security, the
    pod's annotations), without its labels (bookkeeping, not behaviour) and the parameter
    annotation. Job-level settings (backoffLimit, activeDeadlineSeconds, the TTL) decide how
    long and how often a trial may run, not what it computes, and are left out."""
    pod = _assemble(exp, _values(exp, _stand_in(exp)), image)["spec"]["template"]
    annotations = {k: v for k, v in pod["metadata"]["annotations"].items() if k != A_PARAMS}
    # The pull credentials decide whether the image can be fetched, not what the trial computes:
    # rotating or adding them must not make a resumed sweep refuse its own results.
    spec = {k: v for k, v in pod["spec"].items() if k != "imagePullSecrets"}
    return {"metadata": {"annotations": annotations}, "spec": spec}


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


def _assemble(exp: Experiment, v: TrialValues, image: str | None) -> dict[str, Any]:
    """The one definition of a trial's Job: the experiment's settings with the trial's values."""
    labels = _labels(exp, v)
    annotations = dict(zip(exp.annotations, v.annotations))  # values may use ${placeholders} (e.g. kwok's delays)
    annotations[A_PARAMS] = v.params

    env = [
        {"name": "OUTPUT_DIR", "value": v.output},
        {"name": "KUBESWEEP_EXPERIMENT", "value": exp.name},
        {"name": "KUBESWEEP_TRIAL", "value": v.name},
    ]
    share = exp.output.share if exp.output is not None else None
    if share is not None:  # the trial's directory on the shared storage, which outlives the Job
        env.append({"name": "KUBESWEEP_OUTPUT_DIR", "value": v.output})
    # A Secret's or ConfigMap's value is never read here: the manifest names it and the kubelet reads it.
    env += [{"name": key, "valueFrom": given.manifest()} if isinstance(given, EnvSource) else {"name": key, "value": value}
            for (key, given), value in zip(exp.env.items(), v.env)]

    r = exp.resources
    requests: dict[str, Any] = {"cpu": quantity.text(r.cpu), "memory": quantity.text(r.memory)}
    if r.limits is None:  # the requests are the limits (Guaranteed QoS unless a GPU is asked)
        limits: dict[str, Any] = dict(requests)
    else:
        limits = {k: quantity.text(q) for k in ("cpu", "memory") if (q := getattr(r.limits, k)) is not None}
    if r.gpu:
        limits["nvidia.com/gpu"] = str(r.gpu)  # a quantity string, as the API (and its client) types it
    for name, count in r.extended.items():  # whole units; Kubernetes requests an extended resource at its limit
        if quantity.parse(count):
            limits[name] = quantity.text(count)

    if exp.output is None:
        volume: dict[str, Any] = {"name": OUTPUT_VOLUME, "emptyDir": {}}
        mount = "/output"
    elif share is not None:  # type Directory: a node without the share fails the mount, nothing is made there
        volume = {"name": OUTPUT_VOLUME, "hostPath": {"path": share, "type": "Directory"}}
        mount = share
    elif exp.output.host_path is not None:
        volume = {"name": OUTPUT_VOLUME, "hostPath": {"path": exp.output.host_path, "type": "DirectoryOrCreate"}}
        mount = exp.output.mount_path
    else:
        volume = {"name": OUTPUT_VOLUME, "persistentVolumeClaim": {"claimName": exp.output.pvc}}
        mount = exp.output.mount_path

    sc = exp.security_context
    pod_security: dict[str, Any] = {
        "runAsNonRoot": sc.run_as_non_root,
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
        "command": ["sh", "-c", kube_escape(_ARCHIVE), "kubesweep-archive", *v.argv] if share is not None else v.argv,
        "env": env,
        "resources": {"requests": requests, "limits": limits},
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": OUTPUT_VOLUME, "mountPath": mount}],
    }
    if exp.env_from:
        container["envFrom"] = [source.manifest() for source in exp.env_from]
    volumes = [volume]
    if exp.shm_size is not None:  # a memory-backed /dev/shm of that size (the runtime's default is 64 MiB)
        volumes.append({"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": quantity.text(exp.shm_size)}})
        container["volumeMounts"].append({"name": SHM_VOLUME, "mountPath": "/dev/shm"})
    pod_spec: dict[str, Any] = {"restartPolicy": "Never"}
    if exp.service_account:
        pod_spec["serviceAccountName"] = exp.service_account
    pod_spec["automountServiceAccountToken"] = False
    if exp.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": name} for name in exp.image_pull_secrets]
    pod_spec["securityContext"] = pod_security
    if exp.node_selector:
        pod_spec["nodeSelector"] = dict(exp.node_selector)
    if exp.affinity:
        pod_spec["affinity"] = copy.deepcopy(exp.affinity)  # each Job its own: callers may edit a Job
    if exp.priority_class_name:
        pod_spec["priorityClassName"] = exp.priority_class_name
    if exp.runtime_class_name:
        pod_spec["runtimeClassName"] = exp.runtime_class_name
    # A trial on a node that is lost is evicted after node_loss_grace_seconds (not the default
    # 5 minutes) and, through podFailurePolicy below, rerun elsewhere without counting as failed.
    grace = exp.node_loss_grace_seconds
    pod_spec["tolerations"] = [dict(t) for t in exp.tolerations] + [
        {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": grace}
        for key in ("node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready")]
    if exp.metrics_file:
        folder = exp.metrics_file.rsplit("/", 1)[0] or "/"
        container["volumeMounts"].append({"name": METRICS_VOLUME, "mountPath": folder})
        volumes.append({"name": METRICS_VOLUME, "emptyDir": {}})
        pod_spec["initContainers"] = [_metrics_sidecar(exp, container["image"], container["securityContext"])]
    pod_spec["containers"] = [container]
    pod_spec["volumes"] = volumes

    spec: dict[str, Any] = {
        "backoffLimit": exp.backoff_limit,
        "podFailurePolicy": {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]},
    }
    if exp.active_deadline_seconds is not None:
        spec["activeDeadlineSeconds"] = exp.active_deadline_seconds
    if exp.ttl_seconds_after_finished is not None:
        spec["ttlSecondsAfterFinished"] = exp.ttl_seconds_after_finished
    job_labels = dict(labels)
    if exp.queue:  # Kueue admits the Job: created suspended, the queue on the Job only (not its pods)
        job_labels[QUEUE_LABEL] = exp.queue
        spec["suspend"] = True
    spec["template"] = {
        "metadata": {"labels": dict(labels), "annotations": dict(annotations)},
        "spec": pod_spec,
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": v.name,
            "namespace": exp.namespace,
            "labels": job_labels,
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


# ------------------------------------------------------------------ the same Job as YAML text

_SENTINEL = "KUBESWEEPSLOT{:06d}X"
_SENTINEL_RX = re.compile(r"KUBESWEEPSLOT(\d{6})X")


class JobTemplate:
    """The YAML text of each trial's Job, fast: ``_assemble``'s Job dumped once, with a sentinel
    in place of each per-trial value, then filled per trial with the values (``TrialValues``)
    spelled as JSON strings, which are valid YAML double-quoted scalars. A fixed text (an env
    value without placeholders, say) stays in the dump. Loads to exactly ``build_job``'s Job."""

    def __init__(self, exp: Experiment, *, image: str | None = None):
        self.exp, self.image = exp, image
        self.compiled = _Compiled(exp)
        stand_in = TrialValues.of(exp, _stand_in(exp), self.compiled)
        slots: list[tuple[str, int]] = []

        def slot(field: str, index: int = -1) -> str:
            slots.append((field, index))
            return _SENTINEL.format(len(slots) - 1)

        def per_trial(field: str, fixed: list[Any]) -> list[str]:
            return [f if isinstance(f, str) else slot(field, i) for i, f in enumerate(fixed)]

        argc = len(stand_in.argv)
        sentinels = TrialValues(slot("name"), slot("batch"), slot("params"), slot("output"),
                                [slot("argv", i) for i in range(argc)], per_trial("env", self.compiled.env),
                                per_trial("annotations", self.compiled.annotations))
        job = _assemble(exp, sentinels, image)
        job["metadata"]["annotations"][A_TEMPLATE] = template_digest(exp, image)
        parts = _SENTINEL_RX.split(dump(job))
        self._static = parts[0::2]
        self._order = [slots[int(n)] for n in parts[1::2]]

    def values(self, trial: Trial) -> TrialValues:
        return TrialValues.of(self.exp, trial, self.compiled)

    def job(self, trial: Trial, values: TrialValues | None = None) -> dict[str, Any]:
        """The trial's Job as a dict (what ``build_job`` returns), from its values if computed already."""
        job = _assemble(self.exp, values or self.values(trial), self.image)
        job["metadata"]["annotations"][A_TEMPLATE] = template_digest(self.exp, self.image)
        return job

    def render(self, trial: Trial, values: TrialValues | None = None) -> str:
        """The trial's Job as YAML text, from its values if computed already."""
        v = values or self.values(trial)
        out = [self._static[0]]
        for (field, index), static in zip(self._order, self._static[1:]):
            value = getattr(v, field)
            out.append(quote(value if index < 0 else value[index]))
            out.append(static)
        return "".join(out)
