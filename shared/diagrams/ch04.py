"""Diagrams for chapter 04."""

import math

import numpy as np
from matplotlib import patches

from . import diagram
from .style import (
    ACCENT, FONT, INK, KINDS, MONO, MUTED, arrow, box, brace, canvas, data, operation, parameter, row, tensor, text,
)

# GPT-2 small (124M), as in the chapter's GPTConfig defaults.
VOCAB, CONTEXT, EMB, LAYERS, HEADS = 50257, 1024, 768, 12, 12
TENSOR_EDGE = KINDS["tensor"][1]
OPERATION_EDGE = KINDS["operation"][1]


# ---- small primitives of this chapter (style.py has the shared ones) ----

def add_node(ax, x, y, r=0.17):
    """The round "+" where a shortcut is added back: an operation, so drawn in the operation colours."""
    fill, edge, _ = KINDS["operation"]
    ax.add_patch(patches.Circle((x, y), r, facecolor=fill, edgecolor=edge, linewidth=1.3, zorder=3))
    ax.text(x, y, "+", ha="center", va="center", fontsize=13, color=INK, family=FONT, zorder=4)
    return (x, y)


def line(ax, points, color=INK, linewidth=1.3, style="-", zorder=1):
    """A polyline without an arrow head (for the bends of a path; finish it with `arrow`)."""
    xs, ys = zip(*points)
    ax.plot(xs, ys, color=color, linewidth=linewidth, linestyle=style, zorder=zorder, solid_capstyle="butt")


def frame(ax, x, y, w, h, color=MUTED, style="--", rounded=True, linewidth=1.1):
    """A light outline that groups the boxes inside it (a block, a step)."""
    boxstyle = "round,pad=0,rounding_size=0.12" if rounded else "square,pad=0"
    ax.add_patch(patches.FancyBboxPatch((x, y), w, h, boxstyle=boxstyle, facecolor="none", edgecolor=color,
                                        linewidth=linewidth, linestyle=style, zorder=0))


def mono(ax, x, y, words, fontsize=10, color=MUTED, ha="left", va="center"):
    """A shape or formula in the monospaced font."""
    ax.text(x, y, words, fontsize=fontsize, color=color, ha=ha, va=va, family=MONO)


def cells(ax, x, y_top, kinds, size):
    """A matrix of small square cells (no labels) with its top-left corner at (x, y_top); kinds[i][j] colours each."""
    for i, line_ in enumerate(kinds):
        for j, kind in enumerate(line_):
            fill, edge, _ = KINDS[kind]
            ax.add_patch(patches.Rectangle((x + j * size, y_top - (i + 1) * size), size, size, facecolor=fill,
                                           edgecolor=edge, linewidth=0.9))


