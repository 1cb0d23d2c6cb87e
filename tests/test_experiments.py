import dataclasses
import json
import math

import pytest

from wiseale.errors import WisealeError
from wiseale.experiments import EXPERIMENTS, sine


@pytest.fixture
def tiny_quick(monkeypatch):
    monkeypatch.setattr(sine, "QUICK", {"epochs": 1, "n_train": 128, "n_test": 64})


def test_sine_experiment_writes_results_report_and_figures(tmp_path, tiny_quick):
    report = EXPERIMENTS["sine"].run(tmp_path, quick=True, seed=0, progress=False)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["experiment"] == "sine" and results["quick"] is True
    assert list(results["methods"]) == ["aevb", "beta-vae", "wise-ale", "wae"]
    for name, entry in results["methods"].items():
        assert entry["config"]["method"] == name
        assert entry["config"]["n_train"] == 128
        assert entry["test"]["recon_error"] > 0 and entry["train"]["recon_error"] > 0
        assert (entry["test"]["elbo"] is None) == (name == "wae")
    assert results["methods"]["beta-vae"]["config"]["options"]["beta"] == 4.0
    text = report.read_text()
    assert "| wise-ale |" in text and "claim" in text
    for figure in ("fig5a_reconstructions.png", "fig6_curves.png"):
        data = (tmp_path / figure).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    # a second call reuses the finished runs instead of training again
    mtime = (tmp_path / "runs/aevb/model.safetensors").stat().st_mtime_ns
    EXPERIMENTS["sine"].run(tmp_path, quick=True, seed=0, progress=False)
    assert (tmp_path / "runs/aevb/model.safetensors").stat().st_mtime_ns == mtime


def test_sine_experiment_refuses_other_data(tmp_path):
    with pytest.raises(WisealeError, match="sine data only"):
        EXPERIMENTS["sine"].run(tmp_path, quick=True, data="mnist")


def test_full_scale_is_the_paper_setting():
    configs = sine.configs(quick=False, seed=0)
    for config in configs.values():
        assert (config.epochs, config.batch_size, config.lr, config.latent_dim) == \
            (50, 64, 5e-4, 4)
        assert config.n_train is None  # all 180,000 training waves of the 200,000


def test_mnist_embedding_on_digits(tmp_path, monkeypatch):
    import dataclasses

    from wiseale.experiments import embedding

    real = embedding.configs

    def tiny(data, quick, seed, data_dir=None, device="cpu"):
        return {k: dataclasses.replace(c, n_train=256, n_test=128, epochs=1)
                for k, c in real(data, quick, seed, data_dir, device).items()}

    monkeypatch.setattr(embedding, "configs", tiny)
    report = EXPERIMENTS["mnist-embedding"].run(tmp_path, quick=True, data="digits",
                                                progress=False)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["experiment"] == "mnist-embedding"
    for name, entry in results["methods"].items():
        assert entry["config"]["latent_dim"] == 2 and entry["config"]["lr"] == 1e-3
        assert entry["config"]["likelihood"] == "bernoulli"
        test = entry["test"]
        assert 0 <= test["knn_accuracy"] <= 1 and test["latent_total_variance"] > 0
        if name == "wae":
            assert test["iwae"] is None and test["posterior_overlap"] == 0
        else:
            assert test["iwae"] >= test["elbo"] - 1.0 and test["aggregate_kl_mc"] >= -0.1
        assert test["fid_prior"] > 0 and test["fid_n"] == 128  # all 128 test images
    assert (tmp_path / "fig1_embeddings.png").read_bytes()[:4] == b"\x89PNG"
    assert "knn_accuracy" in report.read_text()
    with pytest.raises(WisealeError, match="runs on mnist"):
        EXPERIMENTS["mnist-embedding"].run(tmp_path, quick=True, data="sine")


def test_mnist_embedding_configs_follow_app_d2():
    from wiseale.experiments import embedding

    full = embedding.configs("mnist", quick=False, seed=0)
    assert list(full) == ["aevb", "beta-vae", "wise-ale", "wae"]
    for config in full.values():
        assert (config.epochs, config.batch_size, config.lr, config.latent_dim) == \
            (30, 64, 1e-3, 2)
        assert config.data_options == {"binarize": True} and config.n_train is None
    assert embedding.configs("fashion-mnist", quick=True, seed=0)["aevb"].data_options == {}


