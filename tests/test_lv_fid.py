"""004 Table 2 (lv-fid) and Table 4 (lv-components) at a tiny scale, and their full settings."""

import importlib
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from wiseale.data import Dataset
from wiseale.errors import WisealeError
from wiseale.experiments import lv_common, lv_fid, lv_iwae
from wiseale.metrics import fid, sample_features, sample_fid

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    """Two epochs (one of stage 1) on 512 images, a cheap IWAE and FID classifier, its own
    classifier cache (so no other test gets the weak one)."""
    fid = importlib.import_module("wiseale.metrics.fid")  # wiseale.metrics.fid is a function
    evaluation = importlib.import_module("wiseale.metrics.evaluation")

    monkeypatch.setattr(lv_common, "QUICK", {"epochs": 2, "stage1_epochs": 1, "n_train": 512,
                                             "n_test": 256})
    monkeypatch.setattr(lv_fid, "QUICK_COUNTS", (2, 4))
    monkeypatch.setattr(evaluation, "IWAE_K", 2)
    monkeypatch.setattr(fid, "MIN_STEPS", 10)
    monkeypatch.setenv("WISEALE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(lv_fid, "N_SHOWN", 4)  # images per figure row


def _is_png(path) -> bool:
    return path.read_bytes()[:8] == PNG


def test_lv_fid_writes_table2_claims_and_samples(tmp_path, tiny):
    report = lv_fid.FID.run(tmp_path / "out", quick=True, progress=False).read_text()
    results = json.loads((tmp_path / "out/results.json").read_text())
    assert results["experiment"] == "lv-fid" and results["quick"] is True
    methods = results["methods"]
    assert list(methods) == ["lv-vae", "vae", "beta-vae", "dip-vae", "wae"]
    for name, entry in methods.items():
        test = entry["test"]
        assert math.isfinite(test["fid_prior"]) and test["fid_prior"] > 0
        assert test["fid_n"] == 256  # all 256 test images
        assert ("fid_mixture" in test) == (name != "wae")
        assert (tmp_path / "out/runs" / name / "mixture.safetensors").exists() == (name != "wae")
        assert entry["config"]["n_train"] == 512 and entry["config"]["epochs"] == 2
    quick_lv = lv_common.lv_config("lv-vae", "fashion-mnist", True, 0, likelihood=None)
    assert methods["lv-vae"]["config"]["likelihood"] == (quick_lv.likelihood or "learned")
    assert "sigma2" in methods["lv-vae"]["history"][-1]
    assert [methods[n]["config"]["sigma2"] for n in ("vae", "beta-vae", "dip-vae", "wae")] == \
        [0.5, 1.0, 0.5, 0.5]
    assert "| lv-vae |" in report and "| 10.6 |" in report  # 004's Fashion-MNIST row
    assert "FIDs compare 256 test images" in report
    table2 = {n: e["test"].get("fid_mixture", e["test"]["fid_prior"]) for n, e in methods.items()}
    verdict = "holds" if min(table2, key=table2.get) == "lv-vae" else "does NOT hold"
    assert f"- lv-vae has the lowest FID: {verdict}" in report
    assert "- every method's mixture FID is below its prior FID: " in report
    assert _is_png(tmp_path / "out/fig2_samples.png")
    assert lv_fid.FID.plot(tmp_path / "out") == [tmp_path / "out/fig2_samples.png"]


def test_lv_components_fits_each_mixture_once(tmp_path, tiny):
    out = tmp_path / "out"
    report = lv_fid.COMPONENTS.run(out, quick=True, progress=False).read_text()
    results = json.loads((out / "results.json").read_text())
    assert results["experiment"] == "lv-components" and list(results["methods"]) == ["lv-vae"]
    entry = results["methods"]["lv-vae"]
    assert list(entry["components"]) == ["2", "4"]
    for m, value in entry["components"].items():
        assert math.isfinite(value["fid"]) and value["n"] == 512
        assert (out / "runs/lv-vae" / f"mixture-{m}.safetensors").exists()
    assert entry["test"]["fid_prior"] > 0
    assert "- every mixture's FID is below the prior's: " in report
    assert "- the FID falls as M grows: " in report and "79.9" in report
    for name in ("table4_fid_components.png", "table4_samples.png"):
        assert _is_png(out / name)
    # a second run reuses the run and the fitted mixtures
    mixture = out / "runs/lv-vae/mixture-4.safetensors"
    mtime = mixture.stat().st_mtime_ns
    lv_fid.COMPONENTS.run(out, quick=True, progress=False)
    assert mixture.stat().st_mtime_ns == mtime
    assert json.loads((out / "results.json").read_text())["methods"]["lv-vae"]["components"] \
        == entry["components"]


def test_full_scale_follows_004_supp_b1():
    plans = lv_fid.plans(lv_fid.FID_RUNS, "mnist", quick=False, seed=0)
    assert list(plans) == ["lv-vae", "vae", "beta-vae", "dip-vae", "wae"]
    for config in plans.values():
        assert (config.net, config.latent_dim, config.batch_size, config.lr, config.epochs) == \
            ("lv-mnist", 16, 256, 5e-4, 30)
        assert config.n_train is None and config.n_test is None
    assert [plans[n].method for n in plans] == ["lv-vae", "aevb", "aevb", "dip-vae", "wae"]
    assert plans["lv-vae"].likelihood is None  # resolves to the learned global variance
    assert {n: plans[n].sigma2 for n in ("vae", "beta-vae", "dip-vae", "wae")} == {
        "vae": 0.5, "beta-vae": 1.0, "dip-vae": 0.5, "wae": 0.5}
    assert lv_common.setting("mnist", quick=False)["components"] == 32
    assert lv_fid.COUNTS == (500, 1000, 2000, 10_000) and lv_fid.FIT_IMAGES == 50_000
    assert lv_fid.PAPER_TABLE2["fashion-mnist"] == (10.6, 123.8, 281.5, 103.6, 149.5)


def _faces(root, n: int = 6) -> None:
    """``n`` aligned-CelebA-sized (178 x 218) random JPEGs in root/celeba/img_align_celeba."""
    folder = root / "celeba" / "img_align_celeba"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        pixels = rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i + 1:06d}.jpg")


