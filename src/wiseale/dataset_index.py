"""The named data sets: where each loader lives and a line about it, without importing the
loaders (``wiseale datasets`` answers without torch). ``wiseale.data.load`` calls them."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, NamedTuple

from wiseale.registry import Registry


class Entry(NamedTuple):
    """A named data set: its name, its loader ``module.function`` (imported on first use)
    and a one-line summary."""

    name: str
    module: str
    function: str
    summary: str

    @property
    def loader(self) -> Callable[..., Any]:
        return getattr(importlib.import_module(self.module), self.function)


DATASETS: Registry[Entry] = Registry("data set")
for _entry in (
        Entry("sine", "wiseale.data.sine", "load_sine",
              "sine waves of 001 Sec. 5 (generated, 200,000 by default)"),
        Entry("mnist", "wiseale.data.idx", "load_mnist",
              "MNIST 28x28 digits, 60,000/10,000 (001 Sec. 5; downloaded once if absent; "
              "binarize=true for binary MNIST)"),
        Entry("fashion-mnist", "wiseale.data.idx", "load_fashion_mnist",
              "Fashion-MNIST 28x28, 60,000/10,000 (Debian dataset-fashion-mnist or --data-dir)"),
        Entry("digits", "wiseale.data.digits", "load_digits_data",
              "scikit-learn 8x8 digits, 1,500/297 (offline)"),
        Entry("celeba", "wiseale.data.celeba", "load_celeba",
              "CelebA aligned faces from --data-dir, centre crop 178 (001 Sec. 5) or 140 (003) "
              "resized to 64x64; read from the uint8 .npy files of `wiseale prepare celeba` when "
              "they are there"),
        Entry("mog", "wiseale.data.mog", "load_mog",
              "four 2-D Gaussians projected into 100-D, 10,000/2,000 (003 Sec. 6.1; generated)"),
        Entry("reduced-mnist", "wiseale.data.mog", "load_reduced_mnist",
              "ReducedMNIST: the first 600 MNIST training images, MNIST's 10,000 test images "
              "(003 Sec. 6.2)"),
        Entry("reduced-fashion-mnist", "wiseale.data.mog", "load_reduced_fashion_mnist",
              "the first 600 Fashion-MNIST training images, its 10,000 test images (offline "
              "ReducedMNIST)"),
        Entry("dsprites", "wiseale.data.shapes", "load_dsprites",
              "dSprites .npz from --data-dir, 5 factors, seeded 90/10 split (Kim & Mnih 2018)"),
        Entry("3dshapes", "wiseale.data.shapes", "load_3dshapes",
              "3D Shapes .h5 from --data-dir (needs h5py), 6 factors, seeded 90/10 split (003 "
              "Sec. 6.4)"),
        Entry("toy-shapes", "wiseale.data.shapes", "load_toy_shapes",
              "64x64 squares with 4 known discrete factors, 5,000/1,000 (generated stand-in for "
              "dSprites/3D Shapes)")):
    DATASETS.register(_entry)

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")  # Xiao et al. 2017
# the names of a data set's classes, where they are not their numbers
CLASS_NAMES = {"fashion-mnist": FASHION_MNIST_CLASSES,
               "reduced-fashion-mnist": FASHION_MNIST_CLASSES}
