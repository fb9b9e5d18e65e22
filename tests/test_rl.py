"""shared/rl.py: the addition task and its checker, group-normalised advantages, GRPO's clipped objective and k3 KL
estimate (each against an independent computation written here), answer log-probabilities with left padding, a
gradient step that moves answers the way their advantages say, pass@k and majority vote (chapter 7's RL
companion)."""

import functools
import itertools
import math
import random

import pytest
import torch

from shared.preference import make_reference, sequence_log_probs
from shared.rl import (
    CharTokenizer, addition_prompt, addition_reward, addition_tasks, answer_log_probs, final_answer, group_advantages,
    grpo_loss, grpo_step, k3_kl, majority_vote, pass_at_k, random_problems, rollout_batch, sample_answers,
    supervised_tensors, train_grpo, well_formed, worked_solution,
)

TOKENIZER = CharTokenizer()
EOS = TOKENIZER.end_id


@pytest.fixture(scope="module")
def tiny_model(tiny_model):
    return functools.partial(tiny_model, vocab_size=TOKENIZER.n_vocab, context_length=48)


# ---- the task and its checker -------------------------------------------------------------------------------

def test_worked_solution_is_well_formed_and_its_final_answer_is_the_sum():
    rng = random.Random(0)
    for digits in (1, 2, 3, 5):
        for _ in range(200):
            a, b = rng.randrange(10 ** digits), rng.randrange(10 ** digits)
            answer = worked_solution(a, b, digits)
            assert well_formed(answer, digits)
            assert final_answer(answer) == a + b
            assert addition_reward(answer, a, b) == 1.0


def test_worked_solution_layout():
    assert addition_prompt(47, 385, 3) == "047+385="
    assert worked_solution(47, 385, 3) == "7+5+0=12,4+8+1=13,0+3+1=04>0432."
    assert worked_solution(999, 1, 3) == "9+1+0=10,9+0+1=10,9+0+1=10>1000."


@pytest.mark.parametrize("text, reward", [
    ("7+5+0=12,4+8+1=13,0+3+1=04>0432.", 1.0),  # right
    ("7+5+0=12,4+8+0=12,0+3+1=04>0422.", 0.0),  # wrong sum
    (">432.", 1.0),  # right number without steps: only the outcome is rewarded
    ("7+5+0=12,4+8+1=13,0+3+1=04>0432", 0.0),  # no end mark
    ("7+5+0=12,4+8+1=13,0+3+1=04.", 0.0),  # no '>'
    ("7+5+0=12>04>3.2.", 0.0),  # not a number after the last '>'
    (">.", 0.0),  # nothing after '>'
    ("", 0.0),
])
def test_checker_right_wrong_and_malformed(text, reward):
    assert addition_reward(text, 47, 385) == reward


def test_format_bonus_rewards_the_layout_right_or_wrong():
    right, wrong = worked_solution(47, 385, 3), "7+5+0=12,4+8+0=12,0+3+1=04>0422."
    assert addition_reward(right, 47, 385, digits=3, format_bonus=0.1) == pytest.approx(1.1)
    assert addition_reward(wrong, 47, 385, digits=3, format_bonus=0.1) == pytest.approx(0.1)
    assert addition_reward(">0432.", 47, 385, digits=3, format_bonus=0.1) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="digits"):
        addition_reward(right, 47, 385, format_bonus=0.1)


def test_tokenizer_round_trip_and_errors():
    text = addition_prompt(47, 385, 3) + worked_solution(47, 385, 3)
    assert TOKENIZER.decode(TOKENIZER.encode(text)) == text
    assert TOKENIZER.decode([EOS]) == "."
    with pytest.raises(ValueError, match="not in the alphabet"):
        TOKENIZER.encode("1 + 2")
    with pytest.raises(ValueError, match="operands"):
        addition_prompt(1000, 1, 3)
    with pytest.raises(ValueError, match="operands"):
        addition_prompt(-1, 1, 3)


