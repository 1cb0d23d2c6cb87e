"""The model, global batch and fixed noise shared by the DDP test and its worker."""

import torch

from wiseale.build import load_split, model_from_config, resolve
from wiseale.config import RunConfig

CONFIG = RunConfig(method="wise-ale", data="sine", n_train=64, n_test=16, batch_size=8,
                   latent_dim=4, seed=3)


def global_batch(n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(11)
    x = load_split(CONFIG, "train").x[:n]
    return x, torch.randn(n, CONFIG.latent_dim, generator=g)


def model_and_noise(eps: torch.Tensor) -> torch.nn.Module:
    """The config's model (same weights everywhere) whose encoder noise is ``eps``."""
    config = resolve(CONFIG, load_split(CONFIG, "train"))
    model = model_from_config(config)
    torch.randn_like = lambda t, **kw: eps.clone().to(t)  # this process only
    return model
