"""shared/preference.py: the preference batches and their response mask, answer log-probabilities, the DPO loss and
its rewards, the frozen reference, and a short DPO run (chapter 7's DPO companion)."""

import math

import pytest
import torch

from shared.preference import (
    PreferenceDataset, dpo_batch_loss, dpo_loss, dpo_measure, evaluate_dpo, make_preference_loader, make_reference,
    preference_accuracy, preference_collate, sequence_log_probs,
)
from shared.training import train_model

PAD = 0  # the tiny models' end-of-text and padding id


@pytest.fixture(scope="module")
def tiny_model(tiny_model):
    """This file's policy: 12 tokens, one block, in eval mode (DPO compares log-probabilities, so no dropout)."""

    def build(seed=0, vocab_size=12, context_length=32):
        return tiny_model(seed=seed, vocab_size=vocab_size, context_length=context_length, emb_dim=16, n_heads=2,
                          n_layers=1).eval()

    return build


def pair(prompt, chosen, rejected):
    """A PreferenceDataset-style item made of token ids directly (no tokenizer)."""
    return {"chosen": {"input_ids": prompt + chosen, "prompt_length": len(prompt)},
            "rejected": {"input_ids": prompt + rejected, "prompt_length": len(prompt)}}


# ---- the DPO loss -----------------------------------------------------------------------------------------

def dpo_formula(pc, pr, rc, rr, beta):
    """The DPO loss of one pair, written out independently: -log sigmoid(beta * ((pc - rc) - (pr - rr)))."""
    z = beta * ((pc - rc) - (pr - rr))
    return math.log1p(math.exp(-z))


def test_dpo_loss_matches_the_formula_pair_by_pair():
    torch.manual_seed(1)
    pc, pr, rc, rr = (torch.randn(6, dtype=torch.float64) * 5 for _ in range(4))
    for beta in (0.1, 0.5, 2.0):
        loss, chosen_rewards, rejected_rewards = dpo_loss(pc, pr, rc, rr, beta)
        expected = [dpo_formula(*(float(t[i]) for t in (pc, pr, rc, rr)), beta) for i in range(6)]
        assert loss.item() == pytest.approx(sum(expected) / 6, rel=1e-12)
        assert chosen_rewards.tolist() == pytest.approx([beta * (float(a) - float(b)) for a, b in zip(pc, rc)])
        assert rejected_rewards.tolist() == pytest.approx([beta * (float(a) - float(b)) for a, b in zip(pr, rr)])
        assert not chosen_rewards.requires_grad and not rejected_rewards.requires_grad


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_zero_margin_gives_log_2_exactly_and_a_tie_counts_half(dtype):
    same = torch.tensor([-3.0, -10.0, -0.5], dtype=dtype)
    loss, chosen_rewards, rejected_rewards = dpo_loss(same, same + 1.0, same, same + 1.0, beta=0.3)
    assert loss.item() == torch.tensor(math.log(2), dtype=dtype).item()  # log 2, rounded to the dtype only
    assert preference_accuracy(chosen_rewards, rejected_rewards) == 0.5


def test_dpo_loss_is_exact_for_large_margins():
    big = torch.tensor([1e4, -1e4])
    loss, _, _ = dpo_loss(big, -big, torch.zeros(2), torch.zeros(2), beta=1.0)
    assert math.isfinite(loss.item()) and loss.item() == pytest.approx(1e4 * 2 / 2)  # one pair ~0, the other 2e4


def test_the_gradient_raises_the_chosen_and_lowers_the_rejected_log_probability():
    chosen = torch.tensor([-5.0, -8.0], requires_grad=True)
    rejected = torch.tensor([-6.0, -4.0], requires_grad=True)
    loss, _, _ = dpo_loss(chosen, rejected, torch.tensor([-5.5, -8.0]), torch.tensor([-6.0, -5.0]), beta=0.5)
    loss.backward()
    assert (chosen.grad < 0).all() and (rejected.grad > 0).all()  # descent moves chosen up, rejected down
    assert torch.allclose(chosen.grad, -rejected.grad)


