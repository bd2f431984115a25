"""The example trainer really trains, prints the seed's metric line and writes its outputs."""

import json
import os
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


def test_the_shared_output_directory_wins_over_output_dir(tmp_path):
    """$KUBESWEEP_OUTPUT_DIR (output.share: the trial's directory on the shared storage) is where
    the checkpoint, the log and metrics.json go, before $OUTPUT_DIR."""
    shared, plain = tmp_path / "share" / "team" / "exp" / "trial", tmp_path / "output"
    env = {**os.environ, "KUBESWEEP_OUTPUT_DIR": str(shared), "OUTPUT_DIR": str(plain)}
    proc = subprocess.run([sys.executable, str(EXAMPLES / "train.py"), "--epochs=2"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=True)
    metrics = json.loads((shared / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2]
    assert metrics["test_accuracy"] == read_metric(proc.stdout, "Test accuracy")
    assert (shared / "checkpoint" / "model.npz").is_file() and (shared / "logs" / "train.log").is_file()
    assert not plain.exists()
