import pytest

from kubesweep.run.metrics import read_metric, read_objective
from kubesweep.spec.model import Objective

SEED_OUTPUT = """\
Epoch 1/5
1875/1875 - loss: 0.29 - accuracy: 0.91
Test loss: 0.0712
Test accuracy: 0.9781
"""


def test_seed_000_output():
    assert read_metric(SEED_OUTPUT, "Test accuracy") == 0.9781
    assert read_metric(SEED_OUTPUT, "Test loss") == 0.0712


def test_last_value_wins_and_name_is_not_a_suffix():
    text = "accuracy=0.5\nval_accuracy=0.99\naccuracy = 7e-1\n"
    assert read_metric(text, "accuracy") == 0.7
    assert read_metric(text, "val_accuracy") == 0.99


def test_missing_and_nan_are_none():
    assert read_metric("loss=0.3\n", "accuracy") is None
    assert read_metric("accuracy=nan\n", "accuracy") is None


@pytest.mark.parametrize("regex, expected", [
    (r"acc is (\d+\.\d+)", 0.93),
    (r"acc is (?P<value>\d+\.\d+)", 0.93),
    (r"(\w+) is (\d+\.\d+)", 0.93),
    # Katib's default metricsFormat: four groups, the first two are the name and the value
    (r"([\w|-]+)\s*is\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)", 0.93),
])
def test_configured_regex(regex, expected):
    assert read_metric("acc is 0.91\nacc is 0.93\nloss is 0.2\n", "acc", regex) == expected


def test_objective_with_additional_metrics():
    o = Objective.model_validate({"metric": "accuracy", "additionalMetrics": ["loss"]})
    assert read_objective("loss=0.2 accuracy=0.9\n", o) == {"accuracy": 0.9, "loss": 0.2}
