import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import wiseale
from wiseale.cli import main


def _run(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse errors
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


TRAIN = ["train", "--data", "sine", "--n-train", "128", "--n-test", "32", "--epochs", "1",
         "--batch-size", "32", "--no-progress"]


@pytest.mark.parametrize("argv, message", [
    (["train", "--method", "nope", "--data", "sine", "--out", "X"], "unknown method 'nope'"),
    (["train", "--method", "aevb", "--data", "mnist-ish", "--out", "X"], "unknown data set"),
    (["train", "--method", "aevb", "--data", "sine", "--out", "X", "-o", "gamma=2"],
     "has no option 'gamma'"),
    (["train", "--method", "aevb", "--data", "sine", "--out", "X", "--epochs", "0"],
     "must be a positive integer"),
    (["train", "--method", "aevb", "--data", "sine", "--out", "X", "--batch-size", "-3"],
     "must be a positive integer"),
    (["train", "--method", "aevb", "--data", "sine", "--out", "X", "--latent-dim", "0"],
     "must be a positive integer"),
    (["train", "--method", "aevb", "--data", "sine", "--out", "X", "--lr", "nan"],
     "finite positive"),
    (["train", "--method", "aevb", "--data", "sine", "--out", "X", "--lr", "inf"],
     "finite positive"),
    (["train", "--method", "aevb", "--data", "sine", "--out", "X", "--frobnicate"],
     "unrecognized arguments"),
    (["reproduce", "table9", "--out", "X"], "invalid choice"),
    (["train", "--method", "aevb", "--data", "sine", "--out", "X", "-o", "beta"], "KEY=VALUE"),
])
def test_bad_input_gets_one_line_and_nonzero_exit(capsys, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(capsys, *argv)
    assert code != 0
    assert message in err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "X").exists()  # nothing written


def test_unwritable_out_and_missing_file(capsys, tmp_path):
    (tmp_path / "f").write_text("")
    code, _, err = _run(capsys, *TRAIN, "--method", "aevb", "--out", str(tmp_path / "f/run"))
    assert code == 1 and "cannot create" in err and len(err.strip().splitlines()) == 1
    code, _, err = _run(capsys, "train", "--method", "aevb", "--data",
                        str(tmp_path / "missing.npy"), "--out", str(tmp_path / "r"))
    assert code == 1 and "does not exist" in err
    code, _, err = _run(capsys, "evaluate", str(tmp_path / "nothing"))
    assert code == 1 and "not a directory" in err


def test_train_then_evaluate(capsys, tmp_path):
    code, out, _ = _run(capsys, *TRAIN, "--method", "wise-ale", "--out", str(tmp_path / "r"),
                        "-o", "scaling=per-sample")
    assert code == 0 and "model.safetensors" in out
    config = json.loads((tmp_path / "r/config.json").read_text())
    assert config["options"]["scaling"] == "per-sample"
    code, out, _ = _run(capsys, "evaluate", str(tmp_path / "r"))
    metrics = json.loads(out)
    assert code == 0 and set(metrics) == {
        "recon_error", "mse", "kl_prior", "elbo", "aggregate_kl_ub", "iwae", "aggregate_kl_mc",
        "aggregate_kl_mc_se", "latent_total_variance", "posterior_overlap", "knn_accuracy"}
    assert metrics["iwae"] >= metrics["elbo"] - 1.0 and metrics["knn_accuracy"] is None


def test_user_data_with_data_dir(capsys, tmp_path):
    x = (np.random.default_rng(0).random((200, 12)) > 0.5).astype(np.float32)
    np.save(tmp_path / "bits.npy", x)
    code, _, err = _run(capsys, "train", "--method", "wae", "--data", "bits.npy", "--data-dir",
                        str(tmp_path), "--out", str(tmp_path / "r"), "--epochs", "1",
                        "--batch-size", "30", "--no-progress")
    assert code == 0, err
    config = json.loads((tmp_path / "r/config.json").read_text())
    assert config["likelihood"] == "bernoulli" and config["net"] == "mlp"


def test_listings(capsys):
    for command, expected in (("methods", "wise-ale"), ("datasets", "sine"),
                              ("experiments", "sine")):
        code, out, _ = _run(capsys, command)
        assert code == 0 and expected in out
    code, out, _ = _run(capsys, "methods")
    assert "alias vae" in out and "scaling=batch" in out


def test_module_entry_point():
    result = subprocess.run([sys.executable, "-m", "wiseale", "methods"], capture_output=True,
                            text=True, check=True)
    assert "aevb" in result.stdout


def test_unexpected_errors_are_one_line_unless_debug(capsys, monkeypatch):
    import wiseale.cli as cli

    def broken(*_) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(cli, "_methods", broken)
    code, _, err = _run(capsys, "methods")
    assert code == 1 and "unexpected RuntimeError: boom" in err and "--debug" in err
    assert len(err.strip().splitlines()) == 1
    with pytest.raises(RuntimeError):
        main(["--debug", "methods"])


def test_relative_data_path_is_stored_absolute(capsys, tmp_path, monkeypatch):
    np.save(tmp_path / "ten.npy", np.random.default_rng(0).normal(size=(100, 4)))
    monkeypatch.chdir(tmp_path)
    code, _, err = _run(capsys, "train", "--method", "aevb", "--data", "ten.npy", "--out",
                        "run", "--epochs", "1", "--batch-size", "16", "--no-progress")
    assert code == 0, err
    monkeypatch.chdir("/")
    code, out, err = _run(capsys, "evaluate", str(tmp_path / "run"))
    assert code == 0, err


def test_seed_and_n_train_bounds(capsys, tmp_path):
    code, _, err = _run(capsys, *TRAIN, "--method", "aevb", "--out", str(tmp_path / "r"),
                        "--seed", "99999999999999999999")
    assert code == 2 and "between 0 and" in err
    np.save(tmp_path / "small.npy", np.zeros((50, 3)))
    code, _, err = _run(capsys, "train", "--method", "aevb", "--data",
                        str(tmp_path / "small.npy"), "--n-train", "1000", "--out",
                        str(tmp_path / "r2"))
    assert code == 1 and "is more than the 45 train samples" in err


def test_plot_redraws_experiment_and_run_figures(capsys, tmp_path):
    code, _, err = _run(capsys, "reproduce", "prior-constraint", "--out", str(tmp_path / "pc"))
    assert code == 0, err
    figure = tmp_path / "pc/fig4_prior_constraint.png"
    figure.unlink()
    code, out, err = _run(capsys, "plot", str(tmp_path / "pc"))
    assert code == 0 and figure.exists() and str(figure) in out, err
    code, _, _ = _run(capsys, *TRAIN, "--method", "aevb", "--out", str(tmp_path / "r"))
    code, out, err = _run(capsys, "plot", str(tmp_path / "r"))
    assert code == 0 and (tmp_path / "r/curves.png").read_bytes()[:4] == b"\x89PNG", err
    code, _, err = _run(capsys, "plot", str(tmp_path))
    assert code == 1 and "neither results.json nor metrics.jsonl" in err


def test_sample_from_prior_and_flow(capsys, tmp_path):
    code, _, err = _run(capsys, *TRAIN, "--method", "vcae", "--out", str(tmp_path / "r"))
    assert code == 0, err
    code, out, err = _run(capsys, "sample", str(tmp_path / "r"), "--n", "5", "--out",
                          str(tmp_path / "prior.npy"))
    assert code == 0, err
    assert np.load(tmp_path / "prior.npy").shape == (5, 1, 256)
    code, out, err = _run(capsys, "sample", str(tmp_path / "r"), "--sampler", "flow", "--n", "5",
                          "--flow-epochs", "2", "--out", str(tmp_path / "flow.npy"))
    assert code == 0 and "fitted a flow" in out, err
    assert (tmp_path / "r/flow.safetensors").exists()
    first = np.load(tmp_path / "flow.npy")
    code, out, err = _run(capsys, "sample", str(tmp_path / "r"), "--sampler", "flow", "--n", "5",
                          "--out", str(tmp_path / "flow2.npy"))
    assert code == 0 and "fitted" not in out  # loaded, not refitted
    assert np.array_equal(np.load(tmp_path / "flow2.npy"), first)
    code, _, err = _run(capsys, "sample", str(tmp_path / "r"), "--sampler", "flow",
                        "--flow-epochs", "3", "--out", str(tmp_path / "flow3.npy"))
    assert code == 1 and "fitted with epochs=2, not epochs=3; delete it" in err
    assert err.count("\n") == 1 and not (tmp_path / "flow3.npy").exists()
    code, _, err = _run(capsys, "sample", str(tmp_path / "r"), "--out", str(tmp_path / "x.png"))
    assert code == 1 and "use .npy" in err
    code, out, err = _run(capsys, "sample", str(tmp_path / "r"), "--sampler", "mixture",
                          "--components", "3", "--n", "5", "--out", str(tmp_path / "mix.npy"))
    assert code == 0 and "fitted a mixture" in out, err
    assert "wiseale: fitting a 3-component Gaussian mixture to" in err  # a line before EM
    from wiseale.samplers import load_sampler

    mixture = load_sampler(tmp_path / "r/mixture.safetensors")
    assert (mixture.name, mixture.components) == ("mixture", 3)
    assert np.load(tmp_path / "mix.npy").shape == (5, 1, 256)
    code, _, err = _run(capsys, "sample", str(tmp_path / "r"), "--n", "2", "--out",
                        str(tmp_path / "new/folder/prior.npy"))  # missing folders are made
    assert code == 0 and np.load(tmp_path / "new/folder/prior.npy").shape == (2, 1, 256)


def test_training_further_removes_the_samplers_and_figures_of_the_former_weights(capsys,
                                                                                tmp_path):
    """Issue 23, point 2: a sampler or figure of the former weights never looks current."""
    from wiseale.derived import RUN_FIGURES, figure_digest, weights_digest

    run = tmp_path / "r"
    code, _, err = _run(capsys, *TRAIN, "--method", "aevb", "--out", str(run))
    assert code == 0, err
    for sampler, option in (("mixture", ["--components", "2"]), ("flow", ["--flow-epochs", "1"])):
        code, out, err = _run(capsys, "sample", str(run), "--sampler", sampler, *option, "--n",
                              "2", "--out", str(tmp_path / f"{sampler}.npy"))
        assert code == 0 and "fitted a" in out, err
    code, _, err = _run(capsys, "plot", str(run))
    assert code == 0, err
    for name in RUN_FIGURES:  # each records the weights it was drawn from
        assert figure_digest(run / name) == weights_digest(run / "model.safetensors")
    former = (run / "mixture.safetensors").read_bytes()
    code, _, err = _run(capsys, "train", "--resume", "--out", str(run), "--no-progress")
    assert code == 0 and (run / "flow.safetensors").exists(), err  # same weights: all kept
    assert all((run / name).exists() for name in RUN_FIGURES)
    code, _, err = _run(capsys, "train", "--resume", "--out", str(run), "--epochs", "2",
                        "--no-progress")
    assert code == 0, err
    assert not any((run / name).exists() for name in
                   (*RUN_FIGURES, "mixture.safetensors", "flow.safetensors"))
    assert (f"wiseale: removed {run}/flow.safetensors: fitted to other weights than the new "
            "model.safetensors\n") in err and f"removed {run}/curves.png: drawn from" in err
    # a file of the former weights (left by an older wiseale, or put back) is refused
    (run / "mixture.safetensors").write_bytes(former)
    code, out, err = _run(capsys, "sample", str(run), "--sampler", "mixture", "--n", "2",
                          "--out", str(tmp_path / "stale.npy"))
    assert code == 1 and err.count("\n") == 1, err
    assert (f"{run}/mixture.safetensors was fitted to other weights than "
            f"{run}/model.safetensors") in err and "delete it to refit" in err
    assert (run / "mixture.safetensors").read_bytes() == former  # nothing changed
    assert not (tmp_path / "stale.npy").exists()
    # so is a flow copied from another run with the same latent size
    code, _, err = _run(capsys, *TRAIN, "--method", "aevb", "--seed", "1", "--out",
                        str(tmp_path / "other"))
    assert code == 0, err
    code, _, err = _run(capsys, "sample", str(tmp_path / "other"), "--sampler", "flow",
                        "--flow-epochs", "1", "--n", "2", "--out", str(tmp_path / "o.npy"))
    assert code == 0, err
    copied = (tmp_path / "other/flow.safetensors").read_bytes()
    (run / "flow.safetensors").write_bytes(copied)
    code, _, err = _run(capsys, "sample", str(run), "--sampler", "flow", "--n", "2", "--out",
                        str(tmp_path / "copied.npy"))
    assert code == 1 and err.count("\n") == 1 and "was fitted to other weights" in err, err
    assert (run / "flow.safetensors").read_bytes() == copied
    (run / "mixture.safetensors").unlink()  # deleted, as the message says: refitted
    code, out, err = _run(capsys, "sample", str(run), "--sampler", "mixture", "--components",
                          "2", "--n", "2", "--out", str(tmp_path / "new.npy"))
    assert code == 0 and "fitted a mixture" in out, err


def test_evaluate_with_fid_on_labelled_images(capsys, tmp_path):
    code, _, err = _run(capsys, "train", "--method", "aevb", "--data", "digits", "--n-train",
                        "256", "--n-test", "64", "--epochs", "1", "--latent-dim", "2",
                        "--out", str(tmp_path / "r"), "--no-progress")
    assert code == 0, err
    code, out, err = _run(capsys, "evaluate", str(tmp_path / "r"), "--fid")
    assert code == 0, err
    metrics = json.loads(out)
    assert metrics["fid_prior"] > 0 and 0 <= metrics["knn_accuracy"] <= 1
    assert metrics["fid_features"].startswith("classifier:digits:") and metrics["fid_n"] == 64
    code, _, err = _run(capsys, *TRAIN, "--method", "aevb", "--out", str(tmp_path / "s"))
    code, _, err = _run(capsys, "evaluate", str(tmp_path / "s"), "--fid")
    assert code == 1 and "the FID needs images" in err


def test_help_lists_every_environment_variable_the_code_reads(capsys):
    """`wiseale --help` names each $WISEALE_* variable found in the sources."""

    root = Path(wiseale.__file__).parent
    used = {name for path in root.rglob("*.py")
            for name in re.findall(r"WISEALE_[A-Z]+", path.read_text())}
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = capsys.readouterr().out
    assert used and all(name in help_text for name in used), used


def test_the_command_line_starts_without_torch_or_matplotlib():
    """`import wiseale`, building every subcommand's parser, `wiseale methods`, `datasets` and
    `experiments` import neither (issues 14 and 16)."""
    import subprocess
    import sys

    code = ("import sys, wiseale, wiseale.cli; wiseale.cli.build_parser(); {}"
            "print(sorted(m for m in ('torch', 'matplotlib', 'numpy') if m in sys.modules))")
    for command in ("", "wiseale.cli.main(['methods']); ", "wiseale.cli.main(['datasets']); ",
                    "wiseale.cli.main(['experiments']); "):
        out = subprocess.run([sys.executable, "-c", code.format(command)], capture_output=True,
                             text=True, check=True).stdout
        assert out.strip().splitlines()[-1] == "[]", command


def test_train_has_a_flag_for_every_config_field_with_its_default(capsys):
    """wiseale train's flags come from RunConfig's fields (issue 14, point 6)."""
    import dataclasses

    from wiseale.config import RunConfig

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    special = {"options": "--option", "data_options": "--data-option"}
    for f in dataclasses.fields(RunConfig):
        if f.name in ("sample_shape", "parts"):  # resolved from the data and the preset
            continue
        assert special.get(f.name, "--" + f.name.replace("_", "-")) in text, f.name
    assert "--eval-size N test samples evaluated after every epoch (all of them at the end) " \
           "(default: 4096)" in text
    assert "--sigma2 SIGMA2 variance of the Gaussian likelihood (default: 0.5)" in text


def test_version(capsys):
    from wiseale import __version__

    code, out, _ = _run(capsys, "--version")
    assert code == 0 and out.strip() == f"wiseale {__version__}"


def test_train_reads_a_toml_config_that_flags_override(capsys, tmp_path):
    (tmp_path / "run.toml").write_text(
        'method = "vcae"\ndata = "sine"\nn-train = 128\nn_test = 32\nepochs = 3\n'
        'batch_size = 32\nlr_schedule = "cosine"\n\n[options]\nlambda = 2.5\n')
    code, _, err = _run(capsys, "train", "--config", str(tmp_path / "run.toml"), "--epochs",
                        "1", "-o", "v=3", "--no-progress", "--out", str(tmp_path / "r"))
    assert code == 0, err
    saved = json.loads((tmp_path / "r/config.json").read_text())
    assert (saved["method"], saved["epochs"], saved["lr_schedule"]) == ("vcae", 1, "cosine")
    assert saved["options"]["lambda"] == 2.5 and saved["options"]["v"] == 3
    (tmp_path / "bad.toml").write_text('method = "vcae"\nepoch = 3\n')
    code, _, err = _run(capsys, "train", "--config", str(tmp_path / "bad.toml"), "--out",
                        str(tmp_path / "b"))
    assert code == 1 and "unknown settings epoch; use method, data" in err
    assert err.count("\n") == 1 and not (tmp_path / "b").exists()
    (tmp_path / "broken.toml").write_text('method = "vcae\n')
    code, _, err = _run(capsys, "train", "--config", str(tmp_path / "broken.toml"), "--out",
                        str(tmp_path / "b"))
    assert code == 1 and "is not valid TOML" in err and err.count("\n") == 1
    code, _, err = _run(capsys, "train", "--data", "sine", "--out", str(tmp_path / "b"))
    assert code == 1 and "give --method (or --config FILE, or --resume" in err


def test_an_option_flag_overrides_the_same_option_in_the_toml_file(capsys, tmp_path):
    """-o lambda=4 wins over the file's [options] lambda = 2.5 (flags override the file, key by
    key), and the file's other options stay."""
    (tmp_path / "run.toml").write_text('method = "vcae"\n\n[options]\nlambda = 2.5\nv = 3\n')
    code, _, err = _run(capsys, *TRAIN, "--config", str(tmp_path / "run.toml"), "-o",
                        "lambda=4", "--out", str(tmp_path / "r"))
    assert code == 0, err
    saved = json.loads((tmp_path / "r/config.json").read_text())
    assert saved["options"]["lambda"] == 4 and saved["options"]["v"] == 3


def test_resume_takes_the_runs_own_settings(capsys, tmp_path):
    """`train --resume --out DIR` needs no other flag; --epochs extends the run."""
    code, _, err = _run(capsys, *TRAIN, "--method", "wise-ale", "--lr", "0.002", "-o",
                        "weight=2", "--out", str(tmp_path / "r"))
    assert code == 0, err
    code, _, err = _run(capsys, "train", "--resume", "--epochs", "2", "--no-progress", "--out",
                        str(tmp_path / "r"))
    assert code == 0, err
    rows = (tmp_path / "r/metrics.jsonl").read_text().splitlines()
    saved = json.loads((tmp_path / "r/config.json").read_text())
    assert len(rows) == 2 and saved["lr"] == 0.002 and saved["options"]["weight"] == 2
    code, _, err = _run(capsys, "train", "--resume", "--out", str(tmp_path / "none"))
    assert code == 1 and "holds no checkpoint" in err and "without --resume" in err


def test_plot_draws_a_runs_curves_reconstructions_and_latents(capsys, tmp_path):
    from PIL import Image

    code, _, err = _run(capsys, *TRAIN, "--method", "aevb", "--out", str(tmp_path / "r"))
    assert code == 0, err
    code, out, err = _run(capsys, "plot", str(tmp_path / "r"))
    assert code == 0, err
    names = {"curves.png", "reconstructions.png", "latents.png"}
    assert {line.rsplit("/", 1)[-1] for line in out.split()} == names
    for name in names:
        with Image.open(tmp_path / "r" / name) as image:
            assert min(image.size) > 150


def test_sample_grids_are_square(tmp_path):
    import numpy as np
    from PIL import Image

    from wiseale.plots import plot_sample_grid

    plot_sample_grid(np.random.default_rng(0).random((64, 1, 28, 28)), tmp_path / "g.png")
    with Image.open(tmp_path / "g.png") as image:
        width, height = image.size
    assert 0.8 < width / height < 1.25 and width > 400  # 8 x 8, not one 64-image row


def test_history_panels_pair_train_with_test_and_drop_duplicates():
    from wiseale.plots import _history_panels

    rows = [{"epoch": e, "loss": 3.0 / e, "recon": 2.0 / e, "nll": 2.0 / e,
             "kl_prior": 1.0 * e, "test_kl_prior": 1.1 * e, "test_recon_error": 1.5 / e,
             "sample_recon_error": 1.6 / e, "samples_per_s": 9.0}
            for e in (1, 2, 3)]
    assert _history_panels(rows) == [
        ("loss", ["loss"]), ("recon", ["recon"]), ("kl_prior", ["kl_prior", "test_kl_prior"]),
        ("recon_error", ["test_recon_error"]), ("sample_recon_error", ["sample_recon_error"])]


def test_the_experiment_catalog_lists_every_experiment_in_order():
    """`wiseale experiments` reads experiments/index.py; it names each spec, no more."""
    from wiseale.experiments import EXPERIMENTS
    from wiseale.experiments.index import INDEX

    assert list(INDEX) == list(EXPERIMENTS)
    assert all(EXPERIMENTS[name].summary == listing.summary for name, listing in INDEX.items())


def test_every_argument_of_every_command_has_help():
    import argparse

    from wiseale.cli import build_parser

    commands = next(a for a in build_parser()._actions
                    if isinstance(a, argparse._SubParsersAction)).choices
    bare = [(name, action.dest) for name, parser in commands.items()
            for action in parser._actions
            if not action.help and not isinstance(action, argparse._HelpAction)]
    assert bare == []


def test_errors_name_flags_on_the_command_line_and_arguments_in_python(tmp_path, capsys,
                                                                       tiny_sine):
    """The same refusal: "add --resume ... --out" from the CLI, "add resume=True ... out" from
    train(); a command quoted in backticks stays as typed."""
    from wiseale.errors import WisealeError, python_terms
    from wiseale.training import train

    code, _, err = _run(capsys, *TRAIN, "--method", "aevb", "--out", str(tmp_path / "r"))
    assert code == 0, err
    code, _, err = _run(capsys, *TRAIN, "--method", "aevb", "--out", str(tmp_path / "r"))
    assert code == 1 and "add --resume or choose another --out" in err
    with pytest.raises(WisealeError, match="add resume=True or choose another out$"):
        train(dataclasses.replace(tiny_sine, method="aevb"), tmp_path / "r", progress=False)
    assert python_terms("lower --batch-size or --n-train; pass --allow-changed-data, run "
                        "`wiseale train --resume --out r`") == (
        "lower batch_size or n_train; pass changed_ok=True, run `wiseale train --resume --out r`")


def test_an_interrupt_during_start_up_says_there_is_nothing_to_resume(tmp_path, capsys,
                                                                      monkeypatch):
    import wiseale.training.loop as loop

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "load_split", interrupted)
    code, _, err = _run(capsys, *TRAIN, "--method", "aevb", "--out", str(tmp_path / "r"))
    assert code == 130
    assert err.strip() == "wiseale: interrupted before the run's first checkpoint: nothing to " \
                          "resume"


def test_a_sample_grid_says_how_much_it_clipped(tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    from wiseale.plots import plot_sample_grid

    titles = []
    monkeypatch.setattr(Axes, "set_title", lambda self, label, **kw: titles.append(label))
    images = np.full((4, 1, 2, 2), 0.5)
    plot_sample_grid(images, tmp_path / "inside.png", "samples")
    images[0, 0, 0, :] = (-0.1, 1.5)  # 2 of 16 values
    plot_sample_grid(images, tmp_path / "outside.png", "samples")
    assert titles == ["samples", "samples (12.5% of values outside [0, 1], clipped)"]