def gelu(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def small_axes(fig, ax, x, y, w, h):
    """Matplotlib axes placed at (x, y, w, h) inches on the canvas, styled quietly (for real curves)."""
    W, H = fig.get_size_inches()
    inset = fig.add_axes((x / W, y / H, w / W, h / H))
    for side in ("top", "right"):
        inset.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        inset.spines[side].set_color(MUTED)
    inset.tick_params(colors=MUTED, labelsize=10)
    for label in inset.get_xticklabels() + inset.get_yticklabels():
        label.set_family(FONT)
    inset.grid(alpha=0.25, linewidth=0.6)
    return inset


# ---- 1. the whole model ----

@diagram(
    "ch04_gpt_architecture",
    alt="""The whole GPT model from top to bottom, with GPT-2 small's sizes. Token ids of shape (batch, tokens)
    look up rows of a learned token embedding table of 50,257 by 768; the positions 0, 1, 2, ... look up rows
    of a learned position embedding table of 1,024 by 768; the two are added into a tensor of shape
    (batch, tokens, 768). Dropout follows, then a stack of 12 transformer blocks that each keep the shape
    (batch, tokens, 768), then a final layer norm, then a linear output head from 768 to 50,257 features,
    giving logits of shape (batch, tokens, 50,257): one score per vocabulary entry for every position.
    A side panel lists GPT-2 small's settings: vocabulary 50,257, context 1,024, embedding width 768,
    12 layers, 12 heads, dropout 0.1.""",
)
def gpt_architecture():
    fig, ax = canvas(9.0, 8.3)
    cx = 3.2  # centre of the main column
    mono_x = 5.05  # where the shapes are written

    text(ax, 0.15, 7.95, '"Every effort moves you"', ha="left", fontsize=10, color=MUTED, style="italic")
    text(ax, 0.15, 7.5, "token ids", ha="left", fontsize=10, weight="bold")
    ids = row(ax, 1.45, 7.28, [6109, 3626, 6100, 345], w=0.62, h=0.42, kind="data", fontsize=10)
    mono(ax, 0.15, 7.24, "(batch, tokens)", fontsize=10)
    text(ax, 4.15, 7.5, "positions", ha="left", fontsize=10, weight="bold")
    pos = row(ax, 5.15, 7.28, [0, 1, 2, 3], w=0.42, h=0.42, kind="data", fontsize=10)

    def table(x, name, size):
        centre = parameter(ax, x, 5.95, 2.5, 0.66)
        text(ax, centre[0], 6.4, name, fontsize=11)
        mono(ax, centre[0], 6.1, size, ha="center", color=INK)
        return centre

    tok = table(1.0, "token embedding", f"{VOCAB:,} × {EMB}")
    posb = table(4.45, "position embedding", f"{CONTEXT:,} × {EMB}")
    arrow(ax, (ids[1][0] + 0.3, 7.28), (tok[0], 6.61), label="look up a row per id", label_side="left")
    arrow(ax, (pos[1][0] + 0.2, 7.28), (posb[0], 6.61), label="a row per position", label_side="right")

    plus = add_node(ax, cx, 5.15)
    arrow(ax, (tok[0], 5.95), (cx - 0.15, 5.22))
    arrow(ax, (posb[0], 5.95), (cx + 0.15, 5.22))
    emb = tensor(ax, cx - 1.0, 4.3, 2.0, 0.45, "embeddings")
    arrow(ax, (cx, 4.98), (cx, 4.75))
    mono(ax, mono_x, emb[1], f"(batch, tokens, {EMB})")

    drop = operation(ax, cx - 1.0, 3.6, 2.0, 0.42, "dropout (0.1)")
    arrow(ax, (cx, 4.3), (cx, 4.02))

    # the stack of blocks: two shadows behind the front box say "many of these"
    for k in (2, 1):
        box(ax, cx - 1.65 + 0.07 * k, 2.35 + 0.07 * k, 3.3, 0.85, kind="operation")
    operation(ax, cx - 1.65, 2.35, 3.3, 0.85)
    text(ax, cx, 2.95, f"transformer block × {LAYERS}", fontsize=11, weight="bold")
    text(ax, cx, 2.58, "norm → attention → + shortcut\nnorm → feed-forward → + shortcut", fontsize=10, color=INK)
    arrow(ax, (cx, 3.6), (cx, 3.2 + 0.14))
    mono(ax, mono_x, 2.78, f"(batch, tokens, {EMB})\nin and out of every block", va="center")

    norm = operation(ax, cx - 1.0, 1.62, 2.0, 0.42, "final LayerNorm")
    arrow(ax, (cx, 2.35), (cx, 2.04))
    head = operation(ax, cx - 1.45, 0.92, 2.9, 0.42, f"output head: linear {EMB} → {VOCAB:,}")
    arrow(ax, (cx, 1.62), (cx, 1.34))
    logits = tensor(ax, cx - 1.0, 0.15, 2.0, 0.45, "logits", weight="bold")
    arrow(ax, (cx, 0.92), (cx, 0.6))
    mono(ax, mono_x, logits[1] + 0.1, f"(batch, tokens, {VOCAB:,})")
    text(ax, mono_x, logits[1] - 0.17, "a score for every vocabulary entry, at every position", ha="left", fontsize=10,
         color=ACCENT)

    # the settings, as a panel on the right
    px, py, pw = 7.1, 3.75, 1.8
    frame(ax, px, py, pw, 2.65, color=MUTED, style="-")
    text(ax, px + pw / 2, py + 2.38, "GPT-2 small (124M)", fontsize=10, weight="bold")
    settings = [("vocab_size", f"{VOCAB:,}"), ("context_length", f"{CONTEXT:,}"), ("emb_dim", f"{EMB}"),
                ("n_layers", f"{LAYERS}"), ("n_heads", f"{HEADS}"), ("drop_rate", "0.1")]
    for i, (name, value) in enumerate(settings):
        y = py + 2.0 - i * 0.34
        mono(ax, px + 0.1, y, name, fontsize=10, color=INK)
        mono(ax, px + pw - 0.1, y, value, fontsize=10, color=INK, ha="right")
    return fig


# ---- 2. layer normalisation ----

@diagram(
    "ch04_layer_norm",
    alt="""Layer normalisation on the chapter's example: two vectors of six features each, drawn as two rows of
    numbers. For each row on its own, its mean and variance are computed (0.13 and 0.019 for the first row,
    0.22 and 0.033 for the second); subtracting the row's mean and dividing by the square root of its variance
    plus a small eps gives rows with mean 0 and variance 1. Then two learned vectors with one number per
    feature (a column), scale starting at 1 and shift starting at 0, multiply and add. In GPT-2 every row is
    one token's vector of 768 features.""",
)
def layer_norm():
    fig, ax = canvas(9.3, 5.1)
    before = np.array([[0.2260, 0.3470, 0.0000, 0.2216, 0.0000, 0.0000],
                       [0.2133, 0.2394, 0.0000, 0.5198, 0.3297, 0.0000]])  # the notebook's layer outputs
    mean = before.mean(axis=1, keepdims=True)
    var = before.var(axis=1, keepdims=True)
    after = (before - mean) / np.sqrt(var)
    x0, w, h = 1.55, 0.68, 0.4
    right = x0 + 6 * w

    def block(y_top, values, kind, digits):
        for i, line_ in enumerate(values):
            row(ax, x0, y_top - (i + 1) * h, [f"{v:.{digits}f}" for v in line_], w=w, h=h, kind=kind, fontsize=10)

    def stats(y_top, means, variances, color=MUTED):
        text(ax, right + 0.55, y_top + 0.15, "mean", fontsize=10, color=MUTED)
        text(ax, right + 1.35, y_top + 0.15, "variance", fontsize=10, color=MUTED)
        for i, (m, v) in enumerate(zip(means, variances)):
            y = y_top - (i + 0.5) * h
            mono(ax, right + 0.55, y, m, ha="center", color=color)
            mono(ax, right + 1.35, y, v, ha="center", color=color)

    text(ax, 0.1, 4.9, "Each row is one vector (in GPT-2: one token's 768 features).", ha="left", fontsize=10)
    top = 4.25
    text(ax, 0.1, top - h, "outputs", ha="left", fontsize=10, weight="bold")
    block(top, before, "tensor", 2)
    stats(top, [f"{m:.2f}" for m in mean[:, 0]], [f"{v:.3f}" for v in var[:, 0]])
    brace(ax, x0, right, top + 0.05, "statistics over a row: features 1..6", below=False)

    mid = 2.55
    arrow(ax, (x0 + 3 * w, top - 2 * h - 0.05), (x0 + 3 * w, mid + 0.05),
          label="per row: subtract the mean, divide by √(variance + eps)", label_side="right")
    text(ax, 0.1, mid - h, "normalised", ha="left", fontsize=10, weight="bold")
    block(mid, after, "tensor", 2)
    stats(mid, ["0.00", "0.00"], ["1.00", "1.00"], color=ACCENT)

    low = 0.95
    text(ax, 0.1, low - h / 2 + 0.02, "× scale", ha="left", fontsize=10, weight="bold")
    row(ax, x0, low - h, ["1"] * 6, w=w, h=h, kind="parameter", fontsize=10)
    text(ax, 0.1, low - 1.5 * h - 0.02, "+ shift", ha="left", fontsize=10, weight="bold")
    row(ax, x0, low - 2 * h - 0.04, ["0"] * 6, w=w, h=h, kind="parameter", fontsize=10)
    arrow(ax, (x0 + 3 * w, mid - 2 * h - 0.05), (x0 + 3 * w, low + 0.05),
          label="per feature (column): multiply by scale, add shift", label_side="right")
    text(ax, right + 0.2, low - 0.42, "learned, one number per feature,\nstarting at 1 and 0: the network "
         "can\nundo the normalisation where it helps", ha="left", fontsize=10, color=MUTED)
    return fig


# ---- 3. GELU and the feed-forward block ----

@diagram(
    "ch04_gelu_relu",
    alt="""GELU and ReLU drawn on the same axes for inputs from -3 to 3. ReLU is zero for every negative input,
    bends sharply at 0 and is the identity after it. GELU, x times the normal CDF of x, follows ReLU for large
    positive and large negative inputs but is smooth everywhere: near zero it curves gently and for small
    negative inputs it gives small negative outputs, with a minimum of about -0.17 at x of about -0.75.
    Notes beside the plot say that ReLU's gradient is 0 for all negative inputs while GELU's is not.""",
)
def gelu_relu():
    fig, ax = canvas(8.8, 3.7)
    plot = small_axes(fig, ax, 0.55, 0.5, 4.3, 2.95)
    xs = np.linspace(-3, 3, 241)
    plot.plot(xs, np.maximum(xs, 0), color=OPERATION_EDGE, linewidth=2, linestyle="--", label="ReLU = max(0, x)")
    plot.plot(xs, gelu(xs), color=TENSOR_EDGE, linewidth=2, label="GELU = x · Φ(x)")
    x_min = -0.7525
    plot.plot([x_min], [gelu(x_min)], "o", color=ACCENT, markersize=5)
    plot.annotate("minimum ≈ -0.17\nat x ≈ -0.75", (x_min, gelu(x_min)), xytext=(-2.95, 0.9), fontsize=10,
                  color=ACCENT, family=FONT, arrowprops=dict(arrowstyle="-", color=ACCENT, linewidth=0.8))
    plot.axhline(0, color=MUTED, linewidth=0.6)
    plot.axvline(0, color=MUTED, linewidth=0.6)
    plot.set_xlim(-3, 3)
    plot.set_ylim(-0.6, 3.05)
    plot.set_xlabel("x", fontsize=10, color=MUTED, family=FONT)
    legend = plot.legend(loc="upper left", fontsize=10, frameon=False)
    for t in legend.get_texts():
        t.set_family(FONT)

    x = 5.25
    text(ax, x, 3.2, "ReLU", ha="left", fontsize=10, weight="bold", color=OPERATION_EDGE)
    text(ax, x, 3.0, "cuts every negative input to 0, with a\nsharp corner at 0: for x < 0 its gradient\n"
         "is exactly 0, so nothing flows back", ha="left", va="top", fontsize=10)
    text(ax, x, 2.05, "GELU (GPT-2)", ha="left", fontsize=10, weight="bold", color=TENSOR_EDGE)
    text(ax, x, 1.85, "smooth everywhere; small negative inputs\ngive small negative outputs, so they still\n"
         "get a gradient; far from 0 it matches ReLU", ha="left", va="top", fontsize=10)
    text(ax, x, 0.5, "Φ is the standard normal CDF; GPT-2 uses\na tanh approximation of it", ha="left", fontsize=10,
         color=MUTED)
    return fig


@diagram(
    "ch04_feed_forward",
    alt="""GPT-2's feed-forward block for one token, left to right, with each vector drawn as a bar whose height
    is its width in features. A 768-feature vector goes through a linear layer that expands it to 3,072
    features (four times as many), then GELU, which keeps the 3,072 features, then a second linear layer that
    contracts them back to 768. Every position goes through the block on its own with the same weights, so
    (batch, tokens, 768) becomes (batch, tokens, 768) again; the block has 4,722,432 parameters.""",
)
def feed_forward():
    fig, ax = canvas(9.0, 4.5)
    cy, unit = 1.95, 2.5 / 3072  # bar heights: inches per feature
    bar_w = 0.5

    def bar(x, features, label):
        hgt = features * unit
        tensor(ax, x, cy - hgt / 2, bar_w, hgt)
        mono(ax, x + bar_w / 2, cy - hgt / 2 - 0.12, f"{features:,}", ha="center", va="top", color=INK)
        text(ax, x + bar_w / 2, cy + hgt / 2 + 0.14, label, fontsize=10, color=MUTED, va="bottom")
        return x, x + bar_w

    def op(x, w, label, note=None):
        operation(ax, x, cy - 0.4, w, 0.8, label, fontsize=10)
        if note:
            text(ax, x + w / 2, cy - 0.55, note, fontsize=10, color=MUTED, va="top")
        return x, x + w

    b1 = bar(0.45, EMB, "one position")
    o1 = op(1.35, 1.35, f"linear\n{EMB} → 3,072", "weights + bias")
    b2 = bar(3.05, 4 * EMB, "expanded 4×")
    o2 = op(3.95, 1.0, "GELU", "no weights")
    b3 = bar(5.3, 4 * EMB, "")
    o3 = op(6.2, 1.35, f"linear\n3,072 → {EMB}", "weights + bias")
    b4 = bar(7.9, EMB, "same shape")
    for a, b in ((b1, o1), (o1, b2), (b2, o2), (o2, b3), (b3, o3), (o3, b4)):
        arrow(ax, (a[1] + 0.04, cy), (b[0] - 0.04, cy))

    text(ax, 0.3, 4.22, "The same block, with the same weights, runs on every position on its own:", ha="left",
         fontsize=10)
    mono(ax, 0.3, 3.9, f"(batch, tokens, {EMB}) → (batch, tokens, 3,072) → (batch, tokens, {EMB})", color=INK)
    mono(ax, 0.3, 0.25, f"parameters: {EMB}·3,072 + 3,072 + 3,072·{EMB} + {EMB} = 4,722,432", fontsize=10)
    return fig


# ---- 4. shortcut connections ----

@diagram(
    "ch04_shortcuts",
    alt="""Two stacks of three layers side by side, input at the bottom and the loss at the top. Without
    shortcuts (left) the gradient travels down through every layer and is multiplied by one factor per layer,
    drawn as an arrow that gets thinner and thinner, so the first layer receives almost nothing. With shortcuts
    (right) each layer's input is also carried around the layer and added to its output, x + layer(x); the
    gradient flows down that bypass unchanged, drawn as an arrow of constant width, so early layers get a
    gradient of the same order as late ones.""",
)
def shortcuts():
    fig, ax = canvas(9.2, 5.6)
    layers_y = (1.05, 2.25, 3.45)  # bottom of each layer box
    lw, lh = 1.5, 0.45

    def stack(cx, title, with_shortcuts):
        text(ax, cx, 5.35, title, fontsize=11, weight="bold")
        data(ax, cx - 0.6, 0.2, 1.2, 0.4, "input x")
        loss = box(ax, cx - 0.6, 4.55, 1.2, 0.4, "loss", kind="highlight")
        below = 0.6  # top of whatever sits under the next layer
        for i, y in enumerate(layers_y):
            operation(ax, cx - lw / 2, y, lw, lh, f"layer {i + 1}")
            arrow(ax, (cx, below), (cx, y))
            if with_shortcuts:
                py = y + lh + 0.38
                add_node(ax, cx, py)
                arrow(ax, (cx, y + lh), (cx, py - 0.17))
                split = (below + y) / 2
                line(ax, [(cx, split), (cx - 1.05, split), (cx - 1.05, py)])
                arrow(ax, (cx - 1.05, py), (cx - 0.17, py))
                below = py + 0.17
            else:
                below = y + lh
        arrow(ax, (cx, below), (cx, 4.55))
        return loss

    left, right = 2.85, 6.95
    stack(left, "without shortcuts", False)
    stack(right, "with shortcuts: x + layer(x)", True)

    # the gradient on its way back: thinning on the left, steady on the right
    gx = left - 1.2
    widths = (4.0, 2.4, 1.3, 0.6)
    stops = (4.55, 3.2, 2.0, 0.8, 0.25)
    for i, width in enumerate(widths):
        arrow(ax, (gx, stops[i]), (gx, stops[i + 1] + 0.05), color=ACCENT, linewidth=width)
    text(ax, gx - 0.2, 4.15, "gradient", ha="right", fontsize=10, color=ACCENT, weight="bold")
    text(ax, gx - 0.2, 2.6, "× one factor\nper layer:\nit shrinks", ha="right", fontsize=10, color=ACCENT)
    text(ax, gx - 0.2, 0.45, "first layer:\nalmost\nnothing", ha="right", fontsize=10, color=ACCENT)

    gx = right - 1.35
    arrow(ax, (gx, 4.55), (gx, 0.3), color=ACCENT, linewidth=3.0)
    text(ax, gx - 0.2, 4.15, "gradient", ha="right", fontsize=10, color=ACCENT, weight="bold")
    text(ax, gx - 0.2, 2.6, "every + passes\nit on unchanged\n(× 1) along\nthe bypass", ha="right", fontsize=10,
         color=ACCENT)
    text(ax, right + 0.8, 0.45, "early layers get\ngradients of the\nsame order as\nlate ones", ha="left", fontsize=10,
         color=ACCENT)
    return fig


# ---- 5. the transformer block ----

def vertical_bracket(ax, x, y0, y1, label, color=MUTED, fontsize=10):
    """A bracket on the right of the span y0..y1, with a label to its right."""
    ax.plot([x - 0.08, x, x, x - 0.08], [y0, y0, y1, y1], color=color, linewidth=1.1)
    ax.text(x + 0.12, (y0 + y1) / 2, label, ha="left", va="center", fontsize=fontsize, color=color, family=FONT)


@diagram(
    "ch04_transformer_block",
    alt="""One GPT-2 transformer block from top to bottom. The input x of shape (batch, tokens, 768) goes two
    ways: along a shortcut on the left, and through LayerNorm, masked multi-head attention with 12 heads of 64
    dimensions, and dropout; the two are added. The sum again goes two ways: along a second shortcut, and
    through a second LayerNorm, the feed-forward block (768 to 3,072, GELU, 3,072 to 768) and dropout; the two
    are added to give the output, which has the same shape as the input. The first half is where tokens
    exchange information; in the second half each token is processed on its own.""",
)
def transformer_block():
    fig, ax = canvas(8.0, 8.7)
    cx, sx, w = 3.2, 1.05, 2.9  # main column, shortcut line, box width
    x0 = cx - w / 2

    tensor(ax, cx - 1.0, 8.1, 2.0, 0.45, "x (input)")
    mono(ax, cx + 1.2, 8.32, f"(batch, tokens, {EMB})")

    def half(top, norm_label, body_label, body_note, body_h):
        """norm -> body -> dropout -> + with a shortcut around them; returns the y of the + node."""
        split = top - 0.25
        ln = operation(ax, x0, top - 0.95, w, 0.42, norm_label)
        body_top = top - 1.25
        operation(ax, x0, body_top - body_h, w, body_h)
        text(ax, cx, body_top - 0.28, body_label, fontsize=11, weight="bold")
        text(ax, cx, body_top - 0.62, body_note, fontsize=10, color=INK, va="top")
        drop_top = body_top - body_h - 0.3
        operation(ax, x0 + 0.55, drop_top - 0.38, w - 1.1, 0.38, "dropout")
        plus_y = drop_top - 0.38 - 0.45
        add_node(ax, cx, plus_y)
        arrow(ax, (cx, top), (cx, top - 0.53))
        arrow(ax, (cx, top - 0.95), (cx, body_top))
        arrow(ax, (cx, body_top - body_h), (cx, drop_top))
        arrow(ax, (cx, drop_top - 0.38), (cx, plus_y + 0.17))
        line(ax, [(cx, split), (sx, split), (sx, plus_y)])
        arrow(ax, (sx, plus_y), (cx - 0.17, plus_y))
        ax.text(sx - 0.12, (split + plus_y) / 2, "shortcut", rotation=90, ha="right", va="center", fontsize=10,
                color=MUTED, family=FONT)
        return plus_y

    p1 = half(8.1, "LayerNorm 1", "masked multi-head attention", f"{HEADS} heads × 64 dimensions;\n"
              "each position looks at itself\nand earlier positions", 1.25)
    vertical_bracket(ax, x0 + w + 0.35, p1 - 0.2, 7.65, "tokens exchange\ninformation")
    p2 = half(p1 - 0.17, "LayerNorm 2", "feed-forward", f"{EMB} → 3,072 → GELU → {EMB}", 0.85)
    vertical_bracket(ax, x0 + w + 0.35, p2 - 0.2, p1 - 0.45, "each token is\nprocessed on its own")
    tensor(ax, cx - 1.0, 0.15, 2.0, 0.45, "output")
    arrow(ax, (cx, p2 - 0.17), (cx, 0.6))
    mono(ax, cx + 1.2, 0.37, f"(batch, tokens, {EMB}): the same shape,\nso {LAYERS} blocks can be stacked")
    return fig


# ---- 9. what modern LLMs do differently ----

@diagram(
    "ch04_pre_post_norm",
    alt="""Post-norm and pre-norm blocks side by side, each with an attention and a feed-forward sub-layer
    (dropout left out). Post-norm, the 2017 transformer's layout, computes x = norm(x + sublayer(x)): the
    layer norm sits after each addition, right on the shortcut path, so everything from the output back to the
    input passes through every norm. Pre-norm, GPT-2's layout, computes x = x + sublayer(norm(x)): the norm
    is at the start of the side branch, the shortcut path from input to output contains only additions, and a
    single final norm comes before the output head.""",
)
def pre_post_norm():
    fig, ax = canvas(9.2, 7.0)
    w = 2.0

    def sub(cx, y, label, kind="operation"):
        box(ax, cx - w / 2, y, w, 0.4, label, kind=kind, fontsize=10)
        return y

    def panel(cx, pre):
        sx = cx - 1.45  # the shortcut path
        path = dict(color=ACCENT, linewidth=2.4)

        def down(y0, y1, on_path=False):
            arrow(ax, (cx, y0), (cx, y1), **(path if on_path else {}))

        tensor(ax, cx - 0.8, 5.85, 1.6, 0.4, "x")
        y = 5.85  # the bottom of the last thing drawn on the stream
        for name in ("attention", "feed-forward"):
            split = y - 0.2
            line(ax, [(cx, y), (cx, split)], **path)
            if pre:
                sub(cx, split - 0.5, "norm")
                sub(cx, split - 1.05, name)
                down(split, split - 0.1)
                down(split - 0.5, split - 0.65)
                plus = split - 1.45
                down(split - 1.05, plus + 0.17)
                after = plus - 0.17
            else:
                sub(cx, split - 0.5, name)
                down(split, split - 0.1)
                plus = split - 0.9
                down(split - 0.5, plus + 0.17)
                sub(cx, plus - 0.72, "norm", kind="highlight")
                down(plus - 0.17, plus - 0.32, on_path=True)
                after = plus - 0.72
            line(ax, [(cx, split), (sx, split), (sx, plus)], **path)
            arrow(ax, (sx, plus), (cx - 0.17, plus), **path)
            add_node(ax, cx, plus)
            y = after
        if pre:
            sub(cx, y - 0.6, "final norm")
            down(y, y - 0.2, on_path=True)
            y -= 0.6
        head_y = 0.85
        box(ax, cx - w / 2, head_y, w, 0.4, "output head", kind="operation", fontsize=10)
        down(y, head_y + 0.4, on_path=True)
        if not pre:
            text(ax, cx + 0.12, (y + head_y + 0.4) / 2, "no final norm: the last\nblock already ends with one",
                 ha="left", fontsize=10, color=MUTED)

    post_x, pre_x = 2.4, 7.0
    text(ax, post_x - 0.3, 6.75, "post-norm (the 2017 transformer)", fontsize=11, weight="bold")
    text(ax, pre_x - 0.3, 6.75, "pre-norm (GPT-2 and since)", fontsize=11, weight="bold")
    mono(ax, post_x - 0.3, 6.45, "x = norm(x + sublayer(x))", ha="center", color=INK)
    mono(ax, pre_x - 0.3, 6.45, "x = x + sublayer(norm(x))", ha="center", color=INK)
    panel(post_x, pre=False)
    panel(pre_x, pre=True)
    text(ax, post_x - 0.3, 0.6, "the shortcut path runs through every norm:\ndeep stacks need a careful warm-up",
         fontsize=10, color=ACCENT, va="top")
    text(ax, pre_x - 0.3, 0.6, "the shortcut path holds only additions;\none final norm fixes the scale",
         fontsize=10, color=ACCENT, va="top")
    ax.plot([4.7, 4.7], [0.2, 6.6], color=MUTED, linewidth=0.8, linestyle=":")
    return fig


# ---- 7. greedy generation ----

@diagram(
    "ch04_greedy_generation",
    alt="""One step of greedy generation, with the chapter's prompt "Hello, I am" (ids 15496, 11, 314, 716).
    The ids so far, at most the last 1,024 of them, go through the GPT model, which returns logits of shape
    (1, 4, 50,257): one row of scores per position. Only the last row is used, because it scores the next
    token; argmax picks the highest-scoring id, 27018 for the chapter's untrained model; that id is appended
    to the sequence, and the longer sequence is fed back in for the next step.""",
)
def greedy_generation():
    fig, ax = canvas(9.7, 4.3)
    w = 0.72
    text(ax, 0.3, 3.95, 'ids so far ("Hello, I am")', ha="left", fontsize=10, weight="bold")
    ids = row(ax, 0.3, 3.1, [15496, 11, 314, 716], w=w, h=0.45, kind="data", fontsize=10)
    mono(ax, 0.3 + 2 * w, 2.98, "(1, 4)", ha="center", va="top")

    model = operation(ax, 3.7, 2.95, 1.6, 0.75, "GPT model", fontsize=11)
    text(ax, 4.5, 2.82, "sees at most the\nlast 1,024 ids", fontsize=10, color=MUTED, va="top")
    arrow(ax, (0.3 + 4 * w + 0.05, 3.32), (3.65, 3.32))

    # logits: a few rows (positions) by a few columns (vocabulary entries), last row highlighted
    gx, gy, cell = 5.7, 3.75, 0.24
    cells(ax, gx, gy, [["tensor"] * 7 for _ in range(3)] + [["highlight"] * 7], cell)
    text(ax, gx + 3.5 * cell, 3.95, "logits", fontsize=10, weight="bold")
    mono(ax, gx + 7 * cell + 0.12, gy - 0.5 * cell, "one row per position", fontsize=10)
    mono(ax, gx + 7 * cell + 0.12, gy - 2 * cell, "(1, 4, 50,257)", fontsize=10, color=INK)
    mono(ax, gx + 7 * cell + 0.12, gy - 3.5 * cell, "← last row: the next token", fontsize=10, color=ACCENT)
    arrow(ax, (5.35, 3.32), (gx - 0.05, 3.32))

    argmax = operation(ax, gx, 1.35, 7 * cell, 0.5, "argmax", fontsize=10)
    arrow(ax, (gx + 3.5 * cell, gy - 4 * cell - 0.02), (gx + 3.5 * cell, 1.9), label="take the last row:\n(1, 50,257)",
          label_side="right", fontsize=10)
    nxt = box(ax, 3.95, 1.37, 1.1, 0.46, "27018", kind="highlight", fontsize=10)
    arrow(ax, (gx - 0.05, 1.6), (5.1, 1.6))
    text(ax, 4.5, 1.2, "the id with the top score", fontsize=10, color=MUTED, va="top")

    text(ax, 0.3, 1.05, "append → ids for the next step", ha="left", fontsize=10, weight="bold")
    new = row(ax, 0.3, 0.25, [15496, 11, 314, 716, 27018], w=w, h=0.45, kind="data",
              kinds=["data"] * 4 + ["highlight"], fontsize=10)
    arrow(ax, (3.9, 1.6), (new[4][0], 0.75), curve=0.25)
    arrow(ax, (0.2, 0.48), (0.2, 3.3), curve=-0.0, color=MUTED)
    ax.text(0.1, 2.2, "repeat", rotation=90, ha="center", va="center", fontsize=10, color=MUTED, family=FONT)
    return fig


# ---- 8. the KV cache ----

@diagram(
    "ch04_kv_cache",
    alt="""What one attention layer computes and stores over three generation steps with a KV cache. Step 1 feeds
    the whole prompt, three tokens: the layer computes a query, key and value for each of them, the queries
    attend with the causal mask, and the three keys and three values are stored in the cache. Step 2 feeds only
    the new token 4: the layer computes its query, key and value, appends key 4 and value 4 to the cache, and
    query 4 attends to keys and values 1 to 4. Step 3 does the same for token 5, attending to 1 to 5.
    Cells read from the cache are blue, cells computed in that step are yellow. Each of the 12 layers keeps
    its own cache, of shape (batch, heads, positions, head_dim).""",
)
def kv_cache():
    fig, ax = canvas(9.4, 6.3)
    c = 0.42  # cell size
    tx, qx, kx = 1.55, 3.75, 6.45  # columns: tokens fed, computed q/k/v, the cache

    def cell(x, y, label, kind):
        fill, edge, _ = KINDS[kind]
        ax.add_patch(patches.Rectangle((x, y), c, c, facecolor=fill, edgecolor=edge, linewidth=1.1))
        if label:
            ax.text(x + c / 2, y + c / 2, label, ha="center", va="center", fontsize=10, color=INK, family=FONT)

    text(ax, tx + 0.6, 6.05, "fed to the model", fontsize=10, weight="bold")
    text(ax, qx + 0.6, 6.05, "computed this step", fontsize=10, weight="bold")
    text(ax, kx + 1.05, 6.05, "the layer's cache after the step", fontsize=10, weight="bold")

    def step(y, title, subtitle, fed, cached, note):
        """One band around height y; fed = the new positions (1-based), cached = positions already stored."""
        text(ax, 0.15, y + 0.2, title, ha="left", fontsize=10, weight="bold")
        text(ax, 0.15, y - 0.1, subtitle, ha="left", fontsize=10, color=MUTED)
        row(ax, tx, y - c / 2, [f"t{p}" for p in fed], w=c + 0.06, h=c, kind="data", fontsize=10)
        arrow(ax, (tx + len(fed) * (c + 0.06) + 0.08, y), (qx - 0.1, y))
        rows_y = {name: y + c / 2 - i * c for i, name in enumerate("qkv")}  # bottom of each computed row
        for j, p in enumerate(fed):
            for name in "qkv":
                cell(qx + j * c, rows_y[name], f"{name}{p}", "highlight")
        every = cached + fed
        cache_y = {"k": y + 0.12, "v": y - 0.42}
        for name in "kv":
            text(ax, kx - 0.2, cache_y[name] + c / 2, name.upper(), fontsize=10, weight="bold")
            for j, p in enumerate(every):
                cell(kx + j * c, cache_y[name], f"{name}{p}", "tensor" if p in cached else "highlight")
        # append: the new k goes over the top of the K row, the new v under the V row, into the new cells
        right = qx + len(fed) * c
        target = kx + (len(cached) + len(fed) / 2) * c
        ky_mid, vy_mid = rows_y["k"] + c / 2, rows_y["v"] + c / 2
        over, under = cache_y["k"] + c + 0.12, cache_y["v"] - 0.12
        line(ax, [(right, ky_mid), (right + 0.35, ky_mid), (right + 0.35, over), (target, over)], color=MUTED,
             linewidth=1.0)
        arrow(ax, (target, over), (target, cache_y["k"] + c + 0.01), color=MUTED, linewidth=1.0)
        line(ax, [(right, vy_mid), (right + 0.55, vy_mid), (right + 0.55, under), (target, under)], color=MUTED,
             linewidth=1.0)
        arrow(ax, (target, under), (target, cache_y["v"] - 0.01), color=MUTED, linewidth=1.0)
        text(ax, right + 0.45, (ky_mid + over) / 2, "append\nk and v", ha="left", fontsize=10, color=MUTED)
        text(ax, kx, under - 0.1, note, ha="left", fontsize=10, color=ACCENT, va="top")

    step(5.05, "step 1", "the prompt", [1, 2, 3], [], "q1..q3 attend with the causal mask\n"
         "(each to itself and earlier positions)")
    step(3.2, "step 2", "one new token", [4], [1, 2, 3], "q4 attends to k1..k4 and v1..v4")
    step(1.4, "step 3", "one new token", [5], [1, 2, 3, 4], "q5 attends to k1..k5 and v1..v5")

    cell(0.15, 0.08, "", "highlight")
    text(ax, 0.65, 0.29, "computed in this step", ha="left", fontsize=10)
    cell(2.25, 0.08, "", "tensor")
    text(ax, 2.75, 0.29, "read from the cache", ha="left", fontsize=10)
    text(ax, 4.35, 0.29, f"each of the {LAYERS} layers keeps its own K and V,\nof shape (batch, heads, positions, "
         "head_dim)", ha="left", fontsize=10, color=MUTED)
    return fig


@diagram(
    "ch04_rmsnorm_vs_layernorm",
    alt="""LayerNorm and RMSNorm side by side on the same small vector (1, 2, 3, 6). LayerNorm, GPT-2's choice,
    subtracts the mean (3), divides by the square root of the variance (3.5) plus eps, then multiplies by a
    learned scale and adds a learned shift, two vectors of emb_dim numbers; the result (-1.07, -0.53, 0, 1.60)
    has mean 0 and variance 1. RMSNorm, the choice of Llama and most later models, skips the mean: it divides by
    the root-mean-square, the square root of mean(x squared) plus eps (3.54 here), and multiplies by a learned
    scale only; the result (0.28, 0.57, 0.85, 1.70) has root-mean-square 1 but mean 0.85, not 0.""",
)
def rmsnorm_vs_layernorm():
    fig, ax = canvas(9.2, 4.9)
    xs = np.array([1.0, 2.0, 3.0, 6.0])
    ln = (xs - xs.mean()) / np.sqrt(xs.var())
    rms = xs / np.sqrt((xs**2).mean())
    cw, ch = 0.62, 0.4

    def column(cx, title, steps, out, params, stats):
        text(ax, cx, 4.65, title, fontsize=11, weight="bold")
        row(ax, cx - 2 * cw, 3.9, [f"{v:g}" for v in xs], w=cw, h=ch, kind="tensor", fontsize=10)
        y = 3.9
        for label, kind in steps:
            arrow(ax, (cx, y), (cx, y - 0.18))
            y -= 0.18
            box(ax, cx - 1.6, y - 0.42, 3.2, 0.42, label, kind=kind, fontsize=10)
            y -= 0.42
        arrow(ax, (cx, y), (cx, y - 0.18))
        y -= 0.18
        row(ax, cx - 2 * cw, y - ch, [f"{v:.2f}" for v in out], w=cw, h=ch, kind="tensor", fontsize=10)
        text(ax, cx, y - ch - 0.2, stats, fontsize=10, color=ACCENT, va="top")
        text(ax, cx, 0.25, params, fontsize=10, color=MUTED)

    column(2.3, "LayerNorm (GPT-2)",
           [("subtract the mean (3)", "operation"), ("divide by √(variance + eps)  (√3.5)", "operation"),
            ("× scale + shift", "parameter")],
           ln, "learned: scale and shift, 2 × emb_dim numbers", "mean 0, variance 1")
    column(6.9, "RMSNorm (Llama and most since)",
           [("no mean subtracted", "masked"), ("divide by √(mean(x²) + eps)  (3.54)", "operation"),
            ("× scale", "parameter")],
           rms, "learned: scale only, emb_dim numbers", "root-mean-square 1, but mean 0.85")
    text(ax, 4.6, 0.62, "(outputs with scale 1 and shift 0, their starting values)", fontsize=10, color=MUTED)
    ax.plot([4.6, 4.6], [0.85, 4.75], color=MUTED, linewidth=0.8, linestyle=":")
    return fig


def times_node(ax, x, y, r=0.17):
    """The round "×" of an element-wise product (an operation)."""
    fill, edge, _ = KINDS["operation"]
    ax.add_patch(patches.Circle((x, y), r, facecolor=fill, edgecolor=edge, linewidth=1.3, zorder=3))
    ax.text(x, y, "×", ha="center", va="center", fontsize=13, color=INK, family=FONT, zorder=4)
    return (x, y)


@diagram(
    "ch04_swiglu_vs_gelu",
    alt="""GPT-2's feed-forward block beside the SwiGLU block of Llama-style models, for emb_dim 768. GPT-2:
    a linear layer from 768 to 3,072 features, GELU, and a linear layer back to 768, two weight matrices plus
    biases, 4,722,432 parameters. SwiGLU: the input goes through two linear layers from 768 to 2,048 features,
    called gate and up; the gate passes through SiLU, x times sigmoid(x), and multiplies the up projection
    element by element; a third linear layer, down, maps the 2,048 features back to 768. Three matrices
    without biases, 4,718,592 parameters: the narrower hidden width of 2,048 keeps the count about the same.""",
)
def swiglu_vs_gelu():
    fig, ax = canvas(9.2, 5.4)
    w = 2.2

    # GPT-2
    cx = 2.1
    text(ax, cx, 5.15, "feed-forward (GPT-2)", fontsize=11, weight="bold")
    tensor(ax, cx - 0.7, 4.4, 1.4, 0.4, f"x ({EMB})")
    operation(ax, cx - w / 2, 3.45, w, 0.45, f"linear {EMB} → 3,072")
    operation(ax, cx - w / 2, 2.55, w, 0.45, "GELU")
    operation(ax, cx - w / 2, 1.65, w, 0.45, f"linear 3,072 → {EMB}")
    tensor(ax, cx - 0.7, 0.8, 1.4, 0.4, f"out ({EMB})")
    for y0, y1 in ((4.4, 3.9), (3.45, 3.0), (2.55, 2.1), (1.65, 1.2)):
        arrow(ax, (cx, y0), (cx, y1))
    text(ax, cx, 0.5, "2 matrices + biases: 4,722,432 parameters", fontsize=10, color=MUTED)

    # SwiGLU
    cx, gx, ux = 6.7, 5.55, 7.85  # centre, gate branch, up branch
    text(ax, cx, 5.15, "SwiGLU (Llama and most since)", fontsize=11, weight="bold")
    tensor(ax, cx - 0.7, 4.4, 1.4, 0.4, f"x ({EMB})")
    bw = 1.9
    operation(ax, gx - bw / 2, 3.45, bw, 0.45, f"gate: {EMB} → 2,048")
    operation(ax, ux - bw / 2, 3.45, bw, 0.45, f"up: {EMB} → 2,048")
    operation(ax, gx - bw / 2, 2.55, bw, 0.45, "SiLU: x · sigmoid(x)", fontsize=10)
    arrow(ax, (cx - 0.2, 4.4), (gx, 3.9))
    arrow(ax, (cx + 0.2, 4.4), (ux, 3.9))
    arrow(ax, (gx, 3.45), (gx, 3.0))
    prod = times_node(ax, cx, 2.25)
    line(ax, [(gx, 2.55), (gx, 2.25)])
    arrow(ax, (gx, 2.25), (cx - 0.17, 2.25))
    line(ax, [(ux, 3.45), (ux, 2.25)])
    arrow(ax, (ux, 2.25), (cx + 0.17, 2.25))
    text(ax, cx + 0.3, 2.1, "element-wise: the gate\nswitches features on/off", fontsize=10, color=ACCENT,
         ha="left", va="top")
    operation(ax, cx - w / 2, 1.2, w, 0.45, f"down: 2,048 → {EMB}")
    arrow(ax, (cx, 2.08), (cx, 1.65))
    tensor(ax, cx - 0.7, 0.45, 1.4, 0.4, f"out ({EMB})")
    arrow(ax, (cx, 1.2), (cx, 0.85))
    text(ax, cx, 0.2, "3 matrices, no biases: 4,718,592 parameters", fontsize=10, color=MUTED)
    ax.plot([4.35, 4.35], [0.15, 5.3], color=MUTED, linewidth=0.8, linestyle=":")
    return fig


def clock(ax, x, y, r, angle, color=INK):
    """A dial with one hand at `angle` radians (0 = pointing right, counter-clockwise), for one feature pair."""
    ax.add_patch(patches.Circle((x, y), r, facecolor="white", edgecolor=MUTED, linewidth=1.0))
    ax.plot([x, x + r * 0.85 * math.cos(angle)], [y, y + r * 0.85 * math.sin(angle)], color=color, linewidth=1.6,
            solid_capstyle="round")
    ax.add_patch(patches.Circle((x, y), 0.025, facecolor=color, edgecolor=color))


def vector(ax, origin, angle, length, label, color=INK, style="-|>", linewidth=1.6, dashed=False, fontsize=10):
    end = (origin[0] + length * math.cos(angle), origin[1] + length * math.sin(angle))
    ax.add_patch(patches.FancyArrowPatch(origin, end, arrowstyle=style, mutation_scale=12, color=color,
                                         linewidth=linewidth, linestyle="--" if dashed else "-", shrinkA=0, shrinkB=0))
    if label:
        pad = 0.2
        ax.text(origin[0] + (length + pad) * math.cos(angle), origin[1] + (length + pad) * math.sin(angle), label,
                ha="center", va="center", fontsize=fontsize, color=color, family=FONT)
    return end


@diagram(
    "ch04_rope_rotation",
    alt="""How rotary position embeddings work. Left: one feature pair of a query and a key, drawn as 2-D arrows.
    The query at position m is turned by m times an angle theta, the key at position n by n times theta. With
    the query at 3 and the key at 1, or the query at 6 and the key at 4, both are turned by different amounts,
    but the angle between them, and so their dot product, is the same: it depends only on the distance m - n.
    Right: each feature pair turns at its own speed, drawn as dials for positions 0 to 5. With a head dimension
    of 64, the first pair turns 1 radian per position, pair 9 turns 0.1 radian, and the last pair only about
    0.00013 radian, so its hand barely moves: fast pairs tell near positions apart, slow pairs far ones.""",
)
def rope_rotation():
    fig, ax = canvas(9.4, 4.4)
    theta, q0, k0 = math.radians(20), math.radians(10), math.radians(-30)

    def plane(ox, m, n):
        origin = (ox, 1.45)
        text(ax, ox, 3.6, f"query at {m}, key at {n}", fontsize=10)
        ax.plot([ox - 1.2, ox + 1.2], [1.45, 1.45], color="#dddddd", linewidth=0.8)
        ax.plot([ox, ox], [0.45, 3.3], color="#dddddd", linewidth=0.8)
        vector(ax, origin, q0, 1.05, "", color=MUTED, dashed=True, linewidth=1.0)
        vector(ax, origin, k0, 1.05, "", color=MUTED, dashed=True, linewidth=1.0)
        qa, ka = q0 + m * theta, k0 + n * theta
        vector(ax, origin, qa, 1.5, f"q turned by {m}θ", color=TENSOR_EDGE, fontsize=10)
        vector(ax, origin, ka, 1.5, f"k turned by {n}θ", color=OPERATION_EDGE, fontsize=10)
        ax.add_patch(patches.Arc(origin, 1.1, 1.1, theta1=math.degrees(ka), theta2=math.degrees(qa), color=ACCENT,
                                 linewidth=1.6))
        mid = (qa + ka) / 2
        ax.text(ox + 0.72 * math.cos(mid), 1.45 + 0.72 * math.sin(mid), "α", ha="center", va="center",
                fontsize=11, color=ACCENT, family=FONT)

    text(ax, 2.75, 4.05, "one feature pair of q and k, turned by position × θ", fontsize=10, weight="bold")
    plane(1.35, 3, 1)
    plane(4.15, 6, 4)
    text(ax, 2.75, 0.3, "the same angle α between q and k, so the same score:\nit depends only on the distance "
         "m - n = 2", fontsize=10, color=ACCENT)
    text(ax, 2.75, 0.9, "dashed: q and k before turning", fontsize=10, color=MUTED)

    # each pair has its own speed
    x0, y0, dx, r = 6.75, 3.05, 0.42, 0.16
    ax.plot([5.95, 5.95], [0.2, 4.2], color=MUTED, linewidth=0.8, linestyle=":")
    text(ax, 7.75, 4.05, "each pair turns at its own speed", fontsize=10, weight="bold")
    for p in range(6):
        text(ax, x0 + p * dx, 3.6, str(p), fontsize=10, color=MUTED)
    text(ax, x0 + 2.5 * dx, 3.83, "position", fontsize=10, color=MUTED)
    head_dim = 64
    for k, i in enumerate((0, 8, 31)):
        speed = 10000 ** (-2 * i / head_dim)
        y = y0 - k * 1.05
        for p in range(6):
            clock(ax, x0 + p * dx, y, r, p * speed)
        label = f"pair i = {i}: {speed:.2g} rad per position" if speed > 0.01 else f"pair i = {i}: {speed:.5f} rad"
        text(ax, x0 - r, y - 0.35, label, ha="left", fontsize=10, color=INK)
    text(ax, 7.75, 0.22, f"head_dim {head_dim}: θ_i = 10000^(-2i/{head_dim})", fontsize=10, color=MUTED)
    return fig


@diagram(
    "ch04_position_methods",
    alt="""Three ways to tell a transformer where each token is. Left, GPT-2's learned absolute positions: row p of
    a learned position table of 1,024 by 768 is added to the token embedding; it costs 786,432 parameters and
    has no row past position 1,023. Middle, the original 2017 transformer's sinusoids: a fixed vector of sines
    and cosines of p times a frequency, one frequency per pair of dimensions, is added to the token embedding;
    nothing is learned and every position has a vector. Right, rotary position embeddings (RoPE): nothing is
    added to the input; inside every attention layer the query and key are rotated, each feature pair by p
    times its frequency, so the attention score depends on the distance m - n; values are not rotated and
    nothing is learned.""",
)
def position_methods():
    fig, ax = canvas(9.5, 4.75)
    cols = (1.6, 4.75, 7.9)
    top = 4.5  # titles
    for x in (3.17, 6.33):
        ax.plot([x, x], [0.1, top + 0.15], color=MUTED, linewidth=0.8, linestyle=":")
    titles = (("added: a learned table", "GPT-2"), ("added: fixed sinusoids", "the 2017 transformer"),
              ("rotated: q and k (RoPE)", "Llama and most since"))
    for cx, (title, who) in zip(cols, titles):
        text(ax, cx, top, title, fontsize=10.5, weight="bold")
        text(ax, cx, top - 0.28, who, fontsize=10, color=MUTED)

    def embedding(x):
        tensor(ax, x, 3.15, 1.3, 0.6)
        text(ax, x + 0.65, 3.57, "token", fontsize=10)
        text(ax, x + 0.65, 3.32, "embedding", fontsize=10)

    def added(cx, label, sub, kind):
        embedding(cx - 1.45)
        box(ax, cx + 0.15, 3.15, 1.3, 0.6, kind=kind)
        text(ax, cx + 0.8, 3.57, label, fontsize=10)
        mono(ax, cx + 0.8, 3.3, sub, ha="center", color=INK, fontsize=10)
        add_node(ax, cx, 2.5)
        arrow(ax, (cx - 0.8, 3.15), (cx - 0.14, 2.58))
        arrow(ax, (cx + 0.8, 3.15), (cx + 0.14, 2.58))
        tensor(ax, cx - 0.85, 1.55, 1.7, 0.45, "into block 1", fontsize=10)
        arrow(ax, (cx, 2.33), (cx, 2.0))

    added(cols[0], "row p of", f"{CONTEXT:,} × {EMB}", "parameter")
    added(cols[1], "PE[p]", "sin/cos(p·θ_i)", "tensor")
    notes = (
        "learned in training:\n786,432 parameters;\nno row past position 1,023,\nso no longer inputs",
        "computed, not learned: 0 parameters;\nevery position has a vector; moving\nk positions turns each pair by k·θ_i,\n"
        "the same map at every p",
        "0 parameters; position enters\nevery layer's scores, which depend\nonly on how far apart two tokens are",
    )
    for cx, note in zip(cols, notes):
        text(ax, cx, 1.2, note, fontsize=10, va="top", color=INK)

    # RoPE: nothing is added at the input; the rotation happens inside attention
    cx = cols[2]
    embedding(cx - 0.65)
    arrow(ax, (cx, 3.15), (cx, 2.8))
    text(ax, cx - 0.1, 2.97, "nothing added", fontsize=10, color=MUTED, ha="right")
    frame(ax, cx - 1.45, 1.3, 2.9, 1.5, color=MUTED)
    text(ax, cx + 0.1, 2.97, "inside attention:", fontsize=10, color=MUTED, ha="left")
    tensor(ax, cx - 1.3, 2.2, 0.55, 0.4, "q")
    tensor(ax, cx - 0.65, 2.2, 0.55, 0.4, "k")
    tensor(ax, cx + 0.7, 2.2, 0.55, 0.4, "v")
    operation(ax, cx - 1.35, 1.45, 1.4, 0.5, "turn pairs\nby p·θ_i", fontsize=10)
    arrow(ax, (cx - 1.02, 2.2), (cx - 1.02, 1.95))
    arrow(ax, (cx - 0.38, 2.2), (cx - 0.38, 1.95))
    arrow(ax, (cx + 0.05, 1.7), (cx + 0.3, 1.7))
    text(ax, cx + 0.35, 1.7, "scores", fontsize=10, ha="left")
    text(ax, cx + 0.98, 2.12, "not turned", fontsize=10, color=MUTED, va="top")
    return fig


# ---- 11. variants of the block used by open-weight models (section 10) ----

MOE_LOGITS = [1.2, -0.3, 2.0, 0.4]  # an example router output for one token, 4 experts


@diagram(
    "ch04_moe_routing",
    alt="""A mixture-of-experts feed-forward layer routing one token. The token's hidden vector goes through the
    router, a linear layer from emb_dim to 4 scores, one per expert; a softmax turns the scores 1.2, -0.3, 2.0
    and 0.4 into probabilities 0.26, 0.06, 0.57 and 0.12. The two largest pick experts 2 and 0, and their
    probabilities, renormalised over the chosen two, become the weights 0.69 and 0.31. Only experts 0 and 2 run
    on this token (each a SwiGLU feed-forward block); experts 1 and 3 stay idle. Their outputs, multiplied by
    their weights, are added into the layer's output, of the same width as the input.""",
)
def moe_routing():
    import torch  # the numbers are computed the way MoEFeedForward.route computes them

    probabilities = torch.softmax(torch.tensor(MOE_LOGITS), dim=-1)
    top, chosen = probabilities.topk(2)
    weights = dict(zip(chosen.tolist(), (top / top.sum()).tolist()))
    fig, ax = canvas(10.0, 4.9)
    text(ax, 0.15, 4.6, "One token through a mixture-of-experts layer: 4 experts, the router picks 2",
         ha="left", fontsize=11, weight="bold")
    x = tensor(ax, 0.15, 2.0, 1.35, 0.6, "hidden\nvector x", fontsize=10)
    mono(ax, x[0], 1.78, "(emb_dim,)", ha="center", fontsize=10)
    router = operation(ax, 1.85, 2.0, 1.45, 0.6, "router\nlinear → 4", fontsize=10)
    arrow(ax, (1.5, x[1]), (1.85, x[1]))
    ys = [3.6, 2.75, 1.9, 1.05]  # one row per expert, top to bottom
    text(ax, 4.15, 4.15, "score", fontsize=10, color=MUTED)
    text(ax, 5.05, 4.15, "softmax", fontsize=10, color=MUTED)
    plus = add_node(ax, 9.0, 2.3, r=0.2)
    for e, y in enumerate(ys):
        picked = e in weights
        line(ax, [(3.3, router[1]), (3.5, router[1]), (3.5, y), (3.7, y)], color=MUTED)
        mono(ax, 4.15, y, f"{MOE_LOGITS[e]:+.1f}", ha="center", color=INK, fontsize=10)
        box(ax, 4.65, y - 0.22, 0.8, 0.44, f"{probabilities[e]:.2f}", kind="highlight" if picked else "plain", fontsize=10)
        box(ax, 6.0, y - 0.3, 1.65, 0.6, f"expert {e}\n" + ("(SwiGLU)" if picked else "idle: not run"),
            kind="operation" if picked else "masked", fontsize=10)
        if picked:
            arrow(ax, (5.45, y), (6.0, y))
            arrow(ax, (7.65, y), (plus[0] - 0.15, plus[1] + (0.1 if y > plus[1] else -0.1)))
            text(ax, 7.75, y + 0.2, f"× {weights[e]:.2f}", ha="left", fontsize=10, color=ACCENT)
    out = tensor(ax, 8.55, 0.9, 0.9, 0.55, "output", fontsize=10)
    arrow(ax, (plus[0], plus[1] - 0.2), (plus[0], 1.45))
    text(ax, 0.15, 0.35, f"top 2 of the softmax: experts {chosen[0]} and {chosen[1]}; their probabilities "
         f"{top[0]:.2f} and {top[1]:.2f}, renormalised to sum to 1, weight their outputs", ha="left", fontsize=10,
         color=ACCENT)
    return fig


@diagram(
    "ch04_qk_norm",
    alt="""QK-norm compared with the plain attention path, for one head. Plain path: the head's query and key
    vectors go through RoPE and then into the scaled dot product q·k/√head_dim, so a score grows with the
    lengths of q and k and can become large, which makes the softmax saturate. With QK-norm (Qwen3, OLMo 2,
    Gemma 3): the query and the key each first pass through an RMSNorm over the head's own head_dim features,
    with a learned scale, then RoPE, which keeps their lengths, then the same dot product. Each normalised
    vector has length √head_dim times its scale, so a score stays within ±√head_dim for unit scales, whatever
    the size of the activations that produced q and k.""",
)
def qk_norm():
    fig, ax = canvas(10.0, 4.7)

    def path(y, title, norms):
        text(ax, 0.15, y + 0.95, title, ha="left", fontsize=11, weight="bold")
        for dy, name in ((0.4, "q"), (-0.4, "k")):
            centre = tensor(ax, 0.15, y + dy - 0.22, 1.55, 0.44, f"{name} of one head", fontsize=10)
            x = 1.7
            if norms:
                operation(ax, 2.05, y + dy - 0.22, 1.75, 0.44, "RMSNorm(head_dim)", fontsize=10)
                arrow(ax, (x, centre[1]), (2.05, centre[1]))
                x = 3.8
            operation(ax, 4.15, y + dy - 0.22, 0.85, 0.44, "RoPE", fontsize=10)
            arrow(ax, (x, centre[1]), (4.15, centre[1]))
            arrow(ax, (5.0, centre[1]), (5.5, y + dy / 3))
        dot = operation(ax, 5.5, y - 0.3, 1.35, 0.6, "q·k / √d", fontsize=10)
        arrow(ax, (6.85, y), (7.2, y))
        return dot

    path(3.05, "plain (GPT-2, Llama 3)", norms=False)
    text(ax, 7.3, 3.05, "grows with |q| and |k|:\nlarge activations give\nhuge scores, a saturated\nsoftmax",
         ha="left", fontsize=10, color=MUTED)
    path(0.95, "QK-norm (Qwen3, OLMo 2, Gemma 3)", norms=True)
    text(ax, 7.3, 0.95, "bounded: |q|, |k| = √d · scale,\nso |score| ≤ √d\n(unit scales; d = head_dim)",
         ha="left", fontsize=10, color=ACCENT)
    text(ax, 2.925, 0.15, "one norm for queries, one for keys, shared by all heads", fontsize=10, color=MUTED)
    return fig


@diagram(
    "ch04_left_padding",
    alt="""Batched generation with left padding, as left_pad and the model's pad_lengths handle it. Three prompts
    of 4, 2 and 3 tokens become one batch of width 4, padded on the left: pad_lengths is 0, 2 and 1. Each row
    numbers its positions from its first real token (0, 1, 2, ...), so a prompt gets the same positions it
    would get alone; padding slots get position 0 and their outputs are never used. Generated tokens are
    appended on the right of every row, continuing its positions. The attention mask of the row with two
    padding slots is causal and also hides those slots from every other query; a padding query sees only
    itself, so no softmax row is empty.""",
)
def left_padding():
    import torch

    from shared.generation import left_pad
    from shared.model import left_padding_view

    prompts = [["The", " cat", " sat", " on"], ["Hi", " there"], ["I", " like", " tea"]]
    new = [[" the", " mat"], [",", " how"], [" very", " much"]]
    idx, pad = left_pad([list(range(len(p))) for p in prompts])
    width = idx.shape[1] + len(new[0])  # the prompt slots, then the generated ones
    positions, hidden = left_padding_view(pad, 0, torch.zeros(len(prompts), width, dtype=torch.long))
    fig, ax = canvas(10.0, 4.9)
    x0, w, h = 1.85, 0.62, 0.44
    text(ax, 0.15, 4.6, "A batch of prompts, padded on the left", ha="left", fontsize=11, weight="bold")
    brace(ax, x0, x0 + idx.shape[1] * w, 4.05, "prompts (left_pad)", below=False, fontsize=10)
    brace(ax, x0 + idx.shape[1] * w, x0 + width * w, 4.05, "generated", below=False, fontsize=10)
    for r, prompt in enumerate(prompts):
        y = 3.4 - r * 1.05
        text(ax, 0.15, y + 0.08, f"row {r}", ha="left", fontsize=10, weight="bold")
        mono(ax, 0.15, y - 0.2, f"pad_lengths={pad[r]}", fontsize=10)
        labels = ["pad"] * int(pad[r]) + prompt + new[r]
        kinds = ["masked"] * int(pad[r]) + ["data"] * len(prompt) + ["highlight"] * len(new[r])
        row(ax, x0, y - h / 2, labels, w=w, h=h, kinds=kinds, fontsize=10)
        for c in range(width):
            color = MUTED if c < pad[r] else INK
            mono(ax, x0 + (c + 0.5) * w, y - h / 2 - 0.17, str(int(positions[r, c])), ha="center", color=color,
                 fontsize=10)
    text(ax, 0.15, 0.35, "small numbers: positions, counted from each row's first real token (padding: 0, unused)",
         ha="left", fontsize=10, color=MUTED)

    # the mask of row 1, which has the most padding
    r, size, mx, top = 1, 0.36, 7.55, 3.75
    text(ax, mx + width * size / 2, 4.35, f"attention mask of row {r}", fontsize=10, weight="bold")
    kinds = [["masked" if hidden[r, 0, q, k] else "tensor" for k in range(width)] for q in range(width)]
    cells(ax, mx, top, kinds, size)
    text(ax, mx + width * size / 2, top + 0.15, "keys →", fontsize=10, color=MUTED)
    text(ax, mx - 0.12, top - width * size / 2, "queries ↓", fontsize=10, color=MUTED, ha="right")
    legend_y = top - width * size - 0.35
    box(ax, mx, legend_y, 0.22, 0.22, kind="tensor")
    text(ax, mx + 0.3, legend_y + 0.11, "seen", ha="left", fontsize=10)
    box(ax, mx + 1.05, legend_y, 0.22, 0.22, kind="masked")
    text(ax, mx + 1.35, legend_y + 0.11, "hidden", ha="left", fontsize=10)
    text(ax, mx + width * size / 2, legend_y - 0.4, "causal, and padding hidden\n(a pad query sees itself)",
         fontsize=10, color=MUTED)
    return fig


# GQA's colours: one per key/value head, lightened versions of distinct hues so query heads read as groups.
GROUP_COLOURS = ["#9cc3e6", "#f6c28b", "#a9d8a1", "#e9a3a8", "#c9b3e0", "#d8c0a8", "#f0b8dc", "#c8c8c8"]


@diagram(
    "ch04_gqa",
    alt="""Grouped-query attention. Three layouts of 8 query heads: multi-head attention (GPT-2) gives every
    query head its own key/value head, 8 in all; grouped-query attention (Llama 3, Qwen3) lets groups of 4
    consecutive query heads share one key/value head, 2 in all; multi-query attention shares a single key/value
    head among all 8. A plot beside them shows the KV cache of one sequence in Llama 3 8B's shape (32 layers,
    head_dim 128, bfloat16), growing linearly with the tokens in the cache: about 69 GB at 128k tokens with 32
    key/value heads, about 17 GB with Llama 3's 8, and about 2 GB with 1.""",
)
def gqa():
    fig, ax = canvas(10.0, 6.6)
    for p, (title, n_kv) in enumerate([("multi-head (GPT-2)", 8), ("grouped-query (Llama 3, Qwen3)", 2),
                                       ("multi-query", 1)]):
        x0, size, group = 0.95 + p * 3.3, 0.27, 8 // n_kv
        text(ax, x0 + 4 * size, 6.35, title, fontsize=10, weight="bold")
        text(ax, x0 + 4 * size, 6.05, f"{n_kv} key/value head{'s' if n_kv > 1 else ''}", fontsize=10, color=MUTED)
        for h in range(8):  # query heads on top, coloured by the key/value head they read
            ax.add_patch(patches.Rectangle((x0 + h * size, 5.25), size * 0.85, size * 1.6, facecolor=GROUP_COLOURS[h // group],
                                           edgecolor=INK, linewidth=0.8))
        for k in range(n_kv):  # key/value heads below, centred under their group
            cx = x0 + (k * group + group / 2) * size - size * 0.075
            ax.add_patch(patches.Rectangle((cx - size * 0.425, 4.0), size * 0.85, size * 1.6,
                                           facecolor=GROUP_COLOURS[k], edgecolor=INK, linewidth=0.8))
            for h in range(k * group, (k + 1) * group):
                line(ax, [(cx, 4.0 + size * 1.6), (x0 + (h + 0.425) * size, 5.25)], color=MUTED, linewidth=0.9)
        if p == 0:
            text(ax, x0 - 0.12, 5.47, "queries", ha="right", fontsize=10)
            text(ax, x0 - 0.12, 4.22, "keys,\nvalues", ha="right", fontsize=10)

    # KV cache of one sequence: keys and values, per layer, per key/value head, head_dim numbers, 2 bytes each
    layers, head_dim, nbytes = 32, 128, 2  # Llama 3 8B's shape, bfloat16
    tokens = np.arange(0, 131_073, 1024)
    plot = small_axes(fig, ax, 1.0, 0.7, 6.0, 2.75)
    for n_kv, style in ((32, "-"), (8, "--"), (1, ":")):
        plot.plot(tokens / 1000, 2 * layers * n_kv * head_dim * nbytes * tokens / 1e9, style, color=INK,
                  linewidth=1.6, label=f"{n_kv} key/value heads")
    plot.set_xlabel("tokens in the cache (thousands)", fontsize=10, color=INK)
    plot.set_ylabel("KV cache (GB)", fontsize=10, color=INK)
    plot.legend(fontsize=10, frameon=False)
    text(ax, 7.3, 2.6, "one sequence in\nLlama 3 8B's shape:\n32 layers, head_dim 128,\nbfloat16",
         ha="left", fontsize=10, color=MUTED)
    text(ax, 7.3, 1.3, "Llama 3 8B uses 8\nkey/value heads for\n32 query heads", ha="left", fontsize=10,
         color=ACCENT)
    return fig
