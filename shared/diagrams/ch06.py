"""Diagrams for chapter 06: parameter counts from the chapter's own prepare_classifier and apply_lora.

The dataset counts (5,574 messages, 1,494 balanced, 1,045 / 149 / 300) are the notebook's printout: computing
them would download the SMS Spam Collection, which drawing must not need.
"""

import torch
from torch import nn

from shared.classification import prepare_classifier
from shared.lora import LoRALinear, apply_lora
from shared.model import GPTConfig, GPTModel

from . import diagram
from .ch04 import parameter_count  # one count for every chapter's numbers
from .primitives import (
    ACCENT, INK, MONO, MUTED, accent, arrow, box, brace, chain, data, flow, frame, legend, line, mono, node,
    note, operation, parameter, path_arrow, row, side_brace, tensor, text, title,
)


def classifier(lora=False):
    """GPT-2 small as the chapter's classifier, built on the meta device (shapes only, no memory, no weights)."""
    with torch.device("meta"):
        model = prepare_classifier(GPTModel(GPTConfig(qkv_bias=True)))
        if lora:
            apply_lora(model, rank=16, alpha=16, exclude=("out_head",))
            model.out_head.requires_grad_(True)
    return model


@diagram("ch06_data_pipeline", size=(9.6, 4.3))
def data_pipeline(ax):
    widths, gap = [1.8, 1.5, 1.45, 1.3], 0.4
    xs = [0.15 + sum(widths[:k]) + gap * k for k in range(4)]
    rows = [
        (2.95, [("data", "SMS Spam Collection\n5,574 messages", "4,827 ham, 747 spam"),
                ("operation", "balance_classes", "all 747 spam +\n747 random ham"),
                ("data", "1,494 messages\nhalf of them spam", ""),
                ("operation", "split_rows", "shuffle (seed 123),\ncut 70 / 10 / 20 %")]),
        (1.0, [("data", "(label, text) rows", ""),
               ("operation", "SpamDataset", "tokenize; cut or pad every\nmessage to 92 tokens with\n<|endoftext|> "
                                            "(id 50256)"),
               ("tensor", "token ids\n+ class ids", "0 = ham, 1 = spam"),
               ("operation", "DataLoader", "batches of 8\n(training: shuffled,\nlast partial dropped)")]),
    ]
    for y, stages in rows:
        for k, (kind, label, words) in enumerate(stages):
            inset = 0.05 if kind == "operation" else 0  # operations drawn a little slimmer than their data
            box(ax, xs[k], y + inset, widths[k], 0.75 - 2 * inset, label, kind=kind)
            note(ax, xs[k] + widths[k] / 2, y - 0.12, words, ha="center", va="top")
            if k:
                arrow(ax, (xs[k] - gap, y + 0.375), (xs[k], y + 0.375))
    for i, (name, n) in enumerate([("train.csv", "1,045"), ("validation.csv", "149"), ("test.csv", "300")]):
        data(ax, 7.85, 3.7 - i * 0.52, 1.6, 0.42, f"{name}  {n}")
        arrow(ax, (7.4, 3.325), (7.85, 3.91 - i * 0.52), linewidth=1.0)
    path_arrow(ax, [(8.65, 2.66), (8.65, 2.2), (1.05, 2.2), (1.05, 1.75)])
    note(ax, 1.2, 1.98, "for each split: read_rows_csv")
    tensor(ax, 7.85, 1.0, 1.6, 0.75, "one batch")
    arrow(ax, (7.4, 1.375), (7.85, 1.375))
    mono(ax, 8.65, 0.7, "inputs (8, 92)\nlabels (8,)", ha="center")
    accent(ax, 9.45, 0.08, "130 training, 19 validation, 38 test batches", ha="right", va="bottom")


