"""The runner over seeds, the experiments of 001 and 003 at a tiny scale, and their full
settings against the papers."""

import dataclasses
import json
import math
import statistics

import pytest
import torch

from wiseale.build import load_split
from wiseale.cli import main
from wiseale.config import RunConfig
from wiseale.errors import WisealeError
from wiseale.experiments import EXPERIMENTS, paper001, paper003
from wiseale.experiments.runner import train_runs
from wiseale.training import load_run

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def tiny_sine_spec(shrink):
    return shrink(paper001.SINE, epochs=1, n_train=128, n_test=64)


def _is_png(path) -> bool:
    data = path.read_bytes()
    return data[:8] == PNG and len(data) > 5000


def _evaluation(run_dir):
    return json.loads((run_dir / "evaluation.json").read_text())


def test_sine_over_two_seeds_averages_each_seeds_evaluation(tmp_path, tiny_sine_spec):
    report = tiny_sine_spec.run(tmp_path, scale="quick", seeds=2, progress=False)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["experiment"] == "sine" and results["seeds"] == [0, 1]
    assert list(results["methods"]) == ["aevb", "beta-vae", "wise-ale", "wae",
                                        "wise-ale-per-sample"]
    for name, entry in results["methods"].items():
        first = _evaluation(tmp_path / "runs" / name)
        second = _evaluation(tmp_path / "seeds/1/runs" / name)
        values = [first["test"]["recon_error"], second["test"]["recon_error"]]
        assert values[0] != values[1]  # two seeds, two trainings
        assert entry["test"]["recon_error"] == pytest.approx(statistics.mean(values))
        assert entry["sd"]["test"]["recon_error"] == pytest.approx(statistics.stdev(values))
        last = json.loads((tmp_path / "seeds/1/runs" / name / "metrics.jsonl").read_text()
                          .splitlines()[-1])
        assert entry["seeds"]["1"]["train"] == {**second["train"], "objective": -last["loss"]}
        assert entry["config"]["seed"] == 0 and entry["config"]["n_train"] == 128
        assert (entry["test"]["elbo"] is None) == (name == "wae")
    # each claim judged on each seed's own numbers
    claim = next(c for c in results["claims"] if c["id"] == "sine-recon")
    for i, seed in enumerate(("0", "1")):
        test = {n: e["seeds"][seed]["test"]["recon_error"] for n, e in
                results["methods"].items()}
        assert claim["holds_per_seed"][i] == (test["wise-ale"] < min(test["aevb"],
                                                                     test["beta-vae"]))
    assert claim["seeds"] == 2 and claim["p_value"] is not None
    # the per-sample reading: WiSE-ALE's aggregate KL charged to every sample, judged alike
    per_sample = results["methods"]["wise-ale-per-sample"]["config"]
    assert (per_sample["method"], per_sample["options"]["scaling"]) == ("wise-ale", "per-sample")
    assert results["methods"]["wise-ale"]["config"]["options"]["scaling"] == "batch"
    claim = next(c for c in results["claims"] if c["id"] == "sine-elbo-per-sample")
    for i, seed in enumerate(("0", "1")):
        elbo = {n: e["seeds"][seed]["train"]["elbo"] for n, e in results["methods"].items()
                if n != "wae"}
        assert claim["holds_per_seed"][i] == (elbo["wise-ale-per-sample"] > max(
            elbo["aevb"], elbo["beta-vae"]))
    text = report.read_text()
    assert "## Claims" in text and "2 seeds (0, 1)" in text and " ± " in text
    assert all(_is_png(tmp_path / f) for f in ("fig5a_reconstructions.png", "fig6_curves.png"))
    # run again with a third seed: the first two are reused, only seed 2 trains
    weights = tmp_path / "runs/aevb/model.safetensors"
    stamp = weights.stat().st_mtime_ns
    tiny_sine_spec.run(tmp_path, scale="quick", seeds=3, progress=False)
    assert weights.stat().st_mtime_ns == stamp
    assert (tmp_path / "seeds/2/runs/aevb/model.safetensors").exists()
    assert json.loads((tmp_path / "results.json").read_text())["seeds"] == [0, 1, 2]


