"""A user who owns one namespace and nothing else, on the real local cluster (marker: cluster).

The kubeconfig comes from playbooks/kubeconfig-user.yml (a ServiceAccount token, the default
Role, the namespace as the context's). With it, and no --namespace anywhere: a sweep runs in the
context's namespace and resumes after kill -9 without a Job made twice; status, logs, results,
cancel and clean work; every request is recorded and must be one the Role allows (the list in
docs/kubeconfig.md). A user whose Role lacks a permission gets one line naming it, and nothing is
created. A ResourceQuota: trials wait for it ("waiting: quota") and all finish; a quota no trial
can ever fit in stops the sweep before anything is created."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from kubesweep.local import cluster
from kubesweep.local import image
from kubesweep.run import journal

from .conftest import EXAMPLES, INVENTORY

pytestmark = pytest.mark.cluster

NAMESPACE = "kubesweep-scoped"
PLAYBOOK = "playbooks/kubeconfig-user.yml"
KUBESWEEP = [sys.executable, "-c", "from kubesweep.cli.app import main; main()"]
DEFAULT_RULES = {  # roles/kubeconfig_user/defaults/main.yml, as (group, resource) -> verbs
    ("batch", "jobs"): {"create", "get", "list", "watch", "patch", "delete", "deletecollection"},
    ("", "pods"): {"get", "list", "watch", "create", "delete"},
    ("", "pods/log"): {"get"},
    ("", "events"): {"get", "list", "watch"},
    ("", "configmaps"): {"get"},
    ("kueue.x-k8s.io", "localqueues"): {"get", "list"},
    ("kueue.x-k8s.io", "workloads"): {"get", "list", "watch"},
    ("visibility.kueue.x-k8s.io", "localqueues/pendingworkloads"): {"get"},
}


def _user(name: str, path: Path, rules: list[dict] | None = None) -> None:
    extra = {"kubeconfig_user_name": name, "kubeconfig_user_namespace": NAMESPACE, "kubeconfig_user_path": str(path)}
    if rules is not None:
        extra["kubeconfig_user_rules"] = rules
    run = cluster.playbook(INVENTORY, PLAYBOOK, ["-e", json.dumps(extra)], echo=False)
    assert run.ok, cluster.failure_excerpt(run.output)


@pytest.fixture(scope="module")
def users(local_cluster, api, tmp_path_factory):
    """bob: the default Role; carol: the same without creating Jobs. Namespace deleted afterwards."""
    from kubernetes.client.exceptions import ApiException

    home = tmp_path_factory.mktemp("users")
    _user("bob", home / "bob.conf")
    _user("carol", home / "carol.conf", [
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list", "watch", "delete"]},
        {"apiGroups": [""], "resources": ["pods", "pods/log", "events"], "verbs": ["get", "list", "watch"]}])
    yield {"bob": home / "bob.conf", "carol": home / "carol.conf"}
    try:
        api["core"].delete_namespace(NAMESPACE)
    except ApiException as exc:
        if exc.status != 404:
            raise


@pytest.fixture(scope="module")
def trainer(local_cluster):
    return image.ensure(EXAMPLES, "kubesweep/mnist", build_args={"BASE": "kubesweep/python-base:bookworm"}).reference


def _grid(tmp_path: Path, name: str, trainer: str, *, sleeps: str, cpu: str = "100m", batch: int = 2) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: {name}
        image: {trainer}
        command: [python3, -c, "import time, sys; time.sleep(float(sys.argv[1])); print('score=' + sys.argv[2])", "${{sleep}}", "${{i}}"]
        parameters:
          sleep: {sleeps}
          i: [1, 2]
        batchSize: {batch}
        objective: {{metric: score}}
        resources: {{cpu: {cpu}, memory: 64Mi}}
        """))  # no namespace: the kubeconfig context's
    return path


def ks(kubeconfig: Path, project: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KUBESWEEP, "--kubeconfig", str(kubeconfig), "--project-dir", str(project), *args],
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, "COLUMNS": "200"})


def jobs_in(api, experiment: str, namespace: str | None = None) -> dict[str, str]:
    selector = f"kubesweep.io/experiment={experiment}"
    found = (api["batch"].list_namespaced_job(namespace, label_selector=selector) if namespace
             else api["batch"].list_job_for_all_namespaces(label_selector=selector))
    return {f"{j.metadata.namespace}/{j.metadata.name}": j.metadata.uid for j in found.items}


