"""shared/budgets.py: tokens, FLOPs, GPU-hours, memory per GPU, and the scaling lab's parameter count and power-law fit."""

import pytest
import torch

from shared.budgets import (
    chinchilla_tokens,
    fit_power_law,
    gpu_hours,
    per_token_parameters,
    training_flops,
    training_memory_gb,
)


def test_budget_arithmetic():
    assert chinchilla_tokens(1e9) == 2e10
    assert training_flops(1e9, 2e10) == pytest.approx(1.2e20)
    assert gpu_hours(3.6e15, 1e12, 1.0) == pytest.approx(1.0)
    assert gpu_hours(3.6e15, 1e12, 0.5) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        gpu_hours(1.0, 1.0, 0.0)


def test_training_memory_by_zero_stage():
    n = 1e9
    assert training_memory_gb(n) == pytest.approx(16.0)
    assert training_memory_gb(n, 8, 0) == pytest.approx(16.0)  # plain data parallelism: no saving
    assert training_memory_gb(n, 8, 1) == pytest.approx(4 + 12 / 8)
    assert training_memory_gb(n, 8, 2) == pytest.approx(2 + 14 / 8)
    assert training_memory_gb(n, 8, 3) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        training_memory_gb(n, 8, 4)


@pytest.mark.parametrize("a, b", [(3.0, 0.05), (1e4, 0.5), (0.2, -0.3)])
def test_power_law_fit_recovers_known_exponents(a, b):
    x = [10.0**k for k in range(12, 18)]
    fitted_a, fitted_b = fit_power_law(x, [a * v**-b for v in x])
    assert fitted_a == pytest.approx(a, rel=1e-9) and fitted_b == pytest.approx(b, rel=1e-9, abs=1e-12)


def test_power_law_fit_through_noise_stays_near_the_truth():
    generator = torch.Generator().manual_seed(0)
    x = torch.logspace(12, 18, 40, dtype=torch.float64)
    noise = torch.exp(0.02 * torch.randn(40, generator=generator, dtype=torch.float64))  # about 2% scatter
    _, b = fit_power_law(x.tolist(), (5.0 * x**-0.07 * noise).tolist())
    assert b == pytest.approx(0.07, abs=0.005)


@pytest.mark.parametrize("x, y, message", [([1.0], [1.0], "at least two"), ([1.0, 2.0], [1.0], "equal length"),
                                           ([1.0, -2.0], [1.0, 2.0], "positive"), ([2.0, 2.0], [1.0, 3.0], "equal")])
def test_power_law_fit_refuses_what_it_cannot_fit(x, y, message):
    with pytest.raises(ValueError, match=message):
        fit_power_law(x, y)


def test_per_token_parameters_leave_out_only_the_lookups(tiny_model):
    model = tiny_model()
    total = sum(p.numel() for p in model.parameters())
    assert per_token_parameters(model) == total - model.tok_emb.weight.numel() - model.pos_emb.weight.numel()
    rope = tiny_model(position="rope")  # no position table
    assert per_token_parameters(rope) == sum(p.numel() for p in rope.parameters()) - rope.tok_emb.weight.numel()
    tied = tiny_model()
    tied.out_head.weight = tied.tok_emb.weight  # the shared table multiplies in the head: it costs FLOPs
    assert per_token_parameters(tied) == sum(p.numel() for p in tied.parameters()) - tied.pos_emb.weight.numel()
