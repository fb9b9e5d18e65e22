"""Diagrams for chapter 05: the sampling pictures run the chapter's own filters (shared.generation)."""

import math

import torch

from shared.generation import next_token_probabilities, top_p_filter

from . import diagram
from .primitives import (
    ACCENT, INK, KINDS, MONO, MUTED, accent, arrow, bar_chart, box, brace, canvas, chain, data, dot, flow, frame, line,
    mono, name_box, note, operation, parameter, path_arrow, row, sketch_axes, subtitled, text, title,
)

# The chapter's toy next-token distribution (section 5), in the order the notebook prints it.
TOY_VOCAB = ["mat", "sofa", "floor", "windowsill", "keyboard", "roof", "moon", "violin"]
TOY_LOGITS = torch.tensor([4.10, 3.30, 3.55, 2.20, 2.75, 1.10, -0.80, -1.60])
PARAMETER_EDGE = KINDS["parameter"][1]


def probabilities(temperature=1.0, top_k=None, top_p=None):
    """The toy distribution after the chapter's filters, as next_token_probabilities computes it."""
    return next_token_probabilities(TOY_LOGITS, temperature, top_k, top_p).tolist()


@diagram("ch05_train_val_split", size=(9.4, 3.0))
def train_val_split(ax):
    x0, width = 0.3, 8.8
    cut = x0 + width * 0.9
    title(ax, x0, 2.75, "The Verdict: 20,479 characters")
    data(ax, x0, 1.95, cut - x0, 0.5, "training text: the first 90% (characters 0 to 18,430)")
    box(ax, cut, 1.95, x0 + width - cut, 0.5, "last 10%", kind="highlight")
    line(ax, [(cut, 1.85), (cut, 2.6)], color=ACCENT, linewidth=1.6)
    accent(ax, cut, 2.75, "split = int(0.9 × 20,479) = 18,431", ha="right")
    train_w, val_w = (cut - x0 - 0.35) / 18, (x0 + width - cut - 0.12) / 2  # windows of 256 tokens, schematic
    row(ax, x0, 1.1, [""] * 18, w=train_w - 0.04, h=0.38, kind="tensor", gap=0.04)
    row(ax, cut + 0.02, 1.1, [""] * 2, w=val_w - 0.04, h=0.38, kind="tensor", gap=0.04)
    note(ax, cut - 0.17, 1.29, "…", ha="center")
    brace(ax, x0, cut - 0.35, 1.0, "18 windows of 256 tokens → 9 batches of 2 (shuffled, last incomplete batch "
          "dropped): 4,608 input tokens per epoch")
    brace(ax, cut + 0.02, x0 + width - 0.1, 1.0)
    accent(ax, x0 + width, 0.2, "validation: 2 windows, 1 batch of 2 (512 tokens), in order, never trained on",
           ha="right")
    note(ax, x0 + width, 0.52, "the tail that does not fill a window (256 inputs + 1 target) is unused", ha="right")


@diagram("ch05_loss_all_positions", size=(9.5, 4.3))
def loss_all_positions(ax):
    inputs = ["the", "painter", "stepped", "she", "laughed", "at"]
    targets = ["painter", "stepped", "back", "laughed", "at", "the"]
    probas = [1.3624, 1.2777, 1.5002, 1.5086, 1.8972, 1.5034]  # × 1e-5: the untrained model's, as printed
    w, rows_y = 1.02, (3.15, 2.3, 1.45, 0.75)
    xs = [2.25 + i * 1.08 + (0.22 if i >= 3 else 0) for i in range(6)]
    labels = ("input token", "target: the\nnext token", "model's probability\nof the target", "−log p")
    for y, label in zip(rows_y, labels):
        title(ax, 0.1, y + 0.21, label)
    brace(ax, xs[0], xs[2] + w, 3.72, "text 1: “the painter stepped back”", below=False)
    brace(ax, xs[3], xs[5] + w, 3.72, "text 2: “she laughed at the”", below=False)
    losses = [-math.log(p * 1e-5) for p in probas]
    for i, x in enumerate(xs):
        cells = [("data", inputs[i]), ("highlight", targets[i]), ("tensor", f"{probas[i]:.2f}e-5"),
                 ("tensor", f"{losses[i]:.2f}")]
        for k, (y, (kind, label)) in enumerate(zip(rows_y, cells)):
            box(ax, x, y, w, 0.42, label, kind=kind)
            if k:
                arrow(ax, (x + w / 2, rows_y[k - 1]), (x + w / 2, y + 0.42), color=MUTED, linewidth=0.9)
        if i not in (2, 5):  # the shift by one: each target is the next input
            arrow(ax, (xs[i + 1] + 0.1, rows_y[0]), (x + w - 0.1, rows_y[1] + 0.42), color=ACCENT, linewidth=0.8,
                  curve=-0.15)
    brace(ax, xs[0], xs[5] + w, 0.62, f"mean over all 6 positions = {sum(losses) / 6:.4f} = the cross-entropy loss",
          color=ACCENT)
    accent(ax, 0.1, 4.15, "red arrows: each target is the next input token (the inputs shifted by one)")
    note(ax, 0.1, 0.1, "training does the same over every position of a batch (2 × 256 = 512 predictions)")


