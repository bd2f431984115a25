"""The invariants every input must hold, checked by :func:`check_case`.

An input (a :class:`Case`) is written to a fresh folder beside a jobs/ directory that already
holds an earlier experiment, and ``render.plan`` + ``render.write(validate="full")`` (``"fast"``
above FULL_VALIDATION_MAX trials) + the dry-run view run on it in a resource-limited child
(limits.py). Then:

1. **It succeeds or raises SpecError, within 5 s of CPU and 300 MiB** — nothing else: no other
   exception, no traceback, no MemoryError, no RecursionError, no CPU or memory limit hit, no
   crash of the interpreter.
2. **A SpecError is readable and true**: every line but the last is ``FILE:LINE:COL: message``
   with FILE the input's path (or ``<--image>`` and the like, for an override flag, at 1:1),
   LINE:COL inside the file, no raw control character anywhere (a key or value must be shown
   escaped, or the terminal runs it; a raw newline would also break the one-problem-per-line
   format), and the last line counts the problems.
3. **A SpecError writes nothing**: the jobs directory is byte-for-byte what it was.
4. **A success writes a sound tree and shows it safely**: only ``jobs/<experiment>/`` changed,
   plan.json is strict JSON (no NaN or Infinity) listing exactly the manifests on disk, and every
   manifest loads with libyaml, passes the pinned Kubernetes schema,
   ``kubesweep.apirules.job_problems`` (when that module exists) and the independent API-server
   reference (apiserver.py), and carries its trial's parameters in kubesweep.io/params. The
   dry-run view (planview.show, a rich table of the trials' values) renders without error and
   without a raw control character: a value is data, never markup or a terminal escape.
5. **Values reach the trainer verbatim**: after the kubelet's ``$(VAR)`` expansion (expansion.py),
   every argv item and env value of a native sweep is what docs/grid.md says (``${name}`` the
   parameter's value as ``format_value`` spells it, exactly; the text around it with ``$$`` a
   literal ``$``, then read by Kubernetes as usual); for W&B configs the argv a W&B agent would
   run (W&B expands nothing but its macros); for Katib the ``${trialParameters.X}`` string as
   written in feasibleSpace.list.
"""

from __future__ import annotations

import atexit
import json
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kubesweep.plan import planner as render
from kubesweep.k8s import jobschema as validation
from kubesweep.plan.trials import format_value

from . import apiserver, expansion
from .limits import CPU_SECONDS, OK, SPEC_ERROR, Outcome, run_limited

try:  # the lead's API-server rules; the fuzzer works without them
    from kubesweep.k8s import apirules  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - depends on the checkout
    apirules = None

#: Above this many trials the child writes with validate="fast": full validation costs ~1 ms a
#: trial, so a legitimate 10,000-trial sweep would measure the schema validator, not the input
#: handling, against the 5 s budget. The parent still schema-checks a sample of the manifests.
FULL_VALIDATION_MAX = 500
#: The most manifests the parent checks in detail (evenly spread over the plan).
SAMPLE = 60
#: Characters no message may carry raw: C0 controls but tab, DEL, C1 controls, and the Unicode
#: line and paragraph separators (str.splitlines and some terminals break lines there).
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
OVERRIDE_FLAGS = ("--image", "--name", "--namespace", "--trial-limit")
LAST_LINE = re.compile(r"(\d+) problems? found; nothing was written\.")
EARLIER = "earlier-experiment"
#: Rendered manifests are read back with libyaml, which (like go-yaml in kubectl and the API
#: machinery) refuses what PyYAML's pure-Python reader lets through, such as a surrogate pair
#: written as two \u escapes.
STRICT_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class Case:
    """One input: its bytes, the file name to give it, and the flags it is read with."""

    label: str  # how the input was made (for the failure message)
    data: bytes
    filename: str = "sweep.yaml"
    overrides: dict[str, Any] = field(default_factory=dict)
    context: Path | None = None  # a folder whose files go beside the input (a build context)

    def describe(self) -> str:
        text = self.data.decode("utf-8", "backslashreplace")
        shown = text if len(text) <= 4000 else text[:4000] + f"\n... ({len(text):,} characters in all)"
        flags = "".join(f" {k}={v!r}" for k, v in self.overrides.items())
        return f"input ({self.label}; {self.filename}{flags}):\n{shown}"


