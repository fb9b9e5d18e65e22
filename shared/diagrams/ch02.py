"""Diagrams for chapter 02.

Every number here is one the chapter's notebook prints: GPT-2 ids of *The Verdict*, the regex
vocabulary's ids, the toy BPE merges, the batch of section 6, the 6 x 3 embedding table of
section 7 and the curation counts of section 9. The BPE pictures run the course's own merge
(shared.bpe); the rest would need the tokenizer's files or the chapter's notebook-only code.
"""

from collections import Counter
from itertools import pairwise

from shared.bpe import merge_ids, most_frequent_pair, pre_tokenize

from . import diagram
from .primitives import (
    ACCENT, FONT, INK, MONO, MUTED, accent, arrow, box, brace, data, fitted_widths, grid, legend, line, mono,
    mono_width, note, operation, parameter, row, side_brace, stack, subtitled, text, title,
)

SPACE = "\u2423"  # the visible-space sign: GPT-2 tokens carry their leading space


# ---- Section 1: the whole pipeline ----


@diagram("ch02_text_to_vectors", size=(9.5, 4.9))
def text_to_vectors(ax):
    tokens = ["I", f"{SPACE}H", "AD", f"{SPACE}always", f"{SPACE}thought"]
    x0, step, w = 1.45, 1.12, 0.98
    right = x0 + 4 * step + w
    row(ax, x0, 4.2, ['"I HAD always thought"'], w=right - x0, h=0.44, family=MONO, name="text")
    row(ax, x0, 3.05, tokens, w=w, h=0.44, gap=step - w, family=MONO, name="tokens")
    row(ax, x0, 1.9, [40, 367, 2885, 1464, 1807], w=w, h=0.44, gap=step - w, family=MONO, name="token ids")
    title(ax, 0.15, 0.95, "vectors")
    for c in (x0 + i * step + w / 2 for i in range(5)):
        for top, bottom in ((4.2, 3.5), (3.05, 2.35), (1.9, 1.57)):
            arrow(ax, (c, top), (c, bottom), color=MUTED, linewidth=1.0)
        stack(ax, c - 0.21, 0.42, 0.42, 1.12, kind="tensor", depth=1, rows=5)  # a vector, most numbers left out
        note(ax, c, 0.76, "\u22ee", ha="center")
    brace(ax, x0, right, 0.3, "one vector of 256 numbers per token (token + position embedding)")
    notes = [(3.77, f"tokenize: split into pieces\n(regex in §3, BPE in §5;\n{SPACE} marks a space)"),
             (2.62, "look each piece up in the\nvocabulary (§4, §5)"),
             (1.55, "cut into windows (§6), then\nembed: look up vectors (§7, §8)")]
    for y, words in notes:
        note(ax, right + 0.25, y, words)
    accent(ax, right + 0.25, 0.85, "what the model\ncomputes with")


# ---- Section 4: a vocabulary, encode and decode, special tokens ----


@diagram("ch02_vocabulary", size=(9.5, 4.9))
def vocabulary(ax):
    story = ["I", "HAD", "always", "thought", "Jack", "Gisburn", "rather", "a", "cheap", "genius", "--", "though", "a"]
    marked = {"I", "HAD", "a", "--"}
    for x, heading, count in ((0.95, "tokens, story order", "4,690 (with repeats)"),
                              (5.9, "vocabulary: token \u2192 id", "1,132 entries")):
        subtitled(ax, x, 4.6, heading, count, ha="center")
    grid(ax, 0.35, 4.05, [[t] for t in story], w=1.2, h=0.285,
         kinds=[["highlight" if t in marked else "data"] for t in story])
    note(ax, 0.95, 4.05 - 13 * 0.285 - 0.14, "\u22ee", ha="center")
    operation(ax, 2.2, 2.35, 1.9, 0.9, "keep each token\nonce, sort them,\nnumber from 0")
    arrow(ax, (1.65, 2.8), (2.2, 2.8))
    arrow(ax, (4.1, 2.8), (4.75, 2.8))
    entries = [(0, "!"), (1, '"'), (2, "'"), None, (6, "--"), None, (44, "HAD"), None, (53, "I"), None,
               (115, "a"), None, (1129, "yourself"), (1130, "<|endoftext|>"), (1131, "<|unk|>")]
    top, h = 4.15, 0.25
    for i, entry in enumerate(entries):
        y = top - (i + 1) * h
        if entry is None:
            note(ax, 5.55, y + h / 2, "\u22ee", ha="center")
        else:  # the special tokens, added last, in bold
            row(ax, 4.8, y, entry[::-1], w=[1.5, 0.7], h=h, kind="highlight" if entry[1] in marked else "data",
                family=MONO, bold=(0, 1) if entry[0] >= 1130 else ())
    side_brace(ax, 7.15, top - 13 * h + 0.02, top - 0.02, "1,130 unique tokens,\nin sorted order:\npunctuation, "
               "then\nCapitals, then\nlower case")
    side_brace(ax, 7.15, top - 15 * h + 0.02, top - 13 * h - 0.02, "2 special tokens,\nadded last")
    accent(ax, 3.15, 1.85, "a token that appears\nmany times (a, --)\nstill gets one id", ha="center")