@diagram("ch05_perplexity", size=(10.0, 3.3))
def perplexity(ax):
    title(ax, 0.2, 3.0, "a model unsure between 4 words")
    bar_chart(ax, 1.2, 2.65, [0.25] * 4, ["mat", "sofa", "floor", "roof"], row_h=0.3, digits=2)
    text(ax, 0.2, 1.0, f"loss = −log 0.25 = ln 4 ≈ {math.log(4):.3f}", ha="left")
    subtitled(ax, 0.2, 0.6, "perplexity = e^loss = 4", "as unsure as a fair pick among 4 words", gap=0.35, color=ACCENT)
    xa, xb, y = 4.6, 9.1, 1.7  # a log scale from 1 to 100,000

    def at(v):
        return xa + math.log10(v) / 5 * (xb - xa)

    title(ax, xa, 3.0, "perplexity, on a log scale")
    line(ax, [(xa, y), (xb, y)], linewidth=1.2)
    for e in range(6):
        line(ax, [(at(10 ** e), y - 0.06), (at(10 ** e), y + 0.06)], linewidth=1.0)
        note(ax, at(10 ** e), y - 0.2, f"{10 ** e:,}", ha="center")
    marks = [(1, "certain of every\nnext token\n(loss 0)", 0.75, INK), (4, "the 4-word\nexample", 2.45, ACCENT),
             (50_257, f"uniform guess over\nthe vocabulary\n(loss {math.log(50_257):.3f})", 0.75, INK),
             (66_818, f"untrained model\n(loss {math.log(66_818):.2f})", 2.45, INK)]
    for v, label, label_y, color in marks:
        dot(ax, at(v), y, color, size=5)
        above = label_y > y
        arrow(ax, (at(v), label_y - 0.25 if above else label_y + 0.3), (at(v), y + (0.08 if above else -0.3)),
              color=MUTED, linewidth=0.8)
        text(ax, at(v), label_y, label, color=color)


@diagram("ch05_training_loop", size=(9.5, 4.5))
def training_loop(ax):
    top, bottom, h = 3.35, 1.6, 0.6
    forward = [("data", "batch:\ninputs, targets", 1.75, "(2, 256) each"), ("operation", "model", 1.1),
               ("tensor", "logits", 1.35, "(2, 256, 50257)"), ("operation", "cross-entropy over\nevery position", 1.75),
               ("tensor", "loss", 1.45, "one number")]
    flow(ax, 0.15, top, forward, h=h, gap=0.45)
    backward = [(7.65, 1.7, "loss.backward()\nfills the gradients"),
                (5.2, 1.75, "optimizer.step()\nAdamW moves weights"),
                (2.7, 1.8, "optimizer.zero_grad()\nclears the gradients")]
    arrow(ax, (8.625, top - 0.25), (8.625, bottom + h))
    for k, (x, w, label) in enumerate(backward):
        operation(ax, x, bottom, w, h, label)
        if k:
            arrow(ax, (backward[k - 1][0], bottom + h / 2), (x + w, bottom + h / 2))
    path_arrow(ax, [(2.7, bottom + h / 2), (1.025, bottom + h / 2), (1.025, top - 0.25)])
    note(ax, 1.105, (bottom + h / 2 + top - 0.25) / 2, "next batch")
    parameter(ax, 2.35, 2.55, 1.1, 0.4, "weights")
    arrow(ax, (2.9, 2.95), (2.9, top), color=PARAMETER_EDGE)
    arrow(ax, (5.4, bottom + h), (3.45, 2.7), color=PARAMETER_EDGE)
    text(ax, 4.5, 2.62, "updates", color=PARAMETER_EDGE, ha="left")
    box(ax, 0.15, 0.25, 4.35, 0.7, "every eval_freq = 5 steps: evaluate_model\ntrain and val loss (eval mode, "
        "no gradients)", kind="highlight")
    box(ax, 5.2, 0.25, 4.15, 0.7, "after every epoch: a greedy sample\nfrom “Every effort moves you”", kind="highlight")
    arrow(ax, (5.575, bottom), (2.9, 0.95), color=MUTED, linewidth=0.9)
    arrow(ax, (6.375, bottom), (6.375, 0.95), color=MUTED, linewidth=0.9)
    accent(ax, 9.35, 4.3, "repeat for every batch of every epoch", ha="right")


