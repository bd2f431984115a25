"""The makespan benchmark's workload, without a cluster."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import makespan  # noqa: E402 - bench/makespan.py


def test_exact_levels_repeat_and_a_spread_gives_each_trial_its_own_duration():
    assert makespan.trial_durations([30, 60], 10, 0) == ([30, 60], 5)
    values, reps = makespan.trial_durations([30, 45, 60, 75, 90], 2000, 0.1)
    assert reps == 1 and len(values) == 2000 == len(set(values))
    for i, level in enumerate([30, 45, 60, 75, 90]):
        mine = values[i::5]  # levels stay interleaved in plan order
        assert all(0.9 * level <= v <= 1.1 * level for v in mine)
        assert sum(mine) / len(mine) == pytest.approx(level, rel=0.005)  # spread evenly: the sum stays
        assert mine[:10] != sorted(mine[:10])  # and not from short to long in plan order
    # what a zero-overhead client makes of them, longest first: near the ideal, not on it
    ideal = sum(values) / 400
    assert ideal < makespan.list_schedule(sorted(values, reverse=True), 400) < 1.02 * ideal


def test_a_spread_that_would_give_two_trials_one_duration_is_refused():
    with pytest.raises(SystemExit, match="same duration"):
        makespan.trial_durations([1], 10, 0.001)  # ten trials within 1 s ± 1 ms, in millisecond steps
