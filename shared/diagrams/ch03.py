"""Diagrams for chapter 03.

Every number drawn here is one the chapter computes from its six-token sentence, its 3-dimensional
embeddings and its seeds (all printed there except the value vector of 'looks', `values[2]`), rounded
for the picture.
"""

import torch

from shared.attention import CausalAttention, attention_weights

from . import diagram
from .primitives import (
    ACCENT, INK, MONO, MUTED, accent, arrow, bar, box, brace, chain, flow, frame, grid, line, mono, note,
    operation, parameter, path_arrow, row, tensor, text, title,
)

TOKENS = ["Every", "token", "looks", "at", "the", "others"]
INPUTS = torch.tensor([
    [0.72, 0.10, 0.31],
    [0.20, 0.85, 0.47],
    [0.15, 0.62, 0.90],
    [0.91, 0.25, 0.05],
    [0.80, 0.33, 0.12],
    [0.28, 0.70, 0.66],
])
LOOKS = 2  # the chapter's query_index
# Section 2: scores and softmax weights of the query 'looks' (no trainable weights), and its context vector.
LOOKS_SCORES = INPUTS @ INPUTS[LOOKS]
LOOKS_WEIGHTS = torch.softmax(LOOKS_SCORES, dim=0)
LOOKS_CONTEXT = LOOKS_WEIGHTS @ INPUTS


def section_3_projections():
    """The query, key and value of 'looks' from section 3's random weights (torch.manual_seed(123))."""
    torch.manual_seed(123)
    weights = [torch.rand(3, 2) for _ in range(3)]  # W_query, W_key, W_value, drawn in that order
    return [INPUTS[LOOKS] @ w for w in weights]


def causal_attention_weights():
    """Section 4's masked scores and causal weights and, after them, the same weights through dropout (p = 0.5).

    CausalAttention built after torch.manual_seed(789) has the notebook's sa_v2 weights (three nn.Linear(3, 2)
    made in the same order); the course's attention_weights, its mask and its dropout module do the rest.
    """
    torch.manual_seed(789)
    attention = CausalAttention(3, 2, context_length=6, dropout=0.5)
    with torch.no_grad():
        queries, keys = attention.W_query(INPUTS), attention.W_key(INPUTS)
        weights = attention_weights(queries, keys, attention.mask)
        torch.manual_seed(123)
        attention.dropout(torch.ones(6, 6))  # the chapter's first call, on a matrix of ones
        masked_scores = (queries @ keys.T).masked_fill(attention.mask, float("-inf"))
        return masked_scores, weights, attention.dropout(weights)


def token_matrix(ax, x, top, cells, kinds, size, rows=True):
    """A 6 x 6 matrix with the query tokens left of its rows and the key tokens above its columns."""
    grid(ax, x, top, cells, w=size, kinds=kinds, row_labels=TOKENS if rows else (), column_labels=TOKENS)


def lower_triangle(values, future="", fill=None):
    """Cells and kinds of a causal 6 x 6 matrix: row i up to the diagonal from `values`, the rest masked."""
    cells = [[f"{values[i, j]:.2f}" if j <= i else future for j in range(6)] for i in range(6)]
    kinds = [[(fill(i, j) if fill else "plain") if j <= i else "masked" for j in range(6)] for i in range(6)]
    return cells, kinds


def vector(values, digits=2):
    return "[" + ", ".join(f"{v:.{digits}f}" for v in values) + "]"


