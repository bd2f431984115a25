"""Katib Experiments and W&B sweep configs are read as they are, into the same experiment."""

import re

import pytest

from kubesweep.plan import job as manifest
from kubesweep.plan import planner as render
from kubesweep.errors import SpecError
from kubesweep.spec.formats import KATIB, NATIVE, WANDB, detect, load_experiment

from .conftest import EXAMPLES

IMAGE = "localhost:5000/kubesweep/mnist:latest"


def test_detection():
    assert detect({"apiVersion": "kubeflow.org/v1beta1", "kind": "Experiment"}) == KATIB
    assert detect({"method": "grid", "parameters": {}}) == WANDB
    assert detect({"name": "x", "image": "y"}) == NATIVE


def test_katib_experiment_becomes_the_native_spec():
    src = load_experiment(EXAMPLES / "katib.yaml")
    exp = src.experiment
    assert src.format == KATIB
    assert (exp.name, exp.namespace, exp.image) == ("mnist-katib", "default", IMAGE)
    assert exp.search.algorithm == "random" and exp.search.seed == 7 and exp.search.trials == 9
    assert exp.batch_size == 3 and exp.max_failed_trials == 3
    assert exp.objective.metric == "accuracy" and exp.objective.goal == 0.99
    assert exp.objective.additional_metrics == ["loss"]
    lr = exp.parameters["lr"]
    assert (lr.min, lr.max, lr.scale, lr.type) == (0.001, 0.1, "log", "float")
    assert exp.parameters["epochs"].is_int
    assert exp.parameters["optimizer"].values == ["sgd", "adam", "rmsprop"]
    assert exp.command[2:] == ["--lr=${lr}", "--optimizer=${optimizer}", "--epochs=${epochs}"]
    assert exp.resources.cpu == "1" and exp.resources.memory == "512Mi"


def test_katib_trials_substitute_trial_parameters():
    p = render.plan(EXAMPLES / "katib.yaml")
    t = p.trials[0]
    cmd = manifest.build_job(p.experiment, t)["spec"]["template"]["spec"]["containers"][0]["command"]
    assert cmd[2] == f"--lr={t.params['lr']!r}"
    assert cmd[4] == f"--epochs={t.params['epochs']}"


def test_katib_grid_and_name_substitution(grid_file):
    text = (EXAMPLES / "katib.yaml").read_text()
    text = text.replace("algorithmName: random", "algorithmName: grid").replace(
        """    algorithmSettings:
      - name: random_state
        value: "7"
""", "").replace('{min: "0.001", max: "0.1", distribution: logUniform}', '{min: "0.01", max: "0.03", step: "0.01"}')
    text = text.replace('"--epochs=${trialParameters.epochs}"', '"--epochs=${trialParameters.epochs}"\n                  - "--name=${trialSpec.Name}"')
    text = text.replace("maxTrialCount: 9", "maxTrialCount: 100")
    p = render.plan(grid_file(text))
    assert len(p.trials) == 3 * 3 * 7
    assert sorted({t.params["lr"] for t in p.trials}) == [0.01, 0.02, 0.03]
    job = manifest.build_job(p.experiment, p.trials[0])
    assert job["spec"]["template"]["spec"]["containers"][0]["command"][-1] == f"--name={p.trials[0].name}"


def test_katib_errors_point_into_the_katib_file(grid_file):
    text = (EXAMPLES / "katib.yaml").read_text().replace('cpu: "1"', 'cpu: "lots"')
    path = grid_file(text)
    with pytest.raises(SpecError) as err:
        render.plan(path)
    line = next(i for i, l in enumerate(text.splitlines(), 1) if "lots" in l)
    assert f"{path}:{line}:" in str(err.value) and "resources.cpu" in str(err.value)


def test_wandb_config_becomes_the_native_spec():
    exp = load_experiment(EXAMPLES / "wandb.yaml", image=IMAGE).experiment
    assert exp.name == "mnist-wandb" and exp.image == IMAGE
    assert exp.search.algorithm == "random" and exp.search.trials == 8
    assert exp.objective.direction == "maximize" and exp.objective.metric == "accuracy"
    assert exp.parameters["lr"].scale == "log"
    assert exp.parameters["dropout"].step == 0.1
    assert exp.parameters["epochs"].values == [5]
    assert exp.command == ["python3", "/app/train.py", "${args}"]


def test_wandb_default_command_and_goal(grid_file):
    path = grid_file("""\
    program: train.py
    method: grid
    metric: {name: val_loss}
    parameters:
      layers: {min: 1, max: 3}
      act: {values: [relu, tanh]}
    project: vision
    """, name="my-sweep.yaml")
    p = render.plan(path, image=IMAGE)
    exp = p.experiment
    assert exp.name == "my-sweep"  # from the file name when the config has none
    assert exp.objective.direction == "minimize"  # W&B's default goal
    assert len(p.trials) == 6
    c = manifest.build_job(exp, p.trials[0])["spec"]["template"]["spec"]["containers"][0]
    assert c["command"] == ["/usr/bin/env", "python", "train.py", "--layers=1", "--act=relu"]
    assert {"name": "WANDB_PROJECT", "value": "vision"} in c["env"]


