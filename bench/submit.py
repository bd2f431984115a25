#!/usr/bin/env python3
"""Submit benchmark: N Jobs into the real API server of the local cluster, four ways, one run.

  direct        kubesweep's Python-client path (concurrent creates; with --workers 16,64 once per
                count of creates in flight, as direct-16, direct-64)
  k8s-batch     kubesweep's kubernetes.core path (playbooks/sweep.yml): the batch in a few chunks, one
                k8s module call per chunk, chunks in parallel in Ansible's forks
  k8s-one-call  the same playbook with the whole batch in one k8s module call
  kubectl       `kubectl apply -f <batch dir>`
  k8s-per-file  a kubernetes.core task looped over the files (one module run per Job) — measured
                on a sample, since at its pace N Jobs would take many minutes

Jobs are created suspended (spec.suspend: true), so the API server and etcd are measured, not
pods starting. Each path gets its own namespace, deleted (and waited for) before the next path
runs; all paths run in turn for --rounds rounds, and the medians are compared, since a 2-core
machine's noise moves single runs by ±30%. Prints Jobs/s per round, medians and ratios, and
how many of the machine's cores were busy while each path ran (and how much the hypervisor stole).

Also printed per path: the CPU each control-plane process spent per Job created (from /proc,
bench/load.py). The rates move with what else the host runs (the hypervisor's steal is printed
beside them); CPU per Job hardly does, so a setting's effect shows there first.

With --setting VAR=A,B each round runs every path once per value of a control_plane role
variable, applied by rerunning site.yml on the cluster's inventory (and put back to the
inventory's own value at the end), after which the benchmark waits for the controller-manager
and scheduler to lead again and settle. --controller-qps 400,100 is short for --setting
control_plane_controllers_api_qps=400,100: the Job controller reacts to every Job created
(here: a status update per suspended Job), and how fast it may do so decides how much of the
API server's CPU is left for the creates.

    python bench/submit.py --jobs 1000        (needs `invoke cluster`)
    python bench/submit.py --jobs 1000 --controller-qps 400,100
    python bench/submit.py --jobs 1000 --setting control_plane_apiserver_gogc=100,400
    python bench/submit.py --jobs 1000 --workers 16,64
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from kubesweep.local import cluster
from kubesweep.k8s import client as kube
from kubesweep.plan import planner as render
from kubesweep.run import submit
from kubesweep.run import submit_ansible  # noqa: E402
from kubesweep.local.cluster import default_inventory, kubeconfig_path  # noqa: E402
from kubesweep.local.paths import cache_root  # noqa: E402
from kubesweep.k8s.versions import pins  # noqa: E402
from load import Timed  # noqa: E402 - bench/load.py

PROCS = ("apiserver", "etcd", "controller-manager")

GRID = """\
name: bench-submit
image: localhost:5000/kubesweep/fake:1
command: [train, "${i}"]
parameters: {i: {min: 1, max: %d}}
batchSize: %d
search: {trialLimit: 100000}
objective: {metric: acc}
resources: {cpu: 100m, memory: 64Mi}
"""


def kubectl() -> Path:
    v = pins()["kube_version"]
    return cache_root() / "mirror" / "dl.k8s.io" / "release" / f"v{v}" / "bin" / "linux" / "amd64" / "kubectl"


def ansible_playbook(play: Path, extra: dict, kubeconfig: Path, work: Path) -> None:
    tool = Path(sys.executable).parent / "ansible-playbook"
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
    vars_file = work / f"{play.stem}-vars.json"
    vars_file.write_text(json.dumps({**extra, "kubeconfig": str(kubeconfig)}))
    subprocess.run([str(tool), str(play), "-e", f"@{vars_file}"], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL)


PER_FILE = """\
- name: One kubernetes.core task run per Job file
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Create one Job
      kubernetes.core.k8s:
        kubeconfig: "{{ kubeconfig }}"
        src: "{{ item }}"
        state: present
      loop: "{{ files }}"
