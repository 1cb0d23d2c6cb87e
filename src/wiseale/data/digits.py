"""scikit-learn's 8x8 hand-written digits: a small, always-offline stand-in for MNIST
(001 Sec. 5, Fig. 1) that tests and quick runs can use without any download."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from wiseale.data.dataset import Dataset
from wiseale.data.idx import binarise, bool_option
from wiseale.extras import require

N_TOTAL = 1797  # images in sklearn.datasets.load_digits
N_TEST = 297  # the fixed test split; the other 1,500 are the training split
SPLIT_SEED = 0


def digits_split(labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sorted indices of the training and test images: ``train_test_split`` stratified by the
    digit ``labels`` with ``test_size=297`` and ``random_state=0`` (1,500 / 297, disjoint,
    fixed)."""
    train_test_split = require("sklearn.model_selection", "the 8x8 digits").train_test_split

    labels = _digits()[1] if labels is None else labels
    train, test = train_test_split(np.arange(N_TOTAL), test_size=N_TEST,
                                   random_state=SPLIT_SEED, stratify=labels)
    return np.sort(train), np.sort(test)


def _digits() -> tuple[np.ndarray, np.ndarray]:
    # bundled with scikit-learn: no download
    bunch = require("sklearn.datasets", "the 8x8 digits").load_digits()
    return bunch.images, bunch.target


def load_digits_data(split: str = "train", data_dir: str | Path | None = None,
                     binarize: bool = False) -> Dataset:
    """The ``split`` of the 8x8 digits (see :func:`digits_split`): x float32 [N, 1, 8, 8] with
    the 0..16 grey levels scaled to [0, 1], y int64 digit labels. ``binarize``: deterministic
    threshold binarisation (pixel >= 0.5 -> 1, else 0), as for binary MNIST (001 Sec. 5).
    ``data_dir`` is ignored (the data ships with scikit-learn)."""
    binarize = bool_option("binarize", binarize)
    images, labels = _digits()
    train, test = digits_split(labels)
    index = train if split == "train" else test
    x = torch.from_numpy((images[index] / 16.0).astype(np.float32)).unsqueeze(1)
    if binarize:
        x = binarise(x)
    y = torch.from_numpy(labels[index].astype(np.int64))
    return Dataset(f"digits-{split}", x, y)
