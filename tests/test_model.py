"""shared/model.py: config, building blocks, GPTModel, parameter counts, input checks, switches."""

import pytest
import torch
from torch import nn

from shared.blocks import LayerNorm, MoEFeedForward, RMSNorm, RotaryEmbedding, SwiGLUFeedForward, llama3_frequencies
from shared.model import FeedForward, GELU, GPT2_SIZES, GPTConfig, GPTModel, TransformerBlock
from shared.model_tools import count_parameters

from .architecture_switches import SWITCHES

# GPTConfig's default dropout: these tests check the model as the chapter configures it.
TINY = dict(vocab_size=97, context_length=12, emb_dim=16, n_heads=4, n_layers=2, drop_rate=0.1)


@pytest.fixture(scope="module")
def tiny_model(tiny_model):
    """This file's model: TINY's sizes, seed 123, in eval mode (dropout would blur the comparisons)."""

    def build(seed=123, **overrides):
        return tiny_model(seed=seed, **{**TINY, **overrides}).eval()

    return build


def test_default_config_is_gpt2_small():
    cfg = GPTConfig()
    assert (cfg.vocab_size, cfg.context_length, cfg.emb_dim, cfg.n_heads, cfg.n_layers) == (50257, 1024, 768, 12, 12)
    assert cfg.drop_rate == 0.1 and cfg.qkv_bias is False
    assert (cfg.norm, cfg.norm_position, cfg.ffn, cfg.position, cfg.fused_attention) == ("layernorm", "pre", "gelu", "absolute", False)
    assert GPTConfig.gpt2("124M") == cfg
    assert GPTConfig.gpt2("1558M", qkv_bias=True).emb_dim == 1600


@pytest.mark.parametrize("bad", [dict(norm="batchnorm"), dict(norm_position="middle"), dict(ffn="relu"),
                                 dict(position="sinusoidal"), dict(emb_dim=10, n_heads=4), dict(n_layers=0),
                                 dict(n_kv_heads=3), dict(n_kv_heads=0), dict(head_dim=0), dict(ffn="moe", n_experts=2,
                                 n_experts_per_token=3), dict(position="rope", head_dim=5),
                                 dict(rope_scaling=dict(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                                        original_context_length=8)),
                                 dict(position="rope", rope_scaling=dict(factor=8.0))])
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        GPTConfig(**{**TINY, **bad})


def test_unknown_gpt2_size():
    with pytest.raises(ValueError, match="unknown GPT-2 size"):
        GPTConfig.gpt2("7B")


def meta_model(**overrides):
    with torch.device("meta"):
        return GPTModel(GPTConfig.gpt2(**overrides))


def test_parameter_counts_of_gpt2_small():
    model = meta_model()
    assert count_parameters(model) == 163_009_536
    assert count_parameters(model, share_output_head=True) == 124_412_160
    assert count_parameters(model) - count_parameters(model, share_output_head=True) == 50257 * 768
    # OpenAI's GPT-2 small (with query/key/value biases, head tied): the well-known 124,439,808.
    with_bias = meta_model(qkv_bias=True)
    assert count_parameters(with_bias, share_output_head=True) == 124_439_808
    assert count_parameters(with_bias) == 163_037_184


def test_parameter_counts_of_larger_sizes_follow_the_formula():
    for size, dims in GPT2_SIZES.items():
        d, layers, vocab, ctx = dims["emb_dim"], dims["n_layers"], 50257, 1024
        block = 4 * d * d + d + (d * 4 * d + 4 * d + 4 * d * d + d) + 4 * d  # attention, feed-forward, 2 norms
        expected = vocab * d + ctx * d + layers * block + 2 * d + d * vocab
        assert count_parameters(meta_model(size=size)) == expected, size


