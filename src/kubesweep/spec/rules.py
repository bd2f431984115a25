"""Meaning checks on a parsed experiment: names, quantities, ranges, placeholders.

Each problem is reported at the place it was written. All problems are collected before
raising, so one run shows everything that needs fixing.
"""

from __future__ import annotations

import difflib
import math
import re

from kubesweep.k8s import quantity
from kubesweep.errors import Collector
from kubesweep.spec.space import MAX_COUNT, domain
from kubesweep.spec.model import BUILTINS, MAX_EXPERIMENT_NAME, MAX_TRIAL_LIMIT, QUEUE_LABEL, EnvSource, Experiment, Parameter, did_you_mean
from kubesweep.spec.yamlsource import Positions
from kubesweep.plan import adaptive

# Every pattern below is used with fullmatch(): "$" would also match before a trailing newline,
# and "team-a\n" (easy to get from a YAML block scalar) would pass and make an invalid object.
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
QUALIFIED_NAME = re.compile(r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                            r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
IMAGE = re.compile(
    r"(?P<repo>[a-zA-Z0-9][a-zA-Z0-9.-]*(:[0-9]+)?/)?[a-z0-9]+([._-]+[a-z0-9]+)*(/[a-z0-9]+([._-]+[a-z0-9]+)*)*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?"
)
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
PLACEHOLDER = re.compile(r"\$\$|\$\{([^}]*)\}|\$\{")
RESERVED_ENV = ("OUTPUT_DIR", "KUBESWEEP_")
RESERVED_PREFIX = "kubesweep.io/"


def placeholders(text: str) -> list[str | None]:
    """Names referenced as ``${name}`` in ``text`` (None for an unterminated ``${``)."""
    found: list[str | None] = []
    for m in PLACEHOLDER.finditer(text):
        if m.group(0) == "$$":
            continue
        found.append(m.group(1) if m.group(0) != "${" else None)
    return found


def _label_issues(out: Collector, pos: Positions, base: tuple, mapping: dict, values: bool, ours: bool = True) -> None:
    for key, value in mapping.items():
        if not QUALIFIED_NAME.fullmatch(key) or len(key.split("/")[-1]) > 63:
            out.add(pos.key(base + (key,)), f"{'.'.join(base)} key {key!r} is not a valid Kubernetes label key")
        elif ours and key.startswith(RESERVED_PREFIX):
            out.add(pos.key(base + (key,)), f"{'.'.join(base)} key {key!r} uses the prefix kubesweep.io/, which kubesweep sets itself")
        if values and (not LABEL_VALUE.fullmatch(value) or len(value) > 63):
            out.add(pos.value(base + (key,)), f"{'.'.join(base)}.{key} is not a valid label value (<= 63 chars: letters, digits, '-', '_', '.')", value)


def _check_param(out: Collector, pos: Positions, name: str, p: Parameter, algorithm: str) -> None:
    here = ("parameters", name)
    if not PARAM_NAME.fullmatch(name):
        out.add(pos.key(here), f"parameter name {name!r} must start with a letter or '_' and use letters, digits, '_', '.', '-'")
    ranged = [k for k in ("min", "max", "step", "count") if getattr(p, k) is not None]
    if p.values is not None:
        if ranged:
            out.add(pos.key(here + (ranged[0],)), f"parameter {name!r}: use either 'values' or a range ('min'/'max'), not both")
        if not p.values:
            out.add(pos.value(here + ("values",)), f"parameter {name!r} has an empty list of values")
        for key in ("distribution", "mu", "sigma"):
            if key in p.model_fields_set:
                out.add(pos.key(here + (key,)), f"parameter {name!r}: {key} shapes how a min/max range is drawn, not listed values")
        seen: dict[object, int] = {}
        for i, v in enumerate(p.values):
            key = (type(v).__name__ if isinstance(v, bool) else "x", v)
            if key in seen:
                out.add(pos.value(here + ("values", i)), f"parameter {name!r} lists the value {v!r} twice (items {seen[key]} and {i})")
            seen.setdefault(key, i)
        return
    if p.min is None or p.max is None:
        missing = "min" if p.min is None else "max"
        out.add(pos.value(here), f"parameter {name!r} needs 'values', or both 'min' and 'max' (missing {missing!r})")
        return
    for key in ("min", "max", "step"):
        v = getattr(p, key)
        if isinstance(v, float) and not math.isfinite(v):
            out.add(pos.value(here + (key,)), f"parameter {name!r}: {key} must be a finite number", v)
            return
    if p.min >= p.max:
        out.add(pos.value(here + ("max",)), f"parameter {name!r}: max must be greater than min ({p.min!r}); for one value write 'values: [{p.min}]'", p.max)
    if p.step is not None and p.count is not None:
        out.add(pos.key(here + ("count",)), f"parameter {name!r}: give 'step' or 'count', not both")
    if p.step is not None:
        if p.scale == "log":
            out.add(pos.key(here + ("step",)), f"parameter {name!r}: a log-scale range takes 'count' (points per range), not 'step'")
        elif p.step <= 0:
            out.add(pos.value(here + ("step",)), f"parameter {name!r}: step must be positive", p.step)
        elif p.min < p.max and p.step > p.max - p.min:
            out.add(pos.value(here + ("step",)), f"parameter {name!r}: step is larger than the range {p.min!r}..{p.max!r}", p.step)
    if p.count is not None and p.count < 1:
        out.add(pos.value(here + ("count",)), f"parameter {name!r}: count must be at least 1", p.count)
    elif p.count is not None and p.count > MAX_COUNT:
        out.add(pos.value(here + ("count",)), f"parameter {name!r}: count asks for more than {MAX_COUNT:,} points; "
                "for a dense range leave count out and let random or tpe search sample it", p.count)
    if p.scale == "log" and p.min <= 0:
        out.add(pos.value(here + ("min",)), f"parameter {name!r}: a log-scale range needs min > 0", p.min)
    if p.type == "int":
        for key in ("min", "max", "step"):
            v = getattr(p, key)
            if isinstance(v, float) and not v.is_integer():
                out.add(pos.value(here + (key,)), f"parameter {name!r} is of type int but {key} is not a whole number", v)
    _check_distribution(out, pos, name, p, algorithm)
    if algorithm == "grid" and p.step is None and p.count is None and not (p.is_int and p.scale == "linear"):
        out.add(pos.value(here), f"parameter {name!r} is a continuous range: grid search needs 'step' (or 'count', or 'values'); random and tpe search sample it as is")


def _check_distribution(out: Collector, pos: Positions, name: str, p: Parameter, algorithm: str) -> None:
    here = ("parameters", name)
    if p.distribution == "uniform":
        for key in ("mu", "sigma"):
            if getattr(p, key) is not None:
                out.add(pos.key(here + (key,)), f"parameter {name!r}: {key} belongs to distribution: normal")
        return
    if p.sigma is not None and not p.sigma > 0:
        out.add(pos.value(here + ("sigma",)), f"parameter {name!r}: sigma must be above 0", p.sigma)
    if p.count is not None:
        out.add(pos.key(here + ("count",)), f"parameter {name!r}: count spaces points evenly; distribution normal draws "
                "them (leave count out, or the distribution)")
    if algorithm == "grid":
        out.add(pos.value(here + ("distribution",)), f"parameter {name!r}: grid search walks every point; distribution "
                "normal is how random search draws (use random, or leave the distribution out)", p.distribution)


def _larger_than_kubernetes(value: str | int | float) -> bool:
    """A well-formed quantity that Kubernetes would cap (it caps at 2^63-1 without a word)."""
    if isinstance(value, bool) or (isinstance(value, (int, float)) and value < 0) \
            or not quantity.SYNTAX.fullmatch(quantity.text(value)):
        return False
    try:
        return quantity.parse(value) > quantity.LARGEST
    except ValueError:  # an exponent far out of range
        return True


def _check_resources(out: Collector, pos: Positions, exp: Experiment) -> None:
    r = exp.resources
    examples = {"cpu": "1, 500m, 2.5", "memory": "5Gi, 512Mi, 1G, or a number of bytes"}
    requests = {"cpu": r.cpu, "memory": r.memory}
    limits = {} if r.limits is None else {k: getattr(r.limits, k) for k in ("cpu", "memory") if getattr(r.limits, k) is not None}
    for scope, values in (("resources", requests), ("resources.limits", limits)):
        for key, value in values.items():
            path = tuple(scope.split(".")) + (key,)
            if not quantity.valid(value) or (key == "cpu" and quantity.parse(value) == 0):
                adjective = "a positive" if key == "cpu" else "a"
                what = ("larger than Kubernetes holds (2^63-1)" if _larger_than_kubernetes(value)
                        else f"not {adjective} Kubernetes quantity (e.g. {examples[key]})")
                out.add(pos.value(path), f"{scope}.{key} is {what}", value)
            elif key in requests and key in limits and scope == "resources.limits" and quantity.valid(requests[key]) \
                    and quantity.parse(value) < quantity.parse(requests[key]):
                out.add(pos.value(path), f"resources.limits.{key} must be at least the request resources.{key} "
                        f"({quantity.text(requests[key])})", value)
    if r.gpu < 0:
        out.add(pos.value(("resources", "nvidia.com/gpu")), "resources.nvidia.com/gpu must not be negative", r.gpu)
    elif r.gpu > quantity.LARGEST:
        out.add(pos.value(("resources", "nvidia.com/gpu")), "resources.nvidia.com/gpu is larger than Kubernetes holds (2^63-1)", r.gpu)
    for name, value in r.extended.items():
        _check_extended(out, pos, name, value)


#: Resources a trial may request besides the extended ones (what resources.* and limits.* name).
NATIVE_RESOURCES = ("cpu", "memory", "nvidia.com/gpu", "limits")


def extended_count(value: object) -> int | None:
    """An extended resource's count (a whole number ≥ 0, written 2 or "2"), or None if it is not one."""
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not quantity.valid(value):
        return None
    amount = quantity.parse(value)
    return int(amount) if amount == amount.to_integral_value() else None


def _check_extended(out: Collector, pos: Positions, name: str, value: object) -> None:
    """A resource name besides cpu and memory: an extended resource as Kubernetes defines one (a
    qualified name with a domain, outside kubernetes.io), counted in whole units."""
    here = ("resources", name)
    if "/" not in name:
        out.add(pos.key(here), f"unknown key {name!r} in resources{did_you_mean(name, list(NATIVE_RESOURCES))}; "
                "an extended resource is named with its domain (e.g. amd.com/gpu)")
        return
    domain_ = name.split("/", 1)[0]
    if not QUALIFIED_NAME.fullmatch(name) or len(name.split("/")[-1]) > 63 or len(domain_) > 253 \
            or len("requests." + name.split("/")[-1]) > 63:
        out.add(pos.key(here), f"resources key {name!r} is not a valid extended resource name (domain/name, "
                "e.g. amd.com/gpu: lowercase domain, a name of letters, digits, '-', '_', '.')")
    elif domain_ == "kubernetes.io" or domain_.endswith(".kubernetes.io"):
        out.add(pos.key(here), f"resources key {name!r} is in the kubernetes.io domain, which Kubernetes keeps for its own resources")
    count = extended_count(value)
    if count is None:
        out.add(pos.value(here), f"resources.{name} is an extended resource: a whole number of units (e.g. 1)", value)
    elif count > quantity.LARGEST:
        out.add(pos.value(here), f"resources.{name} is larger than Kubernetes holds (2^63-1)", value)


#: What a fieldRef may name (the API server's validEnvDownwardAPIFieldPathExpressions).
FIELD_PATHS = ("metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName", "spec.serviceAccountName",
               "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs")
LABEL_FIELD = re.compile(r"metadata\.(labels|annotations)\['([^']*)'\]")
#: What a resourceFieldRef may name (validContainerResourceFieldPathExpressions).
RESOURCE_FIELDS = tuple(f"{kind}.{r}" for kind in ("limits", "requests") for r in ("cpu", "memory", "ephemeral-storage"))
CONFIG_KEY = re.compile(r"[-._a-zA-Z0-9]+")


def _secret_name(out: Collector, pos: Positions, path: tuple, name: str, what: str) -> None:
    if not DNS_SUBDOMAIN.fullmatch(name) or len(name) > 253:
        out.add(pos.value(path), f"{'.'.join(map(str, path))} must name a {what} (a DNS-1123 subdomain)", name)


def _check_env_sources(out: Collector, pos: Positions, exp: Experiment) -> None:
    """env values read from Secrets, ConfigMaps and the pod's own fields, and envFrom: references
    only (the kubelet reads them when the trial starts; kubesweep never does)."""
    for key, value in exp.env.items():
        if not isinstance(value, EnvSource):
            continue
        here = ("env", key)
        given = [k for k in ("secretKeyRef", "configMapKeyRef", "fieldRef", "resourceFieldRef")
                 if getattr(value, {"secretKeyRef": "secret_key_ref", "configMapKeyRef": "config_map_key_ref",
                                    "fieldRef": "field_ref", "resourceFieldRef": "resource_field_ref"}[k]) is not None]
        if len(given) != 1:
            out.add(pos.value(here), f"env.{key} takes exactly one of secretKeyRef, configMapKeyRef, fieldRef, "
                    f"resourceFieldRef" + (f" (got {', '.join(given)})" if given else ""))
            continue
        for field, ref, what in (("secretKeyRef", value.secret_key_ref, "Secret"),
                                 ("configMapKeyRef", value.config_map_key_ref, "ConfigMap")):
            if ref is None:
                continue
            _secret_name(out, pos, here + (field, "name"), ref.name, what)
            if not CONFIG_KEY.fullmatch(ref.key) or len(ref.key) > 253:
                out.add(pos.value(here + (field, "key")), f"env.{key}.{field}.key must be a key of the {what} "
                        "(letters, digits, '-', '_', '.')", ref.key)
        if value.field_ref is not None:
            path = value.field_ref.field_path
            m = LABEL_FIELD.fullmatch(path)
            if path not in FIELD_PATHS and not (m and QUALIFIED_NAME.fullmatch(m.group(2))):
                out.add(pos.value(here + ("fieldRef", "fieldPath")), f"env.{key}.fieldRef.fieldPath must be one of "
                        f"{', '.join(FIELD_PATHS)}, metadata.labels['KEY'] or metadata.annotations['KEY']", path)
            if value.field_ref.api_version not in (None, "v1"):
                out.add(pos.value(here + ("fieldRef", "apiVersion")), f"env.{key}.fieldRef.apiVersion must be v1",
                        value.field_ref.api_version)
        if value.resource_field_ref is not None:
            rf = value.resource_field_ref
            if rf.resource not in RESOURCE_FIELDS:
                out.add(pos.value(here + ("resourceFieldRef", "resource")), f"env.{key}.resourceFieldRef.resource must "
                        f"be one of {', '.join(RESOURCE_FIELDS)}", rf.resource)
            if rf.container_name not in (None, "trial"):
                out.add(pos.value(here + ("resourceFieldRef", "containerName")), f"env.{key}.resourceFieldRef."
                        "containerName must be the trial's container, 'trial' (or left out)", rf.container_name)
            if rf.divisor is not None and (not quantity.valid(rf.divisor) or quantity.parse(rf.divisor) == 0):
                out.add(pos.value(here + ("resourceFieldRef", "divisor")), f"env.{key}.resourceFieldRef.divisor must "
                        "be a positive quantity (1, 1m, 1Mi, ...)", rf.divisor)
    for i, source in enumerate(exp.env_from):
        here = ("envFrom", i)
        refs = [(k, r, w) for k, r, w in (("secretRef", source.secret_ref, "Secret"),
                                          ("configMapRef", source.config_map_ref, "ConfigMap")) if r is not None]
        if len(refs) != 1:
            out.add(pos.value(here), "each envFrom entry takes exactly one of secretRef or configMapRef")
            continue
        field, ref, what = refs[0]
        _secret_name(out, pos, here + (field, "name"), ref.name, what)
        if source.prefix is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", source.prefix):
            out.add(pos.value(here + ("prefix",)), "envFrom prefix must start a C identifier (letters, digits, '_')",
                    source.prefix)


def _check_pod(out: Collector, pos: Positions, exp: Experiment) -> None:
    """The pod settings passed through as written: class names and /dev/shm (affinity's shape is
    the schema's, its meaning the API server's rules in k8s/apirules.py)."""
    for key, value, kind in (("priorityClassName", exp.priority_class_name, "PriorityClass"),
                             ("runtimeClassName", exp.runtime_class_name, "RuntimeClass")):
        if value is not None and (not DNS_SUBDOMAIN.fullmatch(value) or len(value) > 253):
            out.add(pos.value((key,)), f"{key} must name a {kind} (a DNS-1123 subdomain)", value)
    if exp.shm_size is not None and (not quantity.valid(exp.shm_size) or quantity.parse(exp.shm_size) == 0):
        what = ("larger than Kubernetes holds (2^63-1)" if _larger_than_kubernetes(exp.shm_size)
                else "not a positive Kubernetes quantity (e.g. 1Gi, 512Mi)")
        out.add(pos.value(("shmSize",)), f"shmSize is {what}", exp.shm_size)
    if exp.metrics_file is not None:
        folder = exp.metrics_file.rsplit("/", 1)[0]
        taken = {"/dev/shm", exp.output.mounted_at.rstrip("/") if exp.output else "/output"}
        if not folder or folder in taken:
            out.add(pos.value(("metricsFile",)), "metricsFile must be in a folder of its own (not /, /dev/shm or the "
                    "output mount): that folder is a volume shared with the sidecar that reads the file", exp.metrics_file)


def _numeric(p: Parameter) -> bool:
    if not p.is_values:
        return True  # a min/max range
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in p.values or [])


