"""The FactorVAE disentanglement score of Kim & Mnih (2018), as reported by 003.

Kim, H. and Mnih, A. "Disentangling by Factorising", ICML 2018, Sec. 4 ("a new metric").
003 (VCAE) Sec. 6.4, Table 3 and Table 10 report it ("Score", "D-Score") for TC-VCAE,
TC-cWAE and FactorVAE on 3D Shapes with six latent dimensions, following Kim & Mnih's setup
(003 App. B.5).

Protocol (``factorvae_score``):

1. Encode ``global_n`` random images with the posterior mean and take the (population) std
   ``s_j`` of every latent dimension over them.
2. Prune the dimensions with ``s_j < prune_threshold`` (collapsed: they carry no information
   about the image, and dividing by their near-zero std would blow them up).
3. One *vote*: pick a factor ``k`` uniformly, then one of its values uniformly among the values
   present in the data set, draw ``batch_size`` images whose factor ``k`` has that value (without
   replacement when the data set has at least ``batch_size`` of them, with replacement
   otherwise), encode them, divide each kept dimension by ``s_j`` and take its empirical
   (unbiased) variance over the batch. The vote is ``(argmin_j variance_j, k)``: the dimension
   that varies least when ``k`` is held fixed.
4. The majority-vote classifier maps each kept dimension to the factor it voted for most often
   in the *training* votes (ties: the lowest factor index). A kept dimension that never won a
   training vote maps to ``None`` and any evaluation vote it wins counts as an error (Kim &
   Mnih's reference code maps it to factor 0 instead, an arbitrary and possibly lucky guess).
5. ``score``: the classifier's accuracy on ``n_eval_votes`` *separate* evaluation votes;
   ``train_accuracy``: its accuracy on the training votes (an optimistic number, kept as a
   diagnostic).

The global sample, the training votes and the evaluation votes draw from three independent
streams of one ``numpy.random.SeedSequence(seed)``: the global torch and numpy RNGs are never
touched, the training votes (and so the classifier) do not depend on ``n_eval_votes``, and the
evaluation votes do not depend on ``n_train_votes``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from wiseale.errors import WisealeError

__all__ = ["factorvae_score"]


def _as_numpy_factors(factors: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(factors, Tensor):
        factors = factors.detach().cpu().numpy()
    factors = np.asarray(factors)
    if factors.ndim != 2 or factors.shape[0] == 0 or factors.shape[1] == 0:
        raise WisealeError(f"factors must have shape [N, K] with N, K > 0, got "
                           f"{tuple(factors.shape)}")
    if not np.issubdtype(factors.dtype, np.integer):
        if not np.all(np.equal(np.mod(factors, 1), 0)):
            raise WisealeError("factors must be integer factor classes (one column per factor)")
        factors = factors.astype(np.int64)
    return factors


@torch.no_grad()
def _encode_indices(encode: Callable[[Tensor], Tensor],
                    sample_images: Callable[[Tensor], Tensor],
                    indices: np.ndarray, chunk_size: int) -> np.ndarray:
    """Posterior means of the images at ``indices``, as a float64 array [len(indices), d]."""
    out = []
    for start in range(0, len(indices), chunk_size):
        idx = torch.as_tensor(indices[start:start + chunk_size], dtype=torch.long)
        z = encode(sample_images(idx))
        z = torch.as_tensor(z)
        if z.dim() != 2 or z.shape[0] != len(idx):
            raise WisealeError(f"encode must map {len(idx)} images to latents [{len(idx)}, d], "
                               f"got shape {tuple(z.shape)}")
        out.append(z.detach().to("cpu", torch.float64).numpy())
    return np.concatenate(out, axis=0)


def _draw_votes(n_votes: int, rng: np.random.Generator, factor_values: list[np.ndarray],
                value_indices: list[list[np.ndarray]], batch_size: int) -> tuple[np.ndarray,
                                                                                np.ndarray]:
    """(factor of each vote [n_votes], data indices of each vote [n_votes, batch_size])."""
    n_factors = len(factor_values)
    ks = rng.integers(n_factors, size=n_votes)
    batches = np.empty((n_votes, batch_size), dtype=np.int64)
    for v, k in enumerate(ks):
        pool = value_indices[k][rng.integers(len(factor_values[k]))]
        batches[v] = rng.choice(pool, size=batch_size, replace=len(pool) < batch_size)
    return ks, batches


def _vote_dims(encode: Callable[[Tensor], Tensor], sample_images: Callable[[Tensor], Tensor],
               batches: np.ndarray, active: np.ndarray, global_std: np.ndarray,
               chunk_size: int) -> np.ndarray:
    """Argmin dimension (an index into ``active``) of the normalised variance of each vote."""
    n_votes, batch_size = batches.shape
    votes_per_call = max(1, chunk_size // batch_size)  # several votes share one encode call
    dims = np.empty(n_votes, dtype=np.int64)
    for start in range(0, n_votes, votes_per_call):
        block = batches[start:start + votes_per_call]
        z = _encode_indices(encode, sample_images, block.reshape(-1), block.size)
        z = z[:, active] / global_std[active]
        z = z.reshape(len(block), batch_size, -1)
        dims[start:start + len(block)] = np.argmin(z.var(axis=1, ddof=1), axis=1)
    return dims


def factorvae_score(encode: Callable[[Tensor], Tensor],
                    factors: Tensor | np.ndarray,
                    sample_images: Callable[[Tensor], Tensor],
                    n_train_votes: int = 800,
                    n_eval_votes: int = 800,
                    batch_size: int = 64,
                    prune_threshold: float = 0.05,
                    global_n: int = 10_000,
                    seed: int = 0,
                    chunk_size: int = 1024) -> dict[str, Any]:
    """FactorVAE disentanglement score (Kim & Mnih, 2018, Sec. 4; reported in 003 Table 3).

    Args:
        encode: images [n, ...] -> latent representations [n, d], the posterior codes (e.g.
            ``model.code``); called under ``torch.no_grad``;
            put the model in eval mode first.
        factors: integer factor classes [N, K] of the data set, one row per image.
        sample_images: data indices (a 1-D ``torch.long`` tensor on the CPU) -> the images at
            those indices (e.g. ``lambda idx: data.floats(torch.as_tensor(idx))``).
        n_train_votes: votes that build the majority-vote classifier (Kim & Mnih: 800).
        n_eval_votes: separate votes the score is measured on (Kim & Mnih: 800).
        batch_size: images per vote (Kim & Mnih: 64); at least 2.
        prune_threshold: dimensions whose global std is below this are pruned (collapsed).
        global_n: images used to estimate the global std (Kim & Mnih: 10 000); the whole data
            set, without repetition, when it holds at most ``global_n`` images.
        seed: seeds every draw (numpy ``SeedSequence``; the global RNGs are left alone).
        chunk_size: images per ``encode`` call (votes are batched together; does not change the
            result as long as ``encode`` treats images independently).

    Returns:
        ``score`` (evaluation accuracy in [0, 1]), ``train_accuracy``, ``active_dims`` (number of
        kept dimensions), ``active_dim_indices``, ``classifier`` ({latent dimension: factor, or
        None when it never won a training vote}, dimensions indexed in the full latent vector),
        ``global_std`` (of every dimension), ``n_factors``, ``n_train_votes``, ``n_eval_votes``
        and ``note`` (None, or why the score is 0 when every dimension is pruned).
    """
    for name, value, low in (("n_train_votes", n_train_votes, 1), ("n_eval_votes", n_eval_votes, 1),
                             ("batch_size", batch_size, 2), ("global_n", global_n, 2),
                             ("chunk_size", chunk_size, 1)):
        if int(value) != value or value < low:
            raise WisealeError(f"{name} must be an integer >= {low}, got {value}")
    if not prune_threshold >= 0:
        raise WisealeError(f"prune_threshold must be >= 0, got {prune_threshold}")
    factors = _as_numpy_factors(factors)
    n, n_factors = factors.shape

    rng_global, rng_train, rng_eval = (np.random.default_rng(s)
                                       for s in np.random.SeedSequence(seed).spawn(3))

    # 1-2. Global std on a random sample; prune collapsed dimensions.
    if global_n >= n:
        global_idx = np.arange(n)
    else:
        global_idx = np.sort(rng_global.choice(n, size=global_n, replace=False))
    global_std = _encode_indices(encode, sample_images, global_idx, chunk_size).std(axis=0)
    active = np.flatnonzero(global_std >= prune_threshold)
    result: dict[str, Any] = {
        "score": 0.0, "train_accuracy": 0.0, "active_dims": int(active.size),
        "active_dim_indices": active.tolist(), "classifier": {},
        "global_std": global_std.tolist(), "n_factors": int(n_factors),
        "n_train_votes": int(n_train_votes), "n_eval_votes": int(n_eval_votes), "note": None,
    }
    if active.size == 0:
        result["note"] = (f"all {global_std.size} latent dimensions have a global std below "
                          f"prune_threshold={prune_threshold} (collapsed): score set to 0")
        return result

    # Data indices of every value of every factor.
    factor_values = [np.unique(factors[:, k]) for k in range(n_factors)]
    value_indices = [[np.flatnonzero(factors[:, k] == v) for v in factor_values[k]]
                     for k in range(n_factors)]

    # 3. Training votes -> majority-vote classifier.
    train_k, train_batches = _draw_votes(n_train_votes, rng_train, factor_values, value_indices,
                                         batch_size)
    train_dims = _vote_dims(encode, sample_images, train_batches, active, global_std, chunk_size)
    counts = np.zeros((active.size, n_factors), dtype=np.int64)
    np.add.at(counts, (train_dims, train_k), 1)
    seen = counts.sum(axis=1) > 0
    assigned = np.where(seen, counts.argmax(axis=1), -1)  # argmax: ties -> lowest factor
    train_accuracy = counts.max(axis=1).sum() / n_train_votes

    # 4. Separate evaluation votes -> score.
    eval_k, eval_batches = _draw_votes(n_eval_votes, rng_eval, factor_values, value_indices,
                                       batch_size)
    eval_dims = _vote_dims(encode, sample_images, eval_batches, active, global_std, chunk_size)
    score = np.mean(assigned[eval_dims] == eval_k)

    result.update(
        score=float(score), train_accuracy=float(train_accuracy),
        classifier={int(active[j]): (int(assigned[j]) if seen[j] else None)
                    for j in range(active.size)},
    )
    return result