@diagram("ch03_rnn_vs_attention", size=(9.4, 3.9))
def rnn_vs_attention(ax):
    title(ax, 0.25, 3.6, "RNN encoder: one state, updated token by token")
    title(ax, 4.95, 3.6, "attention: every token one step away")
    line(ax, [(4.72, 0.2), (4.72, 3.75)], color="#cccccc", linewidth=1, style="--")
    rnn, attention = (row(ax, x, 0.35, TOKENS, w=0.62, h=0.4, gap=0.08) for x in (0.3, 4.95))
    for i, (cx, _) in enumerate(rnn):  # left: each token updates the one state
        box(ax, cx - 0.22, 1.45, 0.44, 0.4, f"h{i + 1}", kind="highlight" if i == 5 else "tensor")
        arrow(ax, (cx, 0.75), (cx, 1.45), color=MUTED)
        if i:
            arrow(ax, (rnn[i - 1][0] + 0.22, 1.65), (cx - 0.22, 1.65))
    accent(ax, rnn[5][0], 2.12, "final state:\nall the decoder sees", va="bottom", ha="center")
    note(ax, 0.3, 2.75, "'Every' reaches the final state only\nthrough 5 more updates; its influence\n"
         "fades with each one")
    mid = (attention[0][0] + attention[5][0]) / 2  # right: one weighted step from every token
    box(ax, mid - 1.0, 2.45, 2.0, 0.48, "context of 'others'", kind="highlight")
    for i, (cx, cy) in enumerate(attention):
        arrow(ax, (cx, cy + 0.2), (mid - 0.75 + i * 0.3, 2.45), linewidth=1.0)
    note(ax, mid, 3.08, "the same for every position: each\ngets its own mix of all six tokens", va="bottom",
         ha="center")
    accent(ax, 9.2, 1.55, "one weighted\nstep from\nevery token", ha="right")


@diagram("ch03_one_query", size=(9.6, 4.85))
def one_query(ax):
    pitch, h, top = 0.58, 0.42, 3.7
    ys = [top - i * pitch for i in range(6)]
    bottom, upper = ys[-1], ys[0] + h
    headers = [(1.8, "embedding x_i\n(also the value here)"), (3.4, "score\nx_i · x_looks"),
               (5.55, "attention\nweight"), (8.42, "context vector")]
    for x, words in headers:
        note(ax, x, 4.5, words, va="center", ha="center")
    sm = operation(ax, 4.1, bottom, 0.85, upper - bottom, "softmax")
    operation(ax, 6.75, bottom, 0.45, upper - bottom, "Σ", fontsize=14)
    for i, y in enumerate(ys):
        is_query = i == LOOKS
        text(ax, 0.92, y + h / 2, TOKENS[i], ha="right", weight="bold" if is_query else "normal")
        box(ax, 1.0, y, 1.6, h, vector(INPUTS[i]), kind="highlight" if is_query else "tensor", family=MONO)
        arrow(ax, (2.6, y + h / 2), (3.0, y + h / 2), color=MUTED)
        box(ax, 3.0, y, 0.8, h, f"{LOOKS_SCORES[i]:.4f}", kind="tensor", family=MONO)
        arrow(ax, (3.8, y + h / 2), (4.1, y + h / 2), color=MUTED)
        arrow(ax, (4.95, y + h / 2), (5.15, y + h / 2), color=MUTED)
        box(ax, 5.15, y, 0.8, h, f"{LOOKS_WEIGHTS[i]:.4f}", kind="tensor", family=MONO)
        arrow(ax, (5.95, y + h / 2), (6.75, y + h / 2), color=MUTED)
        note(ax, 6.35, y + h / 2 + 0.1, "× x_i", va="bottom", ha="center")
    accent(ax, 0.95, ys[LOOKS] - 0.02, "query", ha="right", va="top")
    note(ax, 5.55, bottom - 0.12, "sum = 1", va="top", ha="center")
    out = box(ax, 7.4, sm[1] - 0.25, 2.05, 0.5, vector(LOOKS_CONTEXT, 4), kind="highlight", family=MONO)
    arrow(ax, (7.2, out[1]), (7.4, out[1]))
    accent(ax, 8.42, out[1] - 0.4, "context vector of 'looks':\nweighted sum of all six", va="top", ha="center")
    note(ax, 0.2, 0.3, "score = dot product: large when two vectors point the same way; the softmax makes the "
         "scores positive and sum to 1")


