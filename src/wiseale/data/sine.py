"""The sine-wave data of 001 Sec. 5: x(t) = A sin(2 pi f t + phi) + eps, 256 samples in 1 s."""

from __future__ import annotations

import numpy as np
import torch

from wiseale.data.dataset import Dataset
from wiseale.errors import WisealeError

N_TOTAL = 200_000  # 001 Sec. 5
N_TEST = 20_000  # the last 10% of the 200,000 are the fixed test split (docs/deviations.md)
LENGTH = 256  # one second at 256 Hz (001 App. D.1)
NOISE_STD = 0.05  # "small random noise" (001 Sec. 5); the value is ours


def sine_waves(n: int, seed: int, noise_std: float = NOISE_STD,
               offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Waves ``offset .. offset + n`` of the seeded sequence, [n, 1, 256], and their factors
    (f ~ U(0, 20 Hz), phi ~ U(0, 2 pi), A ~ U(0, 2)), [n, 3]. For a given ``seed`` and
    ``offset``, wave k is the same whatever ``n`` is, so smaller runs use a prefix."""
    if offset + n > N_TOTAL:
        raise ValueError(f"the sine sequence holds {N_TOTAL} waves")
    unit = np.random.default_rng(seed).uniform(size=(N_TOTAL, 3))  # all factors: cheap
    freq, phase, amp = 20 * unit[:, 0], 2 * np.pi * unit[:, 1], 2 * unit[:, 2]
    t = np.arange(LENGTH) / LENGTH
    sl = slice(offset, offset + n)
    waves = amp[sl, None] * np.sin(2 * np.pi * freq[sl, None] * t + phase[sl, None])
    noise = np.random.default_rng([seed, 1, offset]).standard_normal((n, LENGTH))
    x = (waves + noise_std * noise).astype(np.float32)[:, None, :]
    factors = np.stack([freq[sl], phase[sl], amp[sl]], axis=1).astype(np.float32)
    return x, factors


def load_sine(split: str = "train", data_dir: object = None, n_train: int | None = None,
              n_test: int | None = None, seed: int = 0, noise_std: float = NOISE_STD) -> Dataset:
    """The first ``n_train`` of the 180,000 training waves or ``n_test`` of the 20,000 test
    waves. ``seed`` is the data seed (fixed by default, independent of the training seed);
    ``data_dir`` is ignored (the waves are generated)."""
    n_max = N_TOTAL - N_TEST if split == "train" else N_TEST
    n = n_train if split == "train" else n_test
    n = n_max if n is None else n
    if not 0 < n <= n_max:
        raise WisealeError(f"the sine {split} split holds 1 to {n_max} waves; got {n}")
    offset = 0 if split == "train" else N_TOTAL - N_TEST
    x, factors = sine_waves(n, seed, noise_std, offset)
    return Dataset(f"sine-{split}", torch.from_numpy(x), None, torch.from_numpy(factors))