def test_random_problems_are_distinct_and_avoid_the_excluded_ones():
    test = random_problems(50, 2, seed=0)
    train = random_problems(500, 2, seed=1, exclude=test)
    assert len(set(train)) == 500 and not set(train) & set(test)
    assert random_problems(50, 2, seed=0) == test  # the same seed, the same problems
    with pytest.raises(ValueError):
        random_problems(101, 1, seed=0)


def test_supervised_targets_mask_the_prompt_only():
    inputs, targets = supervised_tensors([(47, 385)], TOKENIZER, 3)
    text = addition_prompt(47, 385, 3) + worked_solution(47, 385, 3)
    assert TOKENIZER.decode(inputs[0]) == text[:-1]
    assert (targets[0, :7] == -100).all() and TOKENIZER.decode(targets[0, 7:]) == text[8:]


# ---- advantages -------------------------------------------------------------------------------------------

def test_equal_rewards_give_zero_advantage_not_nan():
    advantages = group_advantages(torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.5, 0.5]]))
    assert torch.isfinite(advantages).all()
    assert (advantages == 0).all()


def test_advantages_against_an_independent_computation():
    torch.manual_seed(0)
    rewards = (torch.rand(5, 6) > 0.5).float()
    rewards[0] = torch.tensor([1.0, 0, 0, 0, 0, 0])
    advantages = group_advantages(rewards, eps=1e-4)
    for row, got in zip(rewards.tolist(), advantages.tolist()):
        mean = sum(row) / len(row)
        std = math.sqrt(sum((r - mean) ** 2 for r in row) / len(row))  # population std
        for r, a in zip(row, got):
            assert a == pytest.approx((r - mean) / (std + 1e-4), abs=1e-5)
    # one right answer among six: +sqrt(5), the five wrong ones -1/sqrt(5)
    assert advantages[0].tolist() == pytest.approx([math.sqrt(5)] + [-1 / math.sqrt(5)] * 5, abs=1e-3)


def test_advantages_need_groups():
    with pytest.raises(ValueError, match="group_size"):
        group_advantages(torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="group_size"):
        group_advantages(torch.tensor([[1.0], [0.0]]))


# ---- the loss ---------------------------------------------------------------------------------------------

def reference_grpo_loss(log_probs, old, ref, advantages, mask, clip_eps, beta):
    """GRPO's loss written out with Python floats, token by token, independently of shared.rl."""
    per_answer = []
    for lp_row, old_row, ref_row, a, m_row in zip(log_probs.tolist(), old.tolist(), ref.tolist(),
                                                  advantages.tolist(), mask.tolist()):
        terms = []
        for lp, o, r, m in zip(lp_row, old_row, ref_row, m_row):
            if not m:
                continue
            ratio = math.exp(lp - o)
            clipped = min(max(ratio, 1 - clip_eps), 1 + clip_eps)
            surrogate = min(ratio * a, clipped * a)
            kl = math.exp(r) / math.exp(lp) - math.log(math.exp(r) / math.exp(lp)) - 1  # pi_ref/pi - log(..) - 1
            terms.append(surrogate - beta * kl)
        per_answer.append(sum(terms) / len(terms))
    return -sum(per_answer) / len(per_answer)


@pytest.mark.parametrize("beta", [0.0, 0.04, 0.5])
@pytest.mark.parametrize("clip_eps", [0.1, 0.2])
def test_grpo_loss_against_an_independent_computation(beta, clip_eps):
    torch.manual_seed(1)
    n, width = 6, 7
    old = -torch.rand(n, width) * 3
    log_probs = old + torch.randn(n, width) * 0.3  # ratios on both sides of the clip range
    ref = old + torch.randn(n, width) * 0.2
    advantages = torch.randn(n)
    lengths = torch.tensor([7, 5, 1, 3, 7, 2])
    mask = torch.arange(width)[None, :] < lengths[:, None]
    loss, stats = grpo_loss(log_probs, old, ref, advantages, mask, clip_eps=clip_eps, beta=beta)
    assert loss.item() == pytest.approx(reference_grpo_loss(log_probs, old, ref, advantages, mask, clip_eps, beta),
                                        rel=1e-5, abs=1e-6)
    ratio = (log_probs - old).exp()
    assert stats["clipped"] == pytest.approx(float(((ratio - 1).abs() > clip_eps)[mask].float().mean()), abs=1e-6)
    assert 0 < stats["clipped"] < 1  # the test data really does exercise the clipping


