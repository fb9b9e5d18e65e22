"""shared/fast.py: every fast-path switch keeps the plain path's results; the static-cache decoder equals greedy."""

import dataclasses
import functools
import os
import shutil
import time

import pytest
import torch

from shared.fast import (FastOptions, FastTrainer, StaticDecoder, StaticKVCache, copy_weights, decode_step,
                         fast_config, tf32_matmuls)
from shared.generation import decode, generate, generate_greedy, greedy, left_pad, sample_next_token
from shared.model import GPTConfig, GPTModel
from shared.train_step import autocast_dtype, train_step, warmup_cosine_scheduler
from shared.training import batch_loss
from tests.conftest import make_tiny_config

VOCAB, CONTEXT = 61, 8
TINY = make_tiny_config(vocab_size=VOCAB, context_length=CONTEXT, emb_dim=16, n_heads=4, n_layers=2, drop_rate=0.0)


@pytest.fixture(scope="module")
def plain_model(tiny_model):
    """`plain_model(seed=123, **overrides)`: the chapters' GPTModel, TINY's shape: what the fast paths must match."""
    return functools.partial(tiny_model, seed=123, **dataclasses.asdict(TINY))


def batches(n=3, batch=4, cfg=TINY, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, cfg.vocab_size, (n, batch, cfg.context_length + 1), generator=g)
    return [(x[:, :-1], x[:, 1:]) for x in ids]


def train(model, options, data):
    """Losses of a few steps, and the weights afterwards."""
    trainer = FastTrainer(model, options, lr=1e-2)
    losses = [trainer.step(x, y).item() for x, y in data]
    return torch.tensor(losses), model


