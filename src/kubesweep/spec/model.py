"""The experiment spec: one typed model that grid.yaml, Katib Experiments and W&B sweeps become.

Structure and types are checked by pydantic; meaning (DNS names, quantities, placeholders,
ranges) by :func:`check`, which knows where each value was written. Both report through
:class:`~kubesweep.errors.SpecError` with file:line:column.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr
from pydantic import Discriminator, Tag, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from kubesweep.errors import Collector
from kubesweep.spec.yamlsource import Positions

Scalar = Union[StrictBool, StrictInt, StrictFloat, StrictStr]
Number = Union[StrictInt, StrictFloat]

#: The longest experiment name; trial names add "-" and a 12-hex-digit hash and must stay <= 63.
MAX_EXPERIMENT_NAME = 40
DEFAULT_TRIAL_LIMIT = 10_000
#: The most trials one experiment may plan (search.trialLimit and --trial-limit stop here): the
#: plan, its manifests and the sweep's bookkeeping are held per trial.
MAX_TRIAL_LIMIT = 100_000
#: Placeholders substituted into command and env values besides the parameters themselves.
BUILTINS = ("trial", "experiment", "namespace", "output", "args", "args_no_hyphens", "args_json")


class Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=False
    )


class Parameter(Model):
    """One hyperparameter: explicit values, or a numeric range (linear or log)."""

    values: list[Scalar] | None = None
    min: Number | None = None
    max: Number | None = None
    step: Number | None = Field(default=None, description="grid spacing for linear ranges")
    count: StrictInt | None = Field(default=None, description="number of points in the range")
    scale: Literal["linear", "log"] = "linear"
    type: Literal["int", "float"] | None = None
    #: How random search draws from a min/max range: uniform, or normal (log-normal with scale:
    #: log) around ``mu`` with ``sigma`` (on the log scale for log), by default Katib's: the middle
    #: of the range and a sixth of it; a draw outside min..max is drawn again.
    distribution: Literal["uniform", "normal"] = "uniform"
    mu: Number | None = None
    sigma: Number | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        # `optimizer: [adam, sgd]` and `epochs: 5` are the common short forms.
        if isinstance(data, list):
            return {"values": data}
        if isinstance(data, (str, int, float, bool)):
            return {"values": [data]}
        return data

    @property
    def is_values(self) -> bool:
        return self.values is not None

    @property
    def is_int(self) -> bool:
        if self.type is not None:
            return self.type == "int"
        nums = [v for v in (self.min, self.max, self.step) if v is not None]
        return all(isinstance(v, int) and not isinstance(v, bool) for v in nums)


class Search(Model):
    #: plan/adaptive.py: tpe, multivariate-tpe, gp, cmaes and sobol ask one batch at a time.
    algorithm: Literal["grid", "random", "tpe", "multivariate-tpe", "gp", "cmaes", "sobol", "nsga2",
                       "hyperband"] = "grid"
    seed: StrictInt = 0
    trials: StrictInt | None = Field(default=None, description="random and adaptive: how many (none: until "
                                     "cancelled, the goal, or --max-trials); grid: a cap")
    trial_limit: StrictInt = DEFAULT_TRIAL_LIMIT
    longest_first: list[StrictStr] = Field(
        default=[], description="numeric parameters whose product grows with a trial's run time (epochs, "
        "layers): the plan starts the longest trials first, so the sweep does not end waiting on a few long ones")
    #: hyperband (plan/hyperband.py): the parameter each trial's budget is set in (epochs, steps).
    resource: StrictStr | None = None
    #: hyperband: the largest budget, Katib's r_l (default: the resource parameter's max).
    max_resource: Number | None = None
    #: hyperband: the halving rate: the best 1/eta of a round go on with eta times the budget (default 3).
    eta: StrictInt | None = None
    #: tpe, multivariate-tpe, gp: random trials before the model (default: max(4, batchSize)).
    startup_trials: StrictInt | None = None
    #: tpe: candidates drawn per ask (Optuna's n_ei_candidates, Katib's n_ei_candidates / n_EI_candidates).
    ei_candidates: StrictInt | None = None
    #: tpe: weight of the prior (Optuna's and hyperopt's prior_weight).
    prior_weight: Number | None = None
    #: tpe: hyperopt's gamma (Katib's tpe): the best ceil(gamma * sqrt(n)) trials, at most 25, are "good".
    gamma: Number | None = None
    #: cmaes: the initial step size as a share of each range (Optuna's sigma0; Katib's sigma).
    sigma: Number | None = None
    #: cmaes: restart when the optimizer should stop (Katib's restart_strategy): ipop grows the
    #: population each restart, bipop alternates large and small ones (plan/adaptive.py).
    restart_strategy: Literal["none", "ipop", "bipop"] = "none"
    #: cmaes with restarts: the population's factor per (large) restart (goptuna's and Optuna's inc_popsize; 2).
    inc_popsize: StrictInt | None = None
    #: nsga2: trials per generation (default: max(8, batchSize); a generation may span batches).
    population_size: StrictInt | None = None


class ObjectiveTerm(Model):
    """One more objective of a multi-objective sweep: optimised together with objective.metric."""

    metric: StrictStr
    direction: Literal["maximize", "minimize"] = "maximize"
    goal: Number | None = None


class Objective(Model):
    #: None: no metric (a W&B config without ``metric``): every trial that exits 0 succeeds, none is
    #: best, and only grid or random search without early stopping can run it.
    metric: StrictStr | None = None
    direction: Literal["maximize", "minimize"] = "maximize"
    goal: Number | None = None
    regex: StrictStr | None = None
    additional_metrics: list[StrictStr] = []
    #: More objectives, optimised together with ``metric`` (a Pareto front instead of one best).
    additional_objectives: list[ObjectiveTerm] = []
    #: Which printed value of a metric counts: the last (Katib's latest, the default), min or max.
    strategies: dict[StrictStr, Literal["min", "max", "latest"]] = {}
    #: The key that numbers a trial's reports: ``epoch`` in ``epoch=3 accuracy=0.9`` or in the JSON
    #: line ``{"epoch": 3, "accuracy": 0.9}``. None: the first of step, epoch, iteration, timestamp
    #: that the report carries, else its place in the log (1, 2, 3, ...).
    step: StrictStr | None = None

    def terms(self) -> list[tuple[str, str]]:
        """(metric, direction) of every objective, ``metric``'s first (none without a metric)."""
        if self.metric is None:
            return []
        return [(self.metric, self.direction), *((o.metric, o.direction) for o in self.additional_objectives)]

    def goals(self) -> list[tuple[str, str, float]]:
        """(metric, direction, goal) of every objective that has a goal."""
        terms = [(self.metric, self.direction, self.goal),
                 *((o.metric, o.direction, o.goal) for o in self.additional_objectives)]
        return [(m, d, g) for m, d, g in terms if g is not None]


