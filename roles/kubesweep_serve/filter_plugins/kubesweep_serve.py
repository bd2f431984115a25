"""Filters of the kubesweep_serve role.

kubesweep_serve_problems(settings, secret) -> [message, ...]: every problem of the role's settings
at once, each naming the variable (and the token by its index and name); nothing is applied while
there is one. ``settings`` is a mapping of the role's variables, ``secret`` the tokens Secret read
from the cluster ({} when absent, or when the inventory gives the tokens).

The tokens file's own format is `kubesweep serve --tokens`'s (which says file:line for its errors
too); this check stops what would keep the pod from starting before anything is applied.
"""

from __future__ import annotations

import re

LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
LABEL_TEXT = ("a DNS-1123 label (lowercase letters, digits and '-', starting and ending with a letter or digit, "
              "at most 63 characters)")
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*$")
TOKEN_KEYS = {"name", "token", "team", "namespaces", "admin"}
MIN_TOKEN = 16  # characters: secrets.token_urlsafe(16) is 22


def _label(problems: list[str], var: str, value, *, system: bool = False) -> None:
    if not isinstance(value, str) or not LABEL.match(value):
        problems.append(f"{var} must be {LABEL_TEXT} (got {value!r})")
    elif system and value.startswith("kube-"):
        problems.append(f"{var} {value} is a system namespace (kube-*): whoever may create Jobs there can run them "
                        "as the system's ServiceAccounts; choose a namespace of your own")


def _tokens(problems: list[str], tokens) -> None:
    var = "kubesweep_serve_tokens"
    if not isinstance(tokens, list):
        problems.append(f"{var} must be a list of {{name, token, team?, namespaces?, admin?}} (got {type(tokens).__name__})")
        return
    names: dict[str, int] = {}
    secrets: dict[str, int] = {}
    for i, entry in enumerate(tokens):
        where = f"{var}[{i}]"
        if not isinstance(entry, dict):
            problems.append(f"{where} must be a mapping of name, token, team, namespaces, admin")
            continue
        name = entry.get("name")
        if isinstance(name, str) and name:
            where = f"{where} ({name})"
            if name in names:
                problems.append(f"{where}: name {name} is also {var}[{names[name]}]'s")
            names.setdefault(name, i)
        else:
            problems.append(f"{where}: name must be a non-empty string")
        unknown = sorted(map(str, set(entry) - TOKEN_KEYS))
        if unknown:
            problems.append(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(TOKEN_KEYS))})")
        token = entry.get("token")
        if not isinstance(token, str) or len(token) < MIN_TOKEN or token != token.strip():
            # the value itself is never shown
            problems.append(f"{where}: token must be a string of at least {MIN_TOKEN} characters without surrounding "
                            "blanks (e.g. python3 -c 'import secrets; print(secrets.token_urlsafe())')")
        else:
            if token in secrets:
                problems.append(f"{where}: token is also {var}[{secrets[token]}]'s")
            secrets.setdefault(token, i)
        team, admin, spaces = entry.get("team"), entry.get("admin", False), entry.get("namespaces")
        if team is not None and not (isinstance(team, str) and LABEL.match(team)):
            problems.append(f"{where}: team must be {LABEL_TEXT}")
        if spaces is not None and (not isinstance(spaces, list) or not spaces
                                   or not all(isinstance(n, str) and LABEL.match(n) for n in spaces)):
            problems.append(f"{where}: namespaces must be a non-empty list of namespace names")
        if not isinstance(admin, bool):
            problems.append(f"{where}: admin must be true or false")
        elif admin and spaces is not None:
            problems.append(f"{where}: an admin token sees every namespace: give admin: true or namespaces, not both")
        elif not admin and spaces is None and team is None:
            problems.append(f"{where}: give namespaces (or team, whose namespace it then sees), or admin: true")


def kubesweep_serve_problems(settings: dict, secret: dict | None = None) -> list[str]:
    problems: list[str] = []
    _label(problems, "kubesweep_serve_namespace", settings.get("kubesweep_serve_namespace"), system=True)
    _label(problems, "kubesweep_serve_name", settings.get("kubesweep_serve_name"))
    _label(problems, "kubesweep_serve_tokens_secret", settings.get("kubesweep_serve_tokens_secret"))
    spaces = settings.get("kubesweep_serve_sweep_namespaces")
    if not isinstance(spaces, list):
        problems.append(f"kubesweep_serve_sweep_namespaces must be a list of namespaces (got {spaces!r})")
    else:
        for i, ns in enumerate(spaces):
            if ns != settings.get("kubesweep_serve_namespace"):  # the server's own is said once, above
                _label(problems, f"kubesweep_serve_sweep_namespaces[{i}]", ns, system=True)
    image = settings.get("kubesweep_serve_image")
    if not image:
        problems.append("kubesweep_serve_image is empty: build and push the image with `invoke serve-image` (it writes "
                        "the reference the role reads by default), or set kubesweep_serve_image to an image of "
                        "kubesweep with its serve extra")
    elif not isinstance(image, str) or not IMAGE.match(image):
        problems.append(f"kubesweep_serve_image must be an image reference (registry/repository:tag), got {image!r}")
    tb_image = settings.get("kubesweep_serve_tensorboard_image")
    if tb_image not in (None, "") and not (isinstance(tb_image, str) and IMAGE.match(tb_image)):
        problems.append("kubesweep_serve_tensorboard_image must be an image reference (registry/repository:tag), or "
                        f"empty for no TensorBoard (got {tb_image!r})")
    size = settings.get("kubesweep_serve_storage_size")
    if not QUANTITY.match(str(size)) or isinstance(size, bool):
        problems.append(f"kubesweep_serve_storage_size must be a Kubernetes quantity of bytes, e.g. 1Gi (got {size!r})")
    storage_class = settings.get("kubesweep_serve_storage_class")
    if storage_class not in (None, "") and not (isinstance(storage_class, str) and LABEL.match(storage_class.replace(".", "-"))):
        problems.append(f"kubesweep_serve_storage_class must be a StorageClass name, or empty for the default (got {storage_class!r})")
    user = settings.get("kubesweep_serve_run_as_user")
    if isinstance(user, bool) or not isinstance(user, int) or user <= 0:
        problems.append(f"kubesweep_serve_run_as_user must be a user id above 0: the pod runs as non-root (got {user!r})")
    port = settings.get("kubesweep_serve_service_port")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        problems.append(f"kubesweep_serve_service_port must be a port number, 1-65535 (got {port!r})")
    tokens = settings.get("kubesweep_serve_tokens")
    _tokens(problems, tokens)
    if isinstance(tokens, list) and not tokens:
        data = (secret or {}).get("data") or {}
        where = f"{settings.get('kubesweep_serve_namespace')}/{settings.get('kubesweep_serve_tokens_secret')}"
        if not secret:
            problems.append(f"no tokens: kubesweep_serve_tokens is empty and Secret {where} does not exist; give the "
                            "tokens in kubesweep_serve_tokens (in a vault), or make the Secret with a tokens.yaml key "
                            "(docs/serve.md)")
        elif not data.get("tokens.yaml"):
            problems.append(f"Secret {where} has no tokens.yaml key: the server reads its tokens file from it")
    return problems


class FilterModule:
    def filters(self):
        return {"kubesweep_serve_problems": kubesweep_serve_problems}
