"""Unit tests of shared/text.py: tokenizers, sliding windows, data loaders, and the batch of a training step."""

import pytest
import torch

from shared.text import (
    END_OF_TEXT, UNKNOWN, CompactVocabulary, GPTDataset, SimpleTokenizer, build_vocabulary, create_dataloader,
    gpt2_tokenizer, next_token_windows, sample_batch, text_to_token_ids, token_ids_to_text,
    split_words,
)

TEXT = "The cat sat on the mat. The dog sat on the log, and the cat ran!"


@pytest.fixture
def tokenizer():
    return SimpleTokenizer(build_vocabulary(split_words(TEXT)))


def test_split_words_separates_punctuation_and_drops_whitespace():
    assert split_words("Hello, world. Is this-- a test?") == ["Hello", ",", "world", ".", "Is", "this", "--", "a", "test", "?"]


def test_vocabulary_is_sorted_with_special_tokens_last():
    vocab = build_vocabulary(["b", "a", "b", "c"])
    assert vocab == {"a": 0, "b": 1, "c": 2, END_OF_TEXT: 3, UNKNOWN: 4}


def test_simple_tokenizer_round_trip(tokenizer):
    assert tokenizer.decode(tokenizer.encode(TEXT)) == TEXT


def test_unknown_words_map_to_unk(tokenizer):
    ids = tokenizer.encode("The zebra sat.")
    assert ids[1] == tokenizer.str_to_int[UNKNOWN]
    assert tokenizer.decode(ids) == f"The {UNKNOWN} sat."


def test_end_of_text_is_a_token(tokenizer):
    ids = tokenizer.encode(f"The cat. {END_OF_TEXT} The dog.")
    assert tokenizer.str_to_int[END_OF_TEXT] in ids


def test_strict_tokenizer_names_the_unknown_words(tokenizer):
    strict = SimpleTokenizer(tokenizer.str_to_int, unknown=None)
    with pytest.raises(KeyError, match="zebra"):
        strict.encode("The zebra sat.")


def test_decode_rejects_ids_outside_the_vocabulary(tokenizer):
    with pytest.raises(KeyError, match="not in the vocabulary"):
        tokenizer.decode([0, 10_000])


def test_gpt2_bpe_known_ids_and_lossless_round_trip():
    bpe = gpt2_tokenizer()
    text = "Hello, do you like tea? <|endoftext|> In the sunlit terraces"
    ids = bpe.encode(text, allowed_special={END_OF_TEXT})
    assert ids == [15496, 11, 466, 345, 588, 8887, 30, 220, 50256, 554, 262, 4252, 18250, 8812, 2114]
    assert bpe.decode(bpe.encode("Akwirw ier  odd   spacing")) == "Akwirw ier  odd   spacing"


@pytest.mark.parametrize("n_tokens,max_length,stride", [(20, 4, 1), (20, 4, 4), (21, 4, 4), (20, 5, 3), (10, 9, 1), (100, 8, 7)])
def test_window_count_and_shift(n_tokens, max_length, stride):
    vocab = {f"w{i}": i for i in range(n_tokens)} | {UNKNOWN: n_tokens}
    text = " ".join(f"w{i}" for i in range(n_tokens))
    dataset = GPTDataset(text, SimpleTokenizer(vocab), max_length, stride)
    assert len(dataset) == (n_tokens - max_length - 1) // stride + 1
    for index in range(len(dataset)):
        x, y = dataset[index]
        start = index * stride
        assert x.tolist() == list(range(start, start + max_length))
        assert torch.equal(y, x + 1)  # the targets are the inputs shifted by one


def test_batches_have_the_requested_shape():
    text = " ".join(["word"] * 200)
    loader = create_dataloader(text, batch_size=3, max_length=7, stride=7, shuffle=False)
    inputs, targets = next(iter(loader))
    assert inputs.shape == targets.shape == (3, 7)
    assert inputs.dtype == torch.long
    assert len(loader) == len(loader.dataset) // 3


