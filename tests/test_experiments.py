import json

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

    def tiny(data, quick, seed):
        return {k: dataclasses.replace(c, n_train=256, n_test=128, epochs=1)
                for k, c in real(data, quick, seed).items()}

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
