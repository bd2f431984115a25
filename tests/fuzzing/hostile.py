"""Known-hostile inputs, written out by hand, in every format that can express them.

Each is (id, file name, text, flags). The fuzzer's strategies reach most of these classes by
chance; listing them makes each one a named regression test (tests/test_fuzz_inputs.py,
``test_hostile_input``) that fails until the defect it shows is fixed, and keeps failing if it
comes back. What each must do is what every input must: be rendered under every invariant or be
refused with a SpecError (tests/fuzzing/invariants.py).
"""

from __future__ import annotations

import textwrap

from .native import IMAGE


def native_text(param: str, *, search: str = "{algorithm: grid}", extra: str = "", command: str = '[python3, train.py, "${p}"]') -> str:
    """A minimal native sweep whose parameter ``p`` is ``param`` (YAML text), plus ``extra`` keys."""
    return (f"name: reg\nimage: {IMAGE}\ncommand: {command}\nparameters:\n  p: {param}\nsearch: {search}\n"
            f"objective: {{metric: accuracy}}\n{extra}")


def katib_text(kind: str, space: str, *, algorithm: str = "grid", trials: int | str = 10, job: str = "", pod: str = "",
               arg: str = '"--p=${trialParameters.p}"', spec: str = "", trial_meta: str = "{}") -> str:
    """A minimal Katib Experiment with one parameter ``p`` of ``kind`` and ``space`` (YAML text);
    ``job`` and ``pod`` are extra lines for the Job spec and the pod spec (see _job, _pod)."""
    return textwrap.dedent(f"""\
        apiVersion: kubeflow.org/v1beta1
        kind: Experiment
        metadata: {{name: reg}}
        spec:
          objective: {{type: maximize, objectiveMetricName: accuracy}}
          algorithm: {{algorithmName: {algorithm}}}
          maxTrialCount: {trials}
          parameters:
            - name: p
              parameterType: {kind}
              feasibleSpace: {space}
          trialTemplate:
            primaryContainerName: main
            trialParameters: [{{name: p, reference: p}}]
            trialSpec:
              apiVersion: batch/v1
              kind: Job
              metadata: {trial_meta}
              spec:{job}
                template:
                  spec:{pod}
                    restartPolicy: Never
                    containers:
                      - name: main
                        image: {IMAGE}
                        command: [python3, train.py, {arg}]
        """) + spec


def wandb_text(param: str, *, method: str = "grid", extra: str = "") -> str:
    """A minimal W&B sweep config with one parameter ``p`` (YAML text); read it with --image."""
    return (f"program: train.py\nmethod: {method}\nmetric: {{name: accuracy}}\nparameters:\n  p: {param}\n"
            f"command: [python3, \"${{program}}\", \"${{args}}\"]\n{extra}")


#: Nine levels of nine aliases each: 387,420,489 values from a few hundred bytes.
_LOL = "[" + ",".join(["lol"] * 9) + "]"
BILLION_LAUGHS = "[&a " + _LOL + ", " + ", ".join(
    f"&{b} [" + ",".join([f"*{a}"] * 9) + "]" for a, b in zip("abcdefgh", "bcdefghi")) + "]"
DEEP = "[" * 10_000 + "]" * 10_000
#: More digits than Python converts by default (sys.get_int_max_str_digits(): 4300).
HUGE_INT = "1" + "0" * 5000


def _pod(key: str, value: str) -> str:
    """An extra line for katib_text's pod spec."""
    return f"\n                    {key}: {value}"


def _job(key: str, value: str) -> str:
    """An extra line for katib_text's Job spec."""
    return f"\n                {key}: {value}"


