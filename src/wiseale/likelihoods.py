"""The likelihood axis: p(x|z) given the decoder's output.

Every likelihood gives the per-sample negative log-likelihood ([M], summed over data
dimensions), the pairwise matrix used by the exact reconstruction term (001 Eq. 15), and the
mean used as the reconstruction x_hat. The optional parts are declared on
:class:`Likelihood`: ``variance(out)`` (Gaussians: sigma^2 per data dimension, 004 Fig. 3-4),
``on_epoch_end`` (a likelihood is a :class:`wiseale.hooks.Callback`: after every epoch it may
add values to the metrics row, the learned sigma^2 and the stage of 004 Alg. 1),
``batch_dependent`` and ``needs_variance_head``.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from wiseale import functional
from wiseale.choices import Stage1Variance
from wiseale.errors import positive_int
from wiseale.hooks import Callback
from wiseale.registry import Registry

SIGMA2_MIN = 1e-6  # floor of every learned or estimated variance (a numerical guard)
LOGVAR_MIN = math.log(SIGMA2_MIN)


LIKELIHOOD_CLASSES = Registry("likelihood")  # name -> class: every likelihood


class Likelihood(nn.Module, Callback):
    """The likelihood axis' interface; subclasses give ``nll``, ``pairwise_nll`` and ``mean``
    and override the optional hooks they have."""

    name: ClassVar[str]
    needs_variance_head: ClassVar[bool] = False  # the decoder has a variance branch (Eq. 11)
    batch_dependent: bool = False  # nll uses a statistic of the whole batch (Eq. 10)

    def nll(self, x: Tensor, out: Tensor) -> Tensor:
        """-log p(x | out) per sample [M], summed over the data dimensions."""
        raise NotImplementedError

    def pairwise_nll(self, x: Tensor, out: Tensor) -> Tensor:
        """[i, j] = -log p(x_j | out_i) (001 Eq. 15)."""
        raise NotImplementedError

    def mean(self, out: Tensor) -> Tensor:
        """The reconstruction x_hat."""
        raise NotImplementedError

    def variance(self, out: Tensor) -> Tensor:
        """sigma^2 per data dimension (Gaussian likelihoods only)."""
        raise ValueError(f"the {self.name} likelihood predicts no variance")



class Bernoulli(Likelihood):
    """p(x|z) = prod Bernoulli(x | sigmoid(logits)); the decoder outputs logits."""

    name = "bernoulli"

    def nll(self, x: Tensor, out: Tensor) -> Tensor:
        return functional.bernoulli_nll(x, out)

    def pairwise_nll(self, x: Tensor, out: Tensor) -> Tensor:
        return functional.pairwise_bernoulli_nll(x, out)

    def mean(self, out: Tensor) -> Tensor:
        return out.sigmoid()


class FixedGaussian(Likelihood):
    """p(x|z) = N(x | decoder(z), sigma2 I) with a fixed variance sigma2.

    sigma2 = 0.5 makes the negative log-likelihood the sum of squared errors plus a constant.
    """

    name = "gaussian"

    def __init__(self, sigma2: float = 0.5):
        super().__init__()
        if not sigma2 > 0 or not math.isfinite(sigma2):
            raise ValueError(f"the Gaussian likelihood variance must be positive, got {sigma2}")
        self.sigma2 = float(sigma2)
        self.logvar = math.log(self.sigma2)

    def nll(self, x: Tensor, out: Tensor) -> Tensor:
        return functional.gaussian_nll(x, out, self.logvar)

    def pairwise_nll(self, x: Tensor, out: Tensor) -> Tensor:
        return functional.pairwise_gaussian_nll(x, out, self.logvar)

    def mean(self, out: Tensor) -> Tensor:
        return out

    def variance(self, out: Tensor) -> Tensor:
        return torch.full_like(out, self.sigma2)


class LearnedGaussian(Likelihood):
    """p(x|z) = N(x | decoder(z), sigma^2 I) with one global sigma^2 learned by gradient on
    the ELBO together with the model (004 Eq. 9). As in 004 Alg. 1 the parameter is sigma,
    initialised at 1 and updated by Adam; sigma^2 = sigma * sigma keeps the variance positive
    with a gradient everywhere but sigma = 0, and is floored at SIGMA2_MIN. (A log sigma^2
    parameter moves the variance far more slowly under Adam: docs/deviations.md.)"""

    name = "learned"

    def __init__(self) -> None:
        super().__init__()
        self.sigma = nn.Parameter(torch.ones(()))

    def logvar(self) -> Tensor:
        return self.sigma.square().clamp_min(SIGMA2_MIN).log()

    def nll(self, x: Tensor, out: Tensor) -> Tensor:
        return functional.gaussian_nll(x, out, self.logvar())

    def pairwise_nll(self, x: Tensor, out: Tensor) -> Tensor:
        return functional.pairwise_gaussian_nll(x, out, self.logvar())

    def mean(self, out: Tensor) -> Tensor:
        return out

    def variance(self, out: Tensor) -> Tensor:
        return self.logvar().exp().detach().expand_as(out)

    def on_epoch_end(self, epoch: int, row: dict[str, Any], model: Any = None,
                     x_eval: Tensor | None = None) -> None:
        row["sigma2"] = self.logvar().exp().item()


class OptimalGaussian(Likelihood):
    """p(x|z) = N(x | decoder(z), sigma^2 I) with sigma^2 at its closed-form optimum
    (004 Eq. 10): the mean squared error per data dimension of the current batch's
    reconstructions from z ~ q(z|x), held constant in the gradient (at the optimum the
    gradient through sigma^2 is zero anyway). Evaluation uses the running average of these
    batch values (``running_sigma2``, momentum MOMENTUM), which the training steps update."""

    name = "optimal"
    MOMENTUM = 0.1
    batch_dependent = True  # sigma^2 is a statistic of the whole batch

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("running_sigma2", torch.ones(()))

    def _logvar(self, x: Tensor, out: Tensor) -> Tensor:
        """log sigma^2: the batch's (training) or the running value (evaluation)."""
        if not self.training:
            return self.running_sigma2.clamp_min(SIGMA2_MIN).log()
        return (x - out).detach().square().mean().clamp_min(SIGMA2_MIN).log()

    def nll(self, x: Tensor, out: Tensor) -> Tensor:
        """-log p(x_i | z_i); in training this also updates the running sigma^2 (once per
        step: the model scores every batch's own reconstructions exactly once)."""
        logvar = self._logvar(x, out)
        if self.training:
            with torch.no_grad():
                self.running_sigma2.lerp_(logvar.exp().to(self.running_sigma2), self.MOMENTUM)
        return functional.gaussian_nll(x, out, logvar)

    def pairwise_nll(self, x: Tensor, out: Tensor) -> Tensor:
        """[i, j] = -log p(x_j | z_i) with the same sigma^2 as :meth:`nll` (the batch's own
        reconstructions, i = j, define it)."""
        return functional.pairwise_gaussian_nll(x, out, self._logvar(x, out))

    def mean(self, out: Tensor) -> Tensor:
        return out

    def variance(self, out: Tensor) -> Tensor:
        return self.running_sigma2.clamp_min(SIGMA2_MIN).expand_as(out)

    def on_epoch_end(self, epoch: int, row: dict[str, Any], model: Any = None,
                     x_eval: Tensor | None = None) -> None:
        row["sigma2"] = self.running_sigma2.item()




