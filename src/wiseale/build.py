"""From a :class:`RunConfig` to data and a model: the one place that wires the three axes
(:func:`build_model` puts a method's parts together; :func:`model_from_config` builds a run's)."""

from __future__ import annotations

import dataclasses
import inspect
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from wiseale.config import RunConfig
from wiseale.data import DATASETS, SPLITS, Dataset, load
from wiseale.errors import WisealeError
from wiseale.likelihoods import Likelihood, needs_variance_head
from wiseale.methods import (
    Method,
    canonical_name,
    choose_likelihood,
    derive_defaults,
    get_method,
    resolve_options,
)
from wiseale.model import Autoencoder
from wiseale.nets import NETWORKS, build_nets, default_net
from wiseale.nets.layout import to_channels_last
from wiseale.parts import (
    assemble,
    build_from_parts,
    check_parts,
    method_parts,
    parts_of,
    preset_parts,
)
from wiseale.regularizers import REGULARIZERS


def load_split(config: RunConfig, split: str) -> Dataset:
    """The ``split`` of the config's data, limited to ``n_train``/``n_test`` samples.

    Loaders that can make or read only N samples get the limit (``n_train``/``n_test`` for
    generated sets, ``limit`` for large files such as CelebA); the rest are sliced. With a
    ``data_seed``, loaders that take a ``seed`` (generated, shuffled and reduced sets) get it,
    and the samples of a loader that takes no limit are a random choice, in random order,
    seeded by it and the split."""
    limit = config.n_train if split == "train" else config.n_test
    options = dict(config.data_options)
    params = _loader_parameters(config.data)
    if config.data_seed is not None and "seed" in params:
        options.setdefault("seed", config.data_seed)
    counts = [name for name in (f"n_{split}", "limit") if name in params]
    if limit is not None and counts:
        options.setdefault(counts[0], limit)
    data = load(config.data, split, data_dir=config.data_dir, storage=config.storage, **options)
    if limit is not None and limit > len(data):
        raise WisealeError(f"--n-{split} {limit} is more than the {len(data)} {split} samples "
                           f"of {config.data}; lower it")
    if config.data_seed is not None and not counts:
        rng = np.random.default_rng([config.data_seed, SPLITS.index(split)])
        return data.subset(rng.permutation(len(data))[:limit])
    return data if limit is None else data.head(limit)


def _loader_parameters(name: str) -> set[str]:
    return set(inspect.signature(DATASETS[name].loader).parameters) if name in DATASETS else set()


def _all(data: Dataset, test: Callable[[torch.Tensor], torch.Tensor]) -> bool:
    """Whether ``test`` holds for every value that checks read (Dataset.check_batches: all
    of data in memory, a bounded sample of a memory-mapped file), a chunk at a time."""
    return all(bool(test(chunk).all()) for _, chunk in data.check_batches(CHUNK))


def default_likelihood(data: Dataset) -> str:
    """Bernoulli for data that is all 0 or 1, a Gaussian otherwise."""
    return "bernoulli" if _all(data, lambda x: (x == 0) | (x == 1)) else "gaussian"


def resolve(config: RunConfig, train: Dataset) -> RunConfig:
    """The config with the method's options and parts and the data-dependent defaults filled
    in. A config with its parts (a resumed run's, or given) keeps them and its options: the
    preset, which may have changed since, is not asked."""
    config.validate()
    if config.batch_size > len(train):
        raise WisealeError(f"batch-size {config.batch_size} is larger than the {len(train)} "
                           "training samples; lower --batch-size")
    if config.parts is None:
        method = get_method(config.method)
        likelihood = choose_likelihood(method, config.likelihood) or default_likelihood(train)
        options = resolve_options(method, config.options, config.latent_dim)
        _warn_if_one_stage(method.name, options, config.epochs)
        parts = preset_parts(method, options, likelihood, config.sigma2, config.latent_dim)
    else:
        parts = check_parts(config.parts)
        options = derive_defaults(config.options, config.latent_dim)
        likelihood = parts["likelihood"]["name"]
    if config.batch_size < 2 and any(REGULARIZERS[r["name"]].compares_samples
                                     for r in parts["regularizers"]):
        raise WisealeError(f"{config.method} compares samples within a batch; use --batch-size "
                           "2 or more")
    eight_bit_images = train.x.dtype in (torch.uint8, np.uint8) and train.divide_by >= 255
    if likelihood == "bernoulli" and not eight_bit_images and \
            not _all(train, lambda x: (x >= 0) & (x <= 1)):  # x / 255 of 8 bits: in [0, 1]
        raise WisealeError("the Bernoulli likelihood needs data in [0, 1]; rescale the data or "
                           "use --likelihood gaussian")
    return dataclasses.replace(
        config, method=canonical_name(config.method), options=options, likelihood=likelihood,
        net=config.net or default_net(train.sample_shape),
        sample_shape=list(train.sample_shape), parts=parts)


