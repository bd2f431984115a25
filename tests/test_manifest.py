"""The rendered Jobs: equal to the reference object, schema-valid, labelled, safe, deterministic."""

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from kubesweep.plan import job as manifest
from kubesweep.plan import planner as render
from kubesweep.k8s.versions import KUBERNETES_VERSION

from .conftest import EXAMPLES, MINIMAL

TRICKY = """\
name: tricky
image: registry.example.com:5000/team/trainer@sha256:%s
command: [python3, "-c", "print('hi: ${word}')", "${word}", "--n=${n}", "$${literal}", "${trial}", "${output}", "${args_json}"]
parameters:
  word: ["yes", "null", "a: b", "quote\\"s", "new\\nline", "ünïcode", "#hash", "- dash", "123", "true"]
  n: [0.1, 1e-07, -3, 7]
env:
  WORD: "w=${word}"
  PLAIN: 42
  FLAG: true
objective: {metric: m, regex: 'm=(?P<value>\\S+)'}
resources: {cpu: 500m, memory: 1G, nvidia.com/gpu: 2}
output: {pvc: shared-data, mountPath: /data}
nodeSelector: {nvidia.com/gpu.present: "true"}
tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoExecute, tolerationSeconds: 30}]
labels: {team: vision}
annotations: {owner: "someone@example.com", note: "word is ${word}"}
activeDeadlineSeconds: 3600
ttlSecondsAfterFinished: 60
serviceAccount: trainer
securityContext: {runAsUser: 2000, runAsGroup: 2000, fsGroup: null}
""" % ("a" * 64)


#: Every pod setting a real trainer may need: references to Secrets and ConfigMaps,
#: /dev/shm, extended resources, scheduling, a root image, pull credentials.
PODS = """\
name: pods
image: localhost:5000/team/trainer:1
command: [python3, train.py, "${lr}"]
parameters: {lr: [0.1, 0.2]}
objective: {metric: acc}
resources: {cpu: 500m, memory: 2Gi, amd.com/gpu: 1, vendor.example/fpga: "2", nvidia.com/mig-1g.10gb: 1,
            limits: {memory: 4Gi}}
env:
  PLAIN: "lr=${lr}"
  WANDB_API_KEY: {secretKeyRef: {name: wandb, key: api-key}}
  SETTING: {configMapKeyRef: {name: settings, key: mode.conf, optional: true}}
  POD: {fieldRef: {fieldPath: metadata.name}}
  TRIAL: {fieldRef: {fieldPath: "metadata.labels['kubesweep.io/trial']"}}
  MEMORY_MB: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}
envFrom:
  - {secretRef: {name: s3-creds}, prefix: S3_}
  - configMapRef: {name: defaults, optional: true}
shmSize: 8Gi
securityContext: {runAsUser: 0, runAsGroup: 0, runAsNonRoot: false}
affinity:
  nodeAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      nodeSelectorTerms: [{matchExpressions: [{key: kubernetes.io/arch, operator: In, values: [amd64]}]}]
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 50
        podAffinityTerm: {topologyKey: kubernetes.io/hostname, labelSelector: {matchLabels: {team: vision}}}
priorityClassName: research-low
runtimeClassName: nvidia
imagePullSecrets: [regcred]
tolerations: [{key: amd.com/gpu, operator: Exists, effect: NoSchedule}]
"""


def _plan(path: Path, **kw) -> render.Plan:
    return render.plan(path, **kw)


@pytest.fixture(params=["grid.yaml", "grid-gpu.yaml", "katib.yaml", "wandb.yaml", "tricky", "pods"])
def any_plan(request, grid_file):
    if request.param == "tricky":
        return _plan(grid_file(TRICKY))
    if request.param == "pods":
        return _plan(grid_file(PODS))
    image = "localhost:5000/kubesweep/mnist:latest" if request.param == "wandb.yaml" else None
    return _plan(EXAMPLES / request.param, image=image)


def test_fast_render_loads_to_the_reference_object(any_plan):
    # also with the image render resolves (a built image's content tag): the runner builds an
    # unedited Job with it instead of parsing the file (runner.Sweep._manifest)
    for image in (None, "registry.example:5000/team/trainer:0123abcd"):
        template = manifest.JobTemplate(any_plan.experiment, image=image)
        for trial in any_plan.trials:
            assert yaml.safe_load(template.render(trial)) == manifest.build_job(any_plan.experiment, trial, image=image)