@diagram("ch05_overfitting_sketch", size=(8.5, 3.6))
def overfitting_sketch(ax):
    x0, y0, x1, y1 = 0.9, 0.55, 7.9, 3.1
    sketch_axes(ax, x0, y0, x1, y1, "training steps →", "loss")
    ts = [i / 100 for i in range(101)]
    train = [0.1 + 2.3 * math.exp(-3.2 * t) for t in ts]
    val = [0.95 + 1.45 * math.exp(-5.0 * t) + 0.9 * max(0.0, t - 0.35) ** 1.5 for t in ts]
    xs = [x0 + 0.05 + t * (x1 - x0 - 0.4) for t in ts]
    line(ax, [(x, y0 + 0.05 + v * 0.95) for x, v in zip(xs, train)], color=KINDS["tensor"][1], linewidth=2)
    line(ax, [(x, y0 + 0.05 + v * 0.95) for x, v in zip(xs, val)], color=ACCENT, linewidth=2, style="-.")
    best = min(range(101), key=lambda i: val[i])
    bx, by = xs[best], y0 + 0.05 + val[best] * 0.95
    dot(ax, bx, by, ACCENT)
    line(ax, [(bx, y0), (bx, y1 - 0.2)], color=MUTED, linewidth=0.9, style=":")
    text(ax, xs[-1], y0 + 0.25 + train[-1] * 0.95, "training loss", ha="right", color=KINDS["tensor"][1])
    accent(ax, xs[-1], y0 - 0.2 + val[-1] * 0.95, "validation loss", ha="right")
    accent(ax, bx + 0.1, by + 0.5, "lowest validation loss:\nstop here, or keep this checkpoint")
    text(ax, (x0 + bx) / 2 + 0.3, y1 - 0.05, "learning patterns\nthat carry over")
    text(ax, (bx + x1) / 2, y1 - 0.05, "memorising the training text\n(overfitting)")
    note(ax, x1, 3.45, "SKETCH: the typical shape, not this run's numbers", ha="right", style="italic")


@diagram("ch05_greedy_vs_sampling", size=(9.5, 3.4))
def greedy_vs_sampling(ax):
    probas = probabilities()
    generator = torch.Generator().manual_seed(123)  # the chapter's 1,000 seeded draws
    draws = torch.multinomial(torch.tensor(probas), num_samples=1000, replacement=True, generator=generator)
    counts = torch.bincount(draws, minlength=len(TOY_VOCAB)).tolist()
    title(ax, 0.15, 3.15, "“The cat curled up on the …”: next-word probabilities")
    bar_chart(ax, 1.35, 2.75, probas, TOY_VOCAB, scale=3.4, row_h=0.3)
    note(ax, 3.75, 2.87, "drawn, of 1,000", ha="center")
    for i, count in enumerate(counts):
        text(ax, 3.75, 2.75 - (i + 0.5) * 0.3, f"{count}")
    for y, method, result, kind in ((1.95, "greedy: argmax", f"{TOY_VOCAB[0]}, every time", "highlight"),
                                    (0.85, "sampling:\ntorch.multinomial",
                                     "each word about as often\nas its probability says", "tensor")):
        operation(ax, 4.7, y, 1.7, 0.55, method)
        arrow(ax, (6.4, y + 0.28), (6.75, y + 0.28))
        box(ax, 6.75, y, 2.55, 0.55, result, kind=kind)
    note(ax, 0.15, 0.2, f"sampling gives varied text, but rare words can come up too (moon {counts[6]} times; "
         "violin could)")


