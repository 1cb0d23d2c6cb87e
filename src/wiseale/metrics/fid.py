"""Frechet distance between feature statistics (FID) with a pluggable feature extractor.

FID(a, b) = ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2}), the Frechet (2-Wasserstein)
distance between the Gaussians with the mean and covariance of two feature sets.

Two feature extractors are provided:

- :func:`inception_features`: the FID Inception network of ``pytorch_fid`` (TensorFlow's
  2015-12-05 Inception weights, pool3 features, 2048-d), built here without torchvision. Its
  weights are never downloaded and never unpickled: it is available only when ``$WISEALE_INCEPTION``
  (or ``path``) names a *safetensors* copy of ``pt_inception-2015-12-05-6726825d.pth``.
- :func:`classifier_features`: the 128-d penultimate activations of a small CNN classifier that
  wiseale trains once per data set and caches. **FIDs measured with it are not comparable with
  Inception FIDs, nor with classifier FIDs of another data set or another cached network**; they
  only rank models evaluated with the same cached network.

:func:`feature_extractor` picks Inception when its weights are available, else the classifier.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn
from torch.nn import functional as TF

from wiseale.errors import WisealeError
from wiseale.storage import load_tensors, save_tensors

ArrayLike = Tensor | np.ndarray

log = logging.getLogger(__name__)  # progress of long steps (the CLI shows INFO)
CLASSIFIER_KIND = "fid-classifier"
CLASSIFIER_VERSION = 2  # bump when its training code changes (the net's layers are in the key)
FEATURE_DIM = 128
TRAIN_SEED = 0
EPOCHS = 2
MIN_STEPS = 300  # small data sets train for more epochs, so that every data set gets >= this
BATCH_SIZE = 256
LR = 2e-3
HELD_OUT = 0.1
INCEPTION_ENV = "WISEALE_INCEPTION"
CACHE_ENV = "WISEALE_CACHE"


# --------------------------------------------------------------------------------------------
# The distance


def _float64(value: ArrayLike, what: str) -> np.ndarray:
    if isinstance(value, Tensor):
        value = value.detach().cpu().double().numpy()
    array = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        raise WisealeError(f"{what} has NaN or infinite entries")
    return array


def _psd(eigvals: np.ndarray, what: str) -> np.ndarray:
    """A covariance's eigenvalues with round-off negative ones set to 0; an error if one is
    clearly negative."""
    scale = max(float(np.abs(eigvals).max(initial=0.0)), np.finfo(np.float64).tiny)
    if eigvals.min(initial=0.0) < -1e-6 * scale:
        raise WisealeError(f"{what} is not positive semi-definite (eigenvalue "
                           f"{eigvals.min():.3g}); is it a covariance matrix?")
    return np.clip(eigvals, 0.0, None)


def frechet_distance(mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike,
                     sigma2: ArrayLike) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2}), in float64.

    The trace term uses the symmetric form Tr (S1 S2)^{1/2} = sum_i sqrt(l_i), l_i the
    eigenvalues of M = S1^{1/2} S2 S1^{1/2} (S1 S2 and M share their eigenvalues, which are
    real and >= 0). S1^{1/2} and the l_i come from ``eigh`` of symmetric matrices, so singular
    or rank-deficient covariances (fewer samples than features, dead ReLU units) need no eps*I
    offset, and no imaginary parts arise, unlike ``scipy.linalg.sqrtm`` of the non-symmetric
    S1 S2. Round-off negative eigenvalues are clipped to 0; so is a result of order -1e-15.
    """
    m1, m2 = _float64(mu1, "mu1"), _float64(mu2, "mu2")
    s1, s2 = _float64(sigma1, "sigma1"), _float64(sigma2, "sigma2")
    d = m1.shape[0] if m1.ndim == 1 else -1
    if m1.shape != (d,) or m2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise WisealeError(f"frechet_distance needs means of shape (d,) and covariances (d, d) "
                           f"with one d; got {m1.shape}, {s1.shape}, {m2.shape}, {s2.shape}")
    s1, s2 = (s1 + s1.T) / 2, (s2 + s2.T) / 2
    eigvals1, eigvecs1 = np.linalg.eigh(s1)
    eigvals1 = _psd(eigvals1, "sigma1")
    _psd(np.linalg.eigvalsh(s2), "sigma2")  # only checked: its eigenvalues suffice
    root1 = (eigvecs1 * np.sqrt(eigvals1)) @ eigvecs1.T
    middle = root1 @ s2 @ root1
    lambdas = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_sqrt = float(np.sqrt(np.clip(lambdas, 0.0, None)).sum())
    diff = m1 - m2
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * trace_sqrt)
    return max(value, 0.0)


