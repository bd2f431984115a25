"""Schema validation of rendered Jobs against the pinned Kubernetes version's OpenAPI schema.

kubernetes-validate ships the schemas (offline). Its ``validate()`` re-reads and re-compiles
the schema on every call; we compile the strict Job schema once per process and reuse it.
"""

from __future__ import annotations

import functools
from typing import Any

import jsonschema
from kubernetes_validate import utils as kv
from referencing import Registry, Resource

from kubesweep.k8s import apirules
from kubesweep.errors import Collector
from kubesweep.k8s.versions import KUBERNETES_VERSION
from kubesweep.spec.yamlsource import Positions

#: Where grid.yaml fields land inside a Job, to point schema errors back at the input.
FIELD_PATHS: list[tuple[tuple[Any, ...], tuple[Any, ...]]] = [
    (("spec", "template", "spec", "tolerations"), ("tolerations",)),
    (("spec", "template", "spec", "nodeSelector"), ("nodeSelector",)),
    (("spec", "template", "spec", "containers", 0, "resources"), ("resources",)),
    (("spec", "template", "spec", "containers", 0, "env"), ("env",)),
    (("spec", "template", "spec", "containers", 0, "envFrom"), ("envFrom",)),
    (("spec", "template", "spec", "affinity"), ("affinity",)),
    (("spec", "template", "spec", "priorityClassName"), ("priorityClassName",)),
    (("spec", "template", "spec", "runtimeClassName"), ("runtimeClassName",)),
    (("spec", "template", "spec", "containers", 0, "command"), ("command",)),
    (("spec", "template", "spec", "securityContext"), ("securityContext",)),
    (("spec", "template", "spec", "imagePullSecrets"), ("imagePullSecrets",)),
    (("spec", "template", "spec", "volumes"), ("output",)),
    (("spec", "template", "metadata", "annotations"), ("annotations",)),
    (("metadata", "labels"), ("labels",)),
    (("metadata", "annotations"), ("annotations",)),
    (("spec", "backoffLimit"), ("backoffLimit",)),
    (("spec", "activeDeadlineSeconds"), ("activeDeadlineSeconds",)),
    (("spec", "ttlSecondsAfterFinished"), ("ttlSecondsAfterFinished",)),
    (("spec",), ()),
]


def schema_version() -> str:
    """The major.minor of the schema used: the pinned version, or the newest not newer."""
    want = kv.major_minor(KUBERNETES_VERSION)
    return [v for v in kv.all_versions() if kv.major_minor(v) <= want][-1]


def _int_format(bits: int):  # noqa: ANN202 - a FormatChecker function
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1

    def check(instance: object) -> bool:
        # The schema says "integer, format int32"; JSON Schema leaves formats to the validator,
        # and the API server refuses a backoffLimit of 3e9 or a runAsUser of 2^64.
        return not isinstance(instance, int) or isinstance(instance, bool) or low <= instance <= high

    return check


FORMATS = jsonschema.FormatChecker(formats=())
FORMATS.checks("int32")(_int_format(32))
FORMATS.checks("int64")(_int_format(64))


@functools.lru_cache(maxsize=None)
def job_validator() -> jsonschema.protocols.Validator:
    version = schema_version()
    folder = f"kubernetes-json-schema/v{version}-local-strict"
    schema = kv.schema_contents(f"{folder}/job-batch-v1.json", version)
    definitions = kv.schema_contents(f"{folder}/_definitions.json", version)
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.validators.Draft202012Validator(schema, registry=registry, format_checker=FORMATS)


def schema_errors(obj: dict[str, Any]) -> list[jsonschema.ValidationError]:
    return sorted(job_validator().iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))


def input_path(job_path: tuple[Any, ...]) -> tuple[Any, ...]:
    for prefix, target in FIELD_PATHS:
        if job_path[: len(prefix)] == prefix:
            return target + job_path[len(prefix) :]
    return ()


def _say(err: jsonschema.ValidationError) -> str:
    if err.validator == "format":
        return f"{err.instance!r} does not fit in {err.validator_value.replace('int', 'a ')}-bit integer"
    return err.message


def check_job(obj: dict[str, Any], pos: Positions, out: Collector) -> None:
    """Add an issue, at the input's place, for each schema error and each broken API-server rule
    (apirules) of one rendered Job."""
    for err in schema_errors(obj):
        path = tuple(err.absolute_path)
        where = ".".join(str(p) for p in path)
        out.add(pos.value(input_path(path)), f"the rendered Job is not valid for Kubernetes {schema_version()} at {where}: {_say(err)}")
    if not out:
        for path, message in apirules.job_problems(obj):
            where = ".".join(str(p) for p in path) or "the Job"
            out.add(pos.value(input_path(path)), f"{message}; the API server would refuse the Job ({where})")
