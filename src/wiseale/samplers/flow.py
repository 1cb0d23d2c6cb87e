"""A normalising flow fitted to the aggregate posterior after training (003 Eq. 8-9).

VCAE constrains only the variance of q(z), so its shape is unknown after training; 003
Sec. 4 fits a chain of flows f_1..f_m from w ~ N(0, I) to the encoded training latents
z = mu(x) + eps by maximum likelihood (Eq. 9) and samples the decoder through it. The flows
are zuko's (Table 5): ``maf`` is MAF[64, 64] x 6 with a random feature order per transform
(the "Permutation" layers of the MNIST column) and ``realnvp`` is RealNVP[256, 256, 256] x 8
with random coupling masks (the CelebA column). Orders come in pairs: a random one, then its
reverse (for coupling: a random half, then its complement), so that every feature is
transformed conditioned on the others even in 2-D, where independent random permutations
can leave one feature first in every transform.

Decisions:

- The latents are standardised per dimension before the flow (mean ``loc``, std ``scale``,
  stored with the flow); ``log_prob`` is in z-space, i.e. it includes -sum(log scale), the
  log-determinant of the standardisation. This stands in for Table 5's trailing LinearScale /
  LinearShift (fixed here instead of learned) and keeps zuko's affine slopes, bounded in
  [1e-3, 1e3] per transform, in range for latents of any scale.
- ``sample`` draws the base noise w ~ N(0, I) itself with the given ``torch.Generator`` and
  maps it through the inverse transform: zuko's own ``.sample`` uses the global RNG.
- The flow is built under its own seed (``torch.random.fork_rng``), so building or fitting
  one leaves the global RNG untouched; the permutations / masks are buffers of the state
  dict, so a reloaded flow is exact whatever seed rebuilt it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from wiseale.errors import WisealeError, positive_int
from wiseale.extras import require
from wiseale.noises import FlowPosterior, GaussianPosterior
from wiseale.samplers.io import (
    encode_codes,
    latents_of,
    posterior_sampler,
    register_sampler,
    run_sampler,
)
from wiseale.samplers.prior import _check_meta, _check_n

if TYPE_CHECKING:
    import zuko

    from wiseale.model import Autoencoder

__all__ = ["FLOW_FILE", "FLOW_KINDS", "FLOW_PRESETS", "FlowSampler", "fit_flow", "run_flow"]

FLOW_KINDS = ("maf", "realnvp")
# 003 Table 5: (number of transforms, hidden layers) per kind.
FLOW_PRESETS: dict[str, tuple[int, tuple[int, ...]]] = {
    "maf": (6, (64, 64)),               # MNIST: MAF[64, 64], 5 x {Permutation, MAF[64, 64]}
    "realnvp": (8, (256, 256, 256)),    # CelebA: RealNVP[256^3], 7 x {Permutation, RealNVP}
}
FLOW_FILE = "flow.safetensors"  # the flow's file name inside a run directory
DEFAULT_FLOW_EPOCHS = 100  # run_flow: 003 App. B
SAMPLER_FORMAT = 2  # 2: trained on fresh posterior samples in every mini-batch (003 Alg. 1)
STD_MIN = 1e-6  # a latent dimension with (near) zero spread is standardised by this instead


def _resolve(kind: str, transforms: int | None,
             hidden: Sequence[int] | None) -> tuple[int, tuple[int, ...]]:
    if kind not in FLOW_KINDS:
        raise WisealeError(f"unknown flow kind {kind!r}; use one of {', '.join(FLOW_KINDS)}")
    default_transforms, default_hidden = FLOW_PRESETS[kind]
    transforms = default_transforms if transforms is None else transforms
    hidden = default_hidden if hidden is None else hidden
    positive_int(transforms, "the number of flow transforms")
    if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence) or not hidden:
        raise WisealeError(f"hidden must be a non-empty list of layer widths, got {hidden!r}")
    return transforms, tuple(positive_int(h, "a hidden layer width") for h in hidden)


def _build_flow(kind: str, features: int, transforms: int,
                hidden: tuple[int, ...]) -> zuko.flows.Flow:
    """zuko's MAF / RealNVP with paired random orders (masks), using the global RNG.

    Even transforms draw a random feature order (coupling mask); odd transforms reverse
    (complement) the previous one. zuko's own ``randperm`` / ``randmask`` draw each
    independently, which in 2-D (003 Fig. 2d-e) can leave one feature first in every
    transform, so that its marginal stays Gaussian.
    """
    zuko = require("zuko", "a flow (the flow sampler, 003 Eq. 8-9)")
    layers = []
    previous = torch.arange(features)
    for i in range(transforms):
        if kind == "maf":
            order = torch.randperm(features) if i % 2 == 0 else features - 1 - previous
            layers.append(zuko.flows.MaskedAutoregressiveTransform(
                features, order=order, hidden_features=hidden))
        else:
            order = torch.randperm(features) % 2 == 1 if i % 2 == 0 else ~previous
            layers.append(zuko.flows.GeneralCouplingTransform(
                features, mask=order, hidden_features=hidden))
        previous = order
    base = zuko.flows.UnconditionalDistribution(
        zuko.distributions.DiagNormal, torch.zeros(features), torch.ones(features), buffer=True)
    return zuko.flows.Flow(layers, base)


@register_sampler
class FlowSampler(nn.Module):
    """q_psi(z): a zuko flow on standardised latents, u = (z - loc) / scale (003 Eq. 8).

    ``log_prob(z) = log p_flow((z - loc) / scale) - sum(log scale)``;
    ``sample`` maps w ~ N(0, I) through the inverse flow and undoes the standardisation.
    Use :func:`fit_flow` to fit one, :func:`save_sampler` / :func:`load_sampler` to store it.
    """

    name = "flow"

    def __init__(self, features: int, kind: str = "maf", transforms: int | None = None,
                 hidden: Sequence[int] | None = None, seed: int = 0):
        super().__init__()
        self.features = positive_int(features, "the number of latent features")
        self.transforms, self.hidden = _resolve(kind, transforms, hidden)
        self.kind, self.seed = kind, int(seed)
        self.history: list[float] = []  # mean training NLL per epoch (nats per latent)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)  # the random orders / masks and the initial weights
            self.flow = _build_flow(kind, self.features, self.transforms, self.hidden)
        self.register_buffer("loc", torch.zeros(self.features))
        self.register_buffer("scale", torch.ones(self.features))

    @property
    def latent_dim(self) -> int:
        return self.features

    def _check_z(self, z: Tensor) -> Tensor:
        if not isinstance(z, Tensor) or z.ndim != 2 or z.shape[1] != self.features:
            shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
            raise WisealeError(f"latents must be a [n, {self.features}] tensor, got {shape}")
        return z.to(self.loc.device, self.loc.dtype)

    def _flow_log_prob(self, u: Tensor) -> Tensor:
        return self.flow().log_prob(u)

    def log_prob(self, z: Tensor) -> Tensor:
        """log q_psi(z) per row of z [n, d], in z-space (standardisation included)."""
        z = self._check_z(z)
        return self._flow_log_prob((z - self.loc) / self.scale) - self.scale.log().sum()

    @torch.no_grad()
    def to_base(self, z: Tensor) -> Tensor:
        """w = NF^-1(z): latents mapped to the flow's N(0, I) base space (003 App. C.4)."""
        z = self._check_z(z)
        return self.flow().transform((z - self.loc) / self.scale)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """[n, d] latents z = loc + scale * f^-1(w), w ~ N(0, I) drawn with ``generator``.

        The same generator state gives the same samples (zuko's own sampler would use the
        global RNG); the result is on the flow's device.
        """
        n = _check_n(n)
        base = self.flow.base()
        device = generator.device if generator is not None else self.loc.device
        eps = torch.randn((n, self.features), generator=generator, device=device,
                          dtype=self.loc.dtype).to(self.loc.device)
        w = base.mean + base.stddev * eps
        u = self.flow().transform.inv(w)
        return self.loc + self.scale * u

    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        meta = {"sampler": self.name, "sampler_format": SAMPLER_FORMAT, "kind": self.kind,
                "features": self.features, "transforms": self.transforms,
                "hidden": list(self.hidden), "seed": self.seed,
                "history": [round(v, 6) for v in self.history],
                "zuko_version": require("zuko", "a flow").__version__}
        return dict(self.state_dict()), meta

    @classmethod
    def from_state(cls, tensors: dict[str, Tensor], meta: dict[str, Any]) -> FlowSampler:
        if meta.get("sampler") == cls.name and meta.get("sampler_format") == 1:
            raise WisealeError("this flow was fitted to one fixed posterior draw per training "
                               "image (wiseale before fresh draws per mini-batch, 003 Alg. 1); "
                               "delete its file to refit it")
        _check_meta(meta, cls, SAMPLER_FORMAT)
        try:
            sampler = cls(meta["features"], meta["kind"], meta["transforms"], meta["hidden"],
                          meta.get("seed", 0))
            sampler.history = [float(v) for v in meta.get("history", [])]
        except (KeyError, TypeError, ValueError) as exc:
            raise WisealeError(f"the flow's metadata is incomplete or invalid ({exc!r}); refit "
                               "the flow") from None
        try:
            sampler.load_state_dict(tensors, strict=True)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()
            detail = " ".join(line.strip() for line in first[:3])
            raise WisealeError(f"the flow's weights do not match its architecture ({detail}); "
                               "refit the flow") from None
        if not all(t.isfinite().all() for t in sampler.state_dict().values()
                   if t.is_floating_point()):
            raise WisealeError("the flow's weights contain NaN or infinity; refit the flow")
        if not bool((sampler.scale > 0).all()):
            raise WisealeError("the flow's standardisation scale is not positive; refit the flow")
        return sampler.eval()

    def extra_repr(self) -> str:
        return (f"kind={self.kind!r}, features={self.features}, transforms={self.transforms}, "
                f"hidden={list(self.hidden)}")


