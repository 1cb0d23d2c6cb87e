"""Callbacks and TensorBoard (issue 16): the hooks of a run, in order, with the rows that
metrics.jsonl holds; `--log tensorboard` writes readable event files."""

import dataclasses
import json

import pytest
import torch

from wiseale.training import Callback, train


class Recorder(Callback):
    def __init__(self):
        self.calls = []

    def setup(self, run):
        self.calls.append(("setup", run.steps, dict(run.kernels)))

    def on_train_start(self, config, out, first_epoch):
        self.calls.append(("start", first_epoch))

    def on_step_end(self, step, parts):
        self.calls.append(("step", step, float(parts["loss"])))

    def on_epoch_end(self, epoch, row, model, x_eval):
        self.calls.append(("epoch", epoch, dict(row)))

    def on_train_end(self, model, evaluation):
        self.calls.append(("end", evaluation))


def test_a_recording_callback_sees_every_step_epoch_and_the_evaluation(tmp_path, tiny_sine):
    recorder = Recorder()
    train(tiny_sine, tmp_path / "run", progress=False, callbacks=[recorder])  # 2 x 8 steps
    kinds = [call[0] for call in recorder.calls]
    assert kinds == ["setup", "start"] + (["step"] * 8 + ["epoch"]) * 2 + ["end"]
    assert recorder.calls[0] == ("setup", 16, {"train": "native"})  # after the model's parts
    assert [call[1] for call in recorder.calls if call[0] == "step"] == list(range(16))
    rows = [json.loads(r) for r in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert [call[2] for call in recorder.calls if call[0] == "epoch"] == rows
    first_epoch_losses = [call[2] for call in recorder.calls[2:10]]
    assert rows[0]["loss"] == pytest.approx(sum(first_epoch_losses) / 8, rel=1e-5)
    evaluation = json.loads((tmp_path / "run/evaluation.json").read_text())
    assert recorder.calls[-1][1]["test"]["recon_error"] == evaluation["test"]["recon_error"]


def test_a_resumed_run_starts_its_callbacks_at_its_epoch(tmp_path, tiny_sine):
    train(dataclasses.replace(tiny_sine, epochs=1), tmp_path / "run", progress=False)
    recorder = Recorder()
    train(tiny_sine, tmp_path / "run", resume=True, progress=False, callbacks=[recorder])
    assert recorder.calls[1] == ("start", 1)
    assert [c[1] for c in recorder.calls if c[0] == "step"] == list(range(8, 16))


def test_log_tensorboard_writes_scalars_images_and_histograms(tmp_path, capsys):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from wiseale.cli import main

    assert main(["train", "--method", "wise-ale", "--data", "sine", "--n-train", "256",
                 "--n-test", "64", "--epochs", "2", "--batch-size", "32", "--no-progress",
                 "--log", "tensorboard", "--log-every", "4", "--out", str(tmp_path)]) == 0
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert {"train/loss", "test/recon_error", "step/loss", "final_test/iwae"} <= set(scalars)
    # one axis, steps done: 8 steps an epoch
    assert [e.step for e in events.Scalars("step/loss")] == [1, 5, 9, 13]
    assert [e.step for e in events.Scalars("train/loss")] == [8, 16]
    assert [e.step for e in events.Scalars("final_test/iwae")] == [16]
    images = events.Images("prior_samples")
    assert [image.step for image in images] == [8, 16]
    assert (images[0].width, images[0].height) > (224, 56)  # a grid, each pixel 2 x 2
    rows = [json.loads(r) for r in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert events.Scalars("train/loss")[1].value == pytest.approx(rows[1]["loss"], rel=1e-6)
    assert {"reconstructions", "prior_samples"} <= set(events.Tags()["images"])
    assert "latent/mu_0" in events.Tags()["histograms"]


def test_tensorboard_images_are_one_zoomed_grid(tmp_path):
    """16 images of 8 x 8, 8 a row: one image of (8 x 10 + 2) x (2 x 10 + 2) pixels, zoomed 2x,
    inputs in the first row, with 2 white pixels between the images."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from wiseale.training import TensorBoard

    board = TensorBoard(tmp_path)
    board.writer = board.make_writer(str(tmp_path))
    board._samples("grid", torch.zeros(16, 1, 8, 8), columns=8)
    board.writer.close()
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    events.Reload()
    image = events.Images("grid")[0]
    assert (image.width, image.height) == (2 * 82, 2 * 22)