@diagram("ch02_encode_decode", size=(9.5, 4.7))
def encode_decode(ax):
    tokens = ['"', "It", "'", "s", "the", "last", "he", "painted", ",", "you", "know", ",", '"']
    ids = [1, 56, 2, 850, 988, 602, 533, 746, 5, 1126, 596, 5, 1]
    widths = fitted_widths(list(zip(tokens, ids)), pad=0.24, minimum=0.42)
    x0 = 1.35
    right = x0 + sum(widths)
    row(ax, x0, 3.95, ["\"It's the last he painted, you know,\""], right - x0, h=0.44, family=MONO, name="text")
    row(ax, x0, 2.75, tokens, widths, h=0.44, family=MONO, name="tokens")
    row(ax, x0, 1.55, ids, widths, h=0.44, family=MONO, name="ids")
    row(ax, x0, 0.35, ["\" It' s the last he painted, you know,\""], right - x0, h=0.44, kind="highlight", family=MONO,
        name="decoded")
    mid = x0 + 2.0
    arrow(ax, (mid, 3.95), (mid, 3.19), "split_words: words and punctuation, whitespace dropped")
    arrow(ax, (mid, 2.75), (mid, 1.99), "str_to_int: each token's id in the vocabulary")
    arrow(ax, (mid, 1.55), (mid, 0.79), "int_to_str, join with spaces, drop the space before , . ? ' \" ...")
    # the two directions, drawn as long arrows in the margin
    side = right + 0.35
    for top, bottom, direction in ((4.17, 1.77, "encode"), (1.77, 0.57, "decode")):
        arrow(ax, (side, top), (side, bottom), color=INK)
        title(ax, side + 0.12, (top + bottom) / 2, direction)  # beside the middle of its arrow
    accent(ax, x0, 0.13, "the dropped whitespace is guessed back: \"It's\" returns as \"It' s\", and a space follows "
           "the first quote")


@diagram("ch02_special_tokens", size=(9.5, 3.4))
def special_tokens(ax):
    tokens = ["Hello", ",", "do", "you", "like", "tea", "?", "<|endoftext|>", "In", "the", "sunlit", "terraces", "of",
              "the", "palace", "."]
    ids = [1131, 5, 355, 1126, 628, 975, 10, 1130, 55, 988, 956, 984, 722, 988, 1131, 7]
    kinds = ["highlight" if t in ("Hello", "palace") else "data" for t in tokens]
    widths = fitted_widths(list(zip(tokens, ids)), pad=0.18, minimum=0.3)
    x0 = 0.85
    centres = [x for x, _ in row(ax, x0, 1.84, tokens, widths, h=0.42, kinds=kinds, bold=(7,), family=MONO,
                                 name="tokens", name_x=0.1)]
    row(ax, x0, 0.94, ids, widths, h=0.42, kinds=kinds, bold=(7,), family=MONO, name="ids", name_x=0.1)
    edges = [x0 + sum(widths[:i]) for i in range(len(widths) + 1)]
    brace(ax, edges[0], edges[7] - 0.03, 2.42, "document 1", below=False)
    brace(ax, edges[8] + 0.03, edges[16], 2.42, "document 2", below=False)
    text(ax, centres[7], 3.0, "<|endoftext|> (1130): a document ends here", color=INK)
    arrow(ax, (centres[7], 2.86), (centres[7], 2.3), color=MUTED, linewidth=1.0)
    accent(ax, x0, 0.55, "\"Hello\" and \"palace\" are not in the vocabulary: both become <|unk|> (1131),")
    accent(ax, x0, 0.28, "so after encoding they are the same id, and decoding gives <|unk|> for each")