def fit_flow(latents: Tensor, kind: str = "maf", epochs: int = 100, batch_size: int = 100,
             lr: float = 1e-3, seed: int = 0, transforms: int | None = None,
             hidden: Sequence[int] | None = None, progress: bool = False,
             noise_std: Tensor | None = None,
             resample: Callable[[Tensor, torch.Generator], Tensor] | None = None
             ) -> FlowSampler:
    """Fit a flow to samples of the aggregate posterior by maximum likelihood (003 Eq. 9).

    ``latents`` [n, d] are encoded training latents (see :func:`latents_of`). With
    ``noise_std`` (the posterior's standard deviations, [n, d] or broadcastable) the latents are
    the posterior means and every mini-batch of every epoch draws fresh samples
    z = mu + noise_std * eps, eps ~ N(0, I), as 003 Alg. 1 draws new eps for each flow
    mini-batch. ``resample(index, generator)`` instead draws fresh posterior samples of the
    training images ``index`` for every mini-batch (:func:`posterior_sampler`, for VAE + IAF);
    ``latents`` are then one sample per image and set only the standardisation. With neither,
    the latents are used as they are (a deterministic encoder's codes).
    Defaults follow 003 App. B: Adam, lr 1e-3, batch 100, 100 epochs, no schedule; the
    architecture follows Table 5 per ``kind`` unless ``transforms`` / ``hidden`` are given.
    Trains on the latents' device; seeded (construction and batch order), so the same call
    gives the same flow on the same CPU setup. Returns the flow in eval mode, with the mean
    training NLL of each epoch in ``history``.
    """
    if not isinstance(latents, Tensor) or latents.ndim != 2 or latents.shape[0] < 2:
        shape = tuple(latents.shape) if isinstance(latents, Tensor) else type(latents).__name__
        raise WisealeError(f"latents must be an [n, d] tensor with n >= 2, got {shape}")
    epochs = positive_int(epochs, "epochs")
    batch_size = positive_int(batch_size, "batch_size")
    if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
        raise WisealeError(f"the learning rate must be a positive number, got {lr!r}")
    if noise_std is not None and resample is not None:
        raise WisealeError("give the flow noise_std or resample, not both")
    z = latents.detach().float()
    std = None if noise_std is None else noise_std.detach().float().to(z.device).expand_as(z)
    if not bool(z.isfinite().all()) or (std is not None and not bool(std.isfinite().all())):
        raise WisealeError("the latents contain NaN or infinity; check the trained model")
    sampler = FlowSampler(z.shape[1], kind, transforms, hidden, seed).to(z.device)
    sampler.loc.copy_(z.mean(0))
    variance = z.var(0) if std is None else z.var(0) + std.square().mean(0)  # of mu + std eps
    sampler.scale.copy_(variance.sqrt().clamp_min(STD_MIN))
    log_det = sampler.scale.log().sum().item()
    optimizer = torch.optim.Adam(sampler.flow.parameters(), lr=lr)
    order_rng = torch.Generator().manual_seed(seed)
    sampler.train()
    epoch_bar = tqdm(range(epochs), desc=f"flow ({kind})", disable=not progress, leave=False)
    with _without_distribution_checks():
        draw = _batch_drawer(z, std, resample, order_rng)
        _train(sampler, draw, len(z), optimizer, epoch_bar, batch_size, order_rng, log_det)
    return sampler.eval()


