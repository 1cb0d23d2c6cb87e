"""Evaluation of a trained model on a data set (001 Sec. 5, Fig. 6)."""

from __future__ import annotations

import torch
from torch import Tensor

from wiseale import functional as F
from wiseale.model import Autoencoder

AGGREGATE_SAMPLES = 4096
EVAL_SEED = 1234


@torch.no_grad()
def evaluate(model: Autoencoder, x: Tensor, batch_size: int = 1024) -> dict[str, float | None]:
    """Test metrics, each a mean over the samples of ``x``:

    - ``recon_error``: sum_d (x - x_hat)^2 with x_hat decoded from the posterior mean;
    - ``mse``: recon_error / number of data dimensions;
    - ``kl_prior``: KL(q(z|x) || N(0, I)), the "AEVB KL" of Fig. 6;
    - ``elbo``: log p(x|z) - KL(q(z|x) || N(0, I)) with one z ~ q(z|x) (seeded);
    - ``aggregate_kl_ub``: Eq. 21 over the first 4096 posteriors.
    The last three are None for a deterministic encoder, which has no posterior density.
    """
    was_training = model.training
    model.eval()
    sse, kl, elbo, mus, logvars = [], [], [], [], []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(EVAL_SEED)
        for batch in x.split(batch_size):
            mean_post = model.encode(batch, sample=False)
            x_hat = model.likelihood.mean(model.decode(mean_post.mu))
            sse.append((batch - x_hat).square().flatten(1).sum(1))
            if mean_post.logvar is None:
                continue
            post = model.encode(batch, sample=True)
            batch_kl = F.gaussian_kl(post.mu, post.logvar)
            kl.append(batch_kl)
            elbo.append(-model.likelihood.nll(batch, model.decode(post.z)) - batch_kl)
            mus.append(post.mu)
            logvars.append(post.logvar)
    model.train(was_training)
    recon_error = torch.cat(sse).mean().item()
    result: dict[str, float | None] = {"recon_error": recon_error,
                                       "mse": recon_error / x[0].numel(),
                                       "kl_prior": None, "elbo": None, "aggregate_kl_ub": None}
    if kl:
        mu, logvar = torch.cat(mus)[:AGGREGATE_SAMPLES], torch.cat(logvars)[:AGGREGATE_SAMPLES]
        result.update(kl_prior=torch.cat(kl).mean().item(), elbo=torch.cat(elbo).mean().item(),
                      aggregate_kl_ub=F.aggregate_kl_upper_bound(mu, logvar, 256).item())
    return result
