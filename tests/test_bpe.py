"""Unit tests of shared/bpe.py: byte-level BPE written from scratch, checked against tiktoken's GPT-2 encoding."""

import json
import random
import sys

import pytest

from shared.bpe import (
    BPETokenizer, byte_to_printable, gpt2_bpe, load_tokenizer, merge_ids, most_frequent_pair,
    pre_tokenize, read_gpt2_files, save_tokenizer, train_bpe, train_bpe_simple,
)
from shared.data import fetch
from shared.downloads import DATASETS
from shared.notebook import subprocess_env
from shared.text import gpt2_tokenizer
from tests import early

EOT = "<|endoftext|>"

# Strings that break careless tokenizers. Each is compared with tiktoken id for id.
HARD_STRINGS = {
    "emoji": "Party 🎉🎉 time 😀 skin tone 👍🏿 family 👩‍👩‍👦 flag 🇫🇷 keycap 1️⃣",
    "astral letters": "𝓗𝓮𝓵𝓵𝓸 𐍈 𝟘𝟙𝟚 🀄",
    "combining marks": "e\u0301 a\u0308\u0304 Z\u0335\u0334a\u0336l\u0337g\u0338o n\u0303o",
    "cjk": "東京都は日本の首都です。北京是中国的首都。서울은 한국의 수도입니다.",
    "right to left": "עברית מימין לשמאל، والعربية أيضا ٢٠٢٦",
    "whitespace runs": "a" + " " * 40 + "b\n\n\n\n\nc\t\t \u00a0\u3000d   \n   \n",
    "only whitespace": " \n \n\n   ",
    "newline runs": "\n" * 17 + "end" + "\r\n" * 5,
    "digits": "0 00 007 3.14159 1,234,567 1e-10 ٠١٢٣ ०१२ ½ ² 10000000000000000000",
    "contractions in odd cases": "DON'T 'S I'M YOU'RE it's It'S we'Ll he'd 'd ''s can't's rock'n'roll",
    "code": "for (int i = 0; i < n; ++i) {\n\tsum += a[i] * b[i]; // dot\n}\nx = {'k': [1, 2]}  # py\n",
    "mixed scripts": "Hello Мир 世界 κόσμε नमस्ते ሰላም 🌍 Ωmega",
    "punctuation runs": "Wait...!?!? -- (yes) [no] {maybe} <<>> ''\"\" ``~~ @#$%^&*",
    "special token inside text": f"The end.{EOT}Chapter 2 {EOT}{EOT} after",
    "lookalike special token": "<|endoftext| > <|endoftext <| endoftext|>",
    "control characters": "bell\x07 null\x00 escape\x1b[0m delete\x7f nbsp\u00a0 soft\u00adhyphen",
    "empty": "",
}


@pytest.fixture(scope="module")
def gpt2():
    return gpt2_bpe()


@pytest.fixture(scope="module")
def reference():
    return gpt2_tokenizer()