def test_celeba_experiment_on_generated_images(tmp_path, monkeypatch):
    import dataclasses

    import numpy as np
    from PIL import Image

    from wiseale.experiments import celeba
    from wiseale.metrics import evaluation

    folder = tmp_path / "celeba" / "img_align_celeba"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(100):
        Image.fromarray(rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)).save(
            folder / f"{i + 1:06d}.png")
    real = celeba.configs

    def tiny(quick, seed, data_dir=None, device="cpu"):
        return {k: dataclasses.replace(c, n_train=8, n_test=2, batch_size=4, epochs=2,
                                       lr_milestones=[1], eval_size=2)
                for k, c in real(quick, seed, data_dir, device).items()}

    monkeypatch.setattr(celeba, "configs", tiny)
    monkeypatch.setattr(evaluation, "IWAE_K", 2)  # the App. D.3 decoder is slow on a CPU
    report = EXPERIMENTS["celeba"].run(tmp_path / "out", quick=True, progress=False,
                                       data_dir=str(tmp_path))
    results = json.loads((tmp_path / "out/results.json").read_text())
    assert list(results["methods"]) == ["aevb", "wae", "wise-ale"]
    for entry in results["methods"].values():
        config = entry["config"]
        assert (config["latent_dim"], config["net"], config["lr_gamma"]) == (64, "celeba-conv",
                                                                              0.5)
        assert config["sample_shape"] == [3, 64, 64] and entry["test"]["recon_error"] > 0
    assert [r["lr"] for r in results["methods"]["aevb"]["history"]] == [3e-4, 1.5e-4]
    assert (tmp_path / "out/fig5b_reconstructions.png").read_bytes()[:4] == b"\x89PNG"
    assert "Fig. 5b" in report.read_text()


def test_celeba_full_scale_is_app_d3():
    from wiseale.experiments import celeba

    for config in celeba.configs(quick=False, seed=0).values():
        assert (config.batch_size, config.epochs, config.lr, config.lr_milestones,
                config.lr_gamma) == (256, 50, 3e-4, [30], 0.5)


def test_plot_redraws_the_sine_figures(tmp_path, tiny_quick):
    EXPERIMENTS["sine"].run(tmp_path, quick=True, progress=False)
    for name in ("fig5a_reconstructions.png", "fig6_curves.png"):
        (tmp_path / name).unlink()
    figures = EXPERIMENTS["sine"].plot(tmp_path)
    assert all(f.exists() for f in figures) and len(figures) == 2
    with pytest.raises(WisealeError, match="not 'celeba'"):
        EXPERIMENTS["celeba"].plot(tmp_path)


def test_vcae_mog_results_carry_v_variance_and_mse(tmp_path, monkeypatch):
    import dataclasses

    from wiseale.experiments import vcae_mog

    real = vcae_mog.configs

    def tiny(quick, seed, device="cpu"):
        return {k: dataclasses.replace(c, n_train=400, n_test=200, epochs=1)
                for k, c in real(quick, seed, device).items()}

    monkeypatch.setattr(vcae_mog, "configs", tiny)
    EXPERIMENTS["vcae-mog"].run(tmp_path, quick=True, progress=False)
    results = json.loads((tmp_path / "results.json").read_text())
    assert list(results["methods"]) == ["vcae", "cwae"]
    for name, entry in results["methods"].items():
        assert entry["config"]["v"] == 2.0 and entry["config"]["method"] == name
        assert entry["test"]["mse"] > 0 and entry["test"]["latent_total_variance"] > 0
        assert entry["test"]["information_rate_bits"] == pytest.approx(2 / 2 * math.log2(100))
    assert results["methods"]["vcae"]["config"]["options"]["lambda"] == 1.0
    assert results["methods"]["cwae"]["config"]["options"]["lambda"] == 100.0
    assert (tmp_path / "fig2_mog_latents.png").read_bytes()[:4] == b"\x89PNG"
    assert EXPERIMENTS["vcae-mog"].plot(tmp_path)[0].exists()


