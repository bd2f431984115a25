"""A reference for what the Kubernetes API server (and then the container runtime) would refuse in
a Job that the OpenAPI schema lets through.

``kubesweep.validation.schema_errors`` checks the shape and the JSON types only: the schema's
``format: int32`` is not asserted, and the rules the API server implements in Go
(k8s.io/kubernetes pkg/apis/core/validation, apimachinery's IsQualifiedName, IsDNS1123Label,
IsValidLabelValue, ...) are not in the schema at all. A manifest that breaks them is written
happily and refused only when a sweep submits it, trial after trial. This module re-states the
rules that concern fields kubesweep fills, independently of kubesweep's own checks, so the fuzzer
can hold every rendered Job to them. Go regexps anchor at the very end of the text (no "$ before
a final newline" as in Python), hence ``fullmatch`` throughout.
"""

from __future__ import annotations

import functools
import json
import math
import re
from typing import Any, Iterator

import jsonschema

from kubesweep.k8s import jobschema as validation

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED_NAME_PART = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
# resource.ParseQuantity: a signed decimal, then a binary/decimal SI suffix or a decimal exponent.
_QUANTITY = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]+)?")
#: Go's unicode.IsSpace, which strings.TrimSpace trims (the image must not need trimming).
_GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
_TOTAL_ANNOTATION_SIZE = 256 * 1024
_MAX_ID = 2**31 - 1  # IsValidUserID / IsValidGroupID
_MAX_ARG_STRLEN = 32 * 4096  # Linux: one argv string, with its terminating NUL
_MAX_OBJECT = 1536 * 1024  # etcd's default --max-request-bytes
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)


def dns_label(text: Any) -> bool:
    return isinstance(text, str) and len(text) <= 63 and bool(_DNS_LABEL.fullmatch(text))


def dns_subdomain(text: Any) -> bool:
    return isinstance(text, str) and len(text) <= 253 and bool(_DNS_SUBDOMAIN.fullmatch(text))


def qualified_name(text: Any) -> bool:
    """IsQualifiedName: ``[prefix/]name``, prefix a DNS subdomain, name <= 63 characters."""
    if not isinstance(text, str):
        return False
    parts = text.split("/")
    if len(parts) == 2:
        prefix, name = parts
        if not dns_subdomain(prefix):
            return False
    elif len(parts) == 1:
        name = parts[0]
    else:
        return False
    return 0 < len(name) <= 63 and bool(_QUALIFIED_NAME_PART.fullmatch(name))


def label_value(text: Any) -> bool:
    return isinstance(text, str) and len(text) <= 63 and bool(_LABEL_VALUE.fullmatch(text))


def _labels(where: str, labels: Any) -> Iterator[str]:
    for key, value in (labels or {}).items():
        if not qualified_name(key):
            yield f"{where}: key {key!r} is not a qualified name"
        if not label_value(value):
            yield f"{where}[{key!r}]: {value!r} is not a valid label value"


def _annotations(where: str, annotations: Any) -> Iterator[str]:
    total = 0
    for key, value in (annotations or {}).items():
        if not qualified_name(key.lower()):
            yield f"{where}: key {key!r} is not a qualified name"
        total += len(key) + len(value)
    if total > _TOTAL_ANNOTATION_SIZE:
        yield f"{where}: {total} bytes, over the API server's 256 KiB limit"


def _tolerations(where: str, tolerations: Any) -> Iterator[str]:
    """ValidateTolerations (Lt/Gt need the alpha gate TaintTolerationComparisonOperators: refused)."""
    for i, t in enumerate(tolerations or []):
        here = f"{where}[{i}]"
        key, op, value, effect = t.get("key") or "", t.get("operator") or "", t.get("value") or "", t.get("effect") or ""
        if key and not qualified_name(key):
            yield f"{here}.key {key!r} is not a qualified name"
        if not key and op != "Exists":
            yield f"{here}.operator must be Exists when key is empty"
        if t.get("tolerationSeconds") is not None and effect != "NoExecute":
            yield f"{here}.effect must be NoExecute when tolerationSeconds is set"
        if op in ("Equal", ""):
            if not label_value(value):
                yield f"{here}.value {value!r} is not a valid label value"
        elif op == "Exists":
            if value:
                yield f"{here}.value must be empty when operator is Exists"
        else:
            yield f"{here}.operator {op!r} is not supported (Equal, Exists)"
        if effect and effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            yield f"{here}.effect {effect!r} is not supported"


def _ids(where: str, context: Any) -> Iterator[str]:
    for key in ("runAsUser", "runAsGroup", "fsGroup"):
        value = (context or {}).get(key)
        if value is not None and not (0 <= value <= _MAX_ID):
            yield f"{where}.{key} {value} is outside 0..{_MAX_ID}"


