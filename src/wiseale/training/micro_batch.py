"""Micro-batches: the regularisers on a batch larger than fits through the networks at once.

WiSE-ALE's estimate of the aggregate posterior improves with the number M of posteriors in
the batch (001 Eq. 28), but the networks' activations for M samples may not fit in memory.
:func:`micro_batch_step` computes the loss of a batch of M samples in micro-batches:

1. encode every micro-batch without gradients, remembering each one's random state, and
   assemble the posterior of the whole batch (O(M d) memory);
2. evaluate the regularisers on it and differentiate them with respect to the posterior's
   tensors (mu, logvar, z, log q) only;
3. for each micro-batch again, with the same random state (so the same noise and the same
   z): encode, decode, and back-propagate its share of the reconstruction plus the linear
   term <dR/dposterior, posterior>, whose gradient with respect to the weights is exactly
   this micro-batch's share of dR/dweights (the chain rule through the posterior).

The gradients are those of one pass over the whole batch (tests/test_micro_batch.py), for any
regulariser of the posterior; each sample is encoded twice. The per-sample reconstruction
(``reconstruction=sample``) is required: Eq. 15-16 compare every pair of samples.
Encoders with batch statistics (batch norm in training mode) see micro-batches, as in any
gradient accumulation.
"""

from __future__ import annotations

import torch
from torch import Tensor

from wiseale.errors import WisealeError
from wiseale.model import Autoencoder, LossOutput, full_precision, full_precision_region
from wiseale.noises import Posterior
from wiseale.training.rng import rng_state, set_rng_state


def micro_batch_step(model: Autoencoder, x: Tensor, micro_batch: int) -> LossOutput:
    """Loss of batch ``x`` in micro-batches of ``micro_batch`` samples, with gradients
    accumulated into the model's parameters (backward is called here); the returned loss
    and parts are detached batch means, as :meth:`Autoencoder.forward` logs them."""
    if model.reconstruction != "sample":
        raise WisealeError(f"--micro-batch needs the per-sample reconstruction; "
                           f"reconstruction={model.reconstruction} compares every pair of the "
                           "batch")
    chunks, device = x.split(micro_batch), x.device
    states, encoded = [], []
    with torch.no_grad():
        for chunk in chunks:
            states.append(rng_state(device))
            encoded.append(model.encode(chunk))
    whole = Posterior.cat(encoded)
    for value in whole.tensors().values():  # code is mu where it is not a field of its own
        value.requires_grad_()
    with full_precision_region(device.type):  # float32 under bf16 autocast
        penalty, reg_parts = model.regularize(whole)
    if penalty.requires_grad:
        penalty.backward()
    grads = {f: value.grad for f, value in whole.tensors().items() if value.grad is not None}
    totals: dict[str, Tensor] = {}
    start = 0
    for chunk, state in zip(chunks, states, strict=True):
        set_rng_state(state, device)
        post = model.encode(chunk)
        out = full_precision(model.decode(post.z))
        with full_precision_region(device.type):
            own_nll = model.likelihood.nll(chunk, out)
        rows = slice(start, start + len(chunk))
        tensors = post.tensors()
        linear = sum((tensors[f] * g[rows]).sum() for f, g in grads.items())
        (own_nll.sum() / len(x) + linear).backward()
        share = len(chunk) / len(x)
        parts = {"nll": own_nll.detach().mean()}
        parts.update(model.diagnostics(chunk, out.detach(), post, {**parts, **reg_parts}))
        for key, value in parts.items():
            totals[key] = totals.get(key, 0.0) + share * value
        start += len(chunk)
    totals.update(reg_parts)
    loss = totals["nll"] + penalty.detach()
    return LossOutput(loss, {"recon": totals["nll"], **totals, "loss": loss})