def test_every_rendered_manifest_validates_against_the_pinned_schema(any_plan, tmp_path):
    target = render.write(any_plan, tmp_path / "jobs")
    files = sorted(target.rglob("*.yaml"))
    assert len(files) == len(any_plan.trials)
    for f in files:
        doc = yaml.safe_load(f.read_text())
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_schema_rejects_what_the_api_server_would(grid_file):
    # the checks above are only meaningful if the schema does reject bad Jobs
    p = _plan(grid_file(TRICKY))
    job = manifest.build_job(p.experiment, p.trials[0])
    job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = {"no": 1}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)


def test_job_shape_defaults_labels_and_security(grid_file):
    p = _plan(grid_file())
    t = p.trials[1]
    job = manifest.build_job(p.experiment, t)
    meta, spec = job["metadata"], job["spec"]
    pod = spec["template"]["spec"]
    c = pod["containers"][0]
    assert meta["name"] == t.name and meta["namespace"] == "default"
    for labels in (meta["labels"], spec["template"]["metadata"]["labels"]):
        assert labels["kubesweep.io/experiment"] == "demo"
        assert labels["kubesweep.io/batch"] == "batch-000"
        assert labels["kubesweep.io/trial"] == t.name
    assert meta["annotations"]["kubesweep.io/params"] == '{"epochs":1,"optimizer":"sgd"}'
    # the seed's defaults where the grid is silent
    assert spec["backoffLimit"] == 0
    assert c["resources"]["limits"] == {"cpu": "1", "memory": "5Gi"}
    assert pod["restartPolicy"] == "Never"
    # parameters are separate argv items, never a shell string
    assert c["command"] == ["python3", "train.py", "1", "sgd"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 1000
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    assert pod["automountServiceAccountToken"] is False


def test_placeholders_args_escapes_and_env(grid_file):
    p = _plan(grid_file(TRICKY))
    t = next(t for t in p.trials if t.params == {"word": "a: b", "n": 1e-07})
    job = manifest.build_job(p.experiment, t)
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert c["command"][:7] == ["python3", "-c", "print('hi: a: b')", "a: b", "--n=1e-07", "${literal}", t.name]
    assert c["command"][7] == f"/data/tricky/{t.name}"
    assert c["command"][8] == '{"n":1e-07,"word":"a: b"}'
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["WORD"] == "w=a: b" and env["PLAIN"] == "42" and env["FLAG"] == "true"
    assert env["OUTPUT_DIR"] == f"/data/tricky/{t.name}"
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "2"
    vol = job["spec"]["template"]["spec"]["volumes"][0]
    assert vol == {"name": "output", "persistentVolumeClaim": {"claimName": "shared-data"}}
    assert "fsGroup" not in job["spec"]["template"]["spec"]["securityContext"]


def test_seed_002_style_args_and_hostpath(grid_file):
    p = _plan(EXAMPLES / "grid-gpu.yaml")
    t = p.trials[0]
    job = manifest.build_job(p.experiment, t)
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert c["command"][2:] == [f"--{k}={v}" for k, v in t.params.items()]
    assert job["spec"]["template"]["spec"]["volumes"][0]["hostPath"]["path"] == "/share/kubesweep"
    assert job["spec"]["template"]["spec"]["nodeSelector"] == {"nvidia.com/gpu.present": "true"}


def test_rerendering_gives_byte_identical_files(tmp_path):
    a = render.write(render.plan(EXAMPLES / "grid.yaml"), tmp_path / "a")
    b = render.write(render.plan(EXAMPLES / "grid.yaml"), tmp_path / "b")
    files_a = {p.relative_to(a): p.read_bytes() for p in a.rglob("*") if p.is_file()}
    files_b = {p.relative_to(b): p.read_bytes() for p in b.rglob("*") if p.is_file()}
    plan_a = files_a.pop(Path("plan.json"))
    plan_b = files_b.pop(Path("plan.json"))
    assert files_a == files_b and len(files_a) == 12
    assert plan_a == plan_b


def test_characters_beyond_the_basic_plane_render_as_yaml_reads_them(grid_file):
    """The fast renderer writes values as JSON strings; JSON spells U+1F600 as a surrogate pair,
    which YAML refuses, so such characters are written \\UXXXXXXXX (found by the fuzzer)."""
    p = render.plan(grid_file(MINIMAL.replace("[adam, sgd]", '["😀", "\\U000c7d3d x", "\\\\ud83d"]')))
    template = manifest.JobTemplate(p.experiment)
    for t in p.trials:
        assert manifest.load(template.render(t)) == manifest.build_job(p.experiment, t)


def test_image_pull_secrets_are_names_rendered_as_the_pods_image_pull_secrets(grid_file):
    p = _plan(grid_file(MINIMAL + "imagePullSecrets: [regcred, {name: mirror-login}]\n"))
    assert p.experiment.image_pull_secrets == ("regcred", "mirror-login")
    pod = manifest.build_job(p.experiment, p.trials[0])["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}, {"name": "mirror-login"}]
    assert "imagePullSecrets" not in manifest.build_job(_plan(grid_file()).experiment, p.trials[0])["spec"]["template"]["spec"]


def test_pod_settings_pass_through_as_references_and_as_written(grid_file):
    p = _plan(grid_file(PODS))
    t = p.trials[0]
    pod = manifest.build_job(p.experiment, t)["spec"]["template"]["spec"]
    c = pod["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    assert env["PLAIN"] == {"name": "PLAIN", "value": "lr=0.1"}
    # references only: the kubelet reads the Secret when the trial starts, kubesweep never does
    assert env["WANDB_API_KEY"] == {"name": "WANDB_API_KEY", "valueFrom": {"secretKeyRef": {"name": "wandb", "key": "api-key"}}}
    assert env["SETTING"]["valueFrom"] == {"configMapKeyRef": {"name": "settings", "key": "mode.conf", "optional": True}}
    assert env["TRIAL"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.labels['kubesweep.io/trial']"}}
    assert env["MEMORY_MB"]["valueFrom"] == {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}
    assert c["envFrom"] == [{"secretRef": {"name": "s3-creds"}, "prefix": "S3_"},
                            {"configMapRef": {"name": "defaults", "optional": True}}]
    assert c["resources"] == {"requests": {"cpu": "500m", "memory": "2Gi"},
                              "limits": {"memory": "4Gi", "amd.com/gpu": "1", "vendor.example/fpga": "2",
                                         "nvidia.com/mig-1g.10gb": "1"}}
    assert {"name": "dshm", "mountPath": "/dev/shm"} in c["volumeMounts"]
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}} in pod["volumes"]
    assert pod["securityContext"]["runAsUser"] == 0 and pod["securityContext"]["runAsNonRoot"] is False
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    assert pod["affinity"] == p.experiment.affinity and pod["affinity"] is not p.experiment.affinity
    assert (pod["priorityClassName"], pod["runtimeClassName"]) == ("research-low", "nvidia")
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["tolerations"][0] == {"key": "amd.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    # the defaults stay: non-root, no /dev/shm volume, no pod settings that were not asked for
    default = _plan(grid_file())
    plain = manifest.build_job(default.experiment, default.trials[0])["spec"]["template"]["spec"]
    assert plain["securityContext"]["runAsNonRoot"] is True and len(plain["volumes"]) == 1
    assert not {"affinity", "priorityClassName", "runtimeClassName", "imagePullSecrets"} & set(plain)
    assert "envFrom" not in plain["containers"][0]


def test_a_sweep_sends_references_and_never_asks_for_a_secret(grid_file, tmp_path):
    """Manifests carry references (secretKeyRef, envFrom.secretRef, imagePullSecrets); a sweep
    against a stand-in API server creates its Jobs without one request for a Secret, so no Secret's
    value can reach jobs/, results/ or the sweep's output (on the real cluster:
    tests/test_pod_settings_cluster.py)."""
    from kubesweep.run import runner

    from .fakeapi import serve
    from .test_provenance import Api

    p = _plan(grid_file(MINIMAL + "env: {API_KEY: {secretKeyRef: {name: wandb, key: api-key}}}\n"
                        "envFrom: [{secretRef: {name: s3-creds}}]\nimagePullSecrets: [regcred]\n"))
    api = Api()
    with serve(api, tmp_path / "config") as server:
        runner.Sweep(p, tmp_path / "jobs", tmp_path / "results", kubeconfig=tmp_path / "config",
                     stop_after=lambda: True).run()
    created = [path for method, path in api.writes if method == "POST" and "/jobs" in path]
    assert created, api.writes
    assert [r for r in server.requests if "secret" in r[1].lower()] == []


def test_pull_secrets_are_not_part_of_the_trial_template_but_pod_settings_are(grid_file):
    """Pull credentials decide whether the image can be fetched, not what a trial computes: adding
    or rotating them keeps a resumed sweep's results; /dev/shm, env references or affinity do not."""
    plain = _plan(grid_file()).experiment
    assert manifest.trial_template(_plan(grid_file(MINIMAL + "imagePullSecrets: [regcred]\n")).experiment) == \
        manifest.trial_template(plain)
    for extra in ("shmSize: 1Gi\n", "env: {K: {secretKeyRef: {name: s, key: k}}}\n", "priorityClassName: low\n"):
        assert manifest.trial_template(_plan(grid_file(MINIMAL + extra)).experiment) != manifest.trial_template(plain), extra
