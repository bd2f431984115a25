"""Adversarial values: what a person, a generator script or a bad merge can put into a sweep file.

Each strategy mixes ordinary values with the edges that have broken (or could break) the input
pipeline: integers around int32/int64/float precision, floats at the ends of their range and
non-finite, strings that the kubelet expands (``$(HOME)``), that kubesweep substitutes
(``${trial}``), that a terminal interprets (ANSI escapes, rich markup), that YAML 1.1 and 1.2 read
differently, with trailing newlines, NULs and other control characters.
"""

from __future__ import annotations

import math

from hypothesis import strategies as st

EDGE_INTS = [
    0, 1, -1, 2, 7, 100, 1000, 10_000, 65535, 2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**32, 2**32 + 1000,
    3_000_000_000, 2**53 + 1, 2**63 - 1, 2**63, -(2**63) - 1, 2**64, 10**12, 10**18, 10**30, 10**400,
]
EDGE_FLOATS = [
    0.0, -0.0, 0.5, 1.5, 1e-12, 1e-300, 5e-324, 1e308, -1e308, 1.7976931348623157e308, 3e9, 1e16, 2.0**53,
    0.1 + 0.2, math.nan, math.inf, -math.inf,
]
NASTY_STRINGS = [
    "", " ", "x", "adam", "16", "0.001", "1e3", "1e-4", "0o17", "0x1F", "1_000", "010", "+1", ".5", "1.",
    "true", "false", "True", "yes", "no", "on", "off", "y", "null", "Null", "~", ".inf", ".nan", "-.inf",
    "2024-01-01", "1:30", "12:30:00",
    "$(OUTPUT_DIR)", "$(HOME)", "$(KUBESWEEP_TRIAL)", "a$$b", "$$", "$", "x$", "${HOME}", "${trial}", "${args}",
    "${", "$${lr}", "$(", "$$(HOME)", "$é", "${trialParameters.x}", "${trialSpec.Name}",
    "[/]", "[bold]", "[bold]x[/bold]", "[link=file:///etc/passwd]x[/link]", "[red", "]",
    "\x1b[31mred\x1b[0m", "\x1b]0;title\x07", "x\x00y", "\x00", "tab\there", "cr\rhere", "bell\x07", "\x7f", "\x9b",
    "line\n", "two\nlines", "trailing\n\n", "\n", " leading", "trailing ", "\u00a0nbsp", "nel\x85x", "ls\u2028x",
    "\ufeffbom", "\u200bzero-width", "\u202eright-to-left", "ünïcödé", "日本語", "😀", "\U0010ffff",
    "'", '"', "\\", "\\n", "#", " # comment", "a: b", "- x", "? x", "&anchor", "*alias", "!!str x", "!tag", "%x",
    "@x", "`x`", "{a: 1}", "[1, 2]", "|", ">", "<<", "a,b", "--lr=0.1", "-", "--", "/", "..", "../../etc",
    "/share/../etc", "a" * 64, "a" * 254, "x" * 5000, "localhost:5000/a/b:1\n", "UPPER", "under_score",
    "kubesweep.io/x", "nvidia.com/gpu", "a/b/c", "default\n", "mnist\n",
]


def edge_ints() -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from(EDGE_INTS), st.integers(-100, 100), st.integers())


def edge_floats() -> st.SearchStrategy[float]:
    return st.one_of(st.sampled_from(EDGE_FLOATS), st.floats(allow_nan=True, allow_infinity=True),
                     st.floats(-10, 10, allow_nan=False))


def nasty_strings() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(NASTY_STRINGS),
        st.sampled_from(NASTY_STRINGS).map(lambda s: s + "\n"),  # a block scalar `|` leaves this newline
        st.text(max_size=12),
        st.text(st.characters(codec="ascii"), max_size=12),
    )


def scalars() -> st.SearchStrategy[object]:
    return st.one_of(nasty_strings(), edge_ints(), edge_floats(), st.booleans(), st.none())


def nasty_values() -> st.SearchStrategy[object]:
    """A scalar, or a small list or mapping (where a scalar is expected, and the reverse)."""
    return st.one_of(
        scalars(),
        scalars(),
        st.lists(scalars(), max_size=4),
        st.dictionaries(nasty_strings(), scalars(), max_size=3),
        st.recursive(scalars(), lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=4), inner, max_size=2),
                     max_leaves=6),
    )
