"""The likelihood axis: p(x|z) given the decoder's output.

Every likelihood gives the per-sample negative log-likelihood ([M], summed over data
dimensions), the pairwise matrix used by the exact reconstruction term (001 Eq. 15), and the
mean used as the reconstruction x_hat.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from wiseale import functional as F


class Bernoulli(nn.Module):
    """p(x|z) = prod Bernoulli(x | sigmoid(logits)); the decoder outputs logits."""

    name = "bernoulli"

    def nll(self, x: Tensor, out: Tensor) -> Tensor:
        return F.bernoulli_nll(x, out)

    def pairwise_nll(self, x: Tensor, out: Tensor) -> Tensor:
        return F.pairwise_bernoulli_nll(x, out)

    def mean(self, out: Tensor) -> Tensor:
        return out.sigmoid()


class FixedGaussian(nn.Module):
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
        return F.gaussian_nll(x, out, self.logvar)

    def pairwise_nll(self, x: Tensor, out: Tensor) -> Tensor:
        return F.pairwise_gaussian_nll(x, out, self.logvar)

    def mean(self, out: Tensor) -> Tensor:
        return out


def build_likelihood(name: str, sigma2: float = 0.5) -> nn.Module:
    """A likelihood by name: ``bernoulli`` or ``gaussian`` (fixed variance ``sigma2``)."""
    if name == "bernoulli":
        return Bernoulli()
    if name == "gaussian":
        return FixedGaussian(sigma2)
    raise ValueError(f"unknown likelihood {name!r}; use 'gaussian' or 'bernoulli'")