class PixelGaussian(Likelihood):
    """004 Eq. 11 with the two stages of Alg. 1. The decoder returns [mean, v] concatenated
    along dim 1 (a network with a variance branch: ``needs_variance_head``).

    Stage 1 is one global variance (the v channels are ignored): learned by gradient
    (:class:`LearnedGaussian`, Alg. 1) or at its closed-form optimum
    (``stage1_variance="closed-form"``,
    :class:`OptimalGaussian`, Eq. 10). After an epoch whose training ELBO improved by less
    than ``stage1_tolerance`` nats, or after ``stage1_epochs`` epochs, its value is frozen as
    sigma^2_dataset and stage 2 uses the per-dimension, input-dependent variance
    sigma_k^2(z) = v_k(z) + sigma^2_dataset / 2: the floor keeps the predicted variance from
    collapsing (Sec. 3.4). The stage, the last ELBO and sigma^2_dataset are buffers, so a
    checkpoint resumes in the right stage.
    """

    name = "pixel"
    needs_variance_head = True

    @property
    def batch_dependent(self) -> bool:
        """Whether stage 1's variance is a batch statistic (the closed form)."""
        return self.global_variance.batch_dependent

    def __init__(self, stage1_epochs: int = 16, stage1_tolerance: float = 0.0,
                 stage1_variance: Stage1Variance = "gradient") -> None:
        super().__init__()
        self.stage1_epochs = positive_int(stage1_epochs, "stage1_epochs")
        self.tolerance = float(stage1_tolerance)
        self.global_variance = (LearnedGaussian() if stage1_variance == "gradient"
                                else OptimalGaussian())
        self.register_buffer("stage", torch.ones((), dtype=torch.long))
        self.register_buffer("last_elbo", torch.tensor(-math.inf, dtype=torch.float64))
        self.register_buffer("sigma2_dataset", torch.ones(()))
        self._stage: int | None = None  # the buffer's value, read once (no per-step sync)
        self.register_load_state_dict_post_hook(PixelGaussian._forget_stage)

    @staticmethod
    def _forget_stage(module: PixelGaussian, incompatible_keys: Any) -> None:
        module._stage = None  # a loaded checkpoint may be in another stage

    def current_stage(self) -> int:
        """The stage (1 or 2), read from its buffer only after construction or loading, so
        that no training step waits for the device."""
        if self._stage is None:
            self._stage = int(self.stage)
        return self._stage

    @staticmethod
    def split(out: Tensor) -> tuple[Tensor, Tensor]:
        """(mean, v) from the decoder's output [M, 2C, ...]."""
        half = out.shape[1] // 2
        return out[:, :half], out[:, half:]

    def floor(self) -> Tensor:
        """sigma^2_dataset / 2, the lower bound of the stage-2 variance."""
        return 0.5 * self.sigma2_dataset

    def variance(self, out: Tensor) -> Tensor:
        mean, v = self.split(out)
        if self.current_stage() == 1:
            return self.global_variance.variance(mean)
        return v + self.floor()

    def nll(self, x: Tensor, out: Tensor) -> Tensor:
        mean, v = self.split(out)
        if self.current_stage() == 1:
            return self.global_variance.nll(x, mean)
        return functional.gaussian_nll(x, mean, (v + self.floor()).log())

    def pairwise_nll(self, x: Tensor, out: Tensor) -> Tensor:
        raise ValueError("the pixel-wise likelihood supports the per-sample reconstruction "
                         "only; use -o reconstruction=sample")

    def mean(self, out: Tensor) -> Tensor:
        return self.split(out)[0]

    def on_epoch_end(self, epoch: int, row: dict[str, Any], model: Any = None,
                     x_eval: Tensor | None = None) -> None:
        """After epoch ``epoch`` (from 1): switch to stage 2 when stage 1 has converged or run
        its epochs (004 Alg. 1); logs the stage this epoch was trained in and the global
        variance."""
        trained_in = self.current_stage()
        if trained_in == 1:
            self.global_variance.on_epoch_end(epoch, row)
            elbo = row.get("elbo")
            elbo = -row["loss"] if elbo is None else elbo
            stalled = elbo - float(self.last_elbo) < self.tolerance
            self.last_elbo.fill_(elbo)
            if stalled or epoch >= self.stage1_epochs:
                self.sigma2_dataset.fill_(max(row["sigma2"], SIGMA2_MIN))
                self.stage.fill_(2)
                self._stage = 2
        else:
            row["sigma2"] = float(self.sigma2_dataset)
        row["stage"] = trained_in


for _cls in (FixedGaussian, Bernoulli, LearnedGaussian, OptimalGaussian, PixelGaussian):
    LIKELIHOOD_CLASSES.register(_cls)  # in the order the CLI lists them


def needs_variance_head(name: str | None) -> bool:
    """Whether likelihood ``name`` needs a decoder with a variance branch (``pixel``)."""
    return name in LIKELIHOOD_CLASSES and LIKELIHOOD_CLASSES[name].needs_variance_head


def build_likelihood(name: str, sigma2: float = 0.5, **options: Any) -> Likelihood:
    """A likelihood by name: ``bernoulli``, ``gaussian`` (fixed variance ``sigma2``),
    ``learned`` (004 Eq. 9), ``optimal`` (Eq. 10) or ``pixel`` (Eq. 11, Alg. 1; ``options``:
    stage1_epochs, tolerance)."""
    if name not in LIKELIHOOD_CLASSES:
        raise ValueError(f"unknown likelihood {name!r}; use one of {', '.join(LIKELIHOOD_CLASSES)}")
    if name == "gaussian":
        return FixedGaussian(sigma2)
    return LIKELIHOOD_CLASSES[name](**options)