def test_native_format_refuses_foreign_keys(grid_file):
    text = "name: x\nimage: r/t:1\ncommand: [t, '${a}']\nparameters: {a: [1]}\nobjective: {metric: m}\nrun_cap: 3\n"
    with pytest.raises(SpecError) as err:
        render.plan(grid_file(text))
    assert ":6:1: unknown key 'run_cap'" in str(err.value)


# ------------------------------------------------------------------ fidelity to what users wrote


def _katib(tmp_path, edit):
    text = edit((EXAMPLES / "katib.yaml").read_text())
    path = tmp_path / "katib.yaml"
    path.write_text(text)
    return path


def _container(p, trial=0):
    return manifest.build_job(p.experiment, p.trials[trial])["spec"]["template"]["spec"]["containers"][0]


def test_katib_values_reach_the_trial_as_katib_substitutes_them(tmp_path):
    path = _katib(tmp_path, lambda t: t.replace(
        "parameterType: categorical\n      feasibleSpace: {list: [sgd, adam, rmsprop]}",
        'parameterType: categorical\n      feasibleSpace: {list: [true, 16, "x"]}').replace(
        "parameterType: int\n      feasibleSpace: {min: \"2\", max: \"8\"}",
        'parameterType: discrete\n      feasibleSpace: {list: ["16", "32", "1e-3", "016"]}'))
    p = render.plan(path)
    seen = {(t.params["optimizer"], t.params["epochs"]) for t in p.trials}
    assert {o for o, _ in seen} <= {"true", "16", "x"} and {e for _, e in seen} <= {16, 32, "1e-3", "016"}
    argv = {a for t in range(len(p.trials)) for a in _container(p, t)["command"]}
    assert not any(a.endswith(("16.0", "True", "None")) for a in argv), argv


def test_katib_shell_references_stay_text(tmp_path):
    path = _katib(tmp_path, lambda t: t.replace('- "--epochs=${trialParameters.epochs}"',
                                                '- "--epochs=${trialParameters.epochs}"\n                  - "--home=${HOME}"\n'
                                                '                  - "--out=$(OUTPUT_DIR)/${trialSpec.Name}"\n'
                                                '                  - "--x=${experiment}$$"'))
    p = render.plan(path)
    t = p.trials[0]
    assert _container(p)["command"][-3:] == ["--home=${HOME}", f"--out=$(OUTPUT_DIR)/{t.name}", "--x=${experiment}$$"]


def test_katib_pod_metadata_and_distinct_requests_and_limits(tmp_path):
    path = _katib(tmp_path, lambda t: t.replace(
        "      kind: Job\n      spec:\n        template:\n",
        "      kind: Job\n      spec:\n        template:\n          metadata:\n            labels: {team: vision}\n"
        "            annotations: {owner: ana}\n").replace(
        'limits: {cpu: "1", memory: 512Mi}', 'requests: {cpu: "1", memory: 536870912, nvidia.com/gpu: "1"}\n'
        '                  limits: {cpu: "2", nvidia.com/gpu: "1"}'))
    p = render.plan(path)
    job = manifest.build_job(p.experiment, p.trials[0])
    pod_meta = job["spec"]["template"]["metadata"]
    assert pod_meta["labels"]["team"] == "vision" and pod_meta["annotations"]["owner"] == "ana"
    assert _container(p)["resources"] == {"requests": {"cpu": "1", "memory": "536870912"},
                                          "limits": {"cpu": "2", "nvidia.com/gpu": "1"}}