@diagram("ch05_sampling_filters", size=(9.5, 3.75))
def sampling_filters(ax):
    panels = [("softmax, T = 1", probabilities()), ("÷ temperature 1.5", probabilities(1.5)),
              ("top-k, k = 5", probabilities(1.5, top_k=5)), ("top-p, p = 0.9", probabilities(1.5, 5, 0.9))]
    for i, (heading, values) in enumerate(panels):
        x = 1.15 + i * 2.1
        title(ax, x, 3.4, heading, color=INK if i == 0 else ACCENT)
        bar_chart(ax, x, 2.95, [v or None for v in values], TOY_VOCAB if i == 0 else (), scale=2.6, row_h=0.3,
                  kind="highlight" if i == 3 else "tensor")
        if i:
            arrow(ax, (x - 0.35, 3.4), (x - 0.07, 3.4), color=MUTED)
    note(ax, 0.15, 0.25, "the order in next_token_probabilities: temperature, then top-k, then top-p on what top-k "
         "left;\nthe survivors are renormalised to sum to 1")


@diagram("ch05_top_p_nucleus", size=(9.0, 3.3))
def top_p_nucleus(ax):
    probas = torch.tensor(probabilities())
    kept = torch.isfinite(top_p_filter(TOY_LOGITS, 0.9))  # the chapter's own rule decides the nucleus
    order = probas.argsort(descending=True).tolist()
    running = probas[order].cumsum(0).tolist()
    x0, w, y = 1.2, 0.95, 1.9
    title(ax, 0.1, 2.9, "sorted by probability, top-p with p = 0.9")
    for label, label_y in (("word", y + 0.22), ("probability", y - 0.25), ("running sum", y - 0.6)):
        title(ax, 0.1, label_y, label)
    for j, i in enumerate(order):
        x = x0 + j * w + (w - 0.06) / 2
        box(ax, x0 + j * w, y, w - 0.06, 0.45, TOY_VOCAB[i], kind="highlight" if kept[i] else "masked")
        text(ax, x, y - 0.25, f"{probas[i]:.4f}")
        text(ax, x, y - 0.6, f"{running[j]:.4f}", color=ACCENT if kept[i] else MUTED)
    nucleus = int(kept.sum())
    brace(ax, x0, x0 + nucleus * w - 0.06, y + 0.55, f"the nucleus: kept ({running[nucleus - 1]:.4f} is the first "
          "sum to reach 0.9)", below=False, color=ACCENT)
    brace(ax, x0 + nucleus * w, x0 + 8 * w - 0.06, y + 0.55, "dropped: set to −inf", below=False)
    note(ax, 0.1, 0.45, "a word is kept while the words ranked above it add up to less than p; the kept words are "
         "then renormalised")


@diagram("ch05_lr_schedule", size=(8.5, 3.3))
def lr_schedule(ax):
    x0, y0, x1, y1 = 0.9, 0.55, 8.0, 3.0
    sketch_axes(ax, x0, y0, x1, y1, "training step →", "learning\nrate")
    total, warm, floor = 100, 10, 0.1

    def lr(s):
        progress = (s - warm) / (total - 1 - warm)
        return (s + 1) / warm if s < warm else floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    def px(s):
        return x0 + 0.1 + s / (total - 1) * (x1 - x0 - 0.4)

    line(ax, [(px(s), y0 + 2 * lr(s)) for s in range(total)], color=KINDS["tensor"][1], linewidth=2)
    for level in (1, floor):
        line(ax, [(x0, y0 + 2 * level), (x1 - 0.3, y0 + 2 * level)], color=MUTED, linewidth=0.8, style=":")
    line(ax, [(px(warm), y0), (px(warm), y0 + 2)], color=MUTED, linewidth=0.8, style=":")
    text(ax, px(warm) + 0.15, y0 + 2.15, "peak learning rate", ha="left")
    text(ax, px(14), y0 + 2 * floor + 0.15, "floor: 10% of the peak (min_ratio=0.1)", ha="left")
    accent(ax, px(warm) + 0.1, y0 + 1.1, "warmup\n(linear)")
    accent(ax, px(55) + 0.2, y0 + 1.24, "cosine decay")
    note(ax, px(warm), y0 - 0.12, "warmup_steps", va="top", ha="center")
    note(ax, px(total - 1), y0 - 0.12, "total_steps", va="top", ha="center")
    note(ax, x1, 3.15, "a sketch; this chapter's run uses a constant 4e-4", ha="right", style="italic")