@diagram("ch06_padding", size=(9.4, 2.55))
def padding(ax):
    title(ax, 0.25, 2.25, 'message: "Call now to claim your prize!"', fontsize=10.5)
    ids = [14134, 783, 284, 1624, 534, 11596, 0] + [50256] * 5
    pieces = ["Call", "now", "to", "claim", "your", "prize", "!"] + ["<eot>"] * 5
    x0, y, w, h = 0.25, 1.1, 0.62, 0.46
    row(ax, x0, y, ids, w=w, h=h, kinds=["data"] * 7 + ["masked"] * 5)
    for i, piece in enumerate(pieces):
        mono(ax, x0 + (i + 0.5) * w, y + h + 0.16, piece, ha="center")
    brace(ax, x0 + 0.02, x0 + 7 * w - 0.03, y - 0.1, "the message: 7 tokens")
    brace(ax, x0 + 7 * w + 0.03, x0 + 12 * w - 0.02, y - 0.1, "padding: 5 x <|endoftext|>, id 50256")
    arrow(ax, (x0 + 12 * w + 0.45, y + h / 2), (x0 + 12 * w + 0.04, y + h / 2), color=ACCENT)
    accent(ax, x0 + 12 * w + 0.52, y + h / 2, "last position:\nthe classifier\nreads here")
    note(ax, 0.25, 0.35, "Padded to 12 here; in the chapter's datasets every message is padded to 92 tokens, the "
         "length of the longest training message.")


@diagram("ch06_classification_head", size=(9.7, 3.9))
def classification_head(ax):
    mid, top = 1.7, 2.85
    data(ax, 0.1, mid - 0.4, 0.95, 0.8, "token\nids", shape="(batch, 92)")
    operation(ax, 1.35, mid - 1.0, 1.55, 2.0)
    title(ax, 2.125, mid + 0.72, "GPT-2 body", ha="center")
    text(ax, 2.125, mid - 0.1, "embeddings\n12 transformer\nblocks\nfinal LayerNorm")
    for x, cells, heading, shape, cell_w in ((3.25, 4, "hidden states", "(batch, 92, 768)", 0.25),
                                             (6.6, 2, "scores", "(batch, 92, 2)", 0.3)):
        centre = x + cells * cell_w / 2 + 0.2  # rows for positions 1, 2, ..., 91, 92; the last one highlighted
        title(ax, centre, top + 0.2, heading, ha="center")
        for i, position in enumerate(["1", "2", None, "91", "92"]):
            y = top - (i + 1) * 0.42
            if position is None:
                note(ax, centre, y + 0.2, "...", fontsize=11, ha="center")
                continue
            note(ax, x + 0.12, y + 0.18, position, ha="center")
            row(ax, x + 0.3, y + 0.02, [""] * cells, w=cell_w, h=0.34, kind="highlight" if i == 4 else "tensor")
        mono(ax, centre, top - 2.25, shape, ha="center")
    for x0, x1 in ((1.05, 1.35), (2.9, 3.25), (4.6, 5.0), (6.25, 6.6)):
        arrow(ax, (x0, mid), (x1, mid))
    parameter(ax, 5.0, mid - 0.45, 1.25, 0.9, "new head\nLinear(768, 2)")
    box(ax, 5.0, mid + 1.1, 1.25, 0.65, "GPT-2's head\n768 \u2192 50,257", kind="masked")
    arrow(ax, (5.625, mid + 1.1), (5.625, mid + 0.47), color=ACCENT, linewidth=1.0)
    accent(ax, 5.7, mid + 0.78, "replaced")
    note(ax, 5.625, mid - 0.75, "applied at\nevery position", ha="center")
    last_y = top - 5 * 0.42 + 0.19  # keep the last row
    arrow(ax, (7.5, last_y), (8.15, last_y))
    note(ax, 7.82, last_y + 0.2, "last row", ha="center")
    row(ax, 8.15, last_y - 0.22, ["ham", "spam"], w=0.7, h=0.44, kind="highlight")
    mono(ax, 8.85, last_y - 0.4, "(batch, 2)", ha="center")
    accent(ax, 8.85, last_y + 1.05, "larger score =\npredicted label;\nsoftmax gives\nprobabilities", ha="center")


