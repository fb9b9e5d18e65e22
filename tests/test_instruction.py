"""shared/instruction.py: prompt formats, the split, the dataset, the collate function, responses (chapter 7)."""

import pytest
import torch
import torch.nn.functional as F

from shared.instruction import (
    PROMPT_STYLES, InstructionDataset, PromptStyle, clean_response, extract_response, format_example, format_input,
    format_prompt, generate_continuations, generate_response, generate_responses, instruction_collate,
    make_instruction_loader, split_dataset,
)
from shared.classification import split_rows
from shared.generation import generate
from shared.training import batch_loss, loader_loss, train_model

EOS = 50256
WITH_INPUT = {"instruction": "Fix the grammar.", "input": "He go home.", "output": "He goes home."}
WITHOUT_INPUT = {"instruction": "Name a primary color.", "input": "", "output": "Red."}
ALPACA_PREAMBLE = ("Below is an instruction that describes a task. "
                   "Write a response that appropriately completes the request.")


# ---- prompt formats -------------------------------------------------------------------------------------------

def test_alpaca_format_with_an_input():
    assert format_input(WITH_INPUT) == (
        f"{ALPACA_PREAMBLE}\n\n### Instruction:\nFix the grammar.\n\n### Input:\nHe go home.")
    assert format_prompt(WITH_INPUT) == format_input(WITH_INPUT) + "\n\n### Response:\n"
    assert format_example(WITH_INPUT) == format_prompt(WITH_INPUT) + "He goes home."


@pytest.mark.parametrize("record", [WITHOUT_INPUT, {"instruction": "Name a primary color.", "output": "Red."},
                                    {"instruction": "Name a primary color.", "input": "  \n", "output": "Red."}],
                         ids=["empty-input", "no-input-key", "blank-input"])
def test_alpaca_format_without_an_input_has_no_input_section(record):
    assert format_input(record) == f"{ALPACA_PREAMBLE}\n\n### Instruction:\nName a primary color."
    assert "### Input:" not in format_example(record)
    assert format_example(record).endswith("### Response:\nRed.")


def test_chat_format():
    assert format_example(WITH_INPUT, "chat") == "<|user|>\nFix the grammar.\nHe go home.\n<|assistant|>\nHe goes home."
    assert format_prompt(WITHOUT_INPUT, "chat") == "<|user|>\nName a primary color.\n<|assistant|>\n"
    assert format_prompt(WITHOUT_INPUT, PROMPT_STYLES["chat"]) == format_prompt(WITHOUT_INPUT, "chat")


def test_format_errors_are_clear():
    with pytest.raises(ValueError, match="unknown prompt style"):
        format_input(WITH_INPUT, "nonsense")
    with pytest.raises(ValueError, match="'instruction'"):
        format_input({"input": "", "output": "x"})
    with pytest.raises(ValueError, match="'output'"):
        format_example({"instruction": "x"})
    with pytest.raises(TypeError, match="dict"):
        format_input("just a string")
    with pytest.raises(TypeError, match="'input' must be a string"):
        format_input({"instruction": "x", "input": 3})


# ---- response extraction -----------------------------------------------------------------------------------

def test_extract_response_returns_only_the_response():
    prompt = format_prompt(WITH_INPUT)
    assert extract_response(prompt + "He goes home.<|endoftext|>garbage") == "He goes home."
    assert extract_response(prompt + "  He goes home.\n\n### Instruction:\nAnother task", prompt=prompt) == "He goes home."
    assert extract_response(prompt + "He goes home.\n\n### Input:\nmore") == "He goes home."
    assert extract_response(prompt + "<|endoftext|>") == ""


def test_extract_response_with_a_prompt_that_itself_mentions_the_header():
    record = {"instruction": "Explain what '### Response:' means.", "input": "", "output": "A header."}
    prompt = format_prompt(record)
    assert extract_response(prompt + "A header.", prompt=prompt) == "A header."