# ---- Section 5: byte-pair encoding ----

# The toy corpus of section 5 and the eight merges train_bpe learns from it (pair, count).
BPE_MERGES = [(("o", "w"), 7), (("l", "ow"), 7), (("t", "_"), 6), (("s", "t_"), 6), (("e", "st_"), 6),
              (("low", "_"), 4), (("w", "est_"), 3), (("n", "e"), 3)]


@diagram("ch02_bpe_merges", size=(9.5, 5.7))
def bpe_merges(ax):
    unit, h, step = 0.34, 0.33, 0.44
    mono(ax, 0.15, 5.45, "toy corpus:  low \u00d74   lower \u00d72   newest \u00d73   widest \u00d72   lowest \u00d71"
         "        _ marks the end of a word")
    title(ax, 0.15, 5.0, "merge the most frequent pair")
    note(ax, 2.95, 5.0, "seen", ha="center")
    mono(ax, 0.15, 4.41 + h / 2, "start: single characters", color=INK)
    for x, word, freq in [(3.95, "newest_", 3), (6.9, "lowest_", 1)]:
        title(ax, x + 7 * unit / 2, 5.0, f"{word} ({freq}\u00d7 in the corpus)", ha="center")
        symbols, y = list(word), 4.41
        row(ax, x, y, symbols, w=unit, h=h, family=MONO)
        for pair, _ in BPE_MERGES:
            y -= step
            new = pair[0] + pair[1]
            merged = merge_ids(symbols, pair, new)  # the course's merge, on symbols instead of byte ids
            kinds = ["highlight" if s == new else "data" for s in merged] if merged != symbols else None
            row(ax, x, y, merged, w=[unit * len(s) for s in merged], h=h, kind="plain", kinds=kinds, family=MONO)
            symbols = merged
    for k, (pair, count) in enumerate(BPE_MERGES, start=1):
        y = 4.41 - k * step + h / 2
        mono(ax, 0.15, y, f"{k}:  {pair[0]} + {pair[1]}  \u2192  {pair[0] + pair[1]}", color=INK)
        mono(ax, 2.95, y, f"{count}\u00d7", ha="center")
    legend(ax, 0.15, 0.12, [("highlight", "the new symbol a merge creates"),
                            ("plain", "a merge that does not touch the word")], size=0.26)
    accent(ax, 0.15, 0.62, "after 8 merges:  low_ \u00b7 low e r _ \u00b7 ne west_ \u00b7 w i d est_ \u00b7 low est_"
           "   (frequent words become one symbol)")


@diagram("ch02_gpt2_vocabulary", size=(9.5, 4.0))
def gpt2_vocabulary(ax):
    y, h = 2.75, 0.5
    segments = [  # (from, to, what the ids are, weight, examples written under the bar)
        (0.3, 2.1, "256 single bytes", "normal", "0 \u2192 '!'   32 \u2192 'A'"),
        (2.1, 7.6, "50,000 merges, in the order they were learned", "normal",
         f"256 \u2192 '{SPACE}t' (first)  \u2026  50,255 \u2192 '{SPACE}gazed' (last)"),
        (7.6, 9.2, "<|endoftext|>", "bold", "50,256"),
    ]
    for x0, x1, label, weight, examples in segments:
        box(ax, x0, y, x1 - x0, h, label, kind="data", weight=weight)
        mono(ax, (x0 + x1) / 2, y - 0.22, examples, ha="center")
    for x, label, ha in [(0.3, "0", "left"), (2.1, "255 | 256", "center"), (7.6, "50,255 | 50,256", "center")]:
        mono(ax, x, y + h + 0.15, label, ha=ha)
    note(ax, 9.2, y + h + 0.47, "GPT-2's 50,257 token ids (the bar is not to scale)", ha="right")

    subtitled(ax, 0.3, 1.8, f"one unseen word, '{SPACE}someunknownPlace', two ways:", "word-level vocabulary (§4)",
            gap=0.38)
    box(ax, 0.3, 0.82, 1.3, 0.4, "<|unk|>", kind="highlight", family=MONO, weight="bold")
    box(ax, 0.3, 0.42, 1.3, 0.4, "1131", kind="highlight", family=MONO)
    accent(ax, 1.75, 0.82, "the word is lost:\nevery unseen word\nbecomes this id")
    x = 4.3
    note(ax, x, 1.42, "GPT-2's BPE (§5)")
    widths = [1.0, 1.1, 0.9]
    row(ax, x, 0.82, [f"{SPACE}some", "unknown", "Place"], widths, h=0.4, family=MONO)
    row(ax, x, 0.42, [617, 34680, 27271], widths, h=0.4, family=MONO)
    text(ax, x + sum(widths) + 0.15, 0.82, "spelled from known\npieces; decoding\ngives the exact text", ha="left",
         color=INK)