@diagram("ch06_last_token", size=(9.2, 3.5))
def last_token(ax):
    x0, w, ty, oy, h = 1.05, 0.76, 0.6, 2.2, 0.42
    tokens = ["Win", "a", "free", "cruise", "now"] + ["<eot>"] * 5
    row(ax, x0, ty, tokens, w=w, h=h, kinds=["data"] * 5 + ["masked"] * 5, name="tokens", name_x=0.1)
    row(ax, x0, oy, range(1, 11), w=w, h=h, kinds=["tensor"] * 9 + ["highlight"], name="positions", name_x=0.1)
    for j in range(10):  # what the last position attends to
        line(ax, [(x0 + 9.5 * w, oy), (x0 + (j + 0.5) * w, ty + h)], color=ACCENT, linewidth=1.0)
    for j in range(3):  # what position 3 attends to
        line(ax, [(x0 + 2.5 * w, oy), (x0 + (j + 0.5) * w, ty + h)], color=MUTED, linewidth=1.6, style="--")
    brace(ax, x0 + 0.02, x0 + 5 * w - 0.03, ty - 0.08, "the message")
    brace(ax, x0 + 5 * w + 0.03, x0 + 10 * w - 0.02, ty - 0.08, "padding")
    note(ax, x0 + 2.5 * w, oy + h + 0.35, 'position 3 has seen only "Win a free"', ha="center")
    accent(ax, x0 + 10 * w, oy + h + 0.35, "position 10 has seen\nthe whole message", ha="right")
    text(ax, 0.1, 3.3, "causal attention: each position looks only at the tokens up to itself", ha="left")


@diagram("ch06_frozen_trainable", size=(6.3, 5.0))
def frozen_trainable(ax):
    model = classifier()
    total, learned = parameter_count(model), parameter_count(model, trainable=True)
    x, w, h = 0.3, 3.1, 0.38
    below = [("data", "token ids  (batch, 92)"), ("masked", "token + position embeddings"),
             ("masked", "transformer block 1"), ("masked", "transformer block 2")]
    above = [("masked", "transformer block 11"), ("parameter", "transformer block 12  (trf_blocks[11])"),
             ("parameter", "final LayerNorm"), ("parameter", "new head: Linear(768, 2)")]
    for items, first in ((below, 0.15), (above, 2.65)):  # drawn upwards: the input at the bottom
        chain(ax, x + w / 2, first, items, w=w, h=h, gap=0.12, up=True)
    note(ax, x + w / 2, 2.34, "...", fontsize=12, ha="center")
    side_brace(ax, x + w + 0.2, 0.65, 2.65 + h, f"frozen: requires_grad = False\n{total - learned:,} parameters")
    side_brace(ax, x + w + 0.2, 3.15, 4.15 + h, f"trainable\n{learned:,} parameters\n({learned / total:.1%} of "
               f"{total:,})", color=ACCENT)
    legend(ax, 0.3, 4.7, [("masked", "frozen"), ("parameter", "trained"), ("data", "data")])


@diagram("ch06_loss_all_vs_last", size=(9.7, 4.3))
def loss_all_vs_last(ax):
    line(ax, [(4.62, 0.2), (4.62, 4.05)], color="#cccccc", linewidth=1.0)
    panels = [(0.15, 0.45, 0.98, "Chapter 5: a target at every position", ["Win", "a", "free", "cruise"],
               ["50,257\nscores"] * 4, ["tensor"] * 4),
              (4.8, 4.85, 0.88, "Chapter 6: one target per message", ["Win", "a", "free", "cruise", "now"],
               ["2 scores"] * 5, ["masked"] * 4 + ["highlight"])]
    for title_x, x, w, heading, inputs, scores, kinds in panels:
        title(ax, title_x, 3.95, heading, fontsize=10.5)
        note(ax, x, 3.45, "inputs")
        ins = row(ax, x, 2.9, inputs, w=w, h=0.42, gap=0.05)
        row(ax, x, 1.85, scores, w=w, h=0.5, kinds=kinds, gap=0.05)
        for cx, _ in ins:
            arrow(ax, (cx, 2.9), (cx, 2.35), linewidth=1.0)
    note(ax, 0.45, 1.45, "targets: the next tokens")
    row(ax, 0.45, 0.85, ["a", "free", "cruise", "now"], w=0.98, h=0.42, kind="highlight", gap=0.05)
    accent(ax, 2.5, 0.45, "loss = mean of 4 cross-entropies", ha="center")
    note(ax, 4.85 + 2 * 0.93, 1.55, "not used", ha="center")
    last_x = 4.85 + 4 * 0.93
    box(ax, last_x + 0.88 - 1.45, 0.85, 1.45, 0.42, "label: spam (1)", kind="highlight")
    arrow(ax, (last_x + 0.44, 1.85), (last_x + 0.44, 1.27), color=MUTED, linewidth=1.0)
    note(ax, last_x + 0.88 - 1.5, 1.06, "target:", ha="right")
    accent(ax, 7.15, 0.45, "loss = cross-entropy of the last 2 scores vs the label", ha="center")
    note(ax, 7.15, 0.15, "accuracy: is the larger of the 2 scores the label?", ha="center")