@diagram("ch05_data_parallel", size=(9.5, 4.6))
def data_parallel(ax):
    data(ax, 1.4, 4.0, 7.9, 0.42, "global batch of windows")
    for r in range(4):
        x = 1.4 + r * 2.0
        arrow(ax, (x + 0.925, 4.0), (x + 0.925, 3.62), color=MUTED, linewidth=0.9)
        steps = [("data", f"rank {r}: share {r}", 1.85, 0.42),
                 ("operation", "forward + backward\n(same weights)", 1.85, 0.57),
                 ("tensor", f"gradients g{r}", 1.85, 0.42)]
        chain(ax, x + 0.925, 3.62, steps, gap=0.28)
        arrow(ax, (x + 0.925, 1.65), (x + 0.925, 1.47), color=MUTED, linewidth=0.9)
        arrow(ax, (x + 0.925, 1.0), (x + 0.925, 0.77), color=MUTED, linewidth=0.9)
        operation(ax, x, 0.2, 1.85, 0.57, "optimizer.step()\nthe same step")
    box(ax, 1.4, 1.0, 7.85, 0.47, "all-reduce: every rank receives the average (g0 + g1 + g2 + g3) / 4",
        kind="highlight")
    for y, words in ((3.41, "its own data"), (2.63, "a full model\ncopy each"), (0.48, "weights stay\nidentical")):
        note(ax, 0.1, y, words)
    accent(ax, 0.1, 1.23, "communicate")


@diagram("ch05_checkpoint_contents", size=(9.5, 4.2))
def checkpoint_contents(ax):
    box(ax, 0.15, 0.85, 5.3, 3.0, kind="plain")
    subtitled(ax, 0.3, 3.6, "ch05_verdict_checkpoint.pth",
              "torch.save: one pickle, ≈ 3 × the weights (1.95 GB at full size)")
    entries = [("data", "config: a plain dict (GPTConfig's fields)", 0.45),
               ("parameter", "model_state_dict: every weight by name\n162M float32 numbers ≈ 650 MB", 0.5),
               ("tensor", "optimizer_state_dict: AdamW's 2 averages\nper weight + step count ≈ 1.3 GB", 0.5),
               ("data", "history: steps, tokens seen, losses, samples", 0.4)]
    y = 3.1
    for kind, label, h in entries:
        y -= h
        box(ax, 0.35, y, 4.9, h, label, kind=kind)
        y -= 0.1
    accent(ax, 2.8, 0.55, "to resume training: all four", ha="center")
    box(ax, 5.75, 2.9, 3.6, 0.95, kind="plain")
    title(ax, 5.9, 3.6, "ch05_verdict_model.safetensors")
    parameter(ax, 5.9, 3.0, 3.3, 0.45, "weights only ≈ 650 MB")
    accent(ax, 7.55, 2.65, "to use or share the model", ha="center")
    operation(ax, 5.75, 1.55, 3.6, 0.55, "torch.load(path, weights_only=True)")
    box(ax, 5.75, 0.35, 3.6, 0.85, "rebuilds only tensors, dicts, lists,\nnumbers, strings; anything else:\n"
        "UnpicklingError", kind="highlight")
    arrow(ax, (5.45, 1.82), (5.75, 1.82))
    arrow(ax, (7.55, 1.55), (7.55, 1.2))
    accent(ax, 0.15, 0.2, "weights_only=False would run any code the file names: never for files from elsewhere")


