import hashlib
import itertools
import json
import re

import pytest
from hypothesis import given, settings, strategies as st

from kubesweep.plan import planner as render
from kubesweep.errors import SpecError
from kubesweep.spec.space import Domain, counted, grid_point, stepped, stepped_size
from kubesweep.plan.trials import canonical_json, trial_name

from .conftest import MINIMAL

DNS = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def test_stepped_ranges_use_decimal_arithmetic():
    assert stepped(0.1, 0.5, 0.2, False) == [0.1, 0.3, 0.5]
    assert stepped(0.0, 0.9, 0.1, False)[3] == 0.3
    assert stepped(1, 10, 3, True) == [1, 4, 7, 10]
    assert stepped(1, 11, 3, True) == [1, 4, 7, 10]  # max is inclusive only when reached


def test_log_ranges_are_tidy_and_ints_deduplicated():
    assert counted(1e-4, 1e-1, 4, True, False) == [0.0001, 0.001, 0.01, 0.1]
    assert counted(1, 4, 8, True, True) == [1, 2, 3, 4]


def test_grid_order_is_the_product_in_written_order(grid_file):
    p = render.plan(grid_file())
    assert [t.params for t in p.trials] == [
        {"epochs": 1, "optimizer": "adam"}, {"epochs": 1, "optimizer": "sgd"},
        {"epochs": 2, "optimizer": "adam"}, {"epochs": 2, "optimizer": "sgd"},
    ]


