import importlib

import numpy as np
import pytest
import scipy.linalg
import torch
from safetensors.torch import load_file, save_file

from wiseale.data import Dataset
from wiseale.errors import WisealeError
from wiseale.metrics import sample_features, sample_fid
from wiseale.metrics.fid import (
    ClassifierFeatures,
    classifier_features,
    feature_extractor,
    feature_statistics,
    fid,
    frechet_distance,
    image_fid,
    inception_features,
)

fid_module = importlib.import_module("wiseale.metrics.fid")  # the package re-exports fid()


def _spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.5 * np.eye(d)


def _brute_force(mu1, s1, mu2, s2) -> float:
    """The textbook formula with scipy's general (non-symmetric) matrix square root."""
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean))


def test_identical_statistics_give_zero():
    rng = np.random.default_rng(0)
    mu, sigma = rng.normal(size=6), _spd(rng, 6)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-6
    singular = np.diag([1.0, 2.0, 0.0, 0.0])  # rank-deficient, as with dead feature units
    assert abs(frechet_distance(np.zeros(4), singular, np.zeros(4), singular)) < 1e-6


def test_diagonal_covariances_match_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([0.5, -1.0, 1.0])
    v1, v2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(v1 + v2 - 2 * np.sqrt(v1 * v2))
    got = frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2))
    assert got == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("d", [2, 5, 32])
def test_general_covariances_match_scipy_sqrtm(d):
    rng = np.random.default_rng(d)
    mu1, mu2, s1, s2 = rng.normal(size=d), rng.normal(size=d), _spd(rng, d), _spd(rng, d)
    expected = _brute_force(mu1, s1, mu2, s2)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)
    # commuting case: same eigenvectors, so (S1 S2)^{1/2} = Q sqrt(l1 l2) Q^T
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    l1, l2 = rng.uniform(0.1, 3, size=d), rng.uniform(0.1, 3, size=d)
    c1, c2 = (q * l1) @ q.T, (q * l2) @ q.T
    closed = np.sum((mu1 - mu2) ** 2) + np.sum(l1 + l2 - 2 * np.sqrt(l1 * l2))
    assert frechet_distance(mu1, c1, mu2, c2) == pytest.approx(closed, rel=1e-9)


def test_accepts_tensors_and_rejects_bad_input():
    mu, sigma = torch.zeros(3), torch.eye(3)
    assert frechet_distance(mu, sigma, mu + 1, 4 * sigma) == pytest.approx(3 + 3 * (1 + 4 - 4))
    with pytest.raises(WisealeError, match="shape"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))
    with pytest.raises(WisealeError, match="positive semi-definite"):
        frechet_distance(np.zeros(2), np.diag([1.0, -1.0]), np.zeros(2), np.eye(2))
    with pytest.raises(WisealeError, match="NaN"):
        fid(np.full((4, 2), np.nan), np.zeros((4, 2)))
    with pytest.raises(WisealeError, match=r"\[N, F\]"):
        feature_statistics(np.zeros(5))


def test_fid_of_sampled_gaussians():
    rng = np.random.default_rng(0)
    d, n = 4, 20_000
    mu1, mu2 = np.zeros(d), np.array([1.0, -0.5, 0.25, 2.0])
    s1, s2 = _spd(rng, d), _spd(rng, d)
    a = rng.multivariate_normal(mu1, s1, n)
    b = rng.multivariate_normal(mu2, s2, n)
    closed = frechet_distance(mu1, s1, mu2, s2)  # about 6.0
    assert abs(fid(a, a)) < 1e-6
    # sampling std of the estimate is about 0.055 here (100 repetitions)
    assert fid(a, b) == pytest.approx(closed, abs=0.25)
    assert fid(a, b) == pytest.approx(fid(b, a), rel=1e-9)
    assert fid(torch.from_numpy(a).float(), torch.from_numpy(b).float()) == pytest.approx(
        fid(a, b), rel=1e-4)
    mu, sigma = feature_statistics(a)
    assert np.allclose(mu, a.mean(0)) and np.allclose(sigma, np.cov(a, rowvar=False))