def _container(where: str, c: dict) -> Iterator[str]:
    if not dns_label(c.get("name")):
        yield f"{where}.name {c.get('name')!r} is not a DNS-1123 label"
    image = c.get("image") or ""
    if not image or image.strip(_GO_SPACE) != image:
        yield f"{where}.image {image!r} is empty or has leading/trailing whitespace"
    for item in (c.get("command") or []) + (c.get("args") or []):
        if "\x00" in item:
            yield f"{where}.command item {item!r} holds a NUL, which execve cannot pass"
        if len(item.encode("utf-8", "surrogatepass")) >= _MAX_ARG_STRLEN:
            yield f"{where}.command item of {len(item):,} characters is over Linux's MAX_ARG_STRLEN (execve: E2BIG)"
    for e in c.get("env") or []:
        name = e.get("name") or ""
        # RelaxedEnvironmentVariableValidation (GA in 1.34): printable ASCII except '='.
        if not name or any(not (32 <= ord(ch) <= 126) or ch == "=" for ch in name):
            yield f"{where}.env name {name!r} is not a valid environment variable name"
        if "\x00" in (e.get("value") or "") or "\x00" in name:
            yield f"{where}.env {name!r} holds a NUL, which no environment can"
    res = c.get("resources") or {}
    for part in ("requests", "limits"):
        for key, value in (res.get(part) or {}).items():
            text = str(value)
            if not _QUANTITY.fullmatch(text):
                yield f"{where}.resources.{part}[{key!r}] {value!r} is not a quantity"
            elif text.startswith("-"):
                yield f"{where}.resources.{part}[{key!r}] {value!r} is negative"
            elif "/" in key and not key.startswith(("kubernetes.io/", "requests.")):  # extended resources
                try:
                    if not float(text).is_integer():
                        yield f"{where}.resources.{part}[{key!r}] {value!r} must be a whole number"
                except ValueError:
                    yield f"{where}.resources.{part}[{key!r}] {value!r} must be a whole number"
    yield from _ids(f"{where}.securityContext", c.get("securityContext"))


def _volumes(where: str, volumes: Any) -> Iterator[str]:
    for i, v in enumerate(volumes or []):
        host = (v.get("hostPath") or {}).get("path")
        if host is not None and (not host or ".." in host.split("/")):
            yield f"{where}[{i}].hostPath.path {host!r} is empty or has a '..' component"
        claim = (v.get("persistentVolumeClaim") or {}).get("claimName")
        if claim is not None and not claim:
            yield f"{where}[{i}].persistentVolumeClaim.claimName is empty"


@functools.lru_cache(maxsize=1)
def _format_validator() -> jsonschema.protocols.Validator:
    """The pinned Job schema with its integer formats asserted (the API server decodes int32
    fields into Go int32: 3000000000 is refused)."""
    checker = jsonschema.FormatChecker([])

    @checker.checks("int32")
    def _int32(value: object) -> bool:
        return not isinstance(value, int) or isinstance(value, bool) or INT32[0] <= value <= INT32[1]

    @checker.checks("int64")
    def _int64(value: object) -> bool:
        return not isinstance(value, int) or isinstance(value, bool) or INT64[0] <= value <= INT64[1]

    return validation.job_validator().evolve(format_checker=checker)


def _numbers(obj: Any, where: str = "") -> Iterator[str]:
    """JSON has no NaN or infinity, and the API server's JSON decoder no integers beyond int64."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _numbers(v, f"{where}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _numbers(v, f"{where}[{i}]")
    elif isinstance(obj, float) and not math.isfinite(obj):
        yield f"{where}: {obj!r} is not a JSON number"
    elif isinstance(obj, int) and not isinstance(obj, bool) and not (INT64[0] <= obj <= INT64[1]):
        yield f"{where}: {obj} does not fit a 64-bit integer"


def job_problems(job: dict[str, Any]) -> list[str]:
    """What the API server (or the runtime: NUL bytes, over-long arguments) would refuse in this
    Job, which must already pass the schema (the checks assume its types)."""
    problems = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
                for e in _format_validator().iter_errors(job) if e.validator == "format"]
    problems += _numbers(job)
    meta = job.get("metadata") or {}
    # A Job's name becomes the pods' batch.kubernetes.io/job-name label: a label value too.
    if not dns_subdomain(meta.get("name")) or not label_value(meta.get("name")):
        problems.append(f"metadata.name {meta.get('name')!r} is not a DNS-1123 name of <= 63 characters")
    if not dns_label(meta.get("namespace")):
        problems.append(f"metadata.namespace {meta.get('namespace')!r} is not a DNS-1123 label")
    spec = job.get("spec") or {}
    template = spec.get("template") or {}
    for where, m in (("metadata", meta), ("spec.template.metadata", template.get("metadata") or {})):
        problems += _labels(f"{where}.labels", m.get("labels"))
        problems += _annotations(f"{where}.annotations", m.get("annotations"))
    for key, least in (("backoffLimit", 0), ("ttlSecondsAfterFinished", 0), ("activeDeadlineSeconds", 0)):
        if spec.get(key) is not None and spec[key] < least:
            problems.append(f"spec.{key} {spec[key]} is below {least}")
    pod = template.get("spec") or {}
    if pod.get("serviceAccountName") is not None and not dns_subdomain(pod["serviceAccountName"]):
        problems.append(f"serviceAccountName {pod['serviceAccountName']!r} is not a DNS-1123 subdomain")
    problems += _labels("spec.template.spec.nodeSelector", pod.get("nodeSelector"))
    problems += _tolerations("spec.template.spec.tolerations", pod.get("tolerations"))
    problems += _ids("spec.template.spec.securityContext", pod.get("securityContext"))
    for i, c in enumerate(pod.get("containers") or []):
        problems += _container(f"spec.template.spec.containers[{i}]", c)
    problems += _volumes("spec.template.spec.volumes", pod.get("volumes"))
    size = len(json.dumps(job, separators=(",", ":")).encode())
    if size > _MAX_OBJECT:
        problems.append(f"the Job is {size:,} bytes of JSON, over etcd's request limit of {_MAX_OBJECT:,}")
    return problems