def test_extract_response_chat_style():
    prompt = format_prompt(WITHOUT_INPUT, "chat")
    assert extract_response(prompt + "Red.<|end|>\n<|user|>\nmore", "chat") == "Red."
    assert extract_response(prompt + "Red.\n<|user|>\nmore", "chat", prompt=prompt) == "Red."


def test_extract_response_errors():
    with pytest.raises(ValueError, match="### Response:"):
        extract_response("no header at all")
    with pytest.raises(ValueError, match="does not start with the given prompt"):
        extract_response("something else", prompt="the prompt")


def test_clean_response_cuts_at_the_first_stop_marker():
    assert clean_response("  Blue.\n### Instruction: x<|endoftext|>") == "Blue."
    assert clean_response("Blue.<|endoftext|>### Instruction:") == "Blue."


# ---- split ---------------------------------------------------------------------------------------------------

def test_split_85_5_10_in_the_order_train_validation_test():
    records = [{"id": i} for i in range(1100)]
    train, val, test = split_dataset(records)
    assert (len(train), len(val), len(test)) == (935, 55, 110)
    assert [train, val, test] == split_rows(records, (0.85, 0.05, 0.10), seed=123)  # chapter 6's split, in 3 parts
    assert sorted(r["id"] for r in train + val + test) == list(range(1100))
    train, val, test = split_dataset(records, fractions=(0.5, 0.3, 0.2))
    assert (len(train), len(val), len(test)) == (550, 330, 220)


def test_split_with_a_seed_shuffles_reproducibly_without_touching_the_input():
    records = [{"id": i} for i in range(100)]
    snapshot = list(records)
    first = split_dataset(records, seed=1)
    assert records == snapshot
    assert first == split_dataset(records, seed=1)
    assert first != split_dataset(records, seed=2)
    ids = [r["id"] for part in first for r in part]
    assert sorted(ids) == list(range(100)) and ids != list(range(100))


@pytest.mark.parametrize("fractions", [(0.9, 0.1), (0, 0.5, 0.5), (0.8, 0.3, 0.1), (0.6, 0.5, -0.1), (0.85, 0.05, 0.05)])
def test_split_rejects_bad_fractions(fractions):
    with pytest.raises(ValueError, match="fractions"):
        split_dataset([{}] * 10, fractions)


def test_split_rejects_no_records():
    with pytest.raises(ValueError, match="no records"):
        split_dataset([])


# ---- collate -------------------------------------------------------------------------------------------------

def test_collate_pads_shifts_and_ignores_padding_targets():
    inputs, targets = instruction_collate([[0, 1, 2, 3, 4], [5, 6], [7, 8, 9]])
    assert inputs.tolist() == [[0, 1, 2, 3, 4], [5, 6, EOS, EOS, EOS], [7, 8, 9, EOS, EOS]]
    assert targets.tolist() == [[1, 2, 3, 4, EOS], [6, EOS, -100, -100, -100], [8, 9, EOS, -100, -100]]
    assert inputs.dtype == targets.dtype == torch.long


def test_collate_keeps_exactly_one_end_of_text_target_per_sequence():
    generator = torch.Generator().manual_seed(0)
    batch = [torch.randint(0, 1000, (int(n),), generator=generator).tolist()
             for n in torch.randint(1, 30, (16,), generator=generator)]
    inputs, targets = instruction_collate(batch)
    assert inputs.shape == targets.shape == (16, max(len(ids) for ids in batch))
    for row, ids in enumerate(batch):
        n = len(ids)
        assert (targets[row] == EOS).sum() == 1 and targets[row, n - 1] == EOS
        assert targets[row, :n - 1].tolist() == ids[1:]
        assert (targets[row, n:] == -100).all()
        assert inputs[row, :n].tolist() == ids and (inputs[row, n:] == EOS).all()


def test_collate_uses_the_given_pad_and_ignore_values():
    inputs, targets = instruction_collate([[3, 4, 5], [6]], pad_token_id=0, ignore_index=-1)
    assert inputs.tolist() == [[3, 4, 5], [6, 0, 0]]
    assert targets.tolist() == [[4, 5, 0], [0, -1, -1]]