def test_padding_after_an_answer_does_not_change_the_loss():
    torch.manual_seed(2)
    old = -torch.rand(2, 4)
    log_probs, ref = old + 0.1, old - 0.1
    mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    loss, _ = grpo_loss(log_probs, old, ref, torch.tensor([1.0, -1.0]), mask)
    noisy = log_probs.clone()
    noisy[0, 2:] = 5.0  # garbage past the first answer's end
    assert grpo_loss(noisy, old, ref, torch.tensor([1.0, -1.0]), mask)[0].item() == pytest.approx(loss.item())


def test_k3_is_non_negative_zero_when_equal_and_unbiased():
    torch.manual_seed(3)
    p = torch.softmax(torch.randn(10), dim=0)
    q = torch.softmax(torch.randn(10), dim=0)
    k3 = k3_kl(p.log(), q.log())  # for each token x drawn from p: q(x)/p(x) - log(q(x)/p(x)) - 1
    assert (k3 >= 0).all()
    assert k3_kl(p.log(), p.log()).abs().max() == 0
    true_kl = sum(pi * math.log(pi / qi) for pi, qi in zip(p.tolist(), q.tolist()))  # KL(p || q)
    assert float((p * k3).sum()) == pytest.approx(true_kl, rel=1e-5)  # its expectation under p


def test_grpo_loss_rejects_wrong_shapes_and_settings():
    x = torch.zeros(2, 3)
    mask = torch.ones(2, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match="advantages"):
        grpo_loss(x, x, x, torch.zeros(3), mask)
    with pytest.raises(ValueError, match="clip_eps"):
        grpo_loss(x, x, x, torch.zeros(2), mask, clip_eps=0)


# ---- log-probabilities of sampled answers -----------------------------------------------------------------

@pytest.mark.parametrize("overrides", [{}, dict(position="rope", norm="rmsnorm", ffn="swiglu")])
def test_answer_log_probs_with_left_padding_match_each_sequence_alone(tiny_model, overrides):
    model = tiny_model(seed=4, **overrides).eval()
    prompts = [[1, 2, 3, 4, 5, 6], [7, 8], [9]]
    answers = [[3, 3, EOS], [4, 5, 6, 7, EOS], [1]]
    batch = rollout_batch(prompts, answers, pad_id=EOS)
    with torch.no_grad():
        batched = answer_log_probs(model, batch)
        for row, (prompt, answer) in enumerate(zip(prompts, answers)):
            ids = torch.tensor([prompt + answer])
            mask = torch.tensor([[False] * len(prompt) + [True] * len(answer)])
            alone = sequence_log_probs(model, ids, mask)  # the DPO companion's function, written separately
            assert batched[row, :len(answer)].sum().item() == pytest.approx(alone.item(), abs=1e-5)
    assert batch["mask"].sum(dim=1).tolist() == [3, 5, 1]


def test_sample_answers_stop_at_the_end_mark(tiny_model):
    model = tiny_model(seed=5)
    prompts = [addition_prompt(1, 2, 3)] * 6
    answers = sample_answers(model, TOKENIZER, prompts, 20, EOS, temperature=1.0,
                             generator=torch.Generator().manual_seed(0))
    assert len(answers) == 6
    for answer in answers:
        assert 1 <= len(answer) <= 20
        assert EOS not in answer[:-1]  # nothing after the first end mark
        assert answer[-1] == EOS or len(answer) == 20


# ---- a gradient step moves answers the way their advantages say --------------------------------------------

