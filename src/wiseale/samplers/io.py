"""What the fitted samplers share: one registry and loader for every sampler's file, the
training latents they are fitted to, and the fit-once-per-run logic of a run directory.

Each sampler module registers its class with :func:`register_sampler` when it is imported
(``wiseale.samplers`` imports them all), so :func:`load_sampler` reads any sampler's file and
this module imports none of them but the prior: no import cycles.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch import Tensor

from wiseale.derived import WEIGHTS_DIGEST, run_weights, weights_digest
from wiseale.errors import WisealeError, positive_int
from wiseale.lock import exclusive
from wiseale.noises import Posterior
from wiseale.registry import Registry
from wiseale.samplers.prior import LatentSampler, PriorSampler
from wiseale.storage import load_tensors, save_tensors

if TYPE_CHECKING:
    from wiseale.model import Autoencoder

__all__ = ["SAMPLER_CLASSES", "latents_of", "load_sampler", "encode_codes",
           "posterior_sampler", "register_sampler", "run_sampler", "save_sampler"]

# sampler name (the "sampler" entry of a file's meta) -> its class; filled by register_sampler
SAMPLER_CLASSES = Registry("sampler")
FIT_OPTIONS = "fit_options"  # meta entry: the options a run directory's sampler was fitted with

S = TypeVar("S", bound=type)


def register_sampler(cls: S) -> S:
    """Class decorator: make ``cls`` (a :class:`LatentSampler` with a unique ``name``) savable
    with :func:`save_sampler` and loadable with :func:`load_sampler`."""
    return SAMPLER_CLASSES.register(cls)


register_sampler(PriorSampler)


def save_sampler(path: str | Path, sampler: LatentSampler,
                 fit_options: dict[str, Any] | None = None,
                 weights: str | Path | None = None) -> None:
    """Write a sampler as one safetensors file with JSON meta (and the options it was fitted
    with), atomically (never pickled). ``weights``: the model.safetensors whose latents it
    was fitted to; the file records that file's SHA-256, and :func:`load_sampler` and
    :func:`run_sampler` refuse it with other weights."""
    if getattr(sampler, "name", None) not in SAMPLER_CLASSES:
        raise WisealeError(f"cannot save a {type(sampler).__name__}; samplers are "
                           f"{', '.join(SAMPLER_CLASSES)}")
    tensors, meta = sampler.state()
    meta = {**meta, FIT_OPTIONS: fit_options or {}}
    if weights is not None:
        meta[WEIGHTS_DIGEST] = weights_digest(weights)
    save_tensors(Path(path), tensors, meta)


def load_sampler(path: str | Path, latent_dim: int | None = None,
                 weights: str | Path | None = None) -> LatentSampler:
    """The sampler saved at ``path`` (any registered kind: prior, flow, mixture); with
    ``latent_dim``, check that it fits a model of that latent size; with ``weights`` (a
    model.safetensors), that it was fitted to those weights when it records the weights it
    was fitted to (a file saved without them is taken as it is). A corrupt, truncated or
    mismatched file raises :class:`WisealeError` (one line)."""
    path = Path(path)
    tensors, meta = load_tensors(path)
    if weights is not None:
        _check_fitted_to(path, meta, Path(weights), required=False)
    return _sampler_of(path, tensors, meta, latent_dim)


def _check_fitted_to(path: Path, meta: dict[str, Any], weights: Path, required: bool) -> None:
    """Refuse, in one line, the sampler file ``path`` (its ``meta``) when it records other
    weights than ``weights``, or (``required``) none."""
    fitted_to = meta.get(WEIGHTS_DIGEST)
    if fitted_to is None and not required:
        return
    if fitted_to is None:
        raise WisealeError(f"{path} does not record the weights it was fitted to (an older "
                           f"wiseale wrote it), so it may not fit {weights}; delete it to refit")
    if fitted_to != weights_digest(weights):
        raise WisealeError(f"{path} was fitted to other weights than {weights} (the run was "
                           "trained further, or the file copied from another run); delete it "
                           "to refit")


def _check_model_is(model: Autoencoder, weights: Path) -> None:
    """Refuse, in one line, a ``model`` whose parameters and buffers are not those saved in
    ``weights``: a sampler fitted to it must not record them."""
    saved, _ = load_tensors(weights)
    state = model.state_dict()
    if saved.keys() != state.keys() or not all(
            torch.equal(value.detach().cpu(), saved[key].to(value.dtype))
            for key, value in state.items()):
        raise WisealeError(f"the model given is not the one saved in {weights} (the run was "
                           "trained further since it was loaded, or the model changed); load "
                           "the run again, or fit and save_sampler outside the run directory")


def _sampler_of(path: Path, tensors: dict[str, Tensor], meta: dict[str, Any],
                latent_dim: int | None) -> LatentSampler:
    """The sampler of a file's ``tensors`` and ``meta`` (see :func:`load_sampler`)."""
    kind = meta.get("sampler")
    if not isinstance(kind, str) or kind not in SAMPLER_CLASSES:
        raise WisealeError(f"{path} holds no wiseale sampler (sampler={kind!r}); give a file "
                           "written by save_sampler")
    try:
        sampler = SAMPLER_CLASSES[kind].from_state(tensors, meta)
    except WisealeError as exc:
        raise WisealeError(f"{path}: {exc}") from None
    if latent_dim is not None and sampler.latent_dim != latent_dim:
        raise WisealeError(f"{path} was fitted to {sampler.latent_dim}-dimensional latents but "
                           f"the model has {latent_dim}; refit the {kind} for this model")
    return sampler


