"""Training throughput of wiseale's loop against a minimal hand-written PyTorch loop.

Both train AEVB (and WiSE-ALE) on the 001 App. D.1 sine network, batch 64, Adam 5e-4, on the
same in-memory waves, with the same torch thread count (each of ``--threads``; wiseale's
through ``RunConfig.threads``, which it would otherwise choose itself). The hand-written loop
runs twice: with ``torch.optim.Adam``'s default implementation, as a user writes it, and with
``fused=True``, the kernel wiseale's loop uses on a CPU (wiseale.optim.LeanAdam, which calls
it without ``Adam.step``'s per-parameter Python), so that the second ratio is the cost of the
loop's own work; a third hand-written loop, fused too, also
does the per-step work wiseale's does besides (the variance clamp, the values it logs summed
over the epoch, the loss's finiteness check: ``HandWritten(logged=True)``), so that the third
ratio compares the same per-step work. A twin of that third loop (the same code, its own
weights) gives a fourth ratio, twin / third, which two identical loops would make 1.0: what
is left is the benchmark's own resolution, measured in the same run; wiseale over the twin
is printed for every round and, at the end, averaged over all rounds with its standard
error. The loops run in lockstep: after each of wiseale's optimiser steps a callback runs one
step of each hand-written loop, in an order that rotates every step, and the wall time of
each is summed (wiseale's from the end of one callback to the start of the next: its step and
all its loop does between steps), so that the machine's noise, which moves whole epochs by
30% here, hits all five alike. Each round is one epoch; every round's ratios are printed,
then the medians. The epoch's evaluation and checkpoint are outside. A first round is not
counted: its steps pay one-time costs (oneDNN's kernels for the shapes, first calls) that
whichever loop steps first pays for the others, which was wiseale's loop (0.925-0.935 of the
fused loop in that round, 0.95-0.97 in the next four).

    .venv/bin/python benchmarks/train_loop_overhead.py [--n-train 8192] [--repeats 5]
        [--threads 1 2]
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch

from wiseale import RunConfig, train
from wiseale.build import load_split, model_from_config, resolve
from wiseale.functional import aggregate_kl_upper_bound, gaussian_kl
from wiseale.hooks import Callback
from wiseale.noises import SIGMA_MAX

NLL_CONSTANT = 0.5 * math.log(2 * math.pi * 0.5)  # per dimension, sigma^2 = 0.5

class HandWritten:
    """The loop a user would write (shuffle, slice, encode, decode, loss, step), a step at a
    time, with its own random generator so that it leaves wiseale's draws alone. With
    ``logged``, it also does the per-step work wiseale's loop does besides: the variance
    clamp, the values wiseale logs (the decoded samples' squared error, the prior KL, the ELBO,
    the loss parts) summed over the epoch, and the finiteness check of the loss."""

    def __init__(self, config: RunConfig, x: torch.Tensor, fused: bool, logged: bool = False):
        self.model = model_from_config(config)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr,
                                          fused=fused or None)
        self.x, self.batch, self.method = x, config.batch_size, config.method
        self.n_batches, self.steps, self.logged = len(x) // self.batch, 0, logged
        self.generator = torch.Generator().manual_seed(0)
        self.totals: dict[str, torch.Tensor] = {}

    def step(self) -> None:
        step = self.steps % self.n_batches
        if step == 0:
            self.x_epoch = self.x[torch.randperm(len(self.x), generator=self.generator)]
        model, batch = self.model, self.batch
        xb = self.x_epoch[step * batch:(step + 1) * batch]
        h = model.encoder(xb)
        mu = model.noise.mu_head(h)
        sigma = torch.nn.functional.softplus(model.noise.sigma_head(h)) + 1e-3
        if self.logged:
            sigma = sigma.clamp(max=SIGMA_MAX)
        z = mu + sigma * torch.randn(mu.shape, generator=self.generator)
        x_hat = model.decoder(z)
        logvar = 2 * sigma.log()
        kl = gaussian_kl(mu, logvar).mean() if self.method == "aevb" or self.logged else None
        prior = kl if self.method == "aevb" else aggregate_kl_upper_bound(mu, logvar) / batch
        squares = (xb - x_hat).square().flatten(1).sum(1)
        recon = squares.mean()
        loss = recon + prior
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.logged and not math.isfinite(loss.item()):
            raise RuntimeError("non-finite loss")
        self.optimizer.step()
        if self.logged:  # sigma^2 = 0.5: the NLL is the squared error plus a constant
            with torch.no_grad():
                nll = squares + NLL_CONSTANT * xb[0].numel()
                parts = {"recon": recon.detach(), "nll": nll.mean(), "kl_prior": kl.detach(),
                         "sample_recon_error": squares.mean(), "loss": loss.detach()}
                parts["elbo"] = -(parts["nll"] + parts["kl_prior"])
                for key, value in parts.items():
                    self.totals[key] = self.totals[key] + value if key in self.totals else value
        self.steps += 1


class Lockstep(Callback):
    """After each of wiseale's steps, one step of each hand-written loop, in an order that
    rotates by one every step (no loop always steps right after wiseale's); the seconds of
    each (wiseale's first)."""

    def __init__(self, loops: list[HandWritten]):
        self.loops, self.seconds = loops, [0.0] * (len(loops) + 1)

    def on_train_start(self, config, out, first_epoch) -> None:
        self.since = time.perf_counter()

    def on_step_end(self, step, parts) -> None:
        started = time.perf_counter()
        self.seconds[0] += started - self.since
        first = step % len(self.loops)
        for index in [*range(first, len(self.loops)), *range(first)]:
            self.loops[index].step()
            ended = time.perf_counter()
            self.seconds[index + 1] += ended - started
            started = ended
        self.since = time.perf_counter()


def one_round(config: RunConfig, train_data, test_data) -> list[float]:
    """Seconds of one epoch of wiseale and of each hand-written loop, in lockstep."""
    resolved, x = resolve(config, train_data), train_data.floats()
    lockstep = Lockstep([HandWritten(resolved, x, fused=False),
                         HandWritten(resolved, x, fused=True),
                         HandWritten(resolved, x, fused=True, logged=True),
                         HandWritten(resolved, x, fused=True, logged=True)])
    with tempfile.TemporaryDirectory() as tmp:
        train(config, Path(tmp) / "run", progress=False, train_data=train_data,
              test_data=test_data, callbacks=[lockstep])
    return lockstep.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {args.n_train} waves, batch 64, 1 epoch per round, the "
          "same threads for all, in lockstep")
    against_twin: list[float] = []  # wiseale's speed over the twin's, every round
    for threads in args.threads:
        for method in ("aevb", "wise-ale"):
            config = RunConfig(method=method, data="sine", n_train=args.n_train, n_test=256,
                               epochs=1, eval_size=256, threads=threads, final_eval="none")
            train_data, test_data = load_split(config, "train"), load_split(config, "test")
            one_round(config, train_data, test_data)  # warm-up, not counted (see above)
            rounds = [one_round(config, train_data, test_data) for _ in range(args.repeats)]
            n = args.n_train // 64 * 64
            speeds = ', '.join('/'.join(f'{n / s:.0f}' for s in r) for r in rounds)
            print(f"{threads} threads {method:9s} samples/s wiseale / hand / hand fused / "
                  f"hand fused logged / its twin {speeds}")
            for name, column, against in (("wiseale / hand", 1, 0),
                                          ("wiseale / hand fused", 2, 0),
                                          ("wiseale / hand fused logged", 3, 0),
                                          ("twin / hand fused logged", 3, 4),
                                          ("wiseale / twin", 4, 0)):
                ratios = [r[column] / r[against] for r in rounds]  # speed ratio
                print(f"{threads} threads {method:9s} {name:27s} "
                      f"{', '.join(f'{r:.4f}' for r in ratios)} | median "
                      f"{statistics.median(ratios):.4f}", flush=True)
            against_twin += [r[4] / r[0] for r in rounds]
    mean, sd = statistics.mean(against_twin), statistics.stdev(against_twin)
    print(f"wiseale / twin over all {len(against_twin)} rounds: mean {mean:.4f}, standard error "
          f"{sd / math.sqrt(len(against_twin)):.4f}, {sum(r < 1 for r in against_twin)} below 1")


if __name__ == "__main__":
    main()
