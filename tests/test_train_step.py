"""shared/train_step.py: learning-rate schedule, gradient clipping, mixed precision and the training step."""

import functools
import math

import contextlib

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from shared.text import sample_batch
from shared.train_step import (
    WarmupCosine,
    autocast_dtype,
    clip_gradients,
    decay_groups,
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


# --- gradient accumulation ---------------------------------------------------------------


@pytest.mark.parametrize("steps", [2, 3, 8])
def test_accumulation_takes_the_step_of_the_whole_batch(tiny_model, steps):
    """k micro-batches (3 of sizes 3, 3, 2: unequal shares) give the whole batch's loss, gradients and step."""
    batch = sample_batch(random_tokens(), 8, 16, 0)
    results = []
    for k in (1, steps):
        model = tiny_model(drop_rate=0.0).double()  # float64: the two ways of summing agree to ~1e-15
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
        loss, norm = train_step(model, optimizer, *batch, max_norm=1.0, accumulation_steps=k)
        results.append((loss, norm, torch.cat([p.detach().flatten() for p in model.parameters()])))
    (loss_a, norm_a, weights_a), (loss_b, norm_b, weights_b) = results
    # batch_loss computes the cross-entropy in float32 (as mixed precision needs), so the reported losses agree
    # to float32 rounding only; the gradients and the step stay in float64.
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-6, atol=0)
    torch.testing.assert_close(norm_b, norm_a, rtol=1e-10, atol=0)
    torch.testing.assert_close(weights_b, weights_a, rtol=0, atol=1e-12)
    before = torch.cat([p.detach().flatten() for p in tiny_model(drop_rate=0.0).double().parameters()])
    assert (weights_a - before).abs().max() > 1e-4, "the step did move the weights"


def test_accumulation_holds_one_micro_batch_at_a_time(tiny_model):
    model = tiny_model(drop_rate=0.0)
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[0]))
    train_step(model, torch.optim.SGD(model.parameters(), lr=0.1), *sample_batch(random_tokens(), 8, 16, 0),
               accumulation_steps=4)
    assert seen == [2, 2, 2, 2]


def test_under_data_parallelism_only_the_last_micro_batch_syncs(tiny_model):
    class FakeDDP(nn.Module):
        """Stands in for DistributedDataParallel: counts the backward passes run under no_sync."""

        def __init__(self, module):
            super().__init__()
            self.module, self.unsynced = module, 0

        def forward(self, idx):
            return self.module(idx)

        @contextlib.contextmanager
        def no_sync(self):
            self.unsynced += 1
            yield

    model = FakeDDP(tiny_model(drop_rate=0.0))
    train_step(model, torch.optim.SGD(model.parameters(), lr=0.1), *sample_batch(random_tokens(), 8, 16, 0),
               accumulation_steps=4)
    assert model.unsynced == 3


@pytest.mark.parametrize("bad", [0, -1, 9, 1.5, True])
def test_accumulation_steps_must_fit_the_batch(tiny_model, bad):
    model = tiny_model()
    with pytest.raises(ValueError, match="accumulation_steps"):
        train_step(model, torch.optim.SGD(model.parameters(), lr=0.1), *sample_batch(random_tokens(), 8, 16, 0),
                   accumulation_steps=bad)


# --- weight decay groups -----------------------------------------------------------------


def test_decay_groups_put_every_trainable_parameter_in_exactly_one_group(tiny_model):
    model = tiny_model()
    decay, no_decay = decay_groups(model, weight_decay=0.1)
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.1, 0.0)
    grouped = [id(p) for p in decay["params"] + no_decay["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters()) and len(set(grouped)) == len(grouped)
    names = {id(p): name for name, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert all(name.endswith(".weight") and "norm" not in name and "emb" not in name for name in decayed)
    assert "out_head.weight" in decayed and "trf_blocks.0.att.W_query.weight" in decayed
    kept = {names[id(p)] for p in no_decay["params"]}
    assert {"tok_emb.weight", "pos_emb.weight", "final_norm.scale", "final_norm.shift"} <= kept
    assert any(name.endswith(".bias") for name in kept)
    torch.optim.AdamW(decay_groups(model, 0.1), lr=1e-3)  # AdamW takes the groups as they are


def test_decay_groups_treat_a_tied_head_as_an_embedding_and_skip_frozen_parameters(tiny_model):
    model = tiny_model()
    model.out_head.weight = model.tok_emb.weight
    model.trf_blocks[0].requires_grad_(False)
    decay, no_decay = decay_groups(model, weight_decay=0.1)
    assert all(p is not model.tok_emb.weight for p in decay["params"])
    assert sum(p is model.tok_emb.weight for p in no_decay["params"]) == 1
    frozen = {id(p) for p in model.trf_blocks[0].parameters()}
    assert not frozen & {id(p) for p in decay["params"] + no_decay["params"]}