class EarlyStopping(Model):
    """Stop a running trial whose intermediate values lag the others' (Optuna's pruners, asked in
    the client on the values the trial prints: no operator, no sidecar). A pruned trial's Job is
    deleted at once; it ends Pruned, which is not a failure."""

    #: median: Optuna's MedianPruner; medianstop: Katib's rule (run/pruning.py); asha: successive
    #: halving (W&B's ``early_terminate: hyperband`` is this, one bracket); hyperband: Optuna's.
    pruner: Literal["median", "medianstop", "asha", "hyperband"] = "median"
    #: The intermediate metric judged (default: objective.metric), compared in objective.direction.
    metric: StrictStr | None = None
    #: median, medianstop: finished trials needed before any trial is pruned (Katib min_trials_required).
    min_trials: StrictInt = Field(default=3, ge=0)
    #: median: steps before this one are never judged; medianstop: reports a trial needs before it is (Katib start_step).
    start_step: StrictInt = Field(default=4, ge=0)
    #: asha, hyperband: the step of the first rung (W&B min_iter); hyperband: "auto" when left out.
    min_resource: StrictInt | None = Field(default=None, ge=1)
    #: hyperband: the largest step a trial reaches (W&B max_iter); "auto" when left out.
    max_resource: StrictInt | None = Field(default=None, ge=1)
    #: asha, hyperband: 1/reduction_factor of the trials go on past each rung (W&B eta).
    reduction_factor: StrictInt = Field(default=3, ge=2)
    #: How often running trials' logs are read for new values (seconds).
    interval_seconds: Number = Field(default=10, gt=0)


