"""The small data sets of the VCAE paper (003): the MoG toy (Sec. 6.1) and ReducedMNIST (Sec. 6.2).

MoG: 003 Sec. 6.1 says only "a mixture of four two-dimensional Gaussians (Fig. 2a) projected
into a 100-dimensional space"; the rest is ours. Four equally likely isotropic Gaussians with
means (1, 1), (-1, 1), (-1, -1), (1, -1) (label = component index, in that order) and std
0.25 (variance 0.0625; the clusters are well apart, as in Fig. 2a), mapped to 100-D by
x = A s with A a fixed 100 x 2 matrix with orthonormal columns (QR of a seeded Gaussian
matrix), so distances and squared errors in 100-D equal those in 2-D. No noise is added: the
data lie exactly in a 2-D subspace. Splits: 10,000 training and 2,000 test points.

ReducedMNIST: 003 Sec. 6.2 / App. B.1 use "a 600 sample subset of the MNIST training data"
without saying which; we take the first 600 images of the published training split (their
classes are close to balanced; option ``seed``: a seeded random 600, which
``--data-seed`` sets) and the full 10,000-image test split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from wiseale.data.dataset import Dataset
from wiseale.data.idx import load_fashion_mnist, load_mnist
from wiseale.errors import WisealeError, positive_int, seed_int

MEANS = np.array([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])  # our choice
STD = 0.25  # per coordinate; our choice
DIM = 100  # 003 Sec. 6.1
N_TRAIN, N_TEST = 10_000, 2_000  # not given in 003; ours
REDUCED_SIZE = 600  # 003 Sec. 6.2


def mog_projection(seed: int = 0) -> np.ndarray:
    """The fixed 100 x 2 matrix with orthonormal columns that maps the 2-D points to 100-D."""
    gaussian = np.random.default_rng([seed, 2]).standard_normal((DIM, 2))
    q, _ = np.linalg.qr(gaussian)
    return q


def mog_points(n: int, seed: int = 0, split: str = "train",
               std: float = STD) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` 2-D points of ``split``, [n, 2], and their component indices, [n].
    Point k is the same whatever ``n`` is (each quantity has its own stream)."""
    stream = 0 if split == "train" else 1
    labels = np.floor(np.random.default_rng([seed, stream, 0]).random(n) * 4).astype(np.int64)
    noise = np.random.default_rng([seed, stream, 1]).standard_normal((n, 2))
    return MEANS[labels] + std * noise, labels


def load_mog(split: str = "train", data_dir: object = None, n_train: int = N_TRAIN,
             n_test: int = N_TEST, seed: int = 0, std: float = STD) -> Dataset:
    """The MoG toy of 003 Sec. 6.1 (generated; ``data_dir`` is ignored): x float32 [N, 100],
    y the component index, factors the 2-D source points [N, 2]. ``seed`` fixes the points and
    the projection; the train and test splits use independent streams."""
    n = positive_int(n_train if split == "train" else n_test,
                     "option n_train" if split == "train" else "option n_test")
    if not std > 0:
        raise WisealeError(f"option std must be positive, got {std!r}")
    points, labels = mog_points(n, seed, split, std)
    x = (points @ mog_projection(seed).T).astype(np.float32)
    return Dataset(f"mog-{split}", torch.from_numpy(x), torch.from_numpy(labels),
                   torch.from_numpy(points.astype(np.float32)))


def _reduce(data: Dataset, name: str, split: str, seed: int | None) -> Dataset:
    """The training split's first REDUCED_SIZE images, or with ``seed`` a seeded random choice
    of them; the test split whole."""
    if split != "train":
        return data.renamed(f"{name}-{split}")
    if len(data) < REDUCED_SIZE:
        raise WisealeError(f"{name}: the training split holds {len(data)} images, fewer than "
                           f"{REDUCED_SIZE}; use the full training files")
    if seed is None:
        return data.head(REDUCED_SIZE).renamed(f"{name}-train")
    chosen = np.random.default_rng([seed_int(seed, "option seed"), 3]).choice(
        len(data), REDUCED_SIZE, replace=False)
    return data.subset(np.sort(chosen)).renamed(f"{name}-train")


def load_reduced_mnist(split: str = "train", data_dir: str | Path | None = None,
                       binarize: bool = False, seed: int | None = None) -> Dataset:
    """ReducedMNIST (003 Sec. 6.2): the first 600 MNIST training images (``seed``: a seeded
    random 600); test is MNIST's."""
    return _reduce(load_mnist(split, data_dir, binarize), "reduced-mnist", split, seed)


def load_reduced_fashion_mnist(split: str = "train", data_dir: str | Path | None = None,
                               binarize: bool = False, seed: int | None = None) -> Dataset:
    """ReducedMNIST's offline stand-in: the first 600 Fashion-MNIST training images (``seed``:
    a seeded random 600)."""
    return _reduce(load_fashion_mnist(split, data_dir, binarize), "reduced-fashion-mnist",
                   split, seed)
