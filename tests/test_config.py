"""wiseale.config: RunConfig's checks (one per field, whoever sets it), its saved form and
the learning-rate schedules."""

import dataclasses
import json
import math

import pytest

from wiseale.config import RunConfig, learning_rate
from wiseale.errors import WisealeError
from wiseale.storage import load_tensors, save_tensors
from wiseale.training import load_run, train


@pytest.mark.parametrize("change, message", [
    ({"epochs": 0}, "epochs must be a positive integer, got 0"),
    ({"batch_size": 2.5}, "batch-size must be a positive integer, got 2.5"),
    ({"lr": float("nan")}, "lr must be a finite positive number, got nan"),
    ({"sigma2": -1.0}, "sigma2 must be a finite positive number, got -1.0"),
    ({"on_nonfinite": "ignore"}, "unknown on-nonfinite 'ignore'; use one of stop, skip"),
    ({"options": ["beta"]}, "options must be a table of KEY = VALUE settings"),
    ({"sample_shape": [1, 0]}, "sample-shape must be a list of positive integers"),
])
def test_every_field_is_checked_whoever_set_it(change, message):
    config = dataclasses.replace(RunConfig(method="aevb", data="sine"), **change)
    with pytest.raises(WisealeError, match=message.replace("(", "\\(").replace(")", "\\)")):
        config.validate()


def test_a_saved_config_round_trips_and_a_foreign_one_is_refused():
    config = RunConfig(method="wae", data="sine", epochs=3, lr_schedule="step",
                       lr_milestones=[1, 2], lr_gamma=[0.5, 0.1], options={"lambda": 3.0})
    saved = json.loads(json.dumps(config.to_dict()))
    assert RunConfig.from_dict(saved) == config
    with pytest.raises(WisealeError, match="unknown fields \\['colour'\\]; it was written by "
                                           "another version"):
        RunConfig.from_dict({**saved, "colour": "red"})
    del saved["method"]
    with pytest.raises(WisealeError, match="lacks the fields \\['method'\\]; it is corrupt"):
        RunConfig.from_dict(saved)
    with pytest.raises(WisealeError, match="a config must be a JSON object, got list"):
        RunConfig.from_dict([])


def test_step_schedule_with_one_gamma_per_milestone():
    config = RunConfig(method="wae", data="sine", epochs=100, lr=1e-3, lr_schedule="step",
                       lr_milestones=[30, 50], lr_gamma=[0.5, 0.2]).validate()  # 003 App. B.3
    rates = [learning_rate(config, e) for e in (0, 29, 30, 49, 50, 99)]
    assert rates == pytest.approx([1e-3, 1e-3, 5e-4, 5e-4, 1e-4, 1e-4], rel=1e-12)
    single = dataclasses.replace(config, lr_gamma=0.1)
    assert learning_rate(single, 60) == pytest.approx(1e-5, rel=1e-12)
    with pytest.raises(WisealeError, match="2 lr-gamma values need as many lr-milestones"):
        dataclasses.replace(config, lr_milestones=[30]).validate()
    with pytest.raises(WisealeError, match="lr-gamma must be a finite positive number, got -1.0"):
        dataclasses.replace(config, lr_gamma=[0.5, -1.0]).validate()


def test_cosine_schedule_is_its_closed_form_at_every_epoch():
    """lr_t = lr * (1 + cos(pi t / T)) / 2 for the 0-based epoch t: the full lr in the first
    epoch, half of it at t = T / 2, and lr (1 + cos(pi (T - 1) / T)) / 2 > 0 in the last."""
    config = RunConfig(method="wae", data="sine", epochs=10, lr=2e-3,
                       lr_schedule="cosine").validate()
    rates = [learning_rate(config, t) for t in range(10)]
    assert rates == pytest.approx([2e-3 * 0.5 * (1 + math.cos(math.pi * t / 10))
                                   for t in range(10)], rel=1e-12)
    assert rates[0] == 2e-3 and rates[5] == pytest.approx(1e-3, rel=1e-12)


def test_runs_written_before_newer_config_fields_still_load(tmp_path, tiny_sine):
    train(tiny_sine, tmp_path / "run", progress=False)
    path = tmp_path / "run/config.json"
    old = json.loads(path.read_text())
    del old["precision"], old["micro_batch"]  # a config.json from an earlier wiseale
    path.write_text(json.dumps(old))
    tensors, meta = load_tensors(tmp_path / "run/model.safetensors")
    save_tensors(tmp_path / "run/model.safetensors", tensors, {**meta, "config": old})
    model, config = load_run(tmp_path / "run")
    assert (config.precision, config.micro_batch) == ("fp32", None)
