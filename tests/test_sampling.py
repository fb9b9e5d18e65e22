"""shared/generation.py, chapter 5's part: temperature, top-k and top-p sampling, and `generate`."""

import math

import pytest
import torch

from shared.generation import (
    generate,
    generate_greedy,
    next_token_probabilities,
    sample_next_token,
    top_k_filter,
    top_p_filter,
)
from shared.model import GPTConfig, GPTModel

VOCAB = 40


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPTModel(GPTConfig(vocab_size=VOCAB, context_length=12, emb_dim=16, n_heads=2, n_layers=2, drop_rate=0.0))


@pytest.fixture
def prompt():
    return torch.tensor([[1, 2, 3], [7, 8, 9]])


def fixed_logits(seed=0, rows=1):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(rows, VOCAB, generator=generator)


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
    torch.testing.assert_close(probas, torch.full_like(probas, 1 / VOCAB), atol=1e-3, rtol=0)


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
    assert torch.equal(top_k_filter(logits, VOCAB + 100), logits)


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
    assert 1 < len(allowed) < VOCAB
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


def test_generate_restores_the_mode_and_keeps_no_gradients(model, prompt):
    model.train()
    out = generate(model, prompt, 3, temperature=1.0, generator=torch.Generator().manual_seed(0))
    assert model.training and not out.requires_grad
    assert all(p.grad is None for p in model.parameters())
    model.eval()


def test_a_prompt_longer_than_the_context_is_cropped(model):
    long_prompt = torch.arange(20).remainder(VOCAB).unsqueeze(0)
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
    (dict(eos_id=VOCAB), "eos_id"),
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
    (torch.tensor([[1, VOCAB]]), "vocabulary"),
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
    assert probas.shape == (4, VOCAB) and (probas >= 0).all()
    torch.testing.assert_close(probas.sum(dim=-1), torch.ones(4))
    assert math.isclose(next_token_probabilities(fixed_logits(), 0)[0].max().item(), 1.0)