def test_count_parameters_can_count_only_what_trains(tiny_model):
    model = tiny_model()
    total = count_parameters(model)
    assert count_parameters(model, trainable_only=True) == total
    model.requires_grad_(False)
    model.trf_blocks[-1].requires_grad_(True)
    block = sum(p.numel() for p in model.trf_blocks[-1].parameters())
    assert count_parameters(model, trainable_only=True) == block
    # a frozen head is not subtracted from what trains
    assert count_parameters(model, share_output_head=True, trainable_only=True) == block
    model.out_head.requires_grad_(True)
    assert count_parameters(model, share_output_head=True, trainable_only=True) == block
    assert count_parameters(model, trainable_only=True) == block + model.out_head.weight.numel()
    assert count_parameters(model) == total, "freezing changes nothing in the full count"


def test_a_really_tied_head_is_not_subtracted_twice(tiny_model):
    model = tiny_model()
    model.out_head.weight = model.tok_emb.weight
    assert count_parameters(model) == count_parameters(model, share_output_head=True)


@pytest.mark.parametrize("size", list(GPT2_SIZES))
def test_every_size_builds_and_runs_when_shrunk(size):
    dims = GPT2_SIZES[size]
    # Same depth and head count as the real size, but 4 features per head and a tiny vocabulary.
    cfg = GPTConfig.gpt2(size, vocab_size=50, context_length=8, emb_dim=4 * dims["n_heads"])
    torch.manual_seed(0)
    model = GPTModel(cfg)
    assert len(model.trf_blocks) == dims["n_layers"] and model.trf_blocks[0].att.num_heads == dims["n_heads"]
    logits = model(torch.randint(0, 50, (2, 8)))
    assert logits.shape == (2, 8, 50) and torch.isfinite(logits).all()


def test_module_names_follow_the_interface(tiny_model):
    model = tiny_model()
    names = set(dict(model.named_parameters()))
    for name in ["tok_emb.weight", "pos_emb.weight", "final_norm.scale", "final_norm.shift", "out_head.weight",
                 "trf_blocks.0.att.W_query.weight", "trf_blocks.0.att.W_key.weight", "trf_blocks.0.att.W_value.weight",
                 "trf_blocks.0.att.out_proj.weight", "trf_blocks.0.att.out_proj.bias",
                 "trf_blocks.0.ff.layers.0.weight", "trf_blocks.0.ff.layers.2.bias",
                 "trf_blocks.0.norm1.scale", "trf_blocks.0.norm2.shift"]:
        assert name in names, name
    assert "out_head.bias" not in names and "trf_blocks.0.att.W_query.bias" not in names
    assert isinstance(model.trf_blocks, nn.ModuleList) and isinstance(model.trf_blocks[0].drop_shortcut, nn.Dropout)
    assert isinstance(model.trf_blocks[0].ff.layers[1], GELU)
    # Buffers (mask, rotary tables) are not in the state dict: only weights are saved and loaded.
    assert set(model.state_dict()) == names


def test_layer_norm_matches_torch_and_normalises():
    torch.manual_seed(0)
    x = torch.randn(3, 5, 8) * 4 + 2
    ours = LayerNorm(8)(x)
    assert torch.allclose(ours, nn.LayerNorm(8, eps=1e-5)(x), atol=1e-5)
    assert torch.allclose(ours.mean(-1), torch.zeros(3, 5), atol=1e-5)
    assert torch.allclose(ours.var(-1, unbiased=False), torch.ones(3, 5), atol=1e-3)


def test_rms_norm_gives_unit_root_mean_square():
    torch.manual_seed(0)
    x = torch.randn(3, 8) * 5 + 1
    out = RMSNorm(8)(x)
    assert torch.allclose(out.pow(2).mean(-1).sqrt(), torch.ones(3), atol=1e-3)
    assert not torch.allclose(out.mean(-1), torch.zeros(3), atol=1e-2)  # the mean is left alone
    assert [n for n, _ in RMSNorm(8).named_parameters()] == ["scale"]