def test_every_wise_ale_claim_is_judged_under_both_readings_of_eq_27():
    """Each claim on the wise-ale run (aggregate KL charged per batch) has a twin that makes the
    same comparisons with the run charged per sample in its place, and no other change."""
    for spec in (paper001.SINE, paper001.EMBEDDING):
        claims = {claim.id: claim for claim in spec.claims}
        batch = [claim for claim in spec.claims if not claim.id.endswith("-per-sample")]
        assert len(claims) == 2 * len(batch)
        for claim in batch:
            twin = claims[f"{claim.id}-per-sample"]
            runs = [q.run for q in claim.quantities()]
            assert "wise-ale" in runs and "wise-ale" not in [q.run for q in twin.quantities()]
            assert [(q.run, q.metric, q.split) for q in twin.quantities()] == [
                (paper001.PER_SAMPLE if q.run == "wise-ale" else q.run, q.metric, q.split)
                for q in claim.quantities()]
            assert [(c.op, c.margin) for c in twin.comparisons] == [
                (c.op, c.margin) for c in claim.comparisons]
            assert "scaling=per-sample" in twin.text and twin.source == claim.source


def test_sine_refuses_other_data_and_bad_seed_counts(tmp_path):
    with pytest.raises(WisealeError, match="sine data only"):
        EXPERIMENTS["sine"].run(tmp_path, scale="quick", data="mnist")
    with pytest.raises(WisealeError, match="--seeds must be a positive integer"):
        EXPERIMENTS["sine"].run(tmp_path, scale="quick", seeds=0)


def test_full_scale_is_the_paper_setting():
    for config in paper001.SINE.configs("sine", scale="full", seed=0).values():
        assert (config.epochs, config.batch_size, config.lr, config.latent_dim) == \
            (50, 64, 5e-4, 4)
        assert config.n_train is None  # all 180,000 training waves of the 200,000
    full = paper001.EMBEDDING.configs("mnist", scale="full", seed=0)
    assert list(full) == ["aevb", "beta-vae", "wise-ale", "wae", "wise-ale-per-sample"]
    for config in full.values():
        assert (config.epochs, config.batch_size, config.lr, config.latent_dim) == \
            (30, 64, 1e-3, 2)
        assert config.data_options == {"binarize": True} and config.n_train is None
    assert paper001.EMBEDDING.configs("fashion-mnist", "quick", 0)["aevb"].data_options == {}
    assert paper001.EMBEDDING.configs("digits", "quick", 0)["aevb"].n_train is None
    for config in paper001.CELEBA.configs("celeba", scale="full", seed=0).values():
        assert (config.batch_size, config.epochs, config.lr, config.lr_milestones,
                config.lr_gamma) == (256, 50, 3e-4, [30], 0.5)


def test_claims_cli_lists_every_claim_and_the_command_for_missing_ones(tmp_path,
                                                                        tiny_sine_spec):
    tiny_sine_spec.run(tmp_path / "sine", scale="quick", progress=False)
    diagnoses = tmp_path / "diagnoses.toml"
    diagnoses.write_text('"sine-recon@quick" = "our scale: 1 epoch"\n'
                         '"sine-recon@full" = "not this row"\n')
    assert main(["claims", str(tmp_path), "--out", str(tmp_path / "claims.md"),
                 "--diagnoses", str(diagnoses)]) == 0
    rows = json.loads((tmp_path / "claims.json").read_text())
    assert [r["diagnosis"] for r in rows if r["experiment"] == "sine"] == [
        "our scale: 1 epoch", *["-"] * 7]
    assert len(rows) == sum(len(spec.claims) for spec in EXPERIMENTS.values())
    sine = [r for r in rows if r["experiment"] == "sine"]
    assert [r["verdict"].startswith("one seed: ") for r in sine] == [True] * 8
    claims_md = (tmp_path / "claims.md").read_text()
    header = claims_md.splitlines()[claims_md.splitlines().index(next(
        line for line in claims_md.splitlines() if line.startswith("| experiment")))]
    cells = header.count("|")
    assert all(line.replace("\\|", "").count("|") == cells
               for line in claims_md.splitlines() if line.startswith("| "))
    celeba = next(r for r in rows if r["experiment"] == "celeba")
    assert celeba["verdict"] == "not run here"
    assert next(r for r in rows if r["experiment"] == "lv-sweep")["verdict"] == "not run"
    assert "wiseale reproduce celeba --data-dir PATH --seeds 3 --redraw-data" in celeba["data"]
    sweep = next(r for r in rows if r["experiment"] == "lv-sweep")["data"]
    assert "wiseale reproduce lv-sweep --scale medium --seeds 3 --redraw-data" in sweep
    assert "| sine |" in (tmp_path / "claims.md").read_text()
    assert "No medium scale (`Spec.no_medium`): celeba: its claim is about 64 x 64" in claims_md
    assert f"--diagnoses {diagnoses} --out FILE" in claims_md
    assert "vcae-overfit: its claims are about overfitting" in claims_md
    with pytest.raises(SystemExit):
        main(["reproduce", "sine", "--out", str(tmp_path / "x"), "--seeds", "0"])


