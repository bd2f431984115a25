"""Property-based fuzzing of the input pipeline: every sweep file, however broken or hostile, is
either rendered into sound Job manifests or refused with a SpecError that points into the file —
within 5 s of CPU and 300 MiB, writing nothing when it refuses.

Inputs come from three places: structured generation of whole sweep files in each format
(valid templates perturbed in a few places, serialised in many YAML spellings), byte-level
mutations of the real sweep files, and a list of known-hostile inputs written out by hand. The
invariants themselves are in tests/fuzzing/invariants.py; the helpers they rely on (the fork
runner, the kubelet's $(VAR) expansion, the API server's rules, the YAML emitter) are tested here
against known answers first, so that a failure of the fuzz tests is a failure of kubesweep.

Profiles (tests/fuzzing/profiles.py): ``KUBESWEEP_FUZZ=quick`` (default: derandomized, a few
dozen examples per test) or ``KUBESWEEP_FUZZ=long`` (thousands, random, shrinking)::

    python -m pytest -q tests/test_fuzz_inputs.py
    KUBESWEEP_FUZZ=long python -m pytest -q tests/test_fuzz_inputs.py --hypothesis-show-statistics
"""

from __future__ import annotations

import copy
import math
import os
import random
import re
import signal
from pathlib import Path

import pytest
import yaml
from hypothesis import event, given
from hypothesis import strategies as st

from kubesweep.plan import job as manifest
from kubesweep.plan import planner as render

from .fuzzing import apiserver, expansion, katib, limits, mutate, native, wandb
from .fuzzing.hostile import BILLION_LAUGHS, HOSTILE
from .fuzzing.invariants import Case, check_case
from .fuzzing.profiles import fuzz_settings
from .fuzzing.values import EDGE_INTS, nasty_strings, nasty_values
from .fuzzing.yamltext import Emitter, yaml_text

# scipy.stats (the Sobol sequence; cmaes imports it too) maps ~60 MiB of libraries the first time a
# process loads it: a fixed cost of the sobol and cmaes samplers, not of any input. Loaded here,
# before each input's child is forked, so the 300 MiB per input measures what the input costs.
__import__("scipy.stats")

IMAGE = native.IMAGE


def _record(outcome: limits.Outcome) -> None:
    """Statistics (``--hypothesis-show-statistics``): how deep the inputs got."""
    event(f"outcome: {outcome.kind}")
    if outcome.kind == limits.SPEC_ERROR:
        first = outcome.message.split("\n", 1)[0]
        words = re.sub(r"^.*?:\d+:\d+: ", "", first).split()
        event("refused: " + " ".join(words[:3]))


# ------------------------------------------------------------------ the helpers, on known answers

#: Kubernetes' own cases (third_party/forked/golang/expansion/expand_test.go, doExpansionTest).
K8S_CONTEXT = {"VAR_A": "A", "VAR_B": "B", "VAR_C": "C", "VAR_REF": "$(VAR_A)", "VAR_EMPTY": ""}
K8S_CASES = [
    ("$(VAR_A)", "A"), ("$(VAR_A)-$(VAR_A)", "A-A"), ("___$(VAR_B)___", "___B___"), ("$(VAR_A)_$(VAR_B)_$(VAR_C)", "A_B_C"),
    ("$$(VAR_B)_$(VAR_A)", "$(VAR_B)_A"), ("$$(VAR_A)_$$(VAR_B)", "$(VAR_A)_$(VAR_B)"), ("f000-$$VAR_A", "f000-$VAR_A"),
    ("foo\\$(VAR_C)bar", "foo\\Cbar"), ("$(VAR_A$(VAR_B))", "$(VAR_A$(VAR_B))"), ("$(VAR_A$(VAR_B)", "$(VAR_A$(VAR_B)"),
    ("$(VAR_REF)", "$(VAR_A)"), ("foo$(VAR_EMPTY)bar", "foobar"), ("foo$(VAR_Awhoops!", "foo$(VAR_Awhoops!"),
    ("$?_boo_$!", "$?_boo_$!"), ("$VAR_A", "$VAR_A"), ("$(VAR_DNE)", "$(VAR_DNE)"), ("$$$$$$(BIG_MONEY)", "$$$(BIG_MONEY)"),
    ("$$$$$$(VAR_A)", "$$$(VAR_A)"), ("$$$$$$$(GOOD_ODDS)", "$$$$(GOOD_ODDS)"), ("$$$$$$$(VAR_A)", "$$$A"),
    ("${VAR_A}", "${VAR_A}"), ("$(VAR_B)_______$(A", "B_______$(A"), ("$(VAR_C)_______$(", "C_______$("),
    ("$(VAR_A)foobarzab$", "Afoobarzab$"), ("--$($($($($--", "--$($($($($--"), ("$(foo$$var)", "$(foo$$var)"), ("\n", "\n"),
]