def test_gelu_is_the_tanh_approximation():
    x = torch.linspace(-6, 6, 101)
    assert torch.allclose(GELU()(x), nn.functional.gelu(x, approximate="tanh"), atol=1e-6)
    assert not torch.allclose(GELU()(x), nn.functional.gelu(x), atol=1e-5)


def test_feed_forward_shapes_and_widths():
    cfg = GPTConfig(**TINY)
    ff = FeedForward(cfg)
    assert ff.layers[0].out_features == 4 * cfg.emb_dim and ff(torch.rand(2, 3, 16)).shape == (2, 3, 16)
    big = GPTConfig()
    count = lambda m: sum(p.numel() for p in m.parameters())
    with torch.device("meta"):
        assert count(SwiGLUFeedForward(big)) == count(FeedForward(big)) - 4 * 768 - 768  # same weights, no biases


def test_rotary_embedding_depends_on_relative_position_only():
    torch.manual_seed(0)
    rope = RotaryEmbedding(head_dim=8, context_length=32)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)
    score = lambda m, n: (rope(q, m) * rope(k, n)).sum()
    assert torch.allclose(score(7, 3), score(20, 16), atol=1e-5)
    assert not torch.allclose(score(7, 3), score(7, 4), atol=1e-3)
    assert torch.allclose(rope(q, 0), q)  # position 0 is not rotated
    assert torch.allclose(rope(q, 11).norm(), q.norm(), atol=1e-5)
    with pytest.raises(ValueError, match="even"):
        RotaryEmbedding(head_dim=7, context_length=4)


def test_transformer_block_keeps_the_shape_and_pre_norm_is_default():
    cfg = GPTConfig(**TINY)
    block = TransformerBlock(cfg)
    assert block.pre_norm and block(torch.rand(2, 5, 16)).shape == (2, 5, 16)
    assert not TransformerBlock(GPTConfig(**TINY, norm_position="post")).pre_norm


@pytest.mark.parametrize("name", list(SWITCHES))
def test_each_switch_builds_and_runs(tiny_model, name):
    model = tiny_model(**SWITCHES[name])
    idx = torch.randint(0, TINY["vocab_size"], (3, TINY["context_length"]))
    logits = model(idx)
    assert logits.shape == (3, TINY["context_length"], TINY["vocab_size"]) and torch.isfinite(logits).all()
    assert (model.pos_emb is None) == (SWITCHES[name].get("position") == "rope")
    norm = RMSNorm if SWITCHES[name].get("norm") == "rmsnorm" else LayerNorm
    assert type(model.trf_blocks[0].norm1) is norm  # not isinstance: RMSNorm is a LayerNorm subclass
    kinds = {"gelu": FeedForward, "swiglu": SwiGLUFeedForward, "moe": MoEFeedForward}
    assert type(model.trf_blocks[0].ff) is kinds[SWITCHES[name].get("ffn", "gelu")]


@pytest.mark.parametrize("name", ["rmsnorm", "post-norm", "rope"])
def test_switches_change_the_computation(tiny_model, name):
    idx = torch.randint(0, TINY["vocab_size"], (1, 6), generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(tiny_model(**SWITCHES[name])(idx), tiny_model()(idx), atol=1e-4)


def test_fused_attention_gives_the_same_logits(tiny_model):
    idx = torch.randint(0, TINY["vocab_size"], (2, 9), generator=torch.Generator().manual_seed(0))
    assert torch.allclose(tiny_model()(idx), tiny_model(fused_attention=True)(idx), atol=1e-5)


# One test per switch combination, so that one broken combination does not hide the others.
@pytest.mark.parametrize("name", list(SWITCHES))
def test_causality_later_tokens_do_not_change_earlier_logits(tiny_model, name):
    model = tiny_model(**SWITCHES[name])
    idx = torch.randint(0, TINY["vocab_size"], (1, 10), generator=torch.Generator().manual_seed(1))
    changed = idx.clone()
    changed[0, 7:] = (changed[0, 7:] + 1) % TINY["vocab_size"]
    assert torch.allclose(model(idx)[:, :7], model(changed)[:, :7], atol=1e-5)
    assert not torch.allclose(model(idx)[:, 7:], model(changed)[:, 7:], atol=1e-5)  # the change did reach the model


def test_same_seed_same_weights(tiny_model):
    a, b, c = tiny_model(seed=5), tiny_model(seed=5), tiny_model(seed=6)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.tok_emb.weight, c.tok_emb.weight)