def test_vcae_shapes_on_toy_shapes(tmp_path, monkeypatch):
    import dataclasses

    from wiseale.experiments import vcae_shapes

    real = vcae_shapes.configs

    def tiny(data, quick, seed, data_dir=None, device="cpu"):
        return {k: dataclasses.replace(c, n_train=128, n_test=300, epochs=1, eval_size=64)
                for k, c in real(data, quick, seed, data_dir, device).items()}

    monkeypatch.setattr(vcae_shapes, "configs", tiny)
    monkeypatch.setattr(evaluation_module(), "IWAE_K", 2)
    report = EXPERIMENTS["vcae-shapes"].run(tmp_path, quick=True, progress=False)
    results = json.loads((tmp_path / "results.json").read_text())
    assert list(results["methods"]) == ["tc-vcae", "tc-cwae", "factorvae"]
    for entry in results["methods"].values():
        assert 0 <= entry["test"]["disentanglement"] <= 1
        assert entry["config"]["latent_dim"] == 6 and entry["config"]["net"] == "shapes-conv"
    assert results["methods"]["tc-cwae"]["config"]["options"]["lambda"] == 2500.0
    for figure in ("fig4_traversals.png", "feature_histograms.png"):
        assert (tmp_path / figure).read_bytes()[:4] == b"\x89PNG"
    assert "FactorVAE score" in report.read_text()


def evaluation_module():
    import importlib

    return importlib.import_module("wiseale.metrics.evaluation")


def test_vcae_overfit_rows_follow_table1(tmp_path, monkeypatch):
    import dataclasses

    from wiseale.experiments import vcae_overfit

    real = vcae_overfit.configs
    plans = real("reduced-fashion-mnist", quick=False, seed=0)
    assert list(plans) == ["vcae-0.2", "vcae-0.1", "dvcae", "cwae-0.2", "cwae-0.1", "wae", "vae"]
    assert plans["vcae-0.1"].options["sigma_eps"] == pytest.approx(math.sqrt(0.1))
    assert (plans["vae"].method, plans["dvcae"].method) == ("aevb", "dvcae")
    assert all((c.batch_size, c.lr, c.latent_dim) == (200, 1e-4, 2) for c in plans.values())

    def tiny(data, quick, seed, data_dir=None, device="cpu"):
        return {k: dataclasses.replace(c, n_test=200, epochs=1)
                for k, c in list(real(data, quick, seed, data_dir, device).items())[:2]}

    monkeypatch.setattr(vcae_overfit, "configs", tiny)
    report = EXPERIMENTS["vcae-overfit"].run(tmp_path, quick=True, progress=False)
    results = json.loads((tmp_path / "results.json").read_text())
    for entry in results["methods"].values():
        assert entry["config"]["n_train"] is None and entry["train"]["mse"] > 0
    assert "| vcae-0.2 |" in report.read_text()


def test_vcae_table2_configs_follow_app_b3():
    from wiseale.experiments import vcae_table2

    plans = vcae_table2.configs("mnist", quick=False, seed=0)
    assert len(plans) == 2 + 5 + 7  # VAE, VAE + IAF, Table 6's and Table 7's lambdas
    vae, iaf = plans["vae"], plans["vae-iaf"]
    assert (vae.net, vae.latent_dim, vae.batch_size, vae.lr, vae.epochs) == (
        "mnist-vcae", 16, 100, 1e-3, 100)
    assert (vae.lr_schedule, vae.lr_milestones, vae.lr_gamma) == ("step", [30, 50], [0.5, 0.2])
    assert (iaf.method, iaf.lr, iaf.epochs, iaf.lr_milestones) == ("vae-iaf", 1e-4, 200,
                                                                   [30, 50])
    vcae, cwae = plans["vcae-lambda-0.1"], plans["cwae-lambda-50"]
    assert vcae.options == {"lambda": 0.1, "v": 16.0, "sigma_eps": pytest.approx(0.05 ** 0.5)}
    assert cwae.options == {"lambda": 50.0, "sigma_eps": pytest.approx(0.05 ** 0.5)}
    assert sorted(c.options["lambda"] for n, c in plans.items() if n.startswith("cwae")) == [
        5, 10, 25, 50, 75, 100, 150]


