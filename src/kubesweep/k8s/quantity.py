"""Kubernetes resource quantities (``500m``, ``5Gi``, ``1e3``, ``2``): syntax and value.

The grammar is apimachinery's ``resource.Quantity``: a decimal number, then nothing, a decimal
SI suffix (n u m k M G T P E), a binary one (Ki Mi Gi Ti Pi Ei) or a decimal exponent (e3, E-2).
A quantity may be written as a YAML number too (memory in bytes, cpu in cores). Kubernetes caps
a quantity above 2^63-1 without a word; kubesweep refuses one instead.
"""

from __future__ import annotations

import re
from decimal import Decimal

from kubernetes.utils.quantity import parse_quantity

SYNTAX = re.compile(r"\+?(\d+(?:\.\d*)?|\.\d+)(?:([eE][+-]?\d+)|([numkMGTPE]|[KMGTPE]i)?)")


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
    """A quantity as a number (cores for cpu, bytes for memory); ValueError if it is not one.
    The syntax is checked here as the API server checks it (the client's parser also takes a
    trailing space or a sign); the value is the kubernetes client's ``parse_quantity``."""
    m = None if isinstance(value, bool) else SYNTAX.fullmatch(text(value))
    if m is None:
        raise ValueError(f"not a quantity: {value!r}")
    if m.group(2) and abs(int(m.group(2)[1:])) > 100:  # far beyond any resource; keeps the arithmetic bounded
        raise ValueError(f"quantity exponent out of range: {value!r}")
    return parse_quantity(m.group(0))
