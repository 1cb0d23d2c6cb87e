"""The three scales of an experiment (quick, medium, full) and seeds that redraw the data."""

import dataclasses
import json

import pytest
import torch

from wiseale.build import load_split
from wiseale.cli import main
from wiseale.config import RunConfig
from wiseale.errors import WisealeError
from wiseale.experiments import EXPERIMENTS, paper001, paper003, paper004
from wiseale.experiments.spec import RunSpec
from wiseale.storage import read_meta


def test_medium_settings_sit_between_quick_and_full_and_runs_fall_back_on_full():
    mnist2d = paper003.MNIST2D.configs("fashion-mnist", "medium", 0)
    assert {(c.epochs, c.n_train, c.net) for c in mnist2d.values()} == {
        (100, 10_000, "mnist-conv")}
    table2 = paper003.TABLE2.configs("fashion-mnist", "medium", 0)
    assert (table2["vae"].epochs, table2["vae-iaf"].epochs) == (20, 40)
    lv = paper004.FID.configs("fashion-mnist", "medium", 0)
    assert lv["lv-vae"].likelihood == "optimal" and lv["vae"].epochs == 15
    # a run with no medium fields of its own takes its full-scale ones
    run = RunSpec("x", "aevb", quick={"epochs": 1}, full={"epochs": 9})
    assert (run.at("quick"), run.at("medium"), run.at("full")) == (
        {"epochs": 1}, {"epochs": 9}, {"epochs": 9})
    assert paper001.EMBEDDING.configs("digits", "medium", 0)["aevb"].n_train is None


def test_every_offline_experiment_has_a_medium_scale_or_says_why_not():
    for spec in EXPERIMENTS.values():
        if spec.medium is None:
            assert spec.no_medium, spec.name
        else:
            assert not spec.no_medium, spec.name
    assert EXPERIMENTS["celeba"].medium is None and EXPERIMENTS["vcae-overfit"].medium is None


def test_unknown_or_missing_scales_are_refused_in_one_line(tmp_path, capsys):
    with pytest.raises(WisealeError, match="scale 'big' is not one of quick | medium | full"):
        paper001.SINE.settings("sine", "big")
    with pytest.raises(WisealeError, match="the celeba experiment has no medium scale: its"):
        paper001.CELEBA.run(tmp_path, scale="medium")
    code = main(["reproduce", "celeba", "--scale", "medium", "--out", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert code == 1 and "no medium scale" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit):  # --quick is --scale quick: not both
        main(["reproduce", "prior-constraint", "--quick", "--scale", "full", "--out",
              str(tmp_path / "p")])
    assert not (tmp_path / "p").exists()


def _rows(data) -> set[bytes]:
    return {row.tobytes() for row in data.floats().numpy()}


def test_a_data_seed_draws_a_seeded_random_subset_of_the_split():
    base = RunConfig(method="aevb", data="digits", n_train=300, n_test=100)
    whole = load_split(dataclasses.replace(base, n_train=None), "train")
    first = load_split(base, "train")
    drawn = [load_split(dataclasses.replace(base, data_seed=s), "train") for s in (1, 1, 2)]
    assert torch.equal(drawn[0].floats(), drawn[1].floats())  # the same seed, the same draw
    assert _rows(drawn[0]) != _rows(drawn[2]) and _rows(drawn[0]) != _rows(first)
    for data in drawn:
        assert len(data) == 300 and len(_rows(data)) == 300  # no sample twice
        assert _rows(data) <= _rows(whole)
    # the test split is drawn too (so is the evaluation subset, its first --eval-size)
    tests = [load_split(dataclasses.replace(base, data_seed=s), "test") for s in (None, 3)]
    assert not torch.equal(tests[0].floats(slice(0, 50)), tests[1].floats(slice(0, 50)))


def test_a_data_seed_regenerates_generated_sets_and_redraws_reduced_ones():
    sine = [load_split(RunConfig(method="aevb", data="sine", n_train=64, n_test=8,
                                 data_seed=s), "train").floats() for s in (None, 0, 5)]
    assert torch.equal(sine[0], sine[1]) and not torch.equal(sine[0], sine[2])
    from wiseale.data.idx import load_fashion_mnist
    from wiseale.data.mog import load_reduced_fashion_mnist

    full = load_fashion_mnist("train")
    first = load_reduced_fashion_mnist("train")
    assert torch.equal(first.floats(), full.floats(slice(0, 600)))
    drawn = load_reduced_fashion_mnist("train", seed=4)
    assert len(drawn) == 600 and len(_rows(drawn)) == 600 and _rows(drawn) <= _rows(full)
    assert _rows(drawn) != _rows(first)
    with pytest.raises(WisealeError, match="option seed must be an integer of at least 0"):
        load_reduced_fashion_mnist("train", seed=-1)


def test_redraw_data_gives_each_seed_its_own_samples(tmp_path, shrink):
    spec = shrink(paper001.SINE, runs=("aevb",), epochs=1, n_train=64, n_test=32)
    spec.run(tmp_path, scale="quick", seeds=2, progress=False, redraw_data=True)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["redraw_data"] is True and results["seeds"] == [0, 1]
    saved = [json.loads(p.read_text())["data_seed"] for p in
             (tmp_path / "runs/aevb/config.json", tmp_path / "seeds/1/runs/aevb/config.json")]
    assert saved == [0, 1]
    assert "2 seeds (0, 1), data redrawn" in (tmp_path / "report.md").read_text()
    digests = [read_meta(root / "runs/aevb/model.safetensors")["data"]
               for root in (tmp_path, tmp_path / "seeds/1")]
    assert digests[0]["train"] != digests[1]["train"]  # each seed trained on its own waves
    assert digests[0]["test"] != digests[1]["test"]