@diagram("ch03_scores_matrix", size=(10.9, 7.1))
def scores_matrix(ax):
    c, top_a, top_b = 0.42, 6.45, 2.95  # c: wide enough for a two-decimal number at 10 pt
    matrices = [  # (x, top, rows, columns, name, the numbers of the row of 'looks', row and column labels)
        (0.75, top_a, 6, 3, "inputs (6, 3)", INPUTS[LOOKS], TOKENS, ()),
        (2.25, top_a - 1.5 * c, 3, 6, "inputs.T (3, 6)", None, (), ()),
        (5.05, top_a, 6, 6, "attn_scores (6, 6)", LOOKS_SCORES, (), TOKENS),
        (5.05, top_b, 6, 6, "attn_weights (6, 6)", LOOKS_WEIGHTS, TOKENS, ()),
        (7.9, top_b, 6, 3, "inputs (6, 3)", None, (), ()),
        (9.5, top_b, 6, 3, "all_contexts\n(6, 3)", LOOKS_CONTEXT, (), ()),
    ]
    for x, top, rows, columns, name, values, row_labels, column_labels in matrices:
        cells = [[""] * columns for _ in range(rows)]
        kinds = [["tensor"] * columns for _ in range(rows)]
        if values is not None:  # the row of 'looks': the one-query computation above
            cells[LOOKS], kinds[LOOKS] = [f"{v:.2f}" for v in values], ["highlight"] * columns
        grid(ax, x, top, cells, w=c, kinds=kinds, row_labels=row_labels, column_labels=column_labels)
        mono(ax, x + columns * c / 2, top - rows * c - 0.08, name, va="top", color=INK, ha="center")
    for x, y, sign in ((2.12, top_a, "@"), (4.91, top_a, "="), (7.7, top_b, "@"), (9.35, top_b, "=")):
        text(ax, x, y - 3 * c, sign, fontsize=13)
    note(ax, 7.7, top_a - 0.3, "row = query (attending)\ncolumn = key (attended to)", va="top")
    arrow(ax, (6.31, top_a - 6 * c - 0.35), (6.31, top_b + 0.06))
    note(ax, 6.43, top_a - 6 * c - 0.55, "softmax along each row (dim=-1)")
    accent(ax, 0.2, 2.0, "Yellow: the row of 'looks', the\none-query computation from above.\nEvery other row does "
           "the same\nfor another query, in the same\nthree products.")


@diagram("ch03_qkv_projections", size=(9.3, 4.0))
def qkv_projections(ax):
    x = box(ax, 0.2, 1.85, 1.7, 0.5, vector(INPUTS[LOOKS]), kind="tensor", family=MONO)
    text(ax, 1.05, 2.5, "embedding of 'looks'\nx (d_in = 3)", va="bottom")
    rows = [("W_query", "query", "what 'looks' is looking for"),
            ("W_key", "key", "what 'looks' offers, to be\nmatched by the queries"),
            ("W_value", "value", "what 'looks' hands over\nwhen it is attended to")]
    for i, ((weights, name, role), values) in enumerate(zip(rows, section_3_projections())):
        y = 3.05 - i * 1.1
        parameter(ax, 2.55, y, 1.15, 0.45, weights, shape="(3, 2)")
        arrow(ax, (1.9, x[1]), (2.55, y + 0.225), color=MUTED)
        box(ax, 4.35, y, 1.55, 0.45, vector(values, 4), kind="tensor", family=MONO)
        arrow(ax, (3.7, y + 0.225), (4.35, y + 0.225))
        title(ax, 6.1, y + 0.225, name)
        note(ax, 6.75, y + 0.225, role)
    note(ax, 5.12, 3.7, "x @ W  (d_out = 2)", ha="center")
    accent(ax, 0.2, 0.3, "Every token gets all three (queries, keys, values: each (6, 2)).\nScores compare queries "
           "with keys; the context vector sums values.")


