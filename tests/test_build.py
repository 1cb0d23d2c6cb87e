"""wiseale.build: a config's data splits and the run it resolves to (method options, parts,
likelihood and network chosen from the data)."""

import dataclasses
import warnings

import pytest
import torch

from wiseale import methods
from wiseale.build import load_split, resolve
from wiseale.config import RunConfig
from wiseale.data import Dataset
from wiseale.errors import WisealeError

SINE = RunConfig(method="aevb", data="sine", n_train=64, n_test=32, batch_size=16)


def test_load_split_passes_limits_and_keeps_factors():
    config = RunConfig(method="aevb", data="sine", n_train=7, n_test=3)
    train, test = load_split(config, "train"), load_split(config, "test")
    assert len(train) == 7 and len(test) == 3 and train.factors.shape == (7, 3)
    toy = load_split(RunConfig(method="aevb", data="toy-shapes", n_train=12), "train")
    assert len(toy) == 12 and toy.factors is not None and len(toy.factors) == 12


def _data(x: torch.Tensor) -> Dataset:
    return Dataset("given", x)


def test_the_likelihood_and_network_are_chosen_from_the_data():
    binary = _data(torch.randint(0, 2, (32, 1, 28, 28)).float())
    grey = _data(torch.rand(32, 1, 28, 28))
    flat = _data(torch.rand(32, 7))
    assert resolve(SINE, binary).likelihood == "bernoulli"
    assert resolve(SINE, grey).likelihood == "gaussian"
    assert resolve(SINE, grey).net == "mnist-conv" and resolve(SINE, flat).net == "mlp"
    assert resolve(SINE, flat).sample_shape == [7]
    assert resolve(dataclasses.replace(SINE, method="lv-vae"), grey).likelihood == "learned"
    with pytest.raises(WisealeError, match="the Bernoulli likelihood needs data in \\[0, 1\\]"):
        resolve(dataclasses.replace(SINE, likelihood="bernoulli"), _data(torch.randn(32, 7)))
    with pytest.raises(WisealeError, match="batch-size 64 is larger than the 32 training"):
        resolve(dataclasses.replace(SINE, batch_size=64), flat)
    with pytest.raises(WisealeError, match="compares samples within a batch"):
        resolve(dataclasses.replace(SINE, method="wae", batch_size=1), flat)


def test_options_are_resolved_once_and_given_parts_do_not_ask_the_preset(monkeypatch):
    flat = _data(torch.rand(32, 7))
    vcae = resolve(dataclasses.replace(SINE, method="vcae", latent_dim=5), flat)
    assert vcae.options["v"] == 5.0  # 003 Sec. 4: v = d_z, saved as its value
    assert vcae.parts["regularizers"] == [{"name": "variance",
                                           "args": {"weight": 1.0, "target": 5.0}}]
    monkeypatch.setitem(methods.METHODS, "vcae", dataclasses.replace(
        methods.METHODS["vcae"], defaults={"lambda": 9.0, "v": None, "sigma_eps": 0.5}))
    again = resolve(vcae, flat)  # a resumed run: its parts, not today's preset
    assert again.parts == vcae.parts and again.options == vcae.options


def test_a_two_stage_run_that_ends_in_stage_one_is_warned_about():
    grey = _data(torch.rand(32, 1, 28, 28))
    config = RunConfig(method="lv-vae-pixel", data="given", net="lv-mnist", epochs=3, batch_size=16,
                       options={"stage1_epochs": 3})
    with pytest.warns(UserWarning, match="--epochs 3 ends within stage 1"):
        resolve(config, grey)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resolve(dataclasses.replace(config, epochs=4), grey)


def _conv_weights(model: torch.nn.Module) -> list[torch.Tensor]:
    convs = (torch.nn.Conv1d, torch.nn.ConvTranspose1d, torch.nn.Conv2d, torch.nn.ConvTranspose2d)
    return [m.weight for m in model.modules() if isinstance(m, convs)]


def _channels_last(weight: torch.Tensor) -> bool:
    from wiseale.nets.layout import is_channels_last_1d

    if weight.dim() == 3:
        return is_channels_last_1d(weight)
    return weight.is_contiguous(memory_format=torch.channels_last) and weight.stride(1) == 1


@pytest.mark.parametrize(("shape", "net", "convs"), [((1, 28, 28), "mnist-conv", 3),
                                                    ((1, 256), "sine-conv", 10)])
def test_cpu_models_of_the_marked_networks_keep_their_conv_weights_channels_last(
        tmp_path, shape, net, convs):
    """On a CPU, mnist-conv's and sine-conv's convolution weights are built in channels-last
    layout (faster there: docs/performance.md) with the values of the default layout; on CUDA,
    and for a network not measured faster (lv-mnist), the default layout. A run trained so
    resumes to the weights of a straight one, and its loaded model keeps the layout."""
    from wiseale.build import model_from_config
    from wiseale.training import load_run, train

    samples = _data(torch.rand(64, *shape))
    config = dataclasses.replace(resolve(SINE, samples), method="wise-ale", epochs=2)
    cpu = model_from_config(config)
    cuda_layout = model_from_config(dataclasses.replace(config, device="cuda"))
    lv = model_from_config(resolve(dataclasses.replace(SINE, net="lv-mnist"),
                                   _data(torch.rand(64, 1, 28, 28))))
    assert config.net == net and len(_conv_weights(cpu)) == convs
    assert all(_channels_last(p) for p in _conv_weights(cpu))
    assert not any(_channels_last(p) for p in _conv_weights(cuda_layout) + _conv_weights(lv))
    assert all(torch.equal(a, b) for a, b in zip(cpu.state_dict().values(),
                                                 cuda_layout.state_dict().values(), strict=True))
    test = _data(torch.rand(16, *shape))
    train(config, tmp_path / "straight", progress=False, train_data=samples, test_data=test)
    train(dataclasses.replace(config, epochs=1), tmp_path / "part", progress=False,
          train_data=samples, test_data=test)
    train(config, tmp_path / "part", resume=True, progress=False, train_data=samples,
          test_data=test)
    straight, part = (load_run(tmp_path / d)[0].state_dict() for d in ("straight", "part"))
    assert all(torch.equal(straight[k], part[k]) for k in straight)
    assert all(_channels_last(p) for p in _conv_weights(load_run(tmp_path / "part")[0]))