@diagram("ch06_training_loop", size=(9.8, 3.55))
def training_loop(ax):
    steps = [("data", "batch of 8\nmessages"), ("operation", "zero_grad()"),
             ("operation", "model:\nlast-position\nscores (8, 2)"), ("operation", "cross-entropy\nvs labels (8,)"),
             ("operation", "backward()"), ("operation", "step():\nAdamW, lr 5e-5,\nweight decay 0.1")]
    centres = flow(ax, 0.15, 2.05, [(kind, label, 1.38) for kind, label in steps], h=0.8, gap=0.26)
    first, last = centres[0][0], centres[-1][0]
    path_arrow(ax, [(last, 2.05), (last, 1.65), (first, 1.65), (first, 2.05)], color=ACCENT)
    accent(ax, (first + last) / 2, 1.45, "next batch: 130 per epoch, 5 epochs = 650 steps", ha="center")
    note(ax, 0.15, 0.95, "measured on the side, without gradients:")
    operation(ax, 0.15, 0.15, 4.5, 0.6, "every 50 steps: the loss on 5 batches\nof the training and validation sets")
    operation(ax, 5.1, 0.15, 4.5, 0.6, "after each epoch (the hook): the accuracy on 5\nbatches of the training and "
              "validation sets")
    mono(ax, 4.9, 3.3, "train_model(..., loss_fn=classifier_loss, on_epoch_end=accuracy hook)", ha="center", color=INK,
         weight="bold")


@diagram("ch06_feature_cache", size=(9.6, 4.1))
def feature_cache(ax):
    title(ax, 0.15, 3.85, "once, before training (no gradients): frozen_features")
    flow(ax, 0.15, 2.6, [("data", "token ids", 1.3, "(messages, 92)"),
                         ("masked", "embeddings +\nblocks 1-11 (frozen)", 1.9),
                         ("tensor", "hidden states", 1.6, "(messages, 92, 768)"),
                         ("highlight", "stored on the CPU:\n1,045 train, 149 validation,\n300 test messages", 3.2)],
         h=0.8, gap=0.4)
    title(ax, 0.6, 1.72, "every step of every epoch: ClassifierTop")
    flow(ax, 0.15, 0.55, [("tensor", "stored hidden\nstates", 1.6), ("parameter", "block 12", 1.25),
                          ("parameter", "final\nLayerNorm", 1.3), ("parameter", "head\n768 \u2192 2", 1.3),
                          ("operation", "last position:\ncross-entropy", 2.2)], h=0.8, gap=0.4)
    path_arrow(ax, [(7.8, 1.35), (7.8, 1.45), (2.775, 1.45), (2.775, 1.35)], color=ACCENT)
    accent(ax, 5.25, 1.58, "gradients reach only the top", ha="center")
    path_arrow(ax, [(7.8, 2.6), (7.8, 2.12), (0.4, 2.12), (0.4, 1.35)], color=MUTED, linewidth=1.1)
    note(ax, 0.15, 0.2, "checked: the same scores as the whole model on the tokens (largest difference 0.0)")


