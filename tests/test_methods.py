"""Method presets (wiseale.methods): their parts, options and derived defaults."""

from __future__ import annotations

import math

import pytest
import torch

from wiseale import functional
from wiseale.errors import WisealeError
from wiseale.methods import DERIVED_DEFAULTS, METHODS, get_method, resolve_options
from wiseale.model import Autoencoder
from wiseale.noises import FixedNoise, NoNoise


def test_method_presets_and_options():
    assert get_method("vae").name == "aevb"
    assert resolve_options(get_method("beta-vae"), {})["beta"] == 4.0
    assert resolve_options(get_method("wae"), {"lambda": "3"})["lambda"] == 3.0
    with pytest.raises(WisealeError, match="unknown method 'nope'"):
        get_method("nope")
    with pytest.raises(WisealeError, match="has no option 'gamma'"):
        resolve_options(get_method("aevb"), {"gamma": 1})
    with pytest.raises(WisealeError, match="must be a number"):
        resolve_options(get_method("aevb"), {"beta": "big"})
    with pytest.raises(WisealeError, match="finite"):
        resolve_options(get_method("wae"), {"lambda": "nan"})


def test_vcae_family_presets(preset_model):
    from wiseale.regularizers import VariancePenalty

    vcae = preset_model("vcae")
    assert isinstance(vcae.noise, FixedNoise) and vcae.noise.sigma_eps == pytest.approx(
        math.sqrt(0.1))
    penalty = vcae.regularizers[0]
    assert isinstance(penalty, VariancePenalty) and penalty.target is None  # v = d_z
    x = torch.randn(64, 10)
    torch.manual_seed(0)
    out = vcae(x)
    torch.manual_seed(0)
    post = vcae.encode(x)
    assert torch.allclose(out.parts["variance"], (functional.total_variance(post.z) - 3).abs())
    assert isinstance(preset_model("dvcae").noise, NoNoise)
    assert preset_model("vcae", v="5").regularizers[0].target == 5.0
    cwae = preset_model("cwae", sigma_eps=0.2)
    assert cwae.noise.sigma_eps == 0.2 and cwae.regularizers[0].name == "mmd"
    with pytest.raises(ValueError, match="sigma_eps must be positive"):  # the part's own check
        preset_model("cwae", sigma_eps=0)


def test_every_method_option_is_an_argument_of_one_of_its_parts():
    """No preset option is silently ignored: each is taken by the noise, the likelihood, the
    autoencoder or one of its regularisers (directly or through option_names)."""
    import inspect

    from wiseale.likelihoods import LIKELIHOOD_CLASSES
    from wiseale.methods import METHODS
    from wiseale.noises import NOISES
    from wiseale.regularizers import REGULARIZERS

    def takes(part: type, renamed: dict[str, str]) -> set[str]:
        return {renamed.get(arg, arg) for arg in inspect.signature(part).parameters}

    for method in METHODS.values():
        taken = takes(NOISES[method.noise], {}) | takes(Autoencoder, {})
        taken |= set().union(*(takes(cls, {}) for cls in LIKELIHOOD_CLASSES.values()))
        for name in method.terms:
            taken |= takes(REGULARIZERS[name], REGULARIZERS[name].option_names)
        assert set(method.defaults) <= taken, (method.name, set(method.defaults) - taken)


def test_every_derived_default_is_described():
    derived = {k for m in METHODS.values() for k, v in m.defaults.items() if v is None}
    assert derived <= set(DERIVED_DEFAULTS)
