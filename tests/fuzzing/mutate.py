"""Byte-level mutations of real sweep files.

The seeds are every sweep file under examples/ (native, Katib and W&B) and the richer seeds in
tests/fuzzing/seeds/, which use every key of their format. A mutation works on bytes, not on the
document, so it reaches what structured generation does not: broken indentation, half a
multi-byte character, a tab where spaces go, a stray ``&`` or ``*``, a second document, a control
character, invalid UTF-8, a file cut short.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
SEED_DIR = Path(__file__).resolve().parent / "seeds"

#: Bytes and snippets worth inserting: YAML indicators, control characters, invalid UTF-8
#: (a lone continuation byte, a truncated sequence, an encoded surrogate, an overlong NUL).
TOKENS = [
    b"\x00", b"\x01", b"\x07", b"\x08", b"\t", b"\r", b"\r\n", b"\x0b", b"\x0c", b"\x1b", b"\x1b[31m", b"\x7f",
    b"\xc2\x85", b"\xc2\x9b", b"\xe2\x80\xa8", b"\xef\xbb\xbf", b"\xff", b"\xfe", b"\x80", b"\xc3", b"\xe2\x82",
    b"\xed\xa0\x80", b"\xc0\x80", b"\xf4\x90\x80\x80",
    b"&a ", b"*a", b"&a [x, x, x]", b"*a\n", b"<<: *a\n", b"!!binary ", b"!!timestamp ", b"!!python/object:os.system ",
    b"!custom ", b"!!str ", b"!!int ", b"!!float ", b"!!set ", b"? ", b": ", b"- ", b"---\n", b"...\n", b"%YAML 1.1\n",
    b"%TAG ! tag:x,2000:\n", b"{", b"}", b"[", b"]", b",", b"#", b"|", b"|-", b">", b"'", b'"', b"\\", b'"\\0"',
    b'"\\e[31m"', b'"\\x00"', b'"\\ud800"', b'"\\U0010ffff"', b"~", b"null", b"true", b".nan", b".inf", b"-.inf",
    b"1e308", b"1e999", b"-1", b"0", b"2147483648", b"9223372036854775808", b"1" * 30, b"0x7fffffff", b"0o777",
    b"$(HOME)", b"${trial}", b"$$", b"[/]", b"\n" * 3, b" " * 3, b"a" * 100,
]


@dataclass(frozen=True)
class Seed:
    """One seed file: its path, bytes, and what it needs to be read (W&B: an image)."""

    path: Path
    data: bytes
    needs_image: bool

    @property
    def label(self) -> str:
        return self.path.relative_to(ROOT).as_posix()


@functools.lru_cache(maxsize=None)
def seeds() -> tuple[Seed, ...]:
    files = sorted((ROOT / "examples").rglob("*.yaml")) + sorted(SEED_DIR.glob("*.yaml"))
    out = []
    for path in files:
        data = path.read_bytes()
        if b"\n---\n" in data:  # several documents: a Kubernetes manifest (examples/in-cluster), not a sweep file
            continue
        out.append(Seed(path, data, b"\nmethod:" in b"\n" + data and b"kubeflow.org" not in data))
    return tuple(out)


def _lines(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True) or [b""]


@st.composite
def mutation(draw: st.DrawFn, data: bytes, others: list[bytes]) -> tuple[str, bytes]:
    """One mutation of ``data``: (what was done, the result)."""
    kind = draw(st.sampled_from(["flip", "insert", "insert", "delete", "duplicate-line", "splice-line", "move-line",
                                 "delete-line", "truncate", "replace-byte", "indent", "foreign-line"]))
    n = len(data)
    at = draw(st.integers(0, max(n - 1, 0)))
    if kind == "flip" and n:
        bit = draw(st.integers(0, 7))
        return f"flip bit {bit} of byte {at}", data[:at] + bytes([data[at] ^ (1 << bit)]) + data[at + 1:]
    if kind == "insert":
        token = draw(st.sampled_from(TOKENS) | st.binary(min_size=1, max_size=4))
        return f"insert {token!r} at byte {at}", data[:at] + token + data[at:]
    if kind == "delete" and n:
        size = draw(st.integers(1, 16))
        return f"delete bytes {at}..{at + size}", data[:at] + data[at + size:]
    if kind == "replace-byte" and n:
        byte = draw(st.integers(0, 255))
        return f"byte {at} := {byte:#04x}", data[:at] + bytes([byte]) + data[at + 1:]
    if kind == "truncate":
        return f"truncate at byte {at}", data[:at]
    lines = _lines(data)
    i = draw(st.integers(0, len(lines) - 1))
    j = draw(st.integers(0, len(lines)))
    if kind == "duplicate-line":
        return f"duplicate line {i + 1}", b"".join(lines[: i + 1] + [lines[i]] + lines[i + 1:])
    if kind == "move-line":
        line = lines.pop(i)
        lines.insert(min(j, len(lines)), line)
        return f"move line {i + 1} to {j + 1}", b"".join(lines)
    if kind == "delete-line":
        return f"delete line {i + 1}", b"".join(lines[:i] + lines[i + 1:])
    if kind == "indent":
        pad = draw(st.sampled_from([b" ", b"  ", b"\t", b"    "]))
        return f"indent line {i + 1} by {pad!r}", b"".join(lines[:i] + [pad + lines[i]] + lines[i + 1:])
    if kind == "foreign-line" and others:
        other = _lines(draw(st.sampled_from(others)))
        line = draw(st.sampled_from(other))
        return f"insert foreign line {line!r} before line {j + 1}", b"".join(lines[:j] + [line] + lines[j:])
    # splice: the tail of line i glued to the head of line j
    a, b = lines[i], lines[min(j, len(lines) - 1)]
    cut_a, cut_b = draw(st.integers(0, len(a))), draw(st.integers(0, len(b)))
    return f"splice line {i + 1}[:{cut_a}] with line {j + 1}[{cut_b}:]", b"".join(lines[:i] + [a[:cut_a] + b[cut_b:]] + lines[i + 1:])


@st.composite
def mutated(draw: st.DrawFn) -> tuple[Seed, list[str], bytes]:
    """A seed and 1..4 mutations applied in turn: (seed, what was done, the bytes)."""
    all_seeds = seeds()
    seed = draw(st.sampled_from(all_seeds))
    others = [s.data for s in all_seeds if s is not seed]
    data = seed.data
    steps = []
    for _ in range(draw(st.integers(1, 4))):
        what, data = draw(mutation(data, others))
        steps.append(what)
    return seed, steps, data
