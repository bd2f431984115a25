"""Filters of the kueue role.

kueue_configured(objects, overrides) -> objects: Kueue's release manifests with ``overrides`` (the
role's kueue_controller_config) merged into the controller's Configuration, the YAML file that the
ConfigMap kueue-manager-config holds under controller_manager_config.yaml: mappings are merged key
by key, anything else (numbers, lists) replaces upstream's value. The controller reads that file
only at start, so the Deployment's pod template then carries the merged file's sha256
(``kubesweep.io/kueue-config-sha256``): another configuration rolls the controller, the same one
leaves it alone. No overrides: the objects as they are, upstream's configuration untouched.

kueue_config_problems(overrides) -> [message, ...]: what the controller would refuse or the role
cannot merge, each naming the key; the role stops on any before applying anything.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from typing import Any

import yaml

CONFIGMAP = "kueue-manager-config"
KEY = "controller_manager_config.yaml"
DEPLOYMENT = "kueue-controller-manager"
ANNOTATION = "kubesweep.io/kueue-config-sha256"
#: The top-level fields of Kueue's Configuration (config.kueue.x-k8s.io/v1beta2, Kueue 0.17).
FIELDS = {"namespace", "health", "metrics", "webhook", "leaderElection", "controller", "clientConnection",
          "pprofBindAddress", "waitForPodsReady", "manageJobsWithoutQueueName", "managedJobsNamespaceSelector",
          "internalCertManagement", "integrations", "multiKueue", "fairSharing", "admissionFairSharing",
          "resources", "featureGates", "objectRetentionPolicies"}


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, Mapping) and isinstance(over, Mapping):
        merged = dict(base)
        for key, value in over.items():
            merged[key] = _merge(base.get(key), value) if key in base else copy.deepcopy(value)
        return merged
    return copy.deepcopy(over)


def kueue_config_problems(overrides: Any) -> list[str]:
    if overrides in (None, {}):
        return []
    if not isinstance(overrides, Mapping):
        return [f"kueue_controller_config must be a mapping of Kueue Configuration fields (got {overrides!r})"]
    problems = []
    for key in overrides:
        if key in ("apiVersion", "kind"):
            problems.append(f"kueue_controller_config.{key}: the Configuration's {key} is Kueue's own, not a setting")
        elif key not in FIELDS:
            problems.append(f"kueue_controller_config.{key} is not a field of Kueue's Configuration "
                            f"(one of {', '.join(sorted(FIELDS))})")
    client = overrides.get("clientConnection")
    if client is not None:
        if not isinstance(client, Mapping):
            problems.append(f"kueue_controller_config.clientConnection must be a mapping {{qps, burst}} (got {client!r})")
        else:
            for key, value in client.items():
                if key not in ("qps", "burst"):
                    problems.append(f"kueue_controller_config.clientConnection.{key} is not qps or burst")
                elif isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0 \
                        or (key == "burst" and not isinstance(value, int)):
                    kind = "a whole number" if key == "burst" else "a number"
                    problems.append(f"kueue_controller_config.clientConnection.{key} must be {kind} above 0 "
                                    f"(got {value!r})")
    return problems


def kueue_configured(objects: list[dict[str, Any]], overrides: Any) -> list[dict[str, Any]]:
    if overrides in (None, {}):
        return objects
    problems = kueue_config_problems(overrides)
    if problems:
        raise ValueError("; ".join(problems))
    # plain values: Ansible hands its own (tagged) str, int and dict subclasses, which YAML cannot write
    overrides = json.loads(json.dumps(overrides))
    out = json.loads(json.dumps(objects))
    configmaps = [o for o in out if o.get("kind") == "ConfigMap" and (o.get("metadata") or {}).get("name") == CONFIGMAP]
    deployments = [o for o in out if o.get("kind") == "Deployment" and (o.get("metadata") or {}).get("name") == DEPLOYMENT]
    if len(configmaps) != 1 or KEY not in ((configmaps[0].get("data")) or {}) or len(deployments) != 1:
        raise ValueError(f"the manifests have no ConfigMap {CONFIGMAP} with {KEY} and Deployment {DEPLOYMENT} "
                         "to configure (kueue_controller_config needs Kueue's release manifests)")
    data = configmaps[0]["data"]
    merged = _merge(yaml.safe_load(data[KEY]) or {}, overrides)
    data[KEY] = yaml.safe_dump(merged, sort_keys=False, default_flow_style=False)
    template = deployments[0]["spec"]["template"]
    meta = template.setdefault("metadata", {})
    meta["annotations"] = {**(meta.get("annotations") or {}),
                           ANNOTATION: hashlib.sha256(data[KEY].encode()).hexdigest()}
    return out


class FilterModule:
    def filters(self):
        return {"kueue_configured": kueue_configured, "kueue_config_problems": kueue_config_problems}
