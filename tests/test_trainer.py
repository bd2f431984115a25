"""The example trainer really trains, prints the seed's metric line and writes its outputs."""

import json
import subprocess
import sys

from kubesweep.run.metrics import read_metric

from .conftest import EXAMPLES


def _train(tmp_path, *args):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(EXAMPLES / "train.py"), *args, "--output-dir", str(out)],
                          capture_output=True, text=True, timeout=120, check=True)
    return proc.stdout, out


def test_seed_000_positional_call(tmp_path):
    stdout, out = _train(tmp_path, "3", "adam", "0.2")
    acc = read_metric(stdout, "Test accuracy")
    assert acc is not None and acc > 0.85  # 8x8 digits: a few epochs of Adam get well above chance
    meta = json.loads((out / "checkpoint" / "meta.json").read_text())
    assert meta["optimizer"] == "adam" and meta["epochs"] == 3 and round(meta["test_accuracy"], 4) == acc
    assert (out / "checkpoint" / "model.npz").stat().st_size > 10_000
    assert "test_accuracy=" in (out / "logs" / "train.log").read_text()


def test_hyperparameters_change_the_result(tmp_path):
    a = read_metric(_train(tmp_path, "--epochs=1", "--optimizer=sgd", "--lr=0.001")[0], "Test accuracy")
    b = read_metric(_train(tmp_path, "--epochs=4", "--optimizer=adam", "--dropout=0.1")[0], "Test accuracy")
    assert a is not None and b is not None and b > a + 0.1