def test_vcae_table2_reports_fids_from_prior_and_flow(tmp_path, monkeypatch):
    from wiseale.experiments import vcae_table2

    monkeypatch.setattr(vcae_table2, "QUICK", {"epochs": 1, "n_train": 300, "n_test": 200,
                                               "net": "mnist-conv", "flow_epochs": 1})
    monkeypatch.setattr(vcae_table2, "VCAE_LAMBDAS", (0.1,))
    monkeypatch.setattr(vcae_table2, "CWAE_LAMBDAS", (50.0,))
    report = EXPERIMENTS["vcae-table2"].run(tmp_path, quick=True, progress=False).read_text()
    results = json.loads((tmp_path / "results.json").read_text())
    methods = results["methods"]
    assert sorted(methods) == ["cwae-lambda-50", "vae", "vae-iaf", "vcae-lambda-0.1"]
    for name, entry in methods.items():
        assert entry["test"]["fid_prior"] > 0 and entry["train"]["recon_error"] > 0
        assert ("fid_flow" in entry["test"]) == (name != "vae-iaf")
        assert entry["test"]["fid_n"] == 200  # all 200 test images
        assert (tmp_path / "runs" / name / "flow.safetensors").exists() == (name != "vae-iaf")
    assert methods["vae"]["config"]["lr_gamma"] == [0.5, 0.2]
    assert "| VCAE |" in report and "B.3.2's rule" in report and "FID on 200 test" in report
    assert (tmp_path / "fig7_samples.png").read_bytes()[:4] == b"\x89PNG"


def test_vcae_mnist2d_writes_codes_histograms_and_flow_figures(tmp_path, monkeypatch):
    from wiseale.experiments import vcae_mnist2d

    plans = vcae_mnist2d.configs("mnist", quick=False, seed=0)
    assert {n: c.options["lambda"] for n, c in plans.items()} == {
        "vcae": 1.0, "cwae": 100.0, "cwae-lambda-3000": 3000.0}
    assert all((c.net, c.latent_dim, c.batch_size, c.lr) == ("mnist-vcae", 2, 200, 1e-4)
               and c.options["sigma_eps"] == pytest.approx(0.1) for c in plans.values())
    monkeypatch.setattr(vcae_mnist2d, "QUICK", {"epochs": 1, "n_train": 300, "n_test": 200,
                                                "lr": 1e-3, "net": "mnist-conv",
                                                "flow_epochs": 1})
    report = EXPERIMENTS["vcae-mnist2d"].run(tmp_path, quick=True, progress=False).read_text()
    methods = json.loads((tmp_path / "results.json").read_text())["methods"]
    for entry in methods.values():
        assert 0 < entry["test"]["gaussianity_ks"] < 1 and entry["config"]["v"] == 2.0
    assert "VCAE's test L2 is" in report
    for name in ("fig2de_latents.png", "feature_histograms.png", "fig8_flow_latents.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_a_finished_run_is_reused_only_with_the_same_resolved_options(tmp_path, tiny_sine):
    """reproduce reuses out/runs/NAME only if it was trained with the same options, defaults
    included: a run saved before a default changed (here: its config lacks `scaling`) is
    refused, not silently reported as the new setting."""
    from wiseale.build import load_split
    from wiseale.experiments.common import train_methods

    config = dataclasses.replace(tiny_sine, epochs=1)
    data = load_split(config, "train"), load_split(config, "test")
    train_methods({"w": config}, tmp_path, *data, progress=False)
    weights = tmp_path / "runs/w/model.safetensors"
    stamp = weights.stat().st_mtime_ns
    train_methods({"w": config}, tmp_path, *data, progress=False)  # reused, not retrained
    assert weights.stat().st_mtime_ns == stamp
    with pytest.raises(WisealeError, match=r"other settings \(options\); use another --out"):
        train_methods({"w": dataclasses.replace(config, options={"weight": 2.0})}, tmp_path,
                      *data, progress=False)
    saved = json.loads((tmp_path / "runs/w/config.json").read_text())
    del saved["options"]["scaling"]
    (tmp_path / "runs/w/config.json").write_text(json.dumps(saved))
    with pytest.raises(WisealeError, match=r"other settings \(options\)"):
        train_methods({"w": config}, tmp_path, *data, progress=False)
