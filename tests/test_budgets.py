"""shared/budgets.py: tokens, FLOPs, GPU-hours and memory per GPU."""

import pytest

from shared.budgets import chinchilla_tokens, gpu_hours, training_flops, training_memory_gb


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
