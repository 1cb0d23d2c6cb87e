"""The aggregate KL's kernel as a user meets it (issue 15, point 5): with the default
``kernel="auto"``, one call at M = 64, d = 64 (eager: below the compile threshold), then three
at M = 2048, d = 64 (the first compiles), then three with ``kernel="compiled"``; each figure is
one forward + backward in seconds. Run it in a fresh process: the first compile is the point.
Then the figures behind ``pairwise.compile_pays``: ns per pair element M^2 d of each kernel,
forward + backward and forward alone (medians of 3 after a warm-up), and the first compiled
call's seconds, a fresh process per shape (``--threads N`` torch threads, default 1).
``TORCHINDUCTOR_CACHE_DIR=$(mktemp -d)`` measures a compile with a cold cache. ``--train``
adds `wiseale train` of AEVB and WiSE-ALE at batch 1024 on 8,192 sine waves for 3 epochs,
each in a fresh process: the samples/s of every epoch (the first holds any compile) and the
wall time. ``--train --pairs N`` instead alternates N pairs of such runs (10 epochs, one
thread, d_z from ``--latent-dim``) and prints, for each pair, the first epoch's WiSE-ALE / AEVB
step-cost ratio (issue 28: at most 1.15 at d_z = 4) and the whole run's. Whole runs alternated
so move by up to 30% between neighbours on the development machine; ``--lockstep N`` measures
the same ratio in lockstep instead: N fresh processes, each a 10-epoch `wiseale.train` of
WiSE-ALE (the kernel ``auto`` chooses, chosen and compiled before the first step as in any
run) whose callback takes, after each of its steps, one step of an AEVB model built from the
same settings (torch's fused Adam as in the loop, the loss of ``model(x)``, the same batch
size and data, its own order), after one uncounted AEVB step before the run's first (the
process's first touch of a step's memory, which each run pays once in a process of its own,
would otherwise fall on WiSE-ALE's first step). WiSE-ALE's step time per epoch is its epoch time in
metrics.jsonl less the callback's, so the machine's noise hits both alike; the AEVB steps pay
no loop around them, which favours AEVB.

    .venv/bin/python benchmarks/kernel_first_use.py [--threads 1] [--train [--pairs 5
        --latent-dim 4]] [--lockstep 5 --latent-dim 4]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from wiseale import RunConfig, train
from wiseale.build import load_split, model_from_config, resolve
from wiseale.data import Dataset
from wiseale.functional import aggregate_kl_upper_bound
from wiseale.hooks import Callback
from wiseale.optim import adam
from wiseale.storage import load_tensors


def timed(m: int, d: int, kernel: str = "auto", calls: int = 3) -> list[float]:
    mu = torch.randn(m, d, requires_grad=True)
    logvar = (0.1 * torch.randn(m, d)).requires_grad_()
    seconds = []
    for _ in range(calls):
        started = time.perf_counter()
        aggregate_kl_upper_bound(mu, logvar, kernel=kernel).backward()
        seconds.append(round(time.perf_counter() - started, 3))
    return seconds


def per_element(m: int, d: int, kernel: str, backward: bool) -> float:
    mu = torch.randn(m, d, requires_grad=backward)
    logvar = (0.1 * torch.randn(m, d)).requires_grad_(backward)
    seconds = []
    for _ in range(4):
        started = time.perf_counter()
        value = aggregate_kl_upper_bound(mu, logvar, kernel=kernel)
        if backward:
            value.backward()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds[1:]) / (m * m * d)


def train_epochs(method: str, epochs: int = 3, extra: tuple[str, ...] = ()
                 ) -> tuple[list[float], float]:
    """Samples/s of each epoch and the wall time of a fresh `wiseale train` process."""
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "wiseale", "train", "--method", method, "--data",
                        "sine", "--n-train", "8192", "--n-test", "256", "--eval-size", "256",
                        "--batch-size", "1024", "--epochs", str(epochs), "--no-progress",
                        "--out", f"{tmp}/run", *extra], check=True, capture_output=True)
        wall = time.perf_counter() - started
        rows = Path(f"{tmp}/run/metrics.jsonl").read_text().splitlines()
    return [round(json.loads(row)["samples_per_s"]) for row in rows], wall


def print_pairs(pairs: int, latent_dim: int) -> None:
    """Alternating 10-epoch runs of AEVB and WiSE-ALE at batch 1024 (one thread, d_z =
    ``latent_dim``): each pair's first-epoch and whole-run WiSE-ALE / AEVB step-cost ratios."""
    extra = ("--latent-dim", str(latent_dim), "--threads", "1")
    print(f"torch {torch.__version__}; sine, batch 1024, d_z {latent_dim}, 10 epochs of 8 steps, "
          "one thread; WiSE-ALE / AEVB step cost (samples/s of AEVB over WiSE-ALE's)")
    firsts, walls = [], []
    for _ in range(pairs):
        (aevb, aevb_wall), (wise, wise_wall) = (train_epochs(m, 10, extra)
                                                for m in ("aevb", "wise-ale"))
        firsts.append(aevb[0] / wise[0])
        walls.append(wise_wall / aevb_wall)
        print(f"first epoch {aevb[0]} / {wise[0]} samples/s = {firsts[-1]:.3f}; wall "
              f"{wise_wall:.2f} / {aevb_wall:.2f} s = {walls[-1]:.3f}", flush=True)
    print(f"median first-epoch ratio {statistics.median(firsts):.3f}, whole-run wall ratio "
          f"{statistics.median(walls):.3f}")