@diagram("ch05_gpt2_weight_mapping", size=(9.85, 7.9))
def gpt2_weight_mapping(ax):
    lx, lw, rx, rw, h = 0.45, 3.0, 6.1, 3.55, 0.36  # left and right columns, box height
    mid = (lx + lw + rx) / 2  # where the arrow labels go
    block = "trf_blocks.{i}."
    title(ax, lx + lw / 2, 7.65, "OpenAI's GPT-2 checkpoint (124M)", ha="center")
    title(ax, mid, 7.65, "what the loader does", ha="center")
    title(ax, rx + rw / 2, 7.65, "our GPTModel (qkv_bias=True)", ha="center")
    norm = ("weight, bias (768,)", "scale, shift (768,)", "rename")
    rows = [  # (y offset below row 0, GPT-2's name and shape, ours, what the loader does)
        (0, "wte", "(50257, 768)", "tok_emb", "(50257, 768)", "rename"),
        (1, "wpe", "(1024, 768)", "pos_emb", "(1024, 768)", "rename"),
        (2.8, "h.{i}.ln_1", norm[0], block + "norm1", *norm[1:]),
        (6.8, "h.{i}.attn.c_proj", "(768, 768)", block + "att.out_proj", "(768, 768)", "transpose"),
        (7.8, "h.{i}.ln_2", norm[0], block + "norm2", *norm[1:]),
        (8.8, "h.{i}.mlp.c_fc", "(768, 3072)", block + "ff.layers.0", "(3072, 768)", "transpose"),
        (9.8, "h.{i}.mlp.c_proj", "(3072, 768)", block + "ff.layers.2", "(768, 3072)", "transpose"),
        (11.3, "ln_f", norm[0], "final_norm", *norm[1:]),
    ]
    for offset, gpt2, gpt2_shape, ours, our_shape, how in rows:
        y = 7.15 - 0.5 * offset
        left_end, _ = name_box(ax, lx, y - h / 2, lw, h, gpt2, gpt2_shape)
        name_box(ax, rx, y - h / 2, rw, h, ours, our_shape)
        arrow(ax, (left_end, y), (rx, y))
        note(ax, mid, y + 0.1, how, va="bottom", ha="center")
    # c_attn: one matrix, three projections side by side; split along the columns, each third transposed
    ys = [7.15 - 0.5 * k for k in (3.8, 4.8, 5.8)]
    left_end, _ = name_box(ax, lx, ys[1] - h / 2, lw, h, "h.{i}.attn.c_attn", "(768, 2304)", "highlight")
    bus = left_end + 1.2
    line(ax, [(left_end, ys[1]), (bus, ys[1])])
    line(ax, [(bus, ys[2]), (bus, ys[0])])
    for y, name, columns in zip(ys, ("W_query", "W_key", "W_value"), ("columns 0–767", "768–1535", "1536–2303")):
        name_box(ax, rx, y - h / 2, rw, h, f"{block}att.{name}", "(768, 768)", "highlight")
        arrow(ax, (bus, y), (rx, y))
        mono(ax, (bus + rx) / 2, y + 0.07, columns, va="bottom", ha="center")
    title(ax, (left_end + bus) / 2 - 0.05, ys[1] + 0.09, "split in 3\n+ transpose", ha="center", color=ACCENT,
          va="bottom")
    block_top, block_bottom = 7.15 - 0.5 * 2.8 + h / 2 + 0.34, 7.15 - 0.5 * 9.8 - h / 2 - 0.12
    frame(ax, 0.33, block_bottom, 9.44, block_top - block_bottom)
    note(ax, 0.45, block_top - 0.14, "one transformer block: the same for every i = 0 … 11")
    # GPT-2 has no head of its own: the logits reuse wte, so out_head gets a copy of it
    y_head = 7.15 - 0.5 * 12.3
    name_box(ax, rx, y_head - h / 2, rw, h, "out_head", "(50257, 768)")
    path_arrow(ax, [(lx, 7.15), (0.18, 7.15), (0.18, y_head), (rx - 0.3, y_head), (rx, y_head)])
    note(ax, mid, y_head + 0.1, "copy (tied)", va="bottom", ha="center")
    note(ax, lx, y_head + 0.1, "no output head in the file: logits reuse wte", va="bottom", style="italic")
    for y, words in ((0.56, "transpose: GPT-2's Conv1D stores a weight as (in, out) and computes x @ W; nn.Linear "
                            "stores (out, in) and computes x @ W.T."),
                     (0.34, "Shapes are the weights'. Every bias is copied as it is; c_attn's (2304,) is split in 3 "
                            "like its weight."),
                     (0.12, "attn.c_proj is square: a missing transpose still fits.")):
        note(ax, 0.18, y, words)


