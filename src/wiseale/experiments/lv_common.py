"""What the experiments of seed 004 (the learned-variance VAE) share: its training setting and
the FIDs of samples from the prior and from a Gaussian mixture of the aggregate posterior.

004 Supp. B.1 (MNIST, Fashion-MNIST): the `lv-mnist` network, d_z = 16, batch 256, Adam 5e-4,
16 epochs of stage 1 and 14 of stage 2 (30 in all; the one-stage methods train 30 epochs);
images as real values in [0, 1]. Supp. B.2 (CelebA at 128 x 128, `lv-celeba`): d_z = 256, 75 +
20 epochs, the same batch and learning rate; 20,000 test images. The mixture has 32
components for MNIST-like data and 500 for CelebA (Sec. 5.5). ``--quick`` trains 6 epochs
(3 + 3) on 10,000 Fashion-MNIST images and tests on 2,000, with the global variance in closed
form (QUICK_VARIANCE says why).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wiseale.config import RunConfig
from wiseale.data import Dataset
from wiseale.experiments.common import add_sample_fids as common_fids
from wiseale.samplers import run_mixture

DATA = ("fashion-mnist", "mnist", "celeba")
SETTINGS = {  # data kind -> 004 Supp. B
    "mnist": {"net": "lv-mnist", "latent_dim": 16, "epochs": 30, "stage1_epochs": 16,
              "components": 32, "data_options": {}},
    "celeba": {"net": "lv-celeba", "latent_dim": 256, "epochs": 95, "stage1_epochs": 75,
               "components": 500, "data_options": {"crop": 178, "size": 128}},
}
QUICK = {"epochs": 6, "stage1_epochs": 3, "n_train": 10_000, "n_test": 2_000}
QUICK_VARIANCE = (
    "At --quick the global variance is set in closed form (004 Eq. 10: `--likelihood optimal` "
    "for lv-vae, `stage1_variance=closed-form` for lv-vae-pixel): Adam at 5e-4 moves sigma by "
    "about 5e-4 per step, so the 234 steps of a quick run take the gradient-learned sigma^2 "
    "only from 1 to 0.77 (simulated on Eq. 9's loss, D = 784) while the optimum Eq. 9 and 10 "
    "share is near 0.035; the full scale (3,744 stage-1 steps, where sigma^2 reaches the "
    "optimum) learns it by gradient as 004 Alg. 1 does.")


def setting(data: str, quick: bool) -> dict[str, Any]:
    """004's setting for ``data`` (Supp. B.1 or B.2), scaled down by ``quick``."""
    chosen = dict(SETTINGS["celeba" if data == "celeba" else "mnist"])
    chosen.update(n_train=None, n_test=None)
    if quick:
        chosen.update(QUICK)
    return chosen


def lv_config(method: str, data: str, quick: bool, seed: int, data_dir: str | None = None,
              device: str = "cpu", likelihood: str | None = "gaussian", sigma2: float = 0.5,
              options: dict[str, Any] | None = None, **overrides: Any) -> RunConfig:
    """One run of an 004 experiment: ``method`` on 004's network and schedule; fixed-variance
    methods use ``likelihood="gaussian"`` with ``sigma2`` (004's VAE: 0.5, beta-VAE: 1);
    lv-vae-pixel gets the setting's stage-1 epochs unless ``options`` say otherwise."""
    chosen = setting(data, quick)
    options = dict(options or {})
    if method == "lv-vae-pixel":
        options.setdefault("stage1_epochs", chosen["stage1_epochs"])
        if quick:
            options.setdefault("stage1_variance", "closed-form")
    if quick and method == "lv-vae" and likelihood is None:
        likelihood = "optimal"  # see QUICK_VARIANCE
    fields = dict(method=method, data=data, data_dir=data_dir,
                  data_options=chosen["data_options"], options=options,
                  likelihood=likelihood, sigma2=sigma2, net=chosen["net"],
                  latent_dim=chosen["latent_dim"], epochs=chosen["epochs"], batch_size=256,
                  lr=5e-4, n_train=chosen["n_train"], n_test=chosen["n_test"], seed=seed,
                  device=device, eval_size=2_000)
    fields.update(overrides)
    return RunConfig(**fields)


def add_sample_fids(out: Path, methods: dict[str, Any], train_data: Dataset,
                    test_data: Dataset, components: int, seed: int = 0,
                    without_mixture: tuple[str, ...] = ()) -> None:
    """Add ``fid_prior`` and ``fid_mixture`` to every method's test metrics; the mixture
    (``components`` Gaussians on posterior samples, fitted once per run and saved in it) is
    skipped for the names in ``without_mixture`` (004 Supp. D: not for WAE, whose posteriors
    are points)."""
    def mixture(name: str, run_dir: Path, model: Any) -> tuple[str, Any] | None:
        if name in without_mixture:
            return None
        return "mixture", run_mixture(run_dir, model, train_data.x, components=components,
                                      seed=seed)

    common_fids(out, methods, train_data, test_data, fitted=mixture)
