"""The latent-regulariser axis: weighted terms on the posterior of a batch.

Each regulariser returns its raw value (logged under ``logged_as``: its ``name``, but
``kl_prior`` for the prior KL) and its contribution to the
loss, in the units of the loss: per-sample terms averaged over the batch (DESIGN.md). A
subclass of :class:`Regularizer` with a ``name`` is registered in ``REGULARIZERS`` by being
defined; a method preset then names it by that name, and its constructor's signature is its
schema: the method options of the same name set its arguments (``option_names`` gives the
paper's name of an argument where it differs, such as ``lambda``, a Python keyword).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor, nn

from wiseale import functional
from wiseale.choices import DIP_LAMBDA_D_FACTOR, AggregateScaling, DIPVariant, MMDKernel, MMDScales
from wiseale.hooks import Callback
from wiseale.noises import GaussianPosterior, Posterior
from wiseale.optim import adam
from wiseale.pairwise import run_kernel
from wiseale.registry import Registry

if TYPE_CHECKING:
    from wiseale.training.run import Run


def _need_variance(post: Posterior, what: str) -> Tensor:
    if not isinstance(post, GaussianPosterior):
        raise ValueError(f"{what} needs a stochastic encoder (Gaussian or fixed noise)")
    return post.logvar


class Regularizer(nn.Module):
    """The regulariser axis' interface: ``forward(post)`` returns (value, weight * value);
    the optional parts are declared here."""

    name: ClassVar[str]
    option_names: ClassVar[dict[str, str]] = {}  # constructor argument -> method option
    compares_samples: ClassVar[bool] = False  # a batch statistic: needs two or more samples
    needs_latent_dim: ClassVar[bool] = False  # the constructor takes latent_dim=d_z

    @property
    def logged_as(self) -> str:
        """The key of its raw value in the loss parts and metrics.jsonl (its name)."""
        return self.name

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            REGULARIZERS.register(cls)

    def forward(self, post: Posterior) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def own_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimisers of parameters that the loss does not train (a discriminator's), by
        the name the checkpoint saves them under; the part steps them from a hook
        (wiseale.hooks.Callback), and the model's optimiser leaves those parameters alone."""
        return {}


REGULARIZERS = Registry("regularizer")  # name -> class, filled by subclassing


class PriorKL(Regularizer):
    """beta * mean_i KL(q(z|x_i) || N(0, I)): AEVB (001 Eq. 26) and beta-VAE."""

    name = "kl"
    option_names = {"weight": "beta"}

    def __init__(self, weight: float = 1.0):
        super().__init__()
        self.weight = float(weight)

    @property
    def logged_as(self) -> str:
        """``kl_prior``: the number evaluate and 001 Fig. 6 call so, logged once."""
        return "kl_prior"

    def forward(self, post: Posterior) -> tuple[Tensor, Tensor]:
        value = post.kl_to_prior().mean()  # closed form, or Monte Carlo for a flow
        return value, value if self.weight == 1.0 else self.weight * value  # the same bits


class AggregateKL(Regularizer, Callback):
    """The WiSE-ALE prior constraint: the Eq. 21 bound of KL(q(z|batch) || p(z)).

    ``scaling="batch"`` follows Eq. 27 exactly: the bound is subtracted once per mini-batch
    while the reconstruction is summed over its M samples, so in batch-averaged units it
    contributes ``weight * KL / M``. ``scaling="per-sample"`` charges it to every sample as
    AEVB charges its KL (``weight * KL``). docs/objective.md compares the two.
    ``pairwise_kernel`` (pairwise.KERNELS) is chosen by :meth:`setup` in training.
    """

    name = "aggregate_kl"
    pairwise_kernel: str = "auto"

    def __init__(self, weight: float = 1.0, scaling: AggregateScaling = "batch"):
        super().__init__()
        self.weight, self.scaling = float(weight), scaling

    def setup(self, run: Run) -> None:
        """The kernel of the run's steps, at batch M = batch size x processes: compiled where
        the compile pays over the run's steps and works here (pairwise.run_kernel), else
        eager; on resume the kernel the run started with (Run.keep)."""
        m = run.config.batch_size * run.world.size
        self.pairwise_kernel = run.keep("train", lambda: run_kernel(
            m, run.config.latent_dim, run.steps, run.device))

    def forward(self, post: Posterior) -> tuple[Tensor, Tensor]:
        logvar = _need_variance(post, "the aggregate KL")
        value = functional.aggregate_kl_upper_bound(post.mu, logvar, kernel=self.pairwise_kernel)
        scale = 1.0 / post.mu.shape[0] if self.scaling == "batch" else 1.0
        return value, self.weight * scale * value


class PriorMMD(Regularizer):
    """lambda * MMD^2(q(z), N(0, I)) on the batch's samples z (WAE-MMD, 003 Eq. 3).

    ``scales`` names the kernel set (functional.MMD_SCALE_SETS): ``single``, 003 App. B's
    one C = 2 d_z sigma_z^2; ``multi``, Tolstikhin et al.'s seven scales (about 4-7x the
    single-C value at batch 100, docs/deviations.md). ``multi`` is the default of a config
    saved before the option existed.
    """

    name = "mmd"
    option_names = {"weight": "lambda"}
    compares_samples = True

    def __init__(self, weight: float = 10.0, kernel: MMDKernel = "imq",
                 scales: MMDScales = "multi"):
        super().__init__()
        self.weight, self.kernel, self.scales = float(weight), kernel, scales

    def forward(self, post: Posterior) -> tuple[Tensor, Tensor]:
        value = functional.mmd(post.z, torch.randn_like(post.z), kernel=self.kernel,
                      scales=functional.MMD_SCALE_SETS[self.scales])
        return value, self.weight * value


