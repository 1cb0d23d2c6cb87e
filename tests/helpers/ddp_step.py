"""One WiSE-ALE training step on this rank's half of a fixed global batch under DDP, with the
global batch's encoder noise fixed; writes this rank's loss and parameter gradients, and the
mean over ranks of two values that rank 1 holds in the other key order.

Run by tests/test_distributed.py as ``torchrun --standalone --nproc-per-node 2 THIS OUT``.
"""

import sys
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from wiseale.storage import save_tensors
from wiseale.training.distributed import finish, gather_posterior, init_world, mean_over_ranks

sys.path.insert(0, str(Path(__file__).parent))
from ddp_setup import global_batch, model_and_noise  # noqa: E402

out = Path(sys.argv[1])
world = init_world("cpu")
x, eps = global_batch()
rows = slice(world.rank * len(x) // world.size, (world.rank + 1) * len(x) // world.size)
model = model_and_noise(eps[rows])
ddp = DistributedDataParallel(model)  # kept alive: its hooks average the gradients
output = ddp(x[rows], gather_posterior)
output.loss.backward()
grads = {name: p.grad for name, p in model.named_parameters()}
values = {"a": torch.tensor(1.0 + 2 * world.rank), "b": torch.tensor(10.0 + 20 * world.rank)}
means = mean_over_ranks(values if world.rank == 0 else dict(reversed(values.items())))
save_tensors(out / f"rank{world.rank}.safetensors",
             {"loss": output.loss.detach(), "mean_a": means["a"], "mean_b": means["b"],
              **grads}, {})
finish(world)