def test_beta_scales_the_rewards_and_the_margin():
    pc, pr, rc, rr = torch.tensor([-4.0, -2.0]), torch.tensor([-7.0, -1.0]), torch.tensor([-5.0, -2.5]), torch.tensor([-5.0, -2.5])
    _, c1, r1 = dpo_loss(pc, pr, rc, rr, beta=0.1)
    _, c5, r5 = dpo_loss(pc, pr, rc, rr, beta=0.5)
    assert torch.allclose(c5, 5 * c1) and torch.allclose(r5, 5 * r1)
    # a well-ordered pair's loss falls as beta grows, a misordered one's rises
    first_pair = [dpo_loss(pc[:1], pr[:1], rc[:1], rr[:1], beta)[0].item() for beta in (0.1, 0.5, 2.0)]
    second_pair = [dpo_loss(pc[1:], pr[1:], rc[1:], rr[1:], beta)[0].item() for beta in (0.1, 0.5, 2.0)]
    assert first_pair == sorted(first_pair, reverse=True) and second_pair == sorted(second_pair)


@pytest.mark.parametrize("beta", [0, -0.1, float("nan"), float("inf"), True, "0.1"])
def test_a_beta_that_is_not_positive_is_refused(beta):
    x = torch.zeros(2)
    with pytest.raises(ValueError, match="beta must be a positive number"):
        dpo_loss(x, x, x, x, beta=beta)


@pytest.mark.parametrize("shapes", [[(3,), (3,), (2,), (3,)], [(3, 4)] * 4, [()] * 4, [(0,)] * 4])
def test_log_probabilities_of_the_wrong_shape_are_refused(shapes):
    with pytest.raises(ValueError, match="one log-probability per pair"):
        dpo_loss(*(torch.zeros(s) for s in shapes))


# ---- the batches and the response mask --------------------------------------------------------------------

def test_the_mask_covers_exactly_each_answer_and_its_end_of_text_token():
    batch = [pair([5, 6, 7], [8, 9], [10]), pair([5], [3, 4, 3, 4], [11, 2])]
    out = preference_collate(batch, pad_token_id=PAD)
    width = 1 + 4 + 1  # the longest sequence (prompt 1 + answer 4) and its end-of-text token
    assert {key: tuple(value.shape) for key, value in out.items()} == {
        "chosen_ids": (2, width), "chosen_mask": (2, width), "rejected_ids": (2, width), "rejected_mask": (2, width)}
    assert out["chosen_ids"].tolist() == [[5, 6, 7, 8, 9, PAD], [5, 3, 4, 3, 4, PAD]]
    assert out["rejected_ids"].tolist() == [[5, 6, 7, 10, PAD, PAD], [5, 11, 2, PAD, PAD, PAD]]
    F, T = False, True
    assert out["chosen_mask"].tolist() == [[F, F, F, T, T, T], [F, T, T, T, T, T]]
    assert out["rejected_mask"].tolist() == [[F, F, F, T, T, F], [F, T, T, T, F, F]]
    assert out["chosen_mask"].dtype == torch.bool


def test_the_mask_is_chapter_7s_instruction_mask_shifted_by_one():
    from shared.instruction import instruction_collate

    example = pair([5, 6, 7], [8, 9, 4], [1])
    out = preference_collate([example], pad_token_id=PAD)
    for side in ("chosen", "rejected"):
        _, targets = instruction_collate([example[side]], pad_token_id=PAD, mask_instruction=True)
        assert torch.equal(targets[0] != -100, out[f"{side}_mask"][0, 1:targets.shape[1] + 1])


def test_the_dataset_tokenizes_prompts_as_chapter_7_does():
    from shared.instruction import format_prompt
    from shared.text import gpt2_tokenizer

    tokenizer = gpt2_tokenizer()
    record = {"instruction": "Name a colour.", "input": "", "chosen": "Blue, thank you.", "rejected": "Blue. Obviously."}
    item = PreferenceDataset([record], tokenizer)[0]
    prompt = tokenizer.encode(format_prompt(record))
    for side in ("chosen", "rejected"):
        assert item[side]["input_ids"] == prompt + tokenizer.encode(record[side])
        assert item[side]["prompt_length"] == len(prompt)


