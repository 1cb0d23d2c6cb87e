"""The experiments of 004 (lv-sweep, lv-latent2d, lv-fid, lv-components, lv-iwae) at a tiny
scale, and their full settings against 004 Supp. B."""

import dataclasses
import importlib
import json
import math

import pytest
import torch

from wiseale.build import load_split
from wiseale.errors import WisealeError
from wiseale.experiments import measures, paper004
from wiseale.samplers import load_sampler
from wiseale.training import load_run

PNG = b"\x89PNG\r\n\x1a\n"
TINY = {"epochs": 2, "n_train": 512, "n_test": 256}


@pytest.fixture
def cheap(monkeypatch, tmp_path):
    """A cheap evaluation IWAE, FID classifier (in a cache of the test's own), KL estimate,
    density grid, IWAE bound and figure rows."""
    monkeypatch.setattr(importlib.import_module("wiseale.metrics.evaluation"), "IWAE_K", 2)
    monkeypatch.setattr(importlib.import_module("wiseale.metrics.fid"), "MIN_STEPS", 10)
    monkeypatch.setenv("WISEALE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(measures, "KL_SAMPLES", 500)
    monkeypatch.setattr(measures, "KL_RUNS", 3)
    monkeypatch.setattr(paper004, "RESOLUTION", 24)
    monkeypatch.setattr(paper004, "N_SHOWN", 4)
    monkeypatch.setattr(paper004, "IWAE_N", 64)  # 004: 500 images, K = 20
    monkeypatch.setattr(paper004, "IWAE_K", 4)


def _is_png(path) -> bool:
    return path.read_bytes()[:8] == PNG


def _results(out):
    return json.loads((out / "results.json").read_text())


@pytest.mark.parametrize("spec, latent_dim, figure", [
    (paper004.SWEEP, 16, "fig1_sigma2_sweep.png"),
    (paper004.LATENT2D, 2, "table1_log_densities.png")])
def test_sweeps_measure_fids_kl_and_sigma2(tmp_path, cheap, shrink, spec, latent_dim, figure):
    tiny = shrink(spec, ("fixed-sigma2-1", "fixed-sigma2-0.05", "lv-vae"), **TINY)
    report = tiny.run(tmp_path, scale="quick", progress=False).read_text()
    results = _results(tmp_path)
    methods = results["methods"]
    for name, entry in methods.items():
        test, config = entry["test"], entry["config"]
        assert config["latent_dim"] == latent_dim and config["n_train"] == 512
        assert test["fid_prior"] > 0 and test["fid_mixture"] > 0 and test["fid_n"] == 256
        assert test["kl_mixture_prior"] > -0.5 and test["kl_mixture_prior_std"] >= 0
        assert test["sigma2_to_mse"] == pytest.approx(test["sigma2"] / test["mse"])
        assert (tmp_path / "runs" / name / "mixture.safetensors").exists()
    assert methods["fixed-sigma2-1"]["test"]["sigma2"] == 1.0
    learned = methods["lv-vae"]
    assert learned["config"]["likelihood"] == "optimal"  # closed form at --quick
    assert learned["test"]["sigma2"] == pytest.approx(learned["history"][-1]["sigma2"])
    assert learned["test"]["sigma2"] != 1.0  # moved from its start
    assert "closed form" in report and _is_png(tmp_path / figure)
    if spec is paper004.LATENT2D:
        assert "| fixed-sigma2-1 | kl_mixture_prior | 0.094 (004 Table 1, MNIST) |" in report
    (tmp_path / figure).unlink()
    assert tiny.plot(tmp_path) == [tmp_path / figure] and _is_png(tmp_path / figure)
    # the claims table says which of a claim's runs set the learned sigma^2 in closed form
    from wiseale.experiments.summary import _closed_form_note

    judged = {"quantities": ["lv-vae fid_mixture", "fixed-sigma2-1 fid_mixture"]}
    assert _closed_form_note(results, judged) == \
        " (lv-vae: sigma^2 in closed form, 004 Eq. 10)"
    assert _closed_form_note(results, {"quantities": ["fixed-sigma2-1 fid_mixture"]}) == ""


def test_sweep_settings_follow_004_supp_b1():
    for spec, latent_dim in ((paper004.SWEEP, 16), (paper004.LATENT2D, 2)):
        plans = spec.configs("mnist", scale="full", seed=0)
        assert list(plans) == [f"fixed-sigma2-{v}" for v in
                               ("1", "0.5", "0.1", "0.05", "0.02", "0.01")] + ["lv-vae"]
        for name, config in plans.items():
            assert (config.net, config.latent_dim, config.batch_size, config.lr,
                    config.epochs) == ("lv-mnist", latent_dim, 256, 5e-4, 30)
            assert config.n_train is None and config.n_test is None
            expected = ("lv-vae", None) if name == "lv-vae" else ("aevb", "gaussian")
            assert (config.method, config.likelihood) == expected
        assert [c.sigma2 for n, c in plans.items() if n != "lv-vae"] == [
            1.0, 0.5, 0.1, 0.05, 0.02, 0.01]
        assert spec.settings("mnist", "full")["components"] == 32
    assert (measures.KL_SAMPLES, measures.KL_RUNS) == (10_000, 10)
    for spec in (paper004.SWEEP, paper004.LATENT2D, paper004.IWAE):
        with pytest.raises(WisealeError, match="fashion-mnist | mnist data only"):
            spec.choose_data("celeba")


def test_lv_fid_writes_table2_and_samples(tmp_path, cheap, shrink):
    spec = shrink(paper004.FID, **TINY)
    report = spec.run(tmp_path, scale="quick", progress=False).read_text()
    results = _results(tmp_path)
    methods = results["methods"]
    assert list(methods) == ["lv-vae", "vae", "beta-vae", "dip-vae", "wae"]
    for name, entry in methods.items():
        test = entry["test"]
        assert math.isfinite(test["fid_prior"]) and test["fid_n"] == 256
        assert ("fid_mixture" in test) == (name != "wae")
        assert test["fid_table2"] == test.get("fid_mixture", test["fid_prior"])
    assert [methods[n]["config"]["sigma2"] for n in ("vae", "beta-vae", "dip-vae", "wae")] == \
        [0.5, 1.0, 0.5, 0.5]
    fids = {n: e["test"]["fid_table2"] for n, e in methods.items()}
    lowest = next(c for c in results["claims"] if c["id"] == "t2-lv-lowest")
    assert lowest["holds_per_seed"] == [min(fids, key=fids.get) == "lv-vae"]
    assert "| lv-vae | fid_table2 | 10.6 (004 Table 2, Fashion-MNIST) |" in report
    assert "The paper measured on" not in report  # the same data set
    assert "features, the paper's in Inception's" in report
    assert _is_png(tmp_path / "fig2_samples.png")


def test_lv_components_fits_each_mixture_once(tmp_path, cheap, shrink):
    spec = shrink(paper004.COMPONENTS, counts=(2, 4, 6, 8), **TINY)
    spec.run(tmp_path, scale="quick", progress=False)
    test = _results(tmp_path)["methods"]["lv-vae"]["test"]
    for i, m in enumerate((2, 4, 6, 8), start=1):
        assert math.isfinite(test[f"fid_mixture_m{i}"]) and test[f"em_iterations_m{i}"] >= 1
        assert (tmp_path / "runs/lv-vae" / f"mixture-{m}.safetensors").exists()
    assert all(_is_png(tmp_path / n) for n in ("table4_fid_components.png",
                                              "table4_samples.png"))
    mixture = tmp_path / "runs/lv-vae/mixture-4.safetensors"
    stamp = mixture.stat().st_mtime_ns
    spec.run(tmp_path, scale="quick", progress=False)  # reuses the run, mixtures and FIDs
    assert mixture.stat().st_mtime_ns == stamp
    assert _results(tmp_path)["methods"]["lv-vae"]["test"] == test


def test_lv_iwae_reports_both_bounds_and_the_uncertainty(tmp_path, cheap, shrink):
    spec = shrink(paper004.IWAE, **TINY)
    pixel_run = dataclasses.replace(paper004.LV_PIXEL, quick={"options": {
        "stage1_epochs": 1, "stage1_variance": "closed-form"}})
    spec = dataclasses.replace(spec, runs=tuple(pixel_run if r.label == paper004.PIXEL else r
                                                for r in spec.runs))
    report = spec.run(tmp_path, scale="quick", progress=False).read_text()
    methods = _results(tmp_path)["methods"]
    assert list(methods) == ["lv-vae", "lv-vae-pixel", "vae", "beta-vae", "dip-vae"]
    pixel = methods["lv-vae-pixel"]
    assert pixel["config"]["likelihood"] == "pixel"
    assert [row["stage"] for row in pixel["history"]] == [1, 2]
    test = pixel["test"]
    assert test["stage"] == 2 and test["variance_min"] >= test["variance_floor"] > 0
    assert -1 <= test["variance_error_corr"] <= 1
    # no variance below the floor: log p(x|z) <= 784 * -1/2 log(2 pi floor) for every z
    assert test["iwae_prior"] < paper004.floor_bound(test["variance_floor"], 784)
    assert paper004.floor_bound(1 / (2 * math.pi), 784) == 0
    assert "| lv-vae-pixel | iwae_prior | 5708 (004 Table 3, Fashion-MNIST) |" in report
    # the mixture enters the bound as p(z); the bound is seeded and leaves the global RNG be
    model = load_run(tmp_path / "runs/vae")[0]
    mixture = load_sampler(tmp_path / "runs/vae/mixture.safetensors", model.latent_dim)
    x = load_split(load_run(tmp_path / "runs/vae")[1], "test").floats(slice(0, 64))
    state = torch.random.get_rng_state()
    assert paper004.seeded_iwae(model, x, mixture) == methods["vae"]["test"]["iwae_mixture"]
    assert paper004.seeded_iwae(model, x) == methods["vae"]["test"]["iwae_prior"]
    assert methods["vae"]["test"]["iwae_mixture"] != methods["vae"]["test"]["iwae_prior"]
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(_is_png(tmp_path / n) for n in ("fig3_uncertainty_reconstructions.png",
                                              "fig4_uncertainty_samples.png"))


def test_celeba_needs_inception_features_before_training(tmp_path, monkeypatch, shrink, faces):
    faces(tmp_path, 6, ".jpg")
    monkeypatch.delenv("WISEALE_INCEPTION", raising=False)
    for spec in (paper004.FID, paper004.COMPONENTS):
        with pytest.raises(WisealeError, match=r"needs Inception features .*WISEALE_INCEPTION"):
            shrink(spec, epochs=1, n_train=4, n_test=1).run(
                tmp_path / "out", scale="quick", data="celeba", progress=False,
                data_dir=str(tmp_path))
    assert not (tmp_path / "out" / "runs").exists()


def test_settings_follow_004_supp_b():
    plans = paper004.FID.configs("mnist", scale="full", seed=0)
    assert [plans[n].method for n in plans] == ["lv-vae", "aevb", "aevb", "dip-vae", "wae"]
    assert plans["lv-vae"].likelihood is None  # resolves to the learned global variance
    for config in plans.values():
        assert (config.net, config.latent_dim, config.batch_size, config.lr, config.epochs) == \
            ("lv-mnist", 16, 256, 5e-4, 30)
    celeba = paper004.FID.configs("celeba", scale="full", seed=0)
    for config in celeba.values():
        assert (config.net, config.latent_dim, config.batch_size, config.epochs) == \
            ("lv-celeba", 256, 256, 95)
        assert config.data_options == {"crop": 178, "size": 128}
    assert paper004.FID.settings("celeba", "full")["components"] == 500
    assert paper004.COMPONENTS.settings("mnist", "full")["counts"] == (500, 1000, 2000, 10_000)
    iwae = paper004.IWAE.configs("fashion-mnist", scale="full", seed=0)
    assert iwae["lv-vae-pixel"].options["stage1_epochs"] == 16  # of 30 (Supp. B.1)
    assert (paper004.IWAE_N, paper004.IWAE_K) == (500, 20)
