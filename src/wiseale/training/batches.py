"""An epoch's batches for one process, gathered a chunk of steps at a time.

Batch ``step`` of an epoch is ``order[step * B * W + rank * B:][:B]`` (batch size B, W
processes). Gathering those B random rows at every step cost 0.1 ms of a 16 ms step (sine
network, batch 64: docs/performance.md, "Training loop overhead"), against 0.01 ms per step
for one gather of the whole epoch, which is what a hand-written loop does. Samples in memory
are therefore gathered for up to ``CHUNK_BYTES`` of consecutive steps at once and each batch is
a slice of that chunk: the same values, bit for bit, in a bounded memory. A memory-mapped file
is still read batch by batch, so that no step waits for more than its own batch.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from wiseale.data import Dataset
from wiseale.training.distributed import World

CHUNK_BYTES = 16 * 2**20  # float32 samples gathered at once (the chunk's memory)


class EpochBatches:
    """``batches[step]``: this process's batch ``step`` of an epoch whose sample order is
    ``order`` (``n_batches`` global batches of ``world.size`` x ``batch`` samples), as float32
    values (Dataset.floats) on ``device``."""

    def __init__(self, data: Dataset, order: Tensor, batch: int, n_batches: int, world: World,
                 device: torch.device) -> None:
        global_batches = order[:n_batches * world.size * batch].view(n_batches, world.size, batch)
        self.rows = global_batches[:, world.rank]  # [n_batches, batch]: this process's
        self.data, self.batch, self.device = data, batch, device
        batch_bytes = 4 * batch * math.prod(data.sample_shape)
        self.steps_per_chunk = max(1, CHUNK_BYTES // batch_bytes) if data.in_memory else 1
        self.first, self.chunk = -1, None  # the chunk's first step and its samples

    def __getitem__(self, step: int) -> Tensor:
        if self.chunk is None or not 0 <= step - self.first < self.steps_per_chunk:
            rows = self.rows[step:step + self.steps_per_chunk].reshape(-1)
            self.first, self.chunk = step, self.data.floats(rows, self.device)
        start = (step - self.first) * self.batch
        return self.chunk[start:start + self.batch]
