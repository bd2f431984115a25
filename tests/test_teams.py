"""Teams as inventory data (playbooks/teams.yml, role teams): the teams: list is checked against
the cluster in one task that names every problem (team and field) before anything is applied; on
the real local cluster (marker: cluster) two teams get their namespaces, quotas, Kueue queues and
members' kubeconfigs, a member works in its namespace only, and a rerun with a changed quota
changes exactly the objects whose spec differs."""

from __future__ import annotations

import importlib.util
import json
import re
import time
import uuid
from decimal import Decimal

import pytest
import yaml

from kubesweep.local import cluster

from .conftest import INVENTORY, ROOT

PLAYBOOK = "playbooks/teams.yml"
KUEUE = ("kueue.x-k8s.io", "v1beta2")


def _filters():
    spec = importlib.util.spec_from_file_location("teams_filters", ROOT / "roles/teams/filter_plugins/teams.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


teams = _filters()

# ------------------------------------------------------------------- no cluster needed

NODES = [{"status": {"allocatable": {"cpu": "2", "memory": "24581372Ki"}}},
         {"status": {"allocatable": {"cpu": "3950m", "memory": "16Gi", "nvidia.com/gpu": "4"}}}]
GOOD = {"name": "vision", "members": ["alice"], "quota": {"gpu": 2, "cpu": 4, "memory": "8Gi"}}


@pytest.mark.parametrize(("given", "number"), [
    (4, "4"), (0.5, "0.5"), ("500m", "0.5"), ("32Gi", str(32 * 2**30)), ("1e3", "1000"), ("2k", "2000"),
    (".5", "0.5"), ("-1", None), ("4 cores", None), ("1.5.2", None), (True, None), (None, None), ("", None),
    ("Gi", None), (-2, None)])
def test_quantities_are_read_as_kubernetes_reads_them(given, number):
    assert teams.quantity(given) == (None if number is None else Decimal(number))


def test_a_good_list_has_no_problem_and_empty_has_none():
    assert teams.teams_problems([GOOD, {"name": "nlp", "quota": {"gpu": 0, "cpu": "500m", "memory": "1Gi"},
                                        "borrowing_limit": {"gpu": 2}}], NODES, [], [], [{"metadata": {"name": "default"}},
                                                                                        {"metadata": {"name": "gpu"}}]) == []
    assert teams.teams_problems([], NODES, [], kueue_found=False) == []


@pytest.mark.parametrize(("team_list", "namespaces", "phrases"), [
    pytest.param([{"name": "vision", "members": ["alice"]}], [],
                 ["team vision: no quota: every team has one, e.g. quota: {gpu: 1, cpu: 8, memory: 32Gi}"], id="no-quota"),
    pytest.param([{"name": "vision", "quota": {"cpu": 4, "memory": "8Gi"}}], [],
                 ["team vision: quota.gpu is missing (nvidia.com/gpu; 0 for none)"], id="quota-without-gpu"),
    pytest.param([{"name": "vision", "quota": {"gpu": 1, "cpu": "4 cores", "memory": "8GB"}}], [],
                 ["team vision: quota.cpu '4 cores' is not a Kubernetes quantity",
                  "team vision: quota.memory '8GB' is not a Kubernetes quantity"], id="not-quantities"),
    pytest.param([{"name": "vision", "quota": {"gpu": 0.5, "cpu": 1, "memory": "1Gi"}}], [],
                 ["team vision: quota.gpu 0.5 is not a whole number of GPUs"], id="half-a-gpu"),
    pytest.param([{"name": "vision", "quota": {"gpu": 5, "cpu": 6, "memory": "64Gi"}}], [],
                 ["team vision: quota.gpu 5 is more than the cluster has: 4 nvidia.com/gpu allocatable on its 2 nodes",
                  "team vision: quota.cpu 6 is more than the cluster has: 5.95 cpu allocatable on its 2 nodes",
                  "team vision: quota.memory 64Gi is more than the cluster has: 39.4Gi memory allocatable on its 2 nodes"],
                 id="larger-than-the-cluster"),
    pytest.param([GOOD, {**GOOD, "namespace": "other"}, {**GOOD, "name": "nlp", "namespace": "vision"}], [],
                 ["team vision: the name vision is given to two teams (teams[0] and teams[1])",
                  "team nlp: namespace vision is given to two teams (team vision and team nlp)"], id="duplicates"),
    pytest.param([{**GOOD, "members": ["alice", "Bob", "a_b", "alice"]}], [],
                 ["team vision: member 'Bob' is not a user name: it must be a DNS-1123 label",
                  "team vision: member 'a_b' is not a user name", "team vision: member alice is listed twice"], id="members"),
    pytest.param([{**GOOD, "namespace": "kube-system"}], [],
                 ["team vision: namespace kube-system is a system namespace (kube-*)"], id="system-namespace"),
    pytest.param([{**GOOD, "namespace": "default"}], [{"metadata": {"name": "default"}}],
                 ["team vision: namespace default already exists and is not this team's: it has no kubesweep.io/team label",
                  "an existing namespace is never taken over"], id="namespace-of-nobody"),
    pytest.param([GOOD], [{"metadata": {"name": "vision", "labels": {"kubesweep.io/team": "nlp"}}}],
                 ["team vision: namespace vision already exists and is not this team's: it is team nlp's"],
                 id="namespace-of-another-team"),
    pytest.param([{**GOOD, "quotas": {}, "borrowing_limit": {"gpus": 1, "cpu": "x"}}], [],
                 ["team vision: quotas is not a field of a team", "team vision: borrowing_limit.gpus is not a quota",
                  "team vision: borrowing_limit.cpu 'x' is not a Kubernetes quantity"], id="typos"),
    pytest.param([{"namespace": "x", "quota": {"gpu": 0, "cpu": 1, "memory": "1Gi"}}, "vision"], [],
                 ["teams[0]: name is missing", "teams[1] is not a mapping"], id="no-name"),
])
def test_each_problem_names_the_team_and_the_field(team_list, namespaces, phrases):
    problems = teams.teams_problems(team_list, NODES, namespaces, [], [{"metadata": {"name": "default"}},
                                                                      {"metadata": {"name": "gpu"}}])
    text = "; ".join(problems)
    for phrase in phrases:
        assert phrase in text, f"{phrase!r} not in {problems}"


def test_kueue_missing_its_flavors_and_a_foreign_cluster_queue_are_named():
    assert teams.teams_problems([GOOD], NODES, kueue_found=False) == [
        "Kueue is not installed (no ClusterQueue API kueue.x-k8s.io/v1beta2): run site.yml with --tags kueue first, "
        "or set teams_queues: false for namespaces, quotas and kubeconfigs only"]
    assert teams.teams_problems([GOOD], NODES, kueue_found=False, check_queues=False) == []
    assert teams.teams_problems([GOOD], NODES, [], [], [{"metadata": {"name": "default"}}]) == [
        "teams_gpu_flavor: no ResourceFlavor gpu on the cluster (it has: default): the kueue role creates them"]
    ours = {"metadata": {"name": "vision", "labels": {"kubesweep.io/team": "vision"}}}
    flavors = [{"metadata": {"name": "default"}}, {"metadata": {"name": "gpu"}}]
    assert teams.teams_problems([GOOD], NODES, [], [ours], flavors) == []
    (problem,) = teams.teams_problems([GOOD], NODES, [], [{"metadata": {"name": "vision"}}], flavors)
    assert problem.startswith("team vision: a ClusterQueue vision already exists and is not this team's")


def test_the_objects_of_a_team():
    (team,) = teams.teams_normalized([{**GOOD, "borrowing_limit": {"gpu": 2, "memory": "4Gi"}}], "shared")
    assert (team["namespace"], team["cohort"]) == ("vision", "shared")
    ns, quota, cq, lq = teams.teams_manifests([team], "default", "gpu")
    labels = {"app.kubernetes.io/managed-by": "kubesweep", "kubesweep.io/team": "vision"}
    assert ns == {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "vision", "labels": labels}}
    assert quota["metadata"]["namespace"] == "vision"
    # Kueue lends: the namespace's quota lets the team's pods take its quota plus its borrowing
    # limit (cpu has none: up to what the nodes have, when they are known)
    assert quota["spec"] == {"hard": {"requests.nvidia.com/gpu": "4", "requests.cpu": "4", "requests.memory": "12Gi"}}
    on_nodes = teams.teams_manifests([team], "default", "gpu", nodes=NODES * 3)[1]
    assert on_nodes["spec"]["hard"]["requests.cpu"] == "17850m" and on_nodes["spec"]["hard"]["requests.memory"] == "12Gi"
    half = teams.teams_manifests([{**team, "borrowing_limit": {"cpu": "500m"}}], "default", "gpu", nodes=[])[1]
    assert half["spec"]["hard"]["requests.cpu"] == "4500m"  # as the API server writes it back
    plain = teams.teams_manifests([team], "default", "gpu", queues=False)[1]  # no Kueue: no borrowing
    assert plain["spec"] == {"hard": {"requests.nvidia.com/gpu": "2", "requests.cpu": "4", "requests.memory": "8Gi"}}
    assert cq["apiVersion"] == "kueue.x-k8s.io/v1beta2" and cq["metadata"]["name"] == "vision"
    assert cq["spec"]["cohortName"] == "shared"
    assert cq["spec"]["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "vision"}}
    assert cq["spec"]["preemption"] == {"reclaimWithinCohort": "Any"}  # a team gets its lent quota back
    (group,) = cq["spec"]["resourceGroups"]
    assert group["coveredResources"] == ["cpu", "memory", "nvidia.com/gpu"]
    # the CPU flavor first: a pod without GPUs never takes the GPU flavor's place
    assert group["flavors"] == [
        {"name": "default", "resources": [{"name": "cpu", "nominalQuota": "4"},
                                          {"name": "memory", "nominalQuota": "8Gi", "borrowingLimit": "4Gi"},
                                          {"name": "nvidia.com/gpu", "nominalQuota": "0", "borrowingLimit": "0"}]},
        {"name": "gpu", "resources": [{"name": "cpu", "nominalQuota": "4"},
                                      {"name": "memory", "nominalQuota": "8Gi", "borrowingLimit": "4Gi"},
                                      {"name": "nvidia.com/gpu", "nominalQuota": "2", "borrowingLimit": "2"}]}]
    assert lq == {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue",
                  "metadata": {"name": "vision", "namespace": "vision", "labels": labels}, "spec": {"clusterQueue": "vision"}}
    one = teams.teams_manifests([team], "gpu", "gpu")[2]["spec"]["resourceGroups"][0]["flavors"]
    assert [f["name"] for f in one] == ["gpu"]
    assert [m["kind"] for m in teams.teams_manifests([team], queues=False)] == ["Namespace", "ResourceQuota"]


def test_the_inventories_document_an_empty_list():
    for inventory in ("local", "single", "baremetal", "gcp"):
        text = (ROOT / "inventory" / inventory / "group_vars/all/teams.yml").read_text()
        assert yaml.safe_load(text) == {"teams": []}, inventory
        assert "# teams:" in text and "quota" in text


# ------------------------------------------------------------------ the real cluster


def _run(extra: dict) -> cluster.PlaybookRun:
    return cluster.playbook(INVENTORY, PLAYBOOK, ["-e", json.dumps(extra)], echo=False)


def _changed_items(run: cluster.PlaybookRun) -> set[str]:
    return set(re.findall(r"^changed: \[[^\]]+\] => \(item=([^)]+)\)", run.output, re.M))


def _kueue_expected() -> bool:
    """site.yml installs Kueue when it imports the kueue playbook: then the queues are tested too."""
    return "kueue" in (ROOT / "site.yml").read_text()


@pytest.fixture(scope="module")
def admin(local_cluster):
    from kubernetes import client, config

    api = config.new_client_from_config(str(local_cluster["kubeconfig"]))
    return {"core": client.CoreV1Api(api), "custom": client.CustomObjectsApi(api), "rbac": client.RbacAuthorizationV1Api(api)}


def _kueue_found(admin) -> bool:
    from kubernetes.client.exceptions import ApiException

    try:
        admin["custom"].list_cluster_custom_object(*KUEUE, "clusterqueues")
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def _cleanup(admin, namespaces: list[str], queues: list[str]) -> None:
    from kubernetes.client.exceptions import ApiException

    for ns in namespaces:
        try:
            admin["core"].delete_namespace(ns)
        except ApiException as exc:
            if exc.status != 404:
                raise
    for name in queues:
        try:
            admin["custom"].delete_cluster_custom_object(*KUEUE, "clusterqueues", name)
        except ApiException as exc:
            if exc.status != 404:
                raise


@pytest.fixture(scope="module")
def two_teams(local_cluster, admin, tmp_path_factory):
    """Teams <p>-a (alice) and <p>-b (bob) in cohort <p>: run, rerun with a's cpu quota raised, run
    again unchanged. Namespaces and ClusterQueues deleted afterwards."""
    prefix = f"kst-{uuid.uuid4().hex[:5]}"
    a, b = f"{prefix}-a", f"{prefix}-b"
    queues = _kueue_found(admin)
    if not queues and _kueue_expected():
        pytest.fail("site.yml imports Kueue but the cluster serves no ClusterQueue API")
    kube_dir = tmp_path_factory.mktemp("teams") / "kube"
    team_list = [{"name": a, "members": ["alice"], "quota": {"gpu": 0, "cpu": 1, "memory": "1Gi"},
                  "borrowing_limit": {"cpu": "500m"}},
                 {"name": b, "members": ["bob"], "quota": {"gpu": 0, "cpu": "500m", "memory": "512Mi"}}]
    extra = {"teams": team_list, "teams_cohort": prefix, "teams_queues": queues, "teams_kubeconfig_dir": str(kube_dir)}
    raised = {**extra, "teams": [{**team_list[0], "quota": {**team_list[0]["quota"], "cpu": 2}}, team_list[1]]}
    try:
        runs = [_run(extra)]
        if runs[0].ok:
            runs += [_run(raised)]
        if runs[-1].ok:
            runs += [_run(raised)]
        yield {"a": a, "b": b, "cohort": prefix, "queues": queues, "runs": runs,
               "kubeconfig": {m: kube_dir / f"kubesweep-{INVENTORY.name}-{ns}-{m}.conf" for m, ns in (("alice", a), ("bob", b))}}
    finally:
        _cleanup(admin, [a, b], [a, b])


@pytest.mark.cluster
def test_two_teams_rerun_with_a_changed_quota_changes_only_that(two_teams):
    runs = two_teams["runs"]
    assert len(runs) == 3 and all(r.ok for r in runs), cluster.failure_excerpt(runs[-1].output)
    a, b = two_teams["a"], two_teams["b"]
    first, raised, again = runs
    objects = {f"Namespace {a}", f"ResourceQuota {a}/kubesweep-team", f"Namespace {b}", f"ResourceQuota {b}/kubesweep-team"}
    if two_teams["queues"]:
        objects |= {f"ClusterQueue {a}", f"LocalQueue {a}/{a}", f"ClusterQueue {b}", f"LocalQueue {b}/{b}"}
    assert _changed_items(first) == objects
    # tasks changed: the apply, and per member the ServiceAccount/Role/RoleBinding/token apply and the kubeconfig
    assert first.changed >= 1 + 2 * 2, first.recap
    # the raised quota: its ResourceQuota and ClusterQueue, nothing else (no member, no other team)
    assert _changed_items(raised) == {f"ResourceQuota {a}/kubesweep-team"} | ({f"ClusterQueue {a}"} if two_teams["queues"] else set())
    assert raised.changed == 1, raised.output[-3000:]  # one task: the apply, with its one or two items
    assert again.changed == 0 and _changed_items(again) == set(), again.output[-3000:]
    for path in two_teams["kubeconfig"].values():
        assert path.stat().st_mode & 0o777 == 0o600


@pytest.mark.cluster
def test_the_namespaces_and_quotas_have_the_teams_numbers(two_teams, admin):
    a, b = two_teams["a"], two_teams["b"]
    nodes = [{"status": {"allocatable": n.status.allocatable}} for n in admin["core"].list_node().items]
    everything = teams._allocatable(nodes)  # what a resource without a borrowing limit may reach
    cpu, memory = (teams._canonical(k, everything[k]) for k in ("cpu", "memory"))
    if not two_teams["queues"]:  # no Kueue, no borrowing: the quotas as given
        cpu, memory = None, None
    for team, hard in ((a, {"requests.nvidia.com/gpu": "0", "requests.cpu": "2500m" if cpu else "2",
                            "requests.memory": memory or "1Gi"}),
                       (b, {"requests.nvidia.com/gpu": "0", "requests.cpu": cpu or "500m",
                            "requests.memory": memory or "512Mi"})):
        labels = admin["core"].read_namespace(team).metadata.labels
        assert labels["kubesweep.io/team"] == team and labels["app.kubernetes.io/managed-by"] == "kubesweep"
        assert admin["core"].read_namespaced_resource_quota("kubesweep-team", team).spec.hard == hard


@pytest.mark.cluster
def test_the_queues_point_at_the_teams_cluster_queue_in_the_cohort(two_teams, admin):
    if not two_teams["queues"]:
        pytest.skip("no Kueue on this cluster yet (site.yml does not import it): namespaces, quotas and kubeconfigs only")
    a, b, cohort = two_teams["a"], two_teams["b"], two_teams["cohort"]
    custom = admin["custom"]
    for team, cpu, borrow in ((a, "2", "500m"), (b, "500m", None)):
        local = custom.get_namespaced_custom_object(*KUEUE, team, "localqueues", team)
        assert local["spec"]["clusterQueue"] == team
        queue = custom.get_cluster_custom_object(*KUEUE, "clusterqueues", team)
        assert queue["spec"]["cohortName"] == cohort
        assert queue["spec"]["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": team}}
        assert queue["spec"]["preemption"]["reclaimWithinCohort"] == "Any"
        flavors = {f["name"]: {r["name"]: r for r in f["resources"]} for f in queue["spec"]["resourceGroups"][0]["flavors"]}
        assert set(flavors) == {"default", "gpu"}
        assert flavors["gpu"]["cpu"]["nominalQuota"] == cpu and flavors["gpu"]["cpu"].get("borrowingLimit") == borrow
        assert flavors["default"]["nvidia.com/gpu"]["nominalQuota"] in (0, "0")
        deadline = time.monotonic() + 30  # Kueue marks it active once it has seen the flavors
        while True:
            queue = custom.get_cluster_custom_object(*KUEUE, "clusterqueues", team)
            active = [c for c in queue.get("status", {}).get("conditions", []) if c["type"] == "Active"]
            if (active and active[0]["status"] == "True") or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert active and active[0]["status"] == "True", queue.get("status")


