"""Checks that need a CUDA GPU (marked ``cuda``; skipped without one). benchmarks/gpu_check.sh
runs them with the GPU figures."""

import dataclasses
import json

import pytest
import torch

from wiseale.functional import aggregate_kl_upper_bound, aggregate_kl_upper_bound_reference
from wiseale.training import train

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 2e-5)])
@pytest.mark.parametrize("kernel", ["eager", "compiled"])
@pytest.mark.parametrize("tile", [None, 100])  # one tile, or diagonal and transposed ones
def test_aggregate_kl_kernels_on_cuda_match_the_literal_formula(kernel, dtype, tol, tile):
    """Value and gradients of Eq. 21 on the GPU (Triton for the compiled kernel) against
    autograd through the literal formula in float64 on the CPU."""
    gen = torch.Generator().manual_seed(0)
    mu = torch.randn(512, 8, generator=gen, dtype=torch.float64)
    logvar = 0.5 * torch.randn(512, 8, generator=gen, dtype=torch.float64)
    ref_mu, ref_logvar = mu.clone().requires_grad_(), logvar.clone().requires_grad_()
    reference = aggregate_kl_upper_bound_reference(ref_mu, ref_logvar)
    reference.backward()
    gpu_mu = mu.to("cuda", dtype).requires_grad_()
    gpu_logvar = logvar.to("cuda", dtype).requires_grad_()
    value = aggregate_kl_upper_bound(gpu_mu, gpu_logvar, tile, kernel=kernel)
    value.backward()
    scale = max(1.0, abs(reference.item()))
    assert abs(value.item() - reference.item()) <= tol * scale
    for got, want in ((gpu_mu.grad, ref_mu.grad), (gpu_logvar.grad, ref_logvar.grad)):
        torch.testing.assert_close(got.cpu().double(), want, rtol=tol * 50, atol=tol * 50)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_cuda_run_trains_and_evaluates(tmp_path, tiny_sine, precision):
    config = dataclasses.replace(tiny_sine, device="cuda", precision=precision, epochs=2)
    train(config, tmp_path / "run", progress=False)
    rows = [json.loads(r) for r in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
    evaluation = json.loads((tmp_path / "run/evaluation.json").read_text())
    assert evaluation["test"]["recon_error"] > 0