def test_a_namespace_scoped_user_sweeps_resumes_and_manages_with_only_the_role(users, api, trainer, tmp_path):
    bob = users["bob"]
    grid = _grid(tmp_path, "scoped", trainer, sleeps="[3, 5]")
    argv = [*KUBESWEEP, "--kubeconfig", str(bob), "--project-dir", str(tmp_path), "sweep", str(grid)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not jobs_in(api, "scoped") and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    first = jobs_in(api, "scoped")
    assert first and proc.poll() is None, proc.stderr.read() if proc.poll() is not None else "no Job within 120 s"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert all(name.startswith(f"{NAMESPACE}/") for name in first)  # the context's namespace, not default

    final = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stdout[-2000:] + final.stderr[-2000:]
    assert "Traceback" not in final.stderr
    assert "not checked whether a node can take the trials (this kubeconfig may not list nodes)" in final.stdout + final.stderr
    jobs = jobs_in(api, "scoped")
    assert len(jobs) == 4 and all(jobs[n] == uid for n, uid in first.items())  # none made twice
    done = journal.load(tmp_path / "results" / "scoped")
    assert len(done) == 4 and all(r["state"] == "succeeded" for r in done.values())

    status = ks(bob, tmp_path, "status")  # all namespaces may not be listed: the context's instead
    assert status.returncode == 0, status.stderr
    assert f"{NAMESPACE}/scoped" in status.stdout
    trial = sorted(done)[0]
    logs = ks(bob, tmp_path, "logs", trial)
    assert logs.returncode == 0 and f"score={done[trial]['params']['i']}" in logs.stdout, logs.stdout + logs.stderr
    results = ks(bob, tmp_path, "results", str(grid))
    assert results.returncode == 0 and trial in results.stdout, results.stderr

    # cancel from another shell stops a running sweep of bob's; clean removes every Job
    long = _grid(tmp_path, "scoped-long", trainer, sleeps="[300]")
    running = subprocess.Popen([*KUBESWEEP, "--kubeconfig", str(bob), "--project-dir", str(tmp_path), "sweep", str(long)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(jobs_in(api, "scoped-long")) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    cancel = ks(bob, tmp_path, "cancel", "-e", "scoped-long")
    assert cancel.returncode == 0, cancel.stderr
    _, err = running.communicate(timeout=120)
    assert running.returncode == 1 and "Traceback" not in err, err[-2000:]
    for experiment in ("scoped", "scoped-long"):
        clean = ks(bob, tmp_path, "clean", "-e", experiment)
        assert clean.returncode == 0, clean.stderr
    deadline = time.monotonic() + 60
    while (jobs_in(api, "scoped") or jobs_in(api, "scoped-long")) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not jobs_in(api, "scoped") and not jobs_in(api, "scoped-long")


def _parse(path: str) -> tuple[str, str, str | None, bool]:
    """(API group, resource, namespace, whether one object is named) of a request path."""
    parts = path.strip("/").split("/")
    group, rest = ("", parts[2:]) if parts[0] == "api" else (parts[1], parts[3:])
    namespace = None
    if rest[:1] == ["namespaces"] and len(rest) > 2:
        namespace, rest = rest[1], rest[2:]
    resource = rest[0] + (f"/{rest[2]}" if len(rest) > 2 else "")
    return group, resource, namespace, len(rest) > 1


def _verb(method: str, named: bool, query: str) -> str:
    if method == "GET":
        return "watch" if "watch=true" in query else ("get" if named else "list")
    return {"POST": "create", "PATCH": "patch", "PUT": "update",
            "DELETE": "delete" if named else "deletecollection"}[method]


def test_every_request_of_a_sweep_and_its_commands_is_one_the_default_role_allows(users, trainer, tmp_path,
                                                                                  monkeypatch, capsys):
    """In this process, every request a sweep, status, logs, cancel and clean send is recorded at
    the HTTP pool; each must be one of the Role's verbs on one of its resources, in its namespace.
    The table is printed (docs/kubeconfig.md keeps it)."""
    import urllib3

    from kubesweep import sweep as sweeps
    from kubesweep.k8s import client as kube
    from kubesweep.run import lifecycle

    sent: list[tuple[str, str]] = []
    urlopen = urllib3.PoolManager.urlopen

    def recording(self, method, url, *args, **kwargs):
        sent.append((method, url))
        return urlopen(self, method, url, *args, **kwargs)

    monkeypatch.setattr(urllib3.PoolManager, "urlopen", recording)
    bob = users["bob"]
    target = sweeps.Target(str(bob))
    plan = sweeps.plan(_grid(tmp_path, "scoped-calls", trainer, sleeps="[1]"),
                       default_namespace=kube.context_namespace(str(bob)))
    outcome = sweeps.run(plan, target, sweeps.Workspace.under(tmp_path))
    assert outcome.exit_code == 0 and outcome.counts["succeeded"] == 2
    c = kube.clients(str(bob))
    assert sum(lifecycle.status(c, "scoped-calls")[f"{NAMESPACE}/scoped-calls"].counts.values()) == 2
    assert "score=" in lifecycle.logs(c, next(iter(journal.load(tmp_path / "results" / "scoped-calls"))))
    lifecycle.cancel(c, "scoped-calls")
    lifecycle.clean(c, "scoped-calls")

    table: dict[tuple[str, str, str], int] = {}
    for method, url in sent:
        parts = urlsplit(url)
        if parts.path in ("/readyz", "/livez", "/healthz", "/version"):
            continue  # open to every authenticated user (system:public-info-viewer)
        group, resource, namespace, named = _parse(parts.path)
        verb = _verb(method, named, parts.query)
        key = (verb, resource if not group else f"{resource}.{group}", namespace or "(cluster)")
        table[key] = table.get(key, 0) + 1
    with capsys.disabled():
        print("\nrequests of a sweep + status + logs + cancel + clean as a namespace-scoped user:")
        for (verb, resource, namespace), n in sorted(table.items()):
            print(f"  {verb:<16} {resource:<12} {namespace:<18} x{n}")
    outside = {k for k in table if k[2] != NAMESPACE}
    # the only requests beyond the namespace are the ones a scoped user is expected to be refused
    # and that kubesweep then goes without: reading its own namespace, nodes, every namespace's jobs/pods
    assert outside <= {("get", "namespaces", "(cluster)"), ("list", "nodes", "(cluster)"),
                       ("list", "jobs.batch", "(cluster)"), ("list", "pods", "(cluster)")}, outside
    # and in it: clean looking for the experiment's TensorBoard (a Deployment), which this user may
    # not list and so never made; refused, and clean goes on without it
    refused_here = {("list", "deployments.apps", NAMESPACE)}
    for verb, resource, namespace in set(table) - outside - refused_here:
        name, _, group = resource.partition(".")
        assert verb in DEFAULT_RULES.get((group, name), set()), (verb, resource)


def test_a_missing_permission_is_one_line_and_nothing_is_created(users, api, trainer, tmp_path):
    carol = users["carol"]
    grid = _grid(tmp_path, "scoped-denied", trainer, sleeps="[1]")
    r = ks(carol, tmp_path, "sweep", str(grid))
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert "Traceback" not in r.stderr and lines, r.stderr
    assert lines[-1].startswith(f"permission denied: system:serviceaccount:{NAMESPACE}:carol may not create jobs.batch "
                                f"in namespace {NAMESPACE}. Ask the cluster's admin"), r.stderr
    assert lines[:-1] == [] or all("not checked whether a node" in line for line in lines[:-1]), r.stderr
    assert not jobs_in(api, "scoped-denied")


def test_trials_wait_for_a_full_quota_and_a_quota_too_small_stops_the_sweep_first(users, api, trainer, tmp_path):
    from kubesweep import sweep as sweeps
    from kubesweep.k8s import client as kube

    bob = users["bob"]
    quota = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "cpu"},
             "spec": {"hard": {"requests.cpu": "250m"}}}
    api["core"].create_namespaced_resource_quota(NAMESPACE, quota)
    try:
        # each trial asks 200m: one fits at a time, the others wait on the quota and then run
        seen: list[tuple[str, str | None]] = []
        plan = sweeps.plan(_grid(tmp_path, "scoped-quota", trainer, sleeps="[3]", cpu="200m"),
                           default_namespace=kube.context_namespace(str(bob)))
        hooks = sweeps.Hooks(change=lambda rec: seen.append((rec.name, rec.reason)))
        outcome = sweeps.run(plan, sweeps.Target(str(bob)), sweeps.Workspace.under(tmp_path), hooks=hooks)
        assert outcome.exit_code == 0 and outcome.counts["succeeded"] == 2, outcome.counts
        assert any(reason == "waiting: quota" for _, reason in seen), seen
        done = journal.load(tmp_path / "results" / "scoped-quota")
        assert all(r["state"] == "succeeded" and r["attempt"] == 1 for r in done.values())

        # a trial asking 300m can never fit under 250m: said once, before any Job exists
        r = ks(bob, tmp_path, "sweep", str(_grid(tmp_path, "scoped-toobig", trainer, sleeps="[1]", cpu="300m")))
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stdout[-2000:] + r.stderr[-2000:]
        assert "no trial can ever run in namespace kubesweep-scoped: requests.cpu: one trial asks for 0.3, " \
               "quota cpu allows 0.25 in all" in r.stderr, r.stderr
        assert not jobs_in(api, "scoped-toobig")
    finally:
        api["core"].delete_namespaced_resource_quota("cpu", NAMESPACE)
        ks(bob, tmp_path, "clean", "-e", "scoped-quota")


def test_a_quota_on_the_number_of_jobs_holds_creates_back_until_finished_jobs_are_gone(users, api, trainer, tmp_path):
    """count/jobs.batch: the create itself is refused while the quota is full. The trial waits in
    line ("waiting: quota") and is created once a finished Job is deleted (here by its TTL)."""
    from kubesweep import sweep as sweeps
    from kubesweep.k8s import client as kube

    bob = users["bob"]
    quota = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "jobs"},
             "spec": {"hard": {"count/jobs.batch": "1"}}}
    api["core"].create_namespaced_resource_quota(NAMESPACE, quota)
    try:
        grid = _grid(tmp_path, "scoped-count", trainer, sleeps="[2]")
        grid.write_text(grid.read_text() + "ttlSecondsAfterFinished: 0\n")
        seen: list[tuple[str, str | None]] = []
        plan = sweeps.plan(grid, default_namespace=kube.context_namespace(str(bob)))
        hooks = sweeps.Hooks(change=lambda rec: seen.append((rec.name, rec.reason)))
        outcome = sweeps.run(plan, sweeps.Target(str(bob)), sweeps.Workspace.under(tmp_path), hooks=hooks)
        assert outcome.exit_code == 0 and outcome.counts["succeeded"] == 2, outcome.counts
        assert any(reason == "waiting: quota" for _, reason in seen), seen
    finally:
        api["core"].delete_namespaced_resource_quota("jobs", NAMESPACE)