#: The earlyStopping keys each pruner reads; any other one given is refused (it would be ignored).
PRUNER_KEYS = {"median": {"minTrials", "startStep"}, "medianstop": {"minTrials", "startStep"},
               "asha": {"minResource", "reductionFactor"},
               "hyperband": {"minResource", "maxResource", "reductionFactor"}}


def _check_early_stopping(out: Collector, pos: Positions, exp: Experiment) -> None:
    es = exp.early_stopping
    if es is None:
        return
    given = {type(es).model_fields[f].alias or f for f in es.model_fields_set}
    for key in sorted(given - PRUNER_KEYS[es.pruner] - {"pruner", "metric", "intervalSeconds"}):
        out.add(pos.key(("earlyStopping", key)), f"earlyStopping.{key} has no meaning for the {es.pruner} pruner "
                f"(it reads {', '.join(sorted(PRUNER_KEYS[es.pruner]))})")
    if es.pruner == "medianstop":  # Katib's own checks: min_trials_required > 0, start_step >= 1
        for key, value in (("minTrials", es.min_trials), ("startStep", es.start_step)):
            if value < 1:
                out.add(pos.value(("earlyStopping", key)), f"earlyStopping.{key} must be at least 1 for medianstop", value)
    if es.metric is not None and not es.metric.strip():
        out.add(pos.value(("earlyStopping", "metric")), "earlyStopping.metric must name the metric the pruner judges", es.metric)
    if es.min_resource and es.max_resource and es.min_resource > es.max_resource:
        out.add(pos.value(("earlyStopping", "minResource")), f"earlyStopping.minResource ({es.min_resource}) is past "
                f"maxResource ({es.max_resource})", es.min_resource)