@diagram("ch03_scaling", size=(9.4, 3.9))
def scaling(ax):
    generator = torch.Generator().manual_seed(0)  # the chapter's table, computed the way the chapter does
    table = []
    for d_k in (2, 16, 64, 512):
        q, k = (torch.randn(12_000, d_k, generator=generator) for _ in range(2))
        dots = (q * k).sum(dim=-1)
        rows = dots.view(-1, 6)  # 2,000 queries, each scored against 6 keys
        largest = [torch.softmax(r, dim=-1).max(dim=-1).values.mean() for r in (rows, rows / d_k**0.5)]
        table.append((d_k, dots.std(), *largest))
    x0, y0, height = 0.95, 0.95, 2.5  # plot area: weight 0 at y0, weight 1 at y0 + height
    right = x0 + 1.25 * len(table) + 0.1
    for level, label in ((1.0, "one-hot"), (1 / 6, "even: 1/6")):
        line(ax, [(x0, y0 + level * height), (right, y0 + level * height)], color=MUTED, linewidth=0.9, style="--")
        note(ax, x0 - 0.08, y0 + level * height, label, ha="right")
    line(ax, [(x0, y0), (right, y0)], linewidth=1.0)
    note(ax, x0 - 0.08, y0, "0", ha="right")
    note(ax, x0 - 0.08, y0 - 0.48, "std of q·k:", ha="right")
    for i, (d_k, std, raw, scaled) in enumerate(table):
        gx = x0 + 0.2 + i * 1.25
        for j, (value, kind) in enumerate(((raw, "tensor"), (scaled, "highlight"))):
            bar(ax, gx + j * 0.42, y0, value * height, 0.38, kind=kind, vertical=True)
            text(ax, gx + j * 0.42 + 0.19, y0 + value * height + 0.04, f"{value:.2f}", va="bottom")
        text(ax, gx + 0.42, y0 - 0.2, f"d_k = {d_k}")
        mono(ax, gx + 0.42, y0 - 0.48, f"std {std:.2f}", ha="center")
    title(ax, x0 + 0.05, y0 + height + 0.3, "largest of 6 softmax weights (average)")
    lx = right + 0.35
    for k, (kind, words) in enumerate((("tensor", "softmax(q·k)"), ("highlight", "softmax(q·k / √d_k)"))):
        bar(ax, lx, 3.1 - k * 0.35, 0.25, 0.2, kind=kind)
        mono(ax, lx + 0.35, 3.2 - k * 0.35, words, color=INK)
    note(ax, lx, 2.3, "q·k adds up d_k products, so its\nspread grows like √d_k. Unscaled,\nthe softmax of large "
         "scores is\nnearly one-hot and its gradients\nvanish.", va="top")
    accent(ax, lx, 0.75, "Divided by √d_k, the scores have\nstd 1.00 at every size.")


@diagram("ch03_causal_mask", size=(9.4, 4.5))
def causal_mask(ax):
    size, top = 0.48, 3.6
    masked, weights, _ = causal_attention_weights()
    cells, kinds = lower_triangle(masked, future="-inf")
    token_matrix(ax, 0.85, top, cells, kinds, size)
    text(ax, 0.85 + 3 * size, 4.25, "masked_scores", weight="bold", family=MONO)
    sm = operation(ax, 4.05, 1.85, 1.2, 0.6, "softmax\n(row / √2)")
    arrow(ax, (0.85 + 6 * size + 0.08, sm[1]), (4.05, sm[1]))
    arrow(ax, (5.25, sm[1]), (5.5, sm[1]))
    cells, kinds = lower_triangle(weights, future="0", fill=lambda i, j: "tensor")
    token_matrix(ax, 5.55, top, cells, kinds, size, rows=False)
    text(ax, 5.55 + 3 * size, 4.25, "causal_weights", weight="bold", family=MONO)
    grid(ax, 8.55, top, [[f"{total:.0f}"] for total in weights.sum(dim=-1)], w=size, kinds=[["highlight"]] * 6,
         family=None)
    text(ax, 8.55 + size / 2, top + 0.1, "row\nsum", va="bottom")
    note(ax, 0.2, 0.32, "Grey: a key after its query. Its score is -inf, exp(-inf) = 0, so the softmax spreads "
         "each row over the\nvisible keys only: query i attends to keys j ≤ i. (Numbers rounded to 2 decimals.)")


