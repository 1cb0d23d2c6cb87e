"""The encoder-noise axis: how q(z|x) turns backbone features into a latent sample.

Each module maps features ``h`` [M, F] to a :class:`Posterior`. The backbone (``nets/``) is
separate, so any network can be combined with any noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

# Documented bounds (docs/deviations.md): sigma >= SIGMA_MIN keeps log sigma finite where the
# paper's "FC -> ReLU" head (001 App. D.1) can output exactly 0.
SIGMA_MIN = 1e-3
LOGVAR_MAX = 20.0


@dataclass
class Posterior:
    """q(z|x) for a batch: means, log-variances (None when deterministic) and a sample z."""

    mu: Tensor
    logvar: Tensor | None
    z: Tensor


class GaussianNoise(nn.Module):
    """q(z|x) = N(mu(x), diag sigma(x)^2), z = mu + sigma * eps (001 Alg. 1).

    sigma = softplus(FC(h)) + SIGMA_MIN instead of the paper's FC -> ReLU, which can be 0.
    """

    def __init__(self, feature_dim: int, latent_dim: int):
        super().__init__()
        self.mu_head = nn.Linear(feature_dim, latent_dim)
        self.sigma_head = nn.Linear(feature_dim, latent_dim)

    def forward(self, h: Tensor, sample: bool = True) -> Posterior:
        mu = self.mu_head(h)
        sigma = nn.functional.softplus(self.sigma_head(h)) + SIGMA_MIN
        logvar = (2.0 * sigma.log()).clamp(max=LOGVAR_MAX)
        z = mu + sigma * torch.randn_like(mu) if sample else mu
        return Posterior(mu, logvar, z)


class FixedNoise(nn.Module):
    """z = mu(x) + eps, eps ~ N(0, sigma_eps^2 I) with a fixed sigma_eps (003 Sec. 3)."""

    def __init__(self, feature_dim: int, latent_dim: int, sigma_eps: float):
        super().__init__()
        if sigma_eps <= 0:
            raise ValueError("sigma_eps must be positive; use the deterministic encoder for 0")
        self.mu_head = nn.Linear(feature_dim, latent_dim)
        self.sigma_eps = float(sigma_eps)

    def forward(self, h: Tensor, sample: bool = True) -> Posterior:
        mu = self.mu_head(h)
        logvar = torch.full_like(mu, 2.0 * math.log(self.sigma_eps))
        z = mu + self.sigma_eps * torch.randn_like(mu) if sample else mu
        return Posterior(mu, logvar, z)


class NoNoise(nn.Module):
    """A deterministic encoder: z = mu(x) (WAE; 003's dVCAE)."""

    def __init__(self, feature_dim: int, latent_dim: int):
        super().__init__()
        self.mu_head = nn.Linear(feature_dim, latent_dim)

    def forward(self, h: Tensor, sample: bool = True) -> Posterior:
        mu = self.mu_head(h)
        return Posterior(mu, None, mu)


NOISES = {"gaussian": GaussianNoise, "fixed": FixedNoise, "none": NoNoise}