def test_a_wandb_config_with_an_image_key_is_still_read_as_wandb(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text((EXAMPLES / "wandb.yaml").read_text() + "image: localhost:5000/x/y:1\n")
    with pytest.raises(SpecError) as err:
        load_experiment(path, image=IMAGE)
    assert "image is not supported by kubesweep: give the image with --image" in str(err.value)
    assert "objective" not in str(err.value)


def test_substituted_values_reach_the_container_verbatim(grid_file):
    """Kubernetes expands $(VAR) and $$ in command and env values; substituted values are escaped
    (checked against a model of k8s.io/kubernetes/third_party/forked/golang/expansion)."""
    values = ["$(OUTPUT_DIR)", "a$$b", "${HOME}", "$", "$$$(", "x$(KUBESWEEP_TRIAL)y"]
    p = render.plan(grid_file(f"""\
    name: verbatim
    image: r/t:1
    command: [python3, -c, "import sys", "${{args}}", "v=${{v}}", "${{args_json}}"]
    env: {{V: "${{v}}", LITERAL: "$(OUTPUT_DIR)"}}
    objective: {{metric: acc}}
    parameters:
      v: {values!r}
    """))
    for t in p.trials:
        c = _container(p, p.trials.index(t))
        env = {e["name"]: kube_expand(e["value"], {}) for e in c["env"]}
        argv = [kube_expand(a, env) for a in c["command"]]
        assert argv[3:] == [f"--v={t.params['v']}", f"v={t.params['v']}", t.key]
        assert env["V"] == t.params["v"]
        assert env["LITERAL"] == "$(OUTPUT_DIR)"  # not a placeholder: the user's own text, as Kubernetes reads it
        assert kube_expand(dict((e["name"], e["value"]) for e in c["env"])["LITERAL"], env) == env["OUTPUT_DIR"]


def kube_expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' expansion of command, args and env values: ``$$`` is ``$``, ``$(NAME)`` is the
    variable when defined (else left as written), any other ``$`` stays."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "$" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = text.find(")", i + 2)
                if end != -1:
                    name = text[i + 2 : end]
                    out.append(env[name] if name in env else text[i : end + 1])
                    i = end + 1
                    continue
        out.append(text[i])
        i += 1
    return "".join(out)


def test_wandb_text_reaches_the_container_as_written(tmp_path):
    """The W&B agent runs the program itself, so nothing expands $ in a W&B config: program,
    project and command words keep every $ through kubesweep's and Kubernetes' expansion."""
    path = tmp_path / "sweep.yaml"
    path.write_text((EXAMPLES / "wandb.yaml").read_text().replace("program: ", "program: $(HOME)/") +
                    "project: $(OUTPUT_DIR)\n")
    p = render.plan(path, image=IMAGE)
    c = _container(p)
    env = {e["name"]: kube_expand(e["value"], {}) for e in c["env"]}
    assert env["WANDB_PROJECT"] == "$(OUTPUT_DIR)"
    assert any(kube_expand(a, env).startswith("$(HOME)/") for a in c["command"]), c["command"]


def test_katib_args_without_command_is_refused_not_run_as_the_command(tmp_path):
    """Only args: the image's ENTRYPOINT would run them, and kubesweep writes the argv as command."""
    path = _katib(tmp_path, lambda t: t.replace("                command:\n", "                args:\n"))
    with pytest.raises(SpecError) as err:
        render.plan(path)
    assert "a container with args but no command runs the image's ENTRYPOINT" in str(err.value)


def test_tpe_takes_any_seed(tmp_path):
    path = _katib(tmp_path, lambda t: t.replace("algorithmName: random", "algorithmName: tpe").replace(
        'value: "7"', 'value: "4294967296"'))
    p = render.plan(path)
    assert p.experiment.search.seed == 2**32 and len(p.trials) == 3


def test_katib_algorithm_name_of_the_wrong_type_is_a_message(tmp_path):
    path = _katib(tmp_path, lambda t: t.replace("algorithmName: random", "algorithmName: [grid]"))
    with pytest.raises(SpecError, match="spec.algorithm.algorithmName must be a string"):
        render.plan(path)


# ------------------------------------------------------- pods real trainers need

KATIB_POD = """\
            affinity:
              nodeAffinity:
                requiredDuringSchedulingIgnoredDuringExecution:
                  nodeSelectorTerms: [{matchExpressions: [{key: kubernetes.io/arch, operator: In, values: [amd64]}]}]
            priorityClassName: research-low
            runtimeClassName: nvidia
            imagePullSecrets: [{name: regcred}]
            securityContext: {runAsUser: 0, runAsGroup: 0, runAsNonRoot: false}
            volumes:
              - name: dshm
                emptyDir: {medium: Memory, sizeLimit: 2Gi}
"""
KATIB_CONTAINER = """\
                env:
                  - {name: MODE, value: fast}
                  - name: WANDB_API_KEY
                    valueFrom: {secretKeyRef: {name: wandb, key: api-key}}
                  - name: SETTING
                    valueFrom: {configMapKeyRef: {name: settings, key: mode}}
                  - name: POD
                    valueFrom: {fieldRef: {fieldPath: metadata.name}}
                envFrom:
                  - {secretRef: {name: s3-creds}, prefix: S3_}
                volumeMounts:
                  - {name: dshm, mountPath: /dev/shm}
"""


def _katib_pod(tmp_path, pod=KATIB_POD, container=KATIB_CONTAINER, limits='limits: {cpu: "1", memory: 512Mi}'):
    return _katib(tmp_path, lambda t: t.replace("            restartPolicy: Never\n", "            restartPolicy: Never\n" + pod)
                  .replace("                resources:\n", container + "                resources:\n")
                  .replace('limits: {cpu: "1", memory: 512Mi}', limits))


