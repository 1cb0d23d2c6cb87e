"""What the per-step stop agreement costs under torchrun (issue 17): the all-reduce after
every batch by which the processes agree whether any received SIGINT or SIGTERM, against a
whole DDP training step of WiSE-ALE on the sine network (001 App. C: batch 32 a process).
Steps and agreements alternate in one run; each figure is the median of ``--steps`` timings
after ``--warmup`` untimed ones.

    torchrun --standalone --nproc-per-node 2 benchmarks/ddp_stop_agreement.py [--batch 32]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.nn.parallel import DistributedDataParallel

from wiseale.build import load_split, model_from_config, resolve
from wiseale.config import RunConfig
from wiseale.training.distributed import finish, gather_posterior, init_world, largest_over_ranks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    world = init_world("cpu")
    config = RunConfig(method="wise-ale", data="sine", batch_size=args.batch, n_train=2048,
                       n_test=64)
    train = load_split(config, "train")
    model = model_from_config(resolve(config, train))
    ddp = DistributedDataParallel(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
    x = train.floats(slice(world.rank * args.batch, (world.rank + 1) * args.batch))

    steps, agreements = [], []
    for i in range(args.warmup + args.steps):
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        ddp(x, gather_posterior).loss.backward()
        optimizer.step()
        middle = time.perf_counter()
        largest_over_ranks(world, 0)
        ended = time.perf_counter()
        if i >= args.warmup:
            steps.append(middle - started)
            agreements.append(ended - middle)
    if world.main:
        step_ms, agree_ms = (1e3 * statistics.median(t) for t in (steps, agreements))
        print(f"{world.size} processes, batch {args.batch} each: step {step_ms:.2f} ms, "
              f"agreement {agree_ms:.3f} ms ({agree_ms / step_ms:.1%} of a step)")
    del ddp  # before the process group (training.distributed.finish)
    finish(world)


if __name__ == "__main__":
    main()