@diagram("ch05_static_kv_cache", size=(9.8, 5.75))
def static_kv_cache(ax):
    c, prompt, max_len = 0.42, 4, 8  # cell size, prompt length, slots of the static cache
    lx, rx = 1.05, 5.85  # where each panel's tensors start
    line(ax, [(5.0, 0.6), (5.0, 5.6)], color=MUTED, linewidth=0.8, style=":")
    subtitled(ax, 0.15, 5.52, "chapter 4's KVCache: append with torch.cat",
              "one layer's keys after each step (values alike)", gap=0.2, va="top")
    subtitled(ax, 5.2, 5.52, "StaticKVCache: one tensor, written in place", f"one layer's keys, (1, 12, {max_len}, "
              f"64), allocated once:\nmax_len = {max_len} slots here (context_length by default)", gap=0.2, va="top")
    for j in range(max_len):
        mono(ax, rx + (j + 0.5) * c, 4.7, str(j), ha="center", va="bottom")
    note(ax, rx - 0.1, 4.77, "slot", ha="right")
    for step, y in enumerate((4.2, 3.0, 1.8), start=1):
        new = prompt + step - 1  # the position decoded in this step (0-based)
        keys = [f"k{j}" for j in range(new + 1)]
        kinds = ["tensor"] * new + ["highlight"]
        row(ax, lx, y, keys, w=c, h=c, kinds=kinds, rounded=False, name=f"step {step}")  # a new tensor, keys copied in
        mono(ax, lx, y - 0.07, f"(1, 12, {new + 1}, 64): a new tensor", va="top")
        if step > 1:
            arrow(ax, (lx + 0.35, y + c + 0.5), (lx + 0.35, y + c + 0.05), color=MUTED, linewidth=1.0)
            note(ax, lx + 0.47, y + c + 0.27, f"torch.cat: copy k0..k{new - 1}, add k{new}")
        row(ax, rx, y, keys, w=c, h=c, kinds=kinds, rounded=False)  # the same slots; later ones hidden
        row(ax, rx + (new + 1) * c, y, [""] * (max_len - new - 1), w=c, h=c, kind="masked", hatch="////")
        target = rx + (new + 0.5) * c
        mono(ax, rx, y - 0.3, f"position = tensor({new})", color=INK)
        path_arrow(ax, [(rx + 1.72, y - 0.3), (target, y - 0.3), (target, y - 0.02)], linewidth=1.0)
        if step == 1:
            brace(ax, rx + (new + 1) * c + 0.03, rx + max_len * c - 0.03, y - 0.08, "masked: the future")
    accent(ax, 0.15, 1.05, "torch.cat: new tensor every step, shape changes")
    accent(ax, 5.2, 1.05, "written in place; same shape every step\n→ compiled once, replayed as a CUDA graph")
    legend_items = [(0.15, "highlight", None, "this step's new key"), (2.2, "tensor", None, "keys of earlier steps"),
                    (4.4, "masked", "////", "a slot after position: not attended to")]
    for x, kind, hatch, words in legend_items:
        box(ax, x, 0.18, 0.24, 0.24, kind=kind, hatch=hatch, rounded=False)
        text(ax, x + 0.32, 0.3, words, ha="left")
    note(ax, 9.7, 0.3, "GPT-2 small: 12 heads of 64", ha="right")