@diagram("ch03_dropout", size=(9.4, 4.5))
def dropout(ax):
    size, top = 0.48, 3.6
    _, weights, dropped = causal_attention_weights()
    cells, kinds = lower_triangle(weights, future="0", fill=lambda i, j: "tensor")
    token_matrix(ax, 0.85, top, cells, kinds, size)
    text(ax, 0.85 + 3 * size, 4.25, "causal_weights", weight="bold", family=MONO)
    op = operation(ax, 4.05, 1.75, 1.2, 0.8, "dropout\np = 0.5\n(training)")
    arrow(ax, (0.85 + 6 * size + 0.08, op[1]), (4.05, op[1]))
    arrow(ax, (5.25, op[1]), (5.5, op[1]))
    cells, kinds = lower_triangle(dropped, future="0", fill=lambda i, j: "highlight" if dropped[i, j] else "plain")
    token_matrix(ax, 5.55, top, cells, kinds, size, rows=False)
    title(ax, 5.55 + 3 * size, 4.25, "after dropout", ha="center")
    grid(ax, 8.55, top, [[f"{total:.2f}"] for total in dropped.sum(dim=-1)], w=size)
    text(ax, 8.55 + size / 2, top + 0.1, "row\nsum", va="bottom")
    note(ax, 0.2, 0.32, "Yellow: kept and scaled by 1 / (1 - p) = 2, so each weight keeps its expected value. "
         "White: dropped to 0.\nRows no longer sum to 1, only on average. In eval() mode dropout changes nothing.")


HEAD_KINDS = ["tensor"] * 2 + ["tensor2"] * 2  # d_out = 4 features: head 0's two, then head 1's two (darker)


@diagram("ch03_causal_attention_shapes", size=(9.6, 4.55))
def causal_attention_shapes(ax):
    h = 0.4
    x = tensor(ax, 0.15, 3.22, 0.75, h, "x", shape="(2, 6, 3)")
    mono(ax, 1.8, 4.37, "nn.Linear(3, 2)", ha="center")
    mono(ax, 3.15, 4.37, "(2, 6, 2) each", ha="center")
    for i, (weights, name) in enumerate((("W_query", "queries"), ("W_key", "keys"), ("W_value", "values"))):
        y = 3.9 - i * 0.68
        flow(ax, 1.3, y, [("parameter", weights, 1.0), ("tensor", name, 1.0)], h=h)
        arrow(ax, (0.9, x[1]), (1.3, y + h / 2), color=MUTED)
    operation(ax, 3.8, 3.4, 2.6, 0.7, "queries @ keys.transpose(1, 2)\n/ math.sqrt(d_out)", family=MONO)
    arrow(ax, (3.65, 4.1), (3.8, 4.1))
    arrow(ax, (3.65, 3.42), (3.8, 3.5))
    steps = [("tensor", "scores", "(2, 6, 6)"), ("operation", "masked_fill(-inf)", "(2, 6, 6)"),
             ("operation", "softmax(dim=-1)", "(2, 6, 6)"), ("operation", "dropout", "(2, 6, 6)"),
             ("operation", "weights @ values", ""), ("tensor", "context vectors", "(2, 6, 2)")]
    centres = chain(ax, 7.4, 3.95, [(kind, label) for kind, label, _ in steps], w=1.7, h=h, gap=0.28)
    for (_, y), (*_, shape) in zip(centres, steps):
        mono(ax, 8.33, y, shape)
    arrow(ax, (6.4, centres[0][1]), (6.55, centres[0][1]))
    box(ax, 4.3, centres[1][1] - h / 2, 1.8, h, "mask[:6, :6]", kind="masked", family=MONO)
    arrow(ax, (6.1, centres[1][1]), (6.55, centres[1][1]))
    note(ax, 5.2, centres[1][1] - 0.26, "buffer: True above the diagonal,\nnot a parameter", va="top", ha="center")
    path_arrow(ax, [(3.15, 2.54), (3.15, centres[4][1]), (6.55, centres[4][1])])
    note(ax, 3.3, centres[4][1] + 0.1, "values", va="bottom")
    note(ax, 0.15, 1.55, "green: the only trainable\nweights; the mask moves\nwith the module (.to(device))\n"
         "but is never trained", va="top")