# ---- Section 6: sliding windows and batches ----


@diagram("ch02_sliding_window", size=(9.3, 3.6))
def sliding_window(ax):
    ids = [40, 367, 2885, 1464, 1807, 3619, 402, 271, 10899]
    w, h, x0 = 0.72, 0.44, 1.0
    row(ax, x0, 2.5, ids, w=w, h=h, kind="data", name="token ids", name_x=0.1)
    note(ax, x0 + 9 * w + 0.12, 2.72, "\u2026", fontsize=11)
    brace(ax, x0, x0 + 4 * w - 0.03, 3.08, "window 1: max_length = 4", below=False)
    brace(ax, x0 + 4 * w + 0.03, x0 + 8 * w, 3.08, "window 2: a stride of 4 further on", below=False)
    row(ax, x0, 1.4, ids[0:8], w=w, h=h, kind="tensor", name="input", name_x=0.1)  # two windows, side by side
    row(ax, x0 + w, 0.3, ids[1:9], w=w, h=h, kind="highlight", name="target", name_x=0.1)
    # a thicker line where window 1 ends and window 2 begins, in both rows
    for y, left in [(1.4, x0 + 4 * w), (0.3, x0 + 5 * w)]:
        line(ax, [(left, y - 0.08), (left, y + h + 0.08)], color=INK, linewidth=2.2)
    for i in range(8):
        arrow(ax, (x0 + (i + 0.5) * w, 1.4), (x0 + (i + 1.5) * w - 0.05, 0.3 + h), color=MUTED, linewidth=0.9)
    accent(ax, x0 + 9 * w + 0.15, 1.0, "each input id\npredicts the\nnext id")


BATCH_INPUTS = [[40, 367, 2885, 1464], [1807, 3619, 402, 271], [10899, 2138, 257, 7026], [15632, 438, 2016, 257],
                [922, 5891, 1576, 438], [568, 340, 373, 645], [1049, 5975, 284, 502], [284, 3285, 326, 11]]
NEXT_ID = 287  # the first id of the ninth window, which is the last target of the eighth


@diagram("ch02_batch", size=(9.5, 4.2))
def batch(ax):
    following = [r[0] for r in BATCH_INPUTS[1:]] + [NEXT_ID]  # each window's last target starts the next window
    targets = [r[1:] + [after] for r, after in zip(BATCH_INPUTS, following)]
    w, h, top = 0.66, 0.36, 3.55
    input_kinds = [["highlight" if i == 0 or (i, j) == (1, 0) else "tensor" for j in range(4)] for i in range(8)]
    target_kinds = [["highlight" if i == 0 else "tensor"] * 4 for i in range(8)]
    for x, name, cells, kinds, under in ((1.1, "inputs", BATCH_INPUTS, input_kinds, "4 positions (max_length)"),
                                         (4.8, "targets", targets, target_kinds, "the same ids, one further on")):
        subtitled(ax, x + 2 * w, top + 0.5, name, "shape (8, 4)", gap=0.28, ha="center", under=mono)
        grid(ax, x, top, cells, w=w, h=h, kinds=kinds)
        note(ax, x + 2 * w, top - 8 * h - 0.25, under, ha="center")
    for i in range(8):
        note(ax, 0.98, top - (i + 0.5) * h, f"window {i + 1}", ha="right")
    arrow(ax, (1.1 + 4 * w + 0.08, top - 0.5 * h), (4.72, top - 0.5 * h))  # the first input row, shifted
    note(ax, (1.1 + 4 * w + 4.8) / 2, top - 0.5 * h + 0.17, "shift by one", ha="center")
    accent(ax, 7.69, top - 0.5 * h,
           f"{following[0]} ends the targets\nof window 1 and starts\nthe inputs of window 2\n(stride = max_length)",
           va="top")
    note(ax, 7.69, top - 7 * h, "batch_size = 8 rows,\none window each")


