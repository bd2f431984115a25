"""YAML input with positions: every key and value keeps the file:line:column it came from.

PyYAML builds plain Python data and forgets where it came from; error messages need the place.
We compose the node graph once (libyaml when present), record the mark of every node by its
path (``("parameters", "lr", "min")``), refuse duplicate keys (PyYAML silently keeps the last),
and then construct the data from the same nodes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import Collector, Issue, Mark, SpecError

_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class Loader(_Base):  # type: ignore[misc,valid-type]
    """Safe loader that reads ``1e-4`` as a float, as YAML 1.2 and every ML user expect.

    PyYAML follows YAML 1.1, where a float needs a dot (``1.0e-4``), so ``lr: 1e-4`` would be
    the *string* "1e-4" and a grid of learning rates would silently become categorical.
    """


Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:float"]
    for first, resolvers in _Base.yaml_implicit_resolvers.items()
}
Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)

PathKey = tuple[Any, ...]


@dataclass
class Positions:
    """Where each path of a loaded document was written."""

    file: str
    values: dict[PathKey, Mark] = field(default_factory=dict)
    keys: dict[PathKey, Mark] = field(default_factory=dict)

    def value(self, path: PathKey) -> Mark:
        """The mark of the value at ``path``, or of its nearest written ancestor."""
        path = tuple(path)
        while path:
            if path in self.values:
                return self.values[path]
            path = path[:-1]
        return self.values.get((), Mark(self.file, 1, 1))

    def key(self, path: PathKey) -> Mark:
        """The mark of the key that introduces ``path`` (falls back to the value)."""
        path = tuple(path)
        if path in self.keys:
            return self.keys[path]
        return self.value(path)

    def rebase(self, src: PathKey, dst: PathKey, into: Positions) -> None:
        """Copy the marks under ``src`` to live under ``dst`` in ``into`` (used by translators)."""
        n = len(src)
        for table, target in ((self.values, into.values), (self.keys, into.keys)):
            for path, mark in list(table.items()):
                if path[:n] == tuple(src):
                    target[tuple(dst) + path[n:]] = mark


def _mark(file: str, node: yaml.Node) -> Mark:
    return Mark(file, node.start_mark.line + 1, node.start_mark.column + 1)


def _walk(node: yaml.Node, path: PathKey, pos: Positions, problems: Collector) -> None:
    pos.values[path] = _mark(pos.file, node)
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, Mark] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                problems.add(_mark(pos.file, key_node), "mapping keys must be plain scalars")
                continue
            key = key_node.value
            here = _mark(pos.file, key_node)
            if key in seen:
                problems.add(here, f"duplicate key {key!r} (first defined at line {seen[key].line})")
                continue
            seen[key] = here
            pos.keys[path + (key,)] = here
            _walk(value_node, path + (key,), pos, problems)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, path + (index,), pos, problems)


def _normalise_keys(data: Any) -> Any:
    """YAML allows ``1: x``; our paths use the key as written, so keys become strings."""
    if isinstance(data, dict):
        return {str(k): _normalise_keys(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_normalise_keys(v) for v in data]
    return data


def loads(text: str, file: str) -> tuple[Any, Positions]:
    """Parse one YAML document, returning (data, positions); raise SpecError on bad YAML."""
    pos = Positions(file)
    loader = Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise SpecError([Issue(Mark(file, 1, 1), "the file is empty")])
        problems = Collector()
        _walk(node, (), pos, problems)
        problems.raise_if_any()
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context_mark is not None and "end of stream" in str(exc.problem):
            # "[a, b" never closed: the useful place is where it was opened
            problem = f"{exc.context} never closed (the file ends first)"
            mark = exc.context_mark
        where = Mark(file, mark.line + 1, mark.column + 1) if mark else Mark(file, 1, 1)
        if "expected a single document" in str(exc.context or ""):
            problem = "expected a single YAML document, found several (split them into files)"
        raise SpecError([Issue(where, f"YAML syntax error: {problem}")]) from None
    except yaml.YAMLError as exc:  # reader errors (bad bytes) carry no mark
        raise SpecError([Issue(Mark(file, 1, 1), f"YAML error: {exc}")]) from None
    finally:
        loader.dispose()
    return _normalise_keys(data), pos


def load(path: str | Path) -> tuple[Any, Positions]:
    """Read and parse ``path``; a missing or unreadable file is a SpecError too."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([Issue(Mark(name, 1, 1), "file not found")]) from None
    except UnicodeDecodeError as exc:
        raise SpecError([Issue(Mark(name, 1, 1), f"not UTF-8 text: {exc.reason}")]) from None
    except OSError as exc:
        raise SpecError([Issue(Mark(name, 1, 1), f"cannot read: {exc.strerror}")]) from None
    return loads(text, name)