Quantity = Union[StrictStr, StrictInt, StrictFloat]


class Limits(Model):
    """Limits that differ from the requests; a resource left out here has no limit."""

    cpu: Quantity | None = None
    memory: Quantity | None = None


class Resources(Model):
    """What each trial requests. The requests are also the limits unless ``limits`` says otherwise.

    Any other key with a domain prefix (``amd.com/gpu``, ``nvidia.com/mig-1g.10gb``) is an extended
    resource: a whole number, requested and limited alike (rules.py checks the names and counts)."""

    model_config = ConfigDict(extra="allow")

    cpu: Quantity = "1"
    memory: Quantity = "5Gi"
    gpu: StrictInt = Field(default=0, alias="nvidia.com/gpu")
    limits: Limits | None = None

    @field_validator("gpu", mode="before")
    @classmethod
    def _gpu_quantity(cls, value: Any) -> Any:
        # Kubernetes writes quantities as strings ("1"); a GPU count is a whole number.
        if isinstance(value, str) and re.fullmatch(r"\+?[0-9]+", value):
            return int(value)
        return value

    @property
    def extended(self) -> dict[str, Any]:
        """The extended resources as written (names with a domain prefix besides nvidia.com/gpu)."""
        return dict(self.model_extra or {})


class Output(Model):
    """Where each trial writes: an emptyDir at /output by default; a directory of the node
    (``hostPath``) or a claim (``pvc``) at ``mountPath``; or the shared storage every node mounts
    at the same path (``share``, e.g. /share), mounted there in the trial too, where each trial
    writes to <share>/<namespace>/<experiment>/<trial>/ and its stdout is archived."""

    host_path: StrictStr | None = None
    pvc: StrictStr | None = None
    share: StrictStr | None = None
    mount_path: StrictStr = "/output"

    @property
    def mounted_at(self) -> str:
        """Where the trial's container has the output volume: a share at its own path."""
        return self.share if self.share is not None else self.mount_path


class SecurityContext(Model):
    """The pod's user and group. Trials run as non-root; an image that must run as root says so
    with ``runAsUser: 0`` and ``runAsNonRoot: false`` together."""

    run_as_user: StrictInt = 1000
    run_as_group: StrictInt = 1000
    fs_group: StrictInt | None = 1000
    run_as_non_root: StrictBool = True


class KeyRef(Model):
    """One key of a Secret or ConfigMap (the kubelet reads it; kubesweep writes only the reference)."""

    name: StrictStr
    key: StrictStr
    optional: StrictBool | None = None


class FieldRef(Model):
    field_path: StrictStr
    api_version: StrictStr | None = None


class ResourceFieldRef(Model):
    resource: StrictStr
    container_name: StrictStr | None = None
    divisor: Quantity | None = None


class EnvSource(Model):
    """An env value the kubelet fills in when the trial starts: exactly one of these (a Kubernetes
    ``valueFrom``)."""

    secret_key_ref: KeyRef | None = None
    config_map_key_ref: KeyRef | None = None
    field_ref: FieldRef | None = None
    resource_field_ref: ResourceFieldRef | None = None

    def manifest(self) -> dict[str, Any]:
        """The ``valueFrom`` of a container's env entry."""
        out = self.model_dump(by_alias=True, exclude_none=True)
        divisor = out.get("resourceFieldRef", {}).get("divisor")
        if divisor is not None and not isinstance(divisor, str):
            out["resourceFieldRef"]["divisor"] = str(divisor)  # a quantity, which the API types as a string
        return out


def _env_kind(value: Any) -> str:
    return "<ref>" if isinstance(value, dict) else "<scalar>"


#: An env value: text (with placeholders) or a number or boolean, or a mapping naming where the
#: kubelet reads it (secretKeyRef, configMapKeyRef, fieldRef, resourceFieldRef). The tags keep a
#: mistake inside a mapping from also being reported as "must be a string" (and leave the loc).
EnvValue = Annotated[Union[Annotated[Scalar, Tag("<scalar>")], Annotated[EnvSource, Tag("<ref>")]],
                     Discriminator(_env_kind)]