def test_collate_accepts_tensors_tuples_and_dataset_items():
    expected = instruction_collate([[1, 2, 3], [4, 5]])
    for batch in ([torch.tensor([1, 2, 3]), torch.tensor([4, 5])], [(1, 2, 3), (4, 5)],
                  [{"input_ids": [1, 2, 3], "prompt_length": 2}, {"input_ids": [4, 5], "prompt_length": 1}]):
        got = instruction_collate(batch)
        assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


def test_collate_truncates_after_appending_the_end_of_text_token():
    inputs, targets = instruction_collate([[0, 1, 2, 3, 4], [5, 6], [7, 8, 9]], allowed_max_length=3)
    assert inputs.tolist() == [[0, 1, 2], [5, 6, EOS], [7, 8, 9]]
    assert targets.tolist() == [[1, 2, 3], [6, EOS, -100], [8, 9, EOS]]
    short = instruction_collate([[1, 2], [3]], allowed_max_length=10)  # longer than the batch: no change
    assert short[0].shape == (2, 2)


def test_collate_leaves_the_batch_on_the_cpu_for_the_loop_to_move():
    inputs, targets = instruction_collate([[1, 2, 3], [4]])
    assert inputs.device.type == targets.device.type == "cpu"
    with pytest.raises(TypeError, match="device"):  # the one device-move rule: loops move batches, collate does not
        instruction_collate([[1, 2, 3], [4]], device="cpu")


def test_collate_masks_the_instruction_when_asked():
    batch = [{"input_ids": [10, 11, 12, 20, 21], "prompt_length": 3}, {"input_ids": [13, 22], "prompt_length": 1}]
    _, targets = instruction_collate(batch, mask_instruction=True)
    # row 0: targets 11, 12 would predict prompt tokens; 20, 21 and the end of text remain
    assert targets.tolist() == [[-100, -100, 20, 21, EOS], [22, EOS, -100, -100, -100]]
    _, unmasked = instruction_collate(batch)
    assert unmasked.tolist() == [[11, 12, 20, 21, EOS], [22, EOS, -100, -100, -100]]


@pytest.mark.parametrize("batch, kwargs, message", [
    ([], {}, "empty"),
    ([[1, 2], []], {}, "example 1 has no tokens"),
    ([[1, 2.5]], {}, "integer token ids"),
    ([[1, -2]], {}, "non-negative"),
    ([[True, 2]], {}, "integer token ids"),
    ([torch.zeros(2, 3, dtype=torch.long)], {}, "1-D tensor"),
    ([torch.tensor([1.0, 2.0])], {}, "1-D tensor"),
    ([{"ids": [1]}], {}, "without 'input_ids'"),
    ([[1, 2]], {"allowed_max_length": 0}, "allowed_max_length"),
    ([[1, 2]], {"allowed_max_length": True}, "allowed_max_length"),
    ([[1, 2]], {"mask_instruction": True}, "prompt_length"),
    ([{"input_ids": [1, 2], "prompt_length": 5}], {"mask_instruction": True}, "prompt_length"),
])
def test_collate_errors_are_clear(batch, kwargs, message):
    with pytest.raises(ValueError, match=message):
        instruction_collate(batch, **kwargs)


def test_the_loss_with_ignored_positions_is_the_loss_over_the_kept_positions(tiny_model):
    model = tiny_model(vocab_size=EOS + 1, emb_dim=16, n_layers=1).eval()
    inputs, targets = instruction_collate([[5, 6, 7, 8, 9, 10], [11, 12], [13, 14, 15]])
    assert (targets == -100).sum() == 7
    loss = batch_loss(model, inputs, targets)
    log_probas = torch.log_softmax(model(inputs), dim=-1)
    kept = targets != -100
    by_hand = -log_probas[kept].gather(-1, targets[kept].unsqueeze(-1)).mean()
    torch.testing.assert_close(loss, by_hand)
    counted_padding = F.cross_entropy(model(inputs).flatten(0, 1), targets.masked_fill(~kept, EOS).flatten())
    assert not torch.isclose(loss, counted_padding)


