"""Errors a person can act on: every problem carries file:line:column and the offending value."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(value: object) -> str:
    """``str(value)`` with control characters (escape, bell, backspace, C1, DEL; not newline or
    tab) written as \\xNN: text from a file or a cluster must not drive the terminal."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group(0)):02x}", str(value))


@dataclass(frozen=True, order=True)
class Mark:
    """A 1-based position in an input file."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Issue:
    """One problem found in an input, at a position."""

    mark: Mark
    message: str
    value: object = field(default=None)
    has_value: bool = False

    def __str__(self) -> str:
        text = f"{self.mark}: {self.message}"
        if self.has_value:
            text += f" (got {format_value(self.value)})"
        return printable(text.replace("\n", "\\n"))


def format_value(value: object) -> str:
    """Show the offending value the way it looked in YAML, shortened when huge."""
    if isinstance(value, str):
        text = repr(value)
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    elif isinstance(value, (dict, list)):
        text = repr(value)
        if isinstance(value, dict):
            text = "a mapping" if len(text) > 60 else text
        elif len(text) > 60:
            text = f"a list of {len(value)} items"
    else:
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class KubesweepError(Exception):
    """Base for errors that the CLI prints without a traceback, exiting with ``exit_code``."""

    exit_code = 2


class Interrupted(KubesweepError):
    """Ctrl-C (SIGINT) stopped a command; the message says what it left behind and how to go on."""

    exit_code = 130  # 128 + SIGINT, as a shell reports a command that SIGINT ended


class SpecError(KubesweepError):
    """The input (grid.yaml, Katib Experiment or W&B sweep) is wrong; nothing was written."""

    def __init__(self, issues: list[Issue]):
        unique: dict[tuple[Mark, str], Issue] = {}
        for issue in issues:  # values may be lists or dicts: dedupe on what is shown
            unique.setdefault((issue.mark, str(issue)), issue)
        self.issues = sorted(unique.values(), key=lambda i: (i.mark, i.message))
        super().__init__(self.render())

    def render(self) -> str:
        lines = [str(issue) for issue in self.issues]
        noun = "problem" if len(lines) == 1 else "problems"
        return "\n".join(lines + [f"{len(lines)} {noun} found; nothing was written."])


class Collector:
    """Gathers issues so that one run reports every problem, not only the first."""

    def __init__(self) -> None:
        self.issues: list[Issue] = []

    def add(self, mark: Mark, message: str, *values: object) -> None:
        if values:
            self.issues.append(Issue(mark, message, values[0], True))
        else:
            self.issues.append(Issue(mark, message))

    def __bool__(self) -> bool:
        return bool(self.issues)

    def raise_if_any(self) -> None:
        if self.issues:
            raise SpecError(self.issues)