def unpadded_weights(model):
    """State dict with the vocabulary tables cut back to the true vocabulary (for comparing with the plain model)."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for name in ("tok_emb.weight", "out_head.weight"):
        state[name] = state[name][: model.cfg.vocab_size]
    return state


# Each float32 switch alone: (GPTConfig fields, FastOptions).
FP32_SWITCHES = {
    "tf32": ({}, FastOptions(tf32=True)),  # a CUDA switch: on the CPU it must change nothing at all
    "fused_attention": (dict(fused_attention=True), FastOptions()),
    "fused_adamw": ({}, FastOptions(fused_adamw=True)),
    "pad_vocab_multiple": (dict(pad_vocab_multiple=64), FastOptions()),
    "pin_memory": ({}, FastOptions(pin_memory=True)),
}


@pytest.mark.parametrize("name", list(FP32_SWITCHES))
def test_each_float32_switch_alone_matches_the_plain_path(plain_model, name):
    data = batches()
    reference = plain_model()
    ref_losses, reference = train(reference, FastOptions(), data)
    switches, options = FP32_SWITCHES[name]
    model = copy_weights(plain_model(), GPTModel(dataclasses.replace(TINY, **switches)))
    x = data[0][0]
    with torch.no_grad():
        assert torch.allclose(model.eval()(x), plain_model().eval()(x), atol=1e-5, rtol=0)
    losses, model = train(model, options, data)
    assert torch.allclose(losses, ref_losses, atol=1e-5, rtol=0)
    # AdamW divides each gradient by its own running size, so float32 rounding in a near-zero gradient can move a
    # weight by a visible fraction of a step (up to about 1e-5 here, depending on the CPU's kernels); a real
    # difference between the paths moves weights by the whole step, lr = 1e-2. Allow 1% of one step.
    for key, value in unpadded_weights(model).items():
        assert torch.allclose(value, reference.state_dict()[key], atol=1e-4, rtol=0), key


def test_copy_weights_into_an_unpadded_model_is_an_exact_copy(plain_model):
    model = copy_weights(plain_model(), GPTModel(TINY))
    x = batches()[0][0]
    with torch.no_grad():
        assert torch.equal(model.eval()(x), plain_model().eval()(x))
    with pytest.raises(ValueError, match="not zero"):  # freshly initialised padding rows are not zero
        copy_weights(GPTModel(fast_config(TINY)), GPTModel(TINY))


def test_copy_weights_round_trip_through_a_padded_model_is_exact(plain_model):
    plain = plain_model()
    back = copy_weights(copy_weights(plain, GPTModel(fast_config(TINY))), GPTModel(TINY))
    for name, tensor in plain.state_dict().items():
        assert torch.equal(tensor, back.state_dict()[name]), name


def test_fast_config_switches_the_model_side_on_and_nothing_else():
    fast = fast_config(TINY)
    assert fast.fused_attention and fast.pad_vocab_multiple == 64 and fast.padded_vocab_size == 64
    assert dataclasses.replace(fast, fused_attention=False, pad_vocab_multiple=1) == TINY


def test_bf16_autocast_stays_close_to_float32(plain_model):
    data = batches()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        low = plain_model().eval()(data[0][0]).float()
    with torch.no_grad():
        full = plain_model().eval()(data[0][0])
    difference = (low - full).abs().max().item()
    assert 0 < difference < 0.1  # it did run in bfloat16 (not identical), and stayed within its precision
    ref_losses, _ = train(plain_model(), FastOptions(), data)
    losses, _ = train(plain_model(), FastOptions(autocast=torch.bfloat16), data)
    assert (losses - ref_losses).abs().max() < 0.05


def test_fp16_autocast_uses_a_grad_scaler_and_stays_close(plain_model):
    data = batches()
    trainer = FastTrainer(plain_model(), FastOptions(autocast=torch.float16), lr=1e-2)
    assert trainer.scaler is not None
    losses = torch.tensor([trainer.step(x, y).item() for x, y in data])
    ref_losses, _ = train(plain_model(), FastOptions(), data)
    assert torch.isfinite(losses).all() and (losses - ref_losses).abs().max() < 0.05


def test_tf32_context_restores_the_global_flags():
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    with tf32_matmuls(True):
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before


def test_options_are_checked_and_fastest_fits_the_device():
    with pytest.raises(ValueError, match="autocast"):
        FastOptions(autocast="bf16")  # a dtype, not its name
    options = FastOptions.fastest("cpu")
    assert options.compile and options.fused_adamw and options.autocast == autocast_dtype("cpu")
    assert autocast_dtype("cpu") in (None, torch.bfloat16)


@pytest.fixture
def padded_twin(plain_model):
    """The plain model and a padded copy whose padding rows hold large junk (they must never matter)."""
    plain = plain_model().eval()
    padded = copy_weights(plain, GPTModel(dataclasses.replace(TINY, pad_vocab_multiple=64))).eval()
    with torch.no_grad():
        padded.out_head.weight[VOCAB:] = 1e4
        padded.tok_emb.weight[VOCAB:] = 1e4
    return plain, padded


def test_padded_vocabulary_rounds_up_and_refuses_padding_ids(padded_twin, plain_model):
    padded_size = lambda vocab, multiple: GPTConfig(vocab_size=vocab, pad_vocab_multiple=multiple).padded_vocab_size
    assert padded_size(50257, 64) == 50304 and padded_size(64, 64) == 64 and padded_size(5, 1) == 5
    _, padded = padded_twin
    assert padded.out_head.weight.shape[0] == 64 and padded.cfg.vocab_size == VOCAB
    with pytest.raises(ValueError, match="outside the vocabulary"):
        padded(torch.tensor([[VOCAB]]))  # a padding row is not a token
    with pytest.raises(ValueError, match="not zero"):  # its padding rows hold junk: they cannot be dropped silently
        copy_weights(padded, plain_model())


def test_padded_vocabulary_never_changes_the_loss(padded_twin):
    plain, padded = padded_twin
    x, y = batches()[0]
    with torch.no_grad():
        assert padded(x).shape[-1] == VOCAB
        assert torch.allclose(batch_loss(padded, x, y), batch_loss(plain, x, y), atol=1e-6, rtol=0)


@pytest.mark.parametrize("top_k", [None, 5])
def test_padded_vocabulary_is_never_sampled(padded_twin, top_k):
    plain, padded = padded_twin
    idx = torch.randint(0, VOCAB, (3, 4), generator=torch.Generator().manual_seed(1))
    draws = []
    for model in (plain, padded):
        generator = torch.Generator().manual_seed(7)
        draws.append(generate(model, idx, 30, temperature=1.5, top_k=top_k, generator=generator))
    assert torch.equal(draws[0], draws[1])
    assert draws[1].max() < VOCAB


def test_static_cache_speaks_the_chapter_4_cache_protocol(plain_model):
    model = plain_model().eval()
    idx = batches()[0][0][:2]
    cache = StaticKVCache(TINY, batch_size=2)
    with torch.no_grad():
        first = model(idx[:, :5], cache=cache)
        rest = model(idx[:, 5:], cache=cache)
        full = model(idx)
    assert len(cache) == CONTEXT and cache.keys.shape == (2, 2, 4, CONTEXT, 4)
    assert torch.allclose(torch.cat([first, rest], dim=1), full, atol=1e-5, rtol=0)
    with pytest.raises(ValueError):
        with torch.no_grad():
            model(idx[:, :1], cache=cache)  # a ninth position does not fit


# decode_step runs the model's own blocks, so every architecture with learned positions decodes.
DECODABLE = {"GPT-2": {}, "post-norm": dict(norm_position="post"), "fused attention": dict(fused_attention=True),
             "RMSNorm + SwiGLU": dict(norm="rmsnorm", ffn="swiglu"), "padded vocabulary": dict(pad_vocab_multiple=64)}


@pytest.mark.parametrize("variant", list(DECODABLE))
def test_decode_step_equals_the_full_forward_at_every_position(plain_model, variant):
    model = plain_model(**DECODABLE[variant]).eval()
    idx = batches()[0][0][:3]
    cache = StaticKVCache(model.cfg, batch_size=3)
    with torch.no_grad():
        full = model(idx)
        for position in range(CONTEXT):
            for n_keys in (None, position + 1):
                logits = decode_step(model, idx[:, position : position + 1], torch.tensor(position), cache, n_keys)
                assert torch.allclose(logits, full[:, position], atol=1e-5, rtol=0)


@pytest.mark.parametrize("prompt_length", [1, 5, CONTEXT, CONTEXT + 3, 3 * CONTEXT])
@pytest.mark.parametrize("batch", [1, 3])
def test_static_decoder_equals_plain_greedy_in_float32(plain_model, prompt_length, batch):
    model = plain_model()
    idx = torch.randint(0, VOCAB, (batch, prompt_length), generator=torch.Generator().manual_seed(prompt_length))
    new_tokens = 2 * CONTEXT  # every case runs across the context boundary
    expected = generate_greedy(model, idx, new_tokens, use_cache=False)
    got = StaticDecoder(model, batch).generate(idx, new_tokens)
    assert torch.equal(got, expected)


def test_batched_static_decoder_equals_row_by_row(plain_model):
    model = plain_model()
    idx = torch.randint(0, VOCAB, (4, 3), generator=torch.Generator().manual_seed(3))
    together = StaticDecoder(model, 4).generate(idx, 12)
    one_decoder = StaticDecoder(model, 1)  # reused: each call starts from an empty cache
    rows = torch.cat([one_decoder.generate(row[None], 12) for row in idx])
    assert torch.equal(together, rows)


def test_static_decoder_with_a_padded_vocabulary_and_zero_tokens(padded_twin):
    plain, padded = padded_twin
    idx = torch.randint(0, VOCAB, (2, 3), generator=torch.Generator().manual_seed(4))
    assert torch.equal(StaticDecoder(padded, 2).generate(idx, 20), generate_greedy(plain, idx, 20))
    assert torch.equal(StaticDecoder(padded, 2).generate(idx, 0), idx)


@pytest.mark.parametrize("seed", [None, 11], ids=["greedy", "sampled"])
@pytest.mark.parametrize("stop_at_end_token", [False, True])
def test_static_decoder_under_decode_gives_the_chapter_4_tokens(plain_model, seed, stop_at_end_token):
    # decode takes the static decoder as its `steps`: sampling, end tokens and left padding must give the tokens
    # the chapter 4 cache gives, across the context boundary too (2 * CONTEXT new tokens).
    model = plain_model()
    idx, pad_lengths = left_pad([[5, 9, 2], [7], [3, 3, 8, 1, 4]])
    eos_id = int(generate_greedy(model, idx, 4, pad_lengths=pad_lengths)[0, -1]) if stop_at_end_token else None

    def run(steps):
        generator = torch.Generator().manual_seed(seed or 0)  # the same draws for both runs
        pick = greedy if seed is None else lambda logits: sample_next_token(logits, 1.0, top_k=5, generator=generator)
        return decode(model, idx, 2 * CONTEXT, pick, eos_id=eos_id, pad_lengths=pad_lengths, steps=steps)

    expected, got = run(None), run(StaticDecoder(model, 3))
    assert torch.equal(got, expected)
    if stop_at_end_token and seed is None:
        # Row 0's 4th new token is the end token: the row stays finished, and the loop stops once all rows are.
        assert bool((got[0, idx.shape[1] + 3 :] == eos_id).all()) and got.shape[1] < idx.shape[1] + 2 * CONTEXT


def test_static_decoder_refuses_what_it_cannot_do(plain_model):
    with pytest.raises(ValueError, match="batch size"):
        StaticDecoder(plain_model(), 2).generate(torch.zeros(3, 2, dtype=torch.long), 1)
    with pytest.raises(ValueError, match="absolute"):
        StaticDecoder(plain_model(position="rope"), 1)
    with pytest.raises(ValueError, match="empty"):
        StaticDecoder(plain_model(), 1).generate(torch.zeros(1, 0, dtype=torch.long), 1)


def test_bf16_static_decoder_is_close_to_float32(plain_model):
    model = plain_model()
    idx = torch.randint(0, VOCAB, (16, 3), generator=torch.Generator().manual_seed(5))
    expected = generate_greedy(model, idx, 12)
    low = StaticDecoder(GPTModel(TINY).to(torch.bfloat16).eval(), 16)
    copy_weights(model, low.model)
    got = low.generate(idx, 12)
    assert got.shape == expected.shape and got.max() < VOCAB
    # bfloat16 keeps about three significant digits, so the first new token must agree wherever float32's best
    # token leads its runner-up by more than that rounding could move them; later tokens may drift apart.
    with torch.no_grad():
        best_two = model(idx)[:, -1].topk(2).values
    clear = best_two[:, 0] - best_two[:, 1] > 0.05 * best_two[:, 0].abs().clamp(min=1)
    assert clear.sum() >= 4, "too few rows with a clear winner to test anything"
    assert torch.equal(got[clear, 3], expected[clear, 3])


# torch.compile builds C++ kernels on the CPU: it needs a compiler and takes tens of seconds per graph.
COMPILE_REASON = ("torch.compile on a 2-core CPU takes 35-90 s for these two tests (over the suite's budget): "
                  "set COURSE_TEST_COMPILE=1 to run them")
needs_compile = pytest.mark.skipif(os.environ.get("COURSE_TEST_COMPILE") != "1" or shutil.which("g++") is None,
                                   reason=COMPILE_REASON)


@needs_compile
def test_compiled_training_matches_the_plain_path(plain_model):
    data = batches()
    ref_losses, reference = train(plain_model(), FastOptions(), data)
    start = time.perf_counter()
    losses, model = train(copy_weights(plain_model(), GPTModel(TINY)), FastOptions(compile=True), data)
    assert torch.allclose(losses, ref_losses, atol=1e-5, rtol=0)
    # Fused kernels round differently, and AdamW divides each gradient by its own size, which magnifies
    # the rounding of near-zero gradients into updates of up to ~lr * 1e-3: compare weights at 1e-4.
    for key, value in unpadded_weights(model).items():
        assert torch.allclose(value, reference.state_dict()[key], atol=1e-4, rtol=0), key
    print(f"compiled training graph in {time.perf_counter() - start:.0f} s")


@needs_compile
def test_compiled_static_decoder_equals_plain_greedy(plain_model):
    model = plain_model()
    idx = torch.randint(0, VOCAB, (2, 3), generator=torch.Generator().manual_seed(6))
    decoder = StaticDecoder(model, 2, compile=True)
    assert torch.equal(decoder.generate(idx, 2 * CONTEXT), generate_greedy(model, idx, 2 * CONTEXT, use_cache=False))


def test_the_trainer_steps_exactly_like_train_step(plain_model):
    data = batches()
    reference = plain_model()
    optimizer = torch.optim.AdamW(reference.parameters(), lr=1e-2, weight_decay=0.1)
    scheduler = warmup_cosine_scheduler(optimizer, 1, len(data))
    ref_losses = torch.tensor([train_step(reference, optimizer, x, y, scheduler, max_norm=0.5)[0] for x, y in data])
    trainer = FastTrainer(plain_model(), FastOptions(), lr=1e-2, max_norm=0.5,
                          scheduler=lambda opt: warmup_cosine_scheduler(opt, 1, len(data)))
    losses = torch.tensor([trainer.step(x, y).item() for x, y in data])
    assert torch.allclose(losses, ref_losses, atol=1e-6, rtol=0)
    for key, value in trainer.model.state_dict().items():
        assert torch.allclose(value, reference.state_dict()[key], atol=1e-6, rtol=0), key
