"""Filters of the teams role: the `teams:` list checked against the cluster (every problem, each
naming its team and field) and turned into the objects the role applies.

teams_problems(teams, nodes, namespaces, queues, flavors, ...) -> [message, ...]
teams_normalized(teams, default_cohort) -> teams with namespace, cohort and members filled in
teams_manifests(teams, cpu_flavor, gpu_flavor, queues) -> the objects, in the order they are applied
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
LABEL_TEXT = "a DNS-1123 label (lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters)"
QUANTITY = re.compile(r"^(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?P<suffix>[eE][-+]?[0-9]+|[numkMGTPE]|[KMGTPE]i)?$")
SCALE = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
         "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9, "T": Decimal(10) ** 12,
         "P": Decimal(10) ** 15, "E": Decimal(10) ** 18,
         "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40,
         "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60}
GPU = "nvidia.com/gpu"
# quota key -> the Kubernetes resource it limits
RESOURCES = {"gpu": GPU, "cpu": "cpu", "memory": "memory"}
EXAMPLE = "e.g. quota: {gpu: 1, cpu: 8, memory: 32Gi}"
TEAM_LABEL = "kubesweep.io/team"
LABELS = {"app.kubernetes.io/managed-by": "kubesweep"}
TEAM_KEYS = {"name", "namespace", "members", "quota", "cohort", "borrowing_limit"}


def quantity(value) -> Decimal | None:
    """A Kubernetes quantity (4, 0.5, 500m, 32Gi, 1e3) as a number; None when it is not one or is negative."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return Decimal(value) if value >= 0 else None
    if isinstance(value, float):
        return Decimal(repr(value)) if value >= 0 and value == value and value != float("inf") else None
    match = QUANTITY.match(str(value))
    if not match:
        return None
    try:
        number = Decimal(match["number"])
    except InvalidOperation:  # pragma: no cover - the pattern admits only numbers
        return None
    suffix = match["suffix"] or ""
    if suffix[:1] in ("e", "E"):
        return number * Decimal(10) ** int(suffix[1:])
    return number * SCALE[suffix]


def text(value) -> str:
    """A quota as the API is sent it: a YAML number as written, a string as it is."""
    return repr(value) if isinstance(value, float) else str(value)


def _plain(number: Decimal) -> str:
    """A sum of allocatable quantities, for a message: whole when it is whole, in Gi for large memory."""
    number = number.normalize()
    return f"{number:f}" if number == number.to_integral_value() else f"{number:f}".rstrip("0")


def _shown(resource: str, number: Decimal) -> str:
    if resource == "memory" and number >= SCALE["Gi"]:
        return f"{_plain((number / SCALE['Gi']).quantize(Decimal('0.1')))}Gi"
    return _plain(number)


def _name(team, index: int) -> str:
    name = team.get("name") if isinstance(team, dict) else None
    return f"team {name}" if isinstance(name, str) and name else f"teams[{index}]"


def teams_normalized(teams, default_cohort: str = "kubesweep") -> list[dict]:
    """Each team with its defaults: namespace the name, cohort the shared one, no members, no borrowing limit."""
    out = []
    for team in teams or []:
        team = dict(team)
        team["namespace"] = team.get("namespace") or team.get("name")
        team["cohort"] = team.get("cohort") or default_cohort
        team["members"] = list(team.get("members") or [])
        team["borrowing_limit"] = dict(team.get("borrowing_limit") or {})
        out.append(team)
    return out


def _allocatable(nodes) -> dict[str, Decimal]:
    total = {resource: Decimal(0) for resource in RESOURCES.values()}
    for node in nodes or []:
        allocatable = ((node or {}).get("status") or {}).get("allocatable") or {}
        for resource in total:
            total[resource] += quantity(allocatable.get(resource, 0)) or Decimal(0)
    return total


def _quantities(where: str, field: str, given, problems: list[str], *, required: bool) -> dict[str, Decimal]:
    """The gpu/cpu/memory of a quota or borrowing limit, checked; the problems found are appended."""
    if not isinstance(given, dict):
        problems.append(f"{where}: {field} must be a mapping of gpu, cpu and memory, {EXAMPLE} (got {given!r})")
        return {}
    found = {}
    for key in sorted(set(given) - set(RESOURCES)):
        problems.append(f"{where}: {field}.{key} is not a quota this role sets: give gpu, cpu and memory")
    for key, resource in RESOURCES.items():
        if key not in given or given[key] is None or given[key] == "":
            if required:
                problems.append(f"{where}: {field}.{key} is missing ({resource}; 0 for none), {EXAMPLE}")
            continue
        number = quantity(given[key])
        if number is None:
            problems.append(f"{where}: {field}.{key} {given[key]!r} is not a Kubernetes quantity "
                            "(a number >= 0 with an optional suffix: 4, 500m, 32Gi)")
        elif key == "gpu" and number != number.to_integral_value():
            problems.append(f"{where}: {field}.gpu {text(given[key])} is not a whole number of GPUs")
        else:
            found[key] = number
    return found