def _warn_if_one_stage(method: str, options: dict[str, Any], epochs: int) -> None:
    """A two-stage method (lv-vae-pixel, 004 Alg. 1) run for no more epochs than its first
    stage ends without training its second: say so."""
    stage1 = options.get("stage1_epochs")
    if stage1 is not None and epochs <= stage1 and not options.get("stage1_tolerance"):
        warnings.warn(f"{method}: --epochs {epochs} ends within stage 1 "
                      f"(stage1_epochs={stage1}), so the per-pixel variance is never trained; "
                      f"use --epochs above {stage1} or -o stage1_epochs=N below {epochs}",
                      stacklevel=3)


CHUNK = 16_384  # samples checked at a time
CUSTOM_NET = "custom"  # config.net of a run trained with your own encoder and decoder


def model_from_config(config: RunConfig, encoder: nn.Module | None = None,
                      decoder: nn.Module | None = None) -> Autoencoder:
    """A freshly initialised model for a resolved config (seeded by ``config.seed``; the
    caller's random state is left as it was); ``encoder`` and ``decoder`` are your own
    networks (:func:`own_nets`) for a config whose net is ``custom``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return _build(config, encoder, decoder)


def own_nets(config: RunConfig, encoder: nn.Module | None,
             decoder: nn.Module | None) -> tuple[nn.Module, int, nn.Module]:
    """Your encoder (x [N, *sample_shape] -> features [N, F]) and decoder (z [N, d_z] -> the
    likelihood's parameters, shaped like x), checked on a batch of two zero samples; returns
    (encoder, F, decoder)."""
    if encoder is None or decoder is None:
        raise WisealeError("this run was trained with your own encoder and decoder; load it "
                           "from Python with wiseale.load_run(run_dir, encoder=..., "
                           "decoder=...)")
    if not (isinstance(encoder, nn.Module) and isinstance(decoder, nn.Module)):
        raise WisealeError("encoder and decoder must be torch nn.Modules")
    if needs_variance_head(config.likelihood):
        raise WisealeError(f"the {config.likelihood} likelihood needs wiseale's lv-mnist or "
                           "lv-celeba network (a variance branch); use another likelihood")
    shape = tuple(config.sample_shape)
    modes = encoder.training, decoder.training
    with torch.no_grad():  # in eval mode: the check must not move batch-norm statistics
        features = encoder.eval()(torch.zeros(2, *shape))
        out = decoder.eval()(torch.zeros(2, config.latent_dim))
    encoder.train(modes[0])
    decoder.train(modes[1])
    if not (isinstance(features, torch.Tensor) and features.dim() == 2):
        raise WisealeError(f"your encoder must map [N, {', '.join(map(str, shape))}] samples to "
                           f"features [N, F]; it gave {getattr(features, 'shape', features)}")
    if not (isinstance(out, torch.Tensor) and tuple(out.shape) == (2, *shape)):
        raise WisealeError(f"your decoder must map [N, {config.latent_dim}] codes to [N, "
                           f"{', '.join(map(str, shape))}] (the data's shape); it gave "
                           f"{getattr(out, 'shape', out)}")
    return encoder, features.shape[1], decoder


def _build(config: RunConfig, own_encoder: nn.Module | None = None,
           own_decoder: nn.Module | None = None) -> Autoencoder:
    try:
        if config.net == CUSTOM_NET:
            encoder, feature_dim, decoder = own_nets(config, own_encoder, own_decoder)
        else:
            encoder, feature_dim, decoder = build_nets(
                config.net, tuple(config.sample_shape), config.latent_dim,
                variance_head=needs_variance_head(config.likelihood))
        model = build_from_parts(parts_of(config), encoder, feature_dim, decoder,
                                 config.latent_dim)
    except ValueError as exc:
        raise WisealeError(str(exc)) from None
    if config.device == "cpu" and config.net in NETWORKS and NETWORKS[config.net].channels_last:
        to_channels_last(model)  # the same weights in a faster layout
    return model


def build_model(method: Method, options: dict[str, Any], encoder: nn.Module, feature_dim: int,
                decoder: nn.Module, likelihood: Likelihood, latent_dim: int) -> Autoencoder:
    """The autoencoder of ``method`` with resolved ``options`` on the given networks."""
    return assemble(method_parts(method, options, latent_dim), encoder, feature_dim, decoder,
                    likelihood, latent_dim)
