import numpy as np
import pytest
import torch

from wiseale.data import load
from wiseale.data.sine import LENGTH, sine_waves
from wiseale.errors import WisealeError
from wiseale.nets import build_nets, default_net


def test_sine_network_shapes_and_signed_output():
    enc, feat, dec = build_nets("sine-conv", (1, 256), 4)
    x = torch.randn(3, 1, 256)
    h = enc(x)
    assert h.shape == (3, feat) == (3, 64)
    out = dec(torch.randn(3, 4))
    assert out.shape == (3, 1, 256)
    # the paper's final ReLU would make negative outputs impossible (docs/deviations.md)
    assert isinstance(dec[-1], torch.nn.ConvTranspose1d)
    with torch.no_grad():
        dec[-1].bias.fill_(-0.5)
        negative = dec(torch.zeros(1, 4)) < 0
        dec[-1].bias.fill_(0.5)
        positive = dec(torch.zeros(1, 4)) > 0
    assert negative.any() and positive.any()


def test_sine_encoder_follows_app_d1():
    enc, _, _ = build_nets("sine-conv", (1, 256), 4)
    convs = [m for m in enc if isinstance(m, torch.nn.Conv1d)]
    assert [(c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs] == [
        (16, 16, 2), (16, 16, 2), (32, 16, 2), (32, 16, 2), (64, 8, 2)]
    _, _, dec = build_nets("sine-conv", (1, 256), 4)
    tconvs = [m for m in dec if isinstance(m, torch.nn.ConvTranspose1d)]
    assert [(c.out_channels, c.kernel_size[0], c.stride[0]) for c in tconvs] == [
        (64, 8, 4), (32, 16, 4), (16, 16, 4), (1, 16, 4)]


def test_default_net_and_errors():
    assert default_net((1, 256)) == "sine-conv"
    assert default_net((784,)) == "mlp"
    assert default_net((1, 8, 8)) == "mlp"
    with pytest.raises(ValueError, match="sine-conv"):
        build_nets("sine-conv", (1, 100), 4)
    with pytest.raises(ValueError, match="unknown network"):
        build_nets("resnet", (10,), 4)


def test_sine_data_follows_sec5():
    train = load("sine", "train", n_train=2000)
    assert train.floats().shape == (2000, 1, LENGTH) and train.x.dtype == torch.float32
    f, phi, a = train.factors.T
    assert 0 <= f.min() and f.max() <= 20 and 0 <= phi.min() and phi.max() <= 2 * np.pi
    assert 0 <= a.min() and a.max() <= 2
    t = torch.arange(LENGTH) / LENGTH
    clean = a[:, None] * torch.sin(2 * torch.pi * f[:, None] * t + phi[:, None])
    residual = train.floats()[:, 0] - clean
    assert 0.04 < residual.std() < 0.06  # the documented noise level 0.05
    test = load("sine", "test", n_test=100)
    assert not torch.isin(test.factors[:, 0], train.factors[:, 0]).any()  # disjoint splits
    again = load("sine", "train", n_train=10)
    assert torch.equal(again.floats(), train.floats(slice(0, 10)))  # seeded, prefix-stable
    x2, _ = sine_waves(5, seed=1)
    assert not np.allclose(x2, train.floats(slice(0, 5)).numpy())
    with pytest.raises(WisealeError, match="1 to 20000"):
        load("sine", "test", n_test=10**6)


def test_user_arrays(tmp_path):
    x = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float64)
    np.save(tmp_path / "a.npy", x)
    train, test = load(str(tmp_path / "a.npy")), load(str(tmp_path / "a.npy"), "test")
    assert len(train) == 45 and len(test) == 5 and train.x.dtype == torch.float32
    both = torch.cat([train.floats(), test.floats()]).double().numpy()
    assert np.allclose(np.sort(both, axis=0), np.sort(x, axis=0), atol=1e-6)
    np.savez(tmp_path / "b.npz", x=x, y=np.arange(50), x_test=x[:7], y_test=np.arange(7))
    d = load(str(tmp_path / "b.npz"), "test")
    assert len(d) == 7 and d.y.tolist() == list(range(7))