def teams_problems(teams, nodes=None, namespaces=None, queues=None, flavors=None, *, default_cohort="kubesweep",
                   check_queues=True, kueue_found=True, cpu_flavor="default", gpu_flavor="gpu") -> list[str]:
    """Every problem of the teams list against the cluster, each naming the team and the field.
    nodes, namespaces, queues (ClusterQueues) and flavors (ResourceFlavors) are the API's objects."""
    problems: list[str] = []
    if teams is None:
        return problems
    if not isinstance(teams, list):
        return [f"teams must be a list of teams (name, namespace, members, quota, cohort, borrowing_limit), got {teams!r}"]
    allocatable = _allocatable(nodes)
    node_count = len(nodes or [])
    existing = {(ns.get("metadata") or {}).get("name"): ((ns.get("metadata") or {}).get("labels") or {})
                for ns in namespaces or []}
    existing_queues = {(q.get("metadata") or {}).get("name"): ((q.get("metadata") or {}).get("labels") or {})
                       for q in queues or []}
    names: dict[str, str] = {}
    spaces: dict[str, str] = {}
    for index, team in enumerate(teams):
        where = _name(team, index)
        if not isinstance(team, dict):
            problems.append(f"{where} is not a mapping (name, namespace, members, quota, ...): got {team!r}")
            continue
        for key in sorted(set(team) - TEAM_KEYS):
            problems.append(f"{where}: {key} is not a field of a team (name, namespace, members, quota, cohort, borrowing_limit)")
        name = team.get("name")
        if not isinstance(name, str) or not name:
            problems.append(f"{where}: name is missing: every team has a name, {LABEL_TEXT}")
            name = None
        elif not LABEL.match(name):
            problems.append(f"{where}: name must be {LABEL_TEXT} (got {name!r})")
            name = None
        elif name in names:
            problems.append(f"{where}: the name {name} is given to two teams ({names[name]} and teams[{index}])")
        else:
            names[name] = f"teams[{index}]"
        namespace = team.get("namespace") or team.get("name")
        if isinstance(namespace, str) and namespace:
            if not LABEL.match(namespace):
                problems.append(f"{where}: namespace must be {LABEL_TEXT} (got {namespace!r})")
            elif namespace.startswith("kube-"):
                problems.append(f"{where}: namespace {namespace} is a system namespace (kube-*): whoever may create Jobs "
                                "there can run them as the system's ServiceAccounts; choose a namespace of the team's own")
            elif namespace in spaces:
                problems.append(f"{where}: namespace {namespace} is given to two teams ({spaces[namespace]} and {where})")
            else:
                spaces[namespace] = where
                if namespace in existing and name is not None:
                    owner = existing[namespace].get(TEAM_LABEL)
                    if owner != name:
                        whose = (f"it is team {owner}'s (label {TEAM_LABEL}={owner})" if owner
                                 else f"it has no {TEAM_LABEL} label")
                        problems.append(f"{where}: namespace {namespace} already exists and is not this team's: {whose}. "
                                        "A team's namespace is one this role created; an existing namespace is never "
                                        "taken over: choose another namespace")
        members = team.get("members")
        if members is not None and not isinstance(members, list):
            problems.append(f"{where}: members must be a list of user names (got {members!r})")
            members = []
        seen: set[str] = set()
        for member in members or []:
            if not isinstance(member, str) or not LABEL.match(member):
                problems.append(f"{where}: member {member!r} is not a user name: it must be {LABEL_TEXT}")
            elif member in seen:
                problems.append(f"{where}: member {member} is listed twice")
            if isinstance(member, str):
                seen.add(member)
        cohort = team.get("cohort") or default_cohort
        if not isinstance(cohort, str) or not LABEL.match(cohort):
            problems.append(f"{where}: cohort must be {LABEL_TEXT} (got {cohort!r})")
        if "quota" not in team or team.get("quota") is None:
            problems.append(f"{where}: no quota: every team has one, {EXAMPLE} (gpu 0 for a team without GPUs)")
        else:
            quota = _quantities(where, "quota", team["quota"], problems, required=True)
            for key, number in quota.items():
                resource = RESOURCES[key]
                if number > allocatable[resource]:
                    problems.append(f"{where}: quota.{key} {text(team['quota'][key])} is more than the cluster has: "
                                    f"{_shown(resource, allocatable[resource])} {resource} allocatable on its "
                                    f"{node_count} node{'s' if node_count != 1 else ''}")
        if team.get("borrowing_limit") is not None:
            _quantities(where, "borrowing_limit", team["borrowing_limit"], problems, required=False)
        if check_queues and name is not None and name in existing_queues and existing_queues[name].get(TEAM_LABEL) != name:
            problems.append(f"{where}: a ClusterQueue {name} already exists and is not this team's (no label "
                            f"{TEAM_LABEL}={name}): it is never taken over; rename the team or that ClusterQueue")
    if check_queues and teams:
        if not kueue_found:
            problems.append("Kueue is not installed (no ClusterQueue API kueue.x-k8s.io/v1beta2): run site.yml with "
                            "--tags kueue first, or set teams_queues: false for namespaces, quotas and kubeconfigs only")
        else:
            known = {(f.get("metadata") or {}).get("name") for f in flavors or []}
            for field, flavor in (("teams_cpu_flavor", cpu_flavor), ("teams_gpu_flavor", gpu_flavor)):
                if flavor not in known:
                    problems.append(f"{field}: no ResourceFlavor {flavor} on the cluster (it has: "
                                    f"{', '.join(sorted(k for k in known if k)) or 'none'}): the kueue role creates them")
    return problems