@pytest.mark.parametrize("text, expanded", K8S_CASES)
def test_k8s_expansion_reference_matches_kubernetes_own_cases(text: str, expanded: str) -> None:
    assert expansion.k8s_expand(text, K8S_CONTEXT) == expanded


def test_k8s_expansion_reference_chains_env_and_mangles_dollar_before_non_ascii() -> None:
    container = {"env": [{"name": "FOO", "value": "bar"}, {"name": "ZOO", "value": "$(FOO)-1"}, {"name": "BLU", "value": "$(ZOO)-2"}],
                 "command": ["$(BLU)", "$(NOPE)", "a$$b", "$é"]}
    assert expansion.container_env(container) == {"FOO": "bar", "ZOO": "bar-1", "BLU": "bar-1-2"}
    argv = expansion.container_argv(container)
    assert argv[:3] == ["bar-1-2", "$(NOPE)", "a$b"]
    assert argv[3] != "$é"  # Go copies the byte 0xc3 as the rune U+00C3


def _float12_loader() -> type:
    """PyYAML, plus YAML 1.2's exponent floats (``1e-12``), to read back what the emitter wrote."""
    class Loader(yaml.SafeLoader):
        pass

    Loader.yaml_implicit_resolvers = {k: [(t, r) for t, r in v if t != "tag:yaml.org,2002:float"]
                                      for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(
        r"^(?:[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)?|\.[0-9_]+(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"), list("-+0123456789."))
    return Loader


def _same(a: object, b: object) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return type(a) is type(b) and a == b


@fuzz_settings(examples=40)
@given(st.dictionaries(nasty_strings(), nasty_values(), min_size=1, max_size=4), st.randoms(use_true_random=False))
def test_emitter_round_trips(doc: dict, rnd: random.Random) -> None:
    """The hand-assembled YAML means the document it was made from (else fuzz findings would be
    the emitter's)."""
    text = Emitter(rnd).document(doc)
    assert _same(yaml.load(text, Loader=_float12_loader()), doc), text


def test_limits_tell_the_outcomes_apart() -> None:
    """The fork runner: a value, a SpecError, another exception, a CPU hog, a memory hog, a crash."""
    from kubesweep.errors import Issue, Mark, SpecError

    def spec_error() -> None:
        raise SpecError([Issue(Mark("f.yaml", 1, 1), "bad")])

    def spin() -> None:
        while True:
            pass

    def hog() -> bytes:
        return b"x" * (2 * limits.MEMORY_HEADROOM)

    assert limits.run_limited(lambda: {"a": 1}).result == {"a": 1}
    assert limits.run_limited(spec_error).kind == limits.SPEC_ERROR
    failed = limits.run_limited(lambda: int("x"))
    assert failed.kind == limits.ERROR and "ValueError" in failed.message
    spun = limits.run_limited(spin, cpu_seconds=1)
    assert spun.kind == limits.CPU and "spin" in spun.message
    assert limits.run_limited(hog).kind == limits.MEMORY
    assert limits.run_limited(lambda: os.kill(os.getpid(), signal.SIGSEGV)).kind == limits.KILLED


def test_api_server_reference_knows_its_rules() -> None:
    """A Job kubesweep renders from the example passes the reference; each broken copy is caught."""
    plan = render.plan(Path(__file__).parents[1] / "examples" / "mnist" / "katib.yaml")
    job = manifest.build_job(plan.experiment, plan.trials[0])
    assert apiserver.job_problems(job) == []
    breaks = [  # (job, its pod spec) -> None
        lambda j, p: j["metadata"].update(namespace="default\n"),
        lambda j, p: j["metadata"]["labels"].update(team="a\n"),
        lambda j, p: j["spec"].update(backoffLimit=3_000_000_000),
        lambda j, p: p["securityContext"].update(runAsUser=2**32),
        lambda j, p: p["tolerations"].append({"key": "a", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 5}),
        lambda j, p: p["tolerations"].append({"key": "", "operator": "Equal", "value": "x"}),
        lambda j, p: p["tolerations"].append({"key": "a", "operator": "Exists", "value": "x"}),
        lambda j, p: p["tolerations"].append({"key": "a", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2**63}),
        lambda j, p: j["metadata"]["annotations"].update(big="x" * 270_000),
        lambda j, p: p["containers"][0].update(image="repo/image:1\n"),
        lambda j, p: p["containers"][0]["command"].append("a\x00b"),
    ]
    for i, damage in enumerate(breaks):
        broken = copy.deepcopy(job)
        damage(broken, broken["spec"]["template"]["spec"])
        assert apiserver.job_problems(broken), f"break {i} went unnoticed"


