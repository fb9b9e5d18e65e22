"""shared/generation.py: chapter 4's generation loop and greedy decoding (with and without the KV cache),
chapter 5's temperature, top-k and top-p sampling and `generate`; and chapter 4's text helpers (shared/text.py)."""

import math

import pytest
import tiktoken
import torch

from shared.generation import (
    decode,
    generate,
    generate_greedy,
    greedy,
    left_pad,
    next_token_logits,
    next_token_probabilities,
    sample_next_token,
    top_k_filter,
    top_p_filter,
)
from shared.text import text_to_token_ids, token_ids_to_text

from .architecture_switches import SWITCHES

# ==== chapter 4: greedy generation, the KV cache, the text helpers ==================================

CONTEXT = 8
# With GPTConfig's default dropout: generation must switch it off by itself.
GREEDY = dict(vocab_size=61, context_length=CONTEXT, emb_dim=16, n_heads=4, n_layers=2, drop_rate=0.1)


@pytest.fixture(scope="module")
def greedy_model(tiny_model):
    """`greedy_model(seed=123, dtype=torch.float64, **overrides)`: the greedy tests' model, GREEDY's sizes."""

    def build(seed=123, dtype=torch.float64, **overrides):
        # float64: cached and uncached sums run in different orders; in double precision rounding
        # cannot flip an argmax, so the test checks the logic, not luck.
        return tiny_model(seed=seed, **{**GREEDY, **overrides}).to(dtype)

    return build


def prompts(batch, length, seed=0):
    return torch.randint(0, GREEDY["vocab_size"], (batch, length), generator=torch.Generator().manual_seed(seed))


def uncached_reference(model, idx, max_new_tokens):
    """The textbook loop: sliding window of the last context_length tokens, argmax of the last position."""
    model.eval()
    with torch.no_grad():
        for _ in range(max_new_tokens):
            next_id = model(idx[:, -model.cfg.context_length :])[:, -1].argmax(-1, keepdim=True)
            idx = torch.cat([idx, next_id], dim=1)
    return idx


@pytest.mark.parametrize("prompt_length", [1, 5, CONTEXT, CONTEXT + 3, 3 * CONTEXT])
@pytest.mark.parametrize("batch", [1, 3])
def test_cached_equals_uncached_for_short_equal_and_long_prompts(greedy_model, prompt_length, batch):
    model = greedy_model()
    idx = prompts(batch, prompt_length)
    # 2 * CONTEXT new tokens: every case runs past the context length.
    cached = generate_greedy(model, idx, 2 * CONTEXT, use_cache=True)
    uncached = generate_greedy(model, idx, 2 * CONTEXT, use_cache=False)
    assert cached.shape == (batch, prompt_length + 2 * CONTEXT)
    assert torch.equal(cached, uncached)
    assert torch.equal(cached, uncached_reference(model, idx, 2 * CONTEXT))
    assert torch.equal(cached[:, :prompt_length], idx)  # the whole prompt is kept, even when cropped for the model


@pytest.mark.parametrize("prompt_length", [2, CONTEXT, CONTEXT + 2])
@pytest.mark.parametrize("name", list(SWITCHES))
def test_cached_equals_uncached_for_every_switch(greedy_model, name, prompt_length):
    model = greedy_model(**SWITCHES[name])
    idx = prompts(2, prompt_length, seed=prompt_length)
    cached = generate_greedy(model, idx, 2 * CONTEXT, use_cache=True)
    assert torch.equal(cached, generate_greedy(model, idx, 2 * CONTEXT, use_cache=False))
    assert torch.equal(cached, uncached_reference(model, idx, 2 * CONTEXT))


def test_cached_equals_uncached_in_float32_too(greedy_model):
    model = greedy_model(dtype=torch.float32, context_length=32)
    idx = prompts(2, 4)
    assert torch.equal(generate_greedy(model, idx, 40, use_cache=True), generate_greedy(model, idx, 40, use_cache=False))


