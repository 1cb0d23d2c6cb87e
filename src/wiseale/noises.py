"""The encoder-noise axis: how q(z|x) turns backbone features into a latent sample.

Each module maps features ``h`` [M, F] to a :class:`Posterior`. The backbone (``nets/``) is
separate, so any network can be combined with any noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import ClassVar

import torch
from torch import Tensor, nn

from wiseale.extras import require
from wiseale.functional import gaussian_kl, gaussian_log_prob, standard_normal_log_prob
from wiseale.registry import Registry

# Documented bounds (docs/deviations.md, docs/reliability.md): sigma >= SIGMA_MIN keeps
# log sigma finite where the paper's "FC -> ReLU" head (001 App. D.1) can output exactly 0;
# sigma <= SIGMA_MAX (log sigma^2 <= LOGVAR_MAX) keeps sigma^2, z and exp(logvar) finite
# for any features, in float32 and under bf16 autocast alike.
SIGMA_MIN = 1e-3
LOGVAR_MAX = 20.0
SIGMA_MAX = math.exp(LOGVAR_MAX / 2)  # about 22026


class Posterior:
    """q(z|x) for a batch, one type per kind: :class:`GaussianPosterior` (a diagonal Gaussian:
    Gaussian or fixed noise), :class:`PointPosterior` (a deterministic encoder) and
    :class:`FlowPosterior` (an inverse autoregressive flow). Each has the means ``mu``, a
    sample ``z`` and ``code``, the posterior's one deterministic code that every
    reconstruction, embedding and latent-space measure decodes or shows: the mean ``mu`` (the
    default), and for a flow the flow's output at eps = 0, since its decoder only ever sees
    flow outputs."""

    mu: Tensor
    z: Tensor
    code: Tensor
    has_density: ClassVar[bool] = True  # False: a deterministic encoder's point

    def __post_init__(self) -> None:
        if self.code is None:
            self.code = self.mu

    def kl_to_prior(self) -> Tensor:
        """KL(q(z|x) || N(0, I)) per sample [M]."""
        raise ValueError(f"a {self.kind} posterior has no density: the per-sample KL needs a "
                         "stochastic encoder (Gaussian or fixed noise)")

    def log_prob_of_sample(self) -> Tensor:
        """log q(z|x) of the posterior's own sample z [M]."""
        raise ValueError(f"a {self.kind} posterior has no density")

    @property
    def distribution(self) -> torch.distributions.Distribution | None:
        """q(z|x) as a torch distribution: a diagonal Gaussian's; None for the others."""
        return None

    @property
    def kind(self) -> str:
        return type(self).__name__.removesuffix("Posterior").lower()

    def tensors(self) -> dict[str, Tensor]:
        """The fields to concatenate or gather across batches (``type(post)(**tensors)``
        rebuilds one); ``code`` only where it is not ``mu``, and no field that is not there
        (a flow's ``log_q`` when no sample was drawn)."""
        return {f.name: getattr(self, f.name) for f in fields(self)  # type: ignore[arg-type]
                if getattr(self, f.name) is not None
                and not (f.name == "code" and self.code is self.mu)}

    @staticmethod
    def cat(posts: list[Posterior]) -> Posterior:
        """The posteriors of consecutive batches as one, of their type."""
        fields_ = [post.tensors() for post in posts]
        return type(posts[0])(**{name: torch.cat([t[name] for t in fields_])
                                 for name in fields_[0]})


@dataclass
class GaussianPosterior(Posterior):
    """N(mu, diag exp(logvar)) per sample."""

    mu: Tensor
    logvar: Tensor
    z: Tensor
    code: Tensor = None  # type: ignore[assignment]  # set to mu when not given

    def kl_to_prior(self) -> Tensor:
        """In closed form (functional.gaussian_kl)."""
        return gaussian_kl(self.mu, self.logvar)

    def log_prob_of_sample(self) -> Tensor:
        return gaussian_log_prob(self.z, self.mu, self.logvar)

    @property
    def distribution(self) -> torch.distributions.Independent:
        return torch.distributions.Independent(torch.distributions.Normal(self.mu, self.std), 1)

    @property
    def std(self) -> Tensor:
        """sigma = exp(logvar / 2) [M, d]."""
        return torch.exp(0.5 * self.logvar)


@dataclass
class PointPosterior(Posterior):
    """A deterministic encoder's point: z = mu, no density."""

    mu: Tensor
    z: Tensor
    code: Tensor = None  # type: ignore[assignment]  # set to mu when not given
    has_density: ClassVar[bool] = False


@dataclass
class FlowPosterior(Posterior):
    """A flow's sample z with ``log_q`` = log q(z|x) [M] (None for the code alone, when no
    sample was drawn); its KL to the prior is the one-sample estimate log q(z|x) - log p(z)."""

    mu: Tensor
    z: Tensor
    log_q: Tensor | None = None
    code: Tensor = None  # type: ignore[assignment]  # set to mu when not given

    def kl_to_prior(self) -> Tensor:
        return self.log_prob_of_sample() - standard_normal_log_prob(self.z)

    def log_prob_of_sample(self) -> Tensor:
        if self.log_q is None:
            raise ValueError("this flow posterior holds its code alone, no sample and no "
                             "log q; encode with sample=True")
        return self.log_q


NOISES = Registry("noise")  # name -> class: every encoder noise