@pytest.mark.parametrize("name", list(SWITCHES))
def test_cached_forward_matches_the_full_forward(tiny_model, name):
    model = tiny_model(**SWITCHES[name])
    idx = torch.randint(0, TINY["vocab_size"], (2, 9), generator=torch.Generator().manual_seed(2))
    cache = model.new_cache()
    parts = [model(idx[:, :4], cache=cache)] + [model(idx[:, t : t + 1], cache=cache) for t in range(4, 9)]
    assert len(cache) == 9
    assert torch.allclose(torch.cat(parts, dim=1), model(idx), atol=1e-5)


def test_training_mode_is_stochastic_and_eval_is_not(tiny_model):
    model = tiny_model(drop_rate=0.5)
    idx = torch.randint(0, TINY["vocab_size"], (1, 6), generator=torch.Generator().manual_seed(0))
    assert torch.equal(model(idx), model(idx))
    model.train()
    assert not torch.equal(model(idx), model(idx))


@pytest.mark.parametrize(
    "idx, message",
    [
        (torch.tensor([[1, 2, 97]]), "outside the vocabulary"),
        (torch.tensor([[1, -1, 2]]), "outside the vocabulary"),
        (torch.zeros(1, 13, dtype=torch.long), "exceed the context length"),
        (torch.zeros(1, 0, dtype=torch.long), "empty"),
        (torch.zeros(0, 3, dtype=torch.long), "empty"),
        (torch.zeros(5, dtype=torch.long), "shape"),
        (torch.zeros(1, 2, 3, dtype=torch.long), "shape"),
        (torch.zeros(1, 3), "integers"),
    ],
)
def test_bad_input_gives_a_clear_error(tiny_model, idx, message):
    with pytest.raises(ValueError, match=message):
        tiny_model()(idx)


