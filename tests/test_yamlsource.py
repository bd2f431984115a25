import pytest

from kubesweep.errors import SpecError
from kubesweep.yamlsource import loads


def test_positions_are_one_based_for_keys_and_values():
    data, pos = loads("a: 1\nb:\n  c: [x, y]\n", "f.yaml")
    assert data == {"a": 1, "b": {"c": ["x", "y"]}}
    assert (pos.key(("b", "c")).line, pos.key(("b", "c")).column) == (3, 3)
    assert (pos.value(("b", "c", 1)).line, pos.value(("b", "c", 1)).column) == (3, 10)
    # a path that was never written falls back to its nearest written ancestor
    assert pos.value(("b", "c", 7, "zz")) == pos.value(("b", "c"))


def test_exponent_floats_are_floats_not_strings():
    data, _ = loads("lr: [1e-4, 3E2, 1.5, .5, +2e0]\nname: 1e-4x\n", "f.yaml")
    assert data["lr"] == [0.0001, 300.0, 1.5, 0.5, 2.0]
    assert all(isinstance(v, float) for v in data["lr"])
    assert data["name"] == "1e-4x"


def test_duplicate_keys_are_refused_with_both_lines():
    with pytest.raises(SpecError) as err:
        loads("parameters:\n  lr: [1]\n  lr: [2]\n", "g.yaml")
    assert "g.yaml:3:3: duplicate key 'lr' (first defined at line 2)" in str(err.value)


def test_merge_keys_are_not_duplicates():
    data, _ = loads("base: &b {cpu: '1'}\nres:\n  <<: *b\n  cpu: '2'\n", "f.yaml")
    assert data["res"] == {"cpu": "2"}


@pytest.mark.parametrize("text, message", [
    ("", "the file is empty"),
    ("a: 1\n---\nb: 2\n", "expected a single YAML document"),
    ("a: [1\n", "YAML syntax error"),
])
def test_bad_documents(text, message):
    with pytest.raises(SpecError) as err:
        loads(text, "f.yaml")
    assert message in str(err.value)
    assert str(err.value).startswith("f.yaml:")
