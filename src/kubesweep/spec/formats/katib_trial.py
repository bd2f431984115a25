"""The trial side of a Katib Experiment, into the native spec: its trialTemplate, whose trialSpec
must be a batch/v1 Job with one (primary) container — command and args, env (values, and
references to Secrets, ConfigMaps and fields), envFrom, resources (extended ones too), labels and
annotations, nodeSelector, affinity, tolerations, priority and runtime class, imagePullSecrets,
the pod's user, /dev/shm as a memory emptyDir, the Job's limits — and its
metricsCollectorSpec (StdOut, or File — and a Custom collector of one file, read the same way without its
container —: a native sidecar streams the file to its log; one
metricsFormat regex, or JSON lines).

Katib's ``${trialParameters.<name>}`` become kubesweep's placeholders, and a trialParameter may
reference the trial's metadata as Katib defines it (``${trialSpec.Name}``, ``.Namespace``,
``.Kind``, ``.APIVersion``, ``.Labels[key]``, ``.Annotations[key]``); every other ``$`` stays as written. Valid Kubernetes fields kubesweep
does not carry are refused with the reason, never ignored.

A trialTemplate.configMap (configMapName, configMapNamespace, templatePath) is read as Katib's
controller reads it: the trialSpec is the YAML text under that key of the ConfigMap in the cluster.
This module does no network I/O: the caller passes a reader (``configmaps``) that fetches the
ConfigMap; the text is then validated exactly like an inline trialSpec, its errors placed at
``configmap NAMESPACE/NAME key TEMPLATEPATH:line:col``.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from kubesweep.errors import SpecError
from kubesweep.spec.model import QUEUE_LABEL
from kubesweep.spec.yamlsource import loads
from .base import Translator

#: A Katib trialTemplate.configMap's reader: (namespace, name) -> the ConfigMap's data (key -> text),
#: or ConfigMapUnavailable saying why in one line. None where no cluster was given.
ConfigMaps = Callable[[str, str], dict[str, str]]


class ConfigMapUnavailable(Exception):
    """The ConfigMap holding a trial template could not be read (no cluster, 403, 404, no answer)."""


def configmap_file(namespace: str, name: str, key: str) -> str:
    """What marks inside a ConfigMap's trial template name as their file."""
    return f"configmap {namespace}/{name} key {key}"

_REF = re.compile(r"\$\{(trialParameters|trialSpec)\.([^}]*)\}")

# Valid Kubernetes fields of the trial Job that kubesweep does not carry, with the reason.
_WHY = "kubesweep's trial Job sets this itself"
_JOB_METADATA = {"name": "trial Jobs are named by kubesweep from the experiment and the parameters",
                 "generateName": "trial Jobs are named by kubesweep from the experiment and the parameters",
                 "namespace": "trials run in the Experiment's namespace"}
_JOB_SPEC = {key: _WHY for key in ("parallelism", "completions", "completionMode", "suspend", "selector",
                                    "manualSelector", "podFailurePolicy", "podReplacementPolicy", "successPolicy",
                                    "backoffLimitPerIndex", "maxFailedIndexes", "managedBy")}
_POD_SPEC = {
    **{key: "a trial pod runs one container and mounts only its output volume (see output in docs/grid.md)"
       for key in ("initContainers", "ephemeralContainers")},
    **{key: "not carried into trial pods; schedule with nodeSelector, affinity, tolerations and priorityClassName"
       for key in ("topologySpreadConstraints", "nodeName", "priority",
                   "schedulerName", "preemptionPolicy", "overhead", "schedulingGates",
                   "resourceClaims")},
    **{key: "not carried into trial pods" for key in ("hostNetwork", "hostPID", "hostIPC", "dnsPolicy", "dnsConfig",
                                                     "hostAliases",
                                                     "terminationGracePeriodSeconds", "activeDeadlineSeconds",
                                                     "automountServiceAccountToken", "enableServiceLinks",
                                                     "shareProcessNamespace", "hostname", "subdomain", "os",
                                                     "readinessGates", "serviceAccount", "setHostnameAsFQDN",
                                                     "hostUsers")},
}
_CONTAINER = {
    **{key: "a trial writes to its output volume, mounted by kubesweep (see output in docs/grid.md)"
       for key in ("volumeDevices",)},
    "securityContext": "kubesweep sets the container's (no privilege escalation, all capabilities dropped); "
                       "set the user in the pod's securityContext",
    **{key: "not carried into the trial container" for key in ("workingDir", "ports",
                                                               "livenessProbe", "readinessProbe", "startupProbe",
                                                               "lifecycle", "stdin", "stdinOnce", "tty",
                                                               "terminationMessagePath", "terminationMessagePolicy",
                                                               "resizePolicy", "restartPolicy")},
}