@diagram("ch03_multihead_wrapper", size=(9.5, 3.5))
def multihead_wrapper(ax):
    x = tensor(ax, 0.15, 1.5, 0.7, 0.45, "x", shape="(2, 6, 3)")
    for i, y in enumerate((2.2, 0.45)):
        frame(ax, 1.25, y - 0.15, 3.55, 0.95)
        mono(ax, 1.35, y + 0.92, f"heads[{i}]: CausalAttention(d_in=3, d_out=2)", va="bottom")
        arrow(ax, (0.85, x[1]), (1.4, y + 0.325), color=MUTED)
        flow(ax, 1.4, y, [("parameter2" if i else "parameter", "W_query, W_key,\nW_value (3 → 2)", 1.75),
                          ("operation", "causal\nattention", 1.2)], h=0.65, gap=0.3)
        arrow(ax, (4.65, y + 0.325), (5.1, y + 0.325))
        box(ax, 5.1, y + 0.1, 0.9, 0.45, f"head {i}", kind="tensor2" if i else "tensor", shape="(2, 6, 2)")
        arrow(ax, (6.0, y + 0.325), (6.35, 1.725 + (-0.15 if i else 0.15)))
    operation(ax, 6.35, 1.35, 1.0, 0.75, "torch.cat\n(dim=-1)")
    row(ax, 7.75, 2.55, [""] * 4, w=0.3, h=0.3, kinds=HEAD_KINDS)
    arrow(ax, (7.35, 1.725), (7.75, 2.7))
    mono(ax, 8.35, 2.95, "(2, 6, 4)", va="bottom", ha="center")
    chain(ax, 8.35, 2.55, [("parameter", "out_proj (4 → 4)\nmixes the heads", 1.6, 0.6),
                           ("tensor", "output", 1.1, 0.45)], gap=0.45, arrow_in=True)
    mono(ax, 8.35, 0.54, "(2, 6, 4)", ha="center", va="top")