def test_mnist_embedding_on_digits(tmp_path, shrink):
    spec = dataclasses.replace(shrink(paper001.EMBEDDING, epochs=1),
                               by_data={"digits": {"quick": {"n_train": 256, "n_test": 128}}})
    report = spec.run(tmp_path, scale="quick", data="digits", progress=False)
    results = json.loads((tmp_path / "results.json").read_text())
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
        measured = json.loads((tmp_path / "runs" / name / "measures.json").read_text())
        assert measured["fid_prior"]["values"]["fid_prior"] == test["fid_prior"]
        # recon_nll: the Bernoulli cross-entropy of each image given its mean code, summed
        # over the pixels, in float64 from the reconstruction's probabilities
        model = load_run(tmp_path / "runs" / name)[0]
        x = load_split(RunConfig(method="aevb", data="digits", n_test=128), "test").floats()
        with torch.no_grad():
            p = model.reconstruct(x).double().clamp(1e-12, 1 - 1e-12)
        nll = -(x * p.log() + (1 - x) * (1 - p).log()).flatten(1).sum(1).mean().item()
        assert test["recon_nll"] == pytest.approx(nll, rel=1e-4)
    assert _is_png(tmp_path / "fig1_embeddings.png")
    assert "knn_accuracy" in report.read_text() and "prior term / loss" in report.read_text()
    with pytest.raises(WisealeError, match="runs on mnist"):
        spec.run(tmp_path, scale="quick", data="sine")


def test_celeba_experiment_on_generated_images(tmp_path, monkeypatch, faces):
    from wiseale.metrics import evaluation

    faces(tmp_path, 100)
    spec = dataclasses.replace(paper001.CELEBA, base={**paper001.CELEBA.base, "batch_size": 4,
                                                      "eval_size": 2},
                               quick={"epochs": 2, "n_train": 8, "n_test": 2,
                                      "lr_milestones": [1]})
    monkeypatch.setattr(evaluation, "IWAE_K", 2)  # the App. D.3 decoder is slow on a CPU
    report = spec.run(tmp_path / "out", scale="quick", progress=False, data_dir=str(tmp_path))
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


def test_plot_redraws_the_sine_figures(tmp_path, tiny_sine_spec):
    tiny_sine_spec.run(tmp_path, scale="quick", progress=False)
    for name in ("fig5a_reconstructions.png", "fig6_curves.png"):
        (tmp_path / name).unlink()
    figures = EXPERIMENTS["sine"].plot(tmp_path)
    assert all(f.exists() for f in figures) and len(figures) == 2
    with pytest.raises(WisealeError, match="not 'celeba'"):
        EXPERIMENTS["celeba"].plot(tmp_path)


def test_vcae_mog_settings_variance_and_mse(tmp_path, shrink):
    spec = shrink(paper003.MOG, epochs=1, n_train=400, n_test=200)
    spec.run(tmp_path, scale="quick", progress=False)
    results = json.loads((tmp_path / "results.json").read_text())
    assert list(results["methods"]) == ["vcae", "cwae"] and results["settings"]["v"] == 2.0
    for name, entry in results["methods"].items():
        assert entry["config"]["method"] == name and entry["test"]["mse"] > 0
        assert entry["test"]["information_rate_bits"] == pytest.approx(2 / 2 * math.log2(100))
    assert results["methods"]["vcae"]["config"]["options"]["lambda"] == 1.0
    assert results["methods"]["cwae"]["config"]["options"]["lambda"] == 100.0
    near = next(c for c in results["claims"] if c["id"] == "mog-variance")
    variance = results["methods"]["vcae"]["test"]["latent_total_variance"]
    assert near["holds_per_seed"] == [abs(variance - 2.0) < 0.2]
    assert [p["paper"] for p in results["paper"]] == [0.067, 0.13]
    assert _is_png(tmp_path / "fig2_mog_latents.png")


def test_vcae_shapes_on_toy_shapes(tmp_path, monkeypatch, shrink):
    from wiseale.metrics import evaluation

    spec = shrink(paper003.SHAPES, epochs=1, n_train=128, n_test=300)
    spec = dataclasses.replace(spec, base={**spec.base, "eval_size": 64})
    monkeypatch.setattr(evaluation, "IWAE_K", 2)
    report = spec.run(tmp_path, scale="quick", progress=False)
    results = json.loads((tmp_path / "results.json").read_text())
    assert list(results["methods"]) == ["tc-vcae", "tc-cwae", "factorvae"]
    for entry in results["methods"].values():
        assert 0 <= entry["test"]["disentanglement"] <= 1 and entry["test"]["recon_nll"] > 0
        assert entry["config"]["latent_dim"] == 6 and entry["config"]["net"] == "shapes-conv"
    assert results["methods"]["tc-cwae"]["config"]["options"]["lambda"] == 2500.0
    assert all(_is_png(tmp_path / f) for f in ("fig4_traversals.png", "feature_histograms.png"))
    assert "FactorVAE score" in report.read_text()


