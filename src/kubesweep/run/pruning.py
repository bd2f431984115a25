"""Early stopping with plain Jobs: Optuna's pruners, asked in the client on what trials print.

A running trial's log is read as it grows (collector.follow); its intermediate values of the
judged metric (earlyStopping.metric, else objective.metric) are reported to an in-memory Optuna
study, one trial per kubesweep trial, and the study's pruner says whether to stop it. Finished
trials are told to the study as they end (succeeded: COMPLETE; pruned: PRUNED; the rest: FAIL),
and a resumed sweep replays the journal's curves into a new study first, so the rules see the
same values after a kill as before it. No operator, no sidecar, no database.

The pruners:

- ``median``: Optuna's MedianPruner (n_startup_trials = minTrials, n_warmup_steps = startStep):
  a trial is stopped at a step when its best value so far is worse than the median of the
  finished trials' values at that step.
- ``medianstop``: Katib's rule as its suggestion service computes it: each succeeded trial's
  average over its first startStep reports; once minTrials succeeded, their mean of those averages
  is the bar (Katib calls it the median), and a trial with startStep reports or more whose latest
  value is strictly worse than the bar is stopped.
- ``asha``: Optuna's SuccessiveHalvingPruner (min_resource = minResource, reduction_factor): at
  rung steps minResource·η^k only the best 1/η of the trials that reached the rung go on. W&B's
  ``early_terminate: hyperband`` is this, with one bracket.
- ``hyperband``: Optuna's HyperbandPruner (several successive-halving brackets, a trial's bracket
  from its number in the study).

A step is the report's step (metrics.CurveReader); Optuna takes whole steps, so a fractional step
is replaced by the report's place in the curve.
"""

from __future__ import annotations

import math
import statistics
import warnings
from typing import Any, Iterable

from kubesweep.plan.adaptive import whole_steps
from kubesweep.spec.model import Experiment
from kubesweep.run.trialstate import PRUNED, SUCCEEDED, TrialRecord


def _optuna():  # noqa: ANN202 - imported lazily: optuna costs ~0.5 s to import
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna


def _katib_median_stop(min_trials: int, start_step: int, maximize: bool) -> Any:
    """Katib's medianstop as an Optuna pruner (see the module's docstring)."""
    optuna = _optuna()

    class KatibMedianStop(optuna.pruners.BasePruner):
        def bar(self, study: Any) -> tuple[float | None, int]:
            averages = []
            for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
                first = [t.intermediate_values[s] for s in sorted(t.intermediate_values)][:start_step]
                if first:
                    averages.append(sum(first) / len(first))
            if len(averages) < max(min_trials, 1):
                return None, len(averages)
            return sum(averages) / len(averages), len(averages)

        def prune(self, study: Any, trial: Any) -> bool:
            values = trial.intermediate_values
            if len(values) < start_step or not values:
                return False
            bar, _ = self.bar(study)
            if bar is None:
                return False
            latest = values[max(values)]
            return latest < bar if maximize else latest > bar

    return KatibMedianStop()


def make_pruner(exp: Experiment) -> Any:
    es = exp.early_stopping
    assert es is not None
    pruners = _optuna().pruners
    if es.pruner == "median":
        return pruners.MedianPruner(n_startup_trials=es.min_trials, n_warmup_steps=es.start_step)
    if es.pruner == "medianstop":
        return _katib_median_stop(es.min_trials, es.start_step, exp.objective.direction == "maximize")
    if es.pruner == "asha":
        return pruners.SuccessiveHalvingPruner(min_resource=es.min_resource or "auto",
                                               reduction_factor=es.reduction_factor)
    return pruners.HyperbandPruner(min_resource=es.min_resource or 1, max_resource=es.max_resource or "auto",
                                   reduction_factor=es.reduction_factor)


class Pruning:
    """One sweep's early stopping: which running trials to stop, given everything reported."""

    def __init__(self, exp: Experiment, finished: Iterable[TrialRecord] = ()):
        optuna = _optuna()
        es = exp.early_stopping
        assert es is not None
        self.exp, self.es = exp, es
        self.metric = es.metric or exp.objective.metric
        self.maximize = exp.objective.direction == "maximize"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.study = optuna.create_study(study_name=exp.name, direction="maximize" if self.maximize else "minimize",
                                             pruner=make_pruner(exp))
        self.live: dict[str, Any] = {}       # trial name -> its running optuna trial
        self.reported: dict[str, int] = {}   # trial name -> last step reported
        for rec in finished:
            self.finish(rec)

    def _trial(self, name: str) -> Any:
        t = self.live.get(name)
        if t is None:
            t = self.live[name] = self.study.ask()
            self.reported[name] = 0
        return t

    def _report(self, name: str, points: list[list[float]], *, judge: bool) -> tuple[int, float] | None:
        """Report the points past those already reported; return the (step, value) at which the
        pruner says stop, if it does (asked after each new point only when ``judge``)."""
        t = self._trial(name)
        stop = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for step, value in whole_steps(points).items():
                if step <= self.reported[name]:
                    continue
                t.report(value, step)
                self.reported[name] = step
                if judge and stop is None and t.should_prune():
                    stop = (step, value)
        return stop

    def check(self, name: str, points: list[list[float]]) -> str | None:
        """The trial's curve of the judged metric so far; why to stop it now, or None."""
        stop = self._report(name, points, judge=True)
        return None if stop is None else self.why(*stop)

    def finish(self, rec: TrialRecord) -> None:
        """A trial ended (or was read from the journal): tell the study, with its whole curve."""
        points = (rec.curves or {}).get(self.metric) or []
        # replayed trials are asked for the pruner's verdict too: the successive-halving rungs a
        # trial passed are recorded by that question
        self._report(rec.name, points, judge=self.es.pruner in ("asha", "hyperband") and rec.name not in self.live)
        t = self.live.pop(rec.name)
        self.reported.pop(rec.name, None)
        TS = _optuna().trial.TrialState
        final = (rec.metrics or {}).get(self.metric)
        if final is None and points:
            final = points[-1][1]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if rec.state == SUCCEEDED and final is not None and math.isfinite(final):
                self.study.tell(t, float(final))
            elif rec.state == PRUNED:
                self.study.tell(t, state=TS.PRUNED)
            else:
                self.study.tell(t, state=TS.FAIL)

    def why(self, step: int, value: float) -> str:
        """The message of a trial pruned at ``step`` with ``value``."""
        es, m = self.es, self.metric
        if es.pruner == "medianstop":
            bar, n = self.study.pruner.bar(self.study)
            return (f"early stopped at step {step} (medianstop): {m} {value:.6g} is {'below' if self.maximize else 'above'} "
                    f"{bar:.6g}, the mean of {n} succeeded trials' averages over their first {es.start_step} reports")
        if es.pruner == "median":
            TS = _optuna().trial.TrialState
            at = [t.intermediate_values[step] for t in self.study.get_trials(deepcopy=False, states=(TS.COMPLETE,))
                  if step in t.intermediate_values]
            if at:
                return (f"pruned at step {step} (median): its best {m} so far is worse than {statistics.median(at):.6g}, "
                        f"the median of {len(at)} finished trials at that step")
        return (f"pruned at step {step} ({es.pruner}, reduction factor {es.reduction_factor}): {m} {value:.6g} is not "
                f"among the best 1/{es.reduction_factor} of the trials that reached that rung")
