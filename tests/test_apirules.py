"""The API server's rules that the OpenAPI schema leaves out: each is caught at the input's place."""

from __future__ import annotations

import copy

import pytest

from kubesweep.k8s import apirules
from kubesweep.plan import job as manifest
from kubesweep.plan import planner as render
from kubesweep.k8s import jobschema as validation
from kubesweep.errors import SpecError

from .conftest import MINIMAL


@pytest.fixture
def job(grid_file):
    p = render.plan(grid_file())
    return manifest.build_job(p.experiment, p.trials[0])


def _pod(job):
    return job["spec"]["template"]["spec"]


def test_a_rendered_job_breaks_no_rule(job):
    assert apirules.job_problems(job) == []
    assert validation.schema_errors(job) == []


@pytest.mark.parametrize("toleration, path, message", [
    ({"key": "gpu", "operator": "Foo"}, "operator", "toleration operator 'Foo' must be Equal or Exists"),
    ({"key": "gpu", "operator": "Exists", "value": "x"}, "value", "a toleration with operator Exists must not have a value"),
    ({"key": "gpu", "operator": "Equal", "value": "x", "effect": "NoSchedule", "tolerationSeconds": 5},
     "tolerationSeconds", "tolerationSeconds applies only to effect NoExecute"),
    ({"key": "bad key", "operator": "Exists"}, "key", "toleration key 'bad key' is not a valid label key"),
    ({"operator": "Equal", "value": "x"}, "operator", "a toleration without a key must use operator Exists (it then tolerates every taint)"),
    ({"key": "gpu", "operator": "Exists", "effect": "Never"}, "effect",
     "toleration effect 'Never' must be NoSchedule, PreferNoSchedule or NoExecute (or empty for all)"),
    ({"key": "gpu", "value": "a\n"}, "value", "toleration value 'a\\n' is not a valid label value"),
])
def test_toleration_rules(job, toleration, path, message):
    _pod(job)["tolerations"].insert(0, toleration)
    assert apirules.job_problems(job) == [(("spec", "template", "spec", "tolerations", 0, path), message)]


@pytest.mark.parametrize("field, value", [("runAsUser", 2**32), ("runAsGroup", -1), ("fsGroup", 2**31)])
def test_ids_must_be_between_0_and_int32_max(job, field, value):
    _pod(job)["securityContext"][field] = value
    assert apirules.job_problems(job) == [
        (("spec", "template", "spec", "securityContext", field), f"{field} must be between 0 and 2,147,483,647")]


def test_int32_and_int64_fields_are_bounded_by_the_schema_formats(job):
    job["spec"]["backoffLimit"] = 3_000_000_000
    job["spec"]["activeDeadlineSeconds"] = 2**63
    errors = {".".join(map(str, e.absolute_path)): e.validator_value for e in validation.schema_errors(job)}
    assert errors == {"spec.backoffLimit": "int32", "spec.activeDeadlineSeconds": "int64"}


def test_annotations_and_the_whole_object_have_size_limits(job):
    big = copy.deepcopy(job)
    big["metadata"]["annotations"]["note"] = "x" * apirules.ANNOTATIONS_MAX
    assert [p for p, _ in apirules.job_problems(big)] == [("metadata", "annotations")]
    huge = copy.deepcopy(job)
    _pod(huge)["containers"][0]["env"] += [{"name": f"V{i}", "value": "x" * 100_000} for i in range(17)]
    (path, message), = apirules.job_problems(huge)
    assert path == () and "over the 1,572,864 bytes etcd accepts by default" in message


def test_an_argument_longer_than_linux_takes_is_refused(job):
    _pod(job)["containers"][0]["command"].append("x" * 131_072)
    assert apirules.job_problems(job) == [(("spec", "template", "spec", "containers", 0, "command", 4),
                                           "an argument of 131,072 bytes: Linux refuses to start a program with an argument over 131,071 bytes")]


def test_resources_requests_limits_and_extended_resources(job):
    res = _pod(job)["containers"][0]["resources"]
    res["requests"]["cpu"], res["limits"]["cpu"] = "2", "1"
    res["requests"]["nvidia.com/gpu"], res["limits"]["nvidia.com/gpu"] = "1", "2"
    messages = [m for _, m in apirules.job_problems(job)]
    assert "the cpu request 2 is over its limit 1" in messages
    assert "nvidia.com/gpu request and limit must be equal" in messages


@pytest.mark.parametrize("extra, message", [
    ("backoffLimit: 3000000000", "3000000000 does not fit in a 32-bit integer"),
    ("securityContext: {runAsUser: 4294967296}", "runAsUser must be between 0 and 2,147,483,647; the API server would refuse the Job"),
    ("tolerations: [{key: gpu, operator: Exists, value: x}]", "a toleration with operator Exists must not have a value"),
])
def test_the_rules_point_at_the_input(grid_file, extra, message):
    path = grid_file(MINIMAL + extra + "\n")
    with pytest.raises(SpecError) as err:
        render.plan(path)
    (line,) = str(err.value).splitlines()[:-1]
    assert line.startswith(f"{path}:8:") and message in line


@pytest.mark.parametrize("value, ok", [("1", True), ("500m", True), (1073741824, True), (0.5, True), ("9223372036854775807", True),
                                       ("9223372036854775808", False), ("8Ei", False), ("1e99999", False), (-1, False),
                                       ("1\n", False), (True, False), ("5GB", False)])
def test_quantities_kubernetes_would_cap_or_refuse_are_not_valid(value, ok):
    from kubesweep.k8s import quantity

    assert quantity.valid(value) is ok