class AevbInLockstep(Callback):
    """One AEVB step after each step of the run; the seconds it spent in each epoch, and
    WiSE-ALE's step time per epoch (the row's epoch time less the callback's)."""

    def __init__(self, config: RunConfig, data: Dataset):
        aevb = resolve(dataclasses.replace(config, method="aevb"), data)
        self.model = model_from_config(aevb)
        self.optimizer = adam(self.model.parameters(), lr=aevb.lr)
        self.data, self.batch = data, aevb.batch_size
        self.n_batches = len(data) // self.batch
        self.generator = torch.Generator().manual_seed(1)
        self.aevb: list[float] = [0.0] * config.epochs
        self.wise_ale: list[float] = []

    def on_train_start(self, config, out, first_epoch) -> None:
        """One AEVB step, not counted: the process's first touch of a step's memory (paid by
        whichever step runs first, as each run pays it in a process of its own)."""
        self.order = torch.randperm(len(self.data), generator=self.generator)
        self.step(0)

    def on_step_end(self, step, parts) -> None:
        started = time.perf_counter()
        epoch, index = divmod(step, self.n_batches)
        if index == 0:
            self.order = torch.randperm(len(self.data), generator=self.generator)
        self.step(index)
        self.aevb[epoch] += time.perf_counter() - started

    def step(self, index: int) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        rows = self.order[index * self.batch:(index + 1) * self.batch]
        self.model(self.data.floats(rows)).loss.backward()
        self.optimizer.step()

    def on_epoch_end(self, epoch, row, model, x_eval) -> None:
        samples = self.n_batches * self.batch
        self.wise_ale.append(samples / row["samples_per_s"] - self.aevb[epoch - 1])


def lockstep_round(latent_dim: int) -> None:
    """One 10-epoch WiSE-ALE run with AEVB in lockstep; prints the per-epoch ratios as JSON."""
    config = RunConfig(method="wise-ale", data="sine", n_train=8192, n_test=256, eval_size=256,
                       batch_size=1024, epochs=10, latent_dim=latent_dim, threads=1,
                       final_eval="none")
    data = load_split(config, "train")
    lockstep = AevbInLockstep(config, data)
    with tempfile.TemporaryDirectory() as tmp:
        train(config, Path(tmp) / "run", progress=False, train_data=data,
              test_data=load_split(config, "test"), callbacks=[lockstep])
        kernels = load_tensors(Path(tmp) / "run/checkpoint.safetensors")[1].get("kernels")
    ratios = [w / a for w, a in zip(lockstep.wise_ale, lockstep.aevb, strict=True)]
    print(json.dumps({"ratios": ratios, "total": sum(lockstep.wise_ale) / sum(lockstep.aevb),
                      "kernels": kernels}))


