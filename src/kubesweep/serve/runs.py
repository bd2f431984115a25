"""The sweeps a `kubesweep serve` process drives: each one the CLI's own library call,
``sweep.run``, in a thread of its own, heard through its ``Hooks`` and told to the page as events.

What the server remembers is small and in files (no database): the body submitted
(``<state>/submissions/<experiment>.yaml``) and what it was asked to do with it
(``<state>/runs/<experiment>.json``: namespace, options, and state running / finished /
cancelled / failed with the outcome), each written whole (a temporary file renamed over it).
Everything else is the cluster's and the journal's, as for the CLI: ``start`` runs the same
call again for every sweep its state says was running, which is the engine's resume after a
kill -9 (Jobs found by label, results in the journal; nothing is created twice).

A sweep goes on when the browser that submitted it goes away. ``stop`` (the server shutting down)
interrupts each sweep thread as Ctrl-C interrupts the CLI: its trials in flight go on on the
cluster, and the next ``start`` picks them up. An error in a sweep (a KubesweepError, an API
server that does not answer) ends that sweep, recorded with its message; never the server.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kubesweep import sweep as sweeps
from kubesweep.errors import KubesweepError, SpecError
from kubesweep.run.trialstate import FINAL, RUNNING, SUCCEEDED, TrialRecord, elapsed, reached
from kubesweep.serve.forms import Refused, build_refused, refused, sweep_text

log = logging.getLogger("kubesweep.serve")

RUNNING_STATE, FINISHED, CANCELLED, FAILED = "running", "finished", "cancelled", "failed"
#: Running trials whose log tail is read for their metric so far (runner.PROGRESS_EVERY_S apart).
PROGRESS_TRIALS = 100
#: How long ``stop`` waits for the sweep threads to let go, all together.
STOP_WAIT_S = 20.0
COUNTED = ("pending", "running", "succeeded", "failed", "pruned", "cancelled")


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``path`` whole or not at all: a crash leaves the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def row(rec: TrialRecord, metric: str | None) -> dict[str, Any]:
    """A trial as the API shows it (the contract's Row; a running one's duration is so far)."""
    took = elapsed(rec.start, rec.end)
    return {"name": rec.name, "batch": rec.batch, "state": rec.state, "params": dict(rec.params), "node": rec.node,
            "metric": rec.metrics.get(metric) if metric else None, "metrics": dict(rec.metrics),
            "step": reached(rec), "start": rec.start, "end": rec.end, "duration": None if took is None else round(took, 1),
            "message": rec.message}


@dataclass
class Run:
    """One sweep this server drives, and what its hooks have heard."""

    name: str
    namespace: str
    body: Path
    retry_failed: bool = False
    image: str | None = None    # ?image= at submission (a W&B config names none): --image
    submitted_by: str | None = None
    started: str | None = None
    metric: str | None = None
    direction: str = "maximize"
    parameters: list[str] = field(default_factory=list)
    total: int = 0
    thread: threading.Thread | None = None
    stopping: bool = False      # the server is shutting down: leave it running, resume next start
    cancelling: bool = False    # cancelled through the API
    cancelled: bool = False     # ... and its Jobs marked and deleted: the sweep stops at its next look
    ended: bool = False         # its end is recorded: the thread only tells the page now
    in_sweep: bool = False      # inside sweep.run: where an interrupt is Ctrl-C's (guarded by ``guard``)
    guard: threading.Lock = field(default_factory=threading.Lock)
    states: dict[str, str] = field(default_factory=dict)         # trial -> state
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)  # trials in flight -> Row
    best: dict[str, Any] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def alive(self) -> bool:
        """Driven now: its thread runs and has not recorded its end (a retry may follow at once)."""
        return self.thread is not None and self.thread.is_alive() and not self.ended

    def interrupt(self) -> None:
        """Raise KeyboardInterrupt in the sweep thread, as Ctrl-C does in the CLI's: sweep.run says
        what it leaves running and ends; its trials go on on the cluster. Only inside sweep.run."""
        with self.guard:
            if self.in_sweep:
                _async_raise(self.thread, KeyboardInterrupt)

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(COUNTED, 0)
        for state in self.states.values():
            key = "pending" if state == "submitted" else state  # as the store counts them
            if key in out:
                out[key] += 1
        out["pending"] += max(self.total - len(self.states), 0)
        return out


class _Progress:
    """runner.Progress for a served sweep: every running trial (up to PROGRESS_TRIALS) is wanted."""

    def __init__(self, manager: Manager, run: Run):
        self.manager, self.run = manager, run

    def wanted(self) -> list[str]:
        with self.run.lock:
            return [n for n, r in self.run.rows.items() if r["state"] == RUNNING][:PROGRESS_TRIALS]

    def seen(self, name: str, value: float | None, step: float | None = None) -> None:
        run = self.run
        with run.lock:
            r = run.rows.get(name)
            if r is not None:
                r["metric"], r["step"] = value, step
                if value is not None and step is not None:  # the running trial's learning curve so far
                    curve = r.setdefault("curve", [])
                    if not curve or curve[-1] != [step, value]:
                        curve.append([step, value])
        self.manager.broker.publish("progress", {"experiment": run.name, "trial": name, "metric": run.metric,
                                                 "value": value, "step": step})


class Manager:
    """Submits, drives, resumes, cancels and retries the server's sweeps (see the module's doc)."""

    def __init__(self, cfg: Any, broker: Any):
        self.cfg, self.broker = cfg, broker
        self.state_dir = Path(cfg.state_dir)
        self.runs_dir = self.state_dir / "runs"
        self.submissions = self.state_dir / "submissions"
        self._lock = threading.Lock()
        self._runs: dict[str, Run] = {}
        self._stopped = False

    # ------------------------------------------------------------------ what the routes ask
    def driven(self) -> set[str]:
        with self._lock:
            return {n for n, r in self._runs.items() if r.alive()}

    def live(self, name: str) -> dict[str, dict[str, Any]]:
        run = self._runs.get(name)
        if run is None:
            return {}
        with run.lock:
            return {n: dict(r) for n, r in run.rows.items()}

    def state(self, name: str) -> dict[str, Any] | None:
        """What runs/<name>.json says (None: this server never drove it)."""
        path = self.runs_dir / f"{name}.json"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    # ------------------------------------------------------------------ start / stop
    def start(self) -> None:
        """Resume every sweep the state dir says was running (the same call on the same body)."""
        self._stopped = False
        if not self.runs_dir.is_dir():
            return
        for path in sorted(self.runs_dir.glob("*.json")):
            saved = self.state(path.stem)
            if not saved or saved.get("state") != RUNNING_STATE:
                continue
            run = Run(saved["experiment"], saved["namespace"], self.state_dir / saved["body"],
                      retry_failed=bool(saved.get("options", {}).get("retry_failed")),
                      image=saved.get("options", {}).get("image"), submitted_by=saved.get("submitted_by"))
            log.info("resuming sweep %s (namespace %s)", run.name, run.namespace)
            self._launch(run, saved)

    def stop(self) -> None:
        """Let go of every sweep thread as Ctrl-C would: their trials go on, the state still says
        running, and the next ``start`` resumes them."""
        self._stopped = True
        with self._lock:
            runs = [r for r in self._runs.values() if r.thread is not None and r.thread.is_alive()]
        for run in runs:
            if not run.ended:
                run.stopping = True
                run.interrupt()
        deadline = time.monotonic() + STOP_WAIT_S
        for run in runs:
            assert run.thread is not None
            run.thread.join(max(deadline - time.monotonic(), 0.1))

    # ------------------------------------------------------------------ submit
    def submit(self, body: bytes, content_type: str, caller: Any, *, image: str | None = None,
               name: str | None = None, namespace: str | None = None) -> dict[str, Any]:
        """Validate the body as the CLI would and start it; Refused (with the HTTP status) if not.
        Nothing is written on a refusal: the body is planned from a temporary file that is removed.
        ``image``, ``name``, ``namespace``: the CLI's --image, --name, --namespace."""
        text, fields = sweep_text(body, content_type)
        self.submissions.mkdir(parents=True, exist_ok=True)
        incoming = self.submissions / f".incoming-{secrets.token_hex(8)}.yaml"
        incoming.write_bytes(text)
        try:
            plan = self._validate(incoming, fields, caller, image=image, name=name, namespace=namespace)
            exp = plan.experiment
            with self._lock:
                current = self._runs.get(exp.name)
                if current is not None and current.alive():
                    raise Refused(409, f"experiment {exp.name} is running on this server already; cancel it first, "
                                  "or wait for it to end")
                saved = self.submissions / f"{exp.name}.yaml"
                os.replace(incoming, saved)
                if not (Path(self.cfg.where.jobs_dir) / exp.name / sweeps.PLAN_FILE).exists():
                    # a new experiment is listed at once, not when its thread has planned it; an
                    # existing plan.json stays (an adaptive search's asked trials are in it)
                    plan.source = replace(plan.source, path=str(saved))
                    sweeps.render(plan, self.cfg.where.jobs_dir)
                run = Run(exp.name, exp.namespace, saved, image=image, submitted_by=caller.name)
                self._launch(run, None)
        finally:
            incoming.unlink(missing_ok=True)
        return {"experiment": exp.name, "namespace": exp.namespace, "trials": len(plan.trials)}

    def _validate(self, path: Path, fields: dict[int, str] | None, caller: Any, **overrides: str | None) -> sweeps.Plan:
        from kubesweep.k8s.client import context_namespace
        from kubesweep.plan import job, provenance
        from kubesweep.run import journal

        target = self.cfg.target
        mine = sorted(caller.namespaces) if caller.namespaces is not None else []
        default = mine[0] if len(mine) == 1 else context_namespace(target.kubeconfig, target.context)
        saved = str(path)
        _no_build(path, fields)
        try:
            plan = sweeps.plan(saved, default_namespace=default, configmaps=sweeps.configmaps(target), **overrides)
        except SpecError as exc:
            raise refused(exc, saved, fields) from None
        exp = plan.experiment
        if exp.build is not None:  # (a format _no_build does not read it from)
            raise build_refused(plan.source.positions.key(("build",)), saved, fields)
        if not caller.sees(exp.namespace):
            raise Refused(403, f"namespace {exp.namespace}: your token ({caller.name}) may not run sweeps there; "
                          f"yours: {', '.join(mine) or 'none'}")
        kept = Path(self.cfg.where.results_dir) / exp.name
        try:  # results of another trial template are not this file's: refused before anything runs
            provenance.check_results(kept, exp.name, job.trial_template(exp, plan.image),
                                     provenance.kept(journal.load(kept), False))
        except provenance.TemplateChanged as exc:
            raise Refused(409, str(exc)) from None
        other = self.state(exp.name)
        if other and other.get("namespace") != exp.namespace:
            raise Refused(409, f"experiment {exp.name} was run in namespace {other['namespace']} by this server; "
                          "name this one differently")
        return plan

    # ------------------------------------------------------------------ cancel / retry
    def _namespace_of(self, name: str, caller: Any) -> str:
        """The namespace of an experiment the caller sees; Refused 404 otherwise (another team's too)."""
        from kubesweep.serve.store import valid_name

        if not valid_name(name):
            raise Refused(404, f"no experiment {name}")
        saved = self.state(name)
        namespace = saved.get("namespace") if saved else None
        if namespace is None:
            index = Path(self.cfg.where.jobs_dir) / name / sweeps.PLAN_FILE
            try:
                namespace = json.loads(index.read_text()).get("namespace")
            except (OSError, ValueError):
                namespace = None
        if namespace is None or not caller.sees(namespace):
            raise Refused(404, f"no experiment {name}")
        return namespace

    def cancel(self, name: str, caller: Any) -> dict[str, Any]:
        """Cancel as `kubesweep cancel` does (lifecycle.cancel: unfinished Jobs marked, then deleted;
        the sweep thread sees the mark and stops). A sweep with no Job to mark (building its image,
        all waiting) is stopped here."""
        from kubesweep.k8s import client as kube
        from kubesweep.run import lifecycle

        namespace = self._namespace_of(name, caller)
        run = self._runs.get(name)
        if run is not None and run.alive():
            run.cancelling = True
        n = lifecycle.cancel(kube.clients(self.cfg.target.kubeconfig, self.cfg.target.context), name, namespace)
        if run is not None and run.alive():
            # The sweep would see the marks through its Job watch, which a loaded API server can
            # delay by a minute; it is told here instead (after the marks, so that the count above
            # is of the Jobs this call stopped, not of those the sweep deleted first).
            run.cancelled = True
            if not n:
                run.interrupt()
        return {"experiment": name, "namespace": namespace, "cancelled": n}

    def retry(self, name: str, caller: Any) -> dict[str, Any]:
        """Run the sweep again with retry_failed: its failed and cancelled trials run again."""
        namespace = self._namespace_of(name, caller)
        saved = self.state(name)
        if saved is None or not (self.state_dir / saved["body"]).is_file():
            raise Refused(409, f"experiment {name} was not submitted to this server: run it again with "
                          "`kubesweep sweep FILE --retry-failed`")
        with self._lock:
            current = self._runs.get(name)
            if current is not None and current.alive():
                raise Refused(409, f"experiment {name} is running; retry it once it has ended")
            run = Run(name, namespace, self.state_dir / saved["body"], retry_failed=True,
                      image=saved.get("options", {}).get("image"), submitted_by=caller.name)
            self._launch(run, None)
        return {"experiment": name, "namespace": namespace, "retrying": True}

    # ------------------------------------------------------------------ the sweep threads
    def _save(self, run: Run, state: str, **extra: Any) -> None:
        data = {"experiment": run.name, "namespace": run.namespace, "started": run.started,
                "body": str(run.body.relative_to(self.state_dir)),
                "options": {"retry_failed": run.retry_failed, **({"image": run.image} if run.image else {})},
                "state": state, "submitted_by": run.submitted_by, **extra}
        write_json(self.runs_dir / f"{run.name}.json", data)

    def _launch(self, run: Run, saved: dict[str, Any] | None) -> None:
        run.started = (saved or {}).get("started") or _now()
        self._save(run, RUNNING_STATE, outcome=None, message=None)
        run.thread = threading.Thread(target=self._drive, args=(run,), name=f"sweep-{run.name}", daemon=True)
        self._runs[run.name] = run
        run.thread.start()

    def _hooks(self, run: Run) -> sweeps.Hooks:
        def change(rec: TrialRecord) -> None:
            r = row(rec, run.metric)
            with run.lock:
                run.states[rec.name] = rec.state
                if rec.state in FINAL:
                    run.rows.pop(rec.name, None)
                else:
                    old = run.rows.get(rec.name)
                    if old is not None and r["metric"] is None:  # the metric so far stays until the final one
                        r["metric"], r["step"] = old["metric"], r["step"] if r["step"] is not None else old["step"]
                    if old is not None and "curve" in old:
                        r["curve"] = old["curve"]
                    run.rows[rec.name] = r
                if rec.state == SUCCEEDED:
                    self._better(run, rec)
            self.broker.publish("trial", {**r, "experiment": run.name, "namespace": run.namespace})
            if rec.state in FINAL:
                self._announce(run, RUNNING_STATE)

        def resumed(recs: list[TrialRecord]) -> None:
            with run.lock:
                for rec in recs:
                    run.states[rec.name] = rec.state
                    if rec.state == SUCCEEDED:
                        self._better(run, rec)
            if run.retry_failed:  # the failed trials are forgotten: resuming later must not forget the new ones
                run.retry_failed = False
                self._save(run, RUNNING_STATE, outcome=None, message=None)
            self._announce(run, RUNNING_STATE)

        def notice(text: str) -> None:
            log.info("%s: %s", run.name, text)

        return sweeps.Hooks(notice=notice, change=change, resumed=resumed, progress=_Progress(self, run),
                            cancelled=lambda: run.cancelled)

    @staticmethod
    def _better(run: Run, rec: TrialRecord) -> None:
        value = rec.metrics.get(run.metric) if run.metric else None
        if value is None:
            return
        best = run.best
        if best is None or (value > best["value"] if run.direction == "maximize" else value < best["value"]):
            run.best = {"trial": rec.name, "value": value, "params": dict(rec.params)}

    def summary(self, run: Run, state: str) -> dict[str, Any]:
        with run.lock:
            return {"name": run.name, "namespace": run.namespace, "metric": run.metric, "direction": run.direction,
                    "parameters": list(run.parameters), "total": max(run.total, len(run.states)),
                    "counts": (counts := run.counts()), "best": run.best, "driven": state == RUNNING_STATE,
                    "state": RUNNING_STATE if state == RUNNING_STATE else (
                        FINISHED if not counts["pending"] and not counts["running"] else "stopped")}

    def _announce(self, run: Run, state: str, message: str | None = None) -> None:
        data = self.summary(run, state)
        if state != RUNNING_STATE:
            data["outcome"] = state
            data["message"] = message
        self.broker.publish("experiment", data)

    def _sweep(self, run: Run, plan: sweeps.Plan) -> sweeps.Outcome:
        """The library call; an interrupt (stop, cancel) is delivered only while inside it."""
        try:
            with run.guard:
                if run.cancelling or run.stopping:  # asked while the body was planned: not started at all
                    raise KeyboardInterrupt
                run.in_sweep = True
            return sweeps.run(plan, self.cfg.target, self.cfg.where, retry_failed=run.retry_failed,
                              hooks=self._hooks(run))
        finally:
            with run.guard:
                run.in_sweep = False
                _async_raise(run.thread, None)  # one asked for as it returned is not delivered after

    def _drive(self, run: Run) -> None:
        """The sweep thread: plan the saved body, run it to its end, record how it ended."""
        outcome: dict[str, Any] | None = None
        message: str | None = None
        state = FAILED
        try:
            plan = sweeps.plan(str(run.body), name=run.name, namespace=run.namespace, image=run.image,
                               configmaps=sweeps.configmaps(self.cfg.target))
            exp = plan.experiment
            run.metric, run.direction = exp.objective.metric, exp.objective.direction
            run.parameters, run.total = list(exp.parameters), len(plan.trials)
            self._announce(run, RUNNING_STATE)
            result = self._sweep(run, plan)
            outcome = {"counts": result.counts, "stopped": result.stopped, "best": result.best,
                       "seconds": round(result.seconds, 1), "exit_code": result.exit_code}
            state = CANCELLED if result.stopped == "cancelled" or run.cancelling else FINISHED
        except (KeyboardInterrupt, KubesweepError) as exc:  # Interrupted is a KubesweepError
            if run.stopping:  # the server is stopping: the state stays running, resumed at the next start
                log.info("%s: left running on the cluster; resumed when the server starts again", run.name)
                return
            if run.cancelling:
                state, message = CANCELLED, "cancelled through the API"
            else:
                message = str(exc) or type(exc).__name__
        except Exception as exc:  # an API server that does not answer, or refuses: this sweep ends, not the server
            from kubernetes.client.exceptions import ApiException

            from kubesweep.k8s.client import api_error, no_answer

            message = (api_error(exc) if isinstance(exc, ApiException) else no_answer(exc)) or f"{type(exc).__name__}: {exc}"
            log.exception("sweep %s failed", run.name)
        try:
            self._save(run, state, ended=_now(), outcome=outcome, message=message)
        finally:
            with run.lock:
                run.rows.clear()
            run.ended = True
            self._announce(run, state, message)


def _no_build(path: Path, fields: dict[int, str] | None) -> None:
    """A grid.yaml with ``build:`` is refused before it is planned (planning looks for its
    Dockerfile, which is on the user's machine, not beside the saved body)."""
    from kubesweep.spec import yamlsource
    from kubesweep.spec.formats import NATIVE, detect

    try:
        data, pos = yamlsource.load(path)
    except SpecError:
        return  # the plan says what is wrong, as the CLI does
    if isinstance(data, dict) and "build" in data and detect(data) == NATIVE:
        raise build_refused(pos.key(("build",)), str(path), fields)


def _async_raise(thread: threading.Thread | None, exc: type[BaseException] | None) -> None:
    """Raise ``exc`` in ``thread`` at its next bytecode (None: withdraw one not yet raised)."""
    if thread is None or thread.ident is None or not thread.is_alive():
        return
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident),
                                               None if exc is None else ctypes.py_object(exc))