@pytest.mark.parametrize(
    "text,kwargs,message",
    [
        ("", {}, "empty"),
        ("some words here", {"max_length": 0}, "at least 1"),
        ("some words here", {"stride": 0}, "at least 1"),
        ("far too short", {"max_length": 256}, "one window needs"),
        (" ".join(["w"] * 30), {"max_length": 4, "stride": 4, "batch_size": 10}, "empty loader"),
        (" ".join(["w"] * 30), {"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_input_raises_a_clear_error(text, kwargs, message):
    with pytest.raises(ValueError, match=message):
        create_dataloader(text, **kwargs)


def test_tokenizer_files_missing_gives_one_short_error(monkeypatch):
    import tiktoken

    def offline(name):
        raise ConnectionError("HTTPSConnectionPool(host='openaipublic.blob.core.windows.net'): Max retries exceeded")

    monkeypatch.setattr(tiktoken, "get_encoding", offline)
    with pytest.raises(RuntimeError, match="TIKTOKEN_CACHE_DIR") as error:
        gpt2_tokenizer.__wrapped__()  # bypass the cache of the real, working tokenizer
    assert "cause: ConnectionError: HTTPSConnectionPool" in str(error.value)
    assert error.value.__cause__ is None and error.value.__suppress_context__


def test_next_token_windows_pair_each_window_with_the_ids_one_further():
    inputs, targets = next_token_windows(torch.arange(10, 20), [0, 3, 5], 4)
    assert inputs.tolist() == [[10, 11, 12, 13], [13, 14, 15, 16], [15, 16, 17, 18]]
    assert targets.tolist() == [[11, 12, 13, 14], [14, 15, 16, 17], [16, 17, 18, 19]]


def test_sample_batch_depends_only_on_step():
    tokens = torch.randint(0, 101, (3000,), generator=torch.Generator().manual_seed(0))
    x1, y1 = sample_batch(tokens, 4, 16, step=7, seed=3)
    torch.manual_seed(999)  # the global RNG must not matter
    x2, y2 = sample_batch(tokens, 4, 16, step=7, seed=3)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(x1, sample_batch(tokens, 4, 16, step=8, seed=3)[0])
    assert x1.shape == (4, 16) and torch.equal(x1[:, 1:], y1[:, :-1])
    with pytest.raises(ValueError):
        sample_batch(tokens[:10], 4, 16, step=0)


def test_compact_vocabulary_renumbers_gpt2_ids_in_order_and_round_trips():
    gpt2 = gpt2_tokenizer()
    corpus = "To be, or not to be: that is the question."
    vocab = CompactVocabulary(gpt2.encode(corpus))
    assert vocab.gpt2_ids == sorted(set(gpt2.encode(corpus)))  # compact id i = the i-th smallest GPT-2 id
    assert vocab.n_vocab == len(set(gpt2.encode(corpus)))
    ids = vocab.encode(" not to be, that is the question")  # the corpus's tokens: " not", " to", ...
    assert max(ids) < vocab.n_vocab and [vocab.gpt2_ids[i] for i in ids] == gpt2.encode(" not to be, that is the question")
    assert vocab.decode(ids) == " not to be, that is the question"
    assert vocab.token(vocab.encode(" question")[0]) == " question"
    # it is a tokenizer wherever the course takes one
    assert token_ids_to_text(text_to_token_ids(" to be", vocab), vocab) == " to be"
    loader = create_dataloader(corpus * 4, batch_size=2, max_length=4, stride=4, shuffle=False, tokenizer=vocab)
    inputs, targets = next(iter(loader))
    assert inputs.max() < vocab.n_vocab and torch.equal(inputs[0, 1:], targets[0, :-1])


def test_compact_vocabulary_names_what_it_cannot_encode_or_decode():
    vocab = CompactVocabulary(gpt2_tokenizer().encode("the cat sat"))
    with pytest.raises(ValueError, match="never occur in the corpus.*' dog'"):
        vocab.encode("the dog sat")
    with pytest.raises(ValueError, match=r"outside the compact vocabulary \[0, 3\)"):
        vocab.decode([0, 3])
    with pytest.raises(ValueError, match="empty"):
        CompactVocabulary([])
