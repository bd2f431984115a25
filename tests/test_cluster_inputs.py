"""What the API server and the container make of kubesweep's manifests, on the real local cluster
(marker: cluster): every value reaches the trainer's argv and environment exactly as written, and
what kubesweep's own rules accept or refuse, the API server accepts or refuses too (dryRun=All)."""

from __future__ import annotations

import json
import textwrap

import pytest
from kubernetes.client.rest import ApiException

from kubesweep.k8s import apirules
from kubesweep.local import image
from kubesweep.k8s import client as kube
from kubesweep.run import lifecycle
from kubesweep.plan import job as manifest
from kubesweep.plan import planner as render
from kubesweep.run import runner
from kubesweep.k8s import jobschema as validation
from kubesweep.errors import SpecError

from .conftest import EXAMPLES, MINIMAL

pytestmark = pytest.mark.cluster

#: Values Kubernetes, YAML, shells or rich would each change if kubesweep passed them on naively.
VERBATIM = ["$(OUTPUT_DIR)", "a$$b", "${HOME}", "$", "x$(KUBESWEEP_TRIAL)y", "[/]", "\\x1b[31m",
            "quote\"s and 'single'", " leading and trailing ", "tab\there", "ünï ☃", "-dash", "null", "010"]


@pytest.fixture(scope="module")
def trainer(local_cluster):
    return image.ensure(EXAMPLES, "kubesweep/mnist", build_args={"BASE": "kubesweep/python-base:bookworm"}).reference


def _grid(tmp_path, name, body):
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(body))
    return path


def test_every_value_reaches_the_trainer_verbatim(tmp_path, local_cluster, trainer):
    """A trial prints its argv and environment as JSON; both must equal the values given."""
    grid = _grid(tmp_path, "verbatim", f"""\
    name: verbatim
    image: {trainer}
    command: [python3, -c, "import json, os, sys; print(json.dumps([sys.argv[1:], os.environ['V']])); print('score=1')",
              "${{args}}", "${{v}}", "v=${{v}}", "${{args_json}}"]
    env: {{V: "${{v}}"}}
    parameters:
      v: {json.dumps(VERBATIM)}
    batchSize: 7
    objective: {{metric: score}}
    resources: {{cpu: 50m, memory: 64Mi}}
    """)
    plan = render.plan(grid)
    assert sorted(t.params["v"] for t in plan.trials) == sorted(VERBATIM)
    render.write(plan, tmp_path / "jobs")
    sweep = runner.Sweep(plan, tmp_path / "jobs", tmp_path / "results", kubeconfig=local_cluster["kubeconfig"])
    sweep.run()
    c = kube.clients(local_cluster["kubeconfig"])
    try:
        for t in plan.trials:
            assert sweep.records[t.name].state == "succeeded", sweep.records[t.name]
            log = lifecycle.logs(c, t.name)
            argv, env = json.loads(log.splitlines()[0])
            v = t.params["v"]
            assert argv == [f"--v={v}", v, f"v={v}", t.key], (v, argv)
            assert env == v
    finally:
        lifecycle.clean(c, "verbatim")


def _dry_run(api, job):
    """The API server's verdict on ``job`` (create with dryRun=All: validated and admitted, not stored)."""
    try:
        api["batch"].create_namespaced_job(job["metadata"]["namespace"], job, dry_run="All")
        return None
    except ApiException as exc:
        # 422 Invalid, or 400 when the body cannot even be decoded (a backoffLimit over int32):
        # anything else is not a verdict on the object
        assert exc.status in (400, 422), exc
        return json.loads(exc.body)["message"]


