"""shared/generation.py, chapter 4 part: greedy generation with and without the KV cache, text helpers."""

import pytest
import tiktoken
import torch

from shared.generation import generate_greedy, next_token_logits, text_to_token_ids, token_ids_to_text
from architecture_switches import SWITCHES
from shared.model import GPTConfig, GPTModel

CONTEXT = 8
TINY = dict(vocab_size=61, context_length=CONTEXT, emb_dim=16, n_heads=4, n_layers=2)


def tiny_model(seed=123, dtype=torch.float64, **overrides):
    # float64: cached and uncached sums run in different orders; in double precision rounding
    # cannot flip an argmax, so the test checks the logic, not luck.
    torch.manual_seed(seed)
    return GPTModel(GPTConfig(**{**TINY, **overrides})).to(dtype)


def prompts(batch, length, seed=0):
    return torch.randint(0, TINY["vocab_size"], (batch, length), generator=torch.Generator().manual_seed(seed))


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
def test_cached_equals_uncached_for_short_equal_and_long_prompts(prompt_length, batch):
    model = tiny_model()
    idx = prompts(batch, prompt_length)
    # 2 * CONTEXT new tokens: every case runs past the context length.
    cached = generate_greedy(model, idx, 2 * CONTEXT, use_cache=True)
    uncached = generate_greedy(model, idx, 2 * CONTEXT, use_cache=False)
    assert cached.shape == (batch, prompt_length + 2 * CONTEXT)
    assert torch.equal(cached, uncached)
    assert torch.equal(cached, uncached_reference(model, idx, 2 * CONTEXT))
    assert torch.equal(cached[:, :prompt_length], idx)  # the whole prompt is kept, even when cropped for the model


@pytest.mark.parametrize("name", list(SWITCHES))
def test_cached_equals_uncached_for_every_switch(name):
    model = tiny_model(**SWITCHES[name])
    for prompt_length in (2, CONTEXT, CONTEXT + 2):
        idx = prompts(2, prompt_length, seed=prompt_length)
        cached = generate_greedy(model, idx, 2 * CONTEXT, use_cache=True)
        assert torch.equal(cached, generate_greedy(model, idx, 2 * CONTEXT, use_cache=False)), (name, prompt_length)
        assert torch.equal(cached, uncached_reference(model, idx, 2 * CONTEXT)), (name, prompt_length)


def test_cached_equals_uncached_in_float32_too():
    model = tiny_model(dtype=torch.float32, context_length=32)
    idx = prompts(2, 4)
    assert torch.equal(generate_greedy(model, idx, 40, use_cache=True), generate_greedy(model, idx, 40, use_cache=False))


def test_batch_rows_are_generated_independently():
    model = tiny_model()
    idx = prompts(3, 5)
    together = generate_greedy(model, idx, 12)
    for row in range(3):
        assert torch.equal(together[row : row + 1], generate_greedy(model, idx[row : row + 1], 12))


def test_prompt_longer_than_the_context_is_cropped_to_its_last_tokens():
    model = tiny_model()
    idx = prompts(1, CONTEXT + 5)
    out = generate_greedy(model, idx, 4)
    # Only the last CONTEXT tokens matter: changing the earlier ones changes nothing.
    changed = idx.clone()
    changed[0, :5] = (changed[0, :5] + 1) % TINY["vocab_size"]
    assert torch.equal(generate_greedy(model, changed, 4)[:, -4:], out[:, -4:])
    assert torch.equal(generate_greedy(model, idx[:, -CONTEXT:], 4)[:, -4:], out[:, -4:])


def test_next_token_logits_uses_one_position_when_the_cache_fits():
    model = tiny_model().eval()
    idx = prompts(1, 5)
    logits, cache = next_token_logits(model, idx)
    assert logits.shape == (1, TINY["vocab_size"]) and len(cache) == 5
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


def test_zero_new_tokens_returns_the_prompt():
    model = tiny_model()
    idx = prompts(2, 3)
    assert torch.equal(generate_greedy(model, idx, 0), idx)


def test_generation_restores_the_mode_and_ignores_dropout():
    model = tiny_model(drop_rate=0.5)
    model.train()
    idx = prompts(1, 3)
    first = generate_greedy(model, idx, 10)
    assert model.training
    assert torch.equal(first, generate_greedy(model, idx, 10))
    model.eval()
    assert torch.equal(first, generate_greedy(model, idx, 10)) and not model.training


def test_same_seed_same_weights_same_tokens():
    idx = prompts(2, 4)
    a = generate_greedy(tiny_model(seed=7), idx, 15)
    b = generate_greedy(tiny_model(seed=7), idx, 15)
    c = generate_greedy(tiny_model(seed=8), idx, 15)
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize(
    "idx, max_new_tokens, message",
    [
        (torch.tensor([[3, 61]]), 2, "outside the vocabulary"),
        (torch.tensor([[-1, 3]]), 2, "outside the vocabulary"),
        (torch.zeros(1, 0, dtype=torch.long), 2, "empty prompt"),
        (torch.zeros(0, 4, dtype=torch.long), 2, "empty prompt"),
        (torch.tensor([[1, 2]]), -1, "max_new_tokens"),
        (torch.tensor([[1, 2]]), 2.5, "max_new_tokens"),
        (torch.tensor([1, 2]), 2, "unsqueeze"),
        (torch.tensor([[1.0, 2.0]]), 2, "integers"),
    ],
)
def test_bad_input_gives_a_clear_error(idx, max_new_tokens, message):
    with pytest.raises(ValueError, match=message):
        generate_greedy(tiny_model(), idx, max_new_tokens)


def test_a_token_outside_the_vocabulary_is_caught_even_where_the_prompt_is_cropped():
    idx = prompts(1, CONTEXT + 3)
    idx[0, 0] = TINY["vocab_size"] + 10
    with pytest.raises(ValueError, match="outside the vocabulary"):
        generate_greedy(tiny_model(), idx, 1)


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