# ---- Sections 7 and 8: embeddings ----

WEIGHT = [[0.3374, -0.1778, -0.1690], [0.9178, 1.5810, 1.3010], [1.2753, -0.2010, -0.1606],
          [-0.4015, 0.9666, -1.1481], [-1.1589, 0.3255, -0.6315], [-2.8400, -0.7849, -1.4096]]


@diagram("ch02_embedding_lookup", size=(9.5, 4.2))
def embedding_lookup(ax):
    fmt = [[f"{v:.4f}" for v in line] for line in WEIGHT]
    w, h, top = 0.78, 0.34, 3.65
    xw, xo = 1.0, 6.0
    subtitled(ax, xw + 1.5 * w, top + 0.42, "embedding.weight", "6 token ids \u00d7 3 dimensions", gap=0.25,
              ha="center")
    ids = [2, 3, 5, 1]
    kinds = [["parameter"] * 3 if r in ids else ["plain"] * 3 for r in range(6)]
    grid(ax, xw, top, fmt, w=w, h=h, kinds=kinds)
    for r in range(6):
        note(ax, xw - 0.12, top - (r + 0.5) * h, f"row {r}", ha="right")
    subtitled(ax, xo + 1.5 * w, top + 0.42, "embedding(ids)", "shape (4, 3)", gap=0.25, ha="center", under=mono)
    out_top = top - 0.5 * h
    grid(ax, xo, out_top, [fmt[r] for r in ids], w=w, h=h, kind="tensor")
    for k, r in enumerate(ids):
        data(ax, xo - 0.72, out_top - (k + 1) * h, 0.42, h, str(r), family=MONO)
        arrow(ax, (xw + 3 * w + 0.05, top - (r + 0.5) * h), (xo - 0.76, out_top - (k + 0.5) * h), color=MUTED,
              linewidth=1.0)
    note(ax, xo - 0.51, out_top + 0.14, "ids", ha="center")

    # the one-hot view
    y = 0.4
    note(ax, 0.2, y + 0.62, "the same row, as a linear layer would compute it:")
    row(ax, 0.2, y, [0, 0, 1, 0, 0, 0], w=0.32, h=0.36, kind="data", family=MONO)
    note(ax, 0.2 + 3 * 0.32, y - 0.16, "one-hot for id 2", ha="center")
    text(ax, 2.3, y + 0.18, "\u00d7", fontsize=12)
    parameter(ax, 2.55, y - 0.05, 1.05, 0.46, "weight\n6 \u00d7 3")
    text(ax, 3.8, y + 0.18, "=", fontsize=12)
    grid(ax, 4.05, y + 0.36, [fmt[2]], w=w, h=0.36, kind="tensor")
    accent(ax, 4.05 + 3 * w + 0.2, y + 0.18, "row 2; the lookup skips\nmultiplying by the zeros")