# ---- dataset and loaders, with a character tokenizer ---------------------------------------------------------

class CharTokenizer:
    """One token per character of a fixed alphabet; the last id is the end-of-text token."""

    def __init__(self, alphabet):
        self.chars = sorted(set(alphabet))
        self.index = {c: i for i, c in enumerate(self.chars)}
        self.eos = len(self.chars)

    def encode(self, text):
        return [self.index[c] for c in text]

    def decode(self, ids):
        return "".join("<|endoftext|>" if i == self.eos else self.chars[i] for i in ids)


TINY_STYLE = PromptStyle(name="tiny", preamble="", instruction_prefix="Q: ", input_prefix=" | ",
                         response_prefix="\nA: ", stop_markers=("<|endoftext|>", "Q:"))
RECORDS = [
    {"instruction": "opposite of hot", "input": "", "output": "cold"},
    {"instruction": "plural of cat", "input": "", "output": "cats"},
    {"instruction": "spell", "input": "dog", "output": "d o g"},
    {"instruction": "opposite of up", "input": "", "output": "down"},
]
TOKENIZER = CharTokenizer("".join(format_example(r, TINY_STYLE) for r in RECORDS))


def test_dataset_pre_tokenizes_prompt_and_output():
    dataset = InstructionDataset(RECORDS, TOKENIZER, TINY_STYLE)
    assert len(dataset) == 4
    item = dataset[2]
    prompt = format_prompt(RECORDS[2], TINY_STYLE)
    assert prompt == "Q: spell | dog\nA: "
    assert item["prompt_length"] == len(prompt)
    assert TOKENIZER.decode(item["input_ids"]) == format_example(RECORDS[2], TINY_STYLE)
    with pytest.raises(ValueError, match="no records"):
        InstructionDataset([], TOKENIZER)


def test_dataset_with_gpt2_style_alpaca_prompts_matches_inference_tokens():
    dataset = InstructionDataset([WITH_INPUT], CharTokenizer(format_example(WITH_INPUT)))
    assert dataset[0]["prompt_length"] == len(format_prompt(WITH_INPUT))


def test_make_instruction_loader_batches():
    loader = make_instruction_loader(RECORDS, TOKENIZER, batch_size=3, style=TINY_STYLE, pad_token_id=TOKENIZER.eos)
    batches = list(loader)
    assert [b[0].shape[0] for b in batches] == [3, 1]
    longest = max(len(format_example(r, TINY_STYLE)) for r in RECORDS[:3])
    assert batches[0][0].shape == batches[0][1].shape == (3, longest)
    assert all(((t == TOKENIZER.eos).sum(dim=1) == 1).all() for _, t in batches)
    truncated = make_instruction_loader(RECORDS, TOKENIZER, batch_size=4, style=TINY_STYLE, allowed_max_length=5)
    assert next(iter(truncated))[0].shape == (4, 5)
    with pytest.raises(ValueError, match="batch_size"):
        make_instruction_loader(RECORDS, TOKENIZER, batch_size=0, style=TINY_STYLE)
    with pytest.raises(ValueError, match="would be empty"):
        make_instruction_loader(RECORDS, TOKENIZER, batch_size=8, drop_last=True, style=TINY_STYLE)


# The character tokenizer's vocabulary, and room for the longest example, prompt and answer.
CHAR_MODEL = dict(vocab_size=TOKENIZER.eos + 1, context_length=64)