@pytest.fixture(scope="module")
def shakespeare():
    return fetch("tinyshakespeare.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def small(shakespeare):
    """A 600-token tokenizer trained on the first 100,000 characters of Tiny Shakespeare."""
    return BPETokenizer.train(shakespeare[:100_000], 600, progress=False)


# ---- bytes and the printable table ----

def test_printable_table_is_a_one_to_one_map_to_visible_characters():
    table = byte_to_printable()
    assert sorted(table) == list(range(256))
    assert len(set(table.values())) == 256
    assert all(c.isprintable() and not c.isspace() for c in table.values())
    assert table[ord("A")] == "A" and table["é".encode()[0]] == "Ã"  # visible bytes stand for themselves
    assert table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ"  # the two GPT-2's files show most often
    assert sum(ord(c) != b for b, c in table.items()) == 68


# ---- the pre-tokenizer ----

@pytest.mark.parametrize("text, pieces", [
    ("Hello world", ["Hello", " world"]),
    ("DON'T", ["DON", "'", "T"]),  # contractions are recognised in lower case only
    ("'S", ["'", "S"]),
    ("it's they're", ["it", "'s", " they", "'re"]),
    ("a   b", ["a", "  ", " b"]),  # the last space of a run goes to the word after it
    ("x\n\n", ["x", "\n\n"]),
    ("abc123def", ["abc", "123", "def"]),
    ("ok!!  ?", ["ok", "!!", " ", " ?"]),
    ("東京 ٣٤٥", ["東京", " ٣٤٥"]),
])
def test_pre_tokenizer_splits_like_gpt2(text, pieces):
    assert pre_tokenize(text) == pieces


@pytest.mark.parametrize("name", sorted(HARD_STRINGS))
def test_pre_tokens_put_back_together_give_the_text(name):
    assert "".join(pre_tokenize(HARD_STRINGS[name])) == HARD_STRINGS[name]


# ---- training ----

def test_merge_ids_replaces_left_to_right_without_overlap():
    assert merge_ids([1, 2, 1, 2, 3], (1, 2), 9) == [9, 9, 3]
    assert merge_ids([5, 5, 5], (5, 5), 7) == [7, 5]
    assert merge_ids([5, 5, 5, 5], (5, 5), 7) == [7, 7]
    assert merge_ids([1], (1, 2), 9) == [1]


def test_ties_go_to_the_smaller_first_id_then_the_smaller_second_id():
    counts = {(3, 1): 2, (2, 9): 2, (2, 4): 2, (1, 1): 1}
    assert most_frequent_pair(counts) == (2, 4)
    assert most_frequent_pair({**counts, (9, 9): 3}) == (9, 9)  # a higher count beats any tie rule


# Worked by hand. "aaab aab" pre-tokenizes to "aaab" and " aab" (a=97, b=98, space=32).
#   pairs: (97,97) 2+1=3, (97,98) 1+1=2, (32,97) 1              -> merge (97,97) = 256
#   "aaab" = [256,97,98], " aab" = [32,256,98]
#   pairs: (256,97) 1, (97,98) 1, (32,256) 1, (256,98) 1: a tie; smallest first id 32 -> (32,256) = 257
#   "aaab" = [256,97,98], " aab" = [257,98]
#   pairs: (256,97) 1, (97,98) 1, (257,98) 1: a tie; smallest first id 97 -> (97,98) = 258
#   "aaab" = [256,258], " aab" = [257,98]
#   pairs: (256,258) 1, (257,98) 1: a tie; first id 256 < 257 -> (256,258) = 259, then (257,98) = 260
#   then every pre-token is one token and training stops early.
HAND_TEXT = "aaab aab"
HAND_MERGES = [(97, 97), (32, 256), (97, 98), (256, 258), (257, 98)]


@pytest.mark.parametrize("trainer", [train_bpe_simple, lambda *a: train_bpe(*a, progress=False)], ids=["simple", "fast"])
def test_training_on_a_hand_worked_corpus_gives_the_hand_computed_merges(trainer):
    assert trainer(HAND_TEXT, 256 + 3) == HAND_MERGES[:3]
    assert trainer(HAND_TEXT, 1000) == HAND_MERGES  # stops when nothing is left to merge


# A tie decided by the second id: "ac,ab" pre-tokenizes to "ac", ",", "ab": pairs (97,99) and (97,98) once each,
# the same first id 97, so the smaller second id wins: (97,98) = 256, although (97,99) comes first in the text
# (and so first in a dictionary's insertion order). Then (97,99) = 257.
@pytest.mark.parametrize("text", ["ac,ab", "ab,ac"])
def test_a_tie_between_pairs_with_the_same_first_id_goes_to_the_smaller_second_id(text):
    assert train_bpe_simple(text, 300) == train_bpe(text, 300, progress=False) == [(97, 98), (97, 99)]


COMPARED_VOCAB = 256 + 150


def compared_text(shakespeare):
    return shakespeare[200_000:230_000] + "".join(HARD_STRINGS.values())


# The plain trainer on that text is the slowest thing in this file (every round recounts every pair: seconds of pure
# Python). It runs in a new Python, started with the test loop on the core that the tests leave idle (tests/early.py),
# with this same package; the text goes to it as UTF-8 bytes, so it reads exactly this string ("\r\n" included).
PLAIN_TRAINING = """
import json, sys
from shared.bpe import train_bpe_simple
with open(sys.argv[1], "rb") as f:
    text = f.read().decode("utf-8")
print(json.dumps(train_bpe_simple(text, int(sys.argv[2]))))
"""


def train_plain_in_a_new_process(prepared):
    path, env = prepared
    command = [sys.executable, "-c", PLAIN_TRAINING, str(path), str(COMPARED_VOCAB)]
    return path, early.run(command, cwd=path.parent, env=env, timeout=600)


@early.early(train_plain_in_a_new_process)
def plain_training_of_the_compared_text():
    path = early.scratch("bpe-plain") / "text.txt"
    path.write_bytes(compared_text(fetch("tinyshakespeare.txt").read_text(encoding="utf-8")).encode("utf-8"))
    return path, subprocess_env()


def test_the_fast_trainer_learns_the_same_merges_as_the_plain_one(shakespeare, plain_training_of_the_compared_text):
    text = compared_text(shakespeare)
    path, plain = plain_training_of_the_compared_text
    assert plain.returncode == 0, plain.stderr[-2000:]
    assert path.read_bytes().decode("utf-8") == text  # the plain trainer read this very text
    plain_merges = [tuple(pair) for pair in json.loads(plain.stdout)]  # train_bpe_simple's list of (id, id) pairs
    assert train_bpe(text, COMPARED_VOCAB, progress=False) == plain_merges


def test_a_shorter_training_is_a_prefix_of_a_longer_one(shakespeare):
    text = shakespeare[:60_000]
    assert train_bpe(text, 256 + 100, progress=False) == train_bpe(text, 256 + 400, progress=False)[:100]


def test_training_refuses_a_vocabulary_smaller_than_the_bytes():
    with pytest.raises(ValueError, match="at least 256"):
        train_bpe("text", 100)


def test_a_trained_tokenizer_has_the_size_asked_for_with_the_special_token_last(small):
    assert small.n_vocab == 600
    assert small.special_tokens == {EOT: 599}
    assert len(small.merges) == 600 - 256 - 1
    assert all(small.vocab[i] == small.vocab[a] + small.vocab[b] for (a, b), i in small.merges.items())


# ---- encoding and decoding ----

@pytest.mark.parametrize("name", sorted(HARD_STRINGS))
def test_decode_inverts_encode(small, gpt2, name):
    text = HARD_STRINGS[name]
    for tokenizer in (small, gpt2):
        assert tokenizer.decode(tokenizer.encode(text, allowed_special="all")) == text
        assert tokenizer.decode(tokenizer.encode_ordinary(text)) == text


def random_text(rng, length):
    """Valid Unicode from several blocks (ASCII, Latin-1, Cyrillic, CJK, emoji, astral), no surrogates."""
    blocks = [(0x20, 0x7E), (0x09, 0x0D), (0xA0, 0xFF), (0x400, 0x4FF), (0x4E00, 0x4FFF), (0x1F300, 0x1F6FF),
              (0x10000, 0x10FFFF)]
    out = []
    for _ in range(length):
        low, high = rng.choice(blocks)
        c = rng.randint(low, high)
        out.append(chr(c if not 0xD800 <= c <= 0xDFFF else 0x41))
    return "".join(out)


def test_random_strings_round_trip_and_match_tiktoken(small, gpt2, reference):
    rng = random.Random(0)
    for _ in range(300):
        text = random_text(rng, rng.randint(0, 40))
        assert small.decode(small.encode(text)) == text
        assert gpt2.decode(gpt2.encode(text)) == text
        assert gpt2.encode(text) == reference.encode(text), repr(text)


def test_encoding_applies_merges_by_rank_not_left_to_right():
    # Merges in rank order: (b,c) first, then (a,b). "abc" must become a + bc: the lower rank wins even though
    # a+b comes first in the text.
    vocab = {b: bytes([b]) for b in range(256)}
    vocab |= {256: b"bc", 257: b"ab"}
    tokenizer = BPETokenizer(vocab, {(98, 99): 256, (97, 98): 257})
    assert tokenizer.encode("abc") == [97, 256]
    assert tokenizer.encode("abd") == [257, 100]


def test_bytes_that_are_not_valid_utf8_decode_to_the_replacement_character(gpt2, reference):
    ids = gpt2.encode("é🙂")
    assert gpt2.decode_bytes(ids) == "é🙂".encode()
    for cut in range(len(ids) + 1):  # every prefix, some of which end inside a character
        assert gpt2.decode(ids[:cut]) == gpt2.decode_bytes(ids[:cut]).decode("utf-8", errors="replace")
        assert gpt2.decode(ids[:cut]) == reference.decode(ids[:cut])
    lone = [gpt2.byte_ids[0xC3]]  # the first byte of é, alone
    assert gpt2.decode(lone) == "\ufffd"
    assert gpt2.decode([gpt2.byte_ids[0xFF], *gpt2.encode("ok")]) == "\ufffdok"


def test_an_unknown_id_is_a_clear_error(gpt2, small):
    with pytest.raises(ValueError, match="unknown token id 50257: this tokenizer's ids run from 0 to 50256"):
        gpt2.decode([15496, 50257])
    with pytest.raises(ValueError, match="unknown token id -1"):
        small.decode([-1])


def test_special_tokens_must_be_allowed(gpt2, small):
    text = f"a{EOT}b"
    with pytest.raises(ValueError, match="contains the special token '<\\|endoftext\\|>'"):
        gpt2.encode(text)
    with pytest.raises(ValueError, match="not special tokens of this tokenizer"):
        gpt2.encode(text, allowed_special={"<|unknown|>"})
    assert gpt2.encode(text, allowed_special={EOT}) == gpt2.encode("a") + [50256] + gpt2.encode("b")
    assert gpt2.encode(text, allowed_special="all") == gpt2.encode(text, allowed_special={EOT})
    assert 50256 not in gpt2.encode_ordinary(text)
    assert small.encode(EOT, allowed_special="all") == [599] and small.decode([599]) == EOT


def test_a_longer_special_token_is_not_cut_short_by_a_shorter_one():
    base = BPETokenizer.from_merges([], special_tokens=("<|a|>", "<|a|>x"))
    assert base.encode("<|a|>x<|a|>", allowed_special="all") == [257, 256]


# ---- GPT-2's own files, against tiktoken ----

def test_gpt2_files_are_registered_with_their_published_hashes():
    assert DATASETS["encoder.json"].sha256 == "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
    assert DATASETS["vocab.bpe"].sha256 == "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
    assert DATASETS["vocab.bpe"].url.startswith("https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/")


def test_gpt2_has_its_published_shape(gpt2):
    assert gpt2.n_vocab == 50257 and len(gpt2.merges) == 50000 and gpt2.special_tokens == {EOT: 50256}
    assert gpt2.encode("Hello, do you like tea? <|endoftext|> In the sunlit terraces", allowed_special={EOT}) == [
        15496, 11, 466, 345, 588, 8887, 30, 220, 50256, 554, 262, 4252, 18250, 8812, 2114]


@pytest.mark.parametrize("name", ["the-verdict.txt", "tinyshakespeare.txt"])
def test_gpt2_equals_tiktoken_token_for_token_on_whole_books(gpt2, reference, name):
    text = fetch(name).read_text(encoding="utf-8")
    ours, theirs = gpt2.encode(text), reference.encode(text)
    assert len(ours) == len(theirs) > 5000
    assert ours == theirs
    assert gpt2.decode(ours) == text


@pytest.mark.parametrize("name", sorted(HARD_STRINGS))
def test_gpt2_equals_tiktoken_on_hard_strings(gpt2, reference, name):
    text = HARD_STRINGS[name]
    assert gpt2.encode(text, allowed_special={EOT}) == reference.encode(text, allowed_special={EOT})
    assert gpt2.encode_ordinary(text) == reference.encode_ordinary(text)


# ---- saving and loading ----

def test_save_then_load_gives_the_same_tokenizer(small, tmp_path):
    save_tokenizer(small, tmp_path)
    loaded = load_tokenizer(tmp_path)
    assert (loaded.vocab, loaded.merges, loaded.special_tokens) == (small.vocab, small.merges, small.special_tokens)
    assert list(loaded.merges) == list(small.merges)  # the order is the rank
    text = "".join(HARD_STRINGS.values())
    assert loaded.encode(text, allowed_special="all") == small.encode(text, allowed_special="all")


def test_saving_gpt2_writes_openai_files_back(gpt2, tmp_path):
    save_tokenizer(gpt2, tmp_path)
    original_encoder = json.loads(fetch("encoder.json").read_text(encoding="utf-8"))
    assert json.loads((tmp_path / "encoder.json").read_text(encoding="utf-8")) == original_encoder
    merge_lines = lambda path: [line for line in path.read_text(encoding="utf-8").splitlines()[1:] if line]  # noqa: E731
    assert merge_lines(tmp_path / "vocab.bpe") == merge_lines(fetch("vocab.bpe"))
    reloaded = load_tokenizer(tmp_path)
    assert reloaded.merges == gpt2.merges and reloaded.vocab == gpt2.vocab


def test_a_broken_merge_line_names_its_line(tmp_path):
    (tmp_path / "encoder.json").write_text(json.dumps({byte_to_printable()[b]: b for b in range(256)}), encoding="utf-8")
    (tmp_path / "vocab.bpe").write_text("#version: 0.2\na b\nab c\n", encoding="utf-8")
    with pytest.raises(ValueError, match="vocab.bpe, line 2: 'a b' is not two tokens"):
        read_gpt2_files(tmp_path / "encoder.json", tmp_path / "vocab.bpe")
