"""Serialise a generated document to YAML text, in the many spellings a person might use.

Half the time PyYAML's own dumper writes it (block or flow style, ASCII or UTF-8); the other half
:class:`Emitter` assembles it by hand, choosing per node: block or flow collections; plain,
single-quoted, double-quoted (with YAML escapes such as ``\\0``, ``\\e``, ``\\N``, ``\\L``) or literal
block scalars (``|``, ``|-``, ``|+`` keep a string's trailing newlines); anchors on some nodes and
aliases where an equal value comes again. Whatever the spelling, the text means the document it was
made from — :func:`tests.test_fuzz_inputs.test_emitter_round_trips` holds the emitter to that.

Plain scalars are only used where YAML 1.1 (PyYAML, HEAD's loader) and YAML 1.2 agree on the
type; floats are spelled so both read them as floats.
"""

from __future__ import annotations

import math
import random
import re
from typing import Any

import yaml
from hypothesis import strategies as st

_PLAIN = re.compile(r"[A-Za-z_/][A-Za-z0-9_./-]*(?: [A-Za-z0-9_./-]+)*")
_PLAIN_BLOCK = re.compile(r"[A-Za-z_/][A-Za-z0-9_./:@-]*(?: [A-Za-z0-9_./@-]+)*")
#: Words some YAML version reads as something other than a string.
_LONG_KEY = 1000  # YAML's limit on an implicit key is 1024 characters
_RESERVED = {"null", "true", "false", "yes", "no", "on", "off", "y", "n", "nan", "inf", "_"}
_ESCAPES = {"\0": "\\0", "\a": "\\a", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\v": "\\v", "\f": "\\f", "\r": "\\r",
            "\x1b": "\\e", '"': '\\"', "\\": "\\\\", "\x85": "\\N", "\xa0": "\\_", "\u2028": "\\L", "\u2029": "\\P"}


def _printable(ch: str) -> bool:
    """YAML's c-printable, less the line breaks that would fold inside a quoted scalar."""
    o = ord(ch)
    return (0x20 <= o <= 0x7E or 0xA0 < o <= 0xD7FF or 0xE000 <= o <= 0xFFFD and o != 0xFEFF
            or 0x10000 <= o <= 0x10FFFF) and ch not in "\u2028\u2029"