def test_records_and_batches_that_cannot_work_are_refused():
    with pytest.raises(ValueError, match="no 'rejected'"):
        PreferenceDataset([{"instruction": "x", "input": "", "chosen": "y"}], tokenizer=None)
    with pytest.raises(ValueError, match="the batch is empty"):
        preference_collate([])
    with pytest.raises(ValueError, match="non-empty answer"):
        preference_collate([pair([1, 2], [], [3])])
    with pytest.raises(ValueError, match="allowed_max_length"):
        preference_collate([pair([1, 2], [3], [4])], allowed_max_length=1)


# ---- the log-probability of an answer ---------------------------------------------------------------------

def test_sequence_log_probs_equals_a_hand_computation_over_the_answer_only(tiny_model):
    model = tiny_model()
    out = preference_collate([pair([3, 1, 4], [1, 5], [9]), pair([2, 6], [5, 3, 5, 8], [9, 7])], pad_token_id=PAD)
    ids, mask = out["chosen_ids"], out["chosen_mask"]
    with torch.no_grad():
        got = sequence_log_probs(model, ids, mask)
        log_probs = torch.log_softmax(model(ids).double(), dim=-1)
    expected = []
    for row, (prompt_length, answer_length) in enumerate([(3, 2), (2, 4)]):
        positions = range(prompt_length, prompt_length + answer_length + 1)  # the answer and its end-of-text token
        expected.append(sum(log_probs[row, t - 1, ids[row, t]].item() for t in positions))
    assert got.tolist() == pytest.approx(expected, abs=1e-5)


def test_prompt_tokens_and_padding_do_not_count_and_padding_length_does_not_matter(tiny_model):
    model = tiny_model()
    out = preference_collate([pair([3, 1, 4], [1, 5], [9])], pad_token_id=PAD)
    ids, mask = out["chosen_ids"], out["chosen_mask"]
    with torch.no_grad():
        base = sequence_log_probs(model, ids, mask)
        wider_ids = torch.cat([ids, torch.full((1, 7), PAD)], dim=1)
        wider_mask = torch.cat([mask, torch.zeros((1, 7), dtype=torch.bool)], dim=1)
        assert sequence_log_probs(model, wider_ids, wider_mask).item() == pytest.approx(base.item(), abs=1e-6)
        # scoring the prompt as well gives a different (lower) number: the prompt really is left out
        everything = torch.ones_like(mask)
        everything[:, 0] = False
        assert sequence_log_probs(model, ids, everything).item() < base.item()


def test_sequence_log_probs_refuses_masks_it_cannot_score(tiny_model):
    model = tiny_model()
    ids = torch.tensor([[1, 2, 3]])
    with pytest.raises(ValueError, match="first token"):
        sequence_log_probs(model, ids, torch.tensor([[True, True, False]]))
    with pytest.raises(ValueError, match="no True"):
        sequence_log_probs(model, ids, torch.zeros((1, 3), dtype=torch.bool))
    with pytest.raises(ValueError, match="same shape"):
        sequence_log_probs(model, ids, torch.tensor([[False, True]]))
    with pytest.raises(ValueError, match="bool"):
        sequence_log_probs(model, ids, torch.tensor([[0, 1, 1]]))


# ---- the reference and training ---------------------------------------------------------------------------

def test_the_reference_is_a_frozen_copy_and_the_first_loss_is_log_2(tiny_model):
    model = tiny_model()
    model.train()
    reference = make_reference(model)
    assert not reference.training and not any(p.requires_grad for p in reference.parameters())
    assert all(p.requires_grad for p in model.parameters()) and model.training  # the original is untouched
    assert all(p is not q for p, q in zip(model.parameters(), reference.parameters()))
    batch = preference_collate([pair([3, 1], [4, 1], [5, 9]), pair([2], [6], [5, 3])], pad_token_id=PAD)
    loss, chosen_rewards, rejected_rewards = dpo_batch_loss(model.eval(), reference, batch, beta=0.1)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-6)
    assert torch.allclose(chosen_rewards, torch.zeros(2), atol=1e-5)