class VariancePenalty(Regularizer):
    """lambda * |total variance of the batch's z - v|: the VCAE constraint on the aggregate
    posterior's total variance (003 Eq. 6-7, computed per batch with the unbiased estimate,
    functional.total_variance); v = d_z by default (003 Sec. 4)."""

    name = "variance"
    option_names = {"weight": "lambda", "target": "v"}
    compares_samples = True

    def __init__(self, weight: float = 1.0, target: float | None = None):
        super().__init__()
        self.weight, self.target = float(weight), target

    def forward(self, post: Posterior) -> tuple[Tensor, Tensor]:
        target = post.z.shape[1] if self.target is None else self.target
        value = functional.variance_penalty(post.z, float(target))
        return value, self.weight * value


def permute_dims(z: Tensor) -> Tensor:
    """Shuffle every latent dimension independently across the batch: samples of the product
    of the marginals prod_j q(z_j) (Kim & Mnih 2018, Alg. 1)."""
    order = torch.rand(z.shape, device=z.device).argsort(dim=0)
    return z.gather(0, order)


ADVERSARY_LR, ADVERSARY_BETAS = 1e-4, (0.5, 0.9)  # the FactorVAE discriminator (Kim & Mnih)


class TotalCorrelation(Regularizer, Callback):
    """gamma * TC(z), TC estimated by a discriminator between q(z) and prod_j q(z_j)
    (Kim & Mnih 2018: 6 fully connected layers of 1000 units, LeakyReLU 0.2, two logits;
    003 Sec. 4 adds it to VCAE, Sec. 6.4 and App. B.5 to VCAE and cWAE with gamma = 7).

    TC(z) ~= E_q(z)[log D(z) / (1 - D(z))] = mean(logit_0 - logit_1). The discriminator has
    its own Adam and is trained by :meth:`adversary_loss` on the step's detached z after the
    autoencoder's step (:meth:`on_step_end`), so its update never reaches the encoder.
    """

    name = "tc"
    option_names = {"weight": "gamma"}
    needs_latent_dim = True

    def __init__(self, weight: float = 7.0, latent_dim: int = 2, width: int = 1000):
        super().__init__()
        self.weight = float(weight)
        layers: list[nn.Module] = []
        for index in range(6):
            layers += [nn.Linear(latent_dim if index == 0 else width, width),
                       nn.LeakyReLU(0.2)]
        self.discriminator = nn.Sequential(*layers, nn.Linear(width, 2))
        self._optimizer: torch.optim.Optimizer | None = None
        self._step_z: Tensor | None = None

    def forward(self, post: Posterior) -> tuple[Tensor, Tensor]:
        if torch.is_grad_enabled():  # a training step's batch: the discriminator's next one
            self._step_z = post.z.detach()
        logits = self.discriminator(post.z)
        value = (logits[:, 0] - logits[:, 1]).mean()
        return value, self.weight * value

    def own_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        if self._optimizer is None:
            self._optimizer = adam(self.discriminator.parameters(), lr=ADVERSARY_LR,
                                   betas=ADVERSARY_BETAS)
        return {"adversary": self._optimizer}

    def on_step_end(self, step: int, parts: dict[str, Tensor]) -> None:
        """One Adam step of the discriminator on the detached z of the step that just updated
        the autoencoder (Kim & Mnih 2018, Alg. 2); its loss is logged as ``adversary_loss``."""
        optimizer = self.own_optimizers()["adversary"]
        optimizer.zero_grad(set_to_none=True)
        loss = self.adversary_loss(self._step_z)
        loss.backward()
        optimizer.step()
        parts["adversary_loss"] = loss.detach()

    def adversary_loss(self, z: Tensor) -> Tensor:
        """Cross-entropy of telling z (class 0) from permute_dims(z) (class 1), on detached z."""
        z = z.detach()
        logits = self.discriminator(torch.cat([z, permute_dims(z)]))
        labels = torch.cat([torch.zeros(len(z)), torch.ones(len(z))]).long().to(z.device)
        return nn.functional.cross_entropy(logits, labels)


class DIPPenalty(Regularizer):
    """The DIP-VAE term (Kumar et al. 2018): the batch covariance of q(z) pushed to I
    (functional.dip_covariance_penalty). ``lambda_d`` None follows Kumar et al.: 10 lambda_od
    for DIP-VAE-I, lambda_od for DIP-VAE-II (choices.DIP_LAMBDA_D_FACTOR)."""

    name = "dip"

    def __init__(self, lambda_od: float = 10.0, lambda_d: float | None = None,
                 variant: DIPVariant = "i"):
        super().__init__()
        if lambda_d is None:
            lambda_d = DIP_LAMBDA_D_FACTOR[variant] * lambda_od
        self.lambda_od, self.lambda_d, self.variant = float(lambda_od), float(lambda_d), variant
        self.weight = 1.0  # the lambdas weigh the penalty's parts inside its value

    def forward(self, post: Posterior) -> tuple[Tensor, Tensor]:
        value = functional.dip_covariance_penalty(post.mu, _need_variance(post, "DIP-VAE"),
                                         self.lambda_od, self.lambda_d, self.variant)
        return value, self.weight * value

