"""Text from users and clusters, made safe to print: no markup, no terminal control sequences.

A parameter value may hold rich markup (``[/]``, which rich refuses with a traceback) or an
ANSI escape (``\\x1b[2J`` clears the screen): both are data, so every value shown in a table
goes through :func:`cell`, which escapes control characters and turns off markup.
"""

from __future__ import annotations

from rich.text import Text

from kubesweep.errors import printable

__all__ = ["cell", "printable"]


def cell(value: object, style: str = "") -> Text:
    """A table cell or title showing ``value`` literally (markup characters are not markup)."""
    return Text(printable(value), style=style)