def _resources(team: dict, with_gpu: bool) -> list[dict]:
    out = []
    for key in ("cpu", "memory", "gpu"):
        entry = {"name": RESOURCES[key], "nominalQuota": text(team["quota"][key]) if with_gpu or key != "gpu" else "0"}
        limit = team["borrowing_limit"].get(key)
        if key == "gpu" and not with_gpu:
            entry["borrowingLimit"] = "0"
        elif limit is not None and limit != "":
            entry["borrowingLimit"] = text(limit)
        out.append(entry)
    return out


def _canonical(resource: str, number: Decimal) -> str:
    """A quantity as the API server writes it back (so a rerun compares equal): whole numbers plain,
    fractional cpu in millicores, memory in the largest binary unit that holds it exactly."""
    if resource == "memory":
        for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
            if number >= SCALE[suffix] and number % SCALE[suffix] == 0:
                return f"{_plain(number / SCALE[suffix])}{suffix}"
        return _plain(number)
    if number == number.to_integral_value():
        return _plain(number)
    return f"{_plain((number * 1000).to_integral_value())}m"


def _ceiling(team: dict, key: str, allocatable: dict[str, Decimal] | None) -> str:
    """What a team's ResourceQuota allows of a resource when Kueue lends it quota: its own quota
    plus its borrowing limit, or without a limit what the nodes have — Kueue admits borrowed work,
    and a ResourceQuota at the nominal quota would refuse the pods of everything it lends."""
    own = quantity(team["quota"][key]) or Decimal(0)
    limit = team["borrowing_limit"].get(key)
    if limit is not None and limit != "":
        top = own + (quantity(limit) or Decimal(0))
    elif allocatable is not None:
        top = max(own, allocatable.get(RESOURCES[key], own))
    else:
        top = own
    return text(team["quota"][key]) if top == own else _canonical(key, top)


def teams_manifests(teams, cpu_flavor: str = "default", gpu_flavor: str = "gpu", queues: bool = True,
                    reclaim: str = "Any", nodes=None) -> list[dict]:
    """For each (normalized) team: its Namespace, ResourceQuota and, with queues, its ClusterQueue
    and LocalQueue. One resource group covers cpu, memory and GPUs, so a pod's CPU and memory are
    counted on the flavor its node has: the CPU flavor first (no GPUs), then the GPU flavor.
    reclaim: how a team gets back its lent quota (Kueue's reclaimWithinCohort). With queues the
    ResourceQuota's ceiling is the quota plus what the team may borrow (``_ceiling``; ``nodes``:
    the cluster's nodes, whose allocatable bounds a resource without a borrowing limit); without
    them, the quota itself."""
    allocatable = _allocatable(nodes) if nodes is not None else None
    out: list[dict] = []
    for team in teams or []:
        name, namespace = team["name"], team["namespace"]
        labels = {**LABELS, TEAM_LABEL: name}
        out.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, "labels": labels}})
        out.append({"apiVersion": "v1", "kind": "ResourceQuota",
                    "metadata": {"name": "kubesweep-team", "namespace": namespace, "labels": labels},
                    "spec": {"hard": {f"requests.{RESOURCES[key]}": (_ceiling(team, key, allocatable) if queues
                                                                     else text(team["quota"][key]))
                                      for key in ("gpu", "cpu", "memory")}}})
        if not queues:
            continue
        flavors = ([{"name": cpu_flavor, "resources": _resources(team, with_gpu=False)}] if cpu_flavor != gpu_flavor else [])
        flavors.append({"name": gpu_flavor, "resources": _resources(team, with_gpu=True)})
        out.append({"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ClusterQueue",
                    "metadata": {"name": name, "labels": labels},
                    "spec": {"cohortName": team["cohort"],
                             "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                             "preemption": {"reclaimWithinCohort": reclaim},
                             "resourceGroups": [{"coveredResources": ["cpu", "memory", GPU], "flavors": flavors}]}})
        out.append({"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue",
                    "metadata": {"name": name, "namespace": namespace, "labels": labels},
                    "spec": {"clusterQueue": name}})
    return out


class FilterModule:
    def filters(self):
        return {"teams_problems": teams_problems, "teams_normalized": teams_normalized,
                "teams_manifests": teams_manifests}