def _edge_jobs(tmp_path):
    """Jobs at the edges of what kubesweep accepts: the examples, values at the limits of each rule."""
    plans = [render.plan(EXAMPLES / "grid.yaml"), render.plan(EXAMPLES / "grid-gpu.yaml"),
             render.plan(EXAMPLES / "katib.yaml"), render.plan(EXAMPLES / "wandb.yaml", image="localhost:5000/x/y:1")]
    edges = _grid(tmp_path, "edges", f"""\
    name: edges
    image: localhost:5000/kubesweep/edge:1
    command: [python3, train.py, "${{args}}", "{"x" * apirules.ARG_MAX_BYTES}"]
    parameters: {{v: {json.dumps(VERBATIM)}, n: {{min: 0, max: 2147483647}}}}
    search: {{algorithm: random, trials: 5}}
    objective: {{metric: acc}}
    resources: {{cpu: 0.5, memory: 1073741824, limits: {{cpu: 2}}}}
    backoffLimit: 2147483647
    ttlSecondsAfterFinished: 2147483647
    activeDeadlineSeconds: 9223372036854775807
    securityContext: {{runAsUser: 2147483647, runAsGroup: 0, fsGroup: 2147483647}}
    tolerations:
      - {{key: a, operator: Exists}}
      - {{key: b, operator: Equal, value: x, effect: NoExecute, tolerationSeconds: -9223372036854775808}}
      - {{operator: Exists}}
      - {{key: c, effect: PreferNoSchedule}}
    labels: {{team: "{"a" * 63}"}}
    annotations: {{note: "{"n" * (apirules.ANNOTATIONS_MAX // 2 - 1000)}"}}
    nodeSelector: {{kubernetes.io/os: linux}}
    """)
    plans.append(render.plan(edges))
    return [manifest.build_job(p.experiment, t) for p in plans for t in p.trials[:3]]


def test_what_kubesweep_accepts_the_api_server_accepts(tmp_path, local_cluster, api):
    jobs = _edge_jobs(tmp_path)
    assert len(jobs) == 15
    for job in jobs:
        assert apirules.job_problems(job) == []
        assert _dry_run(api, job) is None, job["metadata"]["name"]


# One change each to an accepted Job that kubesweep's rules refuse: the API server must refuse it too.
BREAKS = {
    "backoffLimit over int32": lambda j: j["spec"].update(backoffLimit=2**31),
    "runAsUser over int32": lambda j: j["spec"]["template"]["spec"]["securityContext"].update(runAsUser=2**31),
    "negative fsGroup": lambda j: j["spec"]["template"]["spec"]["securityContext"].update(fsGroup=-1),
    "unknown operator": lambda j: j["spec"]["template"]["spec"]["tolerations"].append({"key": "a", "operator": "Foo"}),
    "Exists with a value": lambda j: j["spec"]["template"]["spec"]["tolerations"].append(
        {"key": "a", "operator": "Exists", "value": "x"}),
    "tolerationSeconds without NoExecute": lambda j: j["spec"]["template"]["spec"]["tolerations"].append(
        {"key": "a", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 5}),
    "no key without Exists": lambda j: j["spec"]["template"]["spec"]["tolerations"].append({"operator": "Equal", "value": "x"}),
    "unknown effect": lambda j: j["spec"]["template"]["spec"]["tolerations"].append({"key": "a", "effect": "Never"}),
    "annotations over 256 KiB": lambda j: j["metadata"]["annotations"].update(big="x" * apirules.ANNOTATIONS_MAX),
    "request over limit": lambda j: j["spec"]["template"]["spec"]["containers"][0]["resources"].update(
        requests={"cpu": "2", "memory": "1Gi"}, limits={"cpu": "1", "memory": "1Gi"}),
}


def _example_job():
    p = render.plan(EXAMPLES / "grid.yaml")
    return manifest.build_job(p.experiment, p.trials[0])


@pytest.mark.parametrize("change", sorted(BREAKS))
def test_what_kubesweep_refuses_the_api_server_refuses(local_cluster, api, change):
    job = _example_job()
    assert _dry_run(api, job) is None
    BREAKS[change](job)
    assert apirules.job_problems(job) or validation.schema_errors(job), f"kubesweep's rules let {change!r} through"
    assert _dry_run(api, job) is not None, f"the API server accepted {change!r}"


@pytest.mark.parametrize("field", ["labels", "nodeSelector"])
def test_a_trailing_newline_is_refused_by_both(grid_file, local_cluster, api, field):
    """The class of "team-a\n" (from a YAML block scalar): refused on input, and rightly so."""
    with pytest.raises(SpecError, match="is not a valid label value"):
        render.plan(grid_file(MINIMAL + f"{field}:\n  team: |\n    vision\n"))
    job = _example_job()
    if field == "labels":
        job["metadata"]["labels"]["team"] = "vision\n"
    else:
        job["spec"]["template"]["spec"]["nodeSelector"] = {"team": "vision\n"}
    assert _dry_run(api, job) is not None
