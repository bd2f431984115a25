"""run/pareto.py: the Pareto front of a multi-objective sweep."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from kubesweep.run.pareto import dominates, pareto_front

OBJ = [("acc", "maximize"), ("latency", "minimize")]


def rec(name, acc, latency, state="succeeded"):
    return {"name": name, "state": state, "params": {}, "metrics": {"acc": acc, "latency": latency}}


def test_the_front_keeps_the_trials_nothing_beats_in_both_objectives():
    recs = [rec("a", 0.9, 30), rec("b", 0.8, 10), rec("c", 0.8, 20), rec("d", 0.95, 40), rec("e", 0.7, 10),
            rec("f", 0.99, 5, state="failed"), rec("g", None, 1), rec("h", float("nan"), 1), rec("i", 0.9, 30)]
    assert [r["name"] for r in pareto_front(recs, OBJ)] == ["a", "b", "d", "i"]  # ties stay, order kept
    # one objective: the best (and its ties)
    assert [r["name"] for r in pareto_front(recs, OBJ[:1])] == ["d"]


values = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5))


@settings(max_examples=200, deadline=None)
@given(points=st.lists(st.tuples(values, values, st.sampled_from(["succeeded", "failed"])), max_size=30),
       directions=st.tuples(st.sampled_from(["maximize", "minimize"]), st.sampled_from(["maximize", "minimize"])))
def test_no_front_member_is_dominated_and_every_other_trial_is(points, directions):
    objectives = [("acc", directions[0]), ("latency", directions[1])]
    recs = [rec(str(i), a, b, s) for i, (a, b, s) in enumerate(points)]
    front = pareto_front(recs, objectives)

    def point(r):
        return tuple(-r["metrics"][m] if d == "maximize" else r["metrics"][m] for m, d in objectives)

    import math
    valid = [r for r in recs if r["state"] == "succeeded" and all(
        isinstance(r["metrics"][m], (int, float)) and math.isfinite(r["metrics"][m]) for m, _ in objectives)]
    assert all(r in valid for r in front)
    for r in front:
        assert not any(dominates(point(o), point(r)) for o in valid)
    for r in valid:
        if r not in front:
            assert any(dominates(point(f), point(r)) for f in front)