def _substitute(t: Translator, path: tuple, text: Any, refs: dict[str, str | None]) -> Any:
    """Katib's references in ``text`` as kubesweep placeholders; every other ``$`` (``${HOME}``,
    ``$(VAR)``, ``$$``) is the user's own text and is escaped so that it stays exactly as written."""
    if not isinstance(text, str):
        return text

    def swap(m: re.Match[str]) -> str:
        scope, key = m.group(1), m.group(2)
        if scope == "trialParameters":
            if key not in refs:
                t.error(path, f"${{trialParameters.{key}}} is not declared in trialTemplate.trialParameters", text)
                return m.group(0)
            ref = refs[key]
            return m.group(0) if ref is None else ref  # None: its declaration is already reported
        value = trial_spec_reference(t, path, m.group(0))
        return m.group(0) if value is None else value

    out, last = [], 0
    for m in _REF.finditer(text):
        out.append(text[last : m.start()].replace("$", "$$"))
        out.append(swap(m))
        last = m.end()
    out.append(text[last:].replace("$", "$$"))
    return "".join(out)


_META = re.compile(r"\$\{trialSpec\.(?:(Name|Namespace|Kind|APIVersion)|(Labels|Annotations)\[([^\]]*)\])\}")
#: What Katib's trial metadata references are here: the trial Job's name and namespace are
#: kubesweep's ${trial} and ${namespace}; its kind and API version are always a batch/v1 Job.
_META_FIXED = {"Name": "${trial}", "Namespace": "${namespace}", "Kind": "Job", "APIVersion": "batch/v1"}


def trial_spec_reference(t: Translator, path: tuple, text: str) -> str | None:
    """Katib's ``${trialSpec.Name}``, ``.Namespace``, ``.Kind``, ``.APIVersion``, ``.Labels[key]``,
    ``.Annotations[key]`` (a label or annotation of the trialSpec's metadata, as Katib reads it) as
    native text; None, reported at ``path``, for a reference Katib does not define."""
    m = _META.fullmatch(text)
    if m is None:
        t.error(path, f"{text} is not a trialSpec reference Katib defines (Name, Namespace, Kind, APIVersion, "
                "Labels[key], Annotations[key])", text)
        return None
    if m.group(1):
        return _META_FIXED[m.group(1)]
    part, key = m.group(2).lower(), m.group(3)
    given = t.get(("spec", "trialTemplate", "trialSpec", "metadata", part))
    if not isinstance(given, dict) or key not in given:
        t.error(path, f"{text}: the trialSpec's metadata has no {part[:-1]} {key!r}", text)
        return None
    return str(given[key]).replace("$", "$$")


def _pod_metadata(t: Translator, js: tuple) -> None:
    """The pod template's labels and annotations: kubesweep puts labels and annotations on both the
    Job and its pods, so the two are merged; the same key with two values is refused."""
    pm = js + ("spec", "template", "metadata")
    t.known_keys(pm, ["labels", "annotations"], {"name": "pods of a Job are named by the Job controller",
                                                 "namespace": "pods run in the Experiment's namespace"})
    for part in ("labels", "annotations"):
        job_side = t.mapping(js + ("metadata", part))
        pod_side = t.mapping(pm + (part,))
        if not pod_side:
            continue
        merged = dict(t.out.get(part) or {})
        for key, value in pod_side.items():
            if key in job_side and job_side[key] != value:
                t.error(pm + (part, key), f"{part[:-1]} {key!r} has another value on the Job ({job_side[key]!r}); "
                        "kubesweep sets one value on both the Job and its pods", value)
                continue
            merged[key] = value
            t.at((part, key), pm + (part, key))
        t.out[part] = merged
        t.out_pos.values.setdefault((part,), t.pos.value(pm + (part,)))


