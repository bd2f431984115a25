"""A corpus of bad inputs: each must fail with one exact message at the right file:line:col,
and nothing may be written.

Every file under tests/bad_inputs/{grid,katib,wandb}/ holds exactly one mistake and starts with

    # expect: <the whole message, as printed after "FILE:LINE:COL: ", " (got ...)" included>
    # at: LINE:COL              (1-based, counting these header lines)
    # args: --image REPO:TAG    (optional: --image, --name, --namespace)

The test demands that one of the lines reported at LINE:COL is exactly ``FILE:LINE:COL: <expect>``:
a message that changes (even in its hint or its "(got ...)" suffix) fails the case until its
header is updated, so each wording change is seen and judged. Other problems the file causes may
be reported too, at other places or at the same one.

Cases in KNOWN_BAD show a message or position that is wrong today; they are strict xfails, so
fixing the code makes them fail until they are taken off the list.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kubesweep.plan import planner as render
from kubesweep.errors import SpecError

#: Cases whose expected message or position is what it SHOULD be, not what the code gives today.
KNOWN_BAD: set[str] = set()

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CORPUS = HERE / "bad_inputs"
FORMATS = ("grid", "katib", "wandb")
HEADER = re.compile(r"^#\s*(expect|at|args):\s?(.*)$")
FLAGS = {"--image": "image", "--name": "name", "--namespace": "namespace"}


def corpus_files() -> list[Path]:
    return sorted(p for fmt in FORMATS for p in (CORPUS / fmt).glob("*.yaml"))


def case_id(path: Path) -> str:
    return path.relative_to(CORPUS).as_posix()


def read_header(path: Path) -> dict[str, str]:
    header: dict[str, str] = {}
    # bytes, not text: a case may hold invalid UTF-8 or a raw NUL below its header
    for line in path.read_bytes().decode("utf-8", "replace").splitlines():
        if not line.startswith("#"):
            break
        m = HEADER.match(line)
        if m:
            header[m.group(1)] = m.group(2).rstrip()
    assert "expect" in header and header["expect"], f"{path}: no '# expect:' header"
    assert re.fullmatch(r"\d+:\d+", header.get("at", "")), f"{path}: no '# at: LINE:COL' header"
    return header


def overrides(header: dict[str, str]) -> dict[str, str]:
    words = shlex.split(header.get("args", ""))
    assert len(words) % 2 == 0, f"args must be flag/value pairs: {words}"
    out = {}
    for flag, value in zip(words[::2], words[1::2]):
        assert flag in FLAGS, f"unsupported flag {flag}"
        out[FLAGS[flag]] = value
    return out


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` (hidden ones too) with its bytes; None for directories."""
    return {
        p.relative_to(folder).as_posix(): (None if p.is_dir() else p.read_bytes())
        for p in sorted(folder.rglob("*"))
    }


def make_jobs_dir(tmp_path: Path) -> Path:
    jobs = tmp_path / "jobs"
    (jobs / "earlier-experiment" / "batch-000").mkdir(parents=True)
    (jobs / "earlier-experiment" / "keep.txt").write_text("written by an earlier run\n")
    (jobs / "earlier-experiment" / "batch-000" / "trial.yaml").write_text("kind: Job\n")
    return jobs


def reported_at(text: str, file: Path, at: str) -> list[str]:
    """The lines of an error report that point at ``file:at``."""
    prefix = f"{file}:{at}: "
    return [line for line in text.splitlines() if line.startswith(prefix)]


def expected_line(file: Path, at: str, expect: str) -> str:
    return f"{file}:{at}: {expect}"


def explain_mismatch(text: str, file: Path, at: str, expect: str) -> str:
    """Why the report lacks the expected line: nothing at the place, or what was said there instead."""
    at_place = reported_at(text, file, at)
    if not at_place:
        return f"no problem reported at {file.name}:{at}; got:\n{text}"
    said = "\n".join(f"  got:    {line[len(f'{file}:{at}: '):]}" for line in at_place)
    return f"the message at {file.name}:{at} differs:\n  expect: {expect}\n{said}\nwhole report:\n{text}"


def _params() -> list:
    params = []
    for path in corpus_files():
        marks = [pytest.mark.xfail(strict=True, reason="known bad message or position")] if case_id(path) in KNOWN_BAD else []
        params.append(pytest.param(path, id=case_id(path), marks=marks))
    return params


@pytest.mark.parametrize("source", _params())
def test_bad_input(source: Path, tmp_path: Path) -> None:
    header = read_header(source)
    copy = tmp_path / source.name
    shutil.copyfile(source, copy)
    jobs = make_jobs_dir(tmp_path)
    before = snapshot(jobs)

    with pytest.raises(SpecError) as info:
        plan = render.plan(copy, **overrides(header))
        render.write(plan, jobs)
    text = str(info.value)

    want = expected_line(copy, header["at"], header["expect"])
    assert want in reported_at(text, copy, header["at"]), explain_mismatch(text, copy, header["at"], header["expect"])
    assert snapshot(jobs) == before, "the jobs directory changed"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([copy.name, "jobs"])


def test_corpus_size() -> None:
    files = corpus_files()
    per_format = {fmt: len([p for p in files if p.parent.name == fmt]) for fmt in FORMATS}
    assert len(files) >= 150, per_format
    assert per_format["grid"] >= 80, per_format
    assert per_format["katib"] >= 40, per_format
    assert per_format["wandb"] >= 35, per_format
    assert not KNOWN_BAD - {case_id(p) for p in files}, "KNOWN_BAD names a missing case"
    for path in files:
        assert re.fullmatch(r"\d{2,3}-[a-z0-9-]+\.yaml", path.name), path
        read_header(path)


def test_cli_reports_without_traceback(tmp_path: Path) -> None:
    source = CORPUS / "grid" / "11-cpu-lots.yaml"
    header = read_header(source)
    copy = tmp_path / source.name
    shutil.copyfile(source, copy)
    jobs = make_jobs_dir(tmp_path)
    before = snapshot(jobs)

    env = {**os.environ, "COLUMNS": "80"}  # a narrow terminal must not wrap the FILE:LINE:COL lines
    result = subprocess.run(
        [sys.executable, "-m", "invoke", "sweep", "--grid", str(copy), "--dry-run", "--jobs-dir", str(jobs)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env=env,
    )
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    want = expected_line(copy, header["at"], header["expect"])
    assert want in reported_at(result.stderr, copy, header["at"]), \
        "on stderr: " + explain_mismatch(result.stderr, copy, header["at"], header["expect"])
    assert snapshot(jobs) == before, "the jobs directory changed"