@contextmanager
def _without_distribution_checks() -> Iterator[None]:
    """Skip torch.distributions' argument checks (half of a small flow's step time on CPU);
    the latents were checked once, and a non-finite loss still stops training."""
    previous = torch.distributions.Distribution._validate_args
    torch.distributions.Distribution.set_default_validate_args(False)
    try:
        yield
    finally:
        torch.distributions.Distribution.set_default_validate_args(previous)


def _batch_drawer(z: Tensor, std: Tensor | None,
                  resample: Callable[[Tensor, torch.Generator], Tensor] | None,
                  rng: torch.Generator) -> Callable[[Tensor], Tensor]:
    """index -> the mini-batch's latents: z + std * eps with fresh eps (003 Alg. 1), fresh
    ``resample`` draws, or z itself for a deterministic encoder; noise drawn from ``rng``."""
    if resample is not None:
        return lambda index: resample(index, rng).to(z)
    if std is None:
        return lambda index: z[index]

    def noisy(index: Tensor) -> Tensor:
        batch = z[index]
        return batch + std[index] * torch.randn(batch.shape, generator=rng).to(batch)

    return noisy


def _train(sampler: FlowSampler, draw: Callable[[Tensor], Tensor], n: int,
           optimizer: torch.optim.Optimizer, epoch_bar: Iterable[int], batch_size: int,
           order_rng: torch.Generator, log_det: float) -> None:
    """Adam on the standardised latents ``draw(index)`` of each mini-batch."""
    for epoch in epoch_bar:
        order = torch.randperm(n, generator=order_rng).to(sampler.loc.device)
        total = 0.0
        for index in order.split(batch_size):
            batch = draw(index)
            loss = -sampler._flow_log_prob((batch - sampler.loc) / sampler.scale).mean()
            if not bool(loss.isfinite()):
                raise WisealeError(f"the flow's loss became {loss.item()} in epoch {epoch + 1}; "
                                   "lower the flow's learning rate")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(index)
        sampler.history.append(total / n + log_det)
        if isinstance(epoch_bar, tqdm):
            epoch_bar.set_postfix(nll=f"{sampler.history[-1]:.4f}")