def _configmap_template(t: Translator, tt: tuple, configmaps: ConfigMaps | None) -> bool:
    """spec.trialTemplate.configMap, as Katib's controller reads it (GetTrialTemplate): the text under
    templatePath in ConfigMap configMapNamespace/configMapName, fetched by ``configmaps``, put in the
    source as the trialSpec (with its own positions) so that it is validated exactly like an inline
    one. False when it cannot be read (reported at the configMap reference)."""
    cm = tt + ("configMap",)
    ref = t.mapping(cm)
    if not isinstance(t.get(cm), dict):  # reported by mapping()
        return False
    t.known_keys(cm, ["configMapName", "configMapNamespace", "templatePath"])
    if t.get(tt + ("trialSpec",)) is not None:
        t.error_key(cm, "only one of spec.trialTemplate.trialSpec or spec.trialTemplate.configMap can be specified")
        return False
    namespace, name, key = (ref.get(k) for k in ("configMapNamespace", "configMapName", "templatePath"))
    if not all(isinstance(v, str) and v for v in (namespace, name, key)):
        t.error_key(cm, "spec.trialTemplate.configMap needs configMapName, configMapNamespace and templatePath (as Katib)")
        return False
    where = f"key {key!r} of ConfigMap {namespace}/{name}"
    if configmaps is None:
        t.error_key(cm, f"the trial template is {where} in the cluster, and no cluster was given: name the one that "
                "holds it with --kubeconfig/--context (or inline the Job as trialSpec)")
        return False
    try:
        data = configmaps(namespace, name)
    except ConfigMapUnavailable as exc:
        t.error_key(cm, f"the trial template is {where} in the cluster, which cannot be read: {exc}")
        return False
    if not isinstance(data.get(key), str):
        keys = ", ".join(sorted(data)) or "none"
        t.error(cm + ("templatePath",), f"ConfigMap {namespace}/{name} has no key {key!r} (its keys: {keys})", key)
        return False
    file = configmap_file(namespace, name, key)
    t.configmaps[file] = (t.pos.key(cm), data[key])
    try:
        doc, pos = loads(data[key], file)
    except SpecError as exc:  # bad YAML inside: reported where it is in the ConfigMap's text
        t.problems.issues.extend(exc.issues)
        return False
    t.src = {**t.src, "spec": {**t.src["spec"], "trialTemplate": {**t.get(tt), "trialSpec": doc}}}
    pos.rebase((), tt + ("trialSpec",), t.pos)
    return True