def test_batch_rows_are_generated_independently(greedy_model):
    model = greedy_model()
    idx = prompts(3, 5)
    together = generate_greedy(model, idx, 12)
    for row in range(3):
        assert torch.equal(together[row : row + 1], generate_greedy(model, idx[row : row + 1], 12))


def test_prompt_longer_than_the_context_is_cropped_to_its_last_tokens(greedy_model):
    model = greedy_model()
    idx = prompts(1, CONTEXT + 5)
    out = generate_greedy(model, idx, 4)
    # Only the last CONTEXT tokens matter: changing the earlier ones changes nothing.
    changed = idx.clone()
    changed[0, :5] = (changed[0, :5] + 1) % GREEDY["vocab_size"]
    assert torch.equal(generate_greedy(model, changed, 4)[:, -4:], out[:, -4:])
    assert torch.equal(generate_greedy(model, idx[:, -CONTEXT:], 4)[:, -4:], out[:, -4:])


def test_next_token_logits_uses_one_position_when_the_cache_fits(greedy_model):
    model = greedy_model().eval()
    idx = prompts(1, 5)
    logits, cache = next_token_logits(model, idx)
    assert logits.shape == (1, GREEDY["vocab_size"]) and len(cache) == 5
    longer = torch.cat([idx, logits.argmax(-1, keepdim=True)], dim=1)
    logits2, cache2 = next_token_logits(model, longer, cache)
    assert cache2 is cache and len(cache) == 6  # extended by one position, not rebuilt
    assert torch.allclose(logits2, model(longer)[:, -1])
    # A cache that does not match idx (here: idx grew by two) is replaced, not trusted.
    longer2 = torch.cat([longer, longer[:, :2]], dim=1)
    logits3, cache3 = next_token_logits(model, longer2, cache)
    assert cache3 is not cache and len(cache3) == 8 and torch.allclose(logits3, model(longer2)[:, -1])
    _, no_cache = next_token_logits(model, idx, use_cache=False)
    assert no_cache is None


def test_zero_new_tokens_returns_the_prompt(greedy_model):
    model = greedy_model()
    idx = prompts(2, 3)
    assert torch.equal(generate_greedy(model, idx, 0), idx)


def test_generation_restores_the_mode_and_ignores_dropout(greedy_model):
    model = greedy_model(drop_rate=0.5)
    model.train()
    idx = prompts(1, 3)
    first = generate_greedy(model, idx, 10)
    assert model.training
    assert torch.equal(first, generate_greedy(model, idx, 10))
    model.eval()
    assert torch.equal(first, generate_greedy(model, idx, 10)) and not model.training


def test_same_seed_same_weights_same_tokens(greedy_model):
    idx = prompts(2, 4)
    a = generate_greedy(greedy_model(seed=7), idx, 15)
    b = generate_greedy(greedy_model(seed=7), idx, 15)
    c = generate_greedy(greedy_model(seed=8), idx, 15)
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize(
    "idx, max_new_tokens, message",
    [
        (torch.tensor([[3, 61]]), 2, "outside the vocabulary"),
        (torch.tensor([[-1, 3]]), 2, "outside the vocabulary"),
        (torch.zeros(1, 0, dtype=torch.long), 2, "empty input"),
        (torch.zeros(0, 4, dtype=torch.long), 2, "empty input"),
        (torch.tensor([[1, 2]]), -1, "max_new_tokens"),
        (torch.tensor([[1, 2]]), 2.5, "max_new_tokens"),
        (torch.tensor([1, 2]), 2, "unsqueeze"),
        (torch.tensor([[1.0, 2.0]]), 2, "integers"),
    ],
)
def test_bad_input_gives_a_clear_error(greedy_model, idx, max_new_tokens, message):
    with pytest.raises(ValueError, match=message):
        generate_greedy(greedy_model(), idx, max_new_tokens)


