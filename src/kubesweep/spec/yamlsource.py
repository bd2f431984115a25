"""YAML input with positions: every key and value keeps the file:line:column it came from.

One YAML semantics everywhere: the YAML 1.2 core schema. A plain scalar is null (``null``,
``~``, empty), a boolean (``true``/``false`` in three spellings), an integer (``10``, ``010`` is
ten, ``0o17``, ``0x1f``), a float (``1e-4``, ``.5``) or else a string — so ``yes``, ``on``,
``1:30``, ``2024-01-01`` and ``1_000`` stay strings, as YAML 1.2 says and unlike PyYAML's YAML 1.1.
Merge keys (``<<: *base``) are supported. Only the core tags (``!!str``, ``!!int``, ``!!float``,
``!!bool``, ``!!null``, ``!!map``, ``!!seq``) are read; ``!!binary``, ``!!timestamp``, ``!!set``
and custom tags are refused.

The document is built from libyaml's event stream in one pass that visits each event once, with
hard caps checked as it goes, so that no input can cost more than a few hundred megabytes or
seconds: the file size, the nesting depth (libyaml itself slows down quadratically and the C
composer crashes on deep nesting), and the number of values after aliases are expanded (a few
hundred bytes of nested aliases — "billion laughs" — would otherwise expand to billions). Values
that no program could receive are refused where they were written: NUL characters, ``.nan`` and
``.inf``, and numbers a 64-bit float cannot hold.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kubesweep.errors import Issue, Mark, SpecError

_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

#: The largest sweep file read; anything bigger is refused before it is parsed.
MAX_BYTES = 4 * 1024 * 1024
#: The deepest nesting of lists and mappings (a Katib Experiment needs about a dozen).
MAX_DEPTH = 64
#: The most values (scalars, lists and mappings) a document may hold after aliases are expanded.
MAX_NODES = 200_000
#: A 64-bit float's largest finite value, and the longest integer literal Python converts.
_MAX_INT_DIGITS = 4000

# The YAML 1.2 core schema's plain-scalar resolution (https://yaml.org/spec/1.2.2/#1032-tag-resolution).
_NULL = re.compile(r"(?:~|null|Null|NULL|)")
_BOOL = re.compile(r"(?:true|True|TRUE|false|False|FALSE)")
_INT10 = re.compile(r"[-+]?[0-9]+")
_INT8 = re.compile(r"0o[0-7]+")
_INT16 = re.compile(r"0x[0-9a-fA-F]+")
_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?")
_SPECIAL_FLOAT = re.compile(r"[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)")
#: Characters YAML does not allow in a stream (YAML 1.2 c-printable), found before parsing.
_NON_PRINTABLE = re.compile("[^\x09\x0A\x0D\x20-\x7E\x85\xA0-\uD7FF\uE000-\uFFFD\U00010000-\U0010FFFF]")

_TAG = "tag:yaml.org,2002:"
_STR, _INT, _FLOATT, _BOOLT, _NULLT, _MAP, _SEQ = (_TAG + t for t in ("str", "int", "float", "bool", "null", "map", "seq"))
_SCALAR_TAGS = {_STR, _INT, _FLOATT, _BOOLT, _NULLT, "!"}

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


def _mark(file: str, event: Any) -> Mark:
    return Mark(file, event.start_mark.line + 1, event.start_mark.column + 1)


def _refuse(mark: Mark, message: str, *value: Any) -> SpecError:
    return SpecError([Issue(mark, message, value[0], True) if value else Issue(mark, message)])


def scalar(text: str, tag: str | None, plain: bool, mark: Mark) -> Any:
    """The value of one scalar under the YAML 1.2 core schema; SpecError for what cannot be a value."""
    if tag in (None, "!") and plain:
        if _NULL.fullmatch(text):
            tag = _NULLT
        elif _BOOL.fullmatch(text):
            tag = _BOOLT
        elif _INT10.fullmatch(text) or _INT8.fullmatch(text) or _INT16.fullmatch(text):
            tag = _INT
        elif _FLOAT.fullmatch(text) or _SPECIAL_FLOAT.fullmatch(text):
            tag = _FLOATT
        else:
            tag = _STR
    elif tag in (None, "!"):
        tag = _STR  # quoted and block scalars are strings
    if tag == _STR:
        if "\x00" in text:
            raise _refuse(mark, "a string contains a NUL character (\\0), which no program's arguments, "
                          "environment or Kubernetes field can hold", text)
        return text
    if tag == _NULLT and _NULL.fullmatch(text):
        return None
    if tag == _BOOLT and _BOOL.fullmatch(text):
        return text.lower() == "true"
    if tag == _INT:
        digits = text.lstrip("+-")
        if len(digits) > _MAX_INT_DIGITS:
            raise _refuse(mark, f"an integer of {len(digits):,} digits is too long to be a value", text)
        for rx, base, skip in ((_INT10, 10, 0), (_INT8, 8, 2), (_INT16, 16, 2)):
            if rx.fullmatch(text):
                return int(text[skip:], base)
    if tag == _FLOATT and (_FLOAT.fullmatch(text) or _SPECIAL_FLOAT.fullmatch(text) or _INT10.fullmatch(text)):
        if _SPECIAL_FLOAT.fullmatch(text):
            raise _refuse(mark, "not a finite number: kubesweep reads only finite numbers "
                          "(quote it for the string)", text)
        value = float(text)
        if not math.isfinite(value):
            raise _refuse(mark, "a number too large for a 64-bit float", text)
        return value
    if tag in (_NULLT, _BOOLT, _INT, _FLOATT):
        raise _refuse(mark, f"the scalar does not match its tag !!{tag[len(_TAG):]}", text)
    shown = "!!" + tag[len(_TAG):] if tag.startswith(_TAG) else tag
    raise _refuse(mark, f"YAML tag {shown} is not supported: a sweep file holds strings, numbers, "
                  "true/false, null, lists and mappings")


@dataclass
class _Open:
    """A list or mapping being read: its value, path, and (mappings) the key awaiting a value."""

    value: Any
    path: PathKey
    mark: Mark
    anchor: str | None
    key: Any = None
    has_key: bool = False
    key_seen: dict[str, Mark] = field(default_factory=dict)
    merges: list[dict[str, Any]] = field(default_factory=list)
    size: int = 1


class _Builder:
    """Builds the document from events, with positions, in one pass and within the caps."""

    def __init__(self, file: str):
        self.file = file
        self.pos = Positions(file)
        self.stack: list[_Open] = []
        self.anchors: dict[str, tuple[Any, int, bool]] = {}  # name -> (value, expanded size, still open)
        self.nodes = 0
        self.root: Any = None
        self.done = False

    def count(self, n: int, mark: Mark, alias: bool) -> None:
        self.nodes += n
        if self.nodes > MAX_NODES:
            if alias:
                raise _refuse(mark, f"its aliases expand the document to more than {MAX_NODES:,} values; a sweep "
                              "file needs far fewer (is this a YAML alias bomb?)")
            raise _refuse(mark, f"the document has more than {MAX_NODES:,} values; a sweep file needs far fewer")

    def _child_path(self) -> PathKey:
        """The path of the value about to be placed."""
        if not self.stack:
            return ()
        top = self.stack[-1]
        if isinstance(top.value, list):
            return top.path + (len(top.value),)
        return top.path + (top.key,)

    def _place(self, value: Any, mark: Mark, size: int) -> None:
        """Put a finished value into its parent (or make it the document)."""
        if not self.stack:
            self.root = value
            self.done = True
            return
        top = self.stack[-1]
        top.size += size
        if isinstance(top.value, list):
            top.value.append(value)
            return
        if not top.has_key:  # the value is a key
            if isinstance(value, (list, dict)):
                raise _refuse(mark, "mapping keys must be plain scalars")
            top.key = value
            top.has_key = True
            return
        key = top.key
        top.has_key = False
        if key is _MERGE:
            items = value if isinstance(value, list) else [value]
            if not all(isinstance(v, dict) for v in items):
                raise _refuse(mark, "a merge key (<<) takes a mapping or a list of mappings")
            top.merges.extend(items)
            return
        top.value[key] = value

    def scalar_event(self, event: Any) -> None:
        mark = _mark(self.file, event)
        top = self.stack[-1] if self.stack else None
        is_key = top is not None and isinstance(top.value, dict) and not top.has_key
        self.count(1, mark, False)
        if is_key:
            assert top is not None
            plain = event.implicit[0]
            if plain and event.value == "<<" and event.tag is None:
                top.key_seen.setdefault("<<", mark)
                self._place(_MERGE, mark, 0)
                return
            if event.tag not in _SCALAR_TAGS and event.tag is not None:
                scalar(event.value, event.tag, plain, mark)  # refuses the tag
            # keys are read as written: `true:` is the key "true", `1:` is "1"
            self.scalar_key(top, scalar(event.value, _STR, False, mark), mark)
            return
        path = self._child_path()
        value = scalar(event.value, event.tag, event.implicit[0], mark)
        self.pos.values[path] = mark
        if event.anchor:
            self.anchors[event.anchor] = (value, 1, False)
        self._place(value, mark, 1)

    def start(self, event: Any, kind: type) -> None:
        mark = _mark(self.file, event)
        top = self.stack[-1] if self.stack else None
        if top is not None and isinstance(top.value, dict) and not top.has_key:
            raise _refuse(mark, "mapping keys must be plain scalars")
        tag = event.tag
        want = _SEQ if kind is list else _MAP
        if tag not in (None, "!", want):
            shown = "!!" + tag[len(_TAG):] if tag.startswith(_TAG) else tag
            raise _refuse(mark, f"YAML tag {shown} is not supported: a sweep file holds strings, numbers, "
                          "true/false, null, lists and mappings")
        if len(self.stack) >= MAX_DEPTH:
            raise _refuse(mark, f"lists and mappings nested more than {MAX_DEPTH} deep; a sweep file needs far fewer")
        self.count(1, mark, False)
        path = self._child_path()
        self.pos.values[path] = mark
        frame = _Open(kind(), path, mark, event.anchor)  # type: ignore[arg-type]
        if event.anchor:
            self.anchors[event.anchor] = (frame.value, 0, True)
        self.stack.append(frame)

    def end(self) -> None:
        frame = self.stack.pop()
        value = frame.value
        if frame.merges:  # explicit keys win; among merged mappings the earlier one wins
            merged: dict[str, Any] = {}
            for m in reversed(frame.merges):
                merged.update(m)
            merged.update(value)
            value = merged
            frame.value.clear()
            frame.value.update(value)
            value = frame.value
        if frame.anchor:
            self.anchors[frame.anchor] = (value, frame.size, False)
        self._place(value, frame.mark, frame.size)

    def alias(self, event: Any) -> None:
        mark = _mark(self.file, event)
        if event.anchor not in self.anchors:
            raise _refuse(mark, f"alias *{event.anchor} names no anchor defined before it")
        value, size, still_open = self.anchors[event.anchor]
        if still_open:
            raise _refuse(mark, f"alias *{event.anchor} refers to a list or mapping that contains it (a recursive alias)")
        top = self.stack[-1] if self.stack else None
        if top is not None and isinstance(top.value, dict) and not top.has_key:
            if isinstance(value, (list, dict)):
                raise _refuse(mark, "mapping keys must be plain scalars")
            key = "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
            self.scalar_key(top, key, mark)  # spelled as YAML spells the value, never as Python does
            return
        self.count(size, mark, True)
        path = self._child_path()
        self.pos.values[path] = mark
        self._place(copy.deepcopy(value) if isinstance(value, (list, dict)) else value, mark, size)

    def scalar_key(self, top: _Open, key: str, mark: Mark) -> None:
        if key in top.key_seen:
            raise _refuse(mark, f"duplicate key {key!r} (first defined at line {top.key_seen[key].line})")
        top.key_seen[key] = mark
        self.pos.keys[top.path + (key,)] = mark
        self._place(key, mark, 0)


_MERGE = object()


def _control_character(text: str, file: str) -> None:
    m = _NON_PRINTABLE.search(text)
    if m is None:
        return
    line = text.count("\n", 0, m.start()) + 1
    column = m.start() - (text.rfind("\n", 0, m.start()) + 1) + 1
    ch = m.group(0)
    name = {"\x00": "NUL", "\x1b": "ESC", "\x7f": "DEL"}.get(ch, "")
    hint = "" if ch == "\x00" else " (write it as an escape inside a double-quoted string)"
    raise _refuse(Mark(file, line, column), f"the file contains the control character U+{ord(ch):04X}"
                  f"{' (' + name + ')' if name else ''}, which YAML does not allow in a file{hint}")


def loads(text: str, file: str) -> tuple[Any, Positions]:
    """Parse one YAML document, returning (data, positions); raise SpecError on bad YAML."""
    _control_character(text, file)
    builder = _Builder(file)
    loader = _Base(text)
    documents = 0
    try:
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, yaml.ScalarEvent):
                builder.scalar_event(event)
            elif isinstance(event, yaml.SequenceStartEvent):
                builder.start(event, list)
            elif isinstance(event, yaml.MappingStartEvent):
                builder.start(event, dict)
            elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                builder.end()
            elif isinstance(event, yaml.AliasEvent):
                builder.alias(event)
            elif isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    raise _refuse(_mark(file, event), "expected a single YAML document, found several (split them into files)")
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        opened = exc.context_mark
        if opened is not None and "end of stream" in str(exc.problem):
            # "[a, b" never closed: the useful place is where it was opened
            problem = f"{exc.context} never closed (the file ends first)"
            mark = opened
        elif opened is not None and mark is not None and opened.line < mark.line and "did not find expected ','" in problem:
            kind = "list" if "sequence" in str(exc.context) else "mapping"
            problem = f"the {kind} opened here is not closed before line {mark.line + 1}"
            mark = opened
        elif mark is not None and 0 <= mark.index < len(text) and text[mark.index] == "\t":
            problem = "a tab: YAML indents with spaces only"
        elif problem == "did not find expected key":
            problem += " (is this line indented like the keys of its mapping?)"
        where = Mark(file, mark.line + 1, mark.column + 1) if mark else Mark(file, 1, 1)
        raise SpecError([Issue(where, f"YAML syntax error: {problem}")]) from None
    except yaml.YAMLError as exc:  # reader errors (bad bytes) carry no mark
        raise SpecError([Issue(Mark(file, 1, 1), f"YAML error: {exc}")]) from None
    finally:
        loader.dispose()
    if not builder.done:
        raise SpecError([Issue(Mark(file, 1, 1), "the file is empty")])
    return builder.root, builder.pos


def load(path: str | Path) -> tuple[Any, Positions]:
    """Read and parse ``path``; a missing, unreadable, oversized or non-UTF-8 file is a SpecError too."""
    name = str(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise SpecError([Issue(Mark(name, 1, 1), "file not found")]) from None
    except IsADirectoryError:
        raise SpecError([Issue(Mark(name, 1, 1), "is a directory, not a sweep file")]) from None
    except OSError as exc:
        raise SpecError([Issue(Mark(name, 1, 1), f"cannot read: {exc.strerror}")]) from None
    if len(data) > MAX_BYTES:
        raise SpecError([Issue(Mark(name, 1, 1), f"the file is larger than {MAX_BYTES // 2**20} MiB; a sweep file "
                               "is a few kilobytes (list values in the file, not data)")])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = len(data[data.rfind(b"\n", 0, exc.start) + 1 : exc.start].decode("utf-8", "replace")) + 1
        raise SpecError([Issue(Mark(name, line, column), f"not UTF-8 text: {exc.reason} "
                               f"(byte 0x{data[exc.start]:02x})")]) from None
    return loads(text, name)
