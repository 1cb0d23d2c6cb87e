"""Methods are named presets: one encoder noise, a set of weighted regularisers, options.

Adding a method is adding an entry to ``METHODS``. The likelihood is chosen by the data (or
``--likelihood``), not by the method, so every method runs on the same likelihood.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Any

from wiseale.choices import DIP_LAMBDA_D_FACTOR
from wiseale.errors import WisealeError, positive_int


@dataclass(frozen=True)
class Method:
    name: str
    summary: str
    source: str
    noise: str  # noises.NOISES
    terms: tuple[str, ...]  # regularizers.REGULARIZERS, each set by the options it takes
    defaults: dict[str, Any] = field(default_factory=dict)  # a choice: its part's Literal
    likelihoods: tuple[str, ...] = ()  # the likelihoods it allows, default first; () = any


SIGMA_EPS = math.sqrt(0.1)  # 003 App. B: P_eps = N(0, 0.1 I) in most experiments
TC_SOURCE = "003 Sec. 4, 6.4, App. B.5"
# A None default is derived from the run when its options are resolved (derive_defaults);
# how, for `wiseale methods`.
DERIVED_DEFAULTS = {"v": "d_z", "lambda_d": "10*lambda_od (variant i) or lambda_od (ii)"}

METHODS: dict[str, Method] = {m.name: m for m in (
    Method("aevb", "VAE: per-sample KL to N(0, I)", "001 Eq. 26 (Kingma & Welling)",
           "gaussian", ("kl",), {"beta": 1.0}),
    Method("beta-vae", "per-sample KL weighted by beta", "Higgins et al. 2017 (001 Sec. 5)",
           "gaussian", ("kl",), {"beta": 4.0}),
    Method("wise-ale", "aggregate-posterior KL upper bound on the mini-batch",
           "001 Eq. 21, 25, 27", "gaussian",
           ("aggregate_kl",),
           {"weight": 1.0, "scaling": "batch", "reconstruction": "sample"}),
    Method("wae", "deterministic encoder, MMD to N(0, I)", "Tolstikhin et al. (003 Eq. 3)",
           "none", ("mmd",), {"lambda": 10.0, "kernel": "imq", "scales": "multi"}),
    Method("cwae", "fixed encoder noise sigma_eps, MMD to N(0, I)", "003 Eq. 3, App. B",
           "fixed", ("mmd",),
           {"lambda": 100.0, "kernel": "imq", "scales": "single", "sigma_eps": SIGMA_EPS}),
    Method("vcae", "fixed encoder noise, |total variance of z - v| per batch",
           "003 Eq. 6-7, Alg. 1", "fixed",
           ("variance",),
           {"lambda": 1.0, "v": None, "sigma_eps": SIGMA_EPS}),
    Method("dvcae", "deterministic VCAE (sigma_eps = 0)", "003 Sec. 6", "none",
           ("variance",), {"lambda": 1.0, "v": None}),
    Method("vae-iaf", "VAE with an inverse autoregressive flow posterior (MC KL)",
           "Kingma et al. 2016 (003 Table 2)", "iaf", ("kl",),
           {"beta": 1.0, "steps": 2}),
    Method("factorvae", "VAE + gamma * total correlation (discriminator)",
           f"Kim & Mnih 2018 ({TC_SOURCE})", "gaussian",
           ("kl", "tc"),
           {"beta": 1.0, "gamma": 7.0}),
    Method("tc-vcae", "VCAE + gamma * total correlation", TC_SOURCE, "fixed",
           ("variance", "tc"),
           {"lambda": 1.0, "v": None, "gamma": 7.0, "sigma_eps": SIGMA_EPS}),
    Method("tc-cwae", "cWAE + gamma * total correlation", TC_SOURCE, "fixed",
           ("mmd", "tc"),
           {"lambda": 2500.0, "kernel": "imq", "scales": "single", "gamma": 7.0,
            "sigma_eps": SIGMA_EPS}),
    Method("dip-vae", "VAE + DIP-VAE covariance penalty on q(z)",
           "Kumar et al. 2018 (004 Table 2)", "gaussian",
           ("kl", "dip"),
           {"beta": 1.0, "lambda_od": 10.0, "lambda_d": None, "variant": "i"}),
    Method("lv-vae", "VAE whose Gaussian likelihood variance is learned (gradient, or "
           "--likelihood optimal: closed form)", "004 Eq. 9-10", "gaussian",
           ("kl",), {"beta": 1.0},
           likelihoods=("learned", "optimal")),
    Method("lv-vae-pixel", "VAE with a global, then per-pixel input-dependent likelihood "
           "variance (two stages)", "004 Eq. 11, Alg. 1", "gaussian",
           ("kl",),
           {"beta": 1.0, "stage1_epochs": 16, "stage1_tolerance": 0.0,
            "stage1_variance": "gradient"}, likelihoods=("pixel",)),
)}
ALIASES = {"vae": "aevb"}



def canonical_name(name: str) -> str:
    """The preset name that ``name`` (a name or an alias) stands for."""
    return ALIASES.get(name, name)


def get_method(name: str) -> Method:
    """The preset called ``name`` (or one of its aliases)."""
    method = METHODS.get(canonical_name(name))
    if method is None:
        names = ", ".join(sorted([*METHODS, *ALIASES]))
        raise WisealeError(f"unknown method {name!r}; use one of {names}")
    return method


def resolve_options(method: Method, options: dict[str, Any],
                    latent_dim: int | None = None) -> dict[str, Any]:
    """The method's defaults overridden by ``options``, type-checked against the defaults (a
    choice among names is checked against its part's annotation when the part is made:
    wiseale.schema).
    With the run's ``latent_dim``, the defaults that depend on the run are derived
    (:func:`derive_defaults`), so that a saved config holds the values the run trained with;
    without it they stay None, which the parts derive from the z they see."""
    resolved = dict(method.defaults)
    for key, value in options.items():
        if value is None and key in DERIVED_DEFAULTS and key in method.defaults:
            continue  # a config saved before derive_defaults: derived below
        if key not in method.defaults:
            known = ", ".join(method.defaults) or "none"
            raise WisealeError(f"method {method.name} has no option {key!r}; its options: {known}")
        default = method.defaults[key]
        if isinstance(default, float) or default is None:  # None: a number, or derived
            try:
                value = float(value)
            except (TypeError, ValueError, OverflowError):
                raise WisealeError(f"option {key} of {method.name} must be a number, got "
                                   f"{value!r}") from None
            if not value >= 0 or value == float("inf"):
                raise WisealeError(f"option {key} of {method.name} must be finite and >= 0, "
                                   f"got {value}")
        elif isinstance(default, int) and not isinstance(default, bool):
            positive_int(value, f"option {key} of {method.name}")
        resolved[key] = value
    return resolved if latent_dim is None else derive_defaults(resolved, latent_dim)


def derive_defaults(options: dict[str, Any], latent_dim: int) -> dict[str, Any]:
    """``options`` with each derived default left None replaced by its value for a run with
    ``latent_dim``: VCAE's v = d_z (003 Sec. 4), DIP-VAE's lambda_d = 10 lambda_od (variant i)
    or lambda_od (ii) (Kumar et al. 2018)."""
    derived = dict(options)
    if "v" in derived and derived["v"] is None:
        derived["v"] = float(latent_dim)
    factor = DIP_LAMBDA_D_FACTOR.get(derived.get("variant"))  # None: refused with the part
    if "lambda_d" in derived and derived["lambda_d"] is None and factor is not None:
        derived["lambda_d"] = factor * float(derived["lambda_od"])
    return derived


def arguments_of(part: type, options: dict[str, Any],
                 option_names: dict[str, str] | None = None) -> dict[str, Any]:
    """The method options that are arguments of ``part``'s constructor (its signature is its
    schema: fixed noise takes ``sigma_eps``, the pixel-wise likelihood ``stage1_epochs``);
    ``option_names`` maps an argument to the option of another name that sets it."""
    renamed = option_names or {}
    arguments = {}
    for name in inspect.signature(part).parameters:
        option = renamed.get(name, name)
        if option in options:
            arguments[name] = options[option]
    return arguments


def choose_likelihood(method: Method, likelihood: str | None) -> str | None:
    """The method's likelihood: the requested one if the method allows it, its default if
    none was requested (None: the data decides)."""
    if not method.likelihoods:
        return likelihood
    if likelihood is None:
        return method.likelihoods[0]
    if likelihood not in method.likelihoods:
        raise WisealeError(f"{method.name} uses the {' or '.join(method.likelihoods)} "
                           f"likelihood, not {likelihood!r}; drop --likelihood")
    return likelihood