def trial_template(t: Translator, params: dict[str, str], configmaps: ConfigMaps | None = None) -> None:
    """spec.trialTemplate: the trial Job and its one container; ``params``: the parameter types by
    name; ``configmaps``: the reader of a trialTemplate.configMap from the cluster (None: no cluster)."""
    tt = ("spec", "trialTemplate")
    t.mapping(tt, required=True)
    t.known_keys(tt, ["primaryContainerName", "trialParameters", "trialSpec", "configMap", "successCondition",
                      "failureCondition", "retain"],
                 {"primaryPodLabels": "only Job trials are supported; their pods are labelled by kubesweep"})
    for key, default in (("successCondition", "status.conditions.#(type==\"Complete\")#|#(status==\"True\")#"),
                         ("failureCondition", "status.conditions.#(type==\"Failed\")#|#(status==\"True\")#")):
        value = t.get(tt + (key,))
        if value is not None and value != default:
            t.error(tt + (key,), f"{key} other than Katib's default for Jobs is not supported: kubesweep reads the Job's Complete/Failed condition", value)
    # before the trialParameters, whose ${trialSpec.Labels[key]} read the template's metadata
    template_read = t.get(tt + ("configMap",)) is None or _configmap_template(t, tt, configmaps)
    refs: dict[str, str | None] = {}
    for i, item in enumerate(t.sequence(tt + ("trialParameters",))):
        p = tt + ("trialParameters", i)
        t.known_keys(p, ["name", "description", "reference"])
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not isinstance(item.get("reference"), str):
            t.error(p, f"{t.name(p)} needs a name and a reference")
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                refs[item["name"]] = None  # reported here; its uses are not reported again
            continue
        if item["reference"].startswith("${trialSpec."):
            refs[item["name"]] = trial_spec_reference(t, p + ("reference",), item["reference"])
            continue
        if item["reference"] not in params:
            t.error(p + ("reference",), f"trialParameter {item['name']!r} references {item['reference']!r}, which is not in spec.parameters", item["reference"])
            refs[item["name"]] = None
            continue
        refs[item["name"]] = "${" + item["reference"] + "}"

    if not template_read:  # its configMap could not be read (reported)
        return
    js = tt + ("trialSpec",)
    job = t.mapping(js, required=True)
    if not job:
        return
    if job.get("apiVersion") != "batch/v1" or job.get("kind") != "Job":
        t.error(js, "trialSpec must be a batch/v1 Job (other trial kinds need their operators)", f"{job.get('apiVersion')}/{job.get('kind')}")
        return
    t.known_keys(js, ["apiVersion", "kind", "metadata", "spec"])
    t.known_keys(js + ("metadata",), ["labels", "annotations"], _JOB_METADATA)
    t.copy(js + ("metadata", "labels"), ("labels",))
    labels = t.out.get("labels")
    if isinstance(labels, dict) and QUEUE_LABEL in labels:  # Katib's way to Kueue: the label on the trial's Job
        t.put(("queue",), labels.pop(QUEUE_LABEL), js + ("metadata", "labels", QUEUE_LABEL))
    t.copy(js + ("metadata", "annotations"), ("annotations",))
    t.known_keys(js + ("spec",), ["template", "backoffLimit", "activeDeadlineSeconds", "ttlSecondsAfterFinished"], _JOB_SPEC)
    for key in ("backoffLimit", "activeDeadlineSeconds", "ttlSecondsAfterFinished"):
        t.copy(js + ("spec", key), (key,))
    ps = js + ("spec", "template", "spec")
    t.known_keys(js + ("spec", "template"), ["metadata", "spec"])
    _pod_metadata(t, js)
    t.known_keys(ps, ["containers", "restartPolicy", "nodeSelector", "tolerations", "serviceAccountName", "affinity",
                      "priorityClassName", "runtimeClassName", "imagePullSecrets", "securityContext", "volumes"], _POD_SPEC)
    restart = t.get(ps + ("restartPolicy",))
    if restart not in (None, "Never"):
        t.error(ps + ("restartPolicy",), "restartPolicy must be Never: a trial that fails is a failed trial, retried only by backoffLimit", restart)
    t.copy(ps + ("nodeSelector",), ("nodeSelector",))
    t.copy(ps + ("tolerations",), ("tolerations",))
    t.copy(ps + ("serviceAccountName",), ("serviceAccount",))
    for key in ("affinity", "priorityClassName", "runtimeClassName", "imagePullSecrets"):
        t.copy(ps + (key,), (key,))
    _security(t, ps + ("securityContext",))

    containers = t.sequence(ps + ("containers",))
    primary = t.get(tt + ("primaryContainerName",))
    index = next((i for i, c in enumerate(containers) if isinstance(c, dict) and c.get("name") == primary), None)
    if index is None:
        if len(containers) == 1 and primary is None:
            index = 0
        else:
            t.error(ps + ("containers",), f"no container named {primary!r} (trialTemplate.primaryContainerName) in the trialSpec", primary)
            return
    if len(containers) > 1:
        t.error(ps + ("containers",), "only the primary container is supported; sidecars have no place in a kubesweep trial", len(containers))
    c = ps + ("containers", index)
    t.known_keys(c, ["name", "image", "command", "args", "env", "envFrom", "resources", "imagePullPolicy",
                     "volumeMounts"], _CONTAINER)
    container = t.mapping(c)
    t.copy(c + ("image",), ("image",))
    t.copy(c + ("imagePullPolicy",), ("imagePullPolicy",))
    command = t.get(c + ("command",)) or []
    args = t.get(c + ("args",)) or []
    for key, value in (("command", command), ("args", args)):
        if not isinstance(value, list):
            t.error(c + (key,), f"{t.name(c + (key,))} must be a list of strings", value)
    if not isinstance(command, list) or not isinstance(args, list):
        return
    argv = [_substitute(t, c + ("command", i), x, refs) for i, x in enumerate(command)]
    argv += [_substitute(t, c + ("args", i), x, refs) for i, x in enumerate(args)]
    t.put(("command",), argv, c + ("command",) if command else c)
    for i in range(len(command)):
        t.at(("command", i), c + ("command", i))
    for i in range(len(args)):
        t.at(("command", len(command) + i), c + ("args", i))
    if not container.get("command") and not container.get("args"):
        t.error(c, "the primary container needs a command (kubesweep passes parameters as arguments)")
    elif not container.get("command"):
        t.error(c + ("args",), "a container with args but no command runs the image's ENTRYPOINT, which kubesweep "
                "does not carry (it writes the trial's whole argv as the command): write the entrypoint as command")
    env: dict[str, Any] = {}
    for i, item in enumerate(t.sequence(c + ("env",))):
        e = c + ("env", i)
        t.known_keys(e, ["name", "value", "valueFrom"])
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            if "valueFrom" in item:  # a reference (Secret, ConfigMap, field): the kubelet reads it, as under Katib
                if "value" in item:
                    t.error_key(e + ("value",), f"{t.name(e)} has both value and valueFrom")
                env[item["name"]] = t.get(e + ("valueFrom",))
                t.at(("env", item["name"]), e + ("valueFrom",))
                t.pos.rebase(e + ("valueFrom",), ("env", item["name"]), t.out_pos)
            else:
                env[item["name"]] = _substitute(t, e + ("value",), item.get("value", ""), refs)
                t.at(("env", item["name"]), e + ("value",))
            t.out_pos.keys[("env", item["name"])] = t.pos.value(e + ("name",))  # a bad name is reported at the name
    if env:
        t.out["env"] = env
    t.copy(c + ("envFrom",), ("envFrom",))
    _shm(t, ps + ("volumes",), c + ("volumeMounts",))
    _resources(t, c + ("resources",))


