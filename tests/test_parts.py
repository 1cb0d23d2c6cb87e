"""A run records the parts it was built from (wiseale.parts): loading, evaluating and resuming
build from them, never from today's preset; a run saved before parts were recorded still
loads."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from wiseale.cli import main
from wiseale.config import RunConfig
from wiseale.errors import WisealeError
from wiseale.methods import METHODS
from wiseale.noises import FixedNoise
from wiseale.regularizers import VariancePenalty
from wiseale.storage import load_tensors, save_tensors
from wiseale.training import load_run, train

FIXTURE = Path(__file__).parent / "fixtures" / "config_2026-12-05.json"  # before parts


def _config(**changes) -> RunConfig:
    """The fixture's settings (vcae on 64 sine waves, d_z = 3, one epoch)."""
    saved = json.loads(FIXTURE.read_text())
    fields = {k: v for k, v in saved.items() if k not in ("sample_shape", "likelihood", "net")}
    fields["options"] = {}
    return dataclasses.replace(RunConfig.from_dict(fields), **changes)


def _outputs(run_dir) -> tuple[torch.Tensor, torch.Tensor]:
    model = load_run(run_dir)[0]
    x = torch.linspace(-1, 1, 256).repeat(4, 1, 1) * torch.arange(1, 5).view(4, 1, 1) / 4
    with torch.no_grad():
        return model.encode(x, sample=False).mu, model.reconstruct(x)


def test_a_new_run_saves_its_parts_with_their_arguments(tmp_path):
    train(_config(), tmp_path / "r", progress=False)
    parts = json.loads((tmp_path / "r/config.json").read_text())["parts"]
    assert parts == {
        "noise": {"name": "fixed", "args": {"sigma_eps": pytest.approx(0.1 ** 0.5)}},
        "regularizers": [{"name": "variance", "args": {"weight": 1.0, "target": 3.0}}],
        "reconstruction": "sample",
        "likelihood": {"name": "gaussian", "args": {"sigma2": 0.5}}}


def test_a_preset_changed_after_training_changes_nothing_the_run_does(tmp_path, monkeypatch):
    run, straight = tmp_path / "run", tmp_path / "straight"
    train(_config(epochs=2), straight, progress=False)
    train(_config(), run, progress=False)
    before = _outputs(run)
    evaluation = json.loads((run / "evaluation.json").read_text())
    # the vcae preset now makes a deterministic encoder with another penalty weight
    monkeypatch.setitem(METHODS, "vcae", dataclasses.replace(
        METHODS["vcae"], noise="none", defaults={"lambda": 5.0, "v": None}))
    model = load_run(run)[0]
    assert isinstance(model.noise, FixedNoise)
    assert isinstance(model.regularizers[0], VariancePenalty)
    assert model.regularizers[0].weight == 1.0
    for ours, theirs in zip(_outputs(run), before, strict=True):
        assert torch.equal(ours, theirs)
    assert main(["evaluate", str(run)]) == 0
    assert json.loads((run / "evaluation.json").read_text()) == evaluation
    # resumed from the CLI and from Python: the run goes on as trained, bit for bit
    assert main(["train", "--resume", "--out", str(run), "--epochs", "2", "--no-progress"]) == 0
    straight_weights = load_tensors(straight / "model.safetensors")[0]
    for key, value in load_tensors(run / "model.safetensors")[0].items():
        assert torch.equal(value, straight_weights[key]), key
    train(_config(epochs=3), run, resume=True, progress=False)
    assert json.loads((run / "config.json").read_text())["parts"]["noise"]["name"] == "fixed"


def test_a_run_saved_before_parts_were_recorded_loads_as_it_trained(tmp_path):
    run = tmp_path / "run"
    train(_config(), run, progress=False)
    expected = _outputs(run)
    # rewrite the run in the former format: no parts in config.json or in the weights' meta
    (run / "config.json").write_text(FIXTURE.read_text())
    tensors, meta = load_tensors(run / "model.safetensors")
    meta["config"] = {k: v for k, v in meta["config"].items() if k not in ("parts",
                                                                           "data_seed")}
    save_tensors(run / "model.safetensors", tensors, {k: v for k, v in meta.items()
                                                      if k != "format"})
    model, config = load_run(run)
    assert config.parts is None and isinstance(model.noise, FixedNoise)
    for ours, theirs in zip(_outputs(run), expected, strict=True):
        assert torch.equal(ours, theirs)
    assert main(["evaluate", str(run)]) == 0


def test_a_part_this_version_lacks_is_refused_in_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    train(_config(), run, progress=False)
    tensors, meta = load_tensors(run / "model.safetensors")
    for kind, bad in (("noise", {"name": "wavelet", "args": {}}),
                      ("noise", {"name": "fixed", "args": {"sigma": 1.0}})):
        meta["config"]["parts"] = {**meta["config"]["parts"], kind: bad}
        save_tensors(run / "model.safetensors", tensors, {k: v for k, v in meta.items()
                                                          if k != "format"})
        (run / "config.json").write_text(json.dumps(meta["config"]))
        with pytest.raises(WisealeError, match="the noise .* load a saved run with the version"):
            load_run(run)
    with pytest.raises(WisealeError, match="parts must be"):
        train(_config(parts={"noise": 3}), tmp_path / "bad", progress=False)
    assert not (tmp_path / "bad").exists()


def test_training_rows_of_the_former_format_are_read_in_todays_keys(tmp_path):
    """A factorvae run's metrics.jsonl of 2026-12-05 (recon_error of the sampled z, the prior KL
    as both kl and kl_prior), then a row of today's format: read as one history."""
    from wiseale.training.run import read_metrics

    old = (FIXTURE.parent / "metrics_2026-12-05.jsonl").read_text()
    raw = [json.loads(line) for line in old.splitlines()]
    today = {k: v for k, v in raw[-1].items() if k not in ("kl", "recon_error")}
    path = tmp_path / "metrics.jsonl"
    path.write_text(old + json.dumps({**today, "epoch": 3, "sample_recon_error": 1.0}) + "\n")
    rows = read_metrics(path, same_keys=True)
    assert [row["sample_recon_error"] for row in rows[:2]] == [r["recon_error"] for r in raw]
    assert [row["kl_prior"] for row in rows[:2]] == [r["kl"] for r in raw]
    assert all("kl" not in row and "recon_error" not in row for row in rows)
    assert rows[2]["sample_recon_error"] == 1.0
