"""Shared machinery for reading foreign formats into the native grid.yaml shape.

A translator reads the source document (with its positions), writes a native dict, and records
for every native path where in the source file it came from, so that errors found later on the
native spec still point into the file the user wrote.
"""

from __future__ import annotations

from typing import Any

from kubesweep.errors import Collector, Mark
from kubesweep.spec.model import did_you_mean
from kubesweep.spec.yamlsource import PathKey, Positions


class Translator:
    def __init__(self, data: Any, pos: Positions, fmt: str):
        self.src = data
        self.pos = pos
        self.fmt = fmt
        self.out: dict[str, Any] = {}
        self.out_pos = Positions(pos.file)
        self.out_pos.values[()] = pos.value(())
        self.problems = Collector()
        #: native field names → the user's (set by each reader), so messages use their words
        self.names: dict[str, str] = {}
        #: trial templates read from a ConfigMap (Katib's trialTemplate.configMap): the file name
        #: their marks carry → (the mark of the configMap reference, the template's text)
        self.configmaps: dict[str, tuple[Mark, str]] = {}
        #: what the translation did that the user should hear of, though nothing is wrong (shown
        #: by plan and sweep, kept in the plan's index)
        self.notes: list[str] = []

    # ---- reading the source
    def get(self, path: PathKey, default: Any = None) -> Any:
        node = self.src
        for part in path:
            if isinstance(node, dict) and isinstance(part, str) and part in node:
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                node = node[part]
            else:
                return default
        return node

    def mapping(self, path: PathKey, required: bool = False) -> dict[str, Any]:
        value = self.get(path)
        if value is None:
            if required:
                self.error(path[:-1], f"{self.name(path[:-1]) or 'the document'} needs {path[-1]!r}")
            return {}
        if not isinstance(value, dict):
            self.error(path, f"{self.name(path)} must be a mapping", value)
            return {}
        return value

    def sequence(self, path: PathKey) -> list[Any]:
        value = self.get(path)
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(path, f"{self.name(path)} must be a list", value)
            return []
        return value

    def name(self, path: PathKey) -> str:
        text = ""
        for part in path:
            text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
        return text

    # ---- reporting
    def error(self, path: PathKey, message: str, *value: Any) -> None:
        self.problems.add(self.pos.value(path), message, *value)

    def error_key(self, path: PathKey, message: str) -> None:
        self.problems.add(self.pos.key(path), message)

    def known_keys(self, path: PathKey, allowed: list[str], meaningless: dict[str, str] | None = None) -> None:
        """Refuse keys we do not read: a typo gets a did-you-mean, a known-but-unsupported
        field gets the reason it has no meaning here."""
        meaningless = meaningless or {}
        for key in self.mapping(path):
            if key in allowed:
                continue
            where = self.name(path + (key,))
            if key in meaningless:
                self.error_key(path + (key,), f"{where} is not supported by kubesweep: {meaningless[key]}")
            else:
                self.error_key(path + (key,), f"unknown {self.fmt} field {where}{did_you_mean(key, allowed)}")

    # ---- writing the native document
    def put(self, dst: PathKey, value: Any, src: PathKey | None = None, mark: Mark | None = None) -> None:
        node = self.out
        for part in dst[:-1]:
            node = node.setdefault(part, {})
        node[dst[-1]] = value
        if src is not None:
            here = self.pos.value(src)
            self.out_pos.values[tuple(dst)] = here
            self.out_pos.keys[tuple(dst)] = self.pos.key(src)
            if isinstance(value, (dict, list)):
                self.pos.rebase(src, dst, self.out_pos)
        elif mark is not None:
            self.out_pos.values[tuple(dst)] = mark
            self.out_pos.keys[tuple(dst)] = mark

    def copy(self, src: PathKey, dst: PathKey, convert: Any = None) -> None:
        value = self.get(src)
        if value is None:
            return
        self.put(dst, convert(value) if convert else value, src)

    def at(self, dst: PathKey, src: PathKey) -> None:
        """Record that native ``dst`` (filled in later) was written at ``src``."""
        self.out_pos.values[tuple(dst)] = self.pos.value(src)
        self.out_pos.keys[tuple(dst)] = self.pos.key(src)