#: (id, file name, text, flags).
HOSTILE: list[tuple[str, str, str, dict]] = [
    # YAML-level attacks, where a parameter's values go
    ("grid-billion-laughs", "g.yaml", native_text(BILLION_LAUGHS), {}),
    ("katib-billion-laughs", "k.yaml", katib_text("categorical", "{list: " + BILLION_LAUGHS + "}"), {}),
    ("wandb-billion-laughs", "w.yaml", wandb_text("{values: " + BILLION_LAUGHS + "}"), {"image": IMAGE}),
    ("grid-10000-deep-list", "g.yaml", native_text(DEEP), {}),
    ("katib-10000-deep-list", "k.yaml", katib_text("categorical", "{list: " + DEEP + "}"), {}),
    ("wandb-10000-deep-list", "w.yaml", wandb_text("{values: " + DEEP + "}"), {"image": IMAGE}),
    ("grid-recursive-alias", "g.yaml", native_text("&r [*r]"), {}),
    ("katib-recursive-alias", "k.yaml", katib_text("categorical", "&r {list: [*r]}"), {}),
    ("wandb-recursive-alias", "w.yaml", wandb_text("&r {values: [*r]}"), {"image": IMAGE}),
    ("grid-5000-digit-int", "g.yaml", native_text("[1, 2]", extra=f"batchSize: {HUGE_INT}\n"), {}),
    ("katib-5000-digit-int", "k.yaml", katib_text("int", "{min: 1, max: 2}", trials=HUGE_INT), {}),
    ("wandb-5000-digit-int", "w.yaml", wandb_text("{values: [1, 2]}", extra=f"run_cap: {HUGE_INT}\n"), {"image": IMAGE}),
    # ranges whose points must never be listed
    ("grid-int-range-2**31-random", "g.yaml", native_text("{min: 0, max: 2147483647}", search="{algorithm: random, trials: 10}"), {}),
    ("katib-int-range-2**31-random", "k.yaml", katib_text("int", '{min: "0", max: "2147483647"}', algorithm="random"), {}),
    ("wandb-int-range-2**31-random", "w.yaml", wandb_text("{distribution: int_uniform, min: 0, max: 2147483647}", method="random",
                                                           extra="run_cap: 10\n"), {"image": IMAGE}),
    ("grid-int-range-1e12-random", "g.yaml", native_text("{min: 1, max: 1e12, type: int}", search="{algorithm: random, trials: 10}"), {}),
    ("katib-int-range-1e12-random", "k.yaml", katib_text("int", '{min: "1", max: "1e12"}', algorithm="random"), {}),
    ("wandb-int-range-1e12-random", "w.yaml", wandb_text("{distribution: int_uniform, min: 1, max: 1000000000000}",
                                                          method="random", extra="run_cap: 10\n"), {"image": IMAGE}),
    ("grid-int-range-2**31-tpe", "g.yaml", native_text("{min: 0, max: 2147483647}", search="{algorithm: tpe, trials: 10}"), {}),
    ("grid-step-1e-12", "g.yaml", native_text("{min: 0, max: 1, step: 1e-12}"), {}),
    ("katib-step-1e-12", "k.yaml", katib_text("double", '{min: "0", max: "1", step: "1e-12"}'), {}),
    ("wandb-q-1e-12", "w.yaml", wandb_text("{distribution: q_uniform, min: 0, max: 1, q: 1e-12}"), {"image": IMAGE}),
    ("grid-count-10**9", "g.yaml", native_text("{min: 0.1, max: 1.0, count: 1000000000}"), {}),
    ("grid-count-10**9-random", "g.yaml", native_text("{min: 0.1, max: 1.0, count: 1000000000}",
                                                      search="{algorithm: random, trials: 3}"), {}),
    ("grid-int-step-1-to-1e20", "g.yaml", native_text("{min: 1, max: 100000000000000000000, step: 1}"), {}),
    # numbers no JSON, no int32 / int64 field, no uid can hold
    ("grid-nan-value", "g.yaml", native_text("[.nan, 1]"), {}),
    ("katib-discrete-nan", "k.yaml", katib_text("discrete", '{list: ["nan", "1"]}'), {}),
    ("katib-discrete-inf", "k.yaml", katib_text("discrete", '{list: ["inf", "1"]}'), {}),
    ("wandb-nan-value", "w.yaml", wandb_text("{values: [.nan, 1]}"), {"image": IMAGE}),
    ("grid-1e308-value", "g.yaml", native_text("[1e308, 1.7976931348623157e308]"), {}),
    ("grid-backoff-limit-3e9-int", "g.yaml", native_text("[1]", extra="backoffLimit: 3000000000\n"), {}),
    ("grid-backoff-limit-3e9-float", "g.yaml", native_text("[1]", extra="backoffLimit: 3e9\n"), {}),
    ("katib-backoff-limit-3e9", "k.yaml", katib_text("int", "{min: 1, max: 2}", job=_job("backoffLimit", "3000000000")), {}),
    ("grid-ttl-2**31", "g.yaml", native_text("[1]", extra="ttlSecondsAfterFinished: 2147483648\n"), {}),
    ("grid-run-as-user-2**32", "g.yaml", native_text("[1]", extra="securityContext: {runAsUser: 4294967296}\n"), {}),
    ("grid-fs-group-negative", "g.yaml", native_text("[1]", extra="securityContext: {fsGroup: -1, runAsGroup: -5}\n"), {}),
    ("grid-gpu-2**63", "g.yaml", native_text("[1]", extra="resources: {nvidia.com/gpu: 9223372036854775808}\n"), {}),
    ("grid-seed-2**70", "g.yaml", native_text("[1, 2]", search="{algorithm: random, trials: 2, seed: 1180591620717411303424}"), {}),
    ("grid-trials-2**63", "g.yaml", native_text("[1, 2]", search="{algorithm: random, trials: 9223372036854775808}"), {}),
    ("grid-tpe-seed-2**32", "g.yaml", native_text("[1, 2]", search="{algorithm: tpe, trials: 2, seed: 4294967296}"), {}),
    ("katib-tpe-random-state-2**32", "k.yaml", katib_text("int", "{min: 1, max: 3}", algorithm="tpe", trials=2).replace(
        "algorithm: {algorithmName: tpe}", 'algorithm: {algorithmName: tpe, algorithmSettings: [{name: random_state, value: "4294967296"}]}'), {}),
    # lists and mappings where a name goes
    ("katib-algorithm-name-list", "k.yaml", katib_text("int", "{min: 1, max: 2}").replace("{algorithmName: grid}", "{algorithmName: [grid]}"), {}),
    ("katib-parameter-type-mapping", "k.yaml", katib_text("int", "{min: 1, max: 2}").replace("parameterType: int", "parameterType: {int: 1}"), {}),
    ("katib-trial-parameter-name-list", "k.yaml", katib_text("int", "{min: 1, max: 2}").replace(
        "trialParameters: [{name: p, reference: p}]", "trialParameters: [{name: [p], reference: p}]"), {}),
    ("wandb-distribution-list", "w.yaml", wandb_text("{distribution: [uniform], min: 0.0, max: 1.0}", method="random",
                                                     extra="run_cap: 2\n"), {"image": IMAGE}),
    ("wandb-method-mapping", "w.yaml", wandb_text("{values: [1, 2]}", method="{grid: 1}"), {"image": IMAGE}),
    # tolerations the API server refuses
    ("grid-toleration-seconds-2**63", "g.yaml", native_text("[1]", extra="tolerations: [{key: a, operator: Exists, effect: NoExecute, "
                                                                          "tolerationSeconds: 9223372036854775808}]\n"), {}),
    ("grid-toleration-seconds-without-noexecute", "g.yaml", native_text(
        "[1]", extra="tolerations: [{key: a, operator: Exists, effect: NoSchedule, tolerationSeconds: 60}]\n"), {}),
    ("grid-toleration-exists-with-value", "g.yaml", native_text("[1]", extra="tolerations: [{key: a, operator: Exists, value: v}]\n"), {}),
    ("grid-toleration-empty-key-equal", "g.yaml", native_text("[1]", extra="tolerations: [{key: '', operator: Equal, value: v}]\n"), {}),
    ("grid-toleration-operator-lt", "g.yaml", native_text("[1]", extra="tolerations: [{key: a, operator: Lt, value: '5'}]\n"), {}),
    ("grid-toleration-effect-bogus", "g.yaml", native_text("[1]", extra="tolerations: [{key: a, operator: Exists, effect: Bogus}]\n"), {}),
    ("katib-toleration-seconds-without-noexecute", "k.yaml", katib_text(
        "int", "{min: 1, max: 2}", pod=_pod("tolerations", "[{key: a, operator: Exists, effect: NoSchedule, tolerationSeconds: 60}]")), {}),
    # names and values with a trailing newline (a block scalar `|` keeps one)
    ("grid-namespace-block-scalar", "g.yaml", native_text("[1]", extra="namespace: |\n  default\n"), {}),
    ("grid-image-block-scalar", "g.yaml", native_text("[1]").replace(f"image: {IMAGE}", f"image: |\n  {IMAGE}"), {}),
    ("grid-service-account-newline", "g.yaml", native_text("[1]", extra='serviceAccount: "trainer\\n"\n'), {}),
    ("grid-label-value-newline", "g.yaml", native_text("[1]", extra="labels:\n  team: |\n    vision\n"), {}),
    ("grid-label-key-newline", "g.yaml", native_text("[1]", extra='labels: {"team\\n": vision}\n'), {}),
    ("grid-node-selector-newline", "g.yaml", native_text("[1]", extra='nodeSelector: {disk: "ssd\\n"}\n'), {}),
    ("grid-annotation-key-newline", "g.yaml", native_text("[1]", extra='annotations: {"note\\n": x}\n'), {}),
    ("grid-env-name-newline", "g.yaml", native_text("[1]", extra='env: {"SEED\\n": "1"}\n'), {}),
    ("grid-memory-newline", "g.yaml", native_text("[1]", extra='resources: {memory: "512Mi\\n"}\n'), {}),
    ("katib-namespace-newline", "k.yaml", katib_text("int", "{min: 1, max: 2}").replace("metadata: {name: reg}",
                                                                                       'metadata: {name: reg, namespace: "default\\n"}'), {}),
    ("wandb-image-flag-newline", "w.yaml", wandb_text("{values: [1]}"), {"image": IMAGE + "\n"}),
    ("grid-name-flag-newline", "g.yaml", native_text("[1]"), {"name": "reg\n"}),
    ("grid-namespace-flag-newline", "g.yaml", native_text("[1]"), {"namespace": "default\n"}),
    # values that the kubelet or kubesweep would rewrite on their way to the trainer
    ("grid-values-kubelet-syntax", "g.yaml", native_text('["$(OUTPUT_DIR)", "$(HOME)", "a$$b", "${HOME}", "$(KUBESWEEP_TRIAL)"]'), {}),
    ("grid-values-kubelet-syntax-args", "g.yaml", native_text('["$(OUTPUT_DIR)", "a$$b"]', command='[python3, train.py, "${args}"]'), {}),
    ("grid-literal-command-item-kubelet-syntax", "g.yaml", native_text("[1]", command='[sh, -c, "echo $(OUTPUT_DIR) ${p}"]'), {}),
    ("grid-env-value-kubelet-syntax", "g.yaml", native_text("[1]", extra='env: {NOTE: "$(OUTPUT_DIR)", HOME: "x$$y"}\n'), {}),
    ("grid-value-trailing-newline", "g.yaml", native_text("\n    - |\n      adam\n    - sgd"), {}),
    ("katib-discrete-strings", "k.yaml", katib_text("discrete", '{list: ["16", "32"]}'), {}),
    ("katib-discrete-underscore", "k.yaml", katib_text("discrete", '{list: ["1_000", "2"]}'), {}),
    ("katib-categorical-booleans-null", "k.yaml", katib_text("categorical", "{list: [true, false, null]}"), {}),
    ("katib-args-without-command", "k.yaml", katib_text("int", "{min: 1, max: 2}").replace(
        'command: [python3, train.py, "--p=${trialParameters.p}"]', 'args: ["--p=${trialParameters.p}"]'), {}),
    ("wandb-values-kubelet-syntax", "w.yaml", wandb_text('{values: ["$(OUTPUT_DIR)", "a$$b"]}'), {"image": IMAGE}),
    ("wandb-program-kubelet-syntax", "w.yaml", wandb_text("{values: [1]}").replace("program: train.py", 'program: "$(OUTPUT_DIR)/t.py"'),
     {"image": IMAGE}),
    ("wandb-project-kubelet-syntax", "w.yaml", wandb_text("{values: [1]}", extra='project: "$(OUTPUT_DIR)"\n'), {"image": IMAGE}),
    ("wandb-command-item-kubelet-syntax", "w.yaml", wandb_text("{values: [1]}").replace('"${args}"', '"${args}", "$(OUTPUT_DIR)"'),
     {"image": IMAGE}),
    ("wandb-constant-with-min-max", "w.yaml", wandb_text("{distribution: constant, min: 1, max: 2}"), {"image": IMAGE}),
    # control characters, escapes and markup: refused, and shown escaped
    ("grid-nul-in-command", "g.yaml", native_text("[1]", command='[python3, "train\\0.py", "${p}"]'), {}),
    ("grid-nul-in-value", "g.yaml", native_text('["a\\0b"]'), {}),
    ("katib-nul-in-arg", "k.yaml", katib_text("int", "{min: 1, max: 2}", arg='"--p=${trialParameters.p}\\0"'), {}),
    ("wandb-nul-in-program", "w.yaml", wandb_text("{values: [1]}").replace("program: train.py", 'program: "train\\0.py"'), {"image": IMAGE}),
    ("grid-escape-in-unknown-key", "g.yaml", native_text("[1]", extra='"\\e[2J\\e[31mx": 1\n'), {}),
    ("grid-escape-in-name", "g.yaml", native_text("[1]").replace("name: reg", 'name: "\\e[31mreg"'), {}),
    ("grid-escape-in-placeholder", "g.yaml", native_text("[1]", command='[python3, "${p}", "${\\e[31mx}"]'), {}),
    ("grid-newline-in-placeholder", "g.yaml", native_text("[1]", command='[python3, "${p}", "${a\\nb}"]'), {}),
    ("grid-escape-in-parameter-name", "g.yaml", native_text("[1]").replace("  p: [1]", '  p: [1]\n  "\\e[31mq\\nx": [2]'), {}),
    ("katib-escape-in-unknown-field", "k.yaml", katib_text("int", "{min: 1, max: 2}", spec='  "\\e[2Jx\\ny": 1\n'), {}),
    ("katib-escape-in-parameter-name", "k.yaml", katib_text("int", "{min: 1, max: 2}").replace("- name: p", '- name: "p\\e[31m\\n"'), {}),
    ("wandb-escape-in-unknown-key", "w.yaml", wandb_text("{values: [1]}", extra='"\\e[31mx\\ny": 1\n'), {"image": IMAGE}),
    ("wandb-escape-in-macro", "w.yaml", wandb_text("{values: [1]}").replace('"${args}"', '"${args}", "${\\e[31m\\nx}"'), {"image": IMAGE}),
    ("grid-markup-in-values", "g.yaml", native_text('["[/]", "[bold]x[/bold]", "[red"]'), {}),
    ("grid-c1-control-in-name", "g.yaml", native_text("[1]").replace("name: reg", 'name: "reg\\x9b"'), {}),
    # characters outside the BMP: a manifest may not spell them as JSON's surrogate pairs, which
    # libyaml and go-yaml refuse ("found invalid Unicode character escape code")
    ("grid-astral-value", "g.yaml", native_text('["😀", "𝔸"]'), {}),
    ("katib-astral-value", "k.yaml", katib_text("categorical", '{list: ["😀", "x"]}'), {}),
    ("wandb-astral-value", "w.yaml", wandb_text('{values: ["😀", "x"]}'), {"image": IMAGE}),
    ("grid-astral-env-and-annotation", "g.yaml", native_text("[1]", extra='env: {NOTE: "😀${p}"}\nannotations: {note: "😀${trial}"}\n'), {}),
    # sizes the API server or execve refuses
    ("grid-argv-item-over-128k", "g.yaml", native_text('["' + "x" * 140_000 + '", y]'), {}),
    ("wandb-argv-item-over-128k", "w.yaml", wandb_text('{values: ["' + "x" * 140_000 + '", y]}'), {"image": IMAGE}),
    ("grid-annotation-over-256k", "g.yaml", native_text("[1]", extra="annotations: {big: " + "x" * 270_000 + "}\n"), {}),
    ("katib-annotation-over-256k", "k.yaml", katib_text("int", "{min: 1, max: 2}",
                                                        trial_meta="{annotations: {big: " + "x" * 270_000 + "}}"), {}),
]