def test_vcae_overfit_rows_follow_table1(tmp_path, shrink):
    plans = paper003.OVERFIT.configs("reduced-fashion-mnist", scale="full", seed=0)
    assert list(plans) == ["vcae-0.2", "vcae-0.1", "dvcae", "cwae-0.2", "cwae-0.1", "wae", "vae"]
    assert plans["vcae-0.1"].options["sigma_eps"] == pytest.approx(math.sqrt(0.1))
    assert (plans["vae"].method, plans["dvcae"].method) == ("aevb", "dvcae")
    assert all((c.batch_size, c.lr, c.latent_dim, c.epochs) == (200, 1e-4, 2, 1_000)
               for c in plans.values())
    spec = shrink(paper003.OVERFIT, ("vcae-0.2", "cwae-0.2"), epochs=1, n_test=200)
    report = spec.run(tmp_path, scale="quick", progress=False).read_text()
    results = json.loads((tmp_path / "results.json").read_text())
    for entry in results["methods"].values():
        assert entry["config"]["n_train"] is None and entry["train"]["mse"] > 0
        assert entry["test"]["recon_gap"] == pytest.approx(
            entry["test"]["recon_error"] - entry["train"]["recon_error"])
    assert "| vcae-0.2 | recon_error (train) | 22.16 (003 Table 1, ReducedMNIST) |" in report


def test_vcae_table2_configs_follow_app_b3():
    plans = paper003.TABLE2.configs("mnist", scale="full", seed=0)
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
    quick = paper003.TABLE2.configs("fashion-mnist", scale="quick", seed=0)
    assert (quick["vae"].epochs, quick["vae"].lr_milestones, quick["vae-iaf"].epochs) == (
        8, [2, 4], 16)  # the milestones at 30% and 50% of the epochs


def test_vcae_table2_reports_fids_from_prior_and_flow(tmp_path, shrink):
    spec = shrink(paper003.TABLE2, ("vae", "vae-iaf", "vcae-lambda-0.1", "cwae-lambda-50"),
                  epochs=1, n_train=300, n_test=200, flow_epochs=1)
    runs = tuple(dataclasses.replace(r, quick={}) for r in spec.runs)  # vae-iaf: 1 epoch too
    report = dataclasses.replace(spec, runs=runs).run(tmp_path, scale="quick",
                                                      progress=False).read_text()
    methods = json.loads((tmp_path / "results.json").read_text())["methods"]
    for name, entry in methods.items():
        assert entry["test"]["fid_prior"] > 0 and entry["train"]["recon_error"] > 0
        assert ("fid_flow" in entry["test"]) == (name != "vae-iaf")
        assert entry["test"]["fid_n"] == 200  # all 200 test images
        assert (tmp_path / "runs" / name / "flow.safetensors").exists() == (name != "vae-iaf")
    assert "t2-flow-cwae" in json.dumps(json.loads((tmp_path / "results.json").read_text()))
    assert "| vcae-lambda-0.1 | fid_flow | 7.68 (003 Table 2, MNIST) |" in report
    assert "The paper measured on MNIST; ours is fashion-mnist." in report
    assert _is_png(tmp_path / "fig7_samples.png")


def test_vcae_mnist2d_writes_codes_histograms_and_flow_figures(tmp_path, shrink):
    plans = paper003.MNIST2D.configs("mnist", scale="full", seed=0)
    assert {n: c.options["lambda"] for n, c in plans.items()} == {
        "vcae": 1.0, "cwae": 100.0, "cwae-lambda-3000": 3000.0}
    assert all((c.net, c.latent_dim, c.batch_size, c.lr) == ("mnist-vcae", 2, 200, 1e-4)
               and c.options["sigma_eps"] == pytest.approx(0.1) for c in plans.values())
    spec = shrink(paper003.MNIST2D, epochs=1, n_train=300, n_test=200, flow_epochs=1)
    report = spec.run(tmp_path, scale="quick", progress=False).read_text()
    methods = json.loads((tmp_path / "results.json").read_text())["methods"]
    for entry in methods.values():
        assert 0 < entry["test"]["gaussianity_ks"] < 1
    assert "features are closer to a unit Gaussian" in report
    for name in ("fig2de_latents.png", "feature_histograms.png", "fig8_flow_latents.png"):
        assert _is_png(tmp_path / name)