@pytest.mark.parametrize("bad, message", [
    (np.full((10, 3), np.nan), "NaN or Inf"),
    (np.zeros((10,)), "shape"),
    (np.array([["a"]] * 10), "dtype"),
    (np.zeros((0, 3)), "empty"),
])
def test_bad_arrays_are_refused(tmp_path, bad, message):
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(WisealeError, match=message):
        load(str(tmp_path / "bad.npy"))


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(WisealeError, match="does not exist"):
        load(str(tmp_path / "none.npy"))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(WisealeError, match="cannot read"):
        load(str(tmp_path / "junk.npz"))
    with pytest.raises(WisealeError, match="unknown data set"):
        load("imagenet")


def test_mnist_network_follows_app_d2():
    enc, feat, dec = build_nets("mnist-conv", (1, 28, 28), 2)
    x = torch.rand(3, 1, 28, 28)
    assert enc(x).shape == (3, feat) == (3, 32)
    convs = [m for m in enc if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (16, (4, 4), (2, 2)), (32, (4, 4), (2, 2)), (64, (4, 4), (2, 2))]
    sizes, h = [], x
    for layer in enc:
        h = layer(h)
        if isinstance(layer, torch.nn.Conv2d):
            sizes.append(h.shape[-1])
    assert sizes == [14, 7, 4]  # TensorFlow 'SAME' with stride 2
    fcs = [m.out_features for m in dec if isinstance(m, torch.nn.Linear)]
    assert fcs == [16, 128, 784] and dec(torch.randn(3, 2)).shape == (3, 1, 28, 28)
    assert default_net((1, 28, 28)) == "mnist-conv"


def test_celeba_network_follows_app_d3():
    enc, feat, dec = build_nets("celeba-conv", (3, 64, 64), 64)
    x = torch.rand(2, 3, 64, 64)
    assert enc(x).shape == (2, feat) == (2, 4 * 4 * 1024)
    convs = [m.out_channels for m in enc if isinstance(m, torch.nn.Conv2d)]
    assert convs == [128, 256, 512, 1024]
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in dec) == 3
    assert dec(torch.randn(2, 64)).shape == (2, 3, 64, 64)
    assert default_net((3, 64, 64)) == "celeba-conv"
    with pytest.raises(ValueError, match="needs samples of shape"):
        build_nets("celeba-conv", (3, 32, 32), 64)


@pytest.mark.parametrize("arrays, message", [
    ({"x": np.zeros((20, 3)), "x_test": np.zeros((5, 4))}, "must match"),
    ({"x": np.zeros((20, 3)), "y": np.arange(5)}, "integer labels"),
    ({"x": np.zeros((20, 3)), "y": np.array(["a"] * 20)}, "integer labels"),
    ({"x": np.zeros((20, 3)), "y": np.zeros(20)}, "integer labels"),
    ({"x_test": np.zeros((20, 3))}, "name the data array 'x'"),
    ({"x": np.zeros((20, 0))}, "size 0"),
])
def test_bad_archives_are_refused(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(WisealeError, match=message):
        load(str(tmp_path / "bad.npz"))


def test_other_bad_paths_and_options(tmp_path):
    (tmp_path / "data.txt").write_text("1 2 3")
    with pytest.raises(WisealeError, match="not a .npy or .npz"):
        load(str(tmp_path / "data.txt"))
    np.save(tmp_path / "a.npy", np.full((10, 2), 1e39))  # overflows float32: Inf
    with pytest.raises(WisealeError, match="NaN or Inf"):
        load(str(tmp_path / "a.npy"))
    with pytest.raises(WisealeError, match="does not take these options"):
        load("sine", n=5)
    with pytest.raises(WisealeError, match="takes one option, divide_by; got foo"):
        load(str(tmp_path / "a.npy"), foo=1)


@pytest.mark.parametrize("index", [slice(None), slice(1, 3), torch.tensor([0, 2])])
def test_floats_never_rescale_the_stored_samples(index):
    """Float pixels in 0..255 held in memory with divide_by=255: every read gives x / 255
    and the stored tensor keeps its values (a slice of it is a view)."""
    from wiseale.data.dataset import Dataset

    data = Dataset("t", torch.full((4, 1, 2, 2), 255.0), divide_by=255.0)
    for _ in range(2):
        assert torch.equal(data.floats(index), torch.ones_like(data.x[index]))
    assert torch.equal(data.x, torch.full((4, 1, 2, 2), 255.0))