"""


def median(values: list[float]) -> float:
    v = sorted(values)
    return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--per-file-sample", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3, help="each path once per round, in turn; medians are reported")
    ap.add_argument("--kubeconfig", default=None)
    ap.add_argument("--workers", default=str(submit.WORKERS),
                    help="comma-separated counts of creates in flight for the direct path, compared side by side")
    ap.add_argument("--controller-qps", default="",
                    help="comma-separated control_plane_controllers_api_qps values to compare, side by side per round")
    ap.add_argument("--setting", default="", metavar="VAR=A,B",
                    help="a control_plane role variable and the values of it to compare, side by side per round")
    args = ap.parse_args()
    inventory = default_inventory()
    kc = Path(args.kubeconfig) if args.kubeconfig else kubeconfig_path(default_inventory())
    if not kc.exists():
        inventory = ROOT / "inventory" / "local"
        local = kubeconfig_path(inventory)
        kc = local if local.exists() else kc
    var, values = "control_plane_controllers_api_qps", args.controller_qps
    if args.setting:
        if args.controller_qps or "=" not in args.setting:
            ap.error("--setting takes VAR=A,B, and not together with --controller-qps")
        var, values = args.setting.split("=", 1)
    settings: list[str | None] = list(dict.fromkeys(v.strip() for v in values.split(",") if v.strip())) or [None]
    if settings != [None] and args.kubeconfig:
        ap.error("--setting and --controller-qps rerun site.yml on the cluster's own inventory; leave out --kubeconfig")
    c = kube.clients(kc)
    work = Path(tempfile.mkdtemp(prefix="kubesweep-bench-submit-"))
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    direct = {w: "direct" if len(workers) == 1 else f"direct-{w}" for w in workers}
    paths = (*direct.values(), "k8s-batch", "k8s-one-call", "kubectl", "k8s-per-file")
    # every timed run, by setting and path: the Jobs it created and what it cost
    runs: dict[str | None, dict[str, list[tuple[int, Timed]]]] = {q: {p: [] for p in paths} for q in settings}
    made_ns: list[str] = []

    def settled() -> bool:
        """The controller-manager and the scheduler each lead (renewed their lease in the last
        5 s) and have led for 15 s: past the first sync of every object."""
        now = datetime.now(timezone.utc)
        for name in ("kube-controller-manager", "kube-scheduler"):
            try:
                spec = kube.request(c, "GET", f"/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/{name}")["spec"]
                renewed, acquired = (datetime.fromisoformat(spec[k].replace("Z", "+00:00")) for k in ("renewTime", "acquireTime"))
            except Exception:  # noqa: BLE001 - the API server restarting, or no leader yet
                return False
            if (now - renewed).total_seconds() > 5 or (now - acquired).total_seconds() < 15:
                return False
        return True

    def apply_setting(value: str | None) -> None:
        extra = ["-e", f"{var}={value}"] if value is not None else []
        run = cluster.playbook(inventory, extra=extra, echo=False)
        if not run.ok:
            raise SystemExit(f"site.yml with {extra or 'the inventory values'} failed:\n{run.output[-3000:]}")
        if not any(r["changed"] for r in run.recap.values()):
            return  # nothing restarted
        # A restarted API server makes the controller-manager and scheduler lose their leases and
        # exit; the kubelet restarts them after a back-off of up to minutes, and a new leader
        # syncs every object before it settles. Measured before that, the creates would have the
        # API server to themselves.
        time.sleep(15)
        deadline = time.monotonic() + 400
        while not settled():
            if time.monotonic() > deadline:
                raise SystemExit("the controller-manager and scheduler did not lead again within 400 s")
            time.sleep(3)

    try:
        grid = work / "grid.yaml"
        grid.write_text(GRID % (args.jobs, args.jobs))
        plan = render.plan(grid)
        target = render.write(plan, work / "jobs")
        batch_dir = target / "batch-000"
        docs = []
        for f in sorted(batch_dir.glob("*.yaml")):  # suspended: measure the API server, not pods
            doc = yaml.safe_load(f.read_text())
            doc["spec"]["suspend"] = True
            docs.append(doc)

        def fresh(ns: str, subset: list[dict] | None = None) -> list[dict]:
            made_ns.append(ns)
            kube.prepare_namespace(c, ns, None)
            out = []
            for doc in subset or docs:
                doc = json.loads(json.dumps(doc))
                doc["metadata"]["namespace"] = ns
                out.append(doc)
            return out

        def as_files(ns: str, bodies: list[dict]) -> Path:
            d = work / ns
            d.mkdir()
            for b in bodies:
                (d / f"{b['metadata']['name']}.yaml").write_text(yaml.safe_dump(b, sort_keys=False))
            return d

        def gone(ns: str) -> None:
            """Delete the namespace and wait, so the next path does not share the machine with it."""
            from kubernetes.client.exceptions import ApiException

            c.core.delete_namespace(ns)
            for _ in range(300):
                try:
                    c.core.read_namespace(ns)
                except ApiException as exc:
                    if exc.status == 404:
                        return
                time.sleep(1)

        def one_round(tag: str, into: dict[str, list[tuple[int, Timed]]]) -> None:
            def record(path: str, n: int, timed: Timed) -> None:
                into[path].append((n, timed))

            # direct: the runner's path (JSON bodies, creates in flight on a pool of connections)
            for w, path in direct.items():
                ns = f"bench-{path}-{tag}"
                bodies = [(b["metadata"]["name"], b) for b in fresh(ns)]
                with Timed() as timed:
                    made = submit.create_jobs(c, ns, bodies, workers=w)
                record(path, len(made), timed)
                assert sum(made.values()) == args.jobs
                gone(ns)

            # kubernetes.core (playbooks/sweep.yml): the batch in chunks, one module call each, in parallel;
            # then the same with the whole batch in one module call
            for path, n_chunks in (("k8s-batch", None), ("k8s-one-call", 1)):
                ns = f"bench-{path}-{tag}"
                d = as_files(ns, fresh(ns))
                with Timed() as timed:
                    submit_ansible.apply(sorted(d.glob("*.yaml")), kc, n_chunks=n_chunks)
                record(path, args.jobs, timed)
                gone(ns)

            # kubectl apply -f dir
            ns = f"bench-kubectl-{tag}"
            d = as_files(ns, fresh(ns))
            with Timed() as timed:
                subprocess.run([str(kubectl()), "--kubeconfig", str(kc), "apply", "-f", str(d)], check=True,
                               stdout=subprocess.DEVNULL)
            record("kubectl", args.jobs, timed)
            gone(ns)

            # kubernetes.core per file, on a sample
            ns = f"bench-per-file-{tag}"
            d = as_files(ns, fresh(ns, docs[: args.per_file_sample]))
            play = work / "per_file.yml"
            play.write_text(PER_FILE)
            with Timed() as timed:
                ansible_playbook(play, {"files": [str(p) for p in sorted(d.glob("*.yaml"))]}, kc, work)
            record("k8s-per-file", args.per_file_sample, timed)
            gone(ns)

        for rnd in range(args.rounds):
            for i, value in enumerate(settings):
                if value is not None:
                    apply_setting(value)
                one_round(f"{rnd}" if value is None else f"{rnd}-{i}", runs[value])
    finally:
        if settings != [None]:
            apply_setting(None)
        for ns in made_ns:
            try:
                c.core.delete_namespace(ns)
            except Exception:  # noqa: BLE001 - absent is fine
                pass
        shutil.rmtree(work, ignore_errors=True)

    def rates(value: str | None, path: str) -> list[float]:
        return [n / t.seconds for n, t in runs[value][path]]

    def cpu_ms(value: str | None, path: str, component: str) -> float:
        """Median CPU milliseconds the component spent per Job created."""
        return median([t.procs[component] / n * 1000 for n, t in runs[value][path]])

    for value in settings:
        by_path = {path: rates(value, path) for path in paths}
        results = {k: median(v) for k, v in by_path.items()}
        setting = "" if value is None else f", {var}={value}"
        print(f"submit benchmark: {args.jobs:,} suspended Jobs into the local cluster's API server{setting}, "
              f"{args.rounds} rounds, medians (per-file loop on a sample of {args.per_file_sample})")
        print(f"{'path':<14}{'Jobs/s':>10}{'s per 1000':>12}{'cores busy':>12}{'stolen':>8}   rounds")
        for name, rate in results.items():
            busy = median([t.cores for _, t in runs[value][name]])
            stolen = median([t.stolen for _, t in runs[value][name]])
            print(f"{name:<14}{rate:>10.1f}{1000 / rate:>12.1f}{busy:>12.2f}"
                  f"{stolen:>8.2f}   {', '.join(f'{r:.1f}' for r in by_path[name])}")
        print(f"cores busy: the whole machine's CPU use while the path ran (median), of {os.cpu_count()} cores: "
              "the cluster, the client, kubectl and Ansible together; stolen: cores' worth of time the "
              "hypervisor gave other guests meanwhile (median; much of it makes the rates those of a shared host)")
        print("control-plane CPU per Job created, ms (median): " + "; ".join(
            f"{name} " + ", ".join(f"{k} {cpu_ms(value, name, k):.2f}" for k in PROCS) for name in by_path))
        for name in (*direct.values(), "k8s-batch", "k8s-one-call"):
            print(f"{name}: {results[name] / results['kubectl']:.1f}x kubectl apply -f dir, "
                  f"{results[name] / results['k8s-per-file']:.1f}x the per-file kubernetes.core loop")
    if len(settings) > 1:
        first, *others = settings
        for other in others:
            for name in (*direct.values(), "kubectl"):
                a, b = median(rates(first, name)), median(rates(other, name))
                cpu_a, cpu_b = (sum(cpu_ms(v, name, k) for k in PROCS) for v in (first, other))
                api_a, api_b = cpu_ms(first, name, "apiserver"), cpu_ms(other, name, "apiserver")
                print(f"{name}: at {var}={other} {b / a:.2f}x the rate, {api_b / api_a:.2f}x the API server's CPU "
                      f"per Job and {cpu_b / cpu_a:.2f}x the control plane's, as at {first}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
