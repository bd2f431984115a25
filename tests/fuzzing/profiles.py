"""Hypothesis profiles for the fuzzer, chosen by the environment variable KUBESWEEP_FUZZ.

- ``quick`` (the default, part of ``invoke test --quick``): derandomized, so every run tries the
  same inputs; a small fixed number of examples per test; no shrinking (a failing input that hits
  the CPU limit would cost 5 s per shrink step) and no example database (nothing is written into
  the repository).
- ``long``: thousands of random examples per test, shrinking on, and an example database outside
  the repository (``$KUBESWEEP_FUZZ_DB``, default ~/.cache/kubesweep-fuzz) so a failure found once
  is replayed first next time.

There is no per-example deadline in either: limits.py enforces CPU and memory in the child.
The profiles are applied per test (``@fuzz_settings``), not loaded globally, so other tests that
use hypothesis keep their own settings.
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, Phase, settings
from hypothesis.database import DirectoryBasedExampleDatabase

QUICK_EXAMPLES = 60
LONG_EXAMPLES = 2500
_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example,
            HealthCheck.filter_too_much]

settings.register_profile(
    "quick", max_examples=QUICK_EXAMPLES, derandomize=True, database=None, deadline=None, print_blob=False,
    phases=[Phase.explicit, Phase.generate], suppress_health_check=_SLOW_OK,
)
settings.register_profile(
    "long", max_examples=LONG_EXAMPLES, derandomize=False, deadline=None, print_blob=True,
    database=DirectoryBasedExampleDatabase(
        os.environ.get("KUBESWEEP_FUZZ_DB", str(Path.home() / ".cache" / "kubesweep-fuzz"))),
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink], suppress_health_check=_SLOW_OK,
)

NAME = os.environ.get("KUBESWEEP_FUZZ", "quick")
if NAME not in ("quick", "long"):
    raise ValueError(f"KUBESWEEP_FUZZ must be quick or long, not {NAME!r}")
PROFILE = settings.get_profile(NAME)


def fuzz_settings(examples: int | None = None) -> settings:
    """The chosen profile; ``examples`` scales a test's share relative to the default."""
    if examples is None:
        return settings(PROFILE)
    scale = examples / QUICK_EXAMPLES
    return settings(PROFILE, max_examples=max(1, round(PROFILE.max_examples * scale)))
