"""shared/lora.py: LoRA layers, wrapping a model, merging, counting (chapter 6)."""

import functools

import pytest
import torch
import torch.nn as nn

from shared.classification import prepare_classifier
from shared.lora import LoRALinear, apply_lora, merge_lora
from shared.model_tools import count_parameters

VOCAB = 100
IDS = torch.randint(0, VOCAB, (3, 10), generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def tiny_model(tiny_model):
    """With GPT-2's query/key/value biases: LoRA must leave every base layer's bias frozen too."""
    return functools.partial(tiny_model, vocab_size=VOCAB, qkv_bias=True)


def test_lora_linear_starts_as_an_exact_no_op_and_freezes_its_base():
    torch.manual_seed(0)
    base = nn.Linear(6, 4)
    lora = LoRALinear(base, rank=2, alpha=4)
    x = torch.randn(5, 6)
    assert torch.equal(lora(x), base(x))
    assert not base.weight.requires_grad and not base.bias.requires_grad
    assert lora.A.shape == (6, 2) and lora.B.shape == (2, 4) and lora.A.abs().sum() > 0


def test_lora_linear_computes_base_plus_scaled_low_rank_update():
    torch.manual_seed(0)
    lora = LoRALinear(nn.Linear(6, 4), rank=2, alpha=3)
    with torch.no_grad():
        lora.B.normal_()
    x = torch.randn(5, 6)
    expected = lora.base(x) + 1.5 * x @ lora.A @ lora.B
    torch.testing.assert_close(lora(x), expected)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_lora_linear_rejects_bad_ranks(bad):
    with pytest.raises(ValueError, match="rank"):
        LoRALinear(nn.Linear(3, 3), rank=bad)


def test_lora_linear_wraps_only_linear_layers():
    with pytest.raises(TypeError, match="nn.Linear"):
        LoRALinear(nn.Conv1d(3, 3, 1))


def test_apply_lora_wraps_every_linear_except_excluded_and_freezes_the_rest(tiny_model):
    model = prepare_classifier(tiny_model())
    before = model(IDS).detach()
    wrapped = apply_lora(model, rank=4, alpha=8, exclude=("out_head",))
    assert wrapped == 2 * 6  # per block: query, key, value, out_proj, two feed-forward layers
    assert isinstance(model.out_head, nn.Linear) and not isinstance(model.out_head, LoRALinear)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith((".A", ".B")) for n in trainable)
    # per block: 4 * 4 * (32 + 32) for the attention layers + 4 * (32 + 128) * 2 for the feed-forward layers
    assert count_parameters(model, trainable_only=True) == 2 * (4 * 4 * 64 + 2 * 4 * 160)
    assert torch.equal(model(IDS), before)  # still an exact no-op


def test_training_with_lora_leaves_the_base_weights_unchanged_and_merge_matches(tiny_model):
    model = prepare_classifier(tiny_model())
    apply_lora(model, rank=4, alpha=8, exclude=("out_head",))
    model.out_head.requires_grad_(True)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    labels = torch.tensor([0, 1, 1])
    losses = []
    for _ in range(5):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(IDS)[:, -1], labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    for name, param in model.named_parameters():
        if name in frozen:
            assert torch.equal(param, frozen[name]), f"{name} changed"
    assert model.trf_blocks[0].att.W_query.B.abs().sum() > 0  # the update did train
    with torch.no_grad():
        lora_out = model(IDS)
    assert merge_lora(model) == 12
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    with torch.no_grad():
        torch.testing.assert_close(model(IDS), lora_out, atol=1e-5, rtol=1e-5)