@diagram("ch02_token_plus_position", size=(9.5, 4.4))
def token_plus_position(ax):
    sw, sh = 1.3, 0.72
    paths = [(2.85, "token ids", "(8, 4)", "token\nembedding", "50257 \u00d7 256"),
             (0.6, "positions\n0, 1, 2, 3", "arange(4)", "position\nembedding", "4 \u00d7 256")]
    for y, what, shape, table, size in paths:
        data(ax, 0.2, y, 1.25, sh, what, shape=shape)
        parameter(ax, 1.85, y, 1.5, sh, table, shape=size)
        arrow(ax, (1.45, y + sh / 2), (1.85, y + sh / 2))
        arrow(ax, (3.35, y + sh / 2), (3.8, y + sh / 2))
    for x, y, depth, name, shape in ((3.8, 2.85, 8, "token embeddings", "(8, 4, 256)"),
                                     (3.8, 0.6, 1, "position embeddings", "(4, 256)"),
                                     (7.1, 2.0 - sh / 2, 8, "input embeddings", "(8, 4, 256)")):
        stack(ax, x, y, sw, sh, kind="tensor", depth=depth, step=0.07, rows=4)
        title(ax, x + sw / 2 + (0.25 if depth > 1 else 0), y + sh + (depth - 1) * 0.07 + 0.1, name, va="bottom",
              ha="center")
        mono(ax, x + sw / 2, y - 0.08, shape, va="top", ha="center")
    note(ax, 4.55, 2.2, "the same 4 position vectors\nare added to each of the\n8 windows (broadcasting)", ha="center")
    operation(ax, 6.15, 1.75, 0.5, 0.5, "+", fontsize=14)
    arrow(ax, (5.45, 2.8), (6.4, 2.25), curve=0.3)
    arrow(ax, (5.1, 0.96), (6.4, 1.75), curve=0.3)
    arrow(ax, (6.65, 2.0), (7.1, 2.0))
    accent(ax, 8.0, 1.19, "what the token is\n+ where it sits", va="top", ha="center")
    note(ax, 9.35, 0.2, "each sheet: one window, 4 rows (positions) \u00d7 256 numbers", ha="right")


# ---- Section 9: data curation ----


@diagram("ch02_curation", size=(9.5, 4.7))
def curation(ax):
    counts = ["14 documents", "10", "8", "7", "7 curated"]
    steps = [
        ("quality filters", "drops 4: spam (BUY NOW!!! $$$ ...), a menu (Home | About | ...),\n"
                            "gibberish (asdf qwer ...), too short (ok)"),
        ("exact duplicates", "drops 2 copies of the painter sentence: one identical, one that differs\n"
                             "only in case, spacing and punctuation (same hash once normalised)"),
        ("near duplicates", "drops 1: \"... lighting the oven ...\" repeats \"... lighting his oven ...\"\n"
                            "but for one word (MinHash estimate 0.67 \u2265 0.5)"),
        ("redaction", "drops none; replaces 4 pieces of personal data: [EMAIL] \u00d72, [PHONE], [IP]"),
    ]
    top, gap, h = 4.1, 0.98, 0.42
    for k, label in enumerate(counts):
        y = top - k * gap
        box(ax, 0.2, y, 1.45, h, label, kind="highlight" if k == len(counts) - 1 else "data")
    for k, (name, what) in enumerate(steps):
        y_from, y_to = top - k * gap, top - (k + 1) * gap + h
        arrow(ax, (0.925, y_from), (0.925, y_to))
        mid = (y_from + y_to) / 2
        operation(ax, 1.9, mid - 0.2, 1.7, 0.4, name)
        line(ax, [(0.925, mid), (1.9, mid)], color=MUTED, linewidth=0.9, style=":")
        text(ax, 3.8, mid, what, ha="left")


SHINGLES_BOTH = ["a quiet morning", "quiet morning in", "morning in the", "in the village", "the village began",
                 "village began with", "began with the", "with the baker", "the baker lighting", "oven before dawn"]
SHINGLES_5 = ["baker lighting his", "lighting his oven", "his oven before"]
SHINGLES_6 = ["baker lighting the", "lighting the oven", "the oven before"]


