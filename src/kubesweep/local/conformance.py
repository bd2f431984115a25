"""`invoke conformance`: Kubernetes' own end-to-end tests against a cluster of ours.

The test binary (e2e.test), built here from the pinned Kubernetes module, runs the selected
`[Conformance]` tests with the images built here (offline/e2e_images.py), which the tests are
told to pull from the cluster registry through KUBE_TEST_REPO_LIST. Results come from the junit
report the binary writes; the summary (counts, duration, failing names) is printed and written
next to it as summary.json.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kubesweep.errors import KubesweepError
from kubesweep.local.paths import cache_root

# The selection: the conformance tests of these SIGs.
SIGS = ("sig-apps", "sig-network", "sig-node", "sig-scheduling")
DEFAULT_FOCUS = r"\[(" + "|".join(SIGS) + r")\].*\[Conformance\]"
# Tests that cannot pass here, each with the reason (run with --skip "" to try them anyway).
OFFLINE_SKIPS: dict[str, str] = {}
# The node taints that are not a reason to wait: the control plane's, and the GPU workers'.
NON_BLOCKING_TAINTS = ("node-role.kubernetes.io/control-plane", "nvidia.com/gpu")
# The cluster registry as the nodes' containerd knows it (it mirrors localhost:5000 there).
REGISTRY = "localhost:5000"


class ConformanceError(KubesweepError):
    pass


@dataclass
class Result:
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    returncode: int = 0
    failures: list[str] = field(default_factory=list)
    report_dir: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.failed == 0 and self.passed > 0


def binaries(kube_version: str) -> dict[str, Path]:
    """e2e.test and ginkgo as `invoke artifacts --only conformance` builds them, and kubectl."""
    v = kube_version.lstrip("v")
    folder = cache_root() / "build" / f"kubernetes-e2e-{v}" / "bin"
    found = {name: folder / name for name in ("e2e.test", "ginkgo")}
    found["kubectl"] = cache_root() / "build" / f"kubernetes-{v}" / "bin" / "kubectl"
    missing = [str(p) for p in found.values() if not p.is_file()]
    if missing:
        raise ConformanceError(f"{', '.join(missing)} missing: `invoke artifacts --only conformance` builds them")
    return found


def repo_list(path: Path) -> Path:
    """KUBE_TEST_REPO_LIST: the e2e images, pause and the tests' etcd from the cluster registry."""
    path.write_text(f"promoterE2eRegistry: {REGISTRY}/e2e-test-images\ngcRegistry: {REGISTRY}\n"
                    f"gcEtcdRegistry: {REGISTRY}\n")
    return path


def skip_regex(extra: str | None) -> str:
    parts = [re.escape(name) for name in OFFLINE_SKIPS] + ([extra] if extra else [])
    return "|".join(parts)


def command(e2e: Path, kubeconfig: Path, focus: str, skip: str, report_dir: Path, *, procs: int = 1,
            ginkgo: Path | None = None, timeout: str = "4h", kubectl: Path | None = None) -> list[str]:
    """e2e.test alone (one process), or under the ginkgo CLI with ``procs`` parallel processes
    ([Serial] tests still run one at a time, at the end)."""
    own = [f"--kubeconfig={kubeconfig}", "--provider=skeleton", f"--report-dir={report_dir}",
           f"--non-blocking-taints={','.join(NON_BLOCKING_TAINTS)}"]
    if kubectl is not None:  # the tests that exec into pods use it: ours, at the cluster's version
        own.append(f"--kubectl-path={kubectl}")
    suite = [f"--focus={focus}", "--no-color", f"--timeout={timeout}", "-v"] + ([f"--skip={skip}"] if skip else [])
    if procs > 1:
        if ginkgo is None:
            raise ConformanceError("running in parallel needs the ginkgo CLI")
        return [str(ginkgo), f"--procs={procs}", *suite, str(e2e), "--", *own]
    return [str(e2e), *own, *(f"--ginkgo.{flag.lstrip('-')}" for flag in suite)]


def parse_junit(report_dir: Path) -> tuple[int, int, int, list[str]]:
    """(passed, failed, skipped, failing names) from every junit*.xml in the report directory."""
    passed = failed = skipped = 0
    failures: list[str] = []
    for path in sorted(report_dir.glob("junit*.xml")):
        for case in ET.parse(path).getroot().iter("testcase"):
            name = case.get("name", "")
            if name.startswith(("[SynchronizedBeforeSuite]", "[SynchronizedAfterSuite]", "[BeforeSuite]",
                                "[AfterSuite]", "[ReportAfterSuite]", "[ReportBeforeSuite]")):
                if case.find("failure") is not None or case.find("error") is not None:
                    failures.append(name)
                    failed += 1
                continue
            mark = case.find("skipped")
            if mark is not None and mark.get("message") == "skipped" and case.get("status") == "skipped":
                continue  # not selected: ginkgo lists every spec its focus left out this way
            if mark is not None or case.get("status") == "skipped":
                skipped += 1  # selected, and skipped by the test itself (it says why)
            elif case.find("failure") is not None or case.find("error") is not None:
                failed += 1
                failures.append(name.removeprefix("[It] "))
            else:
                passed += 1
    return passed, failed, skipped, failures


def run(kubeconfig: Path, kube_version: str, *, focus: str = DEFAULT_FOCUS, skip: str | None = None,
        report_dir: Path | None = None, echo: bool = True, timeout: float | None = None, procs: int = 1,
        suite_timeout: str = "4h") -> Result:
    """Run the selected tests; return their counts (the junit report and summary.json stay in report_dir)."""
    tools = binaries(kube_version)
    report_dir = Path(report_dir or cache_root() / "conformance" / time.strftime("%Y%m%d-%H%M%S"))
    report_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "KUBE_TEST_REPO_LIST": str(repo_list(report_dir / "repo-list.yaml"))}
    argv = command(tools["e2e.test"], kubeconfig, focus, skip_regex(skip), report_dir, procs=procs,
                   ginkgo=tools["ginkgo"], timeout=suite_timeout, kubectl=tools["kubectl"])
    started = time.monotonic()
    with open(report_dir / "e2e.log", "w") as log:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                cwd=report_dir)
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                log.write(line)
                if echo:
                    print(line, end="")
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
    passed, failed, skipped, failures = parse_junit(report_dir)
    result = Result(passed, failed, skipped, round(time.monotonic() - started, 1), code, failures, str(report_dir))
    (report_dir / "summary.json").write_text(json.dumps({**asdict(result), "focus": focus,
                                                          "skip": skip_regex(skip)}, indent=2) + "\n")
    return result
