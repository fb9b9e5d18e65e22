"""Diagrams for chapter 04: sizes from GPTConfig's defaults (GPT-2 small), curves and counts from the model's code."""

import math

import torch

from shared.blocks import LayerNorm, RMSNorm, RotaryEmbedding, SwiGLUFeedForward
from shared.model import GELU, FeedForward, GPTConfig

from . import diagram
from .primitives import (
    ACCENT, FONT, INK, KINDS, MUTED, accent, angle_arc, arrow, box, brace, chain, data, dial, flow, frame, grid, legend,
    line, mono, node, note, operation, parameter, path_arrow, plot_area, polar_arrow, row, side_brace, stack, subtitled,
    tensor, text, title,
)

GPT2 = GPTConfig()  # GPT-2 small (124M), the chapter's defaults
VOCAB, CONTEXT, EMB, LAYERS, HEADS = GPT2.vocab_size, GPT2.context_length, GPT2.emb_dim, GPT2.n_layers, GPT2.n_heads
TENSOR_EDGE, OPERATION_EDGE = KINDS["tensor"][1], KINDS["operation"][1]


def parameter_count(module, trainable=False):
    """How many numbers `module` learns; with `trainable`, only those not frozen (requires_grad)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable)


@diagram("ch04_gpt_architecture", size=(9.0, 8.3))
def gpt_architecture(ax):
    cx, shape_x = 3.2, 5.05  # the main column, and where the shapes are written
    note(ax, 0.15, 7.95, '"Every effort moves you"', style="italic")
    subtitled(ax, 0.15, 7.5, "token ids", "(batch, tokens)", gap=0.26, under=mono)
    ids = row(ax, 1.45, 7.28, [6109, 3626, 6100, 345], w=0.62, h=0.42)
    title(ax, 4.15, 7.5, "positions")
    positions = row(ax, 5.15, 7.28, range(4), w=0.42, h=0.42)
    tables = [(1.0, ids[1][0] + 0.3, f"token embedding\n{VOCAB:,} × {EMB}", "look up a row per id", "left"),
              (4.45, positions[1][0] + 0.2, f"position embedding\n{CONTEXT:,} × {EMB}", "a row per position", "right")]
    for x, source, label, how, side in tables:
        table = parameter(ax, x, 5.95, 2.5, 0.66, label)
        arrow(ax, (source, 7.28), (table[0], 6.61), label=how, label_side=side)
        arrow(ax, (table[0], 5.95), (cx + math.copysign(0.15, table[0] - cx), 5.22))
    node(ax, cx, 5.15)
    embeddings, dropout = chain(ax, cx, 4.98, [("tensor", "embeddings"), ("operation", f"dropout ({GPT2.drop_rate})")],
                          gap=0.25, arrow_in=True)
    mono(ax, shape_x, embeddings[1], f"(batch, tokens, {EMB})")
    stack(ax, cx - 1.65, 2.35, 3.3, 0.85)
    title(ax, cx, 2.95, f"transformer block × {LAYERS}", ha="center", fontsize=11)
    text(ax, cx, 2.58, "norm → attention → + shortcut\nnorm → feed-forward → + shortcut")
    arrow(ax, (cx, dropout[1] - 0.21), (cx, 3.34))
    mono(ax, shape_x, 2.78, f"(batch, tokens, {EMB})\nin and out of every block")
    logits = chain(ax, cx, 2.35, [("operation", "final LayerNorm"),
                                  ("operation", f"output head: linear {EMB} → {VOCAB:,}", 2.9),
                                  ("tensor", "logits")], gap=0.3, arrow_in=True)[-1]
    mono(ax, shape_x, logits[1] + 0.1, f"(batch, tokens, {VOCAB:,})")
    accent(ax, shape_x, logits[1] - 0.17, "a score for every vocabulary entry, at every position")
    frame(ax, 7.02, 3.75, 1.88, 2.65, style="-")  # wide enough for the longest name beside its value
    title(ax, 7.96, 6.13, "GPT-2 small (124M)", ha="center")
    for i, name in enumerate(["vocab_size", "context_length", "emb_dim", "n_layers", "n_heads", "drop_rate"]):
        mono(ax, 7.1, 5.75 - i * 0.34, name, color=INK)
        mono(ax, 8.8, 5.75 - i * 0.34, f"{getattr(GPT2, name):,}", ha="right", color=INK)


@diagram("ch04_layer_norm", size=(9.3, 5.1))
def layer_norm(ax):
    before = torch.tensor([[0.2260, 0.3470, 0.0000, 0.2216, 0.0000, 0.0000],
                           [0.2133, 0.2394, 0.0000, 0.5198, 0.3297, 0.0000]])  # the notebook's layer outputs
    after = LayerNorm(6, eps=0.0)(before).detach()
    x0, w, h = 1.55, 0.68, 0.4
    right = x0 + 6 * w
    text(ax, 0.1, 4.9, "Each row is one vector (in GPT-2: one token's 768 features).", ha="left")
    for top, name, values, color, digits in ((4.25, "outputs", before, MUTED, 3),
                                             (2.55, "normalised", after, ACCENT, 2)):
        title(ax, 0.1, top - h, name)
        grid(ax, x0, top, [[f"{v:.2f}" for v in line_] for line_ in values], w=w, h=h, kind="tensor", family=FONT)
        statistics = ((0.55, "mean", [f"{m:.2f}".replace("-0.00", "0.00") for m in values.mean(dim=1)]),
                      (1.35, "variance", [f"{v:.{digits}f}" for v in values.var(dim=1, unbiased=False)]))
        for dx, statistic, cells in statistics:
            note(ax, right + dx, top + 0.15, statistic, ha="center")
            for i, cell in enumerate(cells):
                mono(ax, right + dx, top - (i + 0.5) * h, cell, ha="center", color=color)
    brace(ax, x0, right, 4.3, "statistics over a row: features 1..6", below=False)
    arrow(ax, (x0 + 3 * w, 4.25 - 2 * h - 0.05), (x0 + 3 * w, 2.6),
          label="per row: subtract the mean, divide by √(variance + eps)")
    for y, name, start in ((0.95 - h, "× scale", "1"), (0.91 - 2 * h, "+ shift", "0")):  # learned, from 1 and 0
        title(ax, 0.1, y + h / 2 + 0.02, name)
        row(ax, x0, y, [start] * 6, w=w, h=h, kind="parameter")
    arrow(ax, (x0 + 3 * w, 2.55 - 2 * h - 0.05), (x0 + 3 * w, 1.0),
          label="per feature (column): multiply by scale, add shift")
    note(ax, right + 0.2, 0.53, "learned, one number per feature,\nstarting at 1 and 0: the network can\n"
         "undo the normalisation where it helps")


@diagram("ch04_gelu_relu", size=(8.8, 3.7))
def gelu_relu(ax):
    plot = plot_area(ax.figure, 0.55, 0.5, 4.3, 2.95)
    xs = torch.linspace(-3, 3, 241)
    ys = GELU()(xs)
    plot.plot(xs, xs.clamp(min=0), color=OPERATION_EDGE, linewidth=2, linestyle="--", label="ReLU = max(0, x)")
    plot.plot(xs, ys, color=TENSOR_EDGE, linewidth=2, label="GELU = x · Φ(x)")
    lowest = ys.argmin()
    plot.plot(xs[lowest], ys[lowest], "o", color=ACCENT, markersize=5)
    plot.annotate(f"minimum ≈ {ys[lowest]:.2f}\nat x ≈ {xs[lowest]:.2f}", (xs[lowest], ys[lowest]), xytext=(-2.95, 0.9),
                  fontsize=10, color=ACCENT, arrowprops={"arrowstyle": "-", "color": ACCENT, "linewidth": 0.8})
    plot.axhline(0, color=MUTED, linewidth=0.6)
    plot.axvline(0, color=MUTED, linewidth=0.6)
    plot.set(xlim=(-3, 3), ylim=(-0.6, 3.05))
    plot.set_xlabel("x", fontsize=10, color=MUTED)
    plot.legend(loc="upper left", fontsize=10, frameon=False)
    subtitled(ax, 5.25, 3.2, "ReLU", "cuts every negative input to 0, with a\nsharp corner at 0: for x < 0 its "
              "gradient\nis exactly 0, so nothing flows back", gap=0.2, under=text, va="top", color=OPERATION_EDGE)
    subtitled(ax, 5.25, 2.05, "GELU (GPT-2)", "smooth everywhere; small negative inputs\ngive small negative outputs, "
              "so they still\nget a gradient; far from 0 it matches ReLU", gap=0.2, under=text, va="top",
              color=TENSOR_EDGE)
    note(ax, 5.25, 0.5, "Φ is the standard normal CDF; GPT-2 uses\na tanh approximation of it")


@diagram("ch04_feed_forward", size=(9.0, 4.5))
def feed_forward(ax):
    cy, inches_per_feature, x, gap = 1.95, 2.5 / 3072, 0.45, 0.4
    hidden = 4 * EMB
    steps = [(EMB, "one position"), (f"linear\n{EMB} → {hidden:,}", "weights + bias"), (hidden, "expanded 4×"),
             ("GELU", "no weights"), (hidden, ""), (f"linear\n{hidden:,} → {EMB}", "weights + bias"),
             (EMB, "same shape")]
    for k, (what, words) in enumerate(steps):
        if k:
            arrow(ax, (x - gap + 0.04, cy), (x - 0.04, cy))
        if isinstance(what, int):  # a vector, as a bar as tall as its width in features
            height = what * inches_per_feature
            tensor(ax, x, cy - height / 2, 0.5, height)
            mono(ax, x + 0.25, cy - height / 2 - 0.12, f"{what:,}", ha="center", color=INK, va="top")
            note(ax, x + 0.25, cy + height / 2 + 0.14, words, ha="center", va="bottom")
            x, gap = x + 0.9, 0.4
        else:
            width = 1.0 if what == "GELU" else 1.35
            operation(ax, x, cy - 0.4, width, 0.8, what)
            note(ax, x + width / 2, cy - 0.55, words, ha="center", va="top")
            x, gap = x + width + 0.35, 0.35
    text(ax, 0.3, 4.22, "The same block, with the same weights, runs on every position on its own:", ha="left")
    mono(ax, 0.3, 3.9, f"(batch, tokens, {EMB}) → (batch, tokens, {hidden:,}) → (batch, tokens, {EMB})",
         color=INK)
    count = parameter_count(FeedForward(GPT2))
    mono(ax, 0.3, 0.25, f"parameters: {EMB}·{hidden:,} + {hidden:,} + {hidden:,}·{EMB} + {EMB} = {count:,}")


@diagram("ch04_shortcuts", size=(9.2, 5.6))
def shortcuts(ax):
    for cx, heading, bypass in ((2.85, "without shortcuts", False), (6.95, "with shortcuts: x + layer(x)", True)):
        title(ax, cx, 5.35, heading, ha="center", fontsize=11)
        data(ax, cx - 0.6, 0.2, 1.2, 0.4, "input x")
        box(ax, cx - 0.6, 4.55, 1.2, 0.4, "loss", kind="highlight")
        below = 0.6  # the top of whatever sits under the next layer
        for i, y in enumerate((1.05, 2.25, 3.45)):
            operation(ax, cx - 0.75, y, 1.5, 0.45, f"layer {i + 1}")
            arrow(ax, (cx, below), (cx, y))
            split, below = (below + y) / 2, y + 0.45
            if bypass:
                plus = y + 0.83
                node(ax, cx, plus)
                arrow(ax, (cx, below), (cx, plus - 0.17))
                path_arrow(ax, [(cx, split), (cx - 1.05, split), (cx - 1.05, plus), (cx - 0.17, plus)])
                below = plus + 0.17
        arrow(ax, (cx, below), (cx, 4.55))
    stops = (4.55, 3.2, 2.0, 0.8, 0.25)
    for i, width in enumerate((4.0, 2.4, 1.3, 0.6)):  # the gradient on its way back thins layer by layer
        arrow(ax, (1.65, stops[i]), (1.65, stops[i + 1] + 0.05), color=ACCENT, linewidth=width)
    arrow(ax, (5.6, 4.55), (5.6, 0.3), color=ACCENT, linewidth=3.0)
    for x, middle in ((1.45, "× one factor\nper layer:\nit shrinks"),
                      (5.4, "every + passes\nit on unchanged\n(× 1) along\nthe bypass")):
        accent(ax, x, 4.15, "gradient", ha="right", weight="bold")
        accent(ax, x, 2.6, middle, ha="right")
    accent(ax, 1.45, 0.45, "first layer:\nalmost\nnothing", ha="right")
    accent(ax, 7.75, 0.45, "early layers get\ngradients of the\nsame order as\nlate ones")


@diagram("ch04_transformer_block", size=(8.0, 8.7))
def transformer_block(ax):
    cx, shortcut_x, w = 3.2, 1.05, 2.9
    tensor(ax, cx - 1.0, 8.1, 2.0, 0.45, "x (input)")
    mono(ax, cx + 1.2, 8.32, f"(batch, tokens, {EMB})")
    top = 8.1
    halves = [("LayerNorm 1", "masked multi-head attention", 1.25, "tokens exchange\ninformation",
               f"{HEADS} heads × {EMB // HEADS} dimensions;\neach position looks at itself\nand earlier positions"),
              ("LayerNorm 2", "feed-forward", 0.85, "each token is\nprocessed on its own",
               f"{EMB} → {4 * EMB:,} → GELU → {EMB}")]
    for norm_label, body_label, body_h, role, body_note in halves:
        norm, body, dropout = chain(ax, cx, top - 0.53, [("operation", norm_label, w, 0.42),
                                                         ("operation", "", w, body_h),
                                                         ("operation", "dropout", w - 1.1, 0.38)], gap=0.3)
        arrow(ax, (cx, top), (cx, top - 0.53))
        title(ax, cx, body[1] + body_h / 2 - 0.28, body_label, ha="center", fontsize=11)
        text(ax, cx, body[1] + body_h / 2 - 0.62, body_note, va="top")
        plus = dropout[1] - 0.64
        node(ax, cx, plus)
        arrow(ax, (cx, dropout[1] - 0.19), (cx, plus + 0.17))
        path_arrow(ax, [(cx, top - 0.25), (shortcut_x, top - 0.25), (shortcut_x, plus), (cx - 0.17, plus)])
        note(ax, shortcut_x - 0.12, (top - 0.25 + plus) / 2, "shortcut", ha="right", rotation=90)
        side_brace(ax, cx + w / 2 + 0.35, plus - 0.2, norm[1] + 0.29, role)
        top = plus - 0.17
    tensor(ax, cx - 1.0, 0.15, 2.0, 0.45, "output")
    arrow(ax, (cx, top), (cx, 0.6))
    mono(ax, cx + 1.2, 0.37, f"(batch, tokens, {EMB}): the same shape,\nso {LAYERS} blocks can be stacked")


@diagram("ch04_pre_post_norm", size=(9.2, 7.0))
def pre_post_norm(ax):
    on_path = {"color": ACCENT, "linewidth": 2.4}  # the shortcut path from input to output
    for cx, pre, heading, formula, verdict in (
            (2.4, False, "post-norm (the 2017 transformer)", "x = norm(x + sublayer(x))",
             "the shortcut path runs through every norm:\ndeep stacks need a careful warm-up"),
            (7.0, True, "pre-norm (GPT-2 and since)", "x = x + sublayer(norm(x))",
             "the shortcut path holds only additions;\none final norm fixes the scale")):
        title(ax, cx - 0.3, 6.75, heading, ha="center", fontsize=11)
        mono(ax, cx - 0.3, 6.45, formula, ha="center", color=INK)
        accent(ax, cx - 0.3, 0.6, verdict, ha="center", va="top")
        tensor(ax, cx - 0.8, 5.85, 1.6, 0.4, "x")
        y = 5.85  # the bottom of the last thing drawn on the stream
        for name in ("attention", "feed-forward"):
            split = y - 0.2
            plus = split - (1.45 if pre else 0.9)
            path_arrow(ax, [(cx, y), (cx, split), (cx - 1.45, split), (cx - 1.45, plus), (cx - 0.17, plus)], **on_path)
            branch = [("operation", "norm"), ("operation", name)] if pre else [("operation", name)]
            branch = chain(ax, cx, split, branch, h=0.4, gap=0.125, arrow_in=True)
            arrow(ax, (cx, branch[-1][1] - 0.2), (cx, plus + 0.17))
            node(ax, cx, plus)
            y = plus - 0.17
            if not pre:  # post-norm: the norm sits on the shortcut path itself
                box(ax, cx - 1.0, y - 0.55, 2.0, 0.4, "norm", kind="highlight")
                arrow(ax, (cx, y), (cx, y - 0.15), **on_path)
                y -= 0.55
        if pre:
            box(ax, cx - 1.0, y - 0.6, 2.0, 0.4, "final norm", kind="operation")
            arrow(ax, (cx, y), (cx, y - 0.2), **on_path)
            y -= 0.6
        box(ax, cx - 1.0, 0.85, 2.0, 0.4, "output head", kind="operation")
        arrow(ax, (cx, y), (cx, 1.25), **on_path)
    note(ax, 2.52, 1.73, "no final norm: the last\nblock already ends with one")
    line(ax, [(4.7, 0.2), (4.7, 6.6)], color=MUTED, linewidth=0.8, style=":")


@diagram("ch04_greedy_generation", size=(9.7, 4.3))
def greedy_generation(ax):
    prompt, chosen, w = [15496, 11, 314, 716], 27018, 0.72
    title(ax, 0.3, 3.95, 'ids so far ("Hello, I am")')
    row(ax, 0.3, 3.1, prompt, w=w)
    mono(ax, 0.3 + 2 * w, 2.98, "(1, 4)", ha="center", va="top")
    operation(ax, 3.7, 2.95, 1.6, 0.75, "GPT model", fontsize=11)
    note(ax, 4.5, 2.82, f"sees at most the\nlast {CONTEXT:,} ids", ha="center", va="top")
    arrow(ax, (0.3 + 4 * w + 0.05, 3.32), (3.65, 3.32))
    gx, gy, cell = 5.7, 3.75, 0.24  # logits: a few positions by a few vocabulary entries, the last row highlighted
    grid(ax, gx, gy, [[""] * 7] * 4, w=cell, kinds=[["tensor"] * 7] * 3 + [["highlight"] * 7])
    title(ax, gx + 3.5 * cell, 3.95, "logits", ha="center")
    mono(ax, gx + 7 * cell + 0.12, gy - 0.5 * cell, "one row per position")
    mono(ax, gx + 7 * cell + 0.12, gy - 2 * cell, f"(1, 4, {VOCAB:,})", color=INK)
    mono(ax, gx + 7 * cell + 0.12, gy - 3.5 * cell, "← last row: next token", color=ACCENT)
    arrow(ax, (5.35, 3.32), (gx - 0.05, 3.32))
    operation(ax, gx, 1.35, 7 * cell, 0.5, "argmax")
    arrow(ax, (gx + 3.5 * cell, gy - 4 * cell - 0.02), (gx + 3.5 * cell, 1.9),
          label=f"take the last row:\n(1, {VOCAB:,})")
    box(ax, 3.95, 1.37, 1.1, 0.46, str(chosen), kind="highlight")
    arrow(ax, (gx - 0.05, 1.6), (5.1, 1.6))
    note(ax, 4.5, 1.2, "the id with the top score", ha="center", va="top")
    title(ax, 0.3, 1.05, "append → ids for the next step")
    appended = row(ax, 0.3, 0.25, [*prompt, chosen], w=w, kinds=["data"] * 4 + ["highlight"])
    arrow(ax, (3.9, 1.6), (appended[4][0], 0.75), curve=0.25)
    arrow(ax, (0.2, 0.48), (0.2, 3.3), color=MUTED)
    note(ax, 0.1, 2.2, "repeat", ha="center", rotation=90)


@diagram("ch04_kv_cache", size=(9.4, 6.3))
def kv_cache(ax):
    c, tokens_x, computed_x, cache_x = 0.42, 1.55, 3.75, 6.45  # cell size, then the three columns
    for x, heading in ((tokens_x + 0.6, "fed to the model"), (computed_x + 0.6, "computed this step"),
                       (cache_x + 1.05, "the layer's cache after the step")):
        title(ax, x, 6.05, heading, ha="center")
    steps = [(5.05, "the prompt", [1, 2, 3], "q1..q3 attend with the causal mask\n(each to itself and earlier "
              "positions)"), (3.2, "one new token", [4], "q4 attends to k1..k4 and v1..v4"),
             (1.4, "one new token", [5], "q5 attends to k1..k5 and v1..v5")]
    for k, (y, subtitle, fed, attends) in enumerate(steps):
        cached = list(range(1, fed[0]))
        subtitled(ax, 0.15, y + 0.2, f"step {k + 1}", subtitle, gap=0.3)
        row(ax, tokens_x, y - c / 2, [f"t{p}" for p in fed], w=c + 0.06, h=c)
        arrow(ax, (tokens_x + len(fed) * (c + 0.06) + 0.08, y), (computed_x - 0.1, y))
        grid(ax, computed_x, y + 1.5 * c, [[f"{name}{p}" for p in fed] for name in "qkv"], w=c, kind="highlight",
             family=FONT)
        every = cached + fed
        kinds = ["tensor" if p in cached else "highlight" for p in every]
        right, target = computed_x + len(fed) * c, cache_x + (len(cached) + len(fed) / 2) * c
        for name, cache_y, source_y, bend, edge in (("k", y + 0.12, y, 0.35, y + c + 0.24),
                                                     ("v", y - 0.42, y - c, 0.55, y - 0.54)):
            title(ax, cache_x - 0.2, cache_y + c / 2, name.upper(), ha="center")
            row(ax, cache_x, cache_y, [f"{name}{p}" for p in every], w=c, h=c, kinds=kinds, rounded=False)
            into = cache_y + (c + 0.01 if name == "k" else -0.01)
            path_arrow(ax, [(right, source_y), (right + bend, source_y), (right + bend, edge), (target, edge),
                            (target, into)], color=MUTED, linewidth=1.0)
        note(ax, right + 0.45, y + 0.33, "append\nk and v")
        accent(ax, cache_x, y - 0.64, attends, va="top")
    legend(ax, 0.15, 0.14, [("highlight", "computed in this step"), ("tensor", "read from the cache")], size=0.3)
    note(ax, 4.35, 0.29, f"each of the {LAYERS} layers keeps its own K and V,\nof shape (batch, heads, positions, "
         "head_dim)")


@diagram("ch04_rmsnorm_vs_layernorm", size=(9.2, 4.9))
def rmsnorm_vs_layernorm(ax):
    xs, cw = torch.tensor([1.0, 2.0, 3.0, 6.0]), 0.62
    variance, rms = xs.var(unbiased=False), xs.pow(2).mean().sqrt()
    columns = [
        (2.3, "LayerNorm (GPT-2)", LayerNorm(4, eps=0.0),
         [("operation", f"subtract the mean ({xs.mean():g})"),
          ("operation", f"divide by √(variance + eps)  (√{variance:g})"), ("parameter", "× scale + shift")],
         "learned: scale and shift, 2 × emb_dim numbers", "mean 0, variance 1"),
        (6.9, "RMSNorm (Llama and most since)", RMSNorm(4, eps=0.0),
         [("masked", "no mean subtracted"), ("operation", f"divide by √(mean(x²) + eps)  ({rms:.2f})"),
          ("parameter", "× scale")], "learned: scale only, emb_dim numbers", None),
    ]
    for cx, heading, norm, steps, learned, stats in columns:
        out = norm(xs).detach()
        title(ax, cx, 4.65, heading, ha="center", fontsize=11)
        row(ax, cx - 2 * cw, 3.9, [f"{v:g}" for v in xs], w=cw, h=0.4, kind="tensor")
        chain(ax, cx, 3.9, steps, w=3.2, gap=0.18, arrow_in=True)
        arrow(ax, (cx, 3.9 - 3 * 0.6), (cx, 3.9 - 3 * 0.6 - 0.18))
        row(ax, cx - 2 * cw, 1.52, [f"{v:.2f}" for v in out], w=cw, h=0.4, kind="tensor")
        accent(ax, cx, 1.32, stats or f"root-mean-square 1, but mean {out.mean():.2f}", ha="center", va="top")
        note(ax, cx, 0.25, learned, ha="center")
    note(ax, 4.6, 0.62, "(outputs with scale 1 and shift 0, their starting values)", ha="center")
    line(ax, [(4.6, 0.85), (4.6, 4.75)], color=MUTED, linewidth=0.8, style=":")


@diagram("ch04_swiglu_vs_gelu", size=(9.2, 5.4))
def swiglu_vs_gelu(ax):
    hidden = SwiGLUFeedForward(GPT2).up.out_features
    title(ax, 2.1, 5.15, "feed-forward (GPT-2)", ha="center", fontsize=11)
    chain(ax, 2.1, 4.8, [("tensor", f"x ({EMB})", 1.4, 0.4), ("operation", f"linear {EMB} → {4 * EMB:,}"),
                         ("operation", "GELU"), ("operation", f"linear {4 * EMB:,} → {EMB}"),
                         ("tensor", f"out ({EMB})", 1.4, 0.4)], w=2.2, h=0.45, gap=0.45)
    note(ax, 2.1, 0.5, f"2 matrices + biases: {parameter_count(FeedForward(GPT2)):,} parameters", ha="center")
    cx, gate_x, up_x = 6.7, 5.55, 7.85
    title(ax, cx, 5.15, "SwiGLU (Llama and most since)", ha="center", fontsize=11)
    tensor(ax, cx - 0.7, 4.4, 1.4, 0.4, f"x ({EMB})")
    chain(ax, gate_x, 3.9, [("operation", f"gate: {EMB} → {hidden:,}"), ("operation", "SiLU: x · sigmoid(x)")],
          w=1.9, h=0.45, gap=0.45)
    operation(ax, up_x - 0.95, 3.45, 1.9, 0.45, f"up: {EMB} → {hidden:,}")
    arrow(ax, (cx - 0.2, 4.4), (gate_x, 3.9))
    arrow(ax, (cx + 0.2, 4.4), (up_x, 3.9))
    node(ax, cx, 2.25, "×")
    for x in (gate_x, up_x):
        path_arrow(ax, [(x, 3.45 if x == up_x else 2.55), (x, 2.25), (cx + math.copysign(0.17, x - cx), 2.25)])
    accent(ax, cx + 0.3, 2.1, "element-wise: the gate\nswitches features on/off", va="top")
    chain(ax, cx, 2.08, [("operation", f"down: {hidden:,} → {EMB}", 2.2, 0.45), ("tensor", f"out ({EMB})", 1.4)],
          h=0.4, gap=0.35, arrow_in=True)
    count = parameter_count(SwiGLUFeedForward(GPT2))
    note(ax, cx, 0.2, f"3 matrices, no biases: {count:,} parameters", ha="center")
    line(ax, [(4.35, 0.15), (4.35, 5.3)], color=MUTED, linewidth=0.8, style=":")


@diagram("ch04_rope_rotation", size=(9.4, 4.4))
def rope_rotation(ax):
    theta, q0, k0 = math.radians(20), math.radians(10), math.radians(-30)
    title(ax, 2.75, 4.05, "one feature pair of q and k, turned by position × θ", ha="center")
    for ox, m, n in ((1.35, 3, 1), (4.15, 6, 4)):
        origin, qa, ka = (ox, 1.45), q0 + m * theta, k0 + n * theta
        text(ax, ox, 3.6, f"query at {m}, key at {n}")
        line(ax, [(ox - 1.2, 1.45), (ox + 1.2, 1.45)], color="#dddddd", linewidth=0.8)
        line(ax, [(ox, 0.45), (ox, 3.3)], color="#dddddd", linewidth=0.8)
        for angle in (q0, k0):
            polar_arrow(ax, origin, angle, 1.05, dashed=True, linewidth=1.0)
        polar_arrow(ax, origin, qa, 1.5, f"q turned by {m}θ", color=TENSOR_EDGE)
        polar_arrow(ax, origin, ka, 1.5, f"k turned by {n}θ", color=OPERATION_EDGE)
        angle_arc(ax, origin, 0.55, ka, qa, "α")
    accent(ax, 2.75, 0.3, "the same angle α between q and k, so the same score:\nit depends only on the distance "
           "m - n = 2", ha="center")
    note(ax, 2.75, 0.9, "dashed: q and k before turning", ha="center")
    x0, dx, head_dim = 6.75, 0.42, 64  # dials: each feature pair turns at its own speed
    rope = RotaryEmbedding(head_dim, context_length=6)  # the model's own table of angles
    line(ax, [(5.95, 0.2), (5.95, 4.2)], color=MUTED, linewidth=0.8, style=":")
    title(ax, 7.75, 4.05, "each pair turns at its own speed", ha="center")
    note(ax, x0 + 2.5 * dx, 3.83, "position", ha="center")
    for p in range(6):
        note(ax, x0 + p * dx, 3.6, str(p), ha="center")
    for k, i in enumerate((0, 8, 31)):
        y, speed = 3.05 - k * 1.05, math.atan2(rope.sin[1, i], rope.cos[1, i])
        for p in range(6):
            dial(ax, x0 + p * dx, y, 0.16, rope.cos[p, i], rope.sin[p, i])
        rate = f"{speed:.2g} rad per position" if speed > 0.01 else f"{speed:.5f} rad"
        text(ax, x0 - 0.16, y - 0.35, f"pair i = {i}: {rate}", ha="left")
    note(ax, 7.75, 0.22, f"head_dim {head_dim}: θ_i = 10000^(-2i/{head_dim})", ha="center")


@diagram("ch04_position_methods", size=(9.5, 4.75))
def position_methods(ax):
    methods = [
        (1.6, "added: a learned table", "GPT-2", ("parameter", "row p of", f"{CONTEXT:,} × {EMB}"),
         f"learned in training:\n{CONTEXT * EMB:,} parameters;\nno row past position {CONTEXT - 1:,},\n"
         "so no longer inputs"),
        (4.75, "added: fixed sinusoids", "the 2017 transformer", ("tensor", "PE[p]", "sin/cos(p·θ_i)"),
         "computed, not learned: 0 parameters;\nevery position has a vector; moving\nk positions turns each pair by "
         "k·θ_i,\nthe same map at every p"),
        (7.9, "rotated: q and k (RoPE)", "Llama and most since", None,
         "0 parameters; position enters\nevery layer's scores, which depend\nonly on how far apart two tokens are"),
    ]
    for cx, heading, who, added, summary in methods:
        subtitled(ax, cx, 4.5, heading, who, gap=0.28, ha="center", fontsize=10.5)
        text(ax, cx, 1.2, summary, va="top")
        token_x = cx - (1.45 if added else 0.65)
        tensor(ax, token_x, 3.15, 1.3, 0.6, "token\nembedding")
        if added:
            kind, label, size = added
            box(ax, cx + 0.15, 3.15, 1.3, 0.6, kind=kind)
            text(ax, cx + 0.8, 3.57, label)
            mono(ax, cx + 0.8, 3.3, size, ha="center", color=INK)
            node(ax, cx, 2.5)
            for side in (-1, 1):
                arrow(ax, (cx + side * 0.8, 3.15), (cx + side * 0.14, 2.58))
            chain(ax, cx, 2.33, [("tensor", "into block 1")], w=1.7, h=0.45, gap=0.33, arrow_in=True)
    for x in (3.17, 6.33):
        line(ax, [(x, 0.1), (x, 4.65)], color=MUTED, linewidth=0.8, style=":")
    cx = 7.9  # RoPE: nothing is added at the input; the rotation happens inside attention
    arrow(ax, (cx, 3.15), (cx, 2.8))
    note(ax, cx - 0.1, 2.97, "nothing added", ha="right")
    note(ax, cx + 0.1, 2.97, "inside attention:")
    frame(ax, cx - 1.45, 1.3, 2.9, 1.5)
    row(ax, cx - 1.3, 2.2, ["q", "k"], w=0.55, h=0.4, kind="tensor", gap=0.1)
    tensor(ax, cx + 0.7, 2.2, 0.55, 0.4, "v")
    operation(ax, cx - 1.35, 1.45, 1.4, 0.5, "turn pairs\nby p·θ_i")
    for x in (cx - 1.02, cx - 0.38):
        arrow(ax, (x, 2.2), (x, 1.95))
    arrow(ax, (cx + 0.05, 1.7), (cx + 0.3, 1.7))
    text(ax, cx + 0.35, 1.7, "scores", ha="left")
    note(ax, cx + 0.98, 2.12, "not turned", ha="center", va="top")


MOE_LOGITS = [1.2, -0.3, 2.0, 0.4]  # an example router output for one token, 4 experts


@diagram("ch04_moe_routing", size=(10.0, 4.9))
def moe_routing(ax):
    probabilities = torch.softmax(torch.tensor(MOE_LOGITS), dim=-1)  # as MoEFeedForward.route computes them
    top, chosen = probabilities.topk(2)
    weights = dict(zip(chosen.tolist(), (top / top.sum()).tolist()))
    title(ax, 0.15, 4.6, "One token through a mixture-of-experts layer: 4 experts, the router picks 2", fontsize=11)
    x = tensor(ax, 0.15, 2.0, 1.35, 0.6, "hidden\nvector x")
    mono(ax, x[0], 1.78, "(emb_dim,)", ha="center")
    router = operation(ax, 1.85, 2.0, 1.45, 0.6, "router\nlinear → 4")
    arrow(ax, (1.5, x[1]), (1.85, x[1]))
    note(ax, 4.15, 4.15, "score", ha="center")
    note(ax, 5.05, 4.15, "softmax", ha="center")
    plus = node(ax, 9.0, 2.3, r=0.2)
    for e, y in enumerate((3.6, 2.75, 1.9, 1.05)):
        picked = e in weights
        line(ax, [(3.3, router[1]), (3.5, router[1]), (3.5, y), (3.7, y)], color=MUTED)
        mono(ax, 4.15, y, f"{MOE_LOGITS[e]:+.1f}", ha="center", color=INK)
        box(ax, 4.65, y - 0.22, 0.8, 0.44, f"{probabilities[e]:.2f}", kind="highlight" if picked else "plain")
        box(ax, 6.0, y - 0.3, 1.65, 0.6, f"expert {e}\n" + ("(SwiGLU)" if picked else "idle: not run"),
            kind="operation" if picked else "masked")
        if picked:
            arrow(ax, (5.45, y), (6.0, y))
            arrow(ax, (7.65, y), (plus[0] - 0.15, plus[1] + math.copysign(0.1, y - plus[1])))
            accent(ax, 7.75, y + 0.2, f"× {weights[e]:.2f}")
    tensor(ax, 8.55, 0.9, 0.9, 0.55, "output")
    arrow(ax, (plus[0], plus[1] - 0.2), (plus[0], 1.45))
    accent(ax, 0.15, 0.35, f"top 2 of the softmax: experts {chosen[0]} and {chosen[1]}; their probabilities "
           f"{top[0]:.2f} and {top[1]:.2f}, renormalised to sum to 1, weight their outputs")


@diagram("ch04_qk_norm", size=(10.0, 4.7))
def qk_norm(ax):
    paths = [(3.05, "plain (GPT-2, Llama 3)", [], "grows with |q| and |k|:\nlarge activations give\nhuge scores, "
              "a saturated\nsoftmax", MUTED),
             (0.95, "QK-norm (Qwen3, OLMo 2, Gemma 3)", [("operation", "RMSNorm(head_dim)", 1.75)],
              "bounded: |q|, |k| = √d · scale,\nso |score| ≤ √d\n(unit scales; d = head_dim)", ACCENT)]
    for y, heading, norms, verdict, color in paths:
        title(ax, 0.15, y + 0.95, heading, fontsize=11)
        for dy, name in ((0.4, "q"), (-0.4, "k")):
            steps = [("tensor", f"{name} of one head", 1.55), *norms, ("operation", "RoPE", 0.85)]
            flow(ax, 0.15, y + dy - 0.22, steps, h=0.44, gap=0.35 if norms else 2.45)  # RoPE where the norm ends
            arrow(ax, (5.0, y + dy), (5.5, y + dy / 3))
        operation(ax, 5.5, y - 0.3, 1.35, 0.6, "q·k / √d")
        arrow(ax, (6.85, y), (7.2, y))
        text(ax, 7.3, y, verdict, ha="left", color=color)
    note(ax, 2.925, 0.15, "one norm for queries, one for keys, shared by all heads", ha="center")


@diagram("ch04_left_padding", size=(10.0, 4.9))
def left_padding(ax):
    from shared.generation import left_pad
    from shared.model import left_padding_view

    prompts = [["The", " cat", " sat", " on"], ["Hi", " there"], ["I", " like", " tea"]]
    new = [[" the", " mat"], [",", " how"], [" very", " much"]]
    idx, pad = left_pad([list(range(len(p))) for p in prompts])
    width = idx.shape[1] + len(new[0])  # the prompt slots, then the generated ones
    positions, hidden = left_padding_view(pad, 0, torch.zeros(len(prompts), width, dtype=torch.long))
    x0, w, h = 1.85, 0.62, 0.44
    title(ax, 0.15, 4.6, "A batch of prompts, padded on the left", fontsize=11)
    brace(ax, x0, x0 + idx.shape[1] * w, 4.05, "prompts (left_pad)", below=False)
    brace(ax, x0 + idx.shape[1] * w, x0 + width * w, 4.05, "generated", below=False)
    for r, prompt in enumerate(prompts):
        y, padding = 3.4 - r * 1.05, int(pad[r])
        subtitled(ax, 0.15, y + 0.08, f"row {r}", f"pad_lengths={padding}", gap=0.28, under=mono)
        kinds = ["masked"] * padding + ["data"] * len(prompt) + ["highlight"] * len(new[r])
        row(ax, x0, y - h / 2, ["pad"] * padding + prompt + new[r], w=w, h=h, kinds=kinds)
        for c in range(width):
            mono(ax, x0 + (c + 0.5) * w, y - h / 2 - 0.17, str(int(positions[r, c])), ha="center",
                 color=MUTED if c < padding else INK)
    note(ax, 0.15, 0.35, "small numbers: positions, counted from each row's first real token (padding: 0, unused)")
    r, size, mx, top = 1, 0.36, 7.55, 3.75  # the mask of row 1, which has the most padding
    title(ax, mx + width * size / 2, 4.35, f"attention mask of row {r}", ha="center")
    kinds = [["masked" if hidden[r, 0, q, k] else "tensor" for k in range(width)] for q in range(width)]
    grid(ax, mx, top, [[""] * width] * width, w=size, kinds=kinds)
    note(ax, mx + width * size / 2, top + 0.15, "keys →", ha="center")
    note(ax, mx - 0.12, top - width * size / 2, "queries ↓", ha="right")
    legend(ax, mx, top - width * size - 0.35, [("tensor", "seen"), ("masked", "hidden")], size=0.22)
    note(ax, mx + width * size / 2, top - width * size - 0.75, "causal, and padding hidden\n(a pad query sees itself)",
         ha="center")


# GQA's colours: one per key/value head, lightened versions of distinct hues so query heads read as groups.
GROUP_COLOURS = ["#9cc3e6", "#f6c28b", "#a9d8a1", "#e9a3a8", "#c9b3e0", "#d8c0a8", "#f0b8dc", "#c8c8c8"]


@diagram("ch04_gqa", size=(10.0, 6.6))
def gqa(ax):
    size = 0.27
    for p, (heading, n_kv) in enumerate([("multi-head (GPT-2)", 8), ("grouped-query (Llama 3, Qwen3)", 2),
                                         ("multi-query", 1)]):
        x0, group = 0.95 + p * 3.3, 8 // n_kv
        subtitled(ax, x0 + 4 * size, 6.35, heading, f"{n_kv} key/value head{'s' if n_kv > 1 else ''}", gap=0.3,
                  ha="center")
        for h in range(8):  # query heads on top, coloured by the key/value head they read
            box(ax, x0 + h * size, 5.25, size * 0.85, size * 1.6, color=GROUP_COLOURS[h // group], kind="plain")
        for k in range(n_kv):  # key/value heads below, centred under their group
            cx = x0 + (k * group + group / 2) * size - size * 0.075
            box(ax, cx - size * 0.425, 4.0, size * 0.85, size * 1.6, color=GROUP_COLOURS[k], kind="plain")
            for h in range(k * group, (k + 1) * group):
                line(ax, [(cx, 4.0 + size * 1.6), (x0 + (h + 0.425) * size, 5.25)], color=MUTED, linewidth=0.9)
    text(ax, 0.83, 5.47, "queries", ha="right")
    text(ax, 0.83, 4.22, "keys,\nvalues", ha="right")
    # KV cache of one sequence: keys and values, per layer, per key/value head, head_dim numbers, 2 bytes each
    layers, head_dim, nbytes = 32, 128, 2  # Llama 3 8B's shape, bfloat16
    tokens = torch.arange(0, 131_073, 1024)
    plot = plot_area(ax.figure, 1.0, 0.7, 6.0, 2.75)
    for n_kv, style in ((32, "-"), (8, "--"), (1, ":")):
        plot.plot(tokens / 1000, 2 * layers * n_kv * head_dim * nbytes * tokens / 1e9, style, color=INK,
                  linewidth=1.6, label=f"{n_kv} key/value heads")
    plot.set_xlabel("tokens in the cache (thousands)", fontsize=10)
    plot.set_ylabel("KV cache (GB)", fontsize=10)
    plot.legend(fontsize=10, frameon=False)
    note(ax, 7.3, 2.6, "one sequence in\nLlama 3 8B's shape:\n32 layers, head_dim 128,\nbfloat16")
    accent(ax, 7.3, 1.3, "Llama 3 8B uses 8\nkey/value heads for\n32 query heads")