_SECURITY = ["runAsUser", "runAsGroup", "fsGroup", "runAsNonRoot"]


def _security(t: Translator, sc: tuple) -> None:
    """The pod's user and group; the rest of a securityContext kubesweep sets itself (seccomp
    RuntimeDefault) or does not carry."""
    t.known_keys(sc, _SECURITY, {key: "not carried into trial pods" for key in (
        "seLinuxOptions", "windowsOptions", "supplementalGroups", "supplementalGroupsPolicy", "fsGroupChangePolicy",
        "sysctls", "seccompProfile", "appArmorProfile", "seLinuxChangePolicy")})
    for key in _SECURITY:
        t.copy(sc + (key,), ("securityContext", key))
    if t.get(sc) is not None:
        t.out_pos.values.setdefault(("securityContext",), t.pos.value(sc))


_SHM_ONLY = ("kubesweep mounts the trial's output volume itself (see output in docs/grid.md); the one volume "
             "carried is a memory-backed emptyDir at /dev/shm (shmSize)")


def _shm(t: Translator, volumes: tuple, mounts: tuple) -> None:
    """Pod volumes and the container's volumeMounts: only /dev/shm as an emptyDir of medium Memory
    with a sizeLimit, which becomes shmSize."""
    by_name = {}
    for i, v in enumerate(t.sequence(volumes)):
        here = volumes + (i,)
        empty = v.get("emptyDir") if isinstance(v, dict) else None
        if not isinstance(empty, dict) or set(v) != {"name", "emptyDir"} or empty.get("medium") != "Memory":
            t.error(here, f"{t.name(here)} is not supported by kubesweep: {_SHM_ONLY}")
            continue
        t.known_keys(here + ("emptyDir",), ["medium", "sizeLimit"])
        by_name[v["name"]] = i
    mounted = set()
    for i, m in enumerate(t.sequence(mounts)):
        here = mounts + (i,)
        if not isinstance(m, dict) or m.get("mountPath") != "/dev/shm" or m.get("name") not in by_name \
                or set(m) - {"name", "mountPath"}:
            t.error(here, f"{t.name(here)} is not supported by kubesweep: {_SHM_ONLY}")
            continue
        src = volumes + (by_name[m["name"]], "emptyDir")
        mounted.add(m["name"])
        if t.get(src + ("sizeLimit",)) is None:
            t.error(src, f"{t.name(src)} needs a sizeLimit: kubesweep gives /dev/shm the size asked (shmSize)")
        else:
            t.copy(src + ("sizeLimit",), ("shmSize",))
    for name, i in by_name.items():
        if name not in mounted:
            t.error(volumes + (i,), f"{t.name(volumes + (i,))} is not mounted at /dev/shm by the primary container: {_SHM_ONLY}")