def feature_statistics(features: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """(mean [F], covariance [F, F]) of features [N, F] in float64; the covariance is unbiased
    (divides by N - 1), as in the reference FID implementations."""
    array = _float64(features, "features")
    if array.ndim != 2 or array.shape[0] < 2:
        raise WisealeError(f"features must have shape [N, F] with N >= 2; got {array.shape}")
    return array.mean(axis=0), np.atleast_2d(np.cov(array, rowvar=False))


def fid(features_a: ArrayLike, features_b: ArrayLike) -> float:
    """The Frechet distance between the statistics of two feature sets [N_a, F], [N_b, F]."""
    return frechet_distance(*feature_statistics(features_a), *feature_statistics(features_b))


# --------------------------------------------------------------------------------------------
# Feature extractors


class FeatureExtractor(Protocol):
    """Images [N, C, H, W] float in [0, 1] -> features [N, F]; batched, without gradients.
    ``name`` says which features (FIDs in different features are not comparable)."""

    name: str

    def __call__(self, images: Tensor) -> Tensor: ...


def image_fid(extractor: FeatureExtractor | Callable[[Tensor], Tensor], images_a: Tensor,
              images_b: Tensor) -> float:
    """FID between two image sets [N, C, H, W] in [0, 1], in ``extractor``'s feature space."""
    return fid(extractor(images_a), extractor(images_b))


def _check_images(images: Any, what: str = "images") -> Tensor:
    images = torch.as_tensor(images)
    if images.ndim != 4 or not images.is_floating_point():
        raise WisealeError(f"{what} must be a float tensor [N, C, H, W]; got "
                           f"{tuple(images.shape)} {images.dtype}")
    if images.numel() and (images.amin() < 0 or images.amax() > 1):
        raise WisealeError(f"{what} must lie in [0, 1]; got [{images.amin().item():.3g}, "
                           f"{images.amax().item():.3g}]")
    return images


@torch.no_grad()
def _batched(net: nn.Module, images: Tensor, batch_size: int,
             prepare: Callable[[Tensor], Tensor] = lambda batch: batch) -> Tensor:
    was_training = net.training
    net.eval()
    try:
        outs = [net(prepare(batch.float())) for batch in images.split(batch_size)]
    finally:
        net.train(was_training)
    return torch.cat(outs) if outs else images.new_zeros(0, 0)


# --- classifier features ---------------------------------------------------------------------


class _ClassifierNet(nn.Module):
    """Two strided 3x3 conv layers (16 and 32 channels), average-pooled to at most 8x8, a
    128-unit penultimate layer (the features) and a linear head. Strided convolutions rather
    than max pooling: CPU training is several times faster."""

    def __init__(self, shape: list[int], num_classes: int) -> None:
        super().__init__()
        channels, height, width = shape
        h, w = (height + 3) // 4, (width + 3) // 4  # ceil(ceil(size / 2) / 2)
        pool: list[nn.Module] = []
        if h > 8 or w > 8:
            h, w = min(h, 8), min(w, 8)
            pool = [nn.AdaptiveAvgPool2d((h, w))]
        self.body = nn.Sequential(
            nn.Conv2d(channels, 16, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(), *pool, nn.Flatten(),
            nn.Linear(32 * h * w, FEATURE_DIM), nn.ReLU(),
        )
        self.head = nn.Linear(FEATURE_DIM, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


class ClassifierFeatures:
    """The penultimate (post-ReLU, 128-d) activations of a small trained CNN classifier.

    ``meta`` records the data set name, input shape [C, H, W], number of classes and held-out
    test accuracy. Build it with :func:`classifier_features`.
    """

    def __init__(self, net: _ClassifierNet, meta: dict[str, Any], batch_size: int = 1024) -> None:
        self.net = net.eval()
        self.meta = meta
        self.batch_size = batch_size
        self.name = f"classifier:{meta['dataset']}:{meta['key'][:8]}"

    def __call__(self, images: Tensor) -> Tensor:
        images = _check_images(images)
        if list(images.shape[1:]) != list(self.meta["shape"]):
            raise WisealeError(f"the {self.name} features take images of shape "
                               f"{tuple(self.meta['shape'])}; got {tuple(images.shape[1:])}")
        return _batched(self.net.body, images, self.batch_size)


def default_cache_dir() -> Path:
    """``$WISEALE_CACHE/fid``, else ``~/.cache/wiseale/fid``."""
    root = os.environ.get(CACHE_ENV)
    return (Path(root) if root else Path.home() / ".cache" / "wiseale") / "fid"


def _cache_key(x: Tensor, y: Tensor, num_classes: int) -> str:
    """SHA-256 of the training images and labels and of the classifier's definition (its
    version, training hyper-parameters and seed, and its layers as printed by PyTorch): the
    cache's key, so a different data set that has the same name, or another classifier, gets
    its own file."""
    with torch.device("meta"):  # no weights, no draw from the global RNG
        layers = repr(_ClassifierNet([int(s) for s in x.shape[1:]], num_classes))
    sha = hashlib.sha256(json.dumps(
        [CLASSIFIER_KIND, CLASSIFIER_VERSION, LR, BATCH_SIZE, EPOCHS, MIN_STEPS, HELD_OUT,
         FEATURE_DIM, TRAIN_SEED, layers, list(x.shape), str(x.dtype)]).encode())
    sha.update(x.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    sha.update(y.detach().cpu().to(torch.int64).contiguous().numpy().tobytes())
    return sha.hexdigest()


def _cache_path(cache_dir: Path, name: str, shape: tuple[int, ...], key: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "data"
    return cache_dir / f"classifier-{slug}-{'x'.join(map(str, shape))}-{key[:16]}.safetensors"


def _labels(y: Any, n: int) -> tuple[Tensor, int]:
    """Labels as 0..K-1 (the sorted distinct values of ``y``) and K."""
    if y is None:
        raise WisealeError("classifier FID features need the data set's labels (y); got None")
    labels = torch.as_tensor(np.asarray(y) if not isinstance(y, Tensor) else y).flatten()
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise WisealeError(f"labels must be integers; got {labels.dtype}")
    if labels.numel() != n:
        raise WisealeError(f"{n} images but {labels.numel()} labels")
    classes, index = torch.unique(labels, return_inverse=True)
    if len(classes) < 2:
        raise WisealeError("classifier FID features need at least two classes in y")
    return index, len(classes)


def _train_classifier(x: Tensor, y: Tensor, num_classes: int,
                      seed: int = TRAIN_SEED) -> tuple[_ClassifierNet, float, dict[str, int]]:
    """Train on a seeded 90% of (x, y) with Adam; (net, accuracy on the other 10%, counts)."""
    n = len(x)
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=gen)
    n_test = max(1, round(HELD_OUT * n))
    test_idx, train_idx = perm[:n_test], perm[n_test:]
    if len(train_idx) == 0:
        raise WisealeError(f"too few images ({n}) to train the FID classifier")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = _ClassifierNet(list(x.shape[1:]), num_classes)
    optimizer = torch.optim.Adam(net.parameters(), lr=LR)
    steps_per_epoch = math.ceil(len(train_idx) / BATCH_SIZE)
    epochs = max(EPOCHS, math.ceil(MIN_STEPS / steps_per_epoch))
    log.info("training the FID feature classifier once (%d images, %d epochs; cached after)",
             len(train_idx), epochs)
    net.train()
    for _ in range(epochs):
        order = train_idx[torch.randperm(len(train_idx), generator=gen)]
        for idx in order.split(BATCH_SIZE):
            loss = TF.cross_entropy(net(x[idx].float()), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    logits = _batched(net, x[test_idx], 1024)
    accuracy = (logits.argmax(1) == y[test_idx]).float().mean().item()
    return net.eval(), accuracy, {"epochs": epochs, "n_train": len(train_idx), "n_test": n_test}


def _load_classifier(path: Path, name: str, shape: list[int], num_classes: int,
                     key: str) -> ClassifierFeatures:
    hint = f"delete {path} to retrain it"
    try:
        tensors, meta = load_tensors(path)
    except WisealeError as exc:  # corrupt, truncated, without its digest
        raise WisealeError(f"{exc}; {hint}") from None
    expected = {"kind": CLASSIFIER_KIND, "version": CLASSIFIER_VERSION, "dataset": name,
                "shape": shape, "key": key}
    for field, value in expected.items():
        if meta.get(field) != value:
            raise WisealeError(f"{path} has {field}={meta.get(field)!r}, expected {value!r}; "
                               f"{hint}")
    if meta.get("num_classes") != num_classes:
        raise WisealeError(f"{path} was trained on {meta.get('num_classes')} classes but y has "
                           f"{num_classes}; {hint}")
    net = _ClassifierNet(shape, num_classes)
    try:
        net.load_state_dict(tensors)
    except RuntimeError:
        raise WisealeError(f"{path} does not hold this version's classifier weights; "
                           f"{hint}") from None
    return ClassifierFeatures(net, meta)


def classifier_features(name: str, x: Tensor, y: Any,
                        cache_dir: str | Path | None = None) -> ClassifierFeatures:
    """Features of a small CNN classifier trained on the labelled set (x [N, C, H, W] in
    [0, 1], y [N] integer labels), trained once per content: the key is a SHA-256 of x, y and
    the classifier's definition (:func:`_cache_key`), so two data sets with the same ``name``
    get two classifiers, and ``name`` (``classifier:<name>:<key prefix>``) tells them apart.

    The first call trains (seeded; Adam 2e-3, batch 256, 2 epochs or 300 steps if that is more;
    10% held out for the test accuracy) and saves the weights to ``cache_dir`` (default
    :func:`default_cache_dir`) as ``classifier-<name>-<C>x<H>x<W>-<key>.safetensors`` with JSON
    meta: data set, shape, number of classes, test accuracy, key. Later calls with the same
    data load that file without retraining. A cache
    file that is corrupt, of another version or for another number of classes is refused with
    a one-line :class:`WisealeError` that says to delete it; it is never silently retrained, as
    that would change the yardstick of FIDs already measured with it.

    These FIDs are comparable only with FIDs measured with the same cached network, never with
    Inception FIDs.
    """
    x = _check_images(x, "x")
    y_index, num_classes = _labels(y, len(x))
    shape = [int(s) for s in x.shape[1:]]
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = _cache_key(x, y_index, num_classes)
    path = _cache_path(folder, name, tuple(shape), key)
    if path.exists():
        return _load_classifier(path, name, shape, num_classes, key)
    net, accuracy, counts = _train_classifier(x, y_index, num_classes)
    meta = {"kind": CLASSIFIER_KIND, "version": CLASSIFIER_VERSION, "dataset": name,
            "shape": shape, "key": key, "num_classes": num_classes, "test_accuracy": accuracy,
            "feature_dim": FEATURE_DIM, "seed": TRAIN_SEED, "torch": torch.__version__, **counts}
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WisealeError(f"cannot create the FID cache {folder}: {exc.strerror or exc}; "
                           f"set ${CACHE_ENV} or pass cache_dir") from None
    save_tensors(path, net.state_dict(), meta)
    return ClassifierFeatures(net, load_tensors(path)[1])


# --- Inception features ----------------------------------------------------------------------


class _Conv(nn.Module):
    """Conv (no bias) + batch norm (eps 1e-3) + ReLU: torchvision's ``BasicConv2d``."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int],
                 stride: int = 1, padding: int | tuple[int, int] = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return TF.relu(self.bn(self.conv(x)))


def _avg_pool(x: Tensor) -> Tensor:
    # TensorFlow's average pool ignores the padding (pytorch_fid's FID patch)
    return TF.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class _MixedA(nn.Module):
    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = _Conv(cin, 64, 1)
        self.branch5x5_1 = _Conv(cin, 48, 1)
        self.branch5x5_2 = _Conv(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _Conv(cin, 64, 1)
        self.branch3x3dbl_2 = _Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, 3, padding=1)
        self.branch_pool = _Conv(cin, pool_features, 1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_avg_pool(x)),
        ], 1)


class _MixedB(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = _Conv(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = _Conv(cin, 64, 1)
        self.branch3x3dbl_2 = _Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            TF.max_pool2d(x, 3, stride=2),
        ], 1)


class _MixedC(nn.Module):
    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        self.branch1x1 = _Conv(cin, 192, 1)
        self.branch7x7_1 = _Conv(cin, c7, 1)
        self.branch7x7_2 = _Conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = _Conv(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = _Conv(cin, c7, 1)
        self.branch7x7dbl_2 = _Conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = _Conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = _Conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = _Conv(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = _Conv(cin, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        dbl = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                      self.branch7x7dbl_5):
            dbl = layer(dbl)
        return torch.cat([
            self.branch1x1(x),
            self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
            dbl,
            self.branch_pool(_avg_pool(x)),
        ], 1)


class _MixedD(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = _Conv(cin, 192, 1)
        self.branch3x3_2 = _Conv(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _Conv(cin, 192, 1)
        self.branch7x7x3_2 = _Conv(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _Conv(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _Conv(192, 192, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b7 = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = layer(b7)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7,
                          TF.max_pool2d(x, 3, stride=2)], 1)


class _MixedE(nn.Module):
    def __init__(self, cin: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool  # the FID net's last block max-pools (pytorch_fid's E_2)
        self.branch1x1 = _Conv(cin, 320, 1)
        self.branch3x3_1 = _Conv(cin, 384, 1)
        self.branch3x3_2a = _Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _Conv(cin, 448, 1)
        self.branch3x3dbl_2 = _Conv(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _Conv(cin, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_1(x)
        dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = TF.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg_pool(x)
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(b3), self.branch3x3_2b(b3),
            self.branch3x3dbl_3a(dbl), self.branch3x3dbl_3b(dbl),
            self.branch_pool(pooled),
        ], 1)


class _FIDInception(nn.Module):
    """pytorch_fid's FID Inception v3 up to the pool3 features (2048-d), parameter names as
    torchvision's ``Inception3`` so that its state dict loads unchanged (``fc.*`` ignored)."""

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = _Conv(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _Conv(32, 32, 3)
        self.Conv2d_2b_3x3 = _Conv(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = _Conv(64, 80, 1)
        self.Conv2d_4a_3x3 = _Conv(80, 192, 3)
        self.Mixed_5b = _MixedA(192, 32)
        self.Mixed_5c = _MixedA(256, 64)
        self.Mixed_5d = _MixedA(288, 64)
        self.Mixed_6a = _MixedB(288)
        self.Mixed_6b = _MixedC(768, 128)
        self.Mixed_6c = _MixedC(768, 160)
        self.Mixed_6d = _MixedC(768, 160)
        self.Mixed_6e = _MixedC(768, 192)
        self.Mixed_7a = _MixedD(768)
        self.Mixed_7b = _MixedE(1280, max_pool=False)
        self.Mixed_7c = _MixedE(2048, max_pool=True)

    def forward(self, x: Tensor) -> Tensor:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = TF.max_pool2d(x, 3, stride=2)
        x = TF.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), 3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return TF.adaptive_avg_pool2d(x, 1).flatten(1)


def _inception_input(batch: Tensor) -> Tensor:
    if batch.shape[1] == 1:
        batch = batch.expand(-1, 3, -1, -1)
    batch = TF.interpolate(batch, size=(299, 299), mode="bilinear", align_corners=False)
    return 2 * batch - 1


class InceptionFeatures:
    """Pool3 features [N, 2048] of the FID Inception net, computed as ``pytorch_fid`` does:
    grey images repeated to RGB, bilinear resize to 299x299, scaled to [-1, 1]."""

    name = "inception"

    def __init__(self, net: _FIDInception, batch_size: int = 64) -> None:
        self.net = net.eval()
        self.batch_size = batch_size

    def __call__(self, images: Tensor) -> Tensor:
        images = _check_images(images)
        if images.shape[1] not in (1, 3):
            raise WisealeError(f"Inception features need 1 or 3 channels; got {images.shape[1]}")
        return _batched(self.net, images, self.batch_size, _inception_input)


def inception_features(path: str | Path | None = None) -> InceptionFeatures | None:
    """The FID Inception extractor, or None when its weights are not available locally.

    The weights are read from ``path``, else ``$WISEALE_INCEPTION``: a safetensors file with
    the state dict of ``pytorch_fid``'s ``pt_inception-2015-12-05-6726825d.pth`` (torchvision
    ``Inception3`` names; ``fc.*`` and ``AuxLogits.*`` are ignored). wiseale never unpickles,
    so convert that file once yourself (``torch.load`` defaults to ``weights_only=True``)::

        from safetensors.torch import save_file
        import torch
        state = torch.load("pt_inception-2015-12-05-6726825d.pth")
        save_file(state, "fid_inception.safetensors")

    Returns None when neither is set; a named file that is missing or does not hold these
    weights gives a one-line :class:`WisealeError` rather than a silent fallback.
    """
    source = path if path is not None else os.environ.get(INCEPTION_ENV) or None
    if source is None:
        return None
    source = Path(source)
    if not source.is_file():
        raise WisealeError(f"Inception weights {source} not found; fix ${INCEPTION_ENV} or "
                           "unset it to use classifier features")
    try:
        state = load_file(str(source))
    except (SafetensorError, OSError, ValueError) as exc:
        raise WisealeError(f"{source} is not a readable safetensors file ({exc}); convert "
                           "pt_inception-2015-12-05-6726825d.pth to safetensors") from None
    state = {key: value for key, value in state.items()
             if not key.startswith(("fc.", "AuxLogits."))}
    net = _FIDInception()
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else exc
        raise WisealeError(f"{source} does not hold the FID Inception weights ({first})") from None
    return InceptionFeatures(net)


def feature_extractor(name: str, x: Tensor, y: Any, cache_dir: str | Path | None = None,
                      ) -> InceptionFeatures | ClassifierFeatures:
    """Inception features when their weights are available locally (see
    :func:`inception_features`), else :func:`classifier_features` of the labelled set (x, y);
    unlabelled images (``y`` None) need Inception. Record the extractor's ``name`` with every
    FID: the two are not comparable."""
    inception = inception_features()
    if inception is not None:
        return inception
    if y is None:
        raise WisealeError(f"the FID of {name} needs Inception features (it has no labels to "
                           f"train classifier features on): set ${INCEPTION_ENV} to a "
                           "safetensors copy of the FID Inception weights (docs/metrics.md)")
    return classifier_features(name, x, y, cache_dir)