def test_names_come_from_parameters_and_are_stable(grid_file):
    first = render.plan(grid_file()).trials
    again = render.plan(grid_file()).trials
    assert [t.name for t in first] == [t.name for t in again]
    for t in first:
        digest = hashlib.sha256(json.dumps(t.params, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:12]
        assert t.name.endswith("-" + digest)
        assert t.name.startswith("demo-")
    assert len({t.name for t in first}) == len(first)


def test_names_are_dns_labels_even_for_long_names_and_odd_values():
    exp = "x" * 40
    params = {"a": "Hello World!!", "b": -0.000123, "c": True, "d": "ÄÖ" * 40}
    name = trial_name(exp, params)
    assert len(name) <= 63 and DNS.match(name), name
    assert trial_name(exp, params) == name
    assert trial_name(exp, {**params, "c": False}) != name
    assert canonical_json({"b": 1, "a": 2}) == '{"a":2,"b":1}'


def test_random_search_is_seeded_and_deterministic(grid_file):
    text = """\
    name: rnd
    image: r/t:1
    command: [t, "${lr}", "${opt}", "${layers}"]
    parameters:
      lr: {min: 1e-5, max: 1e-1, scale: log}
      opt: [a, b, c]
      layers: {min: 1, max: 8}
    search: {algorithm: random, seed: SEED, trials: 25}
    objective: {metric: loss, direction: minimize}
    """
    a = render.plan(grid_file(text.replace("SEED", "3"))).trials
    b = render.plan(grid_file(text.replace("SEED", "3"))).trials
    c = render.plan(grid_file(text.replace("SEED", "4"))).trials
    assert [t.params for t in a] == [t.params for t in b]
    assert [t.params for t in a] != [t.params for t in c]
    assert len(a) == 25 and len({t.name for t in a}) == 25
    for t in a:
        assert 1e-5 <= t.params["lr"] <= 1e-1
        assert isinstance(t.params["layers"], int) and 1 <= t.params["layers"] <= 8
        assert t.params["opt"] in "abc"


def test_longest_first_starts_the_costliest_trials_and_keeps_names(grid_file):
    """LPT order by the product of the named parameters; ties keep written order; batches follow the
    new order; the trials themselves (names, params) are the same set as without it."""
    text = """\
        name: demo
        image: localhost:5000/demo/trainer:1
        command: [train, "${epochs}", "${optimizer}", "${layers}"]
        parameters:
          epochs: [1, 5, 3]
          optimizer: [adam, sgd]
          layers: {min: 1, max: 2}
        batchSize: 4
        objective: {metric: accuracy}
        """
    plain = render.plan(grid_file(text, "plain.yaml"))
    ordered = render.plan(grid_file(text.replace("batchSize: 4", "batchSize: 4\n        search: {longestFirst: [epochs, layers]}"), "lpt.yaml"))
    cost = [t.params["epochs"] * t.params["layers"] for t in ordered.trials]
    assert cost == sorted(cost, reverse=True) == [10, 10, 6, 6, 5, 5, 3, 3, 2, 2, 1, 1]
    assert [t.params["optimizer"] for t in ordered.trials[:2]] == ["adam", "sgd"]  # a tie keeps written order
    assert [t.batch for t in ordered.trials] == [0] * 4 + [1] * 4 + [2] * 4
    assert [t.index for t in ordered.trials] == list(range(12))
    assert sorted(t.name for t in ordered.trials) == sorted(t.name for t in plain.trials)


def test_grid_trials_cap_and_batches(grid_file):
    p = render.plan(grid_file(MINIMAL_CAP))
    assert len(p.trials) == 3
    assert [t.batch for t in p.trials] == [0, 0, 1]
    assert p.batches == 2


MINIMAL_CAP = MINIMAL.replace("objective:", "search: {trials: 3}\nbatchSize: 2\nobjective:")


def test_exploding_grid_is_refused_before_expanding(grid_file):
    from kubesweep.errors import SpecError

    text = "name: big\nimage: r/t:1\ncommand: [t, '${args}']\nparameters:\n" + "".join(
        f"  p{i}: {{min: 1, max: 100}}\n" for i in range(5)) + "objective: {metric: m}\n"
    with pytest.raises(SpecError) as err:
        render.plan(grid_file(text))
    assert "10,000,000,000 trials (100 × 100 × 100 × 100 × 100), over the limit of 10,000" in str(err.value)


# ------------------------------------------------------- sizes by arithmetic, points on demand


@settings(max_examples=200, deadline=None, derandomize=True)
@given(sizes=st.lists(st.integers(1, 5), min_size=1, max_size=4))
def test_grid_point_is_the_product_order(sizes):
    doms = [Domain(f"p{i}", n, values=tuple(range(n))) for i, n in enumerate(sizes)]
    listed = [dict(zip((d.name for d in doms), combo)) for combo in itertools.product(*(range(n) for n in sizes))]
    assert [grid_point(doms, i) for i in range(len(listed))] == listed


@settings(max_examples=300, deadline=None, derandomize=True)
@given(lo=st.integers(-1000, 1000), span=st.integers(0, 2000), step=st.integers(1, 300))
def test_stepped_size_counts_what_enumeration_would(lo, span, step):
    assert stepped_size(lo, lo + span, step, True) == len(range(lo, lo + span + 1, step))


def test_stepped_float_ranges_count_exactly():
    assert stepped_size(0.1, 0.5, 0.2, False) == 3
    assert stepped_size(0.0, 1.0, 1e-12, False) == 10**12 + 1


@pytest.mark.parametrize("space, algorithm", [
    ("{min: 0, max: 2147483647}", "random"),
    ("{min: 1, max: 1e12, type: int}", "random"),
    ("{min: 0.0, max: 1.0, step: 1e-12}", "random"),
    ("{min: 0, max: 100000000000000000000000000000}", "tpe"),
    ("{min: 0.0, max: 1.0, step: 0.000001}", "tpe"),
])
def test_huge_ranges_are_sampled_without_listing_them(grid_file, space, algorithm):
    p = render.plan(grid_file(f"""\
    name: huge
    image: r/t:1
    command: [python3, train.py, "${{x}}"]
    objective: {{metric: acc}}
    search: {{algorithm: {algorithm}, trials: 10}}
    parameters:
      x: {space}
    """))
    assert len(p.trials) == (10 if algorithm == "random" else 3)  # tpe plans its first batch (batchSize 3) only
    assert len({t.params["x"] for t in p.trials}) == len(p.trials)


def test_the_first_trials_of_a_huge_grid_are_its_first_points(grid_file):
    p = render.plan(grid_file("""\
    name: huge
    image: r/t:1
    command: [python3, train.py, "${args}"]
    objective: {metric: acc}
    search: {trials: 3}
    parameters:
      a: {min: 0, max: 1000000000000}
      b: [x, y]
    """))
    assert [t.params for t in p.trials] == [{"a": 0, "b": "x"}, {"a": 0, "b": "y"}, {"a": 1, "b": "x"}]


def test_an_astronomic_grid_is_refused_with_its_order_of_magnitude(grid_file):
    params = "".join(f"  p{i}: {{min: 0, max: 1000000000000000000000000000000}}\n" for i in range(200))
    with pytest.raises(SpecError) as err:
        render.plan(grid_file("name: huge\nimage: r/t:1\ncommand: [python3, train.py, \"${args}\"]\n"
                              "objective: {metric: acc}\nparameters:\n" + params))
    assert "the grid expands to about 10^6000 trials" in str(err.value)