@contextmanager
def _seeded_eval(model: Autoencoder, seed: int) -> Iterator[torch.device]:
    """The model in eval mode (batch norm uses its running statistics), without gradients,
    its noise drawn from a global RNG seeded with ``seed`` and restored afterwards; yields
    the model's device."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(
                devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            yield device
    finally:
        model.train(was_training)


def latents_of(model: Autoencoder, x: Tensor, batch_size: int = 1024, seed: int = 0,
               copies: int = 1, sample: bool = True) -> Tensor:
    """Samples of the aggregate posterior: z = model.encode(x, sample=True).z (003 Alg. 1).

    ``copies`` > 1 encodes x that many times with fresh noise (more samples of q(z)).
    ``sample=False`` gives the posterior means mu(x) instead (one copy). Eval mode, no
    gradients, seeded without touching the global RNG. Returns [copies * n, d] on the
    model's device.
    """
    batch_size = positive_int(batch_size, "batch_size")
    copies = positive_int(copies, "copies")
    if not sample and copies > 1:
        raise WisealeError("posterior means are the same in every copy; use copies=1 with "
                           "sample=False")
    with _seeded_eval(model, seed) as device:
        z = [model.encode(batch.to(device), sample=sample).z
             for _ in range(copies) for batch in x.split(batch_size)]
    return torch.cat(z)


def posterior_sampler(model: Autoencoder, x: Tensor) -> Callable[[Tensor, torch.Generator],
                                                                  Tensor]:
    """``draw(index, generator)``: fresh z ~ q(z|x[index]), re-encoding those images with noise
    seeded from ``generator`` (:func:`latents_of`'s eval mode, global RNG untouched); for a
    posterior with no diagonal Gaussian to add noise to (VAE + IAF), so that every flow
    mini-batch still sees new samples (003 Alg. 1)."""

    def draw(index: Tensor, generator: torch.Generator) -> Tensor:
        seed = int(torch.randint(2**62, (1,), generator=generator))
        with _seeded_eval(model, seed) as device:
            return model.encode(x[index.to(x.device)].to(device), sample=True).z

    return draw


def encode_codes(model: Autoencoder, x: Tensor, batch_size: int = 1024) -> Posterior:
    """q(z|x) of every sample of x as one posterior of its type (its codes; no sample
    drawn). Eval mode, no gradients."""
    with _seeded_eval(model, 0) as device:  # sample=False draws nothing; the seed is unused
        posts = [model.encode(batch.to(device), sample=False) for batch in x.split(batch_size)]
    return Posterior.cat(posts)


def run_sampler(run_dir: str | Path, file: str, cls: type, model: Autoencoder,
                x: Tensor | None, fit: Callable[[Tensor], LatentSampler],
                asked: dict[str, Any], fitted_with: dict[str, Any] | None = None
                ) -> LatentSampler:
    """The ``cls`` sampler of a run directory: loaded from ``run_dir/file`` when it exists and
    was fitted with the ``asked`` options (None: any; other values: a one-line error saying
    to delete it; a file of a version that did not save them is used as it is), else
    ``fit(x)`` on the training images ``x`` and saved there with ``fitted_with`` (the asked
    options with their defaults; default ``asked``), so it is fitted once per run, not at
    every use (``x`` may be None when the file exists).

    Once the run has finished, the file records the SHA-256 of its model.safetensors; a file
    that records other weights (the run trained further, a file copied from another run) or
    none (an older wiseale) is refused in one line that says to delete it, and ``model`` must
    be the saved one to fit a new file."""
    path = Path(run_dir) / file
    if path.exists():
        tensors, meta = load_tensors(path)  # read (and its digest checked) once
        weights = run_weights(run_dir)
        if weights is not None:
            _check_fitted_to(path, meta, weights, required=True)
        sampler = _sampler_of(path, tensors, meta, model.latent_dim)
        if not isinstance(sampler, cls):
            raise WisealeError(f"{path} holds a {sampler.name} sampler, not a {cls.name}; "
                               f"delete it to refit the {cls.name}")
        saved = meta.get(FIT_OPTIONS)
        differ = {key: saved[key] for key, value in asked.items()
                  if value is not None and saved and key in saved and saved[key] != value}
        if differ:
            was = ", ".join(f"{key}={value}" for key, value in differ.items())
            wanted = ", ".join(f"{key}={asked[key]}" for key in differ)
            raise WisealeError(f"{path} was fitted with {was}, not {wanted}; delete it to refit "
                               f"with {wanted}, or ask for {was}")
        return sampler
    if x is None:
        raise WisealeError(f"{run_dir} has no fitted {cls.name} yet; give the training images")
    with exclusive(Path(run_dir)):  # one writer: not while the run trains or another fits
        weights = run_weights(run_dir)  # read under the lock: training holds it
        if weights is not None:
            _check_model_is(model, weights)
        sampler = fit(x)
        save_sampler(path, sampler, asked if fitted_with is None else fitted_with, weights)
    return sampler
