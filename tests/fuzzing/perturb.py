"""Perturb a valid document in one to a few places, so that the result is *almost* valid.

A fully random document dies at the first check; one wrong value in an otherwise good sweep file
travels through parsing, translation, range expansion, rendering and writing, which is where the
interesting failures are. Each operation picks a place in the document and:

- replaces the value there with an adversarial one (a scalar, or a list or mapping where a scalar
  belongs), or tweaks it (a trailing newline on a string, an edge integer for an integer, ...);
- deletes the key;
- inserts a key (a known field name of the format, or junk) with an adversarial value;
- sets a *semantic* edge case the format's own strategy offers (a path and a value: an integer
  range of 2**31 points, a step of 1e-12, a toleration with tolerationSeconds but no NoExecute).
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import strategies as st

from .values import edge_floats, edge_ints, nasty_strings, nasty_values

Path = tuple[Any, ...]

SUFFIXES = ["\n", " ", "\n\n", "\x1b[31m", "$(HOME)", "$(OUTPUT_DIR)", "[/]", "${trial}", "$$", "\x00", "\t", "é", "A"]


def paths(doc: Any, here: Path = ()) -> list[Path]:
    """Every place in the document, parents before children (the root excluded)."""
    out: list[Path] = []
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for key, value in items:
        out.append(here + (key,))
        out += paths(value, here + (key,))
    return out


def mappings(doc: Any, here: Path = ()) -> list[Path]:
    """Every mapping in the document (the root included)."""
    out = [here] if isinstance(doc, dict) else []
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for key, value in items:
        out += mappings(value, here + (key,))
    return out


def get(doc: Any, path: Path) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def put(doc: Any, path: Path, value: Any) -> None:
    """Set ``path`` to ``value``, making mappings on the way where a mapping is missing."""
    node = doc
    for part in path[:-1]:
        if isinstance(node, dict):
            if not isinstance(node.get(part), (dict, list)):
                node[part] = {}
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return  # the path crosses a scalar: nothing to set
    if isinstance(node, dict):
        node[path[-1]] = value
    elif isinstance(node, list) and isinstance(path[-1], int) and path[-1] < len(node):
        node[path[-1]] = value


def _tweak(draw: st.DrawFn, value: Any) -> Any:
    if isinstance(value, bool):
        return draw(st.sampled_from([not value, None, str(value).lower(), 1]))
    if isinstance(value, int):
        return draw(edge_ints() | st.sampled_from([float(value), str(value), -value]))
    if isinstance(value, float):
        return draw(edge_floats() | st.sampled_from([str(value), int(value) if value == value and abs(value) < 1e18 else 0]))
    if isinstance(value, str):
        suffix = draw(st.sampled_from(SUFFIXES))
        return draw(st.sampled_from([value + suffix, suffix + value, value.upper(), value * 2, [value], {value: value}]))
    if isinstance(value, list):
        return draw(st.sampled_from([[], value * 2, [value], value + [None], value[:1]]))
    if isinstance(value, dict):
        return draw(st.sampled_from([{}, [value], list(value), None]))
    return draw(nasty_values())


@st.composite
def perturbed(draw: st.DrawFn, doc: Any, vocabulary: list[str], semantic: st.SearchStrategy[tuple[Path, Any]],
              most: int = 3) -> Any:
    """``doc`` with 0..``most`` perturbations (0 a third of the time: valid documents matter)."""
    doc = copy.deepcopy(doc)
    count = draw(st.sampled_from([0, 0, 1, 1, 1, 2, most]))
    for _ in range(count):
        op = draw(st.sampled_from(["semantic", "semantic", "replace", "tweak", "tweak", "delete", "insert"]))
        places = paths(doc)
        if op == "semantic":
            path, value = draw(semantic)
            put(doc, path, value)
        elif op in ("replace", "tweak", "delete") and places:
            path = draw(st.sampled_from(places))
            if op == "replace":
                put(doc, path, draw(nasty_values()))
            elif op == "tweak":
                put(doc, path, _tweak(draw, get(doc, path)))
            else:
                parent = get(doc, path[:-1])
                del parent[path[-1]]
        elif op == "insert":
            where = draw(st.sampled_from(mappings(doc)))
            key = draw(st.sampled_from(vocabulary) | nasty_strings())
            get(doc, where)[key] = draw(nasty_values())
    return doc