def test_a_token_outside_the_vocabulary_is_caught_even_where_the_prompt_is_cropped(greedy_model):
    idx = prompts(1, CONTEXT + 3)
    idx[0, 0] = GREEDY["vocab_size"] + 10
    with pytest.raises(ValueError, match="outside the vocabulary"):
        generate_greedy(greedy_model(), idx, 1)


def test_text_helpers_round_trip_with_tiktoken():
    tokenizer = tiktoken.get_encoding("gpt2")
    ids = text_to_token_ids("Hello, world.<|endoftext|>", tokenizer)
    assert ids.shape == (1, 5) and ids.dtype == torch.long and ids[0, -1].item() == 50256
    assert token_ids_to_text(ids, tokenizer) == "Hello, world.<|endoftext|>"
    assert token_ids_to_text(ids[0], tokenizer) == token_ids_to_text(ids[0].tolist(), tokenizer)
    with pytest.raises(ValueError, match="batch of one"):
        token_ids_to_text(torch.cat([ids, ids]), tokenizer)


def test_text_helpers_work_with_a_tokenizer_without_allowed_special():
    class Chars:
        def encode(self, text):
            return [ord(c) for c in text]

        def decode(self, ids):
            return "".join(chr(i) for i in ids)

    ids = text_to_token_ids("abc", Chars())
    assert ids.tolist() == [[97, 98, 99]] and token_ids_to_text(ids, Chars()) == "abc"


# ---- left padding: many prompts of different lengths in one batch ----

PROMPT_LENGTHS = (1, 6, 3, CONTEXT, CONTEXT + 4)


@pytest.mark.parametrize("name", list(SWITCHES))
@pytest.mark.parametrize("use_cache", [True, False])
def test_a_left_padded_batch_generates_what_each_prompt_generates_alone(greedy_model, name, use_cache):
    """Positions, masks and the window that slides past the context: every switch, cached and uncached."""
    model = greedy_model(**SWITCHES[name])
    rows = [prompts(1, n, seed=n)[0].tolist() for n in PROMPT_LENGTHS]
    batch, pad_lengths = left_pad(rows, pad_id=7)
    together = generate_greedy(model, batch, 3 * CONTEXT, use_cache=use_cache, pad_lengths=pad_lengths)
    for r, row in enumerate(rows):
        alone = generate_greedy(model, torch.tensor([row]), 3 * CONTEXT, use_cache=use_cache)[0]
        assert torch.equal(together[r, pad_lengths[r]:], alone), (name, r)


def test_padding_values_and_amounts_do_not_leak_into_the_logits(greedy_model):
    model = greedy_model(position="rope", n_kv_heads=2).eval()
    row = prompts(1, 5, seed=3)
    with torch.no_grad():
        alone = model(row)
        for pad, fill in ((1, 0), (3, 60), (3, 11)):
            padded = torch.cat([torch.full((1, pad), fill), row], dim=1)
            logits = model(padded, pad_lengths=torch.tensor([pad]))[:, pad:]
            torch.testing.assert_close(logits, alone, rtol=0, atol=1e-10)


def test_left_pad_builds_the_batch_and_refuses_empty_input():
    batch, pad_lengths = left_pad([[5, 6], [1, 2, 3, 4], [9]], pad_id=0)
    assert batch.tolist() == [[0, 0, 5, 6], [1, 2, 3, 4], [0, 0, 0, 9]] and pad_lengths.tolist() == [2, 0, 3]
    for bad in ([], [[1], []]):
        with pytest.raises(ValueError, match="no empty ones"):
            left_pad(bad)


@pytest.mark.parametrize("pad_lengths, message", [([0, 1], "one integer per row"), ([0, 0, 4], "between 0 and 3"),
                                                   ([-1, 0, 0], "between 0 and 3")])
def test_bad_pad_lengths_are_refused(greedy_model, pad_lengths, message):
    with pytest.raises(ValueError, match=message):
        generate_greedy(greedy_model(), prompts(3, 4), 2, pad_lengths=torch.tensor(pad_lengths))