def synthetic_pairs(n, seed):
    """Pairs whose chosen answers use tokens 1-5 and rejected answers tokens 6-10, after random prompts."""
    generator = torch.Generator().manual_seed(seed)

    def draw(low, high, length):
        return torch.randint(low, high, (length,), generator=generator).tolist()

    return [pair(draw(1, 11, 3), draw(1, 6, 3), draw(6, 11, 3)) for _ in range(n)]


class Pairs(torch.utils.data.Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


def test_a_short_dpo_run_raises_accuracy_and_lowers_the_loss_on_its_training_pairs(tiny_model):
    from functools import partial

    collate = partial(preference_collate, pad_token_id=PAD)
    train = torch.utils.data.DataLoader(Pairs(synthetic_pairs(32, seed=1)), batch_size=8, shuffle=True,
                                        collate_fn=collate, generator=torch.Generator().manual_seed(0))
    val = torch.utils.data.DataLoader(Pairs(synthetic_pairs(16, seed=2)), batch_size=8, collate_fn=collate)
    policy = tiny_model(seed=3)
    reference = make_reference(policy)
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=3e-3)
    history = train_model(policy, train, val, optimizer, "cpu", num_epochs=4, eval_freq=4, eval_iter=4,
                          progress=False, loss_fn=dpo_measure(reference, beta=0.5))
    assert history["train_losses"][0] == pytest.approx(math.log(2), abs=1e-6)
    assert history["train_accuracy"][0] == 0.5 and history["steps"] == [0, 4, 8, 12, 16]
    assert history["train_losses"][-1] < 0.5 and history["train_accuracy"][-1] >= 0.9
    assert history["train_margin"][-1] > 0.5
    # the pattern (chosen tokens 1-5, rejected 6-10) carries over to unseen pairs
    assert history["val_accuracy"][-1] > 0.8
    final = evaluate_dpo(policy, reference, train, "cpu", beta=0.5)
    assert final["chosen_reward"] - final["rejected_reward"] == pytest.approx(final["margin"], abs=1e-6)
    assert not any(p.requires_grad for p in reference.parameters()) and policy.training
    # the loop counts pairs and the tokens of each batch's first tensor (the chosen side, padded); every synthetic
    # pair has the same lengths, so every batch of every epoch is as wide as those of this pass over the loader
    assert history["examples_seen"][-1] == 4 * 32
    assert history["tokens_seen"][-1] == 4 * sum(batch["chosen_ids"].numel() for batch in train)


def test_dpo_measure_refuses_a_reference_that_is_not_frozen(tiny_model):
    model = tiny_model()
    loader = make_preference_loader_from_items([pair([1, 2], [3], [4])])
    with pytest.raises(ValueError, match="frozen"):
        dpo_measure(model, beta=0.1)
    with pytest.raises(ValueError, match="frozen"):
        evaluate_dpo(model, model, loader, "cpu", beta=0.1)


def make_preference_loader_from_items(items):
    from functools import partial

    return torch.utils.data.DataLoader(Pairs(items), batch_size=2, collate_fn=partial(preference_collate, pad_token_id=PAD))


def test_make_preference_loader_batches_records_with_a_real_tokenizer(tiny_model):
    from shared.text import gpt2_tokenizer

    records = [{"instruction": "Say hi.", "input": "", "chosen": "Hello, nice to meet you.", "rejected": "Hi. What?"},
               {"instruction": "Add.", "input": "2 + 2", "chosen": "2 + 2 is 4.", "rejected": "4, obviously."}]
    loader = make_preference_loader(records, gpt2_tokenizer(), batch_size=2)
    batch = next(iter(loader))
    assert batch["chosen_ids"].shape == batch["rejected_ids"].shape
    assert (batch["chosen_ids"][~batch["chosen_mask"]] != 50256).any()  # the prompts are outside the mask
    model = tiny_model(vocab_size=50257, context_length=128)
    with torch.no_grad():
        scores = dpo_batch_loss(model, make_reference(model), batch, beta=0.1)
    assert scores[0].item() == pytest.approx(math.log(2), abs=1e-6)