def _job(name: str) -> dict:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"suspend": True, "template": {"spec": {"restartPolicy": "Never", "containers": [
                {"name": "trial", "image": "localhost:5000/none:1", "command": ["true"],
                 "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}}}}


@pytest.mark.cluster
def test_a_members_kubeconfig_works_in_its_teams_namespace_only(two_teams, admin):
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    a, b = two_teams["a"], two_teams["b"]
    path = two_teams["kubeconfig"]["alice"]
    kubeconfig = yaml.safe_load(path.read_text())
    assert kubeconfig["contexts"][0]["context"]["namespace"] == a
    api = config.new_client_from_config(str(path))
    core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
    assert batch.create_namespaced_job(a, _job("alice-job")).metadata.namespace == a
    core.list_namespaced_pod(a)
    admin["core"].create_namespaced_config_map(a, {"metadata": {"name": "trial-template"}, "data": {"t": "x"}})
    assert core.read_namespaced_config_map("trial-template", a).data == {"t": "x"}  # Katib's ConfigMap templates
    for what, call in {"list the other team's pods": lambda: core.list_namespaced_pod(b),
                       "create a Job in the other team's namespace": lambda: batch.create_namespaced_job(b, _job("x")),
                       "change its own quota": lambda: core.patch_namespaced_resource_quota(
                           "kubesweep-team", a, {"spec": {"hard": {"requests.cpu": "100"}}})}.items():
        with pytest.raises(ApiException) as err:
            call()
        assert err.value.status == 403, f"{what}: {err.value.status} {err.value.reason}"


@pytest.mark.cluster
def test_bad_teams_are_refused_with_every_problem_and_nothing_is_created(local_cluster, admin, tmp_path):
    """One run with several mistakes, beside a good team: one failed task lists them all, and not
    even the good team's namespace is made."""
    prefix = f"kst-{uuid.uuid4().hex[:5]}"
    taken, theirs = f"{prefix}-taken", f"{prefix}-theirs"
    admin["core"].create_namespace({"metadata": {"name": taken}})
    admin["core"].create_namespace({"metadata": {"name": theirs, "labels": {"kubesweep.io/team": f"{prefix}-other"}}})
    nodes = admin["core"].list_node().items
    gpus = sum(int(n.status.allocatable.get("nvidia.com/gpu", "0")) for n in nodes)
    good = {"name": f"{prefix}-good", "members": ["alice"], "quota": {"gpu": 0, "cpu": 1, "memory": "1Gi"}}
    bad = [good,
           {"name": f"{prefix}-noquota", "members": ["bob"]},
           {"name": f"{prefix}-big", "quota": {"gpu": gpus + 1, "cpu": "1 core", "memory": "1Gi"}},
           {"name": f"{prefix}-dup", "namespace": f"{prefix}-good", "members": ["Carol"], "quota": good["quota"]},
           {"name": f"{prefix}-x", "namespace": taken, "quota": good["quota"]},
           {"name": f"{prefix}-y", "namespace": theirs, "quota": good["quota"]}]
    try:
        run = _run({"teams": bad, "teams_queues": False, "teams_kubeconfig_dir": str(tmp_path / "kube")})
        text = " ".join(run.output.split()).replace("''", "'")
        assert run.returncode == 2 and not run.ok, text[-2000:]
        assert "TASK [teams : Check the teams]" in text and "changed=0" in run.output
        for phrase in [f"team {prefix}-noquota: no quota: every team has one",
                       f"team {prefix}-big: quota.gpu {gpus + 1} is more than the cluster has: {gpus} nvidia.com/gpu "
                       f"allocatable on its {len(nodes)} nodes",
                       f"team {prefix}-big: quota.cpu '1 core' is not a Kubernetes quantity",
                       f"team {prefix}-dup: namespace {prefix}-good is given to two teams (team {prefix}-good and team {prefix}-dup)",
                       f"team {prefix}-dup: member 'Carol' is not a user name",
                       f"team {prefix}-x: namespace {taken} already exists and is not this team's: it has no kubesweep.io/team label",
                       f"team {prefix}-y: namespace {theirs} already exists and is not this team's: it is team {prefix}-other's"]:
            assert phrase in text, f"{phrase!r} not in:\n{text[-3000:]}"
        names = {n.metadata.name for n in admin["core"].list_namespace().items}
        assert f"{prefix}-good" not in names and f"{prefix}-noquota" not in names
        assert admin["core"].read_namespace(taken).metadata.labels.get("kubesweep.io/team") is None  # not adopted
        assert admin["core"].list_namespaced_resource_quota(taken).items == []
        assert not (tmp_path / "kube").exists()
    finally:
        _cleanup(admin, [taken, theirs, f"{prefix}-good"], [])


@pytest.mark.cluster
def test_a_member_sweeps_through_the_teams_queue_with_their_own_kubeconfig(two_teams, tmp_path):
    """The whole path a team member takes: the kubeconfig the role wrote, a sweep file naming no
    queue, the team's LocalQueue found by the sweep (the member's Role may list it), Kueue
    admitting the trials within the team's quota, the results in."""
    import textwrap

    from kubesweep import sweep
    from kubesweep.local import image

    from .conftest import EXAMPLES

    if not two_teams["queues"]:
        pytest.skip("no Kueue on this cluster")
    a = two_teams["a"]
    trainer = image.ensure(EXAMPLES, "kubesweep/mnist", build_args={"BASE": "kubesweep/python-base:bookworm"}).reference
    grid = tmp_path / "team.yaml"
    grid.write_text(textwrap.dedent(f"""\
        name: team-sweep
        image: {trainer}
        command: [python3, -c, "import sys; print('acc=' + sys.argv[1])", "${{i}}"]
        parameters: {{i: [1, 2, 3]}}
        batchSize: 3
        objective: {{metric: acc}}
        resources: {{cpu: 100m, memory: 64Mi}}
        """))
    notes: list[str] = []
    target = sweep.Target(str(two_teams["kubeconfig"]["alice"]))
    plan = sweep.plan(str(grid), default_namespace=a)  # the kubeconfig context's namespace, as the CLI passes it
    out = sweep.run(plan, target, sweep.Workspace(tmp_path / "jobs", tmp_path / "results"),
                    hooks=sweep.Hooks(notice=notes.append))
    assert any(f"namespace {a} has Kueue LocalQueue {a}" in n for n in notes), notes
    assert out.counts["succeeded"] == 3 and out.best["value"] == 3.0, (out.counts, notes)
