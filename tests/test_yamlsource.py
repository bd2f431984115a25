import pytest

from kubesweep.errors import SpecError
from kubesweep.spec.yamlsource import loads


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


# ---------------------------------------------------------------- one YAML semantics: 1.2 core


@pytest.mark.parametrize("text, value", [
    ("010", 10),            # YAML 1.1 (PyYAML) reads octal 8
    ("0o17", 15), ("0x1f", 31), ("-7", -7), ("+3", 3),
    ("1e-4", 0.0001), (".5", 0.5), ("1.", 1.0), ("-2.5E3", -2500.0),
    ("1:30", "1:30"),       # YAML 1.1: sexagesimal 90
    ("yes", "yes"), ("on", "on"), ("No", "No"),  # YAML 1.1: booleans
    ("2024-01-01", "2024-01-01"),  # YAML 1.1: a date object
    ("1_000", "1_000"), ("0b101", "0b101"), ("=", "="),
    ("true", True), ("FALSE", False), ("~", None), ("null", None), ("", None),
    ("'010'", "010"), ('"true"', "true"), ("!!str 1e3", "1e3"), ("!!float 1", 1.0), ("!!int '7'", 7),
])
def test_scalars_follow_the_yaml_1_2_core_schema(text, value):
    data, _ = loads(f"a: {text}\n", "f.yaml")
    assert data["a"] == value and type(data["a"]) is type(value)


def test_keys_are_read_as_written():
    data, pos = loads("true: 1\n010: 2\nnull: 3\n", "f.yaml")
    assert data == {"true": 1, "010": 2, "null": 3}
    assert pos.key(("010",)).line == 2


def test_aliases_of_scalars_and_collections_are_copies():
    data, _ = loads("a: &x [1, 2]\nb: *x\nc: &s hi\nd: *s\n", "f.yaml")
    assert data == {"a": [1, 2], "b": [1, 2], "c": "hi", "d": "hi"}
    data["b"].append(3)
    assert data["a"] == [1, 2]


def _refusal(text: str) -> str:
    with pytest.raises(SpecError) as err:
        loads(text, "f.yaml")
    lines = str(err.value).splitlines()
    assert len(lines) == 2 and lines[-1] == "1 problem found; nothing was written."
    return lines[0]


def billion_laughs(levels: int = 9) -> str:
    text = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for i in range(1, levels):
        prev, name = chr(96 + i), chr(97 + i)
        text += f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]\n"
    return text


def test_an_alias_bomb_is_refused_where_it_goes_over():
    text = billion_laughs()
    assert len(text) < 400  # a few hundred bytes that would expand to 9^9 values
    line = _refusal(text)
    assert line.startswith("f.yaml:6:") and "aliases expand the document to more than 200,000 values" in line


@pytest.mark.parametrize("depth", [65, 10_000, 200_000])
def test_deep_nesting_is_refused_before_libyaml_slows_down_or_crashes(depth):
    line = _refusal("a: " + "[" * depth + "]" * depth + "\n")
    assert line == "f.yaml:1:67: lists and mappings nested more than 64 deep; a sweep file needs far fewer"


def test_nesting_up_to_the_cap_is_fine():
    data, _ = loads("a: " + "[" * 63 + "]" * 63 + "\n", "f.yaml")
    assert isinstance(data["a"], list)


@pytest.mark.parametrize("text, message", [
    ("a: &a [1, *a]\n", "f.yaml:1:11: alias *a refers to a list or mapping that contains it (a recursive alias)"),
    ("a: &m {b: *m}\n", "f.yaml:1:11: alias *m refers to a list or mapping that contains it (a recursive alias)"),
    ("a: 1\nb: 2\nc: 3\nd: 4\ne: x\x00y\n", "f.yaml:5:5: the file contains the control character U+0000 (NUL), which YAML does not allow in a file"),
    ("a: 1\nb: \x1b[31m\n", "f.yaml:2:4: the file contains the control character U+001B (ESC), which YAML does not allow in a file (write it as an escape inside a double-quoted string)"),
    ('a: "x\\0y"\n', "f.yaml:1:4: a string contains a NUL character (\\0), which no program's arguments, environment or Kubernetes field can hold (got 'x\\x00y')"),
    ("a: .nan\n", "f.yaml:1:4: not a finite number: kubesweep reads only finite numbers (quote it for the string) (got '.nan')"),
    ("a: -.inf\n", "f.yaml:1:4: not a finite number: kubesweep reads only finite numbers (quote it for the string) (got '-.inf')"),
    ("a: 1e400\n", "f.yaml:1:4: a number too large for a 64-bit float (got '1e400')"),
    ("a: !!binary aGk=\n", "f.yaml:1:4: YAML tag !!binary is not supported: a sweep file holds strings, numbers, true/false, null, lists and mappings"),
    ("a: !!set {x}\n", "f.yaml:1:4: YAML tag !!set is not supported: a sweep file holds strings, numbers, true/false, null, lists and mappings"),
    ("a: !!python/object:os.system x\n", "f.yaml:1:4: YAML tag !!python/object:os.system is not supported: a sweep file holds strings, numbers, true/false, null, lists and mappings"),
    ("a: !!int 1.5\n", "f.yaml:1:4: the scalar does not match its tag !!int (got '1.5')"),
    ("a:\n  b: 1\n\tc: 2\n", "f.yaml:3:1: YAML syntax error: a tab: YAML indents with spaces only"),
    ("a: [1, 2\nb: 3\nc: 4\n", "f.yaml:1:4: YAML syntax error: the list opened here is not closed before line 2"),
    ("? [a]\n: 1\n", "f.yaml:1:3: mapping keys must be plain scalars"),
    ("a: *nowhere\n", "f.yaml:1:4: alias *nowhere names no anchor defined before it"),
    ("a: 1\n---\nb: 2\n", "f.yaml:2:1: expected a single YAML document, found several (split them into files)"),
])
def test_what_no_sweep_file_can_hold_is_refused_where_it_is_written(text, message):
    assert _refusal(text) == message


def test_a_long_integer_is_refused_not_a_traceback():
    line = _refusal("a: " + "9" * 5000 + "\n")
    assert line.startswith("f.yaml:1:4: an integer of 5,000 digits is too long to be a value")


def test_files_that_are_not_utf8_or_too_large_are_refused_with_the_place(tmp_path):
    from kubesweep.spec.yamlsource import MAX_BYTES, load

    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"a: 1\nb: caf\xe9\n")
    with pytest.raises(SpecError) as err:
        load(bad)
    assert str(err.value).splitlines()[0] == f"{bad}:2:7: not UTF-8 text: invalid continuation byte (byte 0xe9)"
    big = tmp_path / "big.yaml"
    big.write_bytes(b"a: [" + b"1," * (MAX_BYTES // 2) + b"1]\n")
    with pytest.raises(SpecError) as err:
        load(big)
    assert "the file is larger than 4 MiB" in str(err.value)
    with pytest.raises(SpecError) as err:
        load(tmp_path)
    assert str(err.value).splitlines()[0] == f"{tmp_path}:1:1: is a directory, not a sweep file"


def test_an_alias_as_a_key_is_spelled_as_yaml_spells_it():
    data, _ = loads("a: &n null\nb: &t true\nc:\n  *n : 1\n  *t : 2\n", "f.yaml")
    assert data["c"] == {"null": 1, "true": 2}