def test_a_tiny_instruction_finetune_lowers_the_loss_and_learns_to_answer(tiny_model):
    model = tiny_model(**CHAR_MODEL)
    options = dict(style=TINY_STYLE, pad_token_id=TOKENIZER.eos)
    torch.manual_seed(0)
    train_loader = make_instruction_loader(RECORDS, TOKENIZER, batch_size=4, shuffle=True, **options)
    eval_loader = make_instruction_loader(RECORDS, TOKENIZER, batch_size=4, **options)
    before = loader_loss(model, eval_loader, "cpu")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    history = train_model(model, train_loader, eval_loader, optimizer, "cpu", num_epochs=40, eval_freq=20,
                          eval_iter=1, start_context="Q: ", tokenizer=TOKENIZER, max_new_tokens=3, progress=False)
    after = loader_loss(model, eval_loader, "cpu")
    assert after < 0.2 * before
    assert history["train_losses"][-1] < history["train_losses"][0]
    # the memorised answers come back, cut at the end-of-text token, without the prompt
    responses = generate_responses(model, TOKENIZER, RECORDS, key="answer", progress=False, max_new_tokens=12,
                                   style=TINY_STYLE, eos_id=TOKENIZER.eos)
    assert [r["answer"] for r in responses] == [r["output"] for r in RECORDS]
    assert all(r["instruction"] == s["instruction"] for r, s in zip(responses, RECORDS))
    assert "answer" not in RECORDS[0], "the records passed in are not modified"


def test_generate_response_stops_at_max_new_tokens_and_strips_stop_markers(tiny_model):
    model = tiny_model(seed=3, **CHAR_MODEL)
    response = generate_response(model, TOKENIZER, RECORDS[0], max_new_tokens=5, style=TINY_STYLE,
                                 eos_id=TOKENIZER.eos)
    assert isinstance(response, str) and len(response) <= 5
    assert "<|endoftext|>" not in response and not response.startswith("Q: ")


# ---- batched responses -----------------------------------------------------------------------------------------

# Prompts of 1 to 9 tokens, in no particular order of length. A random model has no real end-of-text token, so
# the tests declare one that the seed-4 model emits at different steps in different rows (at the first step in one).
PROMPTS = [[5, 9, 2], [7], [1, 2, 3, 4, 5, 6, 7, 8, 9], [40, 41], [3, 3, 3, 3, 3], [60, 2, 9, 11], [8] * 7]


def one_at_a_time(model, prompts, max_new_tokens, eos_id):
    """The reference: each prompt generated alone with chapter 5's generate, cut before eos_id."""
    answers = []
    for prompt in prompts:
        new_ids = generate(model, torch.tensor([prompt]), max_new_tokens, eos_id=eos_id)[0, len(prompt):].tolist()
        answers.append(new_ids[:new_ids.index(eos_id)] if eos_id in new_ids else new_ids)
    return answers


@pytest.mark.parametrize("batch_size", [1, 2, 3, 16])
def test_batched_continuations_equal_one_at_a_time_in_the_order_given(tiny_model, batch_size):
    model = tiny_model(seed=4).eval()
    expected = one_at_a_time(model, PROMPTS, 10, eos_id=15)
    assert sorted(len(answer) for answer in expected)[:2] == [0, 3], "rows must finish early for this test to bite"
    assert generate_continuations(model, PROMPTS, 10, batch_size=batch_size, eos_id=15) == expected


def test_batched_continuations_past_the_context_length(tiny_model):
    model = tiny_model(seed=5).eval()  # context_length 16: prompt + 14 new tokens slide the window
    expected = one_at_a_time(model, PROMPTS, 14, eos_id=None)
    assert generate_continuations(model, PROMPTS, 14, batch_size=4, eos_id=None) == expected
    assert all(len(answer) == 14 for answer in expected)


def test_batched_responses_equal_single_ones(tiny_model):
    model = tiny_model(seed=6, **CHAR_MODEL).eval()
    options = dict(max_new_tokens=8, style=TINY_STYLE, eos_id=TOKENIZER.eos)
    batched = generate_responses(model, TOKENIZER, RECORDS, key="answer", batch_size=3, progress=False, **options)
    assert [r["answer"] for r in batched] == [generate_response(model, TOKENIZER, r, **options) for r in RECORDS]


def test_generate_continuations_checks_the_batch_size(tiny_model):
    model = tiny_model().eval()
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="batch_size"):
            generate_continuations(model, PROMPTS, 3, batch_size=bad)
    assert generate_continuations(model, [], 3) == []
