"""The API server's rules for a Job that its OpenAPI schema does not express.

The schema says a field is an integer; the API server also requires it to fit in 32 or 64 bits
(checked by validation.py through the schema's formats) and applies the semantic rules of
k8s.io/kubernetes/pkg/apis/core/validation and .../batch/validation: ranges of ids and
durations, the toleration rules, the size of annotations, and the size of the whole object.
``job_problems`` returns each broken rule as (the field's path in the Job, message), so errors can
be pointed back at the input that set the field. Anything it misses is still caught by the
cluster's own validation; the cluster tests send rendered Jobs with ``dryRun=All`` to make sure
both agree.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

from kubesweep.k8s import quantity
from kubesweep.spec.rules import LABEL_VALUE, QUALIFIED_NAME

#: apimachinery's TotalAnnotationSizeLimitB: the keys and values of one object's annotations.
ANNOTATIONS_MAX = 256 * 1024
#: etcd's default --max-request-bytes: a larger object is refused on create.
OBJECT_MAX = 1536 * 1024
#: Linux's MAX_ARG_STRLEN (32 pages, with the terminating NUL): execve refuses a longer argument.
ARG_MAX_BYTES = 131072 - 1
INT32_MAX = 2**31 - 1
EFFECTS = ("", "NoSchedule", "PreferNoSchedule", "NoExecute")

Path = tuple[Any, ...]
Problem = tuple[Path, str]


def _tolerations(tolerations: list[dict[str, Any]], base: Path) -> Iterator[Problem]:
    for i, t in enumerate(tolerations):
        here = base + (i,)
        key, operator = t.get("key", ""), t.get("operator", "")
        value, effect = t.get("value", ""), t.get("effect", "")
        if key and not (QUALIFIED_NAME.fullmatch(key) and len(key.split("/")[-1]) <= 63 and len(key) <= 317):
            yield here + ("key",), f"toleration key {key!r} is not a valid label key"
        if not key and operator != "Exists":
            yield here + ("operator",), "a toleration without a key must use operator Exists (it then tolerates every taint)"
        if operator in ("", "Equal"):
            if not (LABEL_VALUE.fullmatch(value or "") and len(value or "") <= 63):
                yield here + ("value",), f"toleration value {value!r} is not a valid label value"
        elif operator == "Exists":
            if value:
                yield here + ("value",), "a toleration with operator Exists must not have a value"
        else:
            yield here + ("operator",), f"toleration operator {operator!r} must be Equal or Exists"
        if effect not in EFFECTS:
            yield here + ("effect",), f"toleration effect {effect!r} must be NoSchedule, PreferNoSchedule or NoExecute (or empty for all)"
        if t.get("tolerationSeconds") is not None and effect != "NoExecute":
            yield here + ("tolerationSeconds",), "tolerationSeconds applies only to effect NoExecute"


def _annotations(meta: dict[str, Any], base: Path) -> Iterator[Problem]:
    annotations = meta.get("annotations") or {}
    size = sum(len(k.encode()) + len(v.encode()) for k, v in annotations.items())
    if size > ANNOTATIONS_MAX:
        yield base + ("annotations",), f"the annotations take {size:,} bytes, over the API server's limit of {ANNOTATIONS_MAX:,}"


def _ids(security: dict[str, Any], base: Path) -> Iterator[Problem]:
    for field in ("runAsUser", "runAsGroup", "fsGroup"):
        value = security.get(field)
        if isinstance(value, int) and not 0 <= value <= INT32_MAX:
            yield base + (field,), f"{field} must be between 0 and {INT32_MAX:,}"
    for i, group in enumerate(security.get("supplementalGroups") or []):
        if isinstance(group, int) and not 0 <= group <= INT32_MAX:
            yield base + ("supplementalGroups", i), f"supplementalGroups must be between 0 and {INT32_MAX:,}"


def _container(c: dict[str, Any], base: Path) -> Iterator[Problem]:
    for field in ("command", "args"):
        for i, arg in enumerate(c.get(field) or []):
            if len(arg.encode()) > ARG_MAX_BYTES:
                yield base + (field, i), (f"an argument of {len(arg.encode()):,} bytes: Linux refuses to start a program "
                                          f"with an argument over {ARG_MAX_BYTES:,} bytes")
    resources = c.get("resources") or {}
    requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
    for name, amount in {**requests, **limits}.items():
        if not quantity.valid(amount):
            yield base + ("resources",), f"{name} {amount!r} is not a Kubernetes quantity"
            return
    for name in set(requests) & set(limits):
        if quantity.parse(requests[name]) > quantity.parse(limits[name]):
            yield base + ("resources",), f"the {name} request {requests[name]} is over its limit {limits[name]}"
    for name in (n for n in {**requests, **limits} if "/" in n):  # extended resources (GPUs)
        amounts = [quantity.parse(x[name]) for x in (requests, limits) if name in x]
        if any(a != a.to_integral_value() for a in amounts):
            yield base + ("resources",), f"{name} must be a whole number"
        if len(amounts) == 2 and amounts[0] != amounts[1]:
            yield base + ("resources",), f"{name} request and limit must be equal"


def _node_term(term: dict[str, Any], base: Path) -> Iterator[Problem]:
    """A NodeSelectorTerm as the API server checks it (ValidateNodeSelectorTerm)."""
    for i, req in enumerate(term.get("matchExpressions") or []):
        here = base + ("matchExpressions", i)
        key, operator, values = req.get("key", ""), req.get("operator"), req.get("values") or []
        if not (QUALIFIED_NAME.fullmatch(key) and len(key.split("/")[-1]) <= 63):
            yield here + ("key",), f"node affinity key {key!r} is not a valid label key"
        if operator in ("In", "NotIn"):
            if not values:
                yield here + ("values",), f"node affinity operator {operator} needs values"
        elif operator in ("Exists", "DoesNotExist"):
            if values:
                yield here + ("values",), f"node affinity operator {operator} takes no values"
        elif operator in ("Gt", "Lt"):  # the API server takes any one value; the scheduler wants an integer
            if len(values) != 1:
                yield here + ("values",), f"node affinity operator {operator} takes exactly one value"
        else:
            yield here + ("operator",), f"node affinity operator {operator!r} must be In, NotIn, Exists, DoesNotExist, Gt or Lt"
    for i, req in enumerate(term.get("matchFields") or []):
        here = base + ("matchFields", i)
        if req.get("key") != "metadata.name":
            yield here + ("key",), "node affinity matchFields supports only the key metadata.name"
        if req.get("operator") not in ("In", "NotIn") or len(req.get("values") or []) != 1:
            yield here, "node affinity matchFields takes operator In or NotIn with exactly one value"


def _selector(selector: dict[str, Any] | None, base: Path) -> Iterator[Problem]:
    for i, req in enumerate((selector or {}).get("matchExpressions") or []):
        operator, values = req.get("operator"), req.get("values") or []
        if operator in ("In", "NotIn") and not values:
            yield base + ("matchExpressions", i, "values"), f"label selector operator {operator} needs values"
        elif operator in ("Exists", "DoesNotExist") and values:
            yield base + ("matchExpressions", i, "values"), f"label selector operator {operator} takes no values"
        elif operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            yield base + ("matchExpressions", i, "operator"), f"label selector operator {operator!r} must be In, NotIn, Exists or DoesNotExist"


def _pod_term(term: dict[str, Any], base: Path) -> Iterator[Problem]:
    key = term.get("topologyKey") or ""
    if not (QUALIFIED_NAME.fullmatch(key) and len(key.split("/")[-1]) <= 63):
        yield base + ("topologyKey",), f"pod affinity needs a topologyKey that is a label key (got {key!r})"
    yield from _selector(term.get("labelSelector"), base + ("labelSelector",))
    yield from _selector(term.get("namespaceSelector"), base + ("namespaceSelector",))


def _affinity(affinity: dict[str, Any], base: Path) -> Iterator[Problem]:
    """The rules of ValidateAffinity the schema does not state: operators and their values, weights
    1..100, a topologyKey for pod (anti-)affinity, at least one node selector term."""
    node = affinity.get("nodeAffinity") or {}
    required = node.get("requiredDuringSchedulingIgnoredDuringExecution")
    if required is not None:
        here = base + ("nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution")
        if not required.get("nodeSelectorTerms"):
            yield here + ("nodeSelectorTerms",), "node affinity needs at least one nodeSelectorTerm"
        for i, term in enumerate(required.get("nodeSelectorTerms") or []):
            yield from _node_term(term, here + ("nodeSelectorTerms", i))
    for i, pref in enumerate(node.get("preferredDuringSchedulingIgnoredDuringExecution") or []):
        here = base + ("nodeAffinity", "preferredDuringSchedulingIgnoredDuringExecution", i)
        if not 1 <= (pref.get("weight") or 0) <= 100:
            yield here + ("weight",), "an affinity weight must be between 1 and 100"
        yield from _node_term(pref.get("preference") or {}, here + ("preference",))
    for kind in ("podAffinity", "podAntiAffinity"):
        part = affinity.get(kind) or {}
        for i, term in enumerate(part.get("requiredDuringSchedulingIgnoredDuringExecution") or []):
            yield from _pod_term(term, base + (kind, "requiredDuringSchedulingIgnoredDuringExecution", i))
        for i, pref in enumerate(part.get("preferredDuringSchedulingIgnoredDuringExecution") or []):
            here = base + (kind, "preferredDuringSchedulingIgnoredDuringExecution", i)
            if not 1 <= (pref.get("weight") or 0) <= 100:
                yield here + ("weight",), "an affinity weight must be between 1 and 100"
            yield from _pod_term(pref.get("podAffinityTerm") or {}, here + ("podAffinityTerm",))


def job_problems(job: dict[str, Any]) -> list[Problem]:
    """Every rule of the API server that ``job`` breaks and the schema does not catch."""
    out: list[Problem] = []
    spec = job.get("spec") or {}
    template = spec.get("template") or {}
    pod = template.get("spec") or {}
    out += _annotations(job.get("metadata") or {}, ("metadata",))
    if not out:  # the pod template carries the same annotations: one message is enough
        out += _annotations(template.get("metadata") or {}, ("spec", "template", "metadata"))
    for field, least in (("backoffLimit", 0), ("ttlSecondsAfterFinished", 0), ("activeDeadlineSeconds", 1)):
        value = spec.get(field)
        if isinstance(value, int) and value < least:
            out.append((("spec", field), f"{field} must be at least {least}"))
    out += _ids(pod.get("securityContext") or {}, ("spec", "template", "spec", "securityContext"))
    out += _tolerations(pod.get("tolerations") or [], ("spec", "template", "spec", "tolerations"))
    out += _affinity(pod.get("affinity") or {}, ("spec", "template", "spec", "affinity"))
    for i, c in enumerate(pod.get("containers") or []):
        out += _container(c, ("spec", "template", "spec", "containers", i))
    if not out:
        size = len(json.dumps(job, separators=(",", ":")).encode())
        if size > OBJECT_MAX:
            out.append(((), f"the Job is {size:,} bytes as JSON, over the {OBJECT_MAX:,} bytes etcd accepts by default"))
    return out
