"""Training throughput of wiseale against pythae (the field's main library) for the same VAE
on the same network and data.

Both train AEVB with a Gaussian likelihood (pythae's ``reconstruction_loss="mse"``) on the
001 App. D.1 sine network (or the App. D.2 MNIST network on Fashion-MNIST with ``--data
fashion-mnist``), batch 64, Adam 5e-4, one epoch over the same in-memory training set. The
networks are wiseale's, wrapped in pythae's BaseEncoder / BaseDecoder (pythae's encoder returns
mu and log-variance: the log-variance head is the same linear layer as wiseale's sigma head,
so both do the same arithmetic). pythae's epoch is its own ``BaseTrainer.train_step`` (data
loader, forward, backward, Adam, its per-step ``loss.item()`` check); wiseale's is
``train()``'s reported samples/s of the training loop (evaluation excluded). Runs alternate
(pythae, wiseale, ...) and the medians are compared. pythae is an optional benchmark
dependency: ``pip install '.[bench]'``.

    .venv/bin/python benchmarks/vs_pythae.py [--data sine|fashion-mnist] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
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
    model = model_from_config(config)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="sine", choices=("sine", "fashion-mnist"))
    parser.add_argument("--n-train", type=int, default=16_384)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = RunConfig(method="aevb", data=args.data, likelihood="gaussian", epochs=1,
                     batch_size=64, lr=5e-4, latent_dim=4 if args.data == "sine" else 2,
                     n_train=args.n_train, n_test=64, eval_size=64)
    x = load_split(base, "train").floats()
    config = resolve(base, load_split(base, "train"))
    ours, theirs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            theirs.append(pythae_samples_per_s(config, x, Path(tmp) / f"p{r}"))
            ours.append(wiseale_samples_per_s(base, Path(tmp) / f"w{r}"))
    print(f"{args.data}, {config.net} network, batch {config.batch_size}, "
          f"{len(x)} samples, {args.threads} threads, torch {torch.__version__}")
    print("| library | samples/s (median) | runs |")
    print("|---|---|---|")
    print(f"| pythae | {statistics.median(theirs):.0f} | {[round(v) for v in theirs]} |")
    print(f"| wiseale | {statistics.median(ours):.0f} | {[round(v) for v in ours]} |")
    print(f"wiseale / pythae: {statistics.median(ours) / statistics.median(theirs):.2f}x")


if __name__ == "__main__":
    main()
