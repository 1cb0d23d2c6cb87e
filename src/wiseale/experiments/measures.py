"""Metrics measured on a trained run that training's own evaluation does not give: FIDs of
samples from the prior, a flow (003 Eq. 8-9) or a Gaussian mixture (004 Eq. 12-13) of the
aggregate posterior, and the mixture's KL to the prior (004 Table 1).

Each measure is ``fn(context) -> test metrics``; a spec lists the ones it needs
(:class:`wiseale.experiments.spec.Measure`). A run keeps the measures taken on it in its
measures.json, each with the settings and seed it was taken under (:func:`take_measures`), so
a measure is taken once, here or by a launcher's measure unit (experiments.units)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from wiseale.data import Dataset
from wiseale.model import Autoencoder
from wiseale.storage import read_json, write_json

if TYPE_CHECKING:
    from wiseale.experiments.spec import Measure

MEASURES_FILE = "measures.json"

KL_SAMPLES, KL_RUNS = 10_000, 10  # 004 Table 1: KL(q_hat || p) by Monte Carlo, 10 runs


@dataclass
class MeasureContext:
    """One trained run of one seed, with the experiment's data and settings."""

    name: str
    run_dir: Path
    train: Dataset
    test: Dataset
    settings: dict[str, Any]
    seed: int
    progress: bool
    entry: dict[str, Any]
    shared: dict[str, Any] = field(default_factory=dict)  # kept across the runs of a seed

    @cached_property
    def model(self) -> Autoencoder:
        from wiseale.training import load_run

        return load_run(self.run_dir)[0]

    @property
    def features(self) -> Any:
        """The FID features of the training data (metrics.sample_features), made once."""
        if "features" not in self.shared:
            from wiseale.metrics import sample_features

            self.shared["features"] = sample_features(self.train)
        return self.shared["features"]

    def fid(self, sampler: Any = None) -> float:
        """FID of decoded samples from the prior (or ``sampler``) against the test images."""
        from wiseale.metrics import sample_fid

        return sample_fid(self.model, self.train, self.test, sampler=sampler,
                          features=self.features)

    def fid_info(self) -> dict[str, Any]:
        """What the FIDs are measured in (features) and on how many images."""
        from wiseale.metrics.evaluation import fid_count

        return {"fid_features": self.features.name, "fid_n": fid_count(self.test)}

    def flow(self) -> Any:
        """The run's flow (fitted once, saved in the run), ``flow_epochs`` epochs."""
        from wiseale.samplers import run_flow

        return run_flow(self.run_dir, self.model, self.train.floats(),
                        epochs=self.settings["flow_epochs"], seed=self.seed,
                        progress=self.progress)

    def mixture(self) -> Any:
        """The run's Gaussian mixture of ``components`` components (fitted once, saved)."""
        from wiseale.samplers import run_mixture

        return run_mixture(self.run_dir, self.model, self.train.floats(),
                           components=self.settings["components"], seed=self.seed)


def measure_key(settings: dict[str, Any], seed: int) -> str:
    """What a measure saved in measures.json was taken under: the settings and the seed."""
    return json.dumps({"settings": settings, "seed": seed}, sort_keys=True, default=str)


def saved_measures(run_dir: Path) -> dict[str, Any]:
    """The run's measures.json: measure name -> {key, values} ({} when none is saved)."""
    path = run_dir / MEASURES_FILE
    return read_json(path) if path.exists() else {}


def measures_to_take(measures: Sequence[Measure], run: str, saved: dict[str, Any],
                     key: str) -> list[Measure]:
    """The ``measures`` taken on the run labelled ``run`` that ``saved`` lacks under ``key``."""
    return [m for m in measures
            if m.takes(run) and saved.get(m.name, {}).get("key") != key]


def take_measures(measures: Sequence[Measure], context: MeasureContext) -> None:
    """Add each of ``measures`` that applies to the context's run to its entry's test metrics:
    read from its measures.json when taken under the same settings and seed, else taken now
    and saved there at once (a measure stopped half-way loses only itself)."""
    key = measure_key(context.settings, context.seed)
    saved = saved_measures(context.run_dir)
    missing = measures_to_take(measures, context.name, saved, key)
    for measure in measures:  # in order: a measure may read an earlier one's values
        if not measure.takes(context.name):
            continue
        if measure in missing:
            saved[measure.name] = {"key": key, "values": measure.fn(context)}
            write_json(context.run_dir / MEASURES_FILE, saved)
        context.entry["test"].update(saved[measure.name]["values"])


def fid_prior(context: MeasureContext) -> dict[str, Any]:
    """FID of samples from N(0, I)."""
    return {**context.fid_info(), "fid_prior": context.fid()}


def fid_flow(context: MeasureContext) -> dict[str, Any]:
    """FID of samples from the run's flow, and the flow's final training NLL."""
    flow = context.flow()
    return {**context.fid_info(), "fid_flow": context.fid(flow),
            "flow_train_nll": flow.history[-1]}


def fid_mixture(context: MeasureContext) -> dict[str, Any]:
    """FID of samples from the run's mixture of the aggregate posterior."""
    return {**context.fid_info(), "fid_mixture": context.fid(context.mixture())}


def kl_mixture_prior(context: MeasureContext) -> dict[str, Any]:
    """KL(q_hat || p) of the run's mixture to N(0, I) (004 Table 1): mean and std of
    KL_RUNS Monte Carlo estimates of KL_SAMPLES samples each."""
    from wiseale.metrics.latent import sampler_prior_kl

    kl, std = sampler_prior_kl(context.mixture(), KL_SAMPLES, KL_RUNS, seed=context.seed)
    return {"kl_mixture_prior": kl, "kl_mixture_prior_std": std}


def generalisation_gap(context: MeasureContext) -> dict[str, Any]:
    """Test minus train reconstruction error (003 Table 1's overfitting)."""
    entry = context.entry
    return {"recon_gap": entry["test"]["recon_error"] - entry["train"]["recon_error"]}


@torch.no_grad()
def recon_nll(model: Autoencoder, x: torch.Tensor, batch_size: int = 256) -> float:
    """Mean over the images of -log p(x | decoder(mu(x))) under the run's likelihood, summed
    over the pixels: 003's Error (Tables 3, 10) under the Bernoulli likelihood."""
    return torch.cat([model.likelihood.nll(b, model.decode(model.encode(b, sample=False).mu))
                      for b in x.split(batch_size)]).mean().item()


def reconstruction_nll(context: MeasureContext) -> dict[str, Any]:
    """``recon_nll`` (:func:`recon_nll`) of the test images."""
    return {"recon_nll": recon_nll(context.model.eval(), context.test.floats())}