def test_celeba_needs_inception_features_before_training(tmp_path, monkeypatch):
    _faces(tmp_path)
    monkeypatch.delenv("WISEALE_INCEPTION", raising=False)
    monkeypatch.setattr(lv_common, "QUICK", {"epochs": 1, "stage1_epochs": 1, "n_train": 4,
                                             "n_test": 1})
    for experiment in (lv_fid.FID, lv_fid.COMPONENTS):
        with pytest.raises(WisealeError, match=r"needs Inception features .*WISEALE_INCEPTION"):
            experiment.run(tmp_path / "out", quick=True, data="celeba", progress=False,
                           data_dir=str(tmp_path))
    assert not (tmp_path / "out" / "runs").exists()
    with pytest.raises(WisealeError, match="fashion-mnist | mnist data only"):
        lv_iwae.IWAE.run(tmp_path / "out", quick=True, data="celeba", progress=False)


def test_celeba_settings_follow_004_supp_b2():
    plans = lv_fid.plans(lv_fid.FID_RUNS, "celeba", quick=False, seed=0)
    for config in plans.values():
        assert (config.net, config.latent_dim, config.batch_size, config.epochs) == \
            ("lv-celeba", 256, 256, 95)
        assert config.data_options == {"crop": 178, "size": 128}
    assert lv_common.setting("celeba", quick=False)["components"] == 500
    assert "Supp. B.2" in lv_fid.setting_text(plans["vae"], quick=False)


class _Decoded:
    """A stand-in model whose samples are uniform noise images."""

    def sample(self, n, generator, sampler=None):
        return torch.rand(n, 3, 16, 16, generator=generator)


class _MeanColour:
    """Cheap features (each image's mean colour) that record what they were given."""

    name = "mean-colour"

    def __init__(self):
        self.seen = []

    def __call__(self, images):
        self.seen.append(images)
        return images.mean(dim=(2, 3)).double()


def test_sample_fid_of_unlabelled_images_uses_inception(random_inception):
    train = Dataset("faces-train", torch.rand(6, 3, 16, 16))
    test = Dataset("faces-test", torch.rand(5, 3, 16, 16))
    assert sample_features(train).name == "inception"
    features = _MeanColour()
    value = sample_fid(_Decoded(), train, test, n=4, features=features)
    reference, samples = features.seen
    assert torch.equal(reference, test.x[:4]) and samples.shape == (4, 3, 16, 16)
    assert value == pytest.approx(fid(reference.mean(dim=(2, 3)), samples.mean(dim=(2, 3))))


def test_sample_features_prefers_inception_and_names_the_fix(random_inception, monkeypatch):
    labelled = Dataset("toy-train", torch.rand(8, 1, 8, 8), torch.arange(8) % 2)
    assert sample_features(labelled).name == "inception"  # the papers' features when present
    monkeypatch.delenv("WISEALE_INCEPTION")
    assert sample_features(labelled).name.startswith("classifier:")
    with pytest.raises(WisealeError, match="needs images"):
        sample_features(Dataset("flat-train", torch.rand(8, 5)))
