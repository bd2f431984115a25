from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "mnist"

MINIMAL = """\
name: demo
image: localhost:5000/demo/trainer:1
command: [python3, train.py, "${epochs}", "${optimizer}"]
parameters:
  epochs: [1, 2]
  optimizer: [adam, sgd]
objective: {metric: accuracy}
"""


@pytest.fixture
def grid_file(tmp_path: Path):
    """Write a sweep file (dedented) into tmp_path and return its path."""

    def make(text: str = MINIMAL, name: str = "grid.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return make