class NameRef(Model):
    name: StrictStr
    optional: StrictBool | None = None


class EnvFrom(Model):
    """Every key of a Secret or ConfigMap as environment variables (a Kubernetes ``envFrom`` entry)."""

    secret_ref: NameRef | None = None
    config_map_ref: NameRef | None = None
    prefix: StrictStr | None = None

    def manifest(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


class Build(Model):
    """Build the trainer image from a Dockerfile; ``image`` is then a repository without a tag."""

    context: StrictStr = "."
    dockerfile: StrictStr | None = None
    args: dict[str, StrictStr] = {}


#: Kueue's label naming the LocalQueue of a Job (``Experiment.queue``; run/kueue.py).
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"


class Experiment(Model):
    """A whole sweep: what to run, over which parameters, how to judge and where."""

    name: StrictStr
    namespace: StrictStr = "default"
    #: The Kueue LocalQueue the trials' Jobs go to (None: the namespace's own, when it has one; run/kueue.py).
    queue: StrictStr | None = None
    image: StrictStr
    build: Build | None = None
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    command: Annotated[list[StrictStr], Field(min_length=1)]
    parameters: dict[str, Parameter]
    search: Search = Search()
    batch_size: StrictInt = 3
    max_failed_trials: StrictInt | None = None
    objective: Objective
    early_stopping: EarlyStopping | None = None
    #: A file the trial writes its metrics to (Katib's File metrics collector), instead of its
    #: stdout: a sidecar streams it into its own log, which is read as the trial's output.
    metrics_file: Annotated[StrictStr, Field(pattern=r"^/[^\x00]*[^/\x00]$")] | None = None
    resources: Resources = Resources()
    node_selector: dict[str, StrictStr] = {}
    tolerations: list[dict[str, Any]] = []
    #: Pod affinity as in a pod spec; checked against the Kubernetes schema and the API server's rules.
    affinity: dict[str, Any] | None = None
    priority_class_name: StrictStr | None = None
    runtime_class_name: StrictStr | None = None
    env: dict[str, EnvValue] = {}
    env_from: list[EnvFrom] = []
    #: The size of /dev/shm, a memory-backed emptyDir (counted against the trial's memory).
    shm_size: Quantity | None = None
    output: Output | None = None
    backoff_limit: StrictInt = 0
    active_deadline_seconds: StrictInt | None = None
    ttl_seconds_after_finished: StrictInt | None = None
    node_loss_grace_seconds: StrictInt = 60
    unschedulable_seconds: StrictInt = 600
    service_account: StrictStr | None = None
    #: Secrets (names, in the Job's namespace) the kubelet pulls the image with: the pod's imagePullSecrets.
    image_pull_secrets: tuple[StrictStr, ...] = ()
    security_context: SecurityContext = SecurityContext()
    labels: dict[str, StrictStr] = {}
    annotations: dict[str, StrictStr] = {}

    @field_validator("image_pull_secrets", mode="before")
    @classmethod
    def _secret_names(cls, value: Any) -> Any:
        # Names (``[regcred]``), or Kubernetes' own form (``[{name: regcred}]``).
        if isinstance(value, list):
            return [v["name"] if isinstance(v, dict) and set(v) == {"name"} else v for v in value]
        return value


# ---------------------------------------------------------------------------- pydantic → Issues

_MESSAGES = {
    "missing": "is required",
    "too_short": "must not be empty",
}


def _unwrap(annotation: Any) -> list[Any]:
    """The model classes an annotation can hold (through Optional, list, dict, Annotated)."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _unwrap(arg)]
    if origin in (list, dict):
        return _unwrap(typing.get_args(annotation)[-1])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class whose fields live at ``loc`` (for did-you-mean on unknown keys)."""
    model: type[BaseModel] = Experiment
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        fields = {f.alias or name: f for name, f in model.model_fields.items()}
        if part in fields:
            inner = _unwrap(fields[part].annotation)
            model = inner[0] if inner else None
        elif model is Experiment and loc[0] == "parameters":
            model = Parameter
    return model


def field_names(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def did_you_mean(word: str, choices: list[str]) -> str:
    """A hint for a key that is not one of ``choices``: the same letters swapped (``stpe``), the
    last part of a prefixed name (``gpu`` for ``nvidia.com/gpu``), else the closest spelling."""
    folded = word.lower().rstrip("s")
    close = [c for c in choices if sorted(c) == sorted(word)]
    close = close or [c for c in choices if "/" in c and c.rsplit("/", 1)[1].lower() == folded]
    close = close or difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (known keys: {', '.join(choices)})"


def _clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    # pydantic puts union member names ("str", "int", "function-before[...]") into loc
    return tuple(
        p for p in loc if isinstance(p, int) or not re.match(r"^[a-z-]+\[|^(str|int|float|bool)$|^<[a-z]+>$", p)
    )


#: What each pydantic type error expects, as a noun phrase ("must be " + these, joined by "or").
_EXPECTED = {
    "string": "a string", "int": "an integer", "float": "a number", "bool": "true or false",
    "list": "a list", "dict": "a mapping", "model": "a mapping",
}


def _expected(kinds: list[str]) -> str | None:
    """"must be a string, a number or true or false" for the type errors of one place (a union
    gives one error per member; naming only the first, say "true or false" for a list, misleads)."""
    nouns: list[str] = []
    for kind in kinds:
        head = kind.split("_")[0]
        if head in _EXPECTED and (kind.endswith(("_type", "_parsing")) or kind in ("int_from_float",)):
            noun = _EXPECTED[head]
            if noun not in nouns:
                nouns.append(noun)
    if not nouns:
        return None
    if "a number" in nouns and "an integer" in nouns:
        nouns.remove("an integer")
    return nouns[0] if len(nouns) == 1 else ", ".join(nouns[:-1]) + " or " + nouns[-1]


def issues_from_validation(exc: ValidationError, pos: Positions, out: Collector) -> None:
    by_place: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for err in exc.errors():
        loc = _clean_loc(tuple(err["loc"]))
        if err["type"] == "extra_forbidden":
            model = _model_at(loc[:-1])
            hint = did_you_mean(str(loc[-1]), field_names(model)) if model else ""
            out.add(pos.key(loc), f"unknown key {str(loc[-1])!r} in {'.'.join(map(str, loc[:-1])) or 'the top level'}{hint}")
            continue
        by_place.setdefault(loc, []).append(err)
    for loc, errors in by_place.items():
        where = ".".join(str(p) for p in loc) or "(top level)"
        err = errors[0]
        kind = err["type"]
        if kind == "missing":
            parent = ".".join(str(p) for p in loc[:-1]) or "the top level"
            out.add(pos.value(loc[:-1]), f"{parent} needs {str(loc[-1])!r}")
            continue
        if kind == "literal_error":
            expected = err.get("ctx", {}).get("expected", "")
            out.add(pos.value(loc), f"{where} must be one of {expected}", err.get("input"))
            continue
        expected = _expected([e["type"] for e in errors])
        if expected is not None:
            out.add(pos.value(loc), f"{where} must be {expected}", err.get("input"))
            continue
        message = _MESSAGES.get(kind) or err["msg"].lower()
        out.add(pos.value(loc), f"{where} {message}", err.get("input"))


def parse(data: Any, pos: Positions) -> Experiment:
    """Validate structure and types; raise SpecError with positions."""
    problems = Collector()
    if not isinstance(data, dict):
        problems.add(pos.value(()), "the top level must be a mapping of keys", data)
        problems.raise_if_any()
    params = data.get("parameters")
    if isinstance(params, dict):
        # Expand the short forms here, where positions can follow the values.
        data = dict(data)
        data["parameters"] = params = dict(params)
        for name, value in params.items():
            if isinstance(value, (list, str, int, float, bool)):
                here = ("parameters", name)
                if isinstance(value, list):
                    pos.rebase(here, here + ("values",), pos)
                    params[name] = {"values": value}
                else:
                    pos.values[here + ("values", 0)] = pos.value(here)
                    params[name] = {"values": [value]}
                pos.values[here + ("values",)] = pos.value(here)
    try:
        exp = Experiment.model_validate(data)
    except ValidationError as exc:
        issues_from_validation(exc, pos, problems)
        problems.raise_if_any()
        raise  # pragma: no cover - every error above adds an issue
    return exp
