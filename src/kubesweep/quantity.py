"""Kubernetes resource quantities (``500m``, ``5Gi``, ``1e3``, ``2``): syntax and value.

The grammar is apimachinery's ``resource.Quantity``: a decimal number, then nothing, a decimal
SI suffix (n u m k M G T P E), a binary one (Ki Mi Gi Ti Pi Ei) or a decimal exponent (e3, E-2).
A quantity may be written as a YAML number too (memory in bytes, cpu in cores). Kubernetes caps
a quantity above 2^63-1 without a word; kubesweep refuses one instead.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

SYNTAX = re.compile(r"\+?(\d+(?:\.\d*)?|\.\d+)(?:([eE][+-]?\d+)|([numkMGTPE]|[KMGTPE]i)?)")
_SUFFIX = {
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
    "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9, "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15, "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
}


def text(value: str | int | float) -> str:
    """A quantity as the API writes it: a string (a YAML number becomes its decimal spelling)."""
    if isinstance(value, bool):
        raise ValueError(f"not a quantity: {value!r}")
    if isinstance(value, float):
        return format(Decimal(repr(value)).normalize(), "f") if value.is_integer() or abs(value) >= 1e-3 else repr(value)
    return str(value)


#: The largest quantity Kubernetes represents; a larger one is silently capped to it.
LARGEST = Decimal(2**63 - 1)


def valid(value: str | int | float) -> bool:
    """Whether ``value`` is a non-negative quantity the API server accepts as written."""
    if isinstance(value, bool) or (isinstance(value, (int, float)) and value < 0):
        return False
    try:
        return parse(value) <= LARGEST
    except ValueError:
        return False


def parse(value: str | int | float) -> Decimal:
    """A quantity as a number (cores for cpu, bytes for memory); ValueError if it is not one."""
    m = SYNTAX.fullmatch(text(value)) if not isinstance(value, bool) else None
    if not m:
        raise ValueError(f"not a quantity: {value!r}")
    try:
        number = Decimal(m.group(1))
        if m.group(2):
            exponent = int(m.group(2)[1:])
            if abs(exponent) > 100:  # far beyond any resource; keeps the arithmetic bounded
                raise ValueError(f"quantity exponent out of range: {value!r}")
            return number * (Decimal(10) ** exponent)
        return number * _SUFFIX[m.group(3) or ""]
    except InvalidOperation:
        raise ValueError(f"not a quantity: {value!r}") from None
