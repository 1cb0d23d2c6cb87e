import json

import pytest

from wiseale.errors import WisealeError
from wiseale.experiments import lv_common, lv_sweep

PNG = b"\x89PNG\r\n\x1a\n"
TEST_KEYS = {"elbo", "fid_prior", "fid_mixture", "kl_mixture_prior", "kl_mixture_prior_std",
             "sigma2"}


@pytest.fixture
def tiny(monkeypatch):
    """Two fixed variances and the learned one, one epoch on 512 images, fewer KL samples and
    a coarser density grid, IWAE with K = 2: each experiment runs in seconds."""
    from wiseale.metrics import evaluation

    monkeypatch.setattr(lv_common, "QUICK", {"epochs": 1, "stage1_epochs": 1, "n_train": 512,
                                             "n_test": 256})
    monkeypatch.setattr(lv_sweep, "SIGMA2S", (1.0, 0.05))
    monkeypatch.setattr(lv_sweep, "KL_SAMPLES", 500)
    monkeypatch.setattr(lv_sweep, "KL_RUNS", 3)
    monkeypatch.setattr(lv_sweep, "RESOLUTION", 24)
    monkeypatch.setattr(evaluation, "IWAE_K", 2)  # 004's decoder is slow on a CPU


def _check_results(out, experiment, latent_dim):
    results = json.loads((out / "results.json").read_text())
    assert results["experiment"] == experiment and results["quick"] is True
    methods = results["methods"]
    assert list(methods) == ["fixed-sigma2-1", "fixed-sigma2-0.05", "lv-vae"]
    for name, entry in methods.items():
        test, config = entry["test"], entry["config"]
        assert TEST_KEYS <= set(test)
        assert config["latent_dim"] == latent_dim and config["n_train"] == 512
        assert test["fid_prior"] > 0 and test["fid_mixture"] > 0 and test["fid_n"] == 256
        assert test["kl_mixture_prior"] > -0.5 and test["kl_mixture_prior_std"] >= 0
        assert (out / "runs" / name / "mixture.safetensors").exists()
    assert methods["fixed-sigma2-1"]["test"]["sigma2"] == 1.0
    assert methods["fixed-sigma2-0.05"]["config"]["likelihood"] == "gaussian"
    learned = methods["lv-vae"]
    assert learned["config"]["likelihood"] == "optimal"  # closed form at --quick (lv_common)
    assert learned["test"]["sigma2"] == pytest.approx(learned["history"][-1]["sigma2"])
    assert learned["test"]["sigma2"] != 1.0  # moved from its start
    return methods


def _is_png(path):
    data = path.read_bytes()
    return data[:8] == PNG and len(data) > 5000


def test_lv_sweep_writes_results_figure_and_claims(tmp_path, tiny):
    report = lv_sweep.SWEEP.run(tmp_path, quick=True, seed=0, progress=False).read_text()
    _check_results(tmp_path, "lv-sweep", 16)
    figure = tmp_path / "fig1_sigma2_sweep.png"
    assert _is_png(figure)
    assert "the learned variance has the highest test ELBO among the variances tried: " in \
        report
    assert "for lv-vae FID from the mixture is below FID from the prior: " in report
    methods = json.loads((tmp_path / "results.json").read_text())["methods"]
    learned = methods["lv-vae"]["test"]
    best_fixed = max(e["test"]["elbo"] for n, e in methods.items() if n != "lv-vae")
    verdicts = ["holds" if learned["elbo"] > best_fixed else "does NOT hold",
                "holds" if learned["fid_mixture"] < learned["fid_prior"] else "does NOT hold"]
    assert f"the highest test ELBO among the variances tried: {verdicts[0]} (lv-vae " \
        f"{learned['elbo']:.2f}" in report
    assert f"FID from the mixture is below FID from the prior: {verdicts[1]} " \
        f"({learned['fid_mixture']:.4g} vs {learned['fid_prior']:.4g})" in report
    assert "| fixed-sigma2-0.05 | 0.05 |" in report and "±" in report
    assert "lv-vae's sigma2 is set in closed form here" in report and "FID: 256 test" in report
    # plot() redraws from the run directories
    figure.unlink()
    assert lv_sweep.SWEEP.plot(tmp_path) == [figure] and _is_png(figure)


def test_lv_latent2d_writes_log_densities_and_table1(tmp_path, tiny):
    report = lv_sweep.LATENT2D.run(tmp_path, quick=True, seed=0, progress=False).read_text()
    _check_results(tmp_path, "lv-latent2d", 2)
    figure = tmp_path / "table1_log_densities.png"
    assert _is_png(figure)
    assert "004 Table 1" in report
    assert "0.094 ± 0.003" in report and "0.812 ± 0.013" in report  # sigma2 1 and 0.05
    assert "0.422 ± 0.011 (at sigma2 = 0.035)" in report
    assert "KL(q_hat || p) rises as sigma2 falls from 1 to 0.05" in report
    figure.unlink()
    assert lv_sweep.LATENT2D.plot(tmp_path) == [figure] and _is_png(figure)


def test_full_scale_configs_follow_004_supp_b1():
    for spec, latent_dim in ((lv_sweep.SWEEP_SPEC, 16), (lv_sweep.LATENT2D_SPEC, 2)):
        plans = lv_sweep.configs(spec, "mnist", quick=False, seed=0)
        assert list(plans) == [f"fixed-sigma2-{v}" for v in
                               ("1", "0.5", "0.1", "0.05", "0.02", "0.01")] + ["lv-vae"]
        for name, config in plans.items():
            assert (config.net, config.latent_dim, config.batch_size, config.lr,
                    config.epochs) == ("lv-mnist", latent_dim, 256, 5e-4, 30)
            assert config.n_train is None and config.n_test is None
            if name == "lv-vae":
                assert (config.method, config.likelihood) == ("lv-vae", None)
            else:
                assert (config.method, config.likelihood) == ("aevb", "gaussian")
        assert [c.sigma2 for n, c in plans.items() if n != "lv-vae"] == [
            1.0, 0.5, 0.1, 0.05, 0.02, 0.01]
    assert (lv_sweep.KL_SAMPLES, lv_sweep.KL_RUNS) == (10_000, 10)
    assert lv_common.setting("mnist", False)["components"] == 32


def test_experiments_refuse_celeba(tmp_path):
    for experiment in lv_sweep.EXPERIMENTS:
        with pytest.raises(WisealeError, match="fashion-mnist | mnist data only"):
            experiment.run(tmp_path, quick=True, data="celeba")
    assert [e.name for e in lv_sweep.EXPERIMENTS] == ["lv-sweep", "lv-latent2d"]


def test_gradient_learned_variance_note_bounds_what_adam_can_reach():
    methods = {"lv-vae": {"config": {"likelihood": "learned", "lr": 5e-4},
                          "test": {"sigma2": 0.887, "mse": 0.035}}}
    note = lv_sweep._variance_note(methods, steps=234)
    assert "exp(-234 x 0.0005) = 0.89 at the least (learned: 0.887;" in note
    methods["lv-vae"]["config"]["likelihood"] = "optimal"
    assert "closed form" in lv_sweep._variance_note(methods, steps=234)