def _resources(t: Translator, res: tuple) -> None:
    """Requests and limits as Kubernetes reads them: a resource with only a limit requests that
    much; one with only a request has no limit; the two may differ (native resources.limits)."""
    t.known_keys(res, ["limits", "requests"])
    requests, limits = t.mapping(res + ("requests",)), t.mapping(res + ("limits",))
    extended = sorted({k for k in (*requests, *limits) if isinstance(k, str) and "/" in k and k != "nvidia.com/gpu"})
    for part in ("requests", "limits"):
        t.known_keys(res + (part,), ["cpu", "memory", "nvidia.com/gpu", *extended],
                     {"ephemeral-storage": "trials write to their output volume; local storage is not requested"})
    for key in ["nvidia.com/gpu", *extended]:  # requested at its limit; Kubernetes wants the two equal
        if key in requests and key in limits and str(requests[key]) != str(limits[key]):
            t.error(res + ("requests", key), f"{key} is an extended resource: its request and limit must be equal "
                    f"(limit {limits[key]})", requests[key])
    out: dict[str, Any] = {}
    native_limits: dict[str, Any] = {}
    for key in ("cpu", "memory", "nvidia.com/gpu", *extended):
        if key in requests or key in limits:
            source = "requests" if key in requests else "limits"
            out[key] = requests.get(key, limits.get(key))
            t.at(("resources", key), res + (source, key))
        if key in limits and key in ("cpu", "memory"):
            native_limits[key] = limits[key]
            t.at(("resources", "limits", key), res + ("limits", key))
    if not out:
        return
    requested = {k: out[k] for k in ("cpu", "memory") if k in out}
    if native_limits != requested:  # limits that differ, or requests without limits
        out["limits"] = native_limits
        t.out_pos.values.setdefault(("resources", "limits"), t.pos.value(res + ("limits",) if limits else res))
    t.out["resources"] = out


#: Katib's JSON metrics lines ({"accuracy": "0.97", "global_step": "1", ...}; values may be strings)
#: read by the objective's regex: a name group and a value group.
JSON_METRICS = r'"(?P<name>[^"\\]+)"\s*:\s*"?(?P<value>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"?'
_OTHER_COLLECTORS = {
    "TensorFlowEvent": "TensorFlow event files are binary; print the metrics, or write them to a file (collector kind File)",
    "PrometheusMetric": "it needs Katib's Prometheus scraping; print the metrics, or write them to a file (collector kind File)",
    "None": "with no collector the trial reports to Katib's DB manager; print the metrics instead (collector kind StdOut)",
}
#: A Custom collector's container reports what it reads to Katib's DB manager, which kubesweep has
#: not: where it reads one file, kubesweep reads that file itself, as it reads a File collector's.
_CUSTOM_NEEDS_FILE = ("a Custom collector reports to Katib's DB manager, which kubesweep does not run; kubesweep "
                      "reads the metrics itself where the collector reads one file (source.fileSystemPath with kind "
                      "File and an absolute path); print the metrics (collector kind StdOut) or name that file")