# ==== chapter 5: sampling ==========================================================================

SAMPLING_VOCAB = 40


@pytest.fixture(scope="module")
def model(tiny_model):
    """The sampling tests' model (seed 0), built once: generating never changes its weights."""
    return tiny_model(vocab_size=SAMPLING_VOCAB, context_length=12, emb_dim=16)


@pytest.fixture
def prompt():
    return torch.tensor([[1, 2, 3], [7, 8, 9]])


def fixed_logits(seed=0, rows=1):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(rows, SAMPLING_VOCAB, generator=generator)


def draws(logits, n=3000, seed=0, **settings):
    """n samples from one row of logits, as a set of token ids."""
    picks = sample_next_token(logits.expand(n, -1), generator=torch.Generator().manual_seed(seed), **settings)
    assert picks.shape == (n, 1)
    return set(picks.squeeze(1).tolist())


# ---- temperature ---------------------------------------------------------------------------------

@pytest.mark.parametrize("use_cache", [True, False])
def test_temperature_zero_is_greedy(model, prompt, use_cache):
    expected = generate_greedy(model, prompt, 15, use_cache=use_cache)
    assert torch.equal(generate(model, prompt, 15, use_cache=use_cache), expected)
    # at temperature 0 the other settings and the generator change nothing
    assert torch.equal(generate(model, prompt, 15, temperature=0, top_k=3, top_p=0.5, use_cache=use_cache,
                                generator=torch.Generator().manual_seed(5)), expected)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sampling_approaches_greedy_as_temperature_goes_to_zero(model, prompt, seed):
    greedy = generate_greedy(model, prompt, 15)
    sampled = generate(model, prompt, 15, temperature=1e-6, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(sampled, greedy)
    logits = fixed_logits(seed)
    gaps = [(1 - next_token_probabilities(logits, t)[0, logits.argmax()]).item() for t in (2.0, 1.0, 0.5, 0.1, 0.01, 0.001)]
    assert all(a >= b for a, b in zip(gaps, gaps[1:])), "the top token's share grows as the temperature falls"
    assert gaps[0] > 0.1 and gaps[-1] < 1e-6


def test_high_temperature_flattens_the_distribution():
    logits = fixed_logits()
    probas = next_token_probabilities(logits, temperature=1000.0)
    torch.testing.assert_close(probas, torch.full_like(probas, 1 / SAMPLING_VOCAB), atol=1e-3, rtol=0)


def test_tiny_temperatures_stay_finite():
    probas = next_token_probabilities(torch.tensor([[1.0, 1.5, -2.0]]), temperature=1e-30)
    assert torch.equal(probas, torch.tensor([[0.0, 1.0, 0.0]]))


# ---- top-k and top-p -----------------------------------------------------------------------------

@pytest.mark.parametrize("k", [1, 3, 10])
def test_top_k_never_samples_outside_the_k_largest(k):
    logits = fixed_logits(k)
    allowed = set(torch.topk(logits[0], k).indices.tolist())
    seen = draws(logits, temperature=5.0, top_k=k)  # a high temperature makes unlikely tokens likely
    assert seen <= allowed
    assert seen == allowed, "with enough draws every one of the k tokens comes up"
    assert (top_k_filter(logits, k) > float("-inf")).sum().item() == k


def test_top_k_larger_than_the_vocabulary_keeps_everything():
    logits = fixed_logits()
    assert torch.equal(top_k_filter(logits, SAMPLING_VOCAB + 100), logits)


def nucleus(logits, p, temperature=1.0):
    """The top-p set, computed the slow, obvious way."""
    probas = torch.softmax(logits[0] / temperature, dim=-1).tolist()
    kept, total = set(), 0.0
    for token in sorted(range(len(probas)), key=lambda i: -probas[i]):
        kept.add(token)
        total += probas[token]
        if total >= p:
            break
    return kept


@pytest.mark.parametrize("p, temperature", [(0.5, 1.0), (0.8, 1.0), (0.9, 2.0)])
def test_top_p_never_samples_outside_the_nucleus(p, temperature):
    logits = fixed_logits(7)
    allowed = nucleus(logits, p, temperature)
    assert 1 < len(allowed) < SAMPLING_VOCAB
    seen = draws(logits, temperature=temperature, top_p=p)
    assert seen <= allowed
    assert seen == allowed, "every token of the nucleus comes up"


def test_top_p_keeps_at_least_the_most_likely_token_and_one_keeps_everything():
    logits = fixed_logits(3)
    tiny = top_p_filter(logits, 1e-9)
    assert (tiny > float("-inf")).sum().item() == 1 and tiny.argmax() == logits.argmax()
    assert (next_token_probabilities(logits, 1.0, top_p=1.0) > 0).all()


def test_top_k_is_applied_before_top_p():
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0]])
    # top-k=2 leaves probabilities (0.73, 0.27); top-p=0.7 then keeps only the first token
    assert torch.equal(next_token_probabilities(logits, 1.0, top_k=2, top_p=0.7), torch.tensor([[1.0, 0.0, 0.0, 0.0]]))