@diagram("ch05_hf_name_map")
def hf_name_map():
    from shared.open_weights import BLOCK_NAMES, TOP_NAMES  # the loader's own table, so the picture cannot drift

    block = [(hub, ours) for ours, hub in BLOCK_NAMES.items() if not ours.endswith(".bias")]
    top = [(hub, ours) for ours, hub in TOP_NAMES.items()]
    height, pitch = 1.75 + 0.36 * (len(block) + len(top)), 0.36
    fig, ax = canvas(10.0, height)
    title(ax, 4.55, height - 0.3, "Hugging Face (Llama 3, Qwen3)", ha="right", fontsize=11)
    title(ax, 5.45, height - 0.3, "our GPTModel", fontsize=11)
    note(ax, 0.15, height - 1.36, "every block i:")
    mono(ax, 0.15, height - 1.72, "model.layers.{i}.")
    mono(ax, 0.15, height - 2.08, "→ trf_blocks.{i}.")
    pairs = [(height - 0.75, *top[0])]
    pairs += [(height - 1.36 - k * pitch, hub, ours) for k, (hub, ours) in enumerate(block)]
    pairs += [(height - 1.61 - (len(block) + k) * pitch, hub, ours) for k, (hub, ours) in enumerate(top[1:])]
    for y, hub, ours in pairs:
        mono(ax, 4.55, y, hub, ha="right", color=INK)
        arrow(ax, (4.65, y), (5.35, y))
        mono(ax, 5.45, y, ours, color=INK)
        if ours.startswith("att.") and "norm" in ours:
            accent(ax, 9.85, y, "Qwen3 only (QK-norm)", ha="right")
        if ours.startswith("out_head"):
            accent(ax, 9.85, y, "none if tied to tok_emb", ha="right")
    frame(ax, 0.08, height - 1.36 - len(block) * pitch + pitch / 2 - 0.05, 9.84, len(block) * pitch + 0.1)
    note(ax, 0.15, 0.25, "renamed only: the Hub stores nn.Linear weights as (out, in) too, so nothing is transposed")
    return fig


# The first tokens of a line of the play, with their GPT-2 ids (tiktoken's "gpt2" encoding gives exactly these).
SHAKESPEARE_PIECES = [("ROM", 33676), ("EO", 4720), (":", 25), ("\\n", 198), ("But", 1537), (" soft", 2705),
                      (",", 11), (" what", 644)]  # "\\n": the newline token, written visibly


@diagram("ch05_compact_vocabulary", size=(10.0, 5.0))
def compact_vocabulary(ax):
    from shared.text import CompactVocabulary

    pieces, gpt2 = zip(*SHAKESPEARE_PIECES)
    vocab = CompactVocabulary(gpt2, tokenizer=object())  # only the renumbering is drawn: no tokenizer needed
    x0, w, h = 2.3, 0.92, 0.44
    title(ax, 0.15, 4.7, "A toy corpus: the first 8 tokens of a line of the play", fontsize=11)
    rows = [(3.85, "tokens", "GPT-2's tokenizer", [f"'{p}'" for p in pieces], "data"),
            (3.0, "GPT-2 ids", "0 .. 50,256", gpt2, "data"),
            (1.85, "compact ids", f"0 .. K-1 (K = {vocab.n_vocab})", [vocab.compact_ids[i] for i in gpt2], "tensor"),
            (0.75, "gpt2_ids", "sorted(set(ids))", vocab.gpt2_ids, "parameter")]
    for y, label, what, cells, kind in rows:
        subtitled(ax, 0.15, y + h / 2 + 0.1, label, what, family=MONO)
        row(ax, x0, y, cells, w=w, h=h, kind=kind, family=MONO)
    for c in (0, 7):
        arrow(ax, (x0 + (c + 0.5) * w, 3.0), (x0 + (c + 0.5) * w, 1.85 + h))
    mono(ax, x0 + 4 * w, 2.6, "encode: compact_ids[gpt2_id]", ha="center", color=ACCENT)
    for i in range(vocab.n_vocab):
        mono(ax, x0 + (i + 0.5) * w, 0.75 + h + 0.17, f"[{i}]", ha="center")
    mono(ax, x0 + 8 * w - 0.05, 1.55, "decode: gpt2_ids[compact_id]", ha="right", color=ACCENT)
    note(ax, 0.15, 0.3, "On all of Tiny Shakespeare, K = 11,706 of GPT-2's 50,257 ids: the embedding table and the "
         "output head keep only those rows.")