class Broken(AssertionError):
    """An invariant does not hold for an input."""


def _fail(case: Case, what: str, detail: str = "") -> Broken:
    return Broken(f"{what}\n{detail}\n\n{case.describe()}".rstrip())


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` (hidden ones too) with its bytes; None for directories."""
    return {p.relative_to(folder).as_posix(): (None if p.is_dir() else p.read_bytes()) for p in sorted(folder.rglob("*"))}


def make_jobs_dir(root: Path) -> Path:
    jobs = root / "jobs"
    (jobs / EARLIER / "batch-000").mkdir(parents=True)
    (jobs / EARLIER / "keep.txt").write_text("written by an earlier run\n")
    (jobs / EARLIER / "batch-000" / "trial.yaml").write_text("kind: Job\n")
    (jobs / EARLIER / "plan.json").write_text('{"experiment": "earlier-experiment"}\n')
    return jobs


def pipeline(path: str, jobs: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """What runs in the child: plan, write, show the dry-run view (``invoke sweep --dry-run``),
    and return what the parent needs to check the result."""
    import io

    from rich.console import Console

    from kubesweep.cli import planview

    p = render.plan(path, **overrides)
    n = len(p.trials)
    render.write(p, jobs, validate="full" if n <= FULL_VALIDATION_MAX else "fast")
    view = io.StringIO()
    planview.show(p, jobs, Console(file=view, width=200, color_system=None, force_terminal=False))
    exp = p.experiment
    source = None
    if p.source.format != "grid":  # the foreign document as read, for the W&B and Katib checks
        from kubesweep.spec.yamlsource import load

        source = load(path)[0]
    return {"experiment": exp.name, "format": p.source.format, "trials": n, "command": list(exp.command),
            "env": dict(exp.env), "source": source, "view": view.getvalue()}


def run_case(case: Case, root: Path, cpu_seconds: int = CPU_SECONDS) -> tuple[Outcome, Path, Path, dict[str, bytes | None]]:
    """Run ``case`` in a limited child inside ``root``: (outcome, input path, jobs dir, the jobs
    dir's snapshot from before)."""
    if case.context is not None:
        for item in case.context.iterdir():
            if item.is_file() and item.suffix != ".yaml":
                shutil.copyfile(item, root / item.name)
    path = root / case.filename
    path.write_bytes(case.data)
    jobs = make_jobs_dir(root)
    before = snapshot(jobs)
    outcome = run_limited(lambda: pipeline(str(path), str(jobs), case.overrides), cpu_seconds=cpu_seconds)
    return outcome, path, jobs, before


# ------------------------------------------------------------------------- 2. the error message


def _inside(text: str, line: int, column: int) -> bool:
    """LINE:COL names a place in the file, or just past the end of a line (or of the file).
    libyaml breaks lines at \\r, \\x85 and U+2028/9 as well as \\n: either reading counts."""
    for lines in (text.split("\n"), re.split("\r\n|[\r\n\x85\u2028\u2029]", text)):
        if 1 <= line <= len(lines) and 1 <= column <= len(lines[line - 1]) + 1:
            return True
        if line == len(lines) + 1 and column == 1:
            return True
    return False


def check_message(case: Case, message: str, path: Path) -> None:
    """Invariant 2: the SpecError's text."""
    bad = CONTROL.search(message)
    if bad:
        raise _fail(case, f"the error message holds the raw control character {bad.group(0)!r}", message)
    lines = message.split("\n")
    last = LAST_LINE.fullmatch(lines[-1])
    if not last or int(last.group(1)) != len(lines) - 1 or len(lines) < 2:
        raise _fail(case, "the error message does not end with 'N problem(s) found; nothing was written.' "
                    "counting its lines", message)
    text = case.data.decode("utf-8", "replace")
    flags = "|".join(re.escape(f"<{f}>") for f in OVERRIDE_FLAGS)
    rx = re.compile(rf"(?:(?P<file>{re.escape(str(path))})|(?P<flag>{flags})):(?P<line>\d+):(?P<col>\d+): (?P<msg>.+)")
    for number, line in enumerate(lines[:-1], 1):
        m = rx.fullmatch(line)
        if m is None:
            raise _fail(case, f"line {number} of the error message is not 'FILE:LINE:COL: message'", message)
        where = (int(m.group("line")), int(m.group("col")))
        if m.group("flag") and where != (1, 1):
            raise _fail(case, f"line {number} of the error message points into a flag at {where}", message)
        if m.group("file") and not _inside(text, *where):
            raise _fail(case, f"line {number} of the error message points at {where[0]}:{where[1]}, outside the file", message)


# ------------------------------------------------------------------------ 4, 5. a rendered tree


def _strict_json(text: str) -> Any:
    def refuse(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def _sample(items: list[Any]) -> list[Any]:
    if len(items) <= SAMPLE:
        return items
    step = len(items) / SAMPLE
    return [items[int(i * step)] for i in range(SAMPLE)] + [items[-1]]


def check_tree(case: Case, result: dict[str, Any], jobs: Path, before: dict[str, bytes | None]) -> None:
    """Invariant 4: what was written, and nothing else."""
    bad = CONTROL.search(result["view"])
    if bad:
        raise _fail(case, f"the dry-run view holds the raw control character {bad.group(0)!r}", result["view"][:3000])
    name = result["experiment"]
    after = snapshot(jobs)
    others = {k: v for k, v in after.items() if k != name and not k.startswith(name + "/")}
    if others != before:
        changed = sorted(set(others) ^ set(before) | {k for k in others if k in before and others[k] != before[k]})
        raise _fail(case, f"writing experiment {name!r} changed other things under jobs/: {changed[:10]}")
    tree = jobs / name
    try:
        index = _strict_json((tree / render.PLAN_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise _fail(case, f"{render.PLAN_FILE} is missing or not strict JSON: {exc}") from None
    trials = index.get("trials", [])
    listed = {t["file"] for t in trials}
    on_disk = {p.relative_to(tree).as_posix() for p in tree.rglob("*.yaml")}
    if listed != on_disk or len(trials) != result["trials"]:
        raise _fail(case, f"{render.PLAN_FILE} lists {len(trials)} trials in {len(listed)} files, "
                    f"the plan has {result['trials']}, and {len(on_disk)} manifests are on disk")
    for trial in _sample(trials):
        check_manifest(case, result, trial, tree / trial["file"])


def check_manifest(case: Case, result: dict[str, Any], trial: dict[str, Any], path: Path) -> None:
    """Invariants 4 and 5 for one rendered Job."""
    try:
        job = yaml.load(path.read_bytes(), Loader=STRICT_LOADER)
    except yaml.YAMLError as exc:
        raise _fail(case, f"{path.name} is not YAML that libyaml (or kubectl's go-yaml) reads: {exc}") from None
    if not isinstance(job, dict):
        raise _fail(case, f"{path.name} is not a mapping")
    errors = validation.schema_errors(job)
    if errors:
        raise _fail(case, f"{path.name} fails the Kubernetes schema", "\n".join(e.message for e in errors[:5]))
    problems = list(apirules.job_problems(job)) if apirules is not None else []
    if problems:
        raise _fail(case, f"{path.name} breaks kubesweep.apirules", "\n".join(map(str, problems[:10])))
    problems = apiserver.job_problems(job)
    if problems:
        raise _fail(case, f"{path.name} would be refused by the API server (or the runtime)", "\n".join(problems[:10]))
    meta = job["metadata"]
    if meta["name"] != trial["name"] or path.stem != trial["name"]:
        raise _fail(case, f"{path.name}: Job {meta['name']!r} for trial {trial['name']!r}")
    try:
        annotated = _strict_json(meta["annotations"]["kubesweep.io/params"])
    except (KeyError, ValueError) as exc:
        raise _fail(case, f"{path.name}: the kubesweep.io/params annotation is missing or not strict JSON: {exc}") from None
    if annotated != trial["params"]:
        raise _fail(case, f"{path.name}: kubesweep.io/params {annotated!r} differs from plan.json's {trial['params']!r}")
    container = job["spec"]["template"]["spec"]["containers"][0]
    if result["format"] == "grid":
        check_native_values(case, result, trial, job, container)
    elif result["format"] == "wandb":
        check_wandb_values(case, result, trial, container)
    elif result["format"] == "katib":
        check_katib_values(case, result, trial, container)


# ------------------------------------------------------------------------------ 5. verbatim values


def _compare(case: Case, what: str, got: list[str], want: list[str | None]) -> None:
    if len(got) != len(want):
        raise _fail(case, f"{what}: the container gets {len(got)} argv items, {len(want)} expected", f"got  {got!r}\nwant {want!r}")
    for i, (g, w) in enumerate(zip(got, want)):
        if w is not None and g != w:
            raise _fail(case, f"{what}: argv item {i} reaches the container as {g!r}, not {w!r} "
                        "(after the kubelet's $(VAR) expansion)", f"got  {got!r}\nwant {want!r}")


def check_native_values(case: Case, result: dict[str, Any], trial: dict[str, Any], job: dict, container: dict) -> None:
    env = expansion.container_env(container)
    builtins = {"trial": trial["name"], "experiment": result["experiment"], "namespace": job["metadata"]["namespace"],
                "output": env.get("OUTPUT_DIR", "")}
    params = trial["params"]
    want = expansion.native_argv(result["command"], params, builtins, env)
    got = expansion.container_argv(container)
    _compare(case, "native command", got, want)
    for i, item in enumerate(result["command"]):
        if item == "${args_json}" and not expansion.same_json(got[i], params):
            raise _fail(case, f"${{args_json}} reaches the container as {got[i]!r}, not the parameters {params!r}")
    table = {k: format_value(v) for k, v in params.items()} | builtins
    defined: dict[str, str] = {}  # the kubelet expands each env value against those before it
    for item in container.get("env") or []:
        name, raw = item["name"], item.get("value", "")
        value = result["env"].get(name)
        if name in result["env"] and "${args" not in str(value):
            text = value if isinstance(value, str) else format_value(value)
            expected = expansion.documented(text, table, defined)
            if expansion.k8s_expand(raw, defined) != expected:
                raise _fail(case, f"env {name} reaches the container as {expansion.k8s_expand(raw, defined)!r}, not {expected!r}")
        defined[name] = expansion.k8s_expand(raw, defined)


def check_wandb_values(case: Case, result: dict[str, Any], trial: dict[str, Any], container: dict) -> None:
    source = result["source"]
    command = source.get("command")
    program = source.get("program")
    if command is not None and not (isinstance(command, list) and all(isinstance(c, str) for c in command)):
        return
    want = expansion.wandb_argv(command, program if isinstance(program, str) else None, trial["params"])
    got = expansion.container_argv(container)
    _compare(case, "W&B command", got, want)
    env = expansion.container_env(container)
    for key, var in (("project", "WANDB_PROJECT"), ("entity", "WANDB_ENTITY")):
        if isinstance(source.get(key), str) and env.get(var) != source[key]:
            raise _fail(case, f"W&B {key} reaches the container as {var}={env.get(var)!r}, not {source[key]!r}")


_KATIB_ITEM = re.compile(r"(?P<head>[^$]*)\$\{trialParameters\.(?P<ref>[^}]+)\}")


def _katib_spellings(item: Any) -> set[str] | None:
    """How Katib passes one feasibleSpace.list item on (its API holds strings; a YAML boolean or
    null may be spelled as YAML spells it), or None where any spelling is defensible."""
    if isinstance(item, str):
        return None if "$" in item else {item}
    if isinstance(item, bool):
        return {"true" if item else "false"}
    if item is None:
        return {"null", ""}
    return None


def check_katib_values(case: Case, result: dict[str, Any], trial: dict[str, Any], container: dict) -> None:
    """``--flag=${trialParameters.X}`` items: a discrete or categorical value arrives as the string
    written in feasibleSpace.list (Katib substitutes that string), a YAML boolean or null as YAML
    spells it (not Python's True/None). Values holding a ``$`` are left out: under Katib the
    kubelet would expand them too, so either reading is defensible; so are unquoted numbers."""
    spec = result["source"].get("spec") or {}
    template = spec.get("trialTemplate") or {}
    refs = {t.get("name"): t.get("reference") for t in template.get("trialParameters") or [] if isinstance(t, dict)}
    lists = {p.get("name"): (p.get("feasibleSpace") or {}).get("list") for p in spec.get("parameters") or []
             if isinstance(p, dict) and p.get("parameterType") in ("discrete", "categorical")}
    pod = (((template.get("trialSpec") or {}).get("spec") or {}).get("template") or {}).get("spec") or {}
    primary = [c for c in pod.get("containers") or [] if isinstance(c, dict)
               and c.get("name") == template.get("primaryContainerName")] or (pod.get("containers") or [{}])[:1]
    items = list(primary[0].get("command") or []) + list(primary[0].get("args") or [])
    if not primary[0].get("command") and container.get("command"):
        raise _fail(case, "a Katib container without a command (the image's ENTRYPOINT runs, given the args) is "
                    f"rendered with command {container['command']!r}, which replaces the entrypoint")
    got = expansion.container_argv(container)
    if len(got) != len(items):
        raise _fail(case, f"Katib command: {len(items)} items written, {len(got)} reach the container", repr(got))
    for i, item in enumerate(items):
        m = _KATIB_ITEM.fullmatch(item) if isinstance(item, str) else None
        if m is None or refs.get(m.group("ref")) not in lists or not isinstance(lists[refs[m.group("ref")]], list):
            continue
        spellings = [_katib_spellings(v) for v in lists[refs[m.group("ref")]]]
        if any(s is None for s in spellings):
            continue
        allowed = set().union(*spellings)
        value = got[i][len(m.group("head")):]
        if not got[i].startswith(m.group("head")) or value not in allowed:
            raise _fail(case, f"Katib argv item {i} reaches the container as {got[i]!r}; the value should be "
                        f"spelled as written in feasibleSpace.list: one of {sorted(allowed)!r}")


# ------------------------------------------------------------------------------------ all of it


_BASE: list[Path] = []


def _workdir() -> Path:
    """A fresh folder per input, inside one folder per test session (so that an input whose
    build context is ``..`` sees an almost empty folder, not all of /tmp)."""
    if not _BASE or not _BASE[0].is_dir():
        _BASE[:] = [Path(tempfile.mkdtemp(prefix="kubesweep-fuzz-"))]
        atexit.register(shutil.rmtree, _BASE[0], True)
    return Path(tempfile.mkdtemp(dir=_BASE[0]))


def check_case(case: Case, cpu_seconds: int = CPU_SECONDS) -> Outcome:
    """Run one input and assert every invariant; return the outcome (for statistics)."""
    root = _workdir()
    try:
        outcome, path, jobs, before = run_case(case, root, cpu_seconds)
        if outcome.kind not in (OK, SPEC_ERROR):
            raise _fail(case, f"the input was neither accepted nor refused with a SpecError: {outcome.describe()}")
        if outcome.kind == SPEC_ERROR:
            check_message(case, outcome.message, path)
            if snapshot(jobs) != before:
                raise _fail(case, "a refused input changed the jobs directory", outcome.message)
        else:
            check_tree(case, outcome.result, jobs, before)
        return outcome
    finally:
        shutil.rmtree(root, ignore_errors=True)