def double_quoted(text: str, rnd: random.Random | None = None) -> str:
    out = []
    for ch in text:
        if ch in _ESCAPES:
            esc = _ESCAPES[ch]
            if rnd is not None and ch in "\0\x1b" and rnd.random() < 0.5:
                esc = f"\\x{ord(ch):02x}"
            out.append(esc)
        elif _printable(ch):
            out.append(ch if rnd is None or ord(ch) < 0x80 or rnd.random() < 0.7 else
                       (f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}"))
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


def _plain_ok(text: str, flow: bool) -> bool:
    rx = _PLAIN if flow else _PLAIN_BLOCK
    return (bool(rx.fullmatch(text)) and text.lower() not in _RESERVED and not text.endswith(":")
            and ": " not in text)


def float_text(value: float) -> str:
    """A float spelled so that YAML 1.1 and 1.2 both read a float: ``1.0e-12``, ``.inf``."""
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    text = repr(value)
    if "e" in text:
        mantissa, exp = text.split("e")
        if "." not in mantissa:
            mantissa += ".0"
        if exp[0] not in "+-":
            exp = "+" + exp
        text = f"{mantissa}e{exp}"
    return text


class Emitter:
    """Hand-assembled YAML with random per-node styles (seeded, so reproducible)."""

    def __init__(self, rnd: random.Random, *, anchors: bool = True):
        self.rnd = rnd
        self.use_anchors = anchors
        self.anchors: dict[str, str] = {}  # canonical form of a finished node -> anchor name
        self.count = 0

    def document(self, value: Any) -> str:
        head = self.rnd.choice(["", "", "", "---\n", "%YAML 1.1\n---\n", "# a comment\n"])
        if isinstance(value, (dict, list)) and value and self.rnd.random() < 0.85:
            return head + self._block(value, 0)
        return head + self._flow(value) + "\n"

    # ---- anchors and aliases
    @staticmethod
    def _canon(value: Any) -> str:
        return repr(_canonical(value))

    def _alias_for(self, value: Any) -> str | None:
        if not self.use_anchors:
            return None
        name = self.anchors.get(self._canon(value))
        return f"*{name}" if name is not None and self.rnd.random() < 0.6 else None

    def _anchor(self) -> str:
        if not self.use_anchors or self.rnd.random() > 0.15:
            return ""
        self.count += 1
        return f"&a{self.count} "

    def _remember(self, anchor: str, value: Any) -> None:
        if anchor:
            self.anchors.setdefault(self._canon(value), anchor[1:].strip())

    # ---- scalars
    def _scalar(self, value: Any, flow: bool) -> str:
        if value is None:
            return self.rnd.choice(["null", "~", "Null"])
        if isinstance(value, bool):
            return self.rnd.choice(["true", "True"] if value else ["false", "False"])
        if isinstance(value, int):
            return str(value) if value < 0 or self.rnd.random() < 0.9 else f"+{value}"
        if isinstance(value, float):
            return float_text(value)
        text = str(value)
        choice = self.rnd.random()
        if _plain_ok(text, flow) and choice < 0.5:
            return text
        if choice < 0.75 and text and all(_printable(ch) for ch in text):
            return "'" + text.replace("'", "''") + "'"
        return double_quoted(text, self.rnd)

    def _key(self, key: str) -> str:
        return key if _plain_ok(key, True) and self.rnd.random() < 0.8 else double_quoted(key)

    @staticmethod
    def _literal_ok(text: str) -> bool:
        """A literal block scalar can hold it: printable lines, none blank or starting or ending
        with white space (those need indentation indicators the emitter does not write)."""
        body = text[:-1] if text.endswith("\n") else text
        return bool(body) and all(line and not line[0].isspace() and line == line.rstrip()
                                  and all(_printable(ch) for ch in line) for line in body.split("\n"))

    def _literal(self, text: str, indent: int) -> str:
        chomp = "" if text.endswith("\n") else "-"
        pad = " " * (indent + 2)
        body = text[:-1] if text.endswith("\n") else text
        return f"|{chomp}\n" + "".join(pad + line + "\n" for line in body.split("\n"))

    # ---- block style: returns text that follows "key:" or "-" (a space or a newline first)
    def _block_value(self, value: Any, indent: int) -> str:
        alias = self._alias_for(value)
        if alias:
            return f" {alias}\n"
        anchor = self._anchor()
        if isinstance(value, (dict, list)) and value and self.rnd.random() < 0.8:
            text = f" {anchor}".rstrip() + "\n" + self._block(value, indent + 2)
        elif isinstance(value, str) and self._literal_ok(value) and self.rnd.random() < 0.5:
            text = f" {anchor}" + self._literal(value, indent)
        else:
            text = f" {anchor}" + self._flow(value) + "\n"
        self._remember(anchor, value)
        return text

    def _block(self, value: Any, indent: int) -> str:
        pad = " " * indent
        if isinstance(value, dict):
            out = []
            for k, v in value.items():
                key = self._key(str(k))
                # An implicit key may not be longer than 1024 characters: use an explicit "? key".
                out.append(f"{pad}? {key}\n{pad}:" if len(key) > _LONG_KEY else f"{pad}{key}:")
                out.append(self._block_value(v, indent))
            return "".join(out)
        return "".join(f"{pad}-{self._block_value(v, indent)}" for v in value)

    # ---- flow style
    def _flow(self, value: Any) -> str:
        if isinstance(value, dict):
            keys = [self._key(str(k)) for k in value]
            return "{" + ", ".join(f"? {key} : {self._flow_item(v)}" if len(key) > _LONG_KEY else f"{key}: {self._flow_item(v)}"
                                   for key, v in zip(keys, value.values())) + "}"
        if isinstance(value, list):
            return "[" + ", ".join(self._flow_item(v) for v in value) + "]"
        return self._scalar(value, flow=True)

    def _flow_item(self, value: Any) -> str:
        alias = self._alias_for(value)
        if alias:
            return alias
        anchor = self._anchor()
        text = anchor + self._flow(value)
        self._remember(anchor, value)
        return text


def _canonical(value: Any) -> Any:
    """A hashable stand-in that tells 1 from 1.0 from True (aliases must repeat the same type)."""
    if isinstance(value, dict):
        return ("map", tuple((k, _canonical(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("seq", tuple(_canonical(v) for v in value))
    if isinstance(value, float) and math.isnan(value):
        return ("float", "nan")
    return (type(value).__name__, value)


def pyyaml_text(value: Any, rnd: random.Random) -> str:
    return yaml.safe_dump(value, sort_keys=False, allow_unicode=rnd.random() < 0.5,
                          default_flow_style=rnd.choice([False, False, None, True]), width=rnd.choice([80, 1 << 16]))


@st.composite
def yaml_text(draw: st.DrawFn, value: Any) -> str:
    """The document as YAML text, in a drawn spelling."""
    rnd = draw(st.randoms(use_true_random=False))
    if rnd.random() < 0.4:
        return pyyaml_text(value, rnd)
    return Emitter(rnd).document(value)
