#!/usr/bin/env python3
"""What reading a sweep file costs, for every kind of file: the bad-input corpus, the examples,
hostile files made here (alias bombs, deep nesting, a 4 MiB file, ranges of 2^31 integers and
more), and the largest accepted plans (the default trial limit and the maximum).

Each input runs in a forked child (the interpreter and the libraries are already loaded, as in
`invoke render`): read, validate and plan it, then render every manifest's text in memory, as
`invoke render` does before it writes (writing the files costs the disk's time per trial, measured
by bench/render.py, whatever the input). The
child's wall time and its peak RSS above what it started with, the parent's resident set at the fork
(os.wait4), are printed per input, slowest
and largest first, with the kind of outcome (refused with a file:line message, or the number of
trials written).

    python bench/inputs.py                 # everything
    python bench/inputs.py --top 10        # only the 10 slowest and 10 largest
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from kubesweep.plan import planner as render  # noqa: E402
from kubesweep.errors import SpecError  # noqa: E402

MB = 1024 * 1024
NATIVE = """\
name: hostile
image: localhost:5000/kubesweep/mnist:latest
command: [python3, /app/train.py, "${{args}}"]
objective: {{metric: accuracy}}
{extra}
parameters:
{params}
"""


def bomb(levels: int) -> str:
    text = 'x-a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for i in range(1, levels):
        prev, name = chr(96 + i), chr(97 + i)
        text += f"x-{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]\n"
    return NATIVE.format(extra="", params="  lr: [0.1]") + "labels: {}\n" + text.replace("x-", "\nx-").replace("\n\n", "\n")


def hostile() -> dict[str, tuple[str, dict[str, str]]]:
    """Name -> (file text, overrides)."""
    cases: dict[str, tuple[str, dict[str, str]]] = {}
    for levels in (6, 9, 12):
        cases[f"alias bomb, {levels} levels of 9"] = (bomb(levels), {})
    for depth in (1_000, 100_000, 1_000_000):
        cases[f"nesting {depth:,} deep"] = ("a: " + "[" * depth + "]" * depth + "\n", {})
    big = "  lr: [" + ", ".join(str(i) for i in range(700_000)) + "]"
    cases["4 MiB file of values"] = (NATIVE.format(extra="", params=big)[: 4 * MB - 100] + "]\n", {})
    over = "  lr: [" + ", ".join(str(i) for i in range(800_000)) + "]"
    cases["5 MiB file"] = (NATIVE.format(extra="", params=over), {})
    cases["200,000 values (the cap) in one list"] = (NATIVE.format(extra="", params="  lr: [" + ",".join(["1"] * 199_990) + "]"), {})
    cases["random over 0..2^31-1, 10 trials"] = (NATIVE.format(extra="search: {algorithm: random, trials: 10}",
                                                                params="  x: {min: 0, max: 2147483647}"), {})
    cases["random over 1..1e12 as int, 10 trials"] = (NATIVE.format(extra="search: {algorithm: random, trials: 10}",
                                                                     params="  x: {min: 1, max: 1e12, type: int}"), {})
    cases["step 1e-12, random 10 trials"] = (NATIVE.format(extra="search: {algorithm: random, trials: 10}",
                                                           params="  x: {min: 0.0, max: 1.0, step: 1e-12}"), {})
    cases["grid of 2^31 points"] = (NATIVE.format(extra="", params="  x: {min: 0, max: 2147483647}"), {})
    cases["grid of 10^6000 points"] = (NATIVE.format(extra="", params="\n".join(
        f"  p{i}: {{min: 0, max: 1000000000000000000000000000000}}" for i in range(200))), {})
    cases["count 10^9"] = (NATIVE.format(extra="", params="  x: {min: 0.0, max: 1.0, count: 1000000000}"), {})
    cases["tpe over 0..10^29 and a 10^6-point step"] = (NATIVE.format(
        extra="search: {algorithm: tpe, trials: 10}",
        params="  x: {min: 0, max: 100000000000000000000000000000}\n  y: {min: 0.0, max: 1.0, step: 0.000001}"), {})
    cases["an integer of 5,000 digits"] = (NATIVE.format(extra="", params="  x: [" + "9" * 5000 + "]"), {})
    cases["random search asking 10^9 trials"] = (NATIVE.format(extra="search: {algorithm: random, trials: 1000000000}",
                                                               params="  x: {min: 0, max: 2147483647}"), {})
    cases["accepted: a grid of 10,000 trials (the default limit)"] = (NATIVE.format(extra="batchSize: 100", params=
        "  a: {min: 1, max: 100}\n  b: {min: 1, max: 100}"), {})
    cases["accepted: 100,000 random trials (the maximum limit)"] = (NATIVE.format(
        extra="search: {algorithm: random, trials: 100000, trialLimit: 100000}\nbatchSize: 100",
        params="  x: {min: 0, max: 2147483647}"), {})
    return cases


def corpus() -> dict[str, tuple[bytes, dict[str, str]]]:
    cases: dict[str, tuple[bytes, dict[str, str]]] = {}
    flags = {"--image": "image", "--name": "name", "--namespace": "namespace"}
    for path in sorted((ROOT / "tests" / "bad_inputs").glob("*/*.yaml")):
        data = path.read_bytes()
        over: dict[str, str] = {}
        for line in data.decode("utf-8", "replace").splitlines():
            if not line.startswith("#"):
                break
            if line.startswith("# args:"):
                words = line.split()[2:]
                over = {flags[f]: v for f, v in zip(words[::2], words[1::2])}
        cases[f"corpus {path.parent.name}/{path.name}"] = (data, over)
    for path in sorted((ROOT / "examples").glob("*/*.yaml")):
        over = {"image": "localhost:5000/x/y:1"} if "wandb" in path.name else {}
        cases[f"example {path.parent.name}/{path.name}"] = (path.read_bytes(), over)
    return cases


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def measure(name: str, data: bytes, overrides: dict[str, str], workdir: Path) -> dict[str, object]:
    src = workdir / "sweep.yaml"
    src.write_bytes(data)
    read_end, write_end = os.pipe()
    baseline = _rss_kb()  # the child starts with the parent's resident pages: its peak counts from here
    pid = os.fork()
    if pid == 0:  # the child: plan and render, say how it ended
        os.close(read_end)
        started = time.perf_counter()
        try:
            plan = render.plan(src, **overrides)
            rendered = sum(1 for _ in render._files(plan, "fast"))  # every manifest's text, in memory
            outcome = f"{rendered - 1:,} manifests rendered"
        except SpecError as exc:
            outcome = "refused: " + str(exc).splitlines()[0].split(": ", 1)[1][:70]
        except BaseException as exc:  # noqa: BLE001 - the point is to see anything else
            outcome = f"CRASHED: {type(exc).__name__}: {exc}"[:100]
        os.write(write_end, json.dumps({"seconds": time.perf_counter() - started, "outcome": outcome}).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        raw = f.read()
    _, status, usage = os.wait4(pid, 0)
    result = json.loads(raw) if raw else {"seconds": float("nan"), "outcome": f"child died (status {status})"}
    result["name"] = name
    result["peak_mb"] = max(usage.ru_maxrss - baseline, 0) / 1024
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--top", type=int, default=0, help="print only the N slowest and N largest")
    args = parser.parse_args()
    inputs = {**{k: (v.encode(), o) for k, (v, o) in hostile().items()}, **corpus()}
    render.plan(ROOT / "examples" / "mnist" / "grid.yaml")  # import and compile everything once, in the parent
    rows = []
    for name, (data, overrides) in inputs.items():
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(measure(name, data, overrides, Path(tmp)))
    parent = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{len(rows)} inputs; parent process (interpreter and libraries loaded) {parent:.0f} MB RSS;"
          " time and memory are the child's; memory is its peak above the parent's resident set at the fork\n")
    for title, key in (("slowest", "seconds"), ("largest peak memory", "peak_mb")):
        ordered = sorted(rows, key=lambda r: -float(r[key]))  # type: ignore[arg-type]
        shown = ordered[: args.top] if args.top else ordered
        print(f"{title}:")
        print(f"  {'seconds':>8}  {'MB':>7}  input — outcome")
        for r in shown:
            print(f"  {r['seconds']:8.3f}  {r['peak_mb']:7.1f}  {r['name']} — {r['outcome']}")
        print()
    crashed = [r for r in rows if str(r["outcome"]).startswith(("CRASHED", "child died"))]
    print(f"crashed: {len(crashed)}; over 5 s: {sum(float(r['seconds']) > 5 for r in rows)}; "
          f"over 300 MB: {sum(float(r['peak_mb']) > 300 for r in rows)}")


if __name__ == "__main__":
    main()