@diagram("ch02_shingles", size=(9.5, 3.9))
def shingles(ax):
    sentence = "A quiet morning in the village began with the baker lighting {} oven before dawn."
    for y, name, word in [(3.6, "doc 5", "his"), (3.22, "doc 6", "the")]:
        start = mono_width(len(f"{name}:  " + sentence.split("{}")[0]), 9.5)  # highlight the word that differs
        box(ax, 0.18 + start, y - 0.13, mono_width(len(word), 9.5) + 0.04, 0.26, kind="highlight", linewidth=0)
        mono(ax, 0.2, y, f"{name}:  " + sentence.format(word), color=INK)
    w, h, top = 1.72, 0.32, 2.62
    groups = [(0.2, "only in doc 5 (3)", SHINGLES_5, "highlight"),
              (2.27, "in both documents (10)", SHINGLES_BOTH, "data"),
              (6.06, "only in doc 6 (3)", SHINGLES_6, "highlight")]
    for x, heading, shingle_list, kind in groups:
        title(ax, x, top + 0.08, heading, va="bottom")
        columns = [shingle_list[k:k + 5] for k in range(0, len(shingle_list), 5)]  # five to a column
        grid(ax, x, top, [list(cells) for cells in zip(*columns)], w=w, h=h, kind=kind, family=FONT)
    note(ax, 7.93, top - 0.1, "3-word shingles,\n13 per document,\ncompared as sets\nA (doc 5) and\nB (doc 6)",
         va="top")
    text(ax, 0.2, 0.62, "Jaccard similarity  =  |A \u2229 B| / |A \u222a B|  =  10 / (3 + 10 + 3)  =  10 / 16  =  0.62",
         ha="left")
    accent(ax, 0.2, 0.25, "one changed word changes every shingle that contains it: three of thirteen here")


# For hash functions 0..7 of minhash_signature (blake2b keyed by the seed): the shingle with the
# smallest hash in doc 5 and in doc 6 (computed with the chapter's code).
MINHASH_WINNERS = [("his oven before", "with the baker"), ("baker lighting his", "the baker lighting"),
                   ("quiet morning in", "quiet morning in"), ("quiet morning in", "quiet morning in"),
                   ("in the village", "in the village"), ("with the baker", "with the baker"),
                   ("with the baker", "with the baker"), ("baker lighting his", "baker lighting the")]


@diagram("ch02_minhash", size=(9.5, 4.6))
def minhash(ax):
    top, h, shared = 3.95, 0.36, set(SHINGLES_BOTH)
    widths = [1.0, 2.35, 2.35, 0.8]
    headings = ["hash\nfunction", "doc 5: the shingle with\nthe smallest hash",
                "doc 6: the shingle with\nthe smallest hash", "same?"]
    for k, heading in enumerate(headings):
        title(ax, 0.2 + sum(widths[:k]) + widths[k] / 2, top + 0.08, heading, va="bottom", ha="center")
    for i, (a, b) in enumerate(MINHASH_WINNERS):
        kinds = ["plain"] + ["data" if s in shared else "highlight" for s in (a, b)] + ["plain"]
        row(ax, 0.2, top - (i + 1) * h, [f"seed {i}", a, b, ""], w=widths, h=h, kinds=kinds)
        same = a == b
        text(ax, 6.3, top - (i + 0.5) * h, "\u2713" if same else "\u2717", fontsize=11, color=INK if same else ACCENT)
    note(ax, 3.5, top - 8 * h - 0.25, "\u22ee   120 more hash functions", ha="center")
    text(ax, 6.95, 3.75, "a signature entry =\nthe smallest hash\nover a document's\nshingles", ha="left", va="top")
    text(ax, 6.95, 2.55, "entries match when\nthe smallest hash of\nall 16 shingles is on\none of the 10 shared:\n"
         "chance 10 / 16", ha="left", va="top")
    legend(ax, 0.2, 0.48, [("highlight", "a shingle only one document has")], size=0.28)
    accent(ax, 0.2, 0.18, "86 of 128 entries match: estimate 86 / 128 = 0.67 (the exact Jaccard is 0.62)")


# ---- Companion: byte-level BPE from scratch (ch02_bpe_from_scratch.ipynb) ----

# "Café won't" through GPT-2's tokenizer, as the companion prints it: UTF-8 bytes grouped by pre-token,
# then the tokens the merges leave in each pre-token, then their ids.
PIPELINE_PRETOKENS = [
    ("Caf\u00e9", [67, 97, 102, 195, 169], [("C", 34), ("af", 1878), ("\u00e9", 2634)]),
    (f"{SPACE}won", [32, 119, 111, 110], [(f"{SPACE}won", 1839)]),
    ("'t", [39, 116], [("'t", 470)]),
]