def run_flow(run_dir: str | Path, model: Autoencoder, x: Tensor | None,
             epochs: int | None = None, seed: int = 0, progress: bool = False) -> FlowSampler:
    """The flow of a run directory: loaded from ``run_dir/flow.safetensors``, or fitted to the
    latents of the training images ``x`` (:func:`latents_of`, :func:`fit_flow`) and saved
    there, so it is fitted once per run, not at every use (``x`` may be None when the flow
    exists). Every mini-batch sees fresh posterior samples (003 Alg. 1): mu + sigma * eps for a
    diagonal-Gaussian or fixed-noise posterior, re-encoded samples for a flow posterior
    (VAE + IAF); a deterministic encoder gives its codes. ``epochs`` None: the saved flow's,
    or 100 (003 App. B) when one is fitted; other options than the saved flow's are refused in
    one line."""
    asked = {"epochs": epochs, "seed": seed}
    fitted_with = {**asked, "epochs": epochs or DEFAULT_FLOW_EPOCHS}
    epochs = fitted_with["epochs"]

    def fit(x: Tensor) -> FlowSampler:
        codes = encode_codes(model, x)
        if isinstance(codes, FlowPosterior):  # re-encoded in every mini-batch
            return fit_flow(latents_of(model, x, seed=seed).cpu(), epochs=epochs, seed=seed,
                            progress=progress, resample=posterior_sampler(model, x))
        std = codes.std.cpu() if isinstance(codes, GaussianPosterior) else None
        return fit_flow(codes.mu.cpu(), epochs=epochs, seed=seed, progress=progress,
                        noise_std=std)

    return run_sampler(run_dir, FLOW_FILE, FlowSampler, model, x, fit, asked, fitted_with)