@pytest.mark.parametrize("seed", mutate.seeds(), ids=lambda s: s.label)
def test_seed_files_hold_every_invariant(seed: mutate.Seed) -> None:
    """Mutations start from good files: every seed renders, holding every invariant."""
    outcome = check_case(Case(seed.label, seed.data, seed.path.name, {"image": IMAGE} if seed.needs_image else {},
                              context=seed.path.parent))
    assert outcome.kind == limits.OK, outcome.describe()


# ------------------------------------------------------------------------ structured generation


@st.composite
def overrides(draw: st.DrawFn, image: st.SearchStrategy | None = None) -> dict:
    """The flags (--image, --name, --namespace, --trial-limit): usually none."""
    out = {}
    if image is not None:
        value = draw(image)
        if value is not None:
            out["image"] = value
    if draw(st.integers(0, 9)) == 0:
        key = draw(st.sampled_from(["image", "name", "namespace", "trial_limit"]))
        out[key] = draw(st.sampled_from(EDGE_INTS)) if key == "trial_limit" else draw(
            st.sampled_from(["fz-override", IMAGE, "default"]) | nasty_strings())
    return out


@st.composite
def cases(draw: st.DrawFn, documents: st.SearchStrategy, filename: str, image: st.SearchStrategy | None = None) -> Case:
    doc = draw(documents)
    text = draw(yaml_text(doc))
    return Case("generated", text.encode(), filename, draw(overrides(image)))


@fuzz_settings()
@given(cases(native.documents(), "sweep.yaml"))
def test_native_sweep_files_hold_every_invariant(case: Case) -> None:
    """Native grid.yaml files: see tests/fuzzing/invariants.py for what is asserted."""
    _record(check_case(case))


@fuzz_settings()
@given(cases(katib.documents(), "katib.yaml"))
def test_katib_experiments_hold_every_invariant(case: Case) -> None:
    """Katib kubeflow.org/v1beta1 Experiments."""
    _record(check_case(case))


@fuzz_settings()
@given(cases(wandb.documents(), "fuzz-wandb.yaml", image=wandb.images()))
def test_wandb_sweep_configs_hold_every_invariant(case: Case) -> None:
    """W&B sweep configs, read with --image (now and then a bad one, or none)."""
    _record(check_case(case))


@st.composite
def mutated_cases(draw: st.DrawFn) -> Case:
    seed, steps, data = draw(mutate.mutated())
    return Case(f"{seed.label} after: " + "; ".join(steps), data, seed.path.name,
                {"image": IMAGE} if seed.needs_image else {}, context=seed.path.parent)


@fuzz_settings(examples=100)
@given(mutated_cases())
def test_mutated_sweep_files_hold_every_invariant(case: Case) -> None:
    """Byte-level mutations of examples/**/*.yaml and tests/fuzzing/seeds/*.yaml."""
    _record(check_case(case))


# ------------------------------------------------------------------ known-hostile inputs, by hand

#: CPU seconds for a hand-written hostile input: a correct answer takes milliseconds, and a
#: lower limit keeps this list quick while the defects it shows are open.
REGRESSION_CPU = 2


@pytest.mark.parametrize("name, filename, text, flags", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_input(name: str, filename: str, text: str, flags: dict) -> None:
    """Known-hostile inputs (billion laughs, 10,000-deep nesting, 2**31-point ranges, values the
    kubelet rewrites, escapes, out-of-range integers, ...), in every format that can express them."""
    check_case(Case(name, text.encode(), filename, flags), cpu_seconds=REGRESSION_CPU)


def test_hostile_inputs_are_the_size_they_claim() -> None:
    """The YAML bombs are small files: the problem is what they expand to, not their size."""
    texts = dict((h[0], h[2]) for h in HOSTILE)
    assert len(BILLION_LAUGHS) < 400
    assert all(len(texts[f"{fmt}-billion-laughs"]) < 1500 for fmt in ("grid", "katib", "wandb"))
    assert len(yaml.safe_load(texts["grid-value-trailing-newline"])["parameters"]["p"][0]) == len("adam\n")


def test_every_corpus_file_holds_every_invariant() -> None:
    """The hand-made corpus (tests/bad_inputs) through the same runner: each file in a child
    limited to 5 s of CPU and 300 MiB, refused with messages inside the file, nothing written."""
    from .test_bad_inputs import corpus_files, overrides, read_header

    files = corpus_files()
    assert len(files) >= 150
    for path in files:
        outcome = check_case(Case(f"corpus {path.parent.name}/{path.name}", path.read_bytes(), path.name,
                                  overrides(read_header(path))))
        assert outcome.kind == limits.SPEC_ERROR, (path, outcome.describe())