# ---- reproducibility and stopping ----------------------------------------------------------------

def test_seeded_sampling_is_reproducible(model, prompt):
    def run(seed, use_cache=True):
        return generate(model, prompt, 15, temperature=1.5, top_k=20, top_p=0.95, use_cache=use_cache,
                        generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(123), run(123))
    assert torch.equal(run(123), run(123, use_cache=False)), "the KV cache does not change what is sampled"
    assert any(not torch.equal(run(123), run(seed)) for seed in range(5)), "different seeds give different text"


def test_eos_id_finishes_rows_and_stops_when_all_are_done(model, prompt):
    greedy = generate_greedy(model, prompt, 8)
    eos = greedy[0, prompt.shape[1] + 1].item()  # the second token row 0 generates
    out = generate(model, prompt, 8, eos_id=eos)
    new = out[:, prompt.shape[1]:]
    assert torch.equal(out[:, : prompt.shape[1]], prompt)
    for row in new.tolist():
        if eos in row:  # after its first eos, a row is padded with eos
            first = row.index(eos)
            assert row[first:] == [eos] * (len(row) - first)
    assert new.shape[1] <= 8
    if all(eos in row for row in new.tolist()):  # stopped as soon as the last row finished
        assert max(row.index(eos) for row in new.tolist()) == new.shape[1] - 1
    single = generate(model, prompt[:1], 8, eos_id=eos)
    assert single.shape[1] == prompt.shape[1] + 2 and single[0, -1].item() == eos


def test_one_loop_serves_greedy_and_sampling(model, prompt):
    """generate_greedy and generate are decode with a rule for the next token: any rule, the same loop."""
    assert torch.equal(decode(model, prompt, 6, greedy), generate_greedy(model, prompt, 6))
    assert torch.equal(generate(model, prompt, 6), generate_greedy(model, prompt, 6)), "temperature 0 is greedy"
    seen = []

    def always_seven(logits):
        seen.append(tuple(logits.shape))
        return torch.full((logits.shape[0], 1), 7, dtype=torch.long)

    out = decode(model, prompt, 4, always_seven)
    assert out[:, prompt.shape[1]:].eq(7).all() and seen == [(prompt.shape[0], model.cfg.vocab_size)] * 4
    # the end-of-text stop is the loop's, so greedy decoding has it too
    first = generate_greedy(model, prompt[:1], 8)[0, prompt.shape[1]].item()
    assert generate_greedy(model, prompt[:1], 8, eos_id=first).shape[1] == prompt.shape[1] + 1
    with pytest.raises(ValueError, match="eos_id"):
        generate_greedy(model, prompt, 2, eos_id=model.cfg.vocab_size)


