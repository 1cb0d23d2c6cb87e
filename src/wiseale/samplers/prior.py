"""Latent samplers: where the decoder's z come from when a model generates.

:class:`PriorSampler` draws from the prior N(0, I) the method regularised towards;
:class:`~wiseale.samplers.flow.FlowSampler` draws from a normalising flow fitted to the
aggregate posterior after training (003 Eq. 8-9) and
:class:`~wiseale.samplers.mixture.MixtureSampler` from a Gaussian mixture fitted to it (004
Eq. 13). All follow :class:`LatentSampler`, so the CLI and the experiments can save, load and
use any of them through one interface (:mod:`wiseale.samplers.io`).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from wiseale.errors import WisealeError, positive_int
from wiseale.functional import standard_normal_log_prob

__all__ = ["LatentSampler", "PriorSampler"]


@runtime_checkable
class LatentSampler(Protocol):
    """A distribution over latent codes z in R^latent_dim that can be sampled and saved.

    ``state()`` gives (tensors, JSON-able meta) for :func:`wiseale.storage.save_tensors`;
    ``from_state`` rebuilds the sampler from them (nothing is pickled).
    """

    name: str

    @property
    def latent_dim(self) -> int: ...

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor: ...

    def log_prob(self, z: Tensor) -> Tensor: ...

    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]: ...

    @classmethod
    def from_state(cls, tensors: dict[str, Tensor], meta: dict[str, Any]) -> LatentSampler: ...


def _check_n(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise WisealeError(f"the number of samples must be a non-negative integer, got {n!r}")
    return n


def _check_meta(meta: dict[str, Any], cls: type, file_format: int | None = None) -> None:
    """Refuse a file's meta written for another sampler, or in another ``sampler_format``."""
    if meta.get("sampler") != cls.name:
        raise WisealeError(f"this file holds a {meta.get('sampler')!r} sampler, not a "
                           f"{cls.name}; load it with wiseale.samplers.load_sampler")
    if file_format is not None and meta.get("sampler_format") != file_format:
        raise WisealeError(f"{cls.name} file format {meta.get('sampler_format')!r} is not the "
                           f"{file_format} this wiseale reads; refit the {cls.name}")


class PriorSampler:
    """z ~ N(0, I_d): the fixed prior P_Z (what ``Autoencoder.sample`` draws from)."""

    name = "prior"

    def __init__(self, latent_dim: int):
        self._latent_dim = positive_int(latent_dim, "latent_dim")

    @property
    def latent_dim(self) -> int:
        return self._latent_dim

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """[n, d] standard normal draws, on the generator's device (CPU without one)."""
        device = generator.device if generator is not None else torch.device("cpu")
        return torch.randn((_check_n(n), self._latent_dim), generator=generator, device=device)

    def log_prob(self, z: Tensor) -> Tensor:
        """log N(z; 0, I) per row of z [n, d]."""
        return standard_normal_log_prob(z)

    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        return {}, {"sampler": self.name, "latent_dim": self._latent_dim}

    @classmethod
    def from_state(cls, tensors: dict[str, Tensor], meta: dict[str, Any]) -> PriorSampler:
        _check_meta(meta, cls)
        if tensors:
            raise WisealeError(f"a prior sampler holds no tensors, this file has {sorted(tensors)}")
        return cls(meta.get("latent_dim"))

    def __repr__(self) -> str:
        return f"PriorSampler(latent_dim={self._latent_dim})"
