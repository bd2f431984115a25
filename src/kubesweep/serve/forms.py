"""What `POST /api/sweeps` accepts, turned into a sweep file the CLI would accept, and how its
problems are told.

Two kinds of body:

- a sweep file as text (grid.yaml, a Katib Experiment or a W&B sweep config), detected by its
  content exactly as `kubesweep sweep` does;
- seed 002's simple JSON form (``application/json``): a model or an image, cpu or gpu, how many
  GPUs, and the parameters, written out as a grid.yaml first (``grid_from_form``).

Either way the sweep file is validated by the same call the CLI makes (``sweep.plan`` on the saved
file), and its problems come back as ``body:LINE:COL: message`` — the positions of the body sent,
never the server's own path — with the same problems as a list (``Refused.errors``). A problem
of the JSON form itself names the field instead (``form.parameters.lr: ...``).

A ``build:`` section is refused: the server has no build context (a Dockerfile beside the sweep
file on the user's machine); build and push the image first (`kubesweep image grid.yaml`) and name
it in ``image:``.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from kubesweep.errors import Issue, KubesweepError, Mark, SpecError

#: The largest body accepted (a sweep file is a few kilobytes); larger is 413 before it is read.
MAX_BODY = 1024 * 1024
#: How a file's problems name it in the API's answers.
BODY = "body"
#: Where a form's ``model`` finds its image: seed 002's convention of one image per model and
#: type (``<registry>/<model>-train-<cpu|gpu>:latest``). KUBESWEEP_MODEL_IMAGE sets another.
MODEL_IMAGE = os.environ.get("KUBESWEEP_MODEL_IMAGE", "localhost:5000/models/{model}-train-{type}:latest")
#: The command a form runs unless it gives one: seed 002's ``python train.py --KEY VALUE ...``.
FORM_COMMAND = ["python", "train.py"]

TEXT_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain")
JSON_TYPES = ("application/json",)

#: The form's fields: its own, seed 002's spellings of them, and the grid.yaml keys passed through.
FORM_FIELDS = {"name", "namespace", "image", "model", "model_name", "type", "gpus", "hw_num", "parameters",
               "command", "metric", "direction", "goal", "cpu", "memory", "batchSize", "maxFailedTrials",
               "search", "objective", "env", "queue", "output", "activeDeadlineSeconds"}


class Refused(KubesweepError):
    """A request the API answers with ``status`` and ``{"message", "errors"}``; nothing was written."""

    def __init__(self, status: int, message: str, errors: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors or []

    def body(self) -> dict[str, Any]:
        return {"message": self.message, "errors": self.errors}


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def sweep_text(body: bytes, content_type: str | None) -> tuple[bytes, dict[int, str] | None]:
    """The sweep file the body stands for, and for a JSON form which form field each of its lines
    came from (None for a sweep file sent as it is)."""
    if len(body) > MAX_BODY:
        raise Refused(413, f"the body is larger than {MAX_BODY // 1024} KiB; a sweep file is a few kilobytes")
    kind = media_type(content_type)
    if kind in JSON_TYPES:
        try:
            form = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise Refused(400, f"the JSON form is not JSON: {exc}") from None
        text, fields = grid_from_form(form)
        return text.encode(), fields
    if kind in TEXT_TYPES or not kind:
        if not body.strip():
            raise Refused(422, f"{BODY}:1:1: the body is empty; send a sweep file (grid.yaml, Katib Experiment or "
                          "W&B config) or the JSON form",
                          [{"line": 1, "column": 1, "message": "the body is empty"}])
        return body, None
    raise Refused(415, f"Content-Type {kind} is not accepted: send a sweep file as {', '.join(TEXT_TYPES[:3])} or "
                  "text/plain, or the JSON form as application/json")


# ------------------------------------------------------------------ seed 002's form
def _field_error(field: str, message: str) -> Refused:
    return Refused(422, f"form.{field}: {message}", [{"field": field, "message": message}])


def _check_name(form: dict[str, Any], key: str) -> str:
    value = form.get(key)
    if not isinstance(value, str) or not value:
        raise _field_error(key, "must be a non-empty string")
    return value


def grid_from_form(form: Any) -> tuple[str, dict[int, str]]:
    """Seed 002's JSON form as grid.yaml text, one form field per line (JSON is YAML's flow
    style), and which field each line holds: the grid's own problems are then told by field."""
    if not isinstance(form, dict):
        raise _field_error("(top)", "the JSON form is an object: {\"name\", \"image\" or \"model\", \"type\", "
                           "\"gpus\", \"parameters\"}")
    unknown = sorted(set(form) - FORM_FIELDS)
    if unknown:
        raise _field_error(unknown[0], f"unknown field; the form has {', '.join(sorted(FORM_FIELDS))}")
    lines: list[tuple[str, str]] = []  # (yaml line, form field)

    def put(key: str, value: Any, field: str, indent: str = "") -> None:
        try:
            lines.append((f"{indent}{key}: {json.dumps(value, allow_nan=False)}", field))
        except ValueError:  # json.loads reads NaN and Infinity; no sweep file can hold them
            raise _field_error(field, "NaN and Infinity are not values a trial can be given") from None

    put("name", _check_name(form, "name"), "name")
    if form.get("namespace") is not None:
        put("namespace", form["namespace"], "namespace")
    kind = form.get("type", "cpu")
    if kind not in ("cpu", "gpu"):
        raise _field_error("type", f"is cpu or gpu (got {kind!r})")
    gpu_key = "gpus" if "gpus" in form else "hw_num"
    gpus = form.get(gpu_key, 1 if kind == "gpu" else 0)
    if isinstance(gpus, str) and gpus.isdigit():  # seed 002 sent hw_num as a string
        gpus = int(gpus)
    if not isinstance(gpus, int) or isinstance(gpus, bool) or gpus < 0:
        raise _field_error(gpu_key, f"is a whole number of GPUs (got {gpus!r})")
    if kind == "cpu" and gpus:
        raise _field_error(gpu_key, f"a cpu trial asks for no GPU (got {gpus}); set \"type\": \"gpu\"")
    if kind == "gpu" and not gpus:
        raise _field_error(gpu_key, "a gpu trial asks for at least one GPU")
    model_key = "model" if "model" in form else "model_name"
    if "image" in form and model_key in form:
        raise _field_error("image", f"give \"image\" or \"{model_key}\", not both")
    if "image" in form:
        put("image", _check_name(form, "image"), "image")
    elif model_key in form:
        model = _check_name(form, model_key)
        if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", model):
            raise _field_error(model_key, f"is an image name part: lowercase letters, digits, '.', '_', '-' (got {model!r})")
        put("image", MODEL_IMAGE.format(model=model, type=kind), model_key)
    else:
        raise _field_error("image", "the form names the trainer's \"image\" (or a \"model\": "
                           f"{MODEL_IMAGE.format(model='MODEL', type=kind)})")
    params = form.get("parameters")
    if not isinstance(params, dict) or not params:
        raise _field_error("parameters", "is an object of parameter name -> [values] or {\"min\", \"max\", ...}")
    for name in params:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise _field_error(f"parameters.{name}", "a parameter name is letters, digits and '_' (it becomes "
                               "--NAME on the command line)")
    command = form.get("command", FORM_COMMAND)
    if not isinstance(command, list) or not command or not all(isinstance(a, str) for a in command):
        raise _field_error("command", "is a list of strings (the parameters are added as --NAME VALUE)")
    put("command", [*command, *(a for n in params for a in (f"--{n}", "${" + n + "}"))], "command")
    lines.append(("parameters:", "parameters"))
    for name, value in params.items():
        put(json.dumps(name), value, f"parameters.{name}", "  ")
    objective = dict(form.get("objective") or {}) if isinstance(form.get("objective", {}), dict) else None
    if objective is None:
        raise _field_error("objective", "is an object {\"metric\", \"direction\", \"goal\"}")
    lines.append(("objective:", "objective"))
    for key in ("metric", "direction", "goal"):
        if key in form:
            objective[key] = form[key]
    for key, value in objective.items():
        put(json.dumps(key), value, key if key in form else f"objective.{key}", "  ")
    if not objective:
        lines[-1] = ("objective: {}", "objective")
    lines.append(("resources:", "resources"))
    for key, default in (("cpu", "1"), ("memory", "5Gi")):
        put(key, form.get(key, default), key, "  ")
    if gpus:
        put('"nvidia.com/gpu"', gpus, gpu_key, "  ")
    for key in ("batchSize", "maxFailedTrials", "search", "env", "queue", "output", "activeDeadlineSeconds"):
        if key in form:
            put(key, form[key], key)
    text = "".join(line + "\n" for line, _ in lines)
    return text, {i: field for i, (_, field) in enumerate(lines, 1)}


