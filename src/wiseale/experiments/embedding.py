"""001 Fig. 1 and Sec. 5.2: 2-D embeddings of MNIST-like images by AEVB, beta-VAE, WiSE-ALE and
WAE on the App. D.2 network (batch 64, 30 epochs, Adam 1e-3, d_z = 2, Bernoulli likelihood).

MNIST is binarised as in the paper; Fashion-MNIST and the 8x8 digits keep their grey levels
under the Bernoulli likelihood (docs/experiments.md). ``--quick`` trains on fewer images and
epochs.
"""

from __future__ import annotations

from pathlib import Path

import torch

from wiseale.build import load_split
from wiseale.config import RunConfig
from wiseale.experiments.common import (
    Experiment,
    choose_data,
    compare_methods,
    first_config,
    metrics_table,
    read_results,
)
from wiseale.plots import plot_embeddings
from wiseale.storage import atomic_write_text
from wiseale.training import load_run

METHODS = ("aevb", "beta-vae", "wise-ale", "wae")
DATA = ("mnist", "fashion-mnist", "digits")
FULL = {"epochs": 30, "n_train": None, "n_test": None}
QUICK = {"epochs": 10, "n_train": 30_000, "n_test": 2_000}
N_SHOWN = 64  # test images drawn in Fig. 1
TABLE_KEYS = ["recon_error", "kl_prior", "elbo", "iwae", "aggregate_kl_ub", "aggregate_kl_mc",
              "posterior_overlap", "knn_accuracy", "latent_total_variance", "fid_prior"]


def configs(data: str, quick: bool, seed: int, data_dir: str | None = None,
            device: str = "cpu") -> dict[str, RunConfig]:
    scale = dict(QUICK if quick else FULL)
    if data == "digits":  # 1,500 training images: the quick scale is the full one
        scale.update(n_train=None, n_test=None)
    options = {"binarize": True} if data == "mnist" else {}
    return {m: RunConfig(method=m, data=data, data_dir=data_dir, data_options=options,
                         latent_dim=2,
                         batch_size=64, lr=1e-3, likelihood="bernoulli", seed=seed, device=device,
                         eval_size=2_000, **scale) for m in METHODS}


def _convergence_table(methods: dict) -> str:
    """Last three per-epoch test recon_errors and the regulariser's share of the final loss."""
    lines = ["| method | test recon_error, last 3 epochs | prior term / loss (last epoch) |",
             "|---|---|---|"]
    for name, entry in methods.items():
        last = entry["history"][-3:]
        errors = ", ".join(f"{row['test_recon_error']:.2f}" for row in last)
        prior = last[-1]["loss"] - last[-1]["recon"]
        lines.append(f"| {name} | {errors} | {prior / last[-1]['loss']:.1%} |")
    return "\n".join(lines)


def _report(data: str, quick: bool, scale: dict, methods: dict) -> str:
    wise = methods["wise-ale"]["test"]["recon_error"]
    beaten = [m for m in ("aevb", "beta-vae") if methods[m]["test"]["recon_error"] > wise]
    claim = ("holds" if len(beaten) == 2 else "does NOT hold") + \
        f" (WiSE-ALE is lower than: {', '.join(beaten) or 'none'})"
    return "\n".join([
        f"# 2-D embeddings of {data} ({'quick' if quick else 'full'})", "",
        "Seed 001 Fig. 1, Sec. 5.2; App. D.2 network and hyper-parameters (batch 64, "
        f"Adam 1e-3, d_z = 2, Bernoulli likelihood); {scale['epochs']} epochs on "
        f"{scale['n_train'] or 'all'} training images; metrics on "
        f"{scale['n_test'] or 'all'} test images.", "",
        "## Test metrics", "", metrics_table(methods, TABLE_KEYS), "",
        "Compactness is `aggregate_kl_mc` (KL of the aggregate posterior to N(0, I), lower is "
        "more compact), smoothness `posterior_overlap` (Bhattacharyya coefficient with the "
        "nearest posterior, higher is smoother), separation `knn_accuracy` (5-NN label "
        "accuracy of the latent means). `fid_prior`: FID of decoded prior samples against "
        "the test images in the features of a small classifier trained on this data set (not "
        "comparable with Inception FIDs). Definitions: docs/metrics.md.", "",
        f"Paper's claim (lower reconstruction error than AEVB and beta-VAE): {claim}.", "",
        "Evidence for reading that claim: the per-epoch test recon_error of the last epochs "
        "(on the per-epoch evaluation subset) shows whether the methods still improve and how "
        "much one epoch moves them, next to the share of the loss that the prior term takes:",
        "", _convergence_table(methods), "",
        "## Embeddings (Fig. 1)", "", "![embeddings](fig1_embeddings.png)", "",
        f"{N_SHOWN} random test images per method: 1- and 2-sigma ellipses of q(z|x) coloured "
        "by class over the density of their aggregate posterior.", ""])


def run(out: Path, quick: bool = False, seed: int = 0, data: str | None = None,
        progress: bool = True, data_dir: str | None = None,
        device: str = "cpu") -> Path:
    """Train the four methods, then write results.json, fig1_embeddings.png and report.md."""
    data = choose_data("mnist-embedding", data, DATA)
    out = Path(out)
    plans = configs(data, quick, seed, data_dir, device)
    first = next(iter(plans.values()))
    methods = compare_methods("mnist-embedding", out, plans, quick, progress, prior_fid=True)

    plot(out)
    report = out / "report.md"
    scale = {"epochs": first.epochs, "n_train": first.n_train, "n_test": first.n_test}
    atomic_write_text(report, _report(data, quick, scale, methods))
    return report


def plot(out: Path) -> list[Path]:
    """Fig. 1: the posteriors of the same 64 random test images (chosen by the run's seed)."""
    out = Path(out)
    results = read_results(out, "mnist-embedding")
    config = first_config(results)
    test_data = load_split(config, "test")
    generator = torch.Generator().manual_seed(config.seed)
    shown = torch.randperm(len(test_data), generator=generator)[:N_SHOWN]
    panels = {}
    with torch.no_grad():
        for name in results["methods"]:
            post = load_run(out / "runs" / name)[0].encode(test_data.x[shown], sample=False)
            panels[name] = (post.code.numpy(),
                            None if post.logvar is None else post.logvar.numpy())
    figure = out / "fig1_embeddings.png"
    plot_embeddings(panels, test_data.y[shown].numpy(), figure)
    return [figure]


EXPERIMENT = Experiment("mnist-embedding", "001 Fig. 1: 2-D embeddings by AEVB, beta-VAE, "
                        "WiSE-ALE, WAE (--data mnist|fashion-mnist|digits)", run, plot)
