"""What a container really receives: Kubernetes' ``$(VAR)`` expansion, and kubesweep's documented
placeholders, as two small references.

A Job's ``command``, ``args`` and ``env[].value`` are not passed to the container as written: the
kubelet first expands ``$(NAME)`` references (k8s.io/kubernetes third_party/forked/golang/expansion,
``Expand`` and ``MappingFuncFor``). So a parameter value such as ``$(HOME)`` or ``a$$b`` that
kubesweep writes into argv unescaped reaches the trainer changed. :func:`k8s_expand` is a
line-by-line port of that Go code, byte for byte, including its quirk that ``$`` followed by a
non-ASCII character copies that character's first byte as if it were a Latin-1 code point
(``string(input[0])`` on a byte).

:func:`documented` is the other side: what docs/grid.md says a native command item (or env value)
becomes. A placeholder (``${name}`` and the built-ins) is replaced by its value, which must reach
the trainer exactly as written; the text around placeholders is the user's, ``$$`` in it is a
literal ``$``, and Kubernetes then reads it as usual (``"--out=$(OUTPUT_DIR)/ckpt"`` uses the
variable). The fuzzer asserts ``k8s_expand(manifest item) == documented(grid item)``.
"""

from __future__ import annotations

import json
import re
from typing import Mapping

from kubesweep.plan.trials import format_value

_OPERATOR, _OPEN, _CLOSE = ord("$"), ord("("), ord(")")


def _try_read_variable_name(data: bytes) -> tuple[bytes, bool, int]:
    """``tryReadVariableName``: (content read, is it a variable name, bytes consumed)."""
    first = data[0]
    if first == _OPERATOR:  # escaped operator
        return data[0:1], False, 1
    if first == _OPEN:  # scan to the closer
        for i in range(1, len(data)):
            if data[i] == _CLOSE:
                return data[1:i], True, i + 1
        return b"$(", False, 1  # incomplete reference: returned as is
    # Not an expression: the operator and the first "rune", which Go builds from one byte.
    return b"$" + chr(first).encode("utf-8"), False, 1


def k8s_expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``Expand(text, MappingFuncFor(env))``: ``$$`` is ``$``; ``$(NAME)`` is the value
    of NAME if defined, else left as written; any other ``$`` is kept.

    Works on UTF-8 bytes as Go does; a result that is no longer valid UTF-8 is returned with
    surrogate escapes, so it can never compare equal to a valid expected string.
    """
    data = text.encode("utf-8", "surrogatepass")
    lookup = {k.encode("utf-8", "surrogatepass"): v.encode("utf-8", "surrogatepass") for k, v in env.items()}
    out = bytearray()
    checkpoint = 0
    cursor = 0
    while cursor < len(data):
        if data[cursor] == _OPERATOR and cursor + 1 < len(data):
            out += data[checkpoint:cursor]
            read, is_var, advance = _try_read_variable_name(data[cursor + 1:])
            if is_var:
                out += lookup[read] if read in lookup else b"$(" + read + b")"
            else:
                out += read
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    out += data[checkpoint:]
    return out.decode("utf-8", "surrogateescape")


def container_env(container: dict) -> dict[str, str]:
    """The environment the kubelet gives a container: each ``env`` value expanded against the
    variables defined before it (later definitions of a name win)."""
    env: dict[str, str] = {}
    for item in container.get("env") or []:
        env[item["name"]] = k8s_expand(item.get("value", ""), env)
    return env


def container_argv(container: dict) -> list[str]:
    """``command`` + ``args`` as the process receives them, after ``$(VAR)`` expansion."""
    env = container_env(container)
    return [k8s_expand(item, env) for item in (container.get("command") or []) + (container.get("args") or [])]


_PLACEHOLDER = re.compile(r"\$\$|\$\{([^}]*)\}")


def documented(item: str, table: Mapping[str, str], env: Mapping[str, str]) -> str:
    """A native command item (or env / annotation value) as docs/grid.md defines it: ``${name}``
    is ``table[name]``, verbatim; the text between placeholders has ``$$`` as a literal ``$`` and
    is then expanded by Kubernetes against ``env`` (each stretch of text on its own: a value
    never joins the text around it into a ``$(VAR)`` reference)."""
    out: list[str] = []
    text = ""
    last = 0
    for m in _PLACEHOLDER.finditer(item):
        text += item[last:m.start()]
        last = m.end()
        if m.group(0) == "$$":
            text += "$"
            continue
        out.append(k8s_expand(text, env))
        out.append(table[m.group(1)])
        text = ""
    text += item[last:]
    out.append(k8s_expand(text, env))
    return "".join(out)


def native_argv(command: list[str], params: dict, builtins: Mapping[str, str], env: Mapping[str, str]) -> list[str | None]:
    """The argv docs/grid.md promises for a native command, one entry per argv item, as the
    process receives it; ``None`` where an item embeds ``${args_json}`` in other text (not
    compared: its spelling is free)."""
    table = {name: format_value(value) for name, value in params.items()}
    table.update(builtins)
    argv: list[str | None] = []
    for item in command:
        if item == "${args}":
            argv += [f"--{k}={format_value(v)}" for k, v in params.items()]
        elif item == "${args_no_hyphens}":
            argv += [f"{k}={format_value(v)}" for k, v in params.items()]
        elif "${args_json}" in item:
            argv.append(None)  # exactly "${args_json}" is compared as JSON by the caller
        else:
            argv.append(documented(item, table, env))
    return argv


def wandb_argv(command: list[str] | None, program: str | None, params: dict) -> list[str | None]:
    """The argv a W&B agent would run for a sweep config's ``command`` (docs/grid.md: the macros
    ``${env}``, ``${interpreter}``, ``${program}``, ``${args}``, ``${args_no_hyphens}``,
    ``${args_json}``; every other item is passed as written). ``None``: not compared."""
    items = command if command is not None else ["${env}", "${interpreter}", "${program}", "${args}"]
    argv: list[str | None] = []
    for item in items:
        if item == "${env}":
            argv.append("/usr/bin/env")
        elif item == "${interpreter}":
            argv.append("python")
        elif item == "${program}":
            argv.append(program)
        elif item == "${args}":
            argv += [f"--{k}={format_value(v)}" for k, v in params.items()]
        elif item == "${args_no_hyphens}":
            argv += [f"{k}={format_value(v)}" for k, v in params.items()]
        elif "${" in item:
            argv.append(None)
        else:
            argv.append(item)
    return argv


def same_json(text: str, params: dict) -> bool:
    """``${args_json}``: the parameters as one strict JSON object."""
    def refuse(name: str) -> None:
        raise ValueError(name)

    try:
        return json.loads(text, parse_constant=refuse) == params
    except ValueError:
        return False