@diagram("ch06_lora", size=(9.2, 4.3))
def lora(ax):
    layer = LoRALinear(nn.Linear(768, 768, device="meta"), rank=16, alpha=16)
    tensor(ax, 0.15, 1.85, 0.8, 0.7, "x", fontsize=12, shape="(..., 768)")
    box(ax, 2.0, 2.95, 1.7, 0.85, "W  768 \u00d7 768\nfrozen", kind="masked")  # the frozen path
    tensor(ax, 4.55, 3.05, 0.9, 0.65, "x W", fontsize=10.5)
    arrow(ax, (3.7, 3.375), (4.55, 3.375))
    parameter(ax, 2.0, 0.25, 0.42, 1.5, "A", fontsize=11)  # the low-rank path
    note(ax, 2.52, 1.45, "768 \u00d7 16\nstarts random")
    parameter(ax, 3.05, 0.45, 1.5, 0.42, "B", fontsize=11)
    accent(ax, 3.8, 0.3, "16 \u00d7 768, starts at 0", va="top", ha="center")
    operation(ax, 4.85, 0.38, 0.95, 0.56, "\u00d7 \u03b1 / r", fontsize=10.5)
    for y in (3.375, 1.0):
        path_arrow(ax, [(0.95, 2.2), (1.45, 2.2), (1.45, y), (2.0, y)])
    arrow(ax, (2.42, 0.66), (3.05, 0.66))
    arrow(ax, (4.55, 0.66), (4.85, 0.66))
    node(ax, 6.45, 2.2)  # the sum
    path_arrow(ax, [(5.45, 3.375), (6.45, 3.375), (6.45, 2.37)])
    path_arrow(ax, [(5.8, 0.66), (6.45, 0.66), (6.45, 2.03)])
    tensor(ax, 7.0, 1.85, 2.05, 0.7, "x W + (\u03b1 / r) x A B", shape="(..., 768)")
    arrow(ax, (6.62, 2.2), (7.0, 2.2))
    note(ax, 6.85, 3.6, f"rank r = 16, \u03b1 = 16, so \u03b1 / r = {layer.alpha / layer.rank:g}\nW: "
         f"{layer.base.weight.numel():,} weights, frozen\nA and B: {layer.A.numel() + layer.B.numel():,}, trained")
    accent(ax, 7.0, 0.95, "B = 0 at the start:\nthe layer computes\nexactly x W")
    legend(ax, 0.15, 4.0, [("masked", "frozen"), ("parameter", "trained")])


@diagram("ch06_lora_where", size=(9.6, 4.0))
def lora_where(ax):
    def lora_size(d_in, d_out):
        return parameter_count(LoRALinear(nn.Linear(d_in, d_out, device="meta")), trainable=True)

    square, wide = lora_size(768, 768), lora_size(768, 3072)
    model, plain = classifier(lora=True), classifier()
    learned, head = parameter_count(model, trainable=True), parameter_count(model.out_head, trainable=True)
    everything = parameter_count(plain)
    frame(ax, 0.15, 0.15, 4.3, 3.7)
    title(ax, 2.3, 3.62, "one transformer block (\u00d7 12)", ha="center")
    note(ax, 0.35, 3.28, "attention (768 \u2192 768 each)")
    note(ax, 0.35, 1.4, "feed-forward")
    names = [("W_query", 2.78), ("W_key", 2.4), ("W_value", 2.02), ("out_proj", 1.64),
             ("768 \u2192 3,072", 0.9), ("3,072 \u2192 768", 0.52)]
    for name, y in names:
        box(ax, 0.45, y, 2.3, 0.32, name, kind="masked", family=MONO if "_" in name else "DejaVu Sans")
        parameter(ax, 3.0, y, 1.1, 0.32, "+ A B")
    note(ax, 4.25, 0.3, "LayerNorms: frozen, no LoRA", ha="right")
    lines = [("768 \u2192 768 layer: 16 \u00d7 (768 + 768)", square),
             ("768 \u2194 3,072 layer: 16 \u00d7 (768 + 3,072)", wide),
             (f"one block: 4 \u00d7 {square:,} + 2 \u00d7 {wide:,}", 4 * square + 2 * wide),
             ("12 blocks, 72 layers", learned - head), ("+ the new head, trained in full", head)]
    title(ax, 5.0, 3.72, "LoRA weights of rank r = 16")
    for i, (words, n) in enumerate(lines):
        text(ax, 5.0, 3.3 - i * 0.45, words, ha="left")
        mono(ax, 9.45, 3.3 - i * 0.45, f"{n:,}", ha="right", color=INK)
    line(ax, [(5.0, 3.3 - 4.5 * 0.45), (9.45, 3.3 - 4.5 * 0.45)], linewidth=1.0)
    title(ax, 5.0, 1.0, "trainable with LoRA", color=ACCENT)
    mono(ax, 9.45, 1.0, f"{learned:,}", ha="right", color=ACCENT, weight="bold")
    note(ax, 9.45, 0.64, f"{learned / everything:.2%} of {everything:,}", ha="right")
    note(ax, 9.45, 0.3, f"(the last block + norm + head: {parameter_count(plain, trainable=True):,})", ha="right")
