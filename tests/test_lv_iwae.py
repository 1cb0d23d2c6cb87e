"""004 Table 3 (lv-iwae) and Fig. 3-4 at a tiny scale, and its full setting."""

import importlib
import json
import math

import pytest
import torch

from wiseale.build import load_split
from wiseale.errors import WisealeError
from wiseale.experiments import lv_common, lv_fid, lv_iwae
from wiseale.samplers import load_sampler
from wiseale.training import load_run

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    """Two epochs (the second in stage 2) on 512 images, a cheap evaluation IWAE and FID
    classifier in a cache of the test's own."""
    fid = importlib.import_module("wiseale.metrics.fid")  # wiseale.metrics.fid is a function
    evaluation = importlib.import_module("wiseale.metrics.evaluation")
    monkeypatch.setattr(lv_common, "QUICK", {"epochs": 2, "stage1_epochs": 1, "n_train": 512,
                                             "n_test": 256})
    monkeypatch.setattr(evaluation, "IWAE_K", 2)
    monkeypatch.setattr(fid, "MIN_STEPS", 10)
    monkeypatch.setenv("WISEALE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(lv_fid, "N_SHOWN", 4)  # images per figure row
    monkeypatch.setattr(lv_iwae, "IWAE_N", 64)  # 004: 500 images, K = 20
    monkeypatch.setattr(lv_iwae, "IWAE_K", 4)


def test_lv_iwae_reports_both_bounds_and_the_uncertainty(tmp_path, tiny):
    out = tmp_path / "out"
    report = lv_iwae.IWAE.run(out, quick=True, progress=False).read_text()
    results = json.loads((out / "results.json").read_text())
    assert results["experiment"] == "lv-iwae"
    methods = results["methods"]
    assert list(methods) == ["lv-vae", "lv-vae-pixel", "vae", "beta-vae", "dip-vae"]
    for name, entry in methods.items():
        test = entry["test"]
        assert math.isfinite(test["iwae_prior"]) and math.isfinite(test["iwae_mixture"])
        assert (out / "runs" / name / "mixture.safetensors").exists()
    pixel = methods["lv-vae-pixel"]
    assert pixel["config"]["likelihood"] == "pixel"
    assert pixel["config"]["options"]["stage1_epochs"] == 1
    assert [row["stage"] for row in pixel["history"]] == [1, 2]
    test = pixel["test"]
    assert test["stage"] == 2 and test["variance_floor"] > 0
    assert test["variance_min"] >= test["variance_floor"]
    assert -1 <= test["variance_error_corr"] <= 1
    # no variance below the floor: log p(x|z) <= 784 * -1/2 log(2 pi floor) for every z
    assert test["iwae_prior"] < lv_iwae.floor_bound(test["variance_floor"], 784)
    assert lv_iwae.floor_bound(1 / (2 * math.pi), 784) == 0
    assert "log p(x) <= 784 * -1/2 log(2 pi floor)" in report
    assert "| lv-vae-pixel |" in report and "| 5708 | 5724 |" in report
    # the verdict and the gap the report states follow from results.json's numbers
    gap = test["iwae_prior"] - methods["lv-vae"]["test"]["iwae_prior"]
    verdict = "holds" if gap > 784 * lv_iwae.FAR else "does NOT hold"
    assert f"- pixel-wise variance gives a far higher IWAE than the global one: {verdict}" \
        in report
    assert f"{gap:+.1f} nats, {gap / 784:+.2f} per dimension" in report
    figures = lv_iwae.IWAE.plot(out)
    assert [f.name for f in figures] == ["fig3_uncertainty_reconstructions.png",
                                         "fig4_uncertainty_samples.png"]
    assert all(f.read_bytes()[:8] == PNG for f in figures)
    # the mixture enters the bound as p(z); the bound is seeded and leaves the global RNG be
    model = load_run(out / "runs/vae")[0]
    mixture = load_sampler(out / "runs/vae/mixture.safetensors", model.latent_dim)
    x = load_split(load_run(out / "runs/vae")[1], "test").x[:lv_iwae.IWAE_N]
    state = torch.random.get_rng_state()
    assert lv_iwae.seeded_iwae(model, x, mixture) == methods["vae"]["test"]["iwae_mixture"]
    assert lv_iwae.seeded_iwae(model, x) == methods["vae"]["test"]["iwae_prior"]
    assert methods["vae"]["test"]["iwae_mixture"] != methods["vae"]["test"]["iwae_prior"]
    assert torch.equal(torch.random.get_rng_state(), state)


def test_full_scale_follows_004_supp_b1():
    plans = lv_fid.plans(lv_iwae.IWAE_RUNS, "fashion-mnist", quick=False, seed=0)
    for config in plans.values():
        assert (config.net, config.latent_dim, config.batch_size, config.lr, config.epochs) == \
            ("lv-mnist", 16, 256, 5e-4, 30)
    assert plans["lv-vae-pixel"].options == {"stage1_epochs": 16}  # 16 + 14 epochs
    assert plans["lv-vae"].likelihood is None and plans["lv-vae-pixel"].likelihood is None
    assert {n: plans[n].sigma2 for n in ("vae", "beta-vae", "dip-vae")} == {
        "vae": 0.5, "beta-vae": 1.0, "dip-vae": 0.5}
    assert (lv_iwae.IWAE_N, lv_iwae.IWAE_K) == (500, 20)
    assert lv_iwae.PAPER_TABLE3["mnist"]["iwae_prior"] == (1307, 6037, -462, -730, -461)


def test_lv_iwae_refuses_celeba(tmp_path):
    with pytest.raises(WisealeError, match="data only"):
        lv_iwae.IWAE.run(tmp_path, quick=True, data="celeba", progress=False)