@diagram("ch03_multihead", size=(10.2, 5.3))
def multihead(ax):
    xl, xr, c = 1.75, 6.8, 0.3
    title(ax, 10.1, 5.05, "b = 2, T = 6, d_in = 3, d_out = 4, h = 2, hd = 2", ha="right")
    note(ax, 5.55, 4.35, "split_heads (left), attend (bottom), merge_heads and out_proj (right)", ha="center")
    # left, downwards: project, then split the features into heads
    chain(ax, xl, 4.95, [("tensor", "x", 0.9), ("parameter", "W_query, W_key, W_value", 2.1)], h=0.4)
    arrow(ax, (xl, 3.85), (xl, 3.5))
    row(ax, xl - 2 * c, 3.2, [""] * 4, w=c, h=c, kinds=HEAD_KINDS)
    text(ax, xl - 2 * c - 0.08, 3.35, "queries\n(keys, values)", ha="right")
    brace(ax, xl - 2 * c, xl - 0.02, 3.17, "head 0")
    brace(ax, xl + 0.02, xl + 2 * c, 3.17, "head 1")
    chain(ax, xl, 2.82, [("operation", ".view(b, T, h, hd)")], w=1.7, h=0.4, gap=0.2, arrow_in=True, family=MONO)
    arrow(ax, (xl, 2.22), (xl, 1.95))
    for head in range(2):  # .view: the same features, now one block per head
        row(ax, xl - 2 * c - 0.1 + head * (2 * c + 0.2), 1.65, [""] * 2, w=c, h=c, kinds=HEAD_KINDS[2 * head:][:2])
    chain(ax, xl, 1.65, [("operation", ".transpose(1, 2)")], w=1.7, h=0.4, gap=0.2, arrow_in=True, family=MONO)
    arrow(ax, (xl, 1.05), (xl, 0.72))
    for x, suffix in ((xl, ""), (xr, " out")):  # the two heads as separate (b, T, hd) blocks
        row(ax, x - 0.95, 0.3, [f"head {i}{suffix}" for i in range(2)], w=0.9, h=0.42, gap=0.1,
            kinds=["tensor", "tensor2"])
        mono(ax, x - 0.95, 0.12, "(b, h, T, hd) = (2, 2, 6, 2)")
    for y, shape in ((4.75, "(b, T, d_in) = (2, 6, 3)"), (4.05, "nn.Linear(3, 4) each"),
                     (3.35, "(b, T, d_out) = (2, 6, 4)"), (1.8, "(b, T, h, hd) = (2, 6, 2, 2)")):
        mono(ax, 2.85, y, shape)
    # bottom: each head attends on its own
    op = operation(ax, 3.05, 0.22, 1.9, 0.58, "attend: each head\nits own 6 × 6 weights")
    arrow(ax, (xl + 1.05, 0.51), (3.05, 0.51))
    arrow(ax, (4.95, 0.51), (xr - 1.05, 0.51))
    mono(ax, op[0], 0.92, "scores (2, 2, 6, 6), causal", ha="center")
    # right, upwards: merge the heads back side by side, then mix them
    arrow(ax, (xr, 0.72), (xr, 1.05))
    operation(ax, xr - 1.4, 1.05, 2.8, 0.52, ".transpose(1, 2)\n.contiguous().view(b, T, d_out)", family=MONO)
    arrow(ax, (xr, 1.57), (xr, 1.85))
    row(ax, xr - 2 * c, 1.85, [""] * 4, w=c, h=c, kinds=HEAD_KINDS)
    accent(ax, xr - 2 * c - 0.1, 2.0, "concatenated", ha="right")
    chain(ax, xr, 2.15, [("parameter", "out_proj", 1.6), ("tensor", "output", 1.1)], h=0.4, arrow_in=True, up=True)
    for y, shape in ((2.0, "(b, T, d_out) = (2, 6, 4)"), (2.65, "nn.Linear(4, 4):\nmixes the heads"),
                     (3.35, "(b, T, d_out) = (2, 6, 4)")):
        mono(ax, 7.85, y, shape)


@diagram("ch03_head_weight_blocks", size=(9.0, 3.45))
def head_weight_blocks(ax):
    c = 0.42
    for i, top in enumerate((2.85, 1.35)):
        grid(ax, 0.3, top, [[""] * 3] * 2, w=c, kind="parameter" if i == 0 else "parameter2")
        mono(ax, 0.3, top + 0.1, f"wrapper.heads[{i}].W_query.weight  (2, 3)", va="bottom", color=INK)
        arrow(ax, (0.3 + 3 * c + 0.1, top - c), (4.5, 2.1 - 2 * i * c), color=MUTED)
    mono(ax, 3.05, 2.45, "torch.cat(..., dim=0)", ha="center")
    top = 2.1 + c
    grid(ax, 4.6, top, [[""] * 3] * 4, w=c, kinds=[["parameter"] * 3] * 2 + [["parameter2"] * 3] * 2)
    mono(ax, 4.6, top + 0.1, "mha.W_query.weight  (4, 3)", va="bottom", color=INK)
    right = 4.6 + 3 * c + 0.1
    for i in range(2):
        y0, y1 = top - (2 * i + 2) * c + 0.03, top - 2 * i * c - 0.03
        line(ax, [(right, y1), (right + 0.08, y1), (right + 0.08, y0), (right, y0)], color=MUTED, linewidth=1.1)
        note(ax, right + 0.16, (y0 + y1) / 2,
             f"rows {2 * i}-{2 * i + 1}: head {i}\n(output features {2 * i}, {2 * i + 1})")
    brace(ax, 4.6, 4.6 + 3 * c, top - 4 * c - 0.08, "d_in = 3 input features")
    note(ax, 0.3, 0.25, "nn.Linear stores its weight as (out, in): row r makes output feature r, and split_heads gives "
         "features 0-1 to head 0\nand 2-3 to head 1. The same for W_key and W_value; out_proj is copied as it is.")