def test_generate_restores_the_mode_and_keeps_no_gradients(model, prompt):
    model.train()
    out = generate(model, prompt, 3, temperature=1.0, generator=torch.Generator().manual_seed(0))
    assert model.training and not out.requires_grad
    assert all(p.grad is None for p in model.parameters())
    model.eval()


def test_a_prompt_longer_than_the_context_is_cropped(model):
    long_prompt = torch.arange(20).remainder(SAMPLING_VOCAB).unsqueeze(0)
    out = generate(model, long_prompt, 4, temperature=1.0, generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 24) and torch.equal(out[:, :20], long_prompt)


# ---- bad input -------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad, message", [
    (dict(temperature=-0.5), "temperature"),
    (dict(temperature=float("nan")), "temperature"),
    (dict(temperature=float("inf")), "temperature"),
    (dict(temperature="1.0"), "temperature"),
    (dict(temperature=True), "temperature"),
    (dict(top_k=0), "top_k"),
    (dict(top_k=-3), "top_k"),
    (dict(top_k=2.5), "top_k"),
    (dict(top_p=0.0), "top_p"),
    (dict(top_p=-0.1), "top_p"),
    (dict(top_p=1.01), "top_p"),
    (dict(top_p=float("nan")), "top_p"),
    (dict(eos_id=-1), "eos_id"),
    (dict(eos_id=SAMPLING_VOCAB), "eos_id"),
    (dict(eos_id=1.5), "eos_id"),
    (dict(max_new_tokens=-1), "max_new_tokens"),
])
def test_bad_settings_raise_clear_errors(model, prompt, bad, message):
    kwargs = {"max_new_tokens": 3, "temperature": 1.0, **bad}
    with pytest.raises(ValueError, match=message):
        generate(model, prompt, **kwargs)


@pytest.mark.parametrize("bad_prompt, message", [
    (torch.tensor([1, 2, 3]), "shape"),
    (torch.zeros(1, 0, dtype=torch.long), "empty"),
    (torch.tensor([[1.0, 2.0]]), "integers"),
    (torch.tensor([[1, SAMPLING_VOCAB]]), "vocabulary"),
])
def test_bad_prompts_raise_clear_errors(model, bad_prompt, message):
    with pytest.raises(ValueError, match=message):
        generate(model, bad_prompt, 3, temperature=1.0)


def test_a_generator_of_the_wrong_kind_is_refused(model, prompt):
    with pytest.raises(TypeError, match="generator"):
        generate(model, prompt, 3, temperature=1.0, generator=123)


@pytest.mark.parametrize("bad", [dict(temperature=-1.0), dict(top_k=0), dict(top_p=2.0)])
def test_the_sampling_helpers_check_their_settings_too(bad):
    settings = {"temperature": 1.0, **bad}
    with pytest.raises(ValueError):
        next_token_probabilities(fixed_logits(), **settings)
    with pytest.raises(ValueError):
        sample_next_token(fixed_logits(), **settings)


def test_probabilities_are_a_distribution():
    probas = next_token_probabilities(fixed_logits(rows=4), temperature=0.7, top_k=10, top_p=0.9)
    assert probas.shape == (4, SAMPLING_VOCAB) and (probas >= 0).all()
    torch.testing.assert_close(probas.sum(dim=-1), torch.ones(4))
    assert math.isclose(next_token_probabilities(fixed_logits(), 0)[0].max().item(), 1.0)


def test_generate_passes_the_padding_on(greedy_model):
    model = greedy_model(position="rope")
    batch, pad_lengths = left_pad([[1, 2, 3], [4]], pad_id=0)
    assert torch.equal(generate(model, batch, 6, temperature=0.0, pad_lengths=pad_lengths),
                       generate_greedy(model, batch, 6, pad_lengths=pad_lengths))
    sampled = generate(model, batch, 6, temperature=1.0, top_k=5, pad_lengths=pad_lengths,
                       generator=torch.Generator().manual_seed(0))
    assert sampled.shape == (2, 9) and torch.equal(sampled[:, :3], batch)