def test_pod_security_restricted_takes_the_default_trials_and_refuses_root_before_anything_is_created(
        users, api, trainer, tmp_path):
    """PodSecurity admission decides on pods, not on the Jobs a sweep creates: without the dry run
    of a trial's pod, a refused sweep would sit with Jobs and no pods. kubesweep's default pod meets
    the restricted level (non-root, no privilege escalation, no capabilities, RuntimeDefault seccomp)."""
    bob = users["bob"]
    label = "pod-security.kubernetes.io/enforce"
    api["core"].patch_namespace(NAMESPACE, {"metadata": {"labels": {label: "restricted"}}})
    try:
        root = tmp_path / "root.yaml"
        root.write_text(_grid(tmp_path, "scoped-root", trainer, sleeps="[1]").read_text()
                        + "securityContext: {runAsUser: 0, runAsNonRoot: false}\n")
        r = ks(bob, tmp_path, "sweep", str(root))
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stdout[-2000:] + r.stderr[-2000:]
        last = r.stderr.strip().splitlines()[-1]
        assert last.startswith("the cluster refuses the trials' Job's pod (a dry run of scoped-root-") and \
            'violates PodSecurity "restricted:latest"' in last and "nothing was created" in last, r.stderr
        assert not jobs_in(api, "scoped-root")

        ok = ks(bob, tmp_path, "sweep", str(_grid(tmp_path, "scoped-restricted", trainer, sleeps="[1]")))
        assert ok.returncode == 0, ok.stdout[-2000:] + ok.stderr[-2000:]
        assert len(journal.load(tmp_path / "results" / "scoped-restricted")) == 2
    finally:
        api["core"].patch_namespace(NAMESPACE, {"metadata": {"labels": {label: None}}})
        ks(bob, tmp_path, "clean", "-e", "scoped-restricted")