@diagram("ch03_queries_are_last", size=(9.0, 4.1))
def queries_are_last(ax):
    size, top, x = 0.4, 3.3, 5.0
    kinds = [["plain" if j <= i else "masked" for j in range(6)] for i in range(6)]
    token_matrix(ax, 0.85, top, [[""] * 6 for _ in range(6)], kinds, size)
    frame(ax, 0.85, top - 6 * size, 6 * size, 2 * size, color=ACCENT, style="-")
    mono(ax, 0.85 + 3 * size, top - 6 * size - 0.15, "self.mask[:6, :6]  (grey: future)", va="top", color=INK,
         ha="center")
    mono(ax, x, 3.65, "2 queries, 6 keys: mask[6 - 2 : 6, :6]", color=INK)
    grid(ax, x, 3.4, [[""] * 6] * 2, w=size, kinds=kinds[4:6], row_labels=["the", "others"])
    mono(ax, x, 2.0, "1 new query (KV cache): mask[5:6, :6]", color=INK)
    grid(ax, x, 1.75, [[""] * 6], w=size, kinds=kinds[5:6], row_labels=["others"])
    accent(ax, x + 3 * size, 1.2, "the newest token sees every cached key", va="top", ha="center")
    arrow(ax, (0.85 + 6 * size + 0.1, top - 5 * size), (x - 0.55, 3.4 - size), color=MUTED)
    note(ax, 0.2, 0.25, "Query i sits at key position n_keys - n_queries + i, so the rows of the mask it needs are "
         "the last n_queries rows.")


@diagram("ch03_fused_sdpa", size=(9.5, 5.1))
def fused_sdpa(ax):
    inputs = tensor(ax, 3.2, 4.5, 3.1, 0.4, "queries, keys, values", shape="(b, h, T, hd)")
    title(ax, 0.2, 4.75, "fused=False: spelled out")
    steps = ["queries @ keysᵀ / √hd", "masked_fill(future, -inf)", "softmax(dim=-1)", "dropout", "weights @ values"]
    centres = chain(ax, 1.65, 3.8, [("operation", step) for step in steps], w=2.7, h=0.4, gap=0.24, family=MONO)
    arrow(ax, (inputs[0] - 0.8, 4.5), (1.65, 3.8))
    for _, y in centres[1:]:
        mono(ax, 1.77, y + 0.32, "(b, h, T, T)", color=ACCENT)
    accent(ax, 3.1, 2.42, "each T × T\nmatrix is written\nto memory and\nread back by\nthe next step")
    title(ax, 9.3, 4.75, "fused=True: one call", ha="right")
    operation(ax, 5.1, 1.6, 4.25, 2.1)
    mono(ax, 5.25, 3.55, "F.scaled_dot_product_attention(\n    queries, keys, values,\n    dropout_p=p, "
         "is_causal=True)", color=INK, va="top")
    arrow(ax, (inputs[0] + 0.8, 4.5), (7.225, 3.7))
    text(ax, 5.25, 2.75, "picks a kernel for the hardware:\n• FlashAttention (recent NVIDIA GPUs): keys in\n  tiles, "
         "a running softmax, no T × T matrix stored\n• memory-efficient kernel (other GPUs)\n• fused C++ kernel (CPU), "
         "or a plain math fallback\nscale 1/√hd by default; is_causal=True: the causal mask", ha="left", va="top")
    out = tensor(ax, 3.2, 0.2, 3.1, 0.4, "same context vectors", shape="(b, h, T, hd)")
    arrow(ax, (1.65, centres[-1][1] - 0.2), (out[0] - 0.8, 0.6))
    arrow(ax, (7.225, 1.6), (out[0] + 0.8, 0.6))