def test_katib_pod_settings_map_to_the_native_ones(tmp_path):
    p = render.plan(_katib_pod(tmp_path, limits='limits: {cpu: "1", memory: 4Gi, amd.com/gpu: 2}\n'
                                                '                  requests: {amd.com/gpu: 2}'))
    exp = p.experiment
    assert exp.affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
    assert (exp.priority_class_name, exp.runtime_class_name, exp.image_pull_secrets) == ("research-low", "nvidia", ("regcred",))
    assert exp.security_context.run_as_user == 0 and exp.security_context.run_as_non_root is False
    assert exp.shm_size == "2Gi" and exp.resources.extended == {"amd.com/gpu": 2}
    pod = manifest.build_job(exp, p.trials[0])["spec"]["template"]["spec"]
    c = pod["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    assert env["MODE"] == {"name": "MODE", "value": "fast"}
    assert env["WANDB_API_KEY"]["valueFrom"] == {"secretKeyRef": {"name": "wandb", "key": "api-key"}}
    assert env["SETTING"]["valueFrom"] == {"configMapKeyRef": {"name": "settings", "key": "mode"}}
    assert env["POD"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert c["envFrom"] == [{"secretRef": {"name": "s3-creds"}, "prefix": "S3_"}]
    assert c["resources"]["limits"]["amd.com/gpu"] == "2"
    assert {"name": "dshm", "mountPath": "/dev/shm"} in c["volumeMounts"]
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}} in pod["volumes"]
    assert pod["securityContext"]["runAsUser"] == 0 and pod["securityContext"]["runAsNonRoot"] is False


@pytest.mark.parametrize("pod, container, limits, message", [
    ("            volumes: [{name: data, hostPath: {path: /data}}]\n", "", None,
     "spec.template.spec.volumes[0] is not supported by kubesweep: kubesweep mounts the trial's output volume itself"),
    ("            volumes: [{name: dshm, emptyDir: {medium: Memory}}]\n",
     "                volumeMounts: [{name: dshm, mountPath: /dev/shm}]\n", None,
     "volumes[0].emptyDir needs a sizeLimit: kubesweep gives /dev/shm the size asked (shmSize)"),
    ("", "", 'limits: {cpu: "1", memory: 512Mi, amd.com/gpu: 2}\n                  requests: {amd.com/gpu: 1}',
     "amd.com/gpu is an extended resource: its request and limit must be equal (limit 2)"),
    ("            securityContext: {runAsUser: 0}\n", "", None,
     "securityContext.runAsUser 0 is root, and trials run as non-root unless the file says otherwise"),
    ("            securityContext: {sysctls: []}\n", "", None,
     "securityContext.sysctls is not supported by kubesweep: not carried into trial pods"),
])
def test_katib_pod_settings_kubesweep_cannot_carry_are_refused_with_the_reason(tmp_path, pod, container, limits, message):
    path = _katib_pod(tmp_path, pod, container, limits or 'limits: {cpu: "1", memory: 512Mi}')
    with pytest.raises(SpecError, match=re.escape(message)):
        render.plan(path)


def test_wandb_api_key_comes_from_the_secret_named_on_the_command_line(tmp_path):
    def api_key(**kw):
        p = render.plan(EXAMPLES / "wandb.yaml", image=IMAGE, **kw)
        env = {e["name"]: e for e in _container(p)["env"]}
        return env.get("WANDB_API_KEY")

    assert api_key() is None
    assert api_key(wandb_secret="wandb") == {"name": "WANDB_API_KEY",
                                             "valueFrom": {"secretKeyRef": {"name": "wandb", "key": "api-key"}}}
    assert api_key(wandb_secret="team-keys:wandb")["valueFrom"]["secretKeyRef"] == {"name": "team-keys", "key": "wandb"}
    with pytest.raises(SpecError, match=r"<--wandb-secret>:1:1: the Secret of --wandb-secret NAME\[:KEY\] must name a Secret"):
        api_key(wandb_secret="Team_Keys")
    with pytest.raises(SpecError, match=r"--wandb-secret is for W&B sweep configs; in grid.yaml write env: "):
        render.plan(EXAMPLES / "grid.yaml", wandb_secret="wandb")


def test_the_cli_passes_wandb_secret_to_the_reader(tmp_path):
    from click.testing import CliRunner

    from kubesweep.cli.app import main

    r = CliRunner().invoke(main, ["--project-dir", str(tmp_path), "render", str(EXAMPLES / "wandb.yaml"),
                                  "--image", IMAGE, "--wandb-secret", "wandb:key"])
    assert r.exit_code == 0, r.output
    text = next((tmp_path / "jobs" / "mnist-wandb").glob("batch-000/*.yaml")).read_text()
    assert "secretKeyRef:\n              name: wandb\n              key: key" in text
