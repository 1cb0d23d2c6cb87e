"""A model's parts as data: its encoder noise, likelihood and regularisers, each a name and the
arguments of its constructor, and the reconstruction mode (docs/methods.md).

A method preset (:mod:`wiseale.methods`) produces them once, when a run is resolved
(:func:`preset_parts`); config.json and the checkpoint save them (``RunConfig.parts``), and
loading, evaluating and resuming build from them (:func:`assemble`), so that editing a preset
never changes how a saved run reloads. A config saved before runs recorded their parts is
converted once, from its method and options (:func:`parts_of`).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from wiseale.choices import RECONSTRUCTIONS
from wiseale.config import RunConfig
from wiseale.errors import WisealeError
from wiseale.likelihoods import LIKELIHOOD_CLASSES, Likelihood
from wiseale.methods import Method, arguments_of, get_method
from wiseale.model import Autoencoder
from wiseale.noises import NOISES
from wiseale.registry import Registry
from wiseale.regularizers import REGULARIZERS

__all__ = ["assemble", "build_from_parts", "check_parts", "method_parts", "parts_of",
           "preset_parts"]


def method_parts(method: Method, options: dict[str, Any], latent_dim: int) -> dict[str, Any]:
    """The noise, regularisers and reconstruction mode ``method`` makes with resolved
    ``options``: {"noise": {name, args}, "regularizers": [{name, args}, ...],
    "reconstruction"}."""
    regularizers = []
    for name in method.terms:
        cls = REGULARIZERS[name]
        # An option a config saved before it existed lacks takes the class default, which
        # is what that run trained with (PriorMMD: scales=multi).
        args = arguments_of(cls, options, cls.option_names)
        if cls.needs_latent_dim:
            args["latent_dim"] = latent_dim
        regularizers.append({"name": name, "args": args})
    return {"noise": {"name": method.noise,
                      "args": arguments_of(NOISES[method.noise], options)},
            "regularizers": regularizers,
            "reconstruction": arguments_of(Autoencoder, options).get("reconstruction",
                                                                     "sample")}


def preset_parts(method: Method, options: dict[str, Any], likelihood: str, sigma2: float,
                 latent_dim: int) -> dict[str, Any]:
    """Every part ``method`` makes with resolved ``options``: :func:`method_parts` and the
    likelihood ({name, args}: the fixed variance, or the pixel-wise model's stage options)."""
    likelihood_class = LIKELIHOOD_CLASSES.get(likelihood)
    likelihood_args = {"sigma2": sigma2} if likelihood == "gaussian" else (
        {} if likelihood_class is None else arguments_of(likelihood_class, options))
    return {**method_parts(method, options, latent_dim),
            "likelihood": {"name": likelihood, "args": likelihood_args}}


SHAPE = ('{"noise": PART, "likelihood": PART, "regularizers": [PART, ...], "reconstruction": '
         f"{' | '.join(RECONSTRUCTIONS)}}} with PART = {{\"name\": NAME, \"args\": {{...}}}}")


def check_parts(parts: Any) -> dict[str, Any]:
    """``parts`` if it has the shape of a model's parts (SHAPE), else a one-line error."""
    def is_part(part: Any) -> bool:
        return isinstance(part, dict) and set(part) == {"name", "args"} and \
            isinstance(part["name"], str) and isinstance(part["args"], dict)

    ok = isinstance(parts, dict) and set(parts) == {"noise", "likelihood", "regularizers",
                                                    "reconstruction"} \
        and is_part(parts["noise"]) and is_part(parts["likelihood"]) \
        and isinstance(parts["regularizers"], list) and all(map(is_part, parts["regularizers"])) \
        and isinstance(parts["reconstruction"], str)
    if not ok:
        raise WisealeError(f"parts must be {SHAPE}; got {parts!r:.200}")
    return parts


def parts_of(config: RunConfig) -> dict[str, Any]:
    """The parts of a resolved config: those it saved, else (a config written before runs
    recorded them) those its method's preset makes from its options."""
    if config.parts is not None:
        return check_parts(config.parts)
    return preset_parts(get_method(config.method), config.options, config.likelihood,
                        config.sigma2, config.latent_dim)


def _made(kind: str, registry: Registry, part: dict[str, Any], *args: Any) -> Any:
    """``registry[part["name"]](*args, **part["args"])``, with a one-line error for a part
    this version does not have or arguments its constructor does not take (a choice its
    annotation does not allow is refused by the class: wiseale.schema)."""
    if part["name"] not in registry:
        raise WisealeError(f"the {kind} {part['name']!r} is not one of this wiseale's "
                           f"({', '.join(registry)}); use one of them, or load a saved run "
                           "with the version that trained it")
    try:
        return registry[part["name"]](*args, **part["args"])
    except TypeError as exc:
        raise WisealeError(f"the {kind} {part['name']!r} does not take the arguments "
                           f"{sorted(part['args'])} ({exc}); fix them, or load a saved run "
                           "with the version that trained it") from None


def assemble(parts: dict[str, Any], encoder: nn.Module, feature_dim: int, decoder: nn.Module,
             likelihood: Likelihood, latent_dim: int) -> Autoencoder:
    """The autoencoder of ``parts`` (its noise, regularisers and reconstruction mode) on the
    given networks and likelihood."""
    noise = _made("noise", NOISES, parts["noise"], feature_dim, latent_dim)
    regularizers = [_made("regulariser", REGULARIZERS, part) for part in parts["regularizers"]]
    return Autoencoder(encoder, noise, decoder, likelihood, regularizers,
                       parts["reconstruction"])


def build_from_parts(parts: dict[str, Any], encoder: nn.Module, feature_dim: int,
                     decoder: nn.Module, latent_dim: int) -> Autoencoder:
    """:func:`assemble` with the likelihood of ``parts`` too."""
    likelihood = _made("likelihood", LIKELIHOOD_CLASSES, parts["likelihood"])
    return assemble(parts, encoder, feature_dim, decoder, likelihood, latent_dim)
