"""Training throughput of wiseale against pythae (the field's main library) for the same VAE
on the same network and data.

Both train AEVB with a Gaussian likelihood (pythae's ``reconstruction_loss="mse"``) on the 001
App. D.1 sine network and the App. D.2 MNIST network on Fashion-MNIST, Adam 5e-4, one epoch
over the same in-memory training set. The networks are wiseale's, wrapped in pythae's
BaseEncoder / BaseDecoder (pythae's encoder returns mu and log-variance: the log-variance head
is the same linear layer as wiseale's sigma head, so both do the same arithmetic up to the
layout), in torch's default memory layout, as a pythae user's own modules are (wiseale builds
the sine and mnist networks' conv weights channels-last on a CPU, its own choice: a pythae user
could do the same by hand for the mnist network, and with wiseale.nets.layout's 1-D
convolutions for the sine network). pythae's epoch is its own ``BaseTrainer.train_step`` (data
loader, forward, backward, Adam, its per-step ``loss.item()`` check); wiseale's is
``train()``'s reported samples/s of the training loop (evaluation excluded). Both get the same
torch thread count, said in the output. Every configuration (data x threads x batch: by default
sine and Fashion-MNIST, 1 and 2 threads, batch 64 and 256) runs 5 alternating pairs (pythae,
then wiseale) and prints every pair's samples/s and ratio with their median. pythae is an
optional benchmark dependency: ``pip install '.[bench]'``.

    .venv/bin/python benchmarks/vs_pythae.py [--data sine fashion-mnist] [--threads 1 2]
        [--batch 64 256] [--pairs 5]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path

import torch
from pythae.data.datasets import BaseDataset
from pythae.models import VAE, VAEConfig
from pythae.models.base.base_utils import ModelOutput
from pythae.models.nn import BaseDecoder, BaseEncoder
from pythae.trainers import BaseTrainer, BaseTrainerConfig

from wiseale import RunConfig, train
from wiseale.build import load_split, model_from_config, resolve
from wiseale.nets.layout import to_channels_last


class Encoder(BaseEncoder):
    """wiseale's backbone and heads; pythae wants (mu, log-variance)."""

    def __init__(self, backbone: torch.nn.Module, mu: torch.nn.Module, head: torch.nn.Module):
        super().__init__()
        self.backbone, self.mu, self.head = backbone, mu, head

    def forward(self, x: torch.Tensor) -> ModelOutput:
        h = self.backbone(x)
        return ModelOutput(embedding=self.mu(h), log_covariance=self.head(h))


class Decoder(BaseDecoder):
    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, z: torch.Tensor) -> ModelOutput:
        return ModelOutput(reconstruction=self.net(z))


def pythae_samples_per_s(config: RunConfig, x: torch.Tensor, out: Path) -> float:
    # the networks in torch's default layout, as a pythae user's own modules are (wiseale
    # builds the sine and mnist networks' conv weights channels-last on a CPU: build.py)
    model = to_channels_last(model_from_config(config), channels_last=False)
    vae = VAE(VAEConfig(input_dim=tuple(x.shape[1:]), latent_dim=config.latent_dim,
                        reconstruction_loss="mse"),
              encoder=Encoder(model.encoder, model.noise.mu_head, model.noise.sigma_head),
              decoder=Decoder(model.decoder))
    trainer = BaseTrainer(vae, BaseDataset(x, torch.zeros(len(x))), training_config=(
        BaseTrainerConfig(output_dir=str(out), num_epochs=1, learning_rate=config.lr,
                          per_device_train_batch_size=config.batch_size,
                          train_dataloader_num_workers=0, no_cuda=True)))
    trainer.prepare_training()  # optimiser, scheduler and callbacks, as train() does
    started = time.perf_counter()
    trainer.train_step(1)
    n = len(trainer.train_loader) * config.batch_size
    return n / (time.perf_counter() - started)


def wiseale_samples_per_s(config: RunConfig, out: Path) -> float:
    train(config, out, progress=False)
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    return row["samples_per_s"]


def measure(data: str, threads: int, batch: int, n_train: int, pairs: int,
            tmp: Path) -> list[tuple[float, float]]:
    """``pairs`` alternating (pythae, wiseale) epochs of AEVB on ``data``'s network, both with
    ``threads`` torch threads (pythae through torch.set_num_threads, wiseale through
    RunConfig.threads, which train() applies): samples/s of each, pair by pair."""
    base = RunConfig(method="aevb", data=data, likelihood="gaussian", epochs=1,
                     batch_size=batch, lr=5e-4, latent_dim=4 if data == "sine" else 2,
                     n_train=n_train, n_test=64, eval_size=64, threads=threads,
                     final_eval="none")
    x = load_split(base, "train").floats()
    config = resolve(base, load_split(base, "train"))
    results = []
    for r in range(pairs):
        torch.set_num_threads(threads)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            theirs = pythae_samples_per_s(config, x, tmp / f"p{data}{threads}{batch}{r}")
        ours = wiseale_samples_per_s(base, tmp / f"w{data}{threads}{batch}{r}")
        results.append((theirs, ours))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["sine", "fashion-mnist"],
                        choices=("sine", "fashion-mnist"))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--batch", nargs="+", type=int, default=[64, 256])
    parser.add_argument("--n-train", type=int, default=16_384)
    parser.add_argument("--pairs", type=int, default=5)
    args = parser.parse_args()
    logging.getLogger("pythae").setLevel(logging.WARNING)  # its per-run folder messages
    print(f"torch {torch.__version__}; each library with the same thread count; "
          f"{args.pairs} alternating pairs (pythae, then wiseale) per configuration; "
          f"{args.n_train} training samples; samples/s of one epoch's training steps")
    print("| data | network | threads | batch | pythae samples/s | wiseale samples/s | "
          "wiseale / pythae, each pair | median ratio |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for data in args.data:
            for threads in args.threads:
                for batch in args.batch:
                    pairs = measure(data, threads, batch, args.n_train, args.pairs, Path(tmp))
                    ratios = [ours / theirs for theirs, ours in pairs]
                    net = "sine-conv" if data == "sine" else "mnist-conv"
                    print(f"| {data} | {net} | {threads} | {batch} | "
                          f"{', '.join(f'{t:.0f}' for t, _ in pairs)} | "
                          f"{', '.join(f'{o:.0f}' for _, o in pairs)} | "
                          f"{', '.join(f'{r:.2f}' for r in ratios)} | "
                          f"{statistics.median(ratios):.2f}x |", flush=True)


if __name__ == "__main__":
    main()
