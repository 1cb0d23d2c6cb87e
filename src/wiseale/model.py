"""Autoencoder = backbone encoder + encoder noise + decoder + likelihood + regularisers."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from wiseale.choices import Reconstruction
from wiseale.hooks import Callback
from wiseale.noises import Noise, Posterior
from wiseale.schema import checked

if TYPE_CHECKING:
    from wiseale.likelihoods import Likelihood
    from wiseale.regularizers import Regularizer
    from wiseale.samplers import LatentSampler

LOW_PRECISION = (torch.bfloat16, torch.float16)


def full_precision(t: Tensor) -> Tensor:
    """t in float32 if autocast made it bfloat16 / float16, else unchanged (float64 stays)."""
    return t.float() if t.dtype in LOW_PRECISION else t


def full_precision_region(device_type: str) -> contextlib.AbstractContextManager:
    """Autocast turned off for the block where it is on (bf16 runs), else no context at all:
    constructing ``torch.autocast`` takes about 13 us (cProfile), twice in every step."""
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


@dataclass
class LossOutput:
    """The loss to minimise and its named parts (detached, batch means) for logging."""

    loss: Tensor
    parts: dict[str, Tensor]


@checked
class Autoencoder(nn.Module):
    """One model class for every method; the method is the choice of the parts.

    ``reconstruction`` picks the reconstruction term of 001 Sec. 3.3.1:
    ``sample`` is Eq. 17 (each z_i explains its own x_i, as in AEVB); ``exact`` is Eq. 15
    on the mini-batch (each z_i is scored against every x_j of the batch, mean over j);
    ``mixture`` is Eq. 16 (log of the mean likelihood over j). The last two cost one
    M x M x D matrix product per step.
    """

    def __init__(self, encoder: nn.Module, noise: Noise, decoder: nn.Module,
                 likelihood: Likelihood, regularizers: list[Regularizer],
                 reconstruction: Reconstruction = "sample"):
        super().__init__()
        self.encoder, self.noise, self.decoder = encoder, noise, decoder
        self.likelihood = likelihood
        self.regularizers = nn.ModuleList(regularizers)
        self.reconstruction = reconstruction

    def encode(self, x: Tensor, sample: bool = True) -> Posterior:
        """q(z|x). Under bf16 autocast the backbone runs in bf16 and the posterior's heads in
        float32, so the latent regularisers get float32 posteriors."""
        h = self.encoder(x)
        with full_precision_region(x.device.type):
            return self.noise(full_precision(h), sample=sample)

    def decode(self, z: Tensor) -> Tensor:
        """The likelihood's parameters (logits or means) for latent codes z."""
        return self.decoder(z)

    @property
    def latent_dim(self) -> int:
        return self.noise.mu_head.out_features

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None,
               sampler: LatentSampler | None = None) -> Tensor:
        """n samples x = E[p(x|z)], z ~ N(0, I), or z from ``sampler`` (e.g. a flow fitted to
        the aggregate posterior, 003 Eq. 8)."""
        device = next(self.parameters()).device
        if sampler is None:
            z = torch.randn((n, self.latent_dim), generator=generator, device=device)
        else:
            z = sampler.sample(n, generator).to(device)
        return self.likelihood.mean(self.decode(z))

    @torch.no_grad()
    def predicted_variance(self, z: Tensor) -> Tensor:
        """The likelihood's sigma^2 per data dimension at latent codes z (Gaussian
        likelihoods; 004 Fig. 3-4's uncertainty maps)."""
        return self.likelihood.variance(self.decode(z))

    def hooks(self) -> list[Callback]:
        """The parts that take part in the loop through the callback hooks (the likelihood;
        a regulariser that is a Callback), called before a user's callbacks."""
        return [part for part in (self.likelihood, *self.regularizers)
                if isinstance(part, Callback)]

    def code(self, x: Tensor) -> Tensor:
        """The posterior's deterministic code of x (``Posterior.code``: the mean, or for a flow
        posterior the flow at eps = 0): what reconstructions and latent figures use."""
        return self.encode(x, sample=False).code

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """x_hat decoded from the posterior's code (:meth:`code`)."""
        return self.likelihood.mean(self.decode(self.code(x)))

    def _reconstruction_term(self, x: Tensor, out: Tensor, own_nll: Tensor) -> Tensor:
        if self.reconstruction == "sample":
            return own_nll.mean()
        pairwise = self.likelihood.pairwise_nll(x, out)  # [i, j] = -log p(x_j | z_i)
        if self.reconstruction == "exact":
            return pairwise.mean()
        m = x.shape[0]
        return -(torch.logsumexp(-pairwise, dim=1) - math.log(m)).mean()

    def forward(self, x: Tensor,
                gather: Callable[[Posterior], Posterior] | None = None) -> LossOutput:
        """The loss of batch x. ``gather`` maps this batch's posterior to the one the
        regularisers see (the global batch of several processes: wiseale.training.distributed)."""
        post = self.encode(x)
        out = full_precision(self.decode(post.z))  # the likelihood in float32 under autocast
        with full_precision_region(x.device.type):
            own_nll = self.likelihood.nll(x, out)
            loss = self._reconstruction_term(x, out, own_nll)
            penalty, reg_parts = self.regularize(post if gather is None else gather(post))
        parts = {"recon": loss.detach(), "nll": own_nll.detach().mean()}
        loss = loss + penalty
        parts.update(reg_parts)
        parts.update(self.diagnostics(x, out, post, parts))
        parts["loss"] = loss.detach()
        return LossOutput(loss, parts)

    def regularize(self, post: Posterior) -> tuple[Tensor, dict[str, Tensor]]:
        """The weighted sum of the latent regularisers on ``post`` (in the loss's units) and
        each one's raw value, detached, for logging under its ``logged_as``."""
        total, parts = None, {}
        for reg in self.regularizers:
            value, contribution = reg(post)
            total = contribution if total is None else total + contribution
            parts[reg.logged_as] = value.detach()
        return (post.mu.new_zeros(()) if total is None else total), parts

    @torch.no_grad()
    def diagnostics(self, x: Tensor, out: Tensor, post: Posterior,
                    parts: dict[str, Tensor]) -> dict[str, Tensor]:
        """Logged, not trained: the squared error of the decoded samples
        (``sample_recon_error``; evaluation's ``recon_error`` decodes the code), and where the
        posterior has a density its KL to the prior (``kl_prior``, unless the prior-KL
        regulariser logged it) and the ELBO (batch means)."""
        found = {"sample_recon_error":
                 (x - self.likelihood.mean(out)).square().flatten(1).sum(1).mean()}
        if post.has_density:
            kl = parts["kl_prior"] if "kl_prior" in parts else post.kl_to_prior().mean()
            found["kl_prior"] = kl
            found["elbo"] = -(parts["nll"] + kl)
        return found

    def own_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimisers the parts bring for parameters the loss does not train (the TC
        discriminator's; Regularizer.own_optimizers), by name."""
        return {name: optimizer for reg in self.regularizers
                for name, optimizer in reg.own_optimizers().items()}