# ------------------------------------------------------------------ problems, in the body's terms
def refused(exc: SpecError, saved: str, fields: dict[int, str] | None) -> Refused:
    """A SpecError of the saved file as the API tells it: body:LINE:COL (or the form's field)."""
    errors: list[dict[str, Any]] = []
    lines: list[str] = []
    for issue in exc.issues:
        text = str(issue).replace(saved, BODY)
        message = text.split(": ", 1)[1] if issue.mark.file == saved else text
        if issue.mark.file != saved:  # a position outside the body (a ConfigMap's template, a flag)
            errors.append({"line": None, "column": None, "message": message})
            lines.append(text)
        elif fields is not None:
            field = fields.get(issue.mark.line, "(form)")
            errors.append({"field": field, "message": message})
            lines.append(f"form.{field}: {message}")
        else:
            errors.append({"line": issue.mark.line, "column": issue.mark.column, "message": message})
            lines.append(text)
    noun = "problem" if len(lines) == 1 else "problems"
    return Refused(422, "\n".join(lines + [f"{len(lines)} {noun} found; nothing was written."]), errors)


def build_refused(mark: Mark | None, saved: str, fields: dict[int, str] | None) -> Refused:
    """A sweep file with ``build:`` sent to the server."""
    message = ("build: is not accepted through the API: the server has no build context (the Dockerfile beside "
               "your sweep file); build and push the image first (`kubesweep image FILE`) and name it in image:")
    at = mark if mark is not None and mark.file == saved else Mark(saved, 1, 1)
    return refused(SpecError([Issue(at, message)]), saved, fields)
