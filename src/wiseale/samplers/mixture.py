"""A Gaussian mixture fitted to the aggregate posterior after training (004 Eq. 12-13).

004 Sec. 3.5 replaces the prior at generation time with
q_hat(z) = sum_m w_m N(z; mu_m, Sigma_m) (Eq. 13), M components fitted by EM to the aggregate
posterior q(z) = 1/N sum_i q(z|x_i) (Eq. 12); 32 components for MNIST and Fashion-MNIST, 500
for CelebA (Sec. 5.5, Table 4). The fit is scikit-learn's ``GaussianMixture`` (k-means
initialisation, seeded).

Decisions:

- What EM is fitted to (:func:`run_mixture`): samples z ~ q(z|x_i) of the training images
  (``on="samples"``, the default; ``copies`` per image), not the posterior means mu(x_i).
  Samples are exact draws of Eq. 12, so EM fits q_hat to q by maximum likelihood; the means
  are draws of a narrower distribution (q without the posterior widths), and a mixture fitted
  to them under-covers q. ``on="means"`` is kept for comparison (docs/sampling.md has the
  measurement).
- Storage: weights [M], means [M, d] and the full covariance matrices [M, d, d] (``full``)
  or the per-dimension variances [M, d] (``diag``), in float64, as fitted. The Cholesky
  factors are recomputed on load (deterministic, so a reloaded mixture is exact), which is
  also the positive-definiteness check.
- ``log_prob`` is computed in float64 (triangular solves per component, log-sum-exp over
  components) and returned in z's dtype; ``sample`` computes in float64 and returns the
  default dtype (float32), drawing the component and the noise with the given generator only.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from wiseale.errors import WisealeError, positive_int
from wiseale.extras import require
from wiseale.samplers.io import latents_of, register_sampler, run_sampler
from wiseale.samplers.prior import _check_meta, _check_n

if TYPE_CHECKING:
    from wiseale.model import Autoencoder

__all__ = ["COVARIANCE_TYPES", "FIT_ON", "MIXTURE_FILE", "MixtureSampler", "fit_mixture",
           "run_mixture"]

log = logging.getLogger(__name__)  # progress of long steps (the CLI shows INFO)
COVARIANCE_TYPES = ("full", "diag")
FIT_ON = ("samples", "means")
MIXTURE_FILE = "mixture.safetensors"  # the mixture's file name inside a run directory
DEFAULT_COMPONENTS = 32  # run_mixture: 004 uses 32 for MNIST, 500 for CelebA
MIXTURE_FORMAT = 1
WEIGHT_SUM_TOL = 1e-6  # |sum w - 1| allowed in a mixture (sklearn's weights sum to 1 +- 1e-15)
SYMMETRY_TOL = 1e-9  # relative asymmetry allowed in a full covariance matrix
CHUNK_ELEMENTS = 1 << 23  # float64 elements per block of log_prob's [components, n, d] work
TENSOR_KEYS = {"weights", "means", "covariances"}


def _float64(value: Any, what: str) -> Tensor:
    if not isinstance(value, Tensor) or not value.is_floating_point():
        got = value.dtype if isinstance(value, Tensor) else type(value).__name__
        raise WisealeError(f"the mixture's {what} must be a floating-point tensor, got {got}")
    return value.detach().to("cpu", torch.float64).clone().contiguous()


def _check_shapes(weights: Tensor, means: Tensor, covariances: Tensor, covariance: str) -> None:
    if weights.ndim != 1 or weights.shape[0] < 1:
        raise WisealeError(f"the mixture's weights must be a non-empty vector [M], got "
                           f"{tuple(weights.shape)}")
    m = weights.shape[0]
    if means.ndim != 2 or means.shape[0] != m or means.shape[1] < 1:
        raise WisealeError(f"the mixture's means must be [{m}, d], got {tuple(means.shape)}")
    d = means.shape[1]
    expected = (m, d, d) if covariance == "full" else (m, d)
    if tuple(covariances.shape) != expected:
        raise WisealeError(f"the mixture's {covariance} covariances must be {list(expected)}, "
                           f"got {list(covariances.shape)}")


def _check_values(weights: Tensor, means: Tensor, covariances: Tensor) -> None:
    for what, value in (("weights", weights), ("means", means), ("covariances", covariances)):
        if not bool(value.isfinite().all()):
            raise WisealeError(f"the mixture's {what} contain NaN or infinity")
    if not bool((weights > 0).all()):
        raise WisealeError("the mixture's weights must all be positive")
    total = weights.sum().item()
    if abs(total - 1.0) > WEIGHT_SUM_TOL:
        raise WisealeError(f"the mixture's weights sum to {total:.9g}, not 1")


def _factor(covariances: Tensor, covariance: str) -> Tensor:
    """Lower Cholesky factors L [M, d, d] (Sigma = L L^T) for ``full``, standard deviations
    [M, d] for ``diag``; refuses asymmetric or non-positive-definite covariances."""
    if covariance == "diag":
        bad = (covariances <= 0).any(1).nonzero()
        if len(bad):
            raise WisealeError(f"the mixture's variances are not all positive (component "
                               f"{bad[0].item()})")
        return covariances.sqrt()
    scale = covariances.abs().amax(dim=(1, 2)).clamp_min(1e-300)
    asymmetry = (covariances - covariances.mT).abs().amax(dim=(1, 2)) / scale
    bad = (asymmetry > SYMMETRY_TOL).nonzero()
    if len(bad):
        raise WisealeError(f"the mixture's covariance of component {bad[0].item()} is not "
                           "symmetric")
    factors, info = torch.linalg.cholesky_ex(covariances)
    bad = (info != 0).nonzero()
    if len(bad) or not bool((factors.diagonal(dim1=1, dim2=2) > 0).all()):
        where = bad[0].item() if len(bad) else "?"
        raise WisealeError(f"the mixture's covariance of component {where} is not positive "
                           "definite")
    return factors


@register_sampler
class MixtureSampler:
    """q_hat(z) = sum_m w_m N(z; mu_m, Sigma_m) (004 Eq. 13), ``full`` or ``diag`` Sigma_m.

    Build one with :func:`fit_mixture` (or from its parameters, which are validated: positive
    weights summing to 1, finite values, symmetric positive-definite covariances); store it
    with :func:`~wiseale.samplers.save_sampler` / :func:`~wiseale.samplers.load_sampler`.
    ``fit_info`` (JSON-able) records how it was fitted and travels with the file.
    """

    name = "mixture"

    def __init__(self, weights: Tensor, means: Tensor, covariances: Tensor,
                 covariance: str = "full", fit_info: dict[str, Any] | None = None):
        if covariance not in COVARIANCE_TYPES:
            raise WisealeError(f"unknown covariance type {covariance!r}; use one of "
                               f"{', '.join(COVARIANCE_TYPES)}")
        if fit_info is not None and not isinstance(fit_info, dict):
            raise WisealeError(f"fit_info must be a dict, got {type(fit_info).__name__}")
        weights, means = _float64(weights, "weights"), _float64(means, "means")
        covariances = _float64(covariances, "covariances")
        _check_shapes(weights, means, covariances, covariance)
        _check_values(weights, means, covariances)
        self._factors = _factor(covariances, covariance)
        self.weights, self.means, self.covariances = weights, means, covariances
        self.covariance = covariance
        self.fit_info: dict[str, Any] = dict(fit_info or {})
        if covariance == "full":
            half_log_det = self._factors.diagonal(dim1=1, dim2=2).log().sum(1)
        else:
            half_log_det = self._factors.log().sum(1)
        # log w_m - 1/2 log det(2 pi Sigma_m): the per-component constant of log_prob
        self._log_norm = (weights.log() - half_log_det
                          - 0.5 * self.latent_dim * math.log(2 * math.pi))

    @property
    def latent_dim(self) -> int:
        return self.means.shape[1]

    @property
    def components(self) -> int:
        return self.means.shape[0]

    def _check_z(self, z: Tensor) -> Tensor:
        if not isinstance(z, Tensor) or z.ndim != 2 or z.shape[1] != self.latent_dim:
            shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
            raise WisealeError(f"latents must be a [n, {self.latent_dim}] tensor, got {shape}")
        return z.detach().to(torch.float64)

    def component_log_prob(self, z: Tensor) -> Tensor:
        """[n, M] log(w_m N(z; mu_m, Sigma_m)) in float64, on z's device."""
        z = self._check_z(z)
        device = z.device
        means, factors = self.means.to(device), self._factors.to(device)
        log_norm = self._log_norm.to(device)
        n, d = z.shape
        out = torch.empty((n, self.components), dtype=torch.float64, device=device)
        step = max(1, CHUNK_ELEMENTS // max(1, n * d))
        for start in range(0, self.components, step):
            part = slice(start, start + step)
            diff = z[None] - means[part, None]  # [c, n, d]
            if self.covariance == "full":
                white = torch.linalg.solve_triangular(factors[part], diff.mT, upper=False)
                mahalanobis = white.square().sum(1)  # [c, n]
            else:
                mahalanobis = (diff / factors[part, None]).square().sum(-1)
            out[:, part] = (log_norm[part, None] - 0.5 * mahalanobis).T
        return out

    def log_prob(self, z: Tensor) -> Tensor:
        """log q_hat(z) per row of z [n, d]: a float64 log-sum-exp over the components,
        returned in z's dtype (float64 in, float64 out)."""
        log_q = torch.logsumexp(self.component_log_prob(z), dim=1)
        return log_q.to(z.dtype) if z.is_floating_point() else log_q

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """[n, d] latents: a component m ~ Categorical(w), then mu_m + L_m eps, eps ~ N(0, I),
        both drawn with ``generator`` (never the global RNG once one is given), on the
        generator's device (CPU without one), in the default dtype (float32)."""
        n = _check_n(n)
        device = generator.device if generator is not None else torch.device("cpu")
        dtype = torch.get_default_dtype()
        if n == 0:
            return torch.empty((0, self.latent_dim), device=device, dtype=dtype)
        which = torch.multinomial(self.weights.to(device), n, replacement=True,
                                  generator=generator)
        eps = torch.randn((n, self.latent_dim), generator=generator, device=device,
                          dtype=torch.float64)
        means, factors = self.means.to(device), self._factors.to(device)
        z = torch.empty_like(eps)
        order = torch.argsort(which, stable=True)
        counts = torch.bincount(which, minlength=self.components).tolist()
        for m, rows in enumerate(order.split(counts)):
            if len(rows):
                noise = eps[rows] @ factors[m].T if self.covariance == "full" else (
                    eps[rows] * factors[m])
                z[rows] = means[m] + noise
        return z.to(dtype)

    def moments(self) -> tuple[Tensor, Tensor]:
        """(mean [d], covariance [d, d]) of the mixture, float64:
        sum_m w_m mu_m and sum_m w_m (Sigma_m + mu_m mu_m^T) - mean mean^T."""
        w = self.weights
        mean = w @ self.means
        within = self.covariances if self.covariance == "full" else torch.diag_embed(
            self.covariances)
        centred = self.means - mean
        cov = torch.einsum("m,mij->ij", w, within) + (centred.T * w) @ centred
        return mean, cov

    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        tensors = {"weights": self.weights, "means": self.means,
                   "covariances": self.covariances}
        meta = {"sampler": self.name, "sampler_format": MIXTURE_FORMAT,
                "covariance": self.covariance, "components": self.components,
                "features": self.latent_dim, "fit": self.fit_info}
        return tensors, meta

    @classmethod
    def from_state(cls, tensors: dict[str, Tensor], meta: dict[str, Any]) -> MixtureSampler:
        _check_meta(meta, cls, MIXTURE_FORMAT)
        if set(tensors) != TENSOR_KEYS:
            raise WisealeError(f"the mixture's tensors are {sorted(tensors)}, not "
                               f"{sorted(TENSOR_KEYS)}; refit the mixture")
        try:
            sampler = cls(tensors["weights"], tensors["means"], tensors["covariances"],
                          meta.get("covariance"), meta.get("fit", {}))
        except WisealeError as exc:
            raise WisealeError(f"{exc}; refit the mixture") from None
        if (meta.get("components"), meta.get("features")) != (sampler.components,
                                                              sampler.latent_dim):
            raise WisealeError(f"the mixture's metadata (components={meta.get('components')!r}"
                               f", features={meta.get('features')!r}) does not match its "
                               f"tensors ({sampler.components}, {sampler.latent_dim}); refit "
                               "the mixture")
        return sampler

    def __repr__(self) -> str:
        return (f"MixtureSampler(components={self.components}, latent_dim={self.latent_dim}, "
                f"covariance={self.covariance!r})")


def fit_mixture(latents: Tensor, components: int = 32, covariance: str = "full",
                seed: int = 0, max_iter: int = 100, n_init: int = 1,
                reg_covar: float = 1e-6) -> MixtureSampler:
    """Fit q_hat (004 Eq. 13) to samples of the aggregate posterior by EM.

    scikit-learn's ``GaussianMixture`` with k-means initialisation seeded by ``seed`` (its own
    RandomState: neither numpy's nor torch's global RNG is touched), ``reg_covar`` added to
    every covariance's diagonal, the best of ``n_init`` runs. ``latents`` [n, d] with
    n >= ``components``, finite. 004 Sec. 5.5 uses 32 components (MNIST, Fashion-MNIST) and
    500 (CelebA). Warns when EM stops at ``max_iter`` unconverged; ``fit_info`` records n,
    the iterations, convergence and the final mean log-likelihood lower bound.
    """
    what = "the Gaussian-mixture sampler (004 Eq. 13)"
    ConvergenceWarning = require("sklearn.exceptions", what).ConvergenceWarning  # noqa: N806
    GaussianMixture = require("sklearn.mixture", what).GaussianMixture  # noqa: N806

    components = positive_int(components, "the number of mixture components")
    max_iter = positive_int(max_iter, "max_iter")
    n_init = positive_int(n_init, "n_init")
    if covariance not in COVARIANCE_TYPES:
        raise WisealeError(f"unknown covariance type {covariance!r}; use one of "
                           f"{', '.join(COVARIANCE_TYPES)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise WisealeError(f"seed must be an integer in [0, 2^32), got {seed!r}")
    if not (isinstance(reg_covar, (int, float)) and reg_covar >= 0 and math.isfinite(reg_covar)):
        raise WisealeError(f"reg_covar must be a non-negative number, got {reg_covar!r}")
    if not isinstance(latents, Tensor) or latents.ndim != 2 or latents.shape[1] < 1:
        shape = tuple(latents.shape) if isinstance(latents, Tensor) else type(latents).__name__
        raise WisealeError(f"latents must be an [n, d] tensor, got {shape}")
    n = latents.shape[0]
    if n < max(components, 2):
        raise WisealeError(f"{n} latents cannot fit {components} mixture components; give at "
                           "least as many latents as components (more images or copies) or "
                           "use fewer components")
    z = latents.detach().to("cpu", torch.float64)
    if not bool(z.isfinite().all()):
        raise WisealeError("the latents contain NaN or infinity; check the trained model")
    log.info("fitting a %d-component Gaussian mixture to %d latents (EM, up to %d iterations)",
             components, n, max_iter)
    gm = GaussianMixture(components, covariance_type=covariance, reg_covar=float(reg_covar),
                         max_iter=max_iter, n_init=n_init, init_params="kmeans",
                         random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        try:
            gm.fit(z.numpy())
        except ValueError as exc:
            first = str(exc).strip().splitlines()[0]
            raise WisealeError(f"the mixture could not be fitted ({first}); raise reg_covar or "
                               "use fewer components") from None
    if not gm.converged_:
        warnings.warn(f"the mixture's EM did not converge in {max_iter} iterations; raise "
                      "max_iter", stacklevel=2)
    info = {"n": n, "seed": seed, "max_iter": max_iter, "n_init": n_init,
            "reg_covar": float(reg_covar), "n_iter": int(gm.n_iter_),
            "converged": bool(gm.converged_), "lower_bound": round(float(gm.lower_bound_), 9)}
    return MixtureSampler(torch.from_numpy(gm.weights_), torch.from_numpy(gm.means_),
                          torch.from_numpy(gm.covariances_), covariance, info)


def run_mixture(run_dir: str | Path, model: Autoencoder, x: Tensor | None,
                components: int | None = None, copies: int = 1, seed: int = 0,
                on: str = "samples", covariance: str = "full") -> MixtureSampler:
    """The mixture of a run directory: loaded from ``run_dir/mixture.safetensors``, or fitted
    to the training images ``x`` and saved there (fitted once per run; ``x`` may be None when
    the file exists; other options than the saved file's are refused in one line).
    ``components`` None: the saved mixture's, or 32 when one is fitted.

    ``on="samples"`` (default) fits EM to ``copies`` samples z ~ q(z|x_i) per image, exact
    draws of the aggregate posterior (004 Eq. 12); ``on="means"`` to the posterior means
    mu(x_i) (one per image), which leaves out the posterior widths (docs/sampling.md).
    """
    if on not in FIT_ON:
        raise WisealeError(f"on must be one of {', '.join(FIT_ON)}, got {on!r}")
    copies = positive_int(copies, "copies")
    if on == "means" and copies != 1:
        raise WisealeError("posterior means are the same in every copy; use copies=1 with "
                           "on='means'")

    asked = {"components": components, "copies": copies, "seed": seed, "on": on,
             "covariance": covariance}
    fitted_with = {**asked, "components": components or DEFAULT_COMPONENTS}

    def fit(x: Tensor) -> MixtureSampler:
        latents = latents_of(model, x, seed=seed, copies=copies, sample=on == "samples")
        sampler = fit_mixture(latents, fitted_with["components"], covariance, seed=seed)
        sampler.fit_info.update(on=on, copies=copies)
        return sampler

    return run_sampler(run_dir, MIXTURE_FILE, MixtureSampler, model, x, fit, asked, fitted_with)
