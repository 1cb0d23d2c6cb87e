"""training.batches.EpochBatches: each batch is the per-step gather of the epoch's order, bit
for bit, whatever the chunk, the process's rank or the step it starts from."""

import numpy as np
import pytest
import torch

from wiseale.data import Dataset
from wiseale.training import batches as batches_module
from wiseale.training.batches import EpochBatches
from wiseale.training.distributed import World

CPU = torch.device("cpu")


def _per_step(data: Dataset, order: torch.Tensor, batch: int, world: World, step: int):
    """The batch as the loop gathered it before chunks: one fancy index per step."""
    first = step * batch * world.size + world.rank * batch
    return data.floats(order[first:first + batch], CPU)


@pytest.mark.parametrize("rank,size", [(0, 1), (0, 2), (1, 2), (2, 3)])
@pytest.mark.parametrize("chunk_steps", [1, 3, 100])
def test_batches_equal_the_per_step_gather(monkeypatch, rank, size, chunk_steps):
    batch, n = 4, 103  # 103 samples: the last partial global batch is dropped
    x = torch.randint(0, 256, (n, 2, 3), dtype=torch.uint8)
    data = Dataset("toy", x, divide_by=255.0)
    monkeypatch.setattr(batches_module, "CHUNK_BYTES", chunk_steps * batch * 4 * 6)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(rank))
    world, n_batches = World(rank, size), n // (batch * size)
    batches = EpochBatches(data, order, batch, n_batches, world, CPU)
    assert batches.steps_per_chunk == chunk_steps
    for start in (0, n_batches // 2 + 1):  # an epoch, then one resumed mid-epoch
        batches = EpochBatches(data, order, batch, n_batches, world, CPU)
        for step in range(start, n_batches):
            got, expected = batches[step], _per_step(data, order, batch, world, step)
            assert got.dtype == torch.float32
            assert torch.equal(got, expected), (start, step)


def test_a_file_is_read_batch_by_batch(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.arange(60, dtype=np.float32).reshape(20, 3))
    data = Dataset("mapped", np.load(path, mmap_mode="r"))
    order = torch.randperm(20, generator=torch.Generator().manual_seed(0))
    batches = EpochBatches(data, order, 5, 4, World(), CPU)
    assert batches.steps_per_chunk == 1
    for step in (2, 0, 3):  # in any order
        assert torch.equal(batches[step], _per_step(data, order, 5, World(), step))