def test_a_gradient_step_raises_the_positive_answer_and_lowers_the_negative_one(tiny_model):
    model = tiny_model(seed=6).eval()
    prompt = TOKENIZER.encode(addition_prompt(12, 34, 2))
    good, bad = TOKENIZER.encode(worked_solution(12, 34, 2)), TOKENIZER.encode("2+4+0=06,1+3+0=04>047.")
    batch = rollout_batch([prompt, prompt], [good, bad], pad_id=EOS)
    with torch.no_grad():
        before = (answer_log_probs(model, batch) * batch["mask"]).sum(dim=1)
    advantages = group_advantages(torch.tensor([[1.0, 0.0]])).flatten()
    assert advantages[0] > 0 > advantages[1]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    log_probs = answer_log_probs(model, batch)
    loss, _ = grpo_loss(log_probs, log_probs.detach(), log_probs.detach(), advantages,
                        batch["mask"], beta=0.04)
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        after = (answer_log_probs(model, batch) * batch["mask"]).sum(dim=1)
    assert after[0] > before[0], "the answer with a positive advantage must become more likely"
    assert after[1] < before[1], "the answer with a negative advantage must become less likely"


def test_equal_rewards_move_nothing_without_kl(tiny_model):
    model = tiny_model(seed=7).eval()
    prompt = TOKENIZER.encode(addition_prompt(1, 2, 1))
    batch = rollout_batch([prompt] * 2, [[1, 2, EOS], [3, EOS]], pad_id=EOS)
    log_probs = answer_log_probs(model, batch)
    advantages = group_advantages(torch.tensor([[1.0, 1.0]])).flatten()
    loss, _ = grpo_loss(log_probs, log_probs.detach(), log_probs.detach(), advantages, batch["mask"], beta=0.0)
    loss.backward()
    assert all(p.grad is None or p.grad.abs().max() == 0 for p in model.parameters())


def test_grpo_step_and_train_grpo_run_and_report(tiny_model):
    policy = tiny_model(seed=8)
    reference = make_reference(policy)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-3)
    tasks = addition_tasks(random_problems(3, 2, seed=0), 2)
    stats = grpo_step(policy, reference, optimizer, TOKENIZER, tasks, EOS, group_size=4, max_new_tokens=25,
                      generator=torch.Generator().manual_seed(0))
    assert set(stats) == {"reward", "length", "equal_groups", "loss", "kl", "clipped"}
    assert all(math.isfinite(v) for v in stats.values())
    assert not any(p.requires_grad for p in reference.parameters())
    history = train_grpo(policy, reference, optimizer, TOKENIZER, lambda step: tasks, 2, EOS, progress=False,
                         group_size=2, max_new_tokens=25, generator=torch.Generator().manual_seed(1))
    assert all(len(values) == 2 for values in history.values())
    with pytest.raises(ValueError, match="steps"):
        train_grpo(policy, reference, optimizer, TOKENIZER, lambda step: tasks, 0, EOS)


# ---- pass@k and majority vote --------------------------------------------------------------------------------

@pytest.mark.parametrize("n, c, k", [(8, 0, 1), (8, 3, 1), (8, 3, 2), (8, 3, 4), (8, 8, 4), (6, 1, 6), (5, 2, 3)])
def test_pass_at_k_is_the_share_of_k_subsets_with_a_right_answer(n, c, k):
    correct = torch.tensor([[1] * c + [0] * (n - c)])
    subsets = list(itertools.combinations(range(n), k))
    brute = sum(any(correct[0, i] for i in subset) for subset in subsets) / len(subsets)
    assert pass_at_k(correct, k) == pytest.approx(brute)
    with pytest.raises(ValueError):
        pass_at_k(correct, n + 1)


def test_majority_vote():
    assert majority_vote([">0432.", ">0432.", ">0422.", "x"]) == 432
    assert majority_vote([">0422.", ">0432.", ">0432.", ">0422."]) == 422  # a tie: the first seen wins
    assert majority_vote(["no", "answer."]) is None
