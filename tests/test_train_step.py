"""shared/train_step.py: learning-rate schedule, gradient clipping, mixed precision and the training step."""

import functools
import math

import pytest
import torch
import torch.nn.functional as F

from shared.text import sample_batch
from shared.train_step import (
    WarmupCosine,
    autocast_dtype,
    clip_gradients,
    grad_norm,
    make_grad_scaler,
    train_step,
    warmup_cosine_scheduler,
)


@pytest.fixture(scope="module")
def tiny_model(tiny_model):
    """The shared tiny sizes with dropout on, as in the chapter's training runs."""
    return functools.partial(tiny_model, drop_rate=0.1)


def random_tokens(n=3000, vocab=101):
    return torch.randint(0, vocab, (n,), generator=torch.Generator().manual_seed(0))


# --- schedule and clipping ---------------------------------------------------------------


def test_warmup_cosine_shape():
    f = WarmupCosine(warmup_steps=10, total_steps=100, min_ratio=0.1)
    values = [f(s) for s in range(100)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(values[:9], values[1:10]))  # rising during warmup
    assert all(a >= b for a, b in zip(values[10:], values[11:]))  # falling afterwards
    assert values[-1] == pytest.approx(0.1)
    assert values[10 + 45] == pytest.approx(0.55, abs=0.02)  # halfway down the cosine


@pytest.mark.parametrize("args", [(10, 10), (-1, 10), (5, 10, 1.5)])
def test_warmup_cosine_rejects_bad_arguments(args):
    with pytest.raises(ValueError):
        WarmupCosine(*args)


def test_scheduler_sets_learning_rates():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    scheduler = warmup_cosine_scheduler(optimizer, 2, 10, min_ratio=0.2)
    seen = []
    for _ in range(10):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen[0] == pytest.approx(0.25) and seen[1] == pytest.approx(0.5) and seen[-1] == pytest.approx(0.1)


def test_clip_gradients_caps_the_global_norm(tiny_model):
    model = tiny_model()
    inputs, targets = sample_batch(random_tokens(), 4, 16, step=0)
    (model(inputs).sum() * 100).backward()
    norm = grad_norm(model)
    before, after = clip_gradients(model, max_norm=1.0)
    assert before == pytest.approx(norm, rel=1e-5) and before > 1.0
    assert after == pytest.approx(1.0, rel=1e-4)
    before2, after2 = clip_gradients(model, max_norm=10.0)  # already below the cap: unchanged
    assert after2 == pytest.approx(before2, rel=1e-5)


# --- mixed precision ---------------------------------------------------------------------


def test_cpu_uses_bfloat16_only_with_native_support(monkeypatch):
    native = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert autocast_dtype("cpu") == (torch.bfloat16 if native else None)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    assert autocast_dtype("cpu") == torch.bfloat16
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert autocast_dtype("cpu") is None  # emulated bfloat16 would be far slower than float32


def test_only_float16_gets_a_grad_scaler():
    assert make_grad_scaler("cpu", None) is None and make_grad_scaler("cpu", torch.bfloat16) is None
    assert isinstance(make_grad_scaler("cpu", torch.float16), torch.amp.GradScaler)


def test_float16_with_grad_scaler_on_the_cpu_trains_and_stays_finite(tiny_model):
    # autocast_dtype never picks float16 on a CPU, but the scaler branch runs there too: this is where CI sees it.
    model = tiny_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = make_grad_scaler("cpu", torch.float16)
    before = model.out_head.weight.clone()
    loss, norm = train_step(model, optimizer, *sample_batch(random_tokens(), 4, 16, 0), max_norm=1.0,
                            amp_dtype=torch.float16, scaler=scaler)
    assert math.isfinite(float(loss)) and math.isfinite(float(norm)) and float(norm) > 0
    assert scaler.get_scale() > 0 and not torch.equal(before, model.out_head.weight)


def test_train_step_with_bfloat16_autocast_keeps_float32_weights(tiny_model):
    model = tiny_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = model.out_head.weight.clone()
    loss, norm = train_step(model, optimizer, *sample_batch(random_tokens(), 4, 16, 0), max_norm=1.0,
                            amp_dtype=torch.bfloat16)
    assert math.isfinite(float(loss)) and float(norm) > 0
    assert model.out_head.weight.dtype == torch.float32 and not torch.equal(before, model.out_head.weight)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the float16 + GradScaler branch needs a CUDA GPU")
def test_float16_with_grad_scaler_on_cuda(tiny_model):
    model = tiny_model().cuda()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = make_grad_scaler("cuda", torch.float16)
    inputs, targets = (t.cuda() for t in sample_batch(random_tokens(), 4, 16, 0))
    loss, _ = train_step(model, optimizer, inputs, targets, max_norm=1.0, amp_dtype=torch.float16, scaler=scaler)
    assert loss.device.type == "cuda"  # still on the GPU: nothing made the CPU wait
    assert math.isfinite(float(loss))


# --- what train_step returns, and a loss of the caller's -----------------------------------


def test_train_step_returns_detached_scalar_tensors(tiny_model):
    model = tiny_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = sample_batch(random_tokens(), 4, 16, 0)
    loss, norm = train_step(model, optimizer, *batch, max_norm=1.0)
    for value in (loss, norm):
        assert isinstance(value, torch.Tensor) and value.dim() == 0 and not value.requires_grad
    assert train_step(model, optimizer, *batch)[1] is None  # no max_norm: no clipping, no norm


def test_a_loss_fn_equal_to_the_default_takes_the_same_step(tiny_model):
    def cross_entropy(model, inputs, targets):
        return F.cross_entropy(model(inputs).flatten(0, 1).float(), targets.flatten())

    batch = sample_batch(random_tokens(), 4, 16, 0)
    results = []
    for loss_fn in (None, cross_entropy):
        model = tiny_model(drop_rate=0.0)  # no dropout: both runs must compute the same thing
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        chosen = {} if loss_fn is None else {"loss_fn": loss_fn}  # None: train_step's default, batch_loss
        loss, norm = train_step(model, optimizer, *batch, max_norm=1.0, **chosen)
        results.append((loss, norm, model.state_dict()))
    (loss_a, norm_a, state_a), (loss_b, norm_b, state_b) = results
    assert torch.equal(loss_a, loss_b) and torch.equal(norm_a, norm_b)
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)


def test_loss_fn_is_what_gets_minimised(tiny_model):
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    weights = model.out_head.weight.clone()
    # A loss that ignores the targets and depends on the output head alone: only that head may move.
    loss, _ = train_step(model, optimizer, *sample_batch(random_tokens(), 4, 16, 0),
                         loss_fn=lambda model, inputs, targets: model.out_head.weight.square().mean())
    assert float(loss) == pytest.approx(weights.square().mean().item())
    assert not torch.equal(weights, model.out_head.weight)
    assert model.tok_emb.weight.grad is None  # the embedding took no part in this loss
