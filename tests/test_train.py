import dataclasses
import json
import math
import os

import pytest
import torch

from wiseale.errors import WisealeError
from wiseale.storage import load_tensors
from wiseale.training import load_run, train
from wiseale.training import loop as train_module


def _weights(path):
    return load_tensors(path)[0]


def test_run_directory_contents(tmp_path, tiny_sine):
    train(tiny_sine, tmp_path / "run", progress=False)
    files = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert files == ["checkpoint.safetensors", "config.json", "evaluation.json", "metrics.jsonl",
                     "model.safetensors", "writer.lock"]
    rows = [json.loads(line) for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    for key in ("loss", "recon", "aggregate_kl", "sample_recon_error", "kl_prior", "elbo",
                "samples_per_s", "test_recon_error", "test_mse", "test_kl_prior", "test_elbo",
                "test_aggregate_kl_ub"):
        assert all(r[key] is not None for r in rows), key
    config = json.loads((tmp_path / "run/config.json").read_text())
    assert config["net"] == "sine-conv" and config["likelihood"] == "gaussian"
    assert config["options"] == {"weight": 1.0, "scaling": "batch", "reconstruction": "sample"}
    model, _ = load_run(tmp_path / "run")
    x = torch.randn(3, 1, 256)
    assert model.reconstruct(x).shape == x.shape


def test_same_seed_same_weights(tmp_path, tiny_sine):
    train(tiny_sine, tmp_path / "a", progress=False)
    train(tiny_sine, tmp_path / "b", progress=False)
    a, b = _weights(tmp_path / "a/model.safetensors"), _weights(tmp_path / "b/model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    train(dataclasses.replace(tiny_sine, seed=1), tmp_path / "c", progress=False)
    c = _weights(tmp_path / "c/model.safetensors")
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_crash_then_resume_gives_identical_weights(tmp_path, tiny_sine, monkeypatch):
    config = dataclasses.replace(tiny_sine, epochs=3)
    train(config, tmp_path / "straight", progress=False)

    calls = {"n": 0}
    real_evaluate = train_module.evaluate

    def crash_in_epoch_two(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # epoch 2 trained, its checkpoint not yet written
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(train_module, "evaluate", crash_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "crashed", progress=False)
    monkeypatch.setattr(train_module, "evaluate", real_evaluate)
    assert not (tmp_path / "crashed/model.safetensors").exists()
    train(config, tmp_path / "crashed", resume=True, progress=False)

    a = _weights(tmp_path / "straight/model.safetensors")
    b = _weights(tmp_path / "crashed/model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows = (tmp_path / "crashed/metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [1, 2, 3]  # every epoch logged once


def test_non_finite_loss_stops_and_keeps_checkpoint(tmp_path, tiny_sine, monkeypatch):
    config = dataclasses.replace(tiny_sine, epochs=3)
    from wiseale.model import Autoencoder

    real_forward = Autoencoder.forward
    steps = {"n": 0}

    def poisoned(self, x):
        steps["n"] += 1
        out = real_forward(self, x)
        if steps["n"] == 12:  # epoch 2 (8 batches per epoch), batch 3
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(Autoencoder, "forward", poisoned)
    with pytest.raises(WisealeError, match="non-finite loss at epoch 2, batch 3"):
        train(config, tmp_path / "run", progress=False)
    _, meta = load_tensors(tmp_path / "run/checkpoint.safetensors")
    assert meta["epoch"] == 1


def test_refuses_to_overwrite_or_resume_wrongly(tmp_path, tiny_sine):
    train(tiny_sine, tmp_path / "run", progress=False)
    with pytest.raises(WisealeError, match="already holds a run"):
        train(tiny_sine, tmp_path / "run", progress=False)
    with pytest.raises(WisealeError, match="other settings.*latent_dim"):
        train(dataclasses.replace(tiny_sine, latent_dim=3), tmp_path / "run", resume=True,
              progress=False)
    with pytest.raises(WisealeError, match="no checkpoint.safetensors"):
        train(tiny_sine, tmp_path / "fresh", resume=True, progress=False)


def test_corrupt_and_mismatched_weights_are_refused(tmp_path, tiny_sine):
    train(tiny_sine, tmp_path / "run", progress=False)
    weights = tmp_path / "run/model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])
    with pytest.raises(WisealeError, match="corrupt or truncated"):
        load_run(tmp_path / "run")
    weights.write_bytes(good)
    config = json.loads((tmp_path / "run/config.json").read_text())
    config["latent_dim"] = 7
    (tmp_path / "run/config.json").write_text(json.dumps(config))
    with pytest.raises(WisealeError, match="does not match"):
        load_run(tmp_path / "run")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_directory(tmp_path, tiny_sine):
    (tmp_path / "ro").mkdir(mode=0o500)
    with pytest.raises(WisealeError, match="cannot"):
        train(tiny_sine, tmp_path / "ro" / "run", progress=False)


def test_unwritable_directory_as_root(tmp_path, tiny_sine):
    """A file where the directory should be: the same clear error, whoever runs the tests."""
    (tmp_path / "file").write_text("")
    with pytest.raises(WisealeError, match="cannot create"):
        train(tiny_sine, tmp_path / "file" / "run", progress=False)
    assert (tmp_path / "file").read_text() == ""


def test_batch_larger_than_data(tmp_path, tiny_sine):
    with pytest.raises(WisealeError, match="larger than the 256 training samples"):
        train(dataclasses.replace(tiny_sine, batch_size=1000), tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()  # nothing written for a refused run


def test_failure_before_the_first_checkpoint_leaves_no_run(tmp_path, tiny_sine, monkeypatch):
    from wiseale.model import Autoencoder

    real_forward = Autoencoder.forward

    def nan_at_once(self, x):
        out = real_forward(self, x)
        out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(Autoencoder, "forward", nan_at_once)
    with pytest.raises(WisealeError, match="epoch 1, batch 0; nothing was saved"):
        train(tiny_sine, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()  # the folder it made is taken back
    monkeypatch.setattr(Autoencoder, "forward", real_forward)
    train(tiny_sine, tmp_path / "run", progress=False)  # the same directory works again


def test_files_get_the_usual_permissions(tmp_path, tiny_sine):
    umask = os.umask(0)
    os.umask(umask)
    train(tiny_sine, tmp_path / "run", progress=False)
    for path in (tmp_path / "run").iterdir():
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path.name


def test_resume_refuses_fewer_epochs_or_a_changed_schedule(tmp_path, tiny_sine):
    train(dataclasses.replace(tiny_sine, lr_schedule="cosine"), tmp_path / "run",
          progress=False)
    with pytest.raises(WisealeError, match="already trained 2 epochs"):
        train(dataclasses.replace(tiny_sine, lr_schedule="cosine", epochs=1), tmp_path / "run",
              resume=True, progress=False)
    with pytest.raises(WisealeError, match="cosine schedule depends on epochs"):
        train(dataclasses.replace(tiny_sine, lr_schedule="cosine", epochs=4), tmp_path / "run",
              resume=True, progress=False)


def test_resume_with_more_epochs_continues(tmp_path, tiny_sine):
    train(tiny_sine, tmp_path / "run", progress=False)
    train(dataclasses.replace(tiny_sine, epochs=3), tmp_path / "run", resume=True,
          progress=False)
    rows = (tmp_path / "run/metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [1, 2, 3]
    assert json.loads((tmp_path / "run/config.json").read_text())["epochs"] == 3


def test_input_checks(tmp_path, tiny_sine):
    with pytest.raises(WisealeError, match="Bernoulli likelihood needs data in"):
        train(dataclasses.replace(tiny_sine, likelihood="bernoulli"), tmp_path / "a",
              progress=False)
    with pytest.raises(WisealeError, match="batch_size 2 or more"):
        train(dataclasses.replace(tiny_sine, method="wae", batch_size=1), tmp_path / "b",
              progress=False)
    with pytest.raises(WisealeError, match="seed must be"):
        train(dataclasses.replace(tiny_sine, seed=-1), tmp_path / "c", progress=False)
    assert not any(tmp_path.iterdir())


def test_load_run_leaves_the_callers_random_state_alone(tmp_path, tiny_sine):
    train(tiny_sine, tmp_path / "run", progress=False)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    load_run(tmp_path / "run")
    assert torch.equal(torch.rand(3), expected)


def test_fixed_noise_runs_report_their_information_rate(tmp_path, tiny_sine):
    import math

    config = dataclasses.replace(tiny_sine, method="vcae", options={"sigma_eps": 0.5})
    train(config, tmp_path / "run", progress=False)
    evaluation = json.loads((tmp_path / "run/evaluation.json").read_text())
    assert evaluation["test"]["information_rate_bits"] == pytest.approx(4 / 2 * math.log2(4))
    assert evaluation["test"]["kl_prior"] is not None  # fixed noise still has a density


def test_every_epoch_visits_every_sample_once_in_a_new_order(tmp_path, tiny_sine):
    """The batches an encoder sees in training: each epoch is a permutation of the training
    samples (256 = 8 batches of 32, none dropped), and the two epochs' orders differ."""
    from wiseale.build import load_split

    seen = []

    class Recording(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = _own_nets()[0]

        def forward(self, x):
            if self.training and torch.is_grad_enabled():
                seen.append(x.detach().clone())
            return self.net(x)

    train(tiny_sine, tmp_path / "run", progress=False, encoder=Recording(),
          decoder=_own_nets()[1])
    data = load_split(tiny_sine, "train").floats().flatten(1)
    assert len(seen) == 16 and all(len(batch) == 32 for batch in seen)
    orders = []
    for epoch in (seen[:8], seen[8:]):
        same = (torch.cat(epoch).flatten(1)[:, None, :] == data[None]).all(-1)
        assert torch.equal(same.sum(1), torch.ones(256, dtype=torch.long))  # one sample each
        orders.append(same.long().argmax(1))
        assert sorted(orders[-1].tolist()) == list(range(256))
    assert not torch.equal(orders[0], orders[1])


def test_bf16_autocast_trains_with_float32_posterior_and_losses(tmp_path, tiny_sine):
    from wiseale.build import load_split, model_from_config, resolve

    config = resolve(dataclasses.replace(tiny_sine, precision="bf16"),
                     load_split(tiny_sine, "train"))
    model = model_from_config(config)
    x = load_split(tiny_sine, "train").floats(slice(0, 32))
    with torch.autocast("cpu", torch.bfloat16):
        post = model.encode(x)
        output = model(x)
    assert post.mu.dtype == post.logvar.dtype == torch.float32
    assert output.loss.dtype == torch.float32 and torch.isfinite(output.loss)
    full = model(x).loss.item()
    assert output.loss.item() == pytest.approx(full, rel=0.05)  # bf16 networks, not bf16 math
    train(dataclasses.replace(tiny_sine, precision="bf16"), tmp_path / "run", progress=False)
    rows = [json.loads(r) for r in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["loss"]) for r in rows)
    train(tiny_sine, tmp_path / "float32", progress=False)  # the same seed, not under autocast
    bf16_weights = load_tensors(tmp_path / "run/model.safetensors")[0]
    float32_weights = load_tensors(tmp_path / "float32/model.safetensors")[0]
    assert any(not torch.equal(bf16_weights[k], float32_weights[k]) for k in float32_weights)
    with pytest.raises(WisealeError, match="unknown precision 'fp16'"):
        dataclasses.replace(tiny_sine, precision="fp16").validate()


@pytest.mark.parametrize("lazy", [True, False])
def test_finite_watch_reports_the_first_bad_step_until_cleared(lazy):
    from wiseale.training.distributed import World
    from wiseale.training.guards import FiniteWatch

    watch = FiniteWatch(torch.device("cpu"), World(), lazy=lazy)
    for step, loss in enumerate([1.0, 2.0, float("nan"), 3.0, float("-inf")]):
        watch.update(torch.tensor(loss), step)
    assert watch.lazy == lazy and watch.first_bad() == 2
    watch.clear()
    assert watch.first_bad() is None
    watch.update(torch.tensor(float("inf")), 7)
    assert watch.first_bad() == 7
    clean = FiniteWatch(torch.device("cpu"), World())
    clean.update(torch.tensor(1.0), 0)
    assert not clean.lazy and clean.first_bad() is None


def test_the_learning_rate_schedule_reaches_the_optimiser(tmp_path, tiny_sine):
    """After a milestone with gamma 1e-30 Adam's steps (about lr each) change no float32
    weight: two epochs end where one did. Without the schedule written to the optimiser the
    second epoch would train at 1e-3."""
    config = dataclasses.replace(tiny_sine, lr_schedule="step", lr_milestones=[1],
                                 lr_gamma=1e-30)
    train(dataclasses.replace(config, epochs=1), tmp_path / "one", progress=False)
    train(config, tmp_path / "two", progress=False)
    one, two = (_weights(tmp_path / name / "model.safetensors") for name in ("one", "two"))
    assert all(torch.allclose(one[k], two[k], rtol=0, atol=1e-20) for k in one)




def test_train_takes_arrays_tensors_pairs_and_torch_datasets(tmp_path, tiny_sine):
    """train(config, out, train_data=...) with the data as numpy, a tensor, an (x, y) pair or a
    torch Dataset gives the same run as the wiseale Dataset of the same values (issue 15)."""
    import numpy as np

    from wiseale.build import load_split
    from wiseale.data import Dataset

    config = dataclasses.replace(tiny_sine, data="my-waves", epochs=1)
    sine = load_split(tiny_sine, "train")
    x, y = sine.floats().numpy(), np.arange(len(sine.floats())) % 3

    class Waves(torch.utils.data.Dataset):
        def __len__(self):
            return len(x)

        def __getitem__(self, i):
            return torch.from_numpy(x[i]), int(y[i])

    reference = train(config, tmp_path / "ref", progress=False,
                      train_data=Dataset("w", sine.floats(), torch.from_numpy(y)), test_data=sine)
    for i, given in enumerate((x, torch.from_numpy(x).double(), (x, y), Waves())):
        model = train(config, tmp_path / str(i), progress=False, train_data=given,
                      test_data=sine)
        for a, b in zip(model.state_dict().values(), reference.state_dict().values(),
                        strict=True):
            assert torch.equal(a, b)
        labelled = json.loads((tmp_path / str(i) / "evaluation.json").read_text())["train"]
        assert (labelled["knn_accuracy"] is not None) == (i >= 2)  # (x, y) and the Dataset
    with pytest.warns(UserWarning, match="measured on the training data"):
        train(config, tmp_path / "no-test", progress=False, train_data=x)
    with pytest.raises(WisealeError, match="must be a numpy array, a torch tensor"):
        train(config, tmp_path / "bad", progress=False, train_data=x.tolist())
    with pytest.raises(WisealeError, match="one integer per sample"):
        train(config, tmp_path / "bad", progress=False, train_data=(x, y.astype(float)))
    assert not (tmp_path / "bad").exists()


def _own_nets(out_width: int = 256):
    encoder = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, 32), torch.nn.ReLU())
    decoder = torch.nn.Sequential(torch.nn.Linear(4, out_width),
                                  torch.nn.Unflatten(1, (1, out_width)))
    return encoder, decoder


def test_your_own_encoder_and_decoder_train_save_and_load(tmp_path, tiny_sine):
    """train(..., encoder=, decoder=) trains your networks under the method's noise,
    likelihood and regularisers; load_run needs them again; the CLI says so in one line."""
    from wiseale.build import load_split
    from wiseale.cli import main

    config = dataclasses.replace(tiny_sine, epochs=1)
    encoder, decoder = _own_nets()
    model = train(config, tmp_path / "run", progress=False, encoder=encoder, decoder=decoder)
    assert model.encoder is encoder and model.decoder is decoder
    assert json.loads((tmp_path / "run/config.json").read_text())["net"] == "custom"
    with pytest.raises(WisealeError, match=r"load_run\(run_dir, encoder=..., decoder=...\)"):
        load_run(tmp_path / "run")
    loaded, _ = load_run(tmp_path / "run", *_own_nets())  # fresh modules get the weights
    x = load_split(tiny_sine, "test").floats(slice(0, 8))
    assert torch.equal(loaded.reconstruct(x), model.eval().reconstruct(x))
    assert main(["evaluate", str(tmp_path / "run")]) == 1
    with pytest.raises(WisealeError, match=r"decoder must map \[N, 4\] codes to \[N, 1, 256\]"):
        train(config, tmp_path / "bad", progress=False, encoder=encoder,
              decoder=_own_nets(out_width=128)[1])
    with_norm = torch.nn.Sequential(torch.nn.BatchNorm1d(1), torch.nn.Flatten(),
                                    torch.nn.Linear(256, 32))
    from wiseale.build import own_nets
    from wiseale.training.loop import resolve

    own_nets(resolve(dataclasses.replace(config, net="custom"), load_split(config, "train")),
             with_norm, decoder)
    assert with_norm[0].num_batches_tracked == 0 and with_norm.training  # the check left it be
    with pytest.raises(WisealeError, match="give both your encoder and your decoder"):
        train(config, tmp_path / "bad", progress=False, encoder=encoder)
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("given", ["numpy", "torch-dataset"])
def test_own_networks_on_given_data_reload_and_sample(tmp_path, tiny_sine, given):
    """Your encoder and decoder trained on a numpy array or a torch Dataset of (sample, label)
    pairs: the reloaded run decodes the prior's and a fitted mixture's samples as the trained
    model does (issue 15's done-when)."""
    import numpy as np

    from wiseale.build import load_split
    from wiseale.samplers.mixture import fit_mixture

    sine = load_split(tiny_sine, "train")
    x, y = sine.floats().numpy(), np.arange(len(sine)) % 3
    data = x if given == "numpy" else torch.utils.data.TensorDataset(
        torch.from_numpy(x), torch.from_numpy(y))
    config = dataclasses.replace(tiny_sine, data="mine", epochs=1)
    with pytest.warns(UserWarning, match="no test_data"):
        model = train(config, tmp_path / "run", progress=False, train_data=data,
                      encoder=_own_nets()[0], decoder=_own_nets()[1])
    loaded, _ = load_run(tmp_path / "run", *_own_nets())
    prior = [m.sample(5, generator=torch.Generator().manual_seed(1)) for m in (model, loaded)]
    assert prior[0].shape == (5, 1, 256) and torch.equal(prior[0], prior[1])
    mixture = fit_mixture(loaded.encode(torch.from_numpy(x), sample=False).mu, components=3)
    drawn = [m.sample(5, generator=torch.Generator().manual_seed(2), sampler=mixture)
             for m in (model.eval(), loaded)]
    assert torch.isfinite(drawn[0]).all() and torch.equal(drawn[0], drawn[1])


def test_every_step_moves_the_weights(tmp_path, tiny_sine):
    """One process, no micro-batches: the loss's gradients reach the optimiser (the trained
    weights differ from the same seed's initial ones, every parameter of the heads)."""
    from wiseale.build import model_from_config

    model = train(dataclasses.replace(tiny_sine, epochs=1), tmp_path, progress=False)
    _, config = load_run(tmp_path)
    initial = model_from_config(config).state_dict()
    moved = [name for name, value in model.state_dict().items()
             if not torch.equal(value, initial[name])]
    assert {"noise.mu_head.weight", "noise.sigma_head.weight"} <= set(moved)