def _two_class_images(n_per_class: int = 200, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """8x8 grey images: class 0 bright on the left half, class 1 on the right; noisy."""
    gen = torch.Generator().manual_seed(seed)
    x = 0.15 * torch.rand(2 * n_per_class, 1, 8, 8, generator=gen)
    x[:n_per_class, :, :, :4] += 0.6
    x[n_per_class:, :, :, 4:] += 0.6
    x += 0.2 * torch.rand(x.shape, generator=gen)
    y = torch.cat([torch.zeros(n_per_class), torch.ones(n_per_class)]).long()
    perm = torch.randperm(len(x), generator=gen)
    return x[perm].clamp(0, 1), y[perm]


def test_classifier_features_train_cache_and_separate_classes(tmp_path, monkeypatch):
    x, y = _two_class_images()
    extractor = classifier_features("toy", x, y, cache_dir=tmp_path)
    assert isinstance(extractor, ClassifierFeatures)
    assert extractor.meta["test_accuracy"] >= 0.95
    assert extractor.meta["dataset"] == "toy" and extractor.meta["shape"] == [1, 8, 8]
    assert extractor.meta["num_classes"] == 2
    cached = list(tmp_path.glob("*.safetensors"))
    assert len(cached) == 1 and cached[0].name.startswith("classifier-toy-1x8x8-")
    assert extractor.name == f"classifier:toy:{extractor.meta['key'][:8]}"
    features = extractor(x)
    assert features.shape == (len(x), 128) and not features.requires_grad

    def no_training(*args, **kwargs):
        raise AssertionError("retrained although a cache exists")

    monkeypatch.setattr(fid_module, "_train_classifier", no_training)
    again = classifier_features("toy", x, y, cache_dir=tmp_path)
    assert torch.equal(again(x), features)
    assert again.meta["test_accuracy"] == extractor.meta["test_accuracy"]

    class0, class1 = features[y == 0], features[y == 1]
    half = len(class0) // 2
    between = fid(class0, class1)
    within = fid(class0[:half], class0[half:])
    assert between > 10 * within
    assert image_fid(again, x[y == 0], x[y == 1]) == pytest.approx(between, rel=1e-6)


def test_classifier_features_errors(tmp_path, monkeypatch):
    x, y = _two_class_images(50)
    with pytest.raises(WisealeError, match="labels"):
        classifier_features("toy", x, None, cache_dir=tmp_path)
    with pytest.raises(WisealeError, match=r"\[0, 1\]"):
        classifier_features("toy", 2 * x + 1, y, cache_dir=tmp_path)
    with pytest.raises(WisealeError, match="two classes"):
        classifier_features("toy", x, torch.zeros(len(x), dtype=torch.long), cache_dir=tmp_path)
    extractor = classifier_features("toy", x, y, cache_dir=tmp_path)
    (path,) = tmp_path.glob("classifier-toy-1x8x8-*.safetensors")
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(WisealeError, match="corrupt") as info:
        classifier_features("toy", x, y, cache_dir=tmp_path)
    assert "\n" not in str(info.value)
    path.unlink()
    extractor = classifier_features("toy", x, y, cache_dir=tmp_path)
    with pytest.raises(WisealeError, match="shape"):
        extractor(torch.rand(2, 1, 9, 9))
    # the default cache directory follows $WISEALE_CACHE
    monkeypatch.setenv("WISEALE_CACHE", str(tmp_path / "root"))
    classifier_features("toy", x, y)
    assert len(list((tmp_path / "root" / "fid").glob("classifier-toy-1x8x8-*.safetensors"))) == 1


def test_the_classifier_cache_is_keyed_by_content_not_by_name(tmp_path):
    """Issue 12, point 7: a different data set with the same name gets its own classifier
    (and another feature name); the same data is a cache hit."""
    x, y = _two_class_images()
    first = classifier_features("shapes", x, y, cache_dir=tmp_path)
    other = classifier_features("shapes", x.flip(-1), y, cache_dir=tmp_path)
    relabelled = classifier_features("shapes", x, 1 - y, cache_dir=tmp_path)
    assert len({first.name, other.name, relabelled.name}) == 3
    assert len(list(tmp_path.glob("*.safetensors"))) == 3
    again = classifier_features("shapes", x.clone(), y.clone(), cache_dir=tmp_path)
    assert again.name == first.name and len(list(tmp_path.glob("*.safetensors"))) == 3


def test_the_classifier_cache_is_keyed_by_the_classifiers_definition(tmp_path, monkeypatch):
    """Another learning rate or other layers on the same data: another classifier, not the
    cached one (issue 12, point 7)."""
    from torch import nn

    class _ClassifierNet(fid_module._ClassifierNet):  # the same name, 5x5 first kernels
        def __init__(self, shape, num_classes):
            super().__init__(shape, num_classes)
            self.body[0] = nn.Conv2d(shape[0], 16, 5, stride=2, padding=2)

    x, y = _two_class_images(50)
    names = {classifier_features("toy", x, y, cache_dir=tmp_path).name}
    with monkeypatch.context() as patch:
        patch.setattr(fid_module, "LR", fid_module.LR / 2)
        names.add(classifier_features("toy", x, y, cache_dir=tmp_path).name)
    with monkeypatch.context() as patch:
        patch.setattr(fid_module, "_ClassifierNet", _ClassifierNet)
        other = classifier_features("toy", x, y, cache_dir=tmp_path)
        names.add(other.name)
        assert other.net.body[0].kernel_size == (5, 5)
    assert len(names) == 3 and len(list(tmp_path.glob("*.safetensors"))) == 3


def test_inception_is_none_without_weights(monkeypatch, tmp_path):
    monkeypatch.delenv("WISEALE_INCEPTION", raising=False)
    assert inception_features() is None
    x, y = _two_class_images(50)
    assert isinstance(feature_extractor("toy", x, y, cache_dir=tmp_path), ClassifierFeatures)
    monkeypatch.setenv("WISEALE_INCEPTION", str(tmp_path / "missing.safetensors"))
    with pytest.raises(WisealeError, match="not found"):
        inception_features()


def test_inception_architecture_and_loading(random_inception, tmp_path):
    net = random_inception
    # torchvision's inception_v3 has 27,161,264 parameters; less AuxLogits (3,326,696) and
    # the 1000-class fc (2,049,000) leaves 21,785,568
    assert sum(p.numel() for p in net.parameters()) == 21_785_568
    path = tmp_path / "inception.safetensors"
    state = load_file(str(path))
    extractor = inception_features()
    assert extractor is not None
    images = torch.rand(2, 1, 28, 28)
    features = extractor(images)
    assert features.shape == (2, 2048)
    with torch.no_grad():
        resized = torch.nn.functional.interpolate(
            images.expand(-1, 3, -1, -1), size=(299, 299), mode="bilinear", align_corners=False)
        expected = net.eval()(2 * resized - 1)
    assert torch.allclose(features, expected, atol=1e-5)
    del state["Mixed_7c.branch_pool.conv.weight"]
    save_file(state, str(path))
    with pytest.raises(WisealeError, match="FID Inception weights"):
        inception_features(path)
    path.write_bytes(b"garbage")
    with pytest.raises(WisealeError, match="safetensors"):
        inception_features(path)


def test_fid_count_is_003s_and_warns_when_fewer_test_images_exist():
    """Issue 12, point 6: 10,000 images as 003 Table 2, all there are with a warning."""
    from wiseale.data import Dataset
    from wiseale.metrics.evaluation import FID_N, fid_count

    assert FID_N == 10_000
    small = Dataset("toy-test", torch.rand(30, 1, 8, 8))
    with pytest.warns(UserWarning, match="uses its 30 test images, fewer than the 10,000"):
        assert fid_count(small) == 30
    assert fid_count(small, 20) == 20


def test_sample_fid_compares_every_test_image_when_fewer_exist_and_warns():
    """Fewer test images than 10,000: all of them, as many samples, and the warning."""
    from wiseale.data import Dataset
    from wiseale.metrics import sample_fid

    class Noise:
        def sample(self, n, generator, sampler=None):
            return torch.rand(n, 1, 8, 8, generator=generator)

    seen = []

    def features(images):
        seen.append(images)
        return images.mean(dim=(2, 3)).double()

    test = Dataset("toy-test", torch.rand(30, 1, 8, 8))
    with pytest.warns(UserWarning, match="uses its 30 test images"):
        sample_fid(Noise(), test, test, features=features)
    assert [len(images) for images in seen] == [30, 30] and torch.equal(seen[0], test.floats())


class _Decoded:
    """A stand-in model whose samples are uniform noise images."""

    def sample(self, n, generator, sampler=None):
        return torch.rand(n, 3, 16, 16, generator=generator)


class _MeanColour:
    """Cheap features (each image's mean colour) that record what they were given."""

    name = "mean-colour"

    def __init__(self):
        self.seen = []

    def __call__(self, images):
        self.seen.append(images)
        return images.mean(dim=(2, 3)).double()


def test_sample_fid_of_unlabelled_images_uses_inception(random_inception):
    train = Dataset("faces-train", torch.rand(6, 3, 16, 16))
    test = Dataset("faces-test", torch.rand(5, 3, 16, 16))
    assert sample_features(train).name == "inception"
    features = _MeanColour()
    value = sample_fid(_Decoded(), train, test, n=4, features=features)
    reference, samples = features.seen
    assert torch.equal(reference, test.floats(slice(0, 4))) and samples.shape == (4, 3, 16, 16)
    assert value == pytest.approx(fid(reference.mean(dim=(2, 3)), samples.mean(dim=(2, 3))))


def test_sample_features_prefers_inception_and_names_the_fix(random_inception, monkeypatch):
    labelled = Dataset("toy-train", torch.rand(8, 1, 8, 8), torch.arange(8) % 2)
    assert sample_features(labelled).name == "inception"  # the papers' features when present
    monkeypatch.delenv("WISEALE_INCEPTION")
    assert sample_features(labelled).name.startswith("classifier:")
    with pytest.raises(WisealeError, match="needs images"):
        sample_features(Dataset("flat-train", torch.rand(8, 5)))
