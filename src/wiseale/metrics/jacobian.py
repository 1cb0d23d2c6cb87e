"""Proposition 1 of 003 (Sec. 3, Eq. 5; proof in App. A.1) as a diagnostic.

For z = mu_phi(x) + eps with zero-mean eps of variance sigma_eps^2 per dimension and a decoder
mean mu_theta, to first order in the noise

    E_eps ||x - mu_theta(z)||^2 ~= ||x - mu_theta(mu_phi(x))||^2
                                  + sigma_eps^2 ||J_mu_theta(mu_phi(x))||_F^2,

so training with fixed encoder noise penalises the decoder's Jacobian (a contractive decoder).
:func:`proposition1` measures both sides on a batch; docs/metrics.md says what it shows.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from numbers import Real

import torch
from torch import Tensor, nn

from wiseale.errors import WisealeError
from wiseale.model import Autoencoder

PROPOSITION1_SEED = 1234
MC_SAMPLES = 1000
_ROWS_PER_DECODE = 65_536  # latent codes decoded per call in the Monte Carlo loop


@contextmanager
def _eval_mode(module: object) -> Iterator[None]:
    """``module`` (when it is an nn.Module) in eval mode, every submodule's own train/eval
    flag restored afterwards."""
    if not isinstance(module, nn.Module):
        yield
        return
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in flags:
            m.training = training


def decoder_jacobian_sq_norm(decoder: Callable[[Tensor], Tensor], z: Tensor) -> Tensor:
    """||J_f(z_i)||_F^2 [M] of a batched map f: [M, d_z] -> [M, ...] at each row z_i of z.

    Exact: one forward-mode product (``torch.func.jvp``) per latent dimension k gives the
    column d f(z_i) / d z_ik of every row at once; the squares are summed over the output
    dimensions and k. f must treat rows independently: an nn.Module decoder is put in eval
    mode for the call (BatchNorm then uses its running statistics) and its flags restored;
    a plain function must do the same itself. No gradient flows to z or the parameters.
    """
    if z.ndim != 2:
        raise WisealeError(f"z must be a batch of latent codes [M, d_z], got shape "
                           f"{tuple(z.shape)}")
    z = z.detach()
    total = z.new_zeros(z.shape[0])
    with _eval_mode(decoder), torch.no_grad(), warnings.catch_warnings():
        # torch's first forward-mode call scripts its jvp decompositions, which warns
        warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated", DeprecationWarning)
        for k in range(z.shape[1]):
            direction = torch.zeros_like(z)
            direction[:, k] = 1.0
            _, column = torch.func.jvp(decoder, (z,), (direction,))
            total = total + column.flatten(1).square().sum(1)
    return total


def _check_sigma(model: Autoencoder, sigma_eps: float | None) -> float:
    if sigma_eps is None:
        if model.noise.sigma_eps is None:
            raise WisealeError(f"proposition1 needs sigma_eps: the model's encoder noise "
                               f"({type(model.noise).__name__}) is not fixed noise; pass "
                               "sigma_eps")
        return model.noise.sigma_eps
    if isinstance(sigma_eps, bool) or not isinstance(sigma_eps, Real) \
            or not math.isfinite(sigma_eps) or sigma_eps < 0:
        raise WisealeError(f"sigma_eps must be a finite number >= 0, got {sigma_eps!r}")
    return float(sigma_eps)


@torch.no_grad()
def proposition1(model: Autoencoder, x: Tensor, sigma_eps: float | None = None,
                 samples: int = MC_SAMPLES,
                 generator: torch.Generator | None = None) -> dict[str, float]:
    """Both sides of 003 Eq. 5 on the batch ``x``, each a mean over its samples:

    - ``mc``: E_eps ||x - mu_theta(mu_phi(x) + sigma_eps * eps)||^2, eps ~ N(0, I), by Monte
      Carlo over ``samples`` draws, each used with its mirror -eps (antithetic pairs: the
      estimate stays unbiased and the odd-order terms, such as the cross term
      2 (x - mu_theta(mu_phi(x))) . J eps, cancel exactly); ``mc_se`` is its standard error;
    - ``deterministic``: ||x - mu_theta(mu_phi(x))||^2;
    - ``jacobian``: sigma_eps^2 ||J_mu_theta(mu_phi(x))||_F^2 (:func:`decoder_jacobian_sq_norm`);
    - ``approximation``: deterministic + jacobian, the right-hand side of Eq. 5;
    - ``sigma_eps``: the noise level used.

    mu_theta is the likelihood's mean of the decoder output (``model.likelihood.mean``: the
    output itself for a Gaussian, the sigmoid of the logits for a Bernoulli), so the Jacobian
    is that of the decoded mean. sigma_eps defaults to the model's fixed encoder noise; any
    other value (0 included) may be given. The draws come from ``generator`` (by default one
    seeded with 1234 on x's device); the global random state is not touched, and the model's
    train/eval flags are restored.
    """
    sigma = _check_sigma(model, sigma_eps)
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 2:
        raise WisealeError(f"samples must be an integer >= 2, got {samples!r}")
    if generator is None:
        generator = torch.Generator(device=x.device).manual_seed(PROPOSITION1_SEED)

    def mean(z: Tensor) -> Tensor:
        return model.likelihood.mean(model.decode(z))

    with _eval_mode(model):
        mu = model.code(x)
        x_flat = x.flatten(1)
        deterministic = (x_flat - mean(mu).flatten(1)).square().sum(1)
        jacobian = sigma ** 2 * decoder_jacobian_sq_norm(mean, mu)
        m, d_z = mu.shape
        per_pair = []  # [samples]: batch mean of the pair's mean squared error
        chunk = max(1, _ROWS_PER_DECODE // (2 * m))
        for start in range(0, samples, chunk):
            n = min(chunk, samples - start)
            eps = torch.randn((n, m, d_z), generator=generator, device=mu.device,
                              dtype=mu.dtype)
            z = (mu + sigma * torch.cat([eps, -eps])).reshape(2 * n * m, d_z)
            err = (x_flat.repeat(2 * n, 1) - mean(z).flatten(1)).square().sum(1)
            per_pair.append(err.reshape(2, n, m).mean(dim=(0, 2)))
    pairs = torch.cat(per_pair)
    det, jac = deterministic.mean().item(), jacobian.mean().item()
    return {"mc": pairs.mean().item(), "mc_se": (pairs.std() / math.sqrt(samples)).item(),
            "deterministic": det, "jacobian": jac, "approximation": det + jac,
            "sigma_eps": sigma}