def test_cache_overflow_is_a_clear_error(tiny_model):
    model = tiny_model()
    cache = model.new_cache()
    model(torch.zeros(1, 10, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="10 cached"):
        model(torch.zeros(1, 3, dtype=torch.long), cache=cache)


# --- the padded vocabulary and the seams other modules use -------------------------------------------------

def test_padded_vocabulary_widens_the_tables_but_never_shows(tiny_model):
    model = tiny_model(pad_vocab_multiple=64)  # 97 -> 128 rows
    assert model.cfg.padded_vocab_size == 128 and tiny_model().cfg.padded_vocab_size == 97
    assert model.tok_emb.weight.shape[0] == 128 and model.out_head.weight.shape[0] == 128
    logits = model(torch.tensor([[1, 2, 96]]))
    assert logits.shape == (1, 3, 97)  # the padding rows never reach a loss or a sampler
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model(torch.tensor([[1, 100]]))  # a row of the table, but not a token


@pytest.mark.parametrize("bad", [0, -64, 2.5, True])
def test_config_rejects_a_bad_padding_multiple(bad):
    with pytest.raises(ValueError, match="pad_vocab_multiple"):
        GPTConfig(pad_vocab_multiple=bad)


def test_forward_is_embed_then_blocks_then_head(tiny_model):
    model = tiny_model()
    idx = torch.tensor([[5, 1, 4, 1], [9, 2, 6, 5]])
    x = model.embed(idx)
    for block in model.trf_blocks:
        x = block(x)
    assert torch.equal(model.head(x), model(idx))
    # A 0-dim tensor start (the static decoder's) embeds the same position as the int.
    assert torch.equal(model.embed(idx[:, :1], 3), model.embed(idx[:, :1], torch.tensor(3)))


def test_the_input_check_reads_no_values_off_the_cpu(tiny_model):
    # On the meta device a tensor has a shape but no values: reading one (.item()) would raise. The same
    # holds on a GPU, where reading makes the CPU wait, so the model must check shapes only.
    model = tiny_model().to("meta")
    logits = model(torch.zeros(2, 5, dtype=torch.long, device="meta"))
    assert logits.shape == (2, 5, 97) and logits.device.type == "meta"
    with pytest.raises(ValueError, match="exceed the context length"):  # shapes are still checked
        model(torch.zeros(1, 13, dtype=torch.long, device="meta"))


def test_evaluating_switches_to_eval_and_restores_the_mode_even_after_an_error(tiny_model):
    from shared.model_tools import evaluating

    model = tiny_model().train()
    with evaluating(model) as same:
        assert same is model and not model.training
    assert model.training
    with pytest.raises(RuntimeError), evaluating(model):
        raise RuntimeError("interrupted")
    assert model.training
    model.eval()
    with evaluating(model):
        pass
    assert not model.training  # a model that was in eval mode stays there


# ---- Section 10: the switches of today's open models ----

def test_grouped_query_attention_is_multi_head_attention_with_repeated_key_value_heads(tiny_model):
    """Copy a grouped model's weights into a multi-head one, each key/value head repeated for its query heads."""
    grouped = tiny_model(n_kv_heads=2, qkv_bias=True, position="rope")
    full = tiny_model(seed=7, qkv_bias=True, position="rope")
    head_dim, group = TINY["emb_dim"] // TINY["n_heads"], TINY["n_heads"] // 2
    weights = grouped.state_dict()
    for name in list(weights):
        if ".att.W_key." in name or ".att.W_value." in name:
            heads = weights[name].reshape(2, head_dim, -1).repeat_interleave(group, dim=0)
            weights[name] = heads.reshape(TINY["n_heads"] * head_dim, *weights[name].shape[1:])
    full.load_state_dict(weights)
    idx = torch.randint(0, TINY["vocab_size"], (2, TINY["context_length"]))
    torch.testing.assert_close(grouped(idx), full(idx), rtol=0, atol=1e-5)


def test_the_cache_keeps_only_the_key_value_heads(tiny_model):
    model = tiny_model(n_kv_heads=1, head_dim=6)
    cache = model.new_cache()
    with torch.no_grad():
        model(torch.randint(0, TINY["vocab_size"], (2, 5)), cache=cache)
    assert cache.layers[0].keys.shape == (2, 1, 5, 6) and cache.layers[0].values.shape == (2, 1, 5, 6)
    att = model.trf_blocks[0].att
    assert att.W_key.weight.shape == (6, TINY["emb_dim"]) and att.W_query.weight.shape == (4 * 6, TINY["emb_dim"])
    assert att.out_proj.weight.shape == (TINY["emb_dim"], 4 * 6)


def test_qk_norm_gives_queries_and_keys_unit_root_mean_square_per_head(tiny_model):
    att = tiny_model(qk_norm=True).trf_blocks[0].att
    with torch.no_grad():
        att.W_query.weight.mul_(50)  # whatever the projections' scale...
        queries, keys, values = att.project(torch.randn(2, 7, TINY["emb_dim"]))
    for x in (queries, keys):  # ... the norms' scales are 1 at initialisation, so the RMS is 1
        torch.testing.assert_close(x.pow(2).mean(-1).sqrt(), torch.ones(x.shape[:-1]), rtol=0, atol=1e-3)
    assert values.pow(2).mean(-1).sqrt().std() > 0.01  # values are not normalised


def test_no_biases_and_a_tied_head(tiny_model):
    model = tiny_model(bias=False, tie_embeddings=True, ffn="gelu")
    biases = [name for name, _ in model.named_parameters() if name.endswith(".bias") and "norm" not in name]
    assert biases == []
    assert model.out_head.weight is model.tok_emb.weight
    untied = tiny_model(bias=False)
    assert count_parameters(untied) - count_parameters(model) == TINY["vocab_size"] * TINY["emb_dim"]
    model.train()
    model(torch.randint(0, TINY["vocab_size"], (1, 4))).sum().backward()
    assert model.tok_emb.weight.grad is not None  # one table, one gradient from both of its uses
    model.eval()


def independent_llama3_frequency(f, factor, low, high, original):
    """Llama 3's rule for one frequency, written as three cases on its wavelength."""
    wavelength = 2 * torch.pi / f
    if wavelength < original / high:
        return f
    if wavelength > original / low:
        return f / factor
    share = (original / wavelength - low) / (high - low)
    return (1 - share) * f / factor + share * f


def test_llama3_frequencies_keep_fast_slow_down_slow_and_blend_between():
    frequencies = 500_000.0 ** (-torch.arange(0, 128, 2, dtype=torch.float64) / 128)
    scaled = llama3_frequencies(frequencies, 8.0, 1.0, 4.0, 8192)
    expected = torch.tensor([independent_llama3_frequency(f.item(), 8.0, 1.0, 4.0, 8192) for f in frequencies],
                            dtype=torch.float64)
    torch.testing.assert_close(scaled, expected, rtol=1e-12, atol=0)
    wavelengths = 2 * torch.pi / frequencies
    assert torch.equal(scaled[wavelengths < 8192 / 4], frequencies[wavelengths < 8192 / 4])
    torch.testing.assert_close(scaled[wavelengths > 8192], frequencies[wavelengths > 8192] / 8)
    between = (wavelengths >= 8192 / 4) & (wavelengths <= 8192)
    assert between.any() and ((scaled[between] <= frequencies[between]) & (scaled[between] >= frequencies[between] / 8)).all()
    with pytest.raises(ValueError, match="low_freq_factor"):
        llama3_frequencies(frequencies, 8.0, 4.0, 1.0, 8192)


def test_rope_scaling_reaches_the_rotary_tables():
    scaling = dict(factor=4.0, low_freq_factor=1.0, high_freq_factor=4.0, original_context_length=64)
    plain, scaled = RotaryEmbedding(16, 8, base=500_000.0), RotaryEmbedding(16, 8, base=500_000.0, scaling=scaling)
    assert torch.equal(plain.sin[:, 0], scaled.sin[:, 0])  # the fastest pair is kept
    torch.testing.assert_close(scaled.sin[:, 7], plain.sin[:, 7] / 4)  # the slowest turns 4 times slower


def test_mixture_of_experts_equals_every_expert_weighted_by_the_sparse_routing(tiny_model):
    moe = tiny_model(ffn="moe", n_experts=4, n_experts_per_token=2).trf_blocks[0].ff
    x = torch.randn(3, 5, TINY["emb_dim"])
    with torch.no_grad():
        out = moe(x)
        probabilities = torch.softmax(moe.router(x), dim=-1)  # (3, 5, experts)
        kept = probabilities >= probabilities.topk(2, dim=-1).values[..., -1:]
        weights = torch.where(kept, probabilities, 0.0)
        weights = weights / weights.sum(-1, keepdim=True)
        dense = sum(weights[..., e, None] * expert(x) for e, expert in enumerate(moe.experts))
    torch.testing.assert_close(out, dense, rtol=0, atol=1e-6)
    chosen, w = moe.route(x.reshape(-1, TINY["emb_dim"]))
    assert chosen.shape == (15, 2) and torch.allclose(w.sum(-1), torch.ones(15))


def test_mixture_of_experts_counts_every_expert(tiny_model):
    def size(module):
        return sum(p.numel() for p in module.parameters())

    one = size(tiny_model(ffn="swiglu").trf_blocks[0].ff)
    assert size(tiny_model(ffn="moe", n_experts=3).trf_blocks[0].ff) == 3 * one + 3 * TINY["emb_dim"]  # + router
