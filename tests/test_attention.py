"""Unit tests of shared/attention.py (exported by ch03_attention/ch03_attention.ipynb).

Tiny sizes, CPU, float32: the whole file runs in seconds.
"""

import pytest
import torch

from shared.attention import CausalAttention, MultiHeadAttention, MultiHeadAttentionWrapper

D_IN = 12
TOLERANCE = 1e-5


def make_mha(num_heads=2, d_out=8, context_length=16, dropout=0.0, fused=False, seed=0, **kwargs):
    torch.manual_seed(seed)
    return MultiHeadAttention(D_IN, d_out, context_length, dropout, num_heads, fused=fused, **kwargs)


def both_paths(module, x):
    """(explicit output, fused output) of the same module on the same input."""
    module.fused = False
    explicit = module(x)
    module.fused = True
    fused = module(x)
    return explicit, fused


def copy_heads_into(mha, wrapper):
    """Head i of the wrapper owns rows i*head_dim:(i+1)*head_dim of the big projection matrices."""
    with torch.no_grad():
        for name in ("W_query", "W_key", "W_value"):
            weights = [getattr(head, name).weight for head in wrapper.heads]
            getattr(mha, name).weight.copy_(torch.cat(weights, dim=0))
            if getattr(mha, name).bias is not None:
                getattr(mha, name).bias.copy_(torch.cat([getattr(head, name).bias for head in wrapper.heads]))
        mha.out_proj.load_state_dict(wrapper.out_proj.state_dict())


# --- interface (chapter 4 builds against it) ---------------------------------------------------


def test_interface_matches_the_conventions():
    mha = make_mha(num_heads=4, d_out=8, context_length=10, qkv_bias=True)
    assert (mha.num_heads, mha.head_dim, mha.d_out, mha.context_length, mha.fused) == (4, 2, 8, 10, False)
    for name in ("W_query", "W_key", "W_value"):
        layer = getattr(mha, name)
        assert (layer.in_features, layer.out_features, layer.bias is not None) == (D_IN, 8, True)
    assert (mha.out_proj.in_features, mha.out_proj.out_features, mha.out_proj.bias is not None) == (8, 8, True)
    assert make_mha(qkv_bias=False).W_query.bias is None
    assert mha.mask.dtype == torch.bool and mha.mask.shape == (10, 10)
    assert torch.equal(mha.mask, torch.ones(10, 10, dtype=torch.bool).triu(diagonal=1))
    assert "mask" not in mha.state_dict()  # non-persistent buffer
    x = torch.randn(3, 5, 8)
    heads = mha.split_heads(x)
    assert heads.shape == (3, 4, 5, 2)
    assert torch.equal(mha.merge_heads(heads), x)


# --- the explicit and the fused path agree ---------------------------------------------------