def print_lockstep(rounds: int, latent_dim: int) -> None:
    print(f"torch {torch.__version__}; sine, batch 1024, d_z {latent_dim}, 10 epochs of 8 steps, "
          "one thread, in lockstep; WiSE-ALE / AEVB step time")
    firsts, totals = [], []
    for _ in range(rounds):
        done = subprocess.run([sys.executable, __file__, "--lockstep-round", "--latent-dim",
                               str(latent_dim)], check=True, capture_output=True, text=True)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        firsts.append(result["ratios"][0])
        totals.append(result["total"])
        print(f"first epoch {firsts[-1]:.3f}; epochs 2-10 "
              f"{', '.join(f'{r:.3f}' for r in result['ratios'][1:])}; all {totals[-1]:.3f}; "
              f"kernel {result['kernels']}", flush=True)
    print(f"median first-epoch ratio {statistics.median(firsts):.3f}, all epochs "
          f"{statistics.median(totals):.3f}")


def shape_round(m: int, d: int) -> None:
    """One shape in this fresh process (so its compiled kernels are specialised to it, as in
    a run): the first compiled call's seconds, then ns per pair element of each kernel."""
    started = time.perf_counter()
    per_element(m, d, "compiled", True)  # holds the compile; measures nothing kept
    first = time.perf_counter() - started
    figures = {f"{k} {'fwd+bwd' if b else 'fwd'}": per_element(m, d, k, b) * 1e9
               for b in (True, False) for k in ("eager", "compiled")}
    print(json.dumps({"compile_s": first, **figures}))


def print_savings(threads: int) -> None:
    """The figures behind pairwise.compile_pays: eager - compiled, ns per pair element, a
    fresh process per shape with ``threads`` torch threads."""
    print(f"| M | d | fwd+bwd eager - compiled = saved ns | fwd eager - compiled = saved ns | "
          f"first compiled call s | ({threads} thread(s)) |")
    for m, d in ((1024, 4), (4096, 4), (1024, 16), (1024, 64), (2048, 64)):
        done = subprocess.run([sys.executable, __file__, "--shape", str(m), str(d)],
                              env={**os.environ, "OMP_NUM_THREADS": str(threads)},
                              check=True, capture_output=True, text=True)
        r = json.loads(done.stdout.strip().splitlines()[-1])
        cells = [f"{r[f'eager {p}']:.2f} - {r[f'compiled {p}']:.2f} = "
                 f"{r[f'eager {p}'] - r[f'compiled {p}']:.2f}" for p in ("fwd+bwd", "fwd")]
        print(f"| {m} | {d} | {cells[0]} | {cells[1]} | {r['compile_s']:.1f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", action="store_true")
    parser.add_argument("--pairs", type=int, default=0)
    parser.add_argument("--latent-dim", type=int, default=4)
    parser.add_argument("--lockstep", type=int, default=0)
    parser.add_argument("--lockstep-round", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--shape", type=int, nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.lockstep_round:
        lockstep_round(args.latent_dim)
        return
    if args.lockstep:
        print_lockstep(args.lockstep, args.latent_dim)
        return
    if args.train and args.pairs:
        print_pairs(args.pairs, args.latent_dim)
        return
    if args.train:
        for method in ("aevb", "wise-ale"):
            rates, wall = train_epochs(method)
            print(f"train {method}: samples/s per epoch {rates}, {wall:.2f} s wall", flush=True)
    if args.shape:
        shape_round(*args.shape)
        return
    torch.manual_seed(0)
    print("warm M=64 auto", timed(64, 64, calls=1))
    print("M=2048 auto", timed(2048, 64))
    print("M=2048 compiled", timed(2048, 64, "compiled"))
    print_savings(args.threads)


if __name__ == "__main__":
    main()
