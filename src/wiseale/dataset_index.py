"""The named data sets: where each loader lives and a line about it, without importing the
loaders (``wiseale datasets`` answers without torch). ``wiseale.data.load`` calls them."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, NamedTuple


class Entry(NamedTuple):
    """A named data set: its loader ``module.function`` and a one-line summary."""

    module: str
    function: str
    summary: str

    @property
    def loader(self) -> Callable[..., Any]:
        return getattr(importlib.import_module(self.module), self.function)


def _entry(module: str, function: str, summary: str) -> Entry:
    return Entry(f"wiseale.data.{module}", function, summary)


DATASETS = {
    "sine": _entry("sine", "load_sine",
                   "sine waves of 001 Sec. 5 (generated, 200,000 by default)"),
    "mnist": _entry("idx", "load_mnist", "MNIST 28x28 digits, 60,000/10,000 (001 Sec. 5; "
                    "downloaded once if absent; binarize=true for binary MNIST)"),
    "fashion-mnist": _entry("idx", "load_fashion_mnist", "Fashion-MNIST 28x28, 60,000/10,000 "
                            "(Debian dataset-fashion-mnist or --data-dir)"),
    "digits": _entry("digits", "load_digits_data",
                     "scikit-learn 8x8 digits, 1,500/297 (offline)"),
    "celeba": _entry("celeba", "load_celeba", "CelebA aligned faces from --data-dir, centre "
                     "crop 178 (001 Sec. 5) or 140 (003) resized to 64x64; read from the uint8 "
                     ".npy files of `wiseale prepare celeba` when they are there"),
    "mog": _entry("mog", "load_mog", "four 2-D Gaussians projected into 100-D, 10,000/2,000 "
                  "(003 Sec. 6.1; generated)"),
    "reduced-mnist": _entry("mog", "load_reduced_mnist", "ReducedMNIST: the first 600 MNIST "
                            "training images, MNIST's 10,000 test images (003 Sec. 6.2)"),
    "reduced-fashion-mnist": _entry("mog", "load_reduced_fashion_mnist", "the first 600 "
                                    "Fashion-MNIST training images, its 10,000 test images "
                                    "(offline ReducedMNIST)"),
    "dsprites": _entry("shapes", "load_dsprites", "dSprites .npz from --data-dir, 5 factors, "
                       "seeded 90/10 split (Kim & Mnih 2018)"),
    "3dshapes": _entry("shapes", "load_3dshapes", "3D Shapes .h5 from --data-dir (needs h5py), "
                       "6 factors, seeded 90/10 split (003 Sec. 6.4)"),
    "toy-shapes": _entry("shapes", "load_toy_shapes", "64x64 squares with 4 known discrete "
                         "factors, 5,000/1,000 (generated stand-in for dSprites/3D Shapes)"),
}

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")  # Xiao et al. 2017
# the names of a data set's classes, where they are not their numbers
CLASS_NAMES = {"fashion-mnist": FASHION_MNIST_CLASSES,
               "reduced-fashion-mnist": FASHION_MNIST_CLASSES}