@pytest.mark.parametrize("num_heads", [1, 2, 4, 8])
@pytest.mark.parametrize("num_tokens", [1, 7, 16])
def test_fused_matches_explicit_in_eval_mode_with_dropout_configured(num_heads, num_tokens):
    # dropout=0.3 is configured, but eval mode turns it off in both paths
    mha = make_mha(num_heads=num_heads, d_out=16, dropout=0.3).eval()
    x = torch.randn(3, num_tokens, D_IN)
    with torch.no_grad():
        explicit, fused = both_paths(mha, x)
    assert explicit.shape == (3, num_tokens, 16)
    torch.testing.assert_close(fused, explicit, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("num_heads", [1, 3])
@pytest.mark.parametrize("num_tokens", [2, 11])
def test_fused_matches_explicit_in_train_mode_without_dropout(num_heads, num_tokens):
    mha = make_mha(num_heads=num_heads, d_out=12, dropout=0.0).train()
    x = torch.randn(2, num_tokens, D_IN, requires_grad=True)
    grads = []
    outputs = []
    for fused in (False, True):
        mha.fused = fused
        mha.zero_grad()
        x.grad = None
        out = mha(x)
        out.pow(2).sum().backward()
        outputs.append(out.detach())
        grads.append((x.grad.clone(), mha.W_key.weight.grad.clone()))
    torch.testing.assert_close(outputs[1], outputs[0], atol=TOLERANCE, rtol=0)
    for fused_grad, explicit_grad in zip(grads[1], grads[0]):
        torch.testing.assert_close(fused_grad, explicit_grad, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("num_queries", [1, 3])
def test_attend_with_fewer_queries_than_keys_matches_the_last_rows(fused, num_queries):
    """What a KV cache does: the last queries against all keys equal the last rows of the full pass."""
    mha = make_mha(num_heads=2, d_out=8, fused=fused).eval()
    x = torch.randn(2, 9, D_IN)
    with torch.no_grad():
        q, k, v = (mha.split_heads(proj(x)) for proj in (mha.W_query, mha.W_key, mha.W_value))
        full = mha.attend(q, k, v)
        last = mha.attend(q[:, :, -num_queries:], k, v)
    torch.testing.assert_close(last, full[:, :, -num_queries:], atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("num_heads", [1, 2, 4])
@pytest.mark.parametrize("qkv_bias", [False, True])
def test_stacked_heads_wrapper_matches_weight_split_module(num_heads, qkv_bias, fused):
    torch.manual_seed(1)
    wrapper = MultiHeadAttentionWrapper(D_IN, 8, 16, 0.0, num_heads, qkv_bias=qkv_bias)
    mha = make_mha(num_heads=num_heads, d_out=8, qkv_bias=qkv_bias, seed=2)
    x = torch.randn(3, 10, D_IN)
    with torch.no_grad():
        assert not torch.allclose(wrapper(x), mha(x))  # different random weights: the copy below matters
        copy_heads_into(mha, wrapper)
        mha.fused = fused
        torch.testing.assert_close(mha(x), wrapper(x), atol=TOLERANCE, rtol=0)


# --- causality as a property ---------------------------------------------------------------


def _modules_to_check():
    torch.manual_seed(3)
    return {
        "mha explicit": make_mha(num_heads=2, d_out=8, fused=False),
        "mha fused": make_mha(num_heads=2, d_out=8, fused=True),
        "causal attention": CausalAttention(D_IN, 4, 16, 0.0),
        "stacked heads": MultiHeadAttentionWrapper(D_IN, 8, 16, 0.0, 2),
    }


@pytest.mark.parametrize("name", list(_modules_to_check()))
def test_changing_later_tokens_never_changes_earlier_outputs(name):
    module = _modules_to_check()[name].eval()
    generator = torch.Generator().manual_seed(4)
    num_tokens = 12
    x = torch.randn(2, num_tokens, D_IN, generator=generator)
    with torch.no_grad():
        reference = module(x)
        for t in range(num_tokens - 1):
            changed = x.clone()
            changed[:, t + 1 :] = torch.randn(2, num_tokens - t - 1, D_IN, generator=generator) * 5
            out = module(changed)
            torch.testing.assert_close(out[:, : t + 1], reference[:, : t + 1], atol=1e-6, rtol=0)
            # ...and the test can fail: the changed positions do change
            assert not torch.allclose(out[:, t + 1 :], reference[:, t + 1 :])


# --- dropout follows train / eval mode -----------------------------------------------------


@pytest.mark.parametrize("fused", [False, True])
def test_dropout_is_active_in_training_and_off_in_eval(fused):
    mha = make_mha(num_heads=2, d_out=8, dropout=0.5, fused=fused)
    no_dropout = make_mha(num_heads=2, d_out=8, dropout=0.0, fused=fused)  # same seed: same weights
    x = torch.randn(2, 10, D_IN)
    with torch.no_grad():
        mha.train()
        first, second = mha(x), mha(x)
        assert not torch.allclose(first, second), "two training passes should draw different dropout masks"
        mha.eval()
        eval_a, eval_b = mha(x), mha(x)
        assert torch.equal(eval_a, eval_b)
        torch.testing.assert_close(eval_a, no_dropout.eval()(x), atol=TOLERANCE, rtol=0)
        assert not torch.allclose(first, eval_a)


def test_dropout_in_causal_attention_follows_the_mode():
    torch.manual_seed(5)
    layer = CausalAttention(D_IN, 4, 16, dropout=0.5)
    x = torch.randn(2, 10, D_IN)
    with torch.no_grad():
        assert not torch.allclose(layer.train()(x), layer(x))
        assert torch.equal(layer.eval()(x), layer(x))


# --- bad input gives a clear error -------------------------------------------------------------


@pytest.mark.parametrize("cls", [MultiHeadAttention, MultiHeadAttentionWrapper])
def test_d_out_not_divisible_by_heads(cls):
    with pytest.raises(ValueError, match=r"d_out \(10\) must be divisible by num_heads \(4\)"):
        cls(D_IN, 10, 16, 0.0, 4)


@pytest.mark.parametrize("fused", [False, True])
def test_sequence_longer_than_the_mask(fused):
    mha = make_mha(context_length=8, fused=fused)
    mha(torch.randn(1, 8, D_IN))  # exactly the context length is fine
    with pytest.raises(ValueError, match="9 positions exceed the context length 8"):
        mha(torch.randn(1, 9, D_IN))


@pytest.mark.parametrize("module", [CausalAttention(D_IN, 4, 8, 0.0), MultiHeadAttentionWrapper(D_IN, 4, 8, 0.0, 2)])
def test_sequence_longer_than_the_mask_single_heads(module):
    with pytest.raises(ValueError, match="9 tokens exceed the context length 8"):
        module(torch.randn(1, 9, D_IN))


@pytest.mark.parametrize("shape", [(5, D_IN), (2, 1, 5, D_IN), (D_IN,)])
@pytest.mark.parametrize("module", [make_mha(), CausalAttention(D_IN, 4, 16, 0.0), MultiHeadAttentionWrapper(D_IN, 4, 16, 0.0, 2)])
def test_wrong_input_rank(module, shape):
    with pytest.raises(ValueError, match=r"expected input of shape \(batch, tokens, d_in\)"):
        module(torch.randn(*shape))


def test_wrong_feature_size():
    with pytest.raises(ValueError, match=f"expected {D_IN} features"):
        make_mha()(torch.randn(1, 4, D_IN + 1))


def test_more_queries_than_keys():
    mha = make_mha()
    q = torch.randn(1, 2, 5, 4)
    kv = torch.randn(1, 2, 3, 4)
    with pytest.raises(ValueError, match="5 queries but only 3 keys"):
        mha.attend(q, kv, kv)