def metrics_collector(t: Translator) -> None:
    """spec.metricsCollectorSpec: StdOut (its one metricsFormat regex becomes objective.regex) or
    File (fileSystemPath kind File, format TEXT with that regex or JSON lines): a sidecar streams the
    file into its log (native metricsFile). A Custom collector that reads one file is read the same
    way, without its container (t.notes says so)."""
    mc = ("spec", "metricsCollectorSpec")
    t.known_keys(mc, ["collector", "source"])
    kind = t.get(mc + ("collector", "kind"), "StdOut")
    t.known_keys(mc + ("collector",), ["kind", "customCollector"])
    if kind != "Custom" and t.get(mc + ("collector", "customCollector")) is not None:
        t.error_key(mc + ("collector", "customCollector"), f"customCollector is for collector kind Custom "
                    f"(Katib refuses it with kind {kind})")
    if kind in _OTHER_COLLECTORS:
        t.error(mc + ("collector", "kind"), f"the {kind} metrics collector is not supported: {_OTHER_COLLECTORS[kind]}", kind)
    elif kind not in ("StdOut", "File", "Custom"):
        t.error(mc + ("collector", "kind"), "collector.kind must be one of StdOut, File, TensorFlowEvent, "
                "PrometheusMetric, Custom, None (Katib's kinds)", kind)
    t.known_keys(mc + ("source",), ["filter", "fileSystemPath"], {"httpGet": "it is Prometheus' scrape target; print the metrics"})
    fs = mc + ("source", "fileSystemPath")
    fmt = "TEXT"
    if kind == "Custom":
        _custom_collector(t, mc + ("collector", "customCollector"), fs)
    if kind == "File" or (kind == "Custom" and isinstance(t.get(fs), dict)):  # else _custom_collector said why
        t.known_keys(fs, ["path", "kind", "format"])
        path = t.get(fs + ("path",))
        fmt = t.get(fs + ("format",), "TEXT")
        if t.get(fs + ("kind",), "File") != "File":
            t.error(fs + ("kind",), _CUSTOM_NEEDS_FILE if kind == "Custom"
                    else "the File collector reads one file: fileSystemPath.kind must be File", t.get(fs + ("kind",)))
        if fmt not in ("TEXT", "JSON"):
            t.error(fs + ("format",), "fileSystemPath.format must be TEXT or JSON", fmt)
        if not isinstance(path, str) or not path.startswith("/"):
            t.error(fs + ("path",) if path is not None else fs, f"the {kind} collector needs fileSystemPath.path, an absolute path", path)
        else:
            t.put(("metricsFile",), path, fs + ("path",))
    elif t.get(fs) is not None and kind == "StdOut":
        t.error_key(fs, "the StdOut collector reads the trial's log: fileSystemPath is for the File collector")
    formats = t.get(mc + ("source", "filter", "metricsFormat")) or []
    if len(formats) > 1:
        t.error(mc + ("source", "filter", "metricsFormat"), "only one metricsFormat regex is supported", len(formats))
    elif formats and fmt == "JSON":
        t.error(mc + ("source", "filter"), "metricsFormat applies to TEXT metrics; JSON lines are read by their keys")
    elif formats:
        t.put(("objective", "regex"), formats[0], mc + ("source", "filter", "metricsFormat", 0))
    elif fmt == "JSON":
        t.put(("objective", "regex"), JSON_METRICS, fs + ("format",))


def _custom_collector(t: Translator, cc: tuple[str, ...], fs: tuple[str, ...]) -> None:
    """collector.kind Custom: its customCollector must be a container with an image (as Katib's
    webhook requires), and its source one file, which kubesweep then reads itself."""
    container = t.get(cc)
    if container is None:
        t.error(cc[:-1], "collector kind Custom needs customCollector, the collector's container (Katib's rule)")
    elif not isinstance(container, dict) or not isinstance(container.get("image"), str) or not container["image"]:
        t.error(cc, "customCollector must be a container with an image", container)
    if t.get(fs) is None:
        t.error(cc[:-1] + ("kind",), _CUSTOM_NEEDS_FILE)
    elif not isinstance(t.get(fs), dict):
        t.error(fs, _CUSTOM_NEEDS_FILE, t.get(fs))
    elif isinstance(container, dict) and isinstance(container.get("image"), str):
        t.notes.append(f"the Custom metrics collector {container.get('name') or container['image']!r} "
                       f"({container['image']}) is not run: it reports to Katib's DB manager; kubesweep reads "
                       f"{t.get(fs + ('path',))} itself, as Katib's File collector would "
                       f"({t.get(fs + ('format',), 'TEXT')} format)")