class Noise(nn.Module):
    """The encoder-noise axis' interface: ``forward(h, sample)`` maps encoder features to a
    :class:`Posterior`. ``sigma_eps`` is the fixed noise's standard deviation (003 Sec. 3),
    None for any other noise."""

    name: ClassVar[str]  # its name in NOISES (RunConfig parts, presets)
    sigma_eps: float | None = None

    def forward(self, h: Tensor, sample: bool = True) -> Posterior:
        raise NotImplementedError


@NOISES.register
class GaussianNoise(Noise):
    """q(z|x) = N(mu(x), diag sigma(x)^2), z = mu + sigma * eps (001 Alg. 1).

    sigma = softplus(FC(h)) + SIGMA_MIN instead of the paper's FC -> ReLU, which can be 0,
    clamped at SIGMA_MAX; the sample and log-variance use the same clamped sigma.
    """

    name = "gaussian"

    def __init__(self, feature_dim: int, latent_dim: int):
        super().__init__()
        self.mu_head = nn.Linear(feature_dim, latent_dim)
        self.sigma_head = nn.Linear(feature_dim, latent_dim)

    def forward(self, h: Tensor, sample: bool = True) -> Posterior:
        mu = self.mu_head(h)
        sigma = (nn.functional.softplus(self.sigma_head(h)) + SIGMA_MIN).clamp(max=SIGMA_MAX)
        logvar = 2.0 * sigma.log()
        z = mu + sigma * torch.randn_like(mu) if sample else mu
        return GaussianPosterior(mu, logvar, z)


@NOISES.register
class FixedNoise(Noise):
    """z = mu(x) + eps, eps ~ N(0, sigma_eps^2 I) with a fixed sigma_eps (003 Sec. 3)."""

    name = "fixed"

    def __init__(self, feature_dim: int, latent_dim: int, sigma_eps: float):
        super().__init__()
        if sigma_eps <= 0:
            raise ValueError("sigma_eps must be positive; the deterministic variant is its own "
                             "method (dvcae, wae)")
        self.mu_head = nn.Linear(feature_dim, latent_dim)
        self.sigma_eps = float(sigma_eps)

    def forward(self, h: Tensor, sample: bool = True) -> Posterior:
        mu = self.mu_head(h)
        logvar = torch.full_like(mu, 2.0 * math.log(self.sigma_eps))
        z = mu + self.sigma_eps * torch.randn_like(mu) if sample else mu
        return GaussianPosterior(mu, logvar, z)


@NOISES.register
class NoNoise(Noise):
    """A deterministic encoder: z = mu(x) (WAE; 003's dVCAE)."""

    name = "none"

    def __init__(self, feature_dim: int, latent_dim: int):
        super().__init__()
        self.mu_head = nn.Linear(feature_dim, latent_dim)

    def forward(self, h: Tensor, sample: bool = True) -> Posterior:
        mu = self.mu_head(h)
        return PointPosterior(mu, mu)


@NOISES.register
class IAFNoise(Noise):
    """An inverse autoregressive flow posterior (Kingma et al. 2016; the VAE + IAF baseline of
    003 Table 2): z_0 = mu + sigma * eps, then ``steps`` masked autoregressive affine
    transforms conditioned on a context vector h(x), with reversed orders in turn.

    log q(z_T|x) = log N(z_0; mu, sigma^2) - sum_t log |det dz_t / dz_{t-1}|; ``mu`` is z_0's
    mean and the posterior's ``code`` is the flow applied to it (eps = 0). The context vector
    has length d_z: 003 App. B, "another vector of z_dim length ... provided as an additional
    input to the normalising flows".
    """

    name = "iaf"

    def __init__(self, feature_dim: int, latent_dim: int, steps: int = 2, hidden: int = 64):
        super().__init__()
        transform = require("zuko.flows.autoregressive", "vae-iaf's inverse autoregressive "
                            "flow posterior").MaskedAutoregressiveTransform

        self.base = GaussianNoise(feature_dim, latent_dim)
        context_dim = latent_dim
        self.context_head = nn.Linear(feature_dim, context_dim)
        order = torch.arange(latent_dim)
        self.steps = nn.ModuleList(
            transform(latent_dim, context_dim, hidden_features=[hidden] * 2,
                      order=order if t % 2 == 0 else order.flip(0))
            for t in range(steps))

    @property
    def mu_head(self) -> nn.Linear:
        return self.base.mu_head

    def _flow(self, context: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        """z_T and sum_t log |det dz_t / dz_{t-1}| for z_0 = ``z``."""
        ladj_sum = z.new_zeros(z.shape[0])
        for step in self.steps:
            z, ladj = step(context).call_and_ladj(z)
            ladj_sum = ladj_sum + ladj
        return z, ladj_sum

    def forward(self, h: Tensor, sample: bool = True) -> Posterior:
        base = self.base(h, sample=sample)
        context = self.context_head(h)
        if not sample:
            code = self._flow(context, base.mu)[0]
            return FlowPosterior(base.mu, code, code=code)
        with torch.no_grad():  # no loss uses a sample's code: keep it off the graph
            code = self._flow(context, base.mu)[0]
        log_q = gaussian_log_prob(base.z, base.mu, base.logvar)
        z, ladj = self._flow(context, base.z)
        return FlowPosterior(base.mu, z, log_q - ladj, code)


