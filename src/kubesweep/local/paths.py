"""Where kubesweep keeps what outlives a clone: built artifacts, images, caches, pid files.

Everything goes under one cache root outside the repository (``$KUBESWEEP_CACHE``, default
``~/.cache/kubesweep``), so a fresh clone — CI's included — reuses what an earlier one built.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def cache_root() -> Path:
    return Path(os.environ.get("KUBESWEEP_CACHE", "~/.cache/kubesweep")).expanduser()