def check(exp: Experiment, pos: Positions) -> None:
    """Raise SpecError listing every meaning problem in ``exp``."""
    out = Collector()
    if not DNS_LABEL.fullmatch(exp.name) or len(exp.name) > MAX_EXPERIMENT_NAME:
        out.add(pos.value(("name",)), f"name must be a DNS-1123 label of at most {MAX_EXPERIMENT_NAME} characters (lowercase letters, digits, '-'; start and end alphanumeric), since trial and Job names are built from it", exp.name)
    if not DNS_LABEL.fullmatch(exp.namespace) or len(exp.namespace) > 63:
        out.add(pos.value(("namespace",)), "namespace must be a DNS-1123 label (lowercase letters, digits, '-')", exp.namespace)
    if exp.queue is not None and (not DNS_SUBDOMAIN.fullmatch(exp.queue) or len(exp.queue) > 63):
        out.add(pos.value(("queue",)), "queue must name a Kueue LocalQueue (a DNS-1123 subdomain of at most 63 "
                "characters: it is a label value)", exp.queue)
    if QUEUE_LABEL in exp.labels:
        out.add(pos.key(("labels", QUEUE_LABEL)), "labels: name the Kueue queue with queue: instead "
                "(kubesweep then creates the Jobs suspended, as Kueue expects, and labels the Job, not its pods)")
    if not IMAGE.fullmatch(exp.image) or len(exp.image) > 255:
        out.add(pos.value(("image",)), "image is not a valid image reference ([registry[:port]/]name[:tag][@sha256:digest], lowercase name)", exp.image)
    if exp.build is not None and (":" in exp.image.rsplit("/", 1)[-1] or "@" in exp.image):
        out.add(pos.value(("image",)), "with 'build', image is a repository without a tag: kubesweep tags it by content", exp.image)
    if exp.service_account is not None and (not DNS_SUBDOMAIN.fullmatch(exp.service_account) or len(exp.service_account) > 253):
        out.add(pos.value(("serviceAccount",)), "serviceAccount must be a DNS-1123 subdomain", exp.service_account)
    for i, secret in enumerate(exp.image_pull_secrets):
        if not DNS_SUBDOMAIN.fullmatch(secret) or len(secret) > 253:
            out.add(pos.value(("imagePullSecrets", i)), "imagePullSecrets must name Secrets (DNS-1123 subdomains)", secret)

    if not exp.parameters:
        out.add(pos.value(("parameters",)), "parameters must name at least one parameter")
    for name, p in exp.parameters.items():
        if exp.search.algorithm == "hyperband" and name == exp.search.resource and p.min is not None and p.min == p.max:
            continue  # hyperband's budget: its range is not sampled (Katib's example gives it min = max)
        _check_param(out, pos, name, p, exp.search.algorithm)

    known = set(exp.parameters) | set(BUILTINS)
    used: set[str] = set()
    texts = [(("command", i), c) for i, c in enumerate(exp.command)]
    texts += [(("env", k), v) for k, v in exp.env.items() if isinstance(v, str)]
    texts += [(("annotations", k), v) for k, v in exp.annotations.items()]
    for path, text in texts:
        for ref in placeholders(text):
            if ref is None:
                out.add(pos.value(path), "unterminated '${' (write '$$' for a literal '$')", text)
            elif ref not in known:
                close = difflib.get_close_matches(ref, sorted(known), n=1)
                hint = f" (did you mean ${{{close[0]}}}?)" if close else f" (parameters: {', '.join(exp.parameters) or 'none'})"
                out.add(pos.value(path), f"unknown placeholder ${{{ref}}}{hint}", text)
            else:
                used.add(ref)
                if ref in ("args", "args_no_hyphens") and (path[0] != "command" or text != f"${{{ref}}}"):
                    out.add(pos.value(path), f"${{{ref}}} expands to several arguments, so it must stand alone as one command item", text)
    # A parameter named like a built-in is ambiguous where ${name} could mean either; passed only
    # through ${args} (as a W&B config passes every parameter) it is not.
    for name in exp.parameters:
        if name in BUILTINS and (name in used or not used & {"args", "args_no_hyphens", "args_json"}):
            out.add(pos.key(("parameters", name)), f"parameter name {name!r} is reserved for the built-in placeholder ${{{name}}}")
    if not used & {"args", "args_no_hyphens", "args_json"}:
        for name in exp.parameters:
            if name not in used:
                out.add(pos.key(("parameters", name)), f"parameter {name!r} is not used: reference it as ${{{name}}} in command or env (or pass all with ${{args}})")

    s = exp.search
    adaptive.check(exp, pos, out)
    if s.trials is not None and s.trials < 1:
        out.add(pos.value(("search", "trials")), "search.trials must be at least 1", s.trials)
    if s.trial_limit < 1:
        out.add(pos.value(("search", "trialLimit")), "search.trialLimit must be at least 1", s.trial_limit)
    elif s.trial_limit > MAX_TRIAL_LIMIT:
        out.add(pos.value(("search", "trialLimit")), f"search.trialLimit may be at most {MAX_TRIAL_LIMIT:,}: split a "
                "larger sweep into several experiments", s.trial_limit)
    for i, key in enumerate(s.longest_first):
        here = pos.value(("search", "longestFirst", i))
        if key not in exp.parameters:
            out.add(here, f"search.longestFirst names {key!r}, which is not a parameter{did_you_mean(key, sorted(exp.parameters))}", key)
        elif not _numeric(exp.parameters[key]):
            out.add(here, f"search.longestFirst orders by numbers, but parameter {key!r} has values that are not numbers", key)
    if s.longest_first and adaptive.incremental(exp):
        out.add(pos.value(("search", "longestFirst")), "search.longestFirst orders a plan made in advance (grid, random "
                f"with search.trials); {s.algorithm} search{' without search.trials' if s.algorithm == 'random' else ''} "
                "asks for its trials one batch at a time")
    if exp.batch_size < 1:
        out.add(pos.value(("batchSize",)), "batchSize must be at least 1", exp.batch_size)
    if exp.max_failed_trials is not None and exp.max_failed_trials < 0:
        out.add(pos.value(("maxFailedTrials",)), "maxFailedTrials must not be negative", exp.max_failed_trials)
    for key, value, least in (("backoffLimit", exp.backoff_limit, 0), ("activeDeadlineSeconds", exp.active_deadline_seconds, 1),
                              ("ttlSecondsAfterFinished", exp.ttl_seconds_after_finished, 0),
                              ("nodeLossGraceSeconds", exp.node_loss_grace_seconds, 0),
                              ("unschedulableSeconds", exp.unschedulable_seconds, 1)):
        if value is not None and value < least:
            out.add(pos.value((key,)), f"{key} must be at least {least}", value)

    o = exp.objective
    if o.metric is not None and not o.metric.strip():
        out.add(pos.value(("objective", "metric")), "objective.metric must name the metric", o.metric)
    if o.metric is None:  # run every point, judge none: what a W&B config without a metric asks
        for what, given, path in (("objective.goal", o.goal is not None, ("objective", "goal")),
                                  ("objective.additionalObjectives", bool(o.additional_objectives),
                                   ("objective", "additionalObjectives")),
                                  (f"{exp.search.algorithm} search", exp.search.algorithm not in ("grid", "random"),
                                   ("search", "algorithm")),
                                  ("earlyStopping", exp.early_stopping is not None, ("earlyStopping",))):
            if given:
                out.add(pos.value(path), f"{what} needs objective.metric (the metric it judges trials by)")
    if o.regex is not None:
        try:
            rx = re.compile(o.regex)
        except re.error as exc:
            out.add(pos.value(("objective", "regex")), f"objective.regex does not compile: {exc}", o.regex)
        else:
            if not ("value" in rx.groupindex or rx.groups >= 1):
                out.add(pos.value(("objective", "regex")), "objective.regex needs a group: one (the value), a group named "
                        "'value', or two or more (the first is the name, the second the value, as in Katib); it has none", o.regex)
    if o.step is not None and not o.step.strip():
        out.add(pos.value(("objective", "step")), "objective.step must name the key that numbers a report (epoch, step)", o.step)
    _check_early_stopping(out, pos, exp)

    _check_resources(out, pos, exp)

    _label_issues(out, pos, ("nodeSelector",), exp.node_selector, values=True, ours=False)
    _label_issues(out, pos, ("labels",), exp.labels, values=True)
    _label_issues(out, pos, ("annotations",), exp.annotations, values=False)
    for key in exp.env:
        if not ENV_NAME.fullmatch(key):
            out.add(pos.key(("env", key)), f"env name {key!r} must be a C identifier (letters, digits, '_')")
        elif key == RESERVED_ENV[0] or key.startswith(RESERVED_ENV[1]):
            out.add(pos.key(("env", key)), f"env name {key!r} is set by kubesweep itself")

    if exp.output is not None:
        out_ = exp.output
        if sum(v is not None for v in (out_.host_path, out_.pvc, out_.share)) != 1:
            out.add(pos.value(("output",)), "output needs exactly one of 'hostPath', 'pvc' or 'share'")
        if out_.share is not None:
            parts = out_.share.split("/")
            if not out_.share.startswith("/") or ".." in parts or out_.share.rstrip("/") == "" or ":" in out_.share:
                out.add(pos.value(("output", "share")), "output.share must be the absolute path where every node mounts "
                        "the shared storage (e.g. /share), not / and without '..'", out_.share)
            if "mount_path" in out_.model_fields_set:
                out.add(pos.key(("output", "mountPath")), "output.mountPath is for hostPath and pvc: the share is "
                        "mounted at its own path in the trial, the path every node has it at")
        if out_.host_path is not None and (not out_.host_path.startswith("/") or ".." in out_.host_path.split("/")):
            out.add(pos.value(("output", "hostPath")), "output.hostPath must be an absolute path without '..'", out_.host_path)
        if out_.pvc is not None and not DNS_SUBDOMAIN.fullmatch(out_.pvc):
            out.add(pos.value(("output", "pvc")), "output.pvc must name a PersistentVolumeClaim (DNS-1123 subdomain)", out_.pvc)
        if not out_.mount_path.startswith("/") or ":" in out_.mount_path:
            out.add(pos.value(("output", "mountPath")), "output.mountPath must be an absolute path", out_.mount_path)
        for key, value in (("hostPath", out_.host_path), ("pvc", out_.pvc), ("share", out_.share),
                           ("mountPath", out_.mount_path)):
            if value is not None and "$" in value:
                mine = "<share>/<namespace>" if key == "share" else "<mountPath>"
                out.add(pos.value(("output", key)), f"output.{key} is the same for every trial, so placeholders are not "
                        f"substituted there; each trial writes to {mine}/<experiment>/<trial> ($OUTPUT_DIR, ${{output}})", value)
    sc = exp.security_context
    if sc.run_as_user < 0:
        out.add(pos.value(("securityContext", "runAsUser")), "securityContext.runAsUser must be a uid (>= 0)", sc.run_as_user)
    elif sc.run_as_user == 0 and sc.run_as_non_root:
        out.add(pos.value(("securityContext", "runAsUser")), "securityContext.runAsUser 0 is root, and trials run as "
                "non-root unless the file says otherwise: for an image that must run as root write "
                "securityContext: {runAsUser: 0, runAsNonRoot: false}", sc.run_as_user)
    _check_pod(out, pos, exp)
    _check_env_sources(out, pos, exp)

    if not out:
        for name, p in exp.parameters.items():
            if p.values is None and p.min is not None and p.max is not None:
                d = domain(name, p)
                if d.size == 0:
                    out.add(pos.value(("parameters", name)), f"parameter {name!r} has no points")
    out.raise_if_any()