def test_a_finished_run_is_reused_only_with_the_same_resolved_options(tmp_path, tiny_sine):
    """reproduce reuses out/runs/NAME only if it was trained with the same options, defaults
    included: a run saved before a default changed (here: its config lacks `scaling`) is
    refused, not silently reported as the new setting."""
    from wiseale.build import load_split

    config = dataclasses.replace(tiny_sine, epochs=1)
    data = load_split(config, "train"), load_split(config, "test")
    train_runs({"w": config}, tmp_path, *data, progress=False)
    weights = tmp_path / "runs/w/model.safetensors"
    stamp = weights.stat().st_mtime_ns
    train_runs({"w": config}, tmp_path, *data, progress=False)  # reused, not retrained
    assert weights.stat().st_mtime_ns == stamp
    with pytest.raises(WisealeError, match=r"other settings \(options\); use another --out"):
        train_runs({"w": dataclasses.replace(config, options={"weight": 2.0})}, tmp_path,
                   *data, progress=False)
    saved = json.loads((tmp_path / "runs/w/config.json").read_text())
    del saved["options"]["scaling"]
    (tmp_path / "runs/w/config.json").write_text(json.dumps(saved))
    with pytest.raises(WisealeError, match=r"other settings \(options\)"):
        train_runs({"w": config}, tmp_path, *data, progress=False)


def test_measures_are_kept_in_the_run_and_retaken_under_other_settings(tmp_path,
                                                                       tiny_sine_spec):
    from wiseale.experiments.spec import Measure

    calls = []

    def count(context):
        calls.append((context.name, context.settings.get("extra")))
        return {"count_seen": float(len(calls))}

    spec = dataclasses.replace(tiny_sine_spec, measures=(Measure("count", count, ("wae",)),))
    spec.run(tmp_path, scale="quick", progress=False)
    spec.run(tmp_path, scale="quick", progress=False)  # read from runs/wae/measures.json
    assert calls == [("wae", None)]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["methods"]["wae"]["test"]["count_seen"] == 1.0
    assert "count_seen" not in results["methods"]["aevb"]["test"]
    other = dataclasses.replace(spec, quick={**spec.quick, "extra": 1})
    other.run(tmp_path, scale="quick", progress=False)
    assert calls == [("wae", None), ("wae", 1)]


def test_reproduce_all_runs_every_offline_experiment_and_writes_the_claims(
        tmp_path, tiny_sine_spec, monkeypatch):
    from wiseale import experiments
    from wiseale.experiments import prior_constraint

    offline_less = dataclasses.replace(paper001.CELEBA, offline=None)
    monkeypatch.setattr(experiments, "EXPERIMENTS", {
        "sine": tiny_sine_spec, "prior-constraint": prior_constraint.SPEC,
        "celeba": offline_less})
    assert main(["reproduce", "all", "--quick", "--out", str(tmp_path), "--no-progress"]) == 0
    assert (tmp_path / "sine/report.md").exists()
    assert (tmp_path / "prior-constraint/report.md").exists()
    assert not (tmp_path / "celeba").exists()  # needs data this machine lacks
    rows = json.loads((tmp_path / "claims.json").read_text())
    assert {r["experiment"]: r["verdict"] for r in rows}["celeba"] == "not run here"
    assert len(rows) == 8 + 4 + 1  # sine (its 3 claims, 8 readings), prior-constraint, celeba


def test_a_claim_that_does_not_hold_shows_its_diagnosis_or_that_it_has_none(tmp_path, capsys):
    from wiseale.experiments.summary import diagnose

    rows = [{"id": "a", "scale": "medium", "verdict": "does NOT hold"},
            {"id": "b", "scale": "medium", "verdict": "does NOT hold"},
            {"id": "b", "scale": "quick", "verdict": "holds"}]
    diagnose(rows, {"a@medium": "our stand-in data: Fashion-MNIST"})
    assert [r["diagnosis"] for r in rows] == ["our stand-in data: Fashion-MNIST",
                                              "no diagnosis yet", "-"]
    bad = tmp_path / "bad.toml"
    for text in ('"a" = "no scale"\n', '"a@quick" = 3\n', "a = [\n"):
        bad.write_text(text)
        code = main(["claims", str(tmp_path), "--out", str(tmp_path / "c.md"),
                     "--diagnoses", str(bad)])
        err = capsys.readouterr().err
        assert code == 1 and "bad.toml" in err and err.count("\n") == 1
        assert not (tmp_path / "c.md").exists()