@diagram("ch02_bpe_pipeline", size=(9.5, 4.6))
def bpe_pipeline(ax):
    label_x, start, unit, h, gap = 0.15, 2.0, 0.45, 0.42, 0.3
    stages = [(3.85, "text", "any Unicode string"), (2.85, "UTF-8 bytes", "grouped into pre-tokens"),
              (1.7, "tokens", "merges, lowest rank first"), (0.6, "ids", "one per token")]
    for y, heading, what in stages:
        subtitled(ax, label_x, y + h / 2 + 0.1, heading, what, gap=0.25)
    text_y, bytes_y, tokens_y, ids_y = (y for y, _, _ in stages)
    total = sum(len(b) for _, b, _ in PIPELINE_PRETOKENS) * unit + gap * (len(PIPELINE_PRETOKENS) - 1)
    box(ax, start, text_y, total, h, "Caf\u00e9 won't", kind="data", fontsize=11, family=MONO)
    left = start
    for piece, byte_values, tokens in PIPELINE_PRETOKENS:
        width = len(byte_values) * unit
        kinds = ["highlight" if b >= 128 else "data" for b in byte_values]
        row(ax, left, bytes_y, byte_values, w=unit, h=h, kinds=kinds, family=MONO)
        brace(ax, left + 0.03, left + width - 0.03, bytes_y + h + 0.12, f"pre-token {piece}", below=False)
        arrow(ax, (left + width / 2, text_y - 0.02), (left + width / 2, bytes_y + h + 0.38), linewidth=1.0)
        pieces, ids = zip(*tokens)
        row(ax, left, tokens_y, pieces, w=width / len(tokens), h=h, family=MONO)
        for x, _ in row(ax, left, ids_y, ids, w=width / len(tokens), h=h, family=MONO):
            arrow(ax, (x, tokens_y - 0.02), (x, ids_y + h + 0.02), linewidth=1.0)
        arrow(ax, (left + width / 2, bytes_y - 0.02), (left + width / 2, tokens_y + h + 0.02), linewidth=1.0)
        left += width + gap
    accent(ax, start + total + 0.15, bytes_y + h / 2, "\u00e9 = 2 bytes")
    accent(ax, start + total + 0.15, tokens_y + h / 2, "no merge crosses\na pre-token boundary")


@diagram("ch02_bpe_merge_step", size=(9.5, 4.3))
def bpe_merge_step(ax):
    pieces = [list(piece.encode("utf-8")) for piece in pre_tokenize("hug pug hug pun bun hugs")]
    counts = Counter(pair for ids in pieces for pair in pairwise(ids))
    chosen = most_frequent_pair(counts)  # the course's tie rule picks the pair to merge

    def spelled(ids):
        return [SPACE if i == 32 else "ug" if i == 256 else chr(i) for i in ids]

    unit, h, step, top = 0.3, 0.3, 0.45, 3.45
    title(ax, 0.15, 3.95, "pre-tokens as bytes")
    title(ax, 3.05, 3.95, "count adjacent pairs")
    title(ax, 6.35, 3.95, f"merge {' '.join(spelled(chosen))} \u2192 256 (ug)")
    for k, ids in enumerate(pieces):
        row(ax, 0.15, top - k * step, spelled(ids), w=unit, h=h, family=MONO)
        merged = spelled(merge_ids(ids, chosen, 256))
        row(ax, 6.35, top - k * step, merged, w=[unit * len(s) for s in merged], h=h, family=MONO,
            kinds=["highlight" if s == "ug" else "data" for s in merged])
    ranked = sorted(counts, key=lambda pair: (-counts[pair], pair))[:6]
    for k, pair in enumerate(ranked):
        box(ax, 3.05, top - k * step, 0.9, h, " ".join(spelled(pair)), kind="highlight" if pair == chosen else "plain",
            family=MONO)
        mono(ax, 4.1, top - k * step + h / 2, f"{counts[pair]}\u00d7", color=INK)
    note(ax, 3.05, top - 6 * step + h / 2, f"... and {len(counts) - 6} pairs seen once")
    arrow(ax, (1.75, 2.35), (2.95, 2.35), linewidth=1.0)
    arrow(ax, (4.75, 2.35), (6.2, 2.35), linewidth=1.0)
    note(ax, 5.47, 2.5, "most frequent", ha="center")
    accent(ax, 0.15, 0.45,
           "Ties: the highest count wins; among equal counts, the pair with the smaller first id, then second id.")
    note(ax, 0.15, 0.17,
         "Then update the counts of the pairs around each new ug, and repeat until the vocabulary is full.")
