"""Diagrams for chapter 05."""

import math

from matplotlib import patches

from . import diagram
from .style import (
    ACCENT, FONT, INK, KINDS, MONO, MUTED, arrow, box, brace, canvas, data, operation, parameter, row, tensor, text,
)

# The chapter's toy next-token distribution (section 5), in the order the notebook prints it.
TOY_VOCAB = ["mat", "sofa", "floor", "windowsill", "keyboard", "roof", "moon", "violin"]
TOY_LOGITS = [4.10, 3.30, 3.55, 2.20, 2.75, 1.10, -0.80, -1.60]


def _softmax(logits, temperature=1.0, keep=None):
    """Softmax of the kept logits divided by temperature (0 for the others), like next_token_probabilities."""
    keep = keep if keep is not None else [True] * len(logits)
    top = max(l for l, k in zip(logits, keep) if k)
    weights = [math.exp((l - top) / temperature) if k else 0.0 for l, k in zip(logits, keep)]
    total = sum(weights)
    return [w / total for w in weights]


def _top_k_keep(probas, k):
    kth = sorted(probas, reverse=True)[k - 1]
    return [p >= kth for p in probas]


def _top_p_keep(probas, p):
    order = sorted(range(len(probas)), key=lambda i: -probas[i])
    keep, above = [False] * len(probas), 0.0
    for i in order:
        keep[i] = above < p  # kept while the words ranked above it have not yet reached p
        above += probas[i]
    return keep


def _hbars(ax, x, y_top, values, kept=None, scale=3.0, row_h=0.28, kind="tensor", fontsize=10, digits=4):
    """Horizontal bars, one per row from y_top down, starting at x; removed rows show a grey '0'."""
    kept = kept if kept is not None else [True] * len(values)
    for i, (value, k) in enumerate(zip(values, kept)):
        y = y_top - (i + 1) * row_h
        if k:
            fill, edge, _ = KINDS[kind]
            ax.add_patch(patches.Rectangle((x, y + 0.05), max(value * scale, 0.015), row_h - 0.1,
                                           facecolor=fill, edgecolor=edge, linewidth=1.0))
            ax.text(x + value * scale + 0.05, y + row_h / 2, f"{value:.{digits}f}", ha="left", va="center",
                    fontsize=fontsize, color=INK, family=FONT)
        else:
            ax.text(x + 0.02, y + row_h / 2, "0  (removed)", ha="left", va="center", fontsize=fontsize,
                    color=MUTED, family=FONT)
    ax.plot([x, x], [y_top - len(values) * row_h, y_top], color=MUTED, linewidth=0.9)


def _words(ax, x_right, y_top, words, row_h=0.28, fontsize=10):
    for i, word in enumerate(words):
        ax.text(x_right, y_top - (i + 0.5) * row_h, word, ha="right", va="center", fontsize=fontsize, color=INK,
                family=FONT)


@diagram(
    "ch05_train_val_split",
    alt="""The 20,479 characters of The Verdict as one long bar, cut once: the first 90 percent (18,431
    characters) become the training text and the last 10 percent (2,048 characters) the validation text.
    Each part is tokenized and cut into non-overlapping windows of 256 tokens: the training part gives 9
    shuffled batches of 2 windows (4,608 input tokens per epoch), the validation part one batch of 2 windows
    (512 tokens), never trained on.""",
)
def train_val_split():
    fig, ax = canvas(9.4, 3.0)
    x0, width = 0.3, 8.8
    cut = x0 + width * 0.9
    text(ax, x0, 2.75, "The Verdict: 20,479 characters", ha="left", fontsize=10, weight="bold")
    data(ax, x0, 1.95, cut - x0, 0.5, "training text: the first 90% (characters 0 to 18,430)", fontsize=10)
    box(ax, cut, 1.95, x0 + width - cut, 0.5, "last 10%", kind="highlight", fontsize=10)
    ax.plot([cut, cut], [1.85, 2.6], color=ACCENT, linewidth=1.6)
    text(ax, cut, 2.75, "split = int(0.9 × 20,479) = 18,431", ha="right", fontsize=10, color=ACCENT)
    # windows of 256 tokens (drawn schematically, 18 and 2 of them)
    ww = (cut - x0 - 0.35) / 18
    for i in range(18):
        box(ax, x0 + i * ww, 1.1, ww - 0.04, 0.38, "", kind="tensor")
    text(ax, cut - 0.17, 1.29, "…", fontsize=10, color=MUTED)
    vw = (x0 + width - cut - 0.12) / 2
    for i in range(2):
        box(ax, cut + 0.02 + i * vw, 1.1, vw - 0.04, 0.38, "", kind="tensor")
    brace(ax, x0, cut - 0.35, 1.0, "18 windows of 256 tokens → 9 batches of 2 (shuffled, last incomplete batch "
          "dropped): 4,608 input tokens per epoch", fontsize=10)
    brace(ax, cut + 0.02, x0 + width - 0.1, 1.0, "", fontsize=10)
    text(ax, x0 + width, 0.2, "validation: 2 windows, 1 batch of 2 (512 tokens), in order, never trained on",
         ha="right", fontsize=10, color=ACCENT)
    text(ax, x0 + width, 0.52, "the tail that does not fill a window (256 inputs + 1 target) is unused",
         ha="right", fontsize=10, color=MUTED)
    return fig


@diagram(
    "ch05_loss_all_positions",
    alt="""How the cross-entropy loss is computed over every position. Two texts, 'the painter stepped back' and
    'she laughed at the', give three input tokens each; the target at each position is the token that follows
    it, so the targets are the inputs shifted by one. For each of the six positions the model's probability of
    the true next token is read out (all about 1.3 to 1.9 times ten to the minus five for the untrained model),
    its negative logarithm is taken (about 11 each), and the mean of the six, 11.1097, is the loss.""",
)
def loss_all_positions():
    fig, ax = canvas(9.5, 4.3)
    inputs = ["the", "painter", "stepped", "she", "laughed", "at"]
    targets = ["painter", "stepped", "back", "laughed", "at", "the"]
    probas = [1.3624, 1.2777, 1.5002, 1.5086, 1.8972, 1.5034]
    neglogs = [11.2037, 11.2678, 11.1073, 11.1018, 10.8726, 11.1052]
    x0, w, gap = 2.25, 1.08, 0.0
    xs = [x0 + i * w + (0.22 if i >= 3 else 0) for i in range(6)]
    rows_y = {"input": 3.15, "target": 2.3, "p": 1.45, "nl": 0.75}
    labels = {"input": "input token", "target": "target: the\nnext token", "p": "model's probability\nof the target",
              "nl": "−log p"}
    for key, y in rows_y.items():
        text(ax, 0.1, y + 0.21, labels[key], ha="left", fontsize=10, weight="bold")
    brace(ax, xs[0], xs[2] + w - 0.06, 3.72, "text 1: “the painter stepped back”", below=False)
    brace(ax, xs[3], xs[5] + w - 0.06, 3.72, "text 2: “she laughed at the”", below=False)
    for i in range(6):
        data(ax, xs[i], rows_y["input"], w - 0.06, 0.42, inputs[i], fontsize=10)
        box(ax, xs[i], rows_y["target"], w - 0.06, 0.42, targets[i], kind="highlight", fontsize=10)
        tensor(ax, xs[i], rows_y["p"], w - 0.06, 0.42, f"{probas[i]:.2f}e-5", fontsize=10)
        tensor(ax, xs[i], rows_y["nl"], w - 0.06, 0.42, f"{neglogs[i]:.2f}", fontsize=10)
        cx = xs[i] + (w - 0.06) / 2
        arrow(ax, (cx, rows_y["input"]), (cx, rows_y["target"] + 0.42), color=MUTED, linewidth=0.9)
        arrow(ax, (cx, rows_y["target"]), (cx, rows_y["p"] + 0.42), color=MUTED, linewidth=0.9)
        arrow(ax, (cx, rows_y["p"]), (cx, rows_y["nl"] + 0.42), color=MUTED, linewidth=0.9)
    # the shift by one: each target is the next input
    for i in (0, 1, 3, 4):
        arrow(ax, (xs[i + 1] + 0.1, rows_y["input"]), (xs[i] + w - 0.16, rows_y["target"] + 0.42), color=ACCENT,
              linewidth=0.8, curve=-0.15)
    brace(ax, xs[0], xs[5] + w - 0.06, 0.62, "mean over all 6 positions = 11.1097 = the cross-entropy loss",
          fontsize=10, color=ACCENT)
    text(ax, 0.1, 4.15, "red arrows: each target is the next input token (the inputs shifted by one)", ha="left",
         fontsize=10, color=ACCENT)
    text(ax, 0.1, 0.1, "training does the same over every position of a batch (2 × 256 = 512 predictions)",
         ha="left", fontsize=10, color=MUTED)
    return fig


@diagram(
    "ch05_perplexity",
    alt="""Perplexity as the effective number of choices. Left: a model that spreads its probability evenly
    over four words has a loss of ln 4, about 1.386, and a perplexity of e to that power, exactly 4: it is as
    unsure as a fair pick among four words. Right: a logarithmic scale of perplexity from 1 (certain of every
    next token, loss 0) through 4 to 50,257 (a uniform guess over GPT-2's vocabulary, loss 10.825) and 66,818,
    the untrained model of this chapter (loss 11.11).""",
)
def perplexity():
    fig, ax = canvas(10.0, 3.3)
    text(ax, 0.2, 3.0, "a model unsure between 4 words", ha="left", fontsize=10, weight="bold")
    words = ["mat", "sofa", "floor", "roof"]
    _words(ax, 1.1, 2.65, words, row_h=0.3, fontsize=10)
    _hbars(ax, 1.2, 2.65, [0.25] * 4, scale=3.0, row_h=0.3, digits=2)
    text(ax, 0.2, 1.0, "loss = −log 0.25 = ln 4 ≈ 1.386", ha="left", fontsize=10)
    text(ax, 0.2, 0.6, "perplexity = e^loss = 4", ha="left", fontsize=10, color=ACCENT, weight="bold")
    text(ax, 0.2, 0.25, "as unsure as a fair pick among 4 words", ha="left", fontsize=10, color=MUTED)
    # log scale on the right
    xa, xb, y = 4.6, 9.1, 1.7
    lo, hi = 0, math.log10(100_000)

    def at(v):
        return xa + (math.log10(v) - lo) / (hi - lo) * (xb - xa)

    text(ax, xa, 3.0, "perplexity, on a log scale", ha="left", fontsize=10, weight="bold")
    ax.plot([xa, xb], [y, y], color=INK, linewidth=1.2)
    for v, label in [(1, "1"), (10, "10"), (100, "100"), (1000, "1,000"), (10_000, "10,000"), (100_000, "100,000")]:
        ax.plot([at(v)] * 2, [y - 0.06, y + 0.06], color=INK, linewidth=1.0)
        text(ax, at(v), y - 0.2, label, fontsize=10, color=MUTED)
    marks = [(1, "certain of every\nnext token\n(loss 0)", 0.75, INK), (4, "the 4-word\nexample", 2.45, ACCENT),
             (50_257, "uniform guess over\nthe vocabulary\n(loss 10.825)", 0.75, INK),
             (66_818, "untrained model\n(loss 11.11)", 2.45, INK)]
    for v, label, ty, color in marks:
        ax.plot([at(v)], [y], marker="o", color=color, markersize=5)
        arrow(ax, (at(v), ty - 0.25 if ty > y else ty + 0.3), (at(v), y + (0.08 if ty > y else -0.3)),
              color=MUTED, linewidth=0.8)
        text(ax, at(v), ty, label, fontsize=10, color=color)
    return fig


@diagram(
    "ch05_training_loop",
    alt="""The training loop as a cycle. A batch of inputs and targets (2 windows of 256 tokens) goes through
    the model, whose weights are its parameters, giving logits of shape 2 by 256 by 50,257; cross-entropy over
    every position turns them into one loss number. loss.backward() fills every weight's gradient,
    optimizer.step() (AdamW) moves the weights against it, optimizer.zero_grad() clears the gradients, and the
    next batch comes. Every eval_freq steps (5 in this chapter) evaluate_model measures the training and
    validation losses in eval mode without gradients, and after each epoch a greedy sample is printed.""",
)
def training_loop():
    fig, ax = canvas(9.5, 4.5)
    top, bot, h = 3.35, 1.6, 0.6
    b = data(ax, 0.15, top, 1.75, h, "batch:\ninputs, targets", fontsize=10, shape="(2, 256) each")
    m = operation(ax, 2.35, top, 1.1, h, "model", fontsize=10)
    lg = tensor(ax, 3.9, top, 1.35, h, "logits", fontsize=10, shape="(2, 256, 50257)")
    ce = operation(ax, 5.7, top, 1.75, h, "cross-entropy over\nevery position", fontsize=10)
    ls = tensor(ax, 7.9, top, 1.45, h, "loss", fontsize=10, shape="one number")
    for a, c in [((1.9, top + h / 2), (2.35, top + h / 2)), ((3.45, top + h / 2), (3.9, top + h / 2)),
                 ((5.25, top + h / 2), (5.7, top + h / 2)), ((7.45, top + h / 2), (7.9, top + h / 2))]:
        arrow(ax, a, c)
    bw = operation(ax, 7.65, bot, 1.7, h, "loss.backward()\nfills the gradients", fontsize=10)
    st = operation(ax, 5.2, bot, 1.75, h, "optimizer.step()\nAdamW moves weights", fontsize=10)
    zg = operation(ax, 2.7, bot, 1.8, h, "optimizer.zero_grad()\nclears the gradients", fontsize=10)
    arrow(ax, (ls[0], top - 0.25), (ls[0], bot + h))
    arrow(ax, (7.65, bot + h / 2), (6.95, bot + h / 2))
    arrow(ax, (5.2, bot + h / 2), (4.5, bot + h / 2))
    arrow(ax, (2.7, bot + h / 2), (b[0], bot + h / 2), style="-")
    arrow(ax, (b[0], bot + h / 2), (b[0], top - 0.25), label="next batch", label_side="right")
    wt = parameter(ax, 2.35, 2.55, 1.1, 0.4, "weights", fontsize=10)
    arrow(ax, (wt[0], 2.95), (wt[0], top), color="#3a8d4f")
    arrow(ax, (5.4, bot + h), (3.45, 2.7), color="#3a8d4f")
    text(ax, 4.5, 2.62, "updates", fontsize=10, color="#3a8d4f", ha="left")
    # evaluation, off the main cycle
    box(ax, 0.15, 0.25, 4.35, 0.7, "every eval_freq = 5 steps: evaluate_model\ntrain and val loss (eval mode, no gradients)",
        kind="highlight", fontsize=10)
    box(ax, 5.2, 0.25, 4.15, 0.7, "after every epoch: a greedy sample\nfrom “Every effort moves you”",
        kind="highlight", fontsize=10)
    arrow(ax, (st[0] - 0.5, bot), (2.9, 0.95), color=MUTED, linewidth=0.9)
    arrow(ax, (st[0] + 0.3, bot), (st[0] + 0.3, 0.95), color=MUTED, linewidth=0.9)
    text(ax, 9.35, 4.3, "repeat for every batch of every epoch", ha="right", fontsize=10, color=ACCENT)
    return fig


@diagram(
    "ch05_overfitting_sketch",
    alt="""A schematic sketch, not this chapter's data: loss against training steps. The training loss keeps
    falling towards zero. The validation loss falls at first, reaches a lowest point, and then turns up again.
    Before that point the model learns patterns that carry over to new text; after it, it memorises the
    training text. The lowest validation loss marks the best moment to stop or the checkpoint to keep.""",
)
def overfitting_sketch():
    fig, ax = canvas(8.5, 3.6)
    x0, y0, x1, y1 = 0.9, 0.55, 7.9, 3.1
    arrow(ax, (x0, y0), (x1, y0))
    arrow(ax, (x0, y0), (x0, y1))
    text(ax, (x0 + x1) / 2, 0.25, "training steps →", fontsize=10)
    text(ax, 0.45, (y0 + y1) / 2, "loss", fontsize=10)
    xs = [i / 100 for i in range(101)]
    train = [0.1 + 2.3 * math.exp(-3.2 * t) for t in xs]
    val = [0.95 + 1.45 * math.exp(-5.0 * t) + 0.9 * max(0.0, t - 0.35) ** 1.5 for t in xs]

    def px(t):
        return x0 + 0.05 + t * (x1 - x0 - 0.4)

    def py(v):
        return y0 + 0.05 + v * 0.95

    ax.plot([px(t) for t in xs], [py(v) for v in train], color="#2f6ea5", linewidth=2)
    ax.plot([px(t) for t in xs], [py(v) for v in val], color=ACCENT, linewidth=2, linestyle="-.")
    best = min(range(101), key=lambda i: val[i])
    bx, by = px(xs[best]), py(val[best])
    ax.plot([bx], [by], marker="o", color=ACCENT, markersize=6)
    ax.plot([bx, bx], [y0, y1 - 0.2], color=MUTED, linewidth=0.9, linestyle=":")
    text(ax, px(1.0), py(train[-1]) + 0.2, "training loss", ha="right", fontsize=10, color="#2f6ea5")
    text(ax, px(1.0), py(val[-1]) - 0.25, "validation loss", ha="right", fontsize=10, color=ACCENT)
    text(ax, bx + 0.1, by + 0.35, "lowest validation loss:\nstop here, or keep this checkpoint", fontsize=10,
         color=ACCENT, ha="left")
    text(ax, (x0 + bx) / 2 + 0.3, y1 - 0.05, "learning patterns\nthat carry over", fontsize=10)
    text(ax, (bx + x1) / 2, y1 - 0.05, "memorising the training text\n(overfitting)", fontsize=10)
    text(ax, x1, 3.45, "SKETCH: the typical shape, not this run's numbers", ha="right", fontsize=10,
         color=MUTED, style="italic")
    return fig


@diagram(
    "ch05_greedy_vs_sampling",
    alt="""Greedy decoding against sampling on the chapter's toy distribution for the word after 'The cat
    curled up on the': mat 0.4007, sofa 0.1800, floor 0.2312, windowsill 0.0599, keyboard 0.1039, roof 0.0199,
    moon 0.0030, violin 0.0013. Greedy decoding (argmax) picks mat every time. Sampling with
    torch.multinomial draws each word in proportion to its probability: in 1,000 seeded draws mat came up 400
    times, sofa 199, floor 202, windowsill 56, keyboard 116, roof 24, moon 3 and violin 0.""",
)
def greedy_vs_sampling():
    fig, ax = canvas(9.5, 3.4)
    probas = _softmax(TOY_LOGITS)
    counts = [400, 199, 202, 56, 116, 24, 3, 0]
    rh, ytop = 0.3, 2.75
    text(ax, 0.15, 3.15, "“The cat curled up on the …”: next-word probabilities", ha="left", fontsize=10,
         weight="bold")
    _words(ax, 1.25, ytop, TOY_VOCAB, row_h=rh)
    _hbars(ax, 1.35, ytop, probas, scale=3.4, row_h=rh)
    cx = 3.75
    text(ax, cx, ytop + 0.12, "drawn, of 1,000", fontsize=10, color=MUTED)
    for i, count in enumerate(counts):
        text(ax, cx, ytop - (i + 0.5) * rh, f"{count}", fontsize=10)
    gx = 4.7
    operation(ax, gx, 1.95, 1.7, 0.55, "greedy: argmax", fontsize=10)
    arrow(ax, (gx + 1.7, 2.23), (gx + 2.05, 2.23))
    box(ax, gx + 2.05, 1.95, 2.55, 0.55, "mat, every time", kind="highlight", fontsize=10)
    operation(ax, gx, 0.85, 1.7, 0.55, "sampling:\ntorch.multinomial", fontsize=10)
    arrow(ax, (gx + 1.7, 1.13), (gx + 2.05, 1.13))
    box(ax, gx + 2.05, 0.85, 2.55, 0.55, "each word about as often\nas its probability says", kind="tensor", fontsize=10)
    text(ax, 0.15, 0.2, "sampling gives varied text, but rare words can come up too (moon 3 times; violin could)",
         ha="left", fontsize=10, color=MUTED)
    return fig


@diagram(
    "ch05_sampling_filters",
    alt="""Temperature, top-k and top-p applied one after the other to the chapter's toy distribution, as
    next_token_probabilities does. At temperature 1 the probabilities are mat 0.4007, floor 0.2312, sofa 0.1800,
    keyboard 0.1039, windowsill 0.0599, roof 0.0199, moon 0.0030, violin 0.0013. Dividing the logits by
    temperature 1.5 flattens them (mat 0.3161, violin 0.0071). Top-k with k = 5 removes roof, moon and violin
    and renormalises the rest (mat 0.3369). Top-p with p = 0.9 keeps the most probable words until their sum
    reaches 0.9, which removes windowsill as well; the final distribution is mat 0.3723, sofa 0.2184, floor
    0.2580, keyboard 0.1514, and zero for the other four words.""",
)
def sampling_filters():
    fig, ax = canvas(9.5, 3.75)
    rh, ytop = 0.3, 2.95
    original = _softmax(TOY_LOGITS)
    tempered = _softmax(TOY_LOGITS, 1.5)
    keep_k = _top_k_keep(tempered, 5)
    after_k = _softmax(TOY_LOGITS, 1.5, keep_k)
    keep_p = [a and b for a, b in zip(keep_k, _top_p_keep(after_k, 0.9))]
    after_p = _softmax(TOY_LOGITS, 1.5, keep_p)
    _words(ax, 1.0, ytop, TOY_VOCAB, row_h=rh)
    panels = [("softmax, T = 1", original, None), ("÷ temperature 1.5", tempered, None),
              ("top-k, k = 5", after_k, keep_k), ("top-p, p = 0.9", after_p, keep_p)]
    x, pw = 1.1, 2.1
    for i, (title, values, kept) in enumerate(panels):
        px = x + i * pw
        text(ax, px + 0.05, 3.4, title, ha="left", fontsize=10, weight="bold",
             color=INK if i == 0 else ACCENT)
        _hbars(ax, px + 0.05, ytop, values, kept, scale=2.6, row_h=rh, kind="highlight" if i == 3 else "tensor")
        if i:
            arrow(ax, (px - 0.3, 3.4), (px - 0.02, 3.4), color=MUTED)
    text(ax, 0.15, 0.25, "the order in next_token_probabilities: temperature, then top-k, then top-p on what "
         "top-k left;\nthe survivors are renormalised to sum to 1", ha="left", fontsize=10, color=MUTED)
    return fig


@diagram(
    "ch05_top_p_nucleus",
    alt="""Top-p (nucleus) sampling with p = 0.9 on the toy distribution. The words are sorted by probability:
    mat 0.4007, floor 0.2312, sofa 0.1800, keyboard 0.1039, windowsill 0.0599, roof 0.0199, moon 0.0030, violin
    0.0013. Their running sums are 0.4007, 0.6319, 0.8119, 0.9158 and so on. A word is kept while the words
    ranked above it have not yet reached 0.9, so mat, floor, sofa and keyboard form the nucleus (their sum
    0.9158 is the first to pass 0.9) and the other four are dropped.""",
)
def top_p_nucleus():
    fig, ax = canvas(9.0, 3.3)
    probas = _softmax(TOY_LOGITS)
    order = sorted(range(8), key=lambda i: -probas[i])
    x0, w, y = 1.2, 0.95, 1.9
    text(ax, 0.1, 2.9, "sorted by probability, top-p with p = 0.9", ha="left", fontsize=10, weight="bold")
    cumulative = 0.0
    for j, i in enumerate(order):
        kept = cumulative < 0.9
        cumulative += probas[i]
        xx = x0 + j * w
        box(ax, xx, y, w - 0.06, 0.45, TOY_VOCAB[i], kind="highlight" if kept else "masked",
            fontsize=10)
        text(ax, xx + (w - 0.06) / 2, y - 0.25, f"{probas[i]:.4f}", fontsize=10)
        text(ax, xx + (w - 0.06) / 2, y - 0.6, f"{cumulative:.4f}", fontsize=10, color=ACCENT if kept else MUTED)
    text(ax, 0.1, y + 0.22, "word", ha="left", fontsize=10, weight="bold")
    text(ax, 0.1, y - 0.25, "probability", ha="left", fontsize=10, weight="bold")
    text(ax, 0.1, y - 0.6, "running sum", ha="left", fontsize=10, weight="bold")
    brace(ax, x0, x0 + 4 * w - 0.06, y + 0.55, "the nucleus: kept (0.9158 is the first sum to reach 0.9)",
          below=False, color=ACCENT)
    brace(ax, x0 + 4 * w, x0 + 8 * w - 0.06, y + 0.55, "dropped: set to −inf", below=False)
    text(ax, 0.1, 0.45, "a word is kept while the words ranked above it add up to less than p; the kept words are "
         "then renormalised", ha="left", fontsize=10, color=MUTED)
    return fig


@diagram(
    "ch05_lr_schedule",
    alt="""A sketch of the learning-rate schedule used for large pretraining runs: during warmup the learning
    rate rises linearly from almost zero to its peak; then it follows half a cosine wave down to a floor, often
    10 percent of the peak (min_ratio 0.1), reached at the last step. This chapter's small run keeps the
    learning rate constant at 4e-4 instead.""",
)
def lr_schedule():
    fig, ax = canvas(8.5, 3.3)
    x0, y0, x1, y1 = 0.9, 0.55, 8.0, 3.0
    arrow(ax, (x0, y0), (x1, y0))
    arrow(ax, (x0, y0), (x0, y1))
    text(ax, (x0 + x1) / 2, 0.22, "training step →", fontsize=10)
    text(ax, 0.45, 1.75, "learning\nrate", fontsize=10)
    total, warm, floor = 100, 10, 0.1
    steps = list(range(total))

    def lr(s):
        if s < warm:
            return (s + 1) / warm
        progress = (s - warm) / (total - 1 - warm)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    def px(s):
        return x0 + 0.1 + s / (total - 1) * (x1 - x0 - 0.4)

    def py(v):
        return y0 + v * 2.0

    ax.plot([px(s) for s in steps], [py(lr(s)) for s in steps], color="#2f6ea5", linewidth=2)
    ax.plot([x0, x1 - 0.3], [py(1)] * 2, color=MUTED, linewidth=0.8, linestyle=":")
    ax.plot([x0, x1 - 0.3], [py(floor)] * 2, color=MUTED, linewidth=0.8, linestyle=":")
    text(ax, px(warm) + 0.15, py(1) + 0.15, "peak learning rate", ha="left", fontsize=10)
    text(ax, px(14), py(floor) + 0.15, "floor: 10% of the peak (min_ratio=0.1)", ha="left", fontsize=10)
    ax.plot([px(warm)] * 2, [y0, py(1)], color=MUTED, linewidth=0.8, linestyle=":")
    text(ax, px(warm) + 0.1, py(0.55), "warmup\n(linear)", fontsize=10, color=ACCENT, ha="left")
    text(ax, px(55) + 0.2, py(0.62), "cosine decay", ha="left", fontsize=10, color=ACCENT)
    text(ax, px(warm), y0 - 0.12, "warmup_steps", fontsize=10, color=MUTED, va="top")
    text(ax, px(total - 1), y0 - 0.12, "total_steps", fontsize=10, color=MUTED, va="top")
    text(ax, x1, 3.15, "a sketch; this chapter's run uses a constant 4e-4", ha="right", fontsize=10, color=MUTED,
         style="italic")
    return fig


@diagram(
    "ch05_data_parallel",
    alt="""Data parallelism with four processes (ranks). The global batch is split into four shares, one per
    rank. Every rank holds a full copy of the same weights, runs the forward and backward pass on its own share
    and gets its own gradients. An all-reduce averages the four gradients and gives every rank the same average,
    so each rank's optimizer takes the same step and the four copies of the weights stay identical. The average
    equals the gradient of the whole global batch.""",
)
def data_parallel():
    fig, ax = canvas(9.5, 4.6)
    data(ax, 1.4, 4.0, 7.9, 0.42, "global batch of windows", fontsize=10)
    cw, x0 = 2.0, 1.4
    for r in range(4):
        x = x0 + r * cw
        c = x + (cw - 0.15) / 2
        arrow(ax, (c, 4.0), (c, 3.62), color=MUTED, linewidth=0.9)
        data(ax, x, 3.2, cw - 0.15, 0.42, f"rank {r}: share {r}", fontsize=10)
        arrow(ax, (c, 3.2), (c, 2.92), color=MUTED, linewidth=0.9)
        operation(ax, x, 2.35, cw - 0.15, 0.57, "forward + backward\n(same weights)", fontsize=10)
        arrow(ax, (c, 2.35), (c, 2.07), color=MUTED, linewidth=0.9)
        tensor(ax, x, 1.65, cw - 0.15, 0.42, f"gradients g{r}", fontsize=10)
        arrow(ax, (c, 1.65), (c, 1.47), color=MUTED, linewidth=0.9)
        arrow(ax, (c, 1.0), (c, 0.77), color=MUTED, linewidth=0.9)
        operation(ax, x, 0.2, cw - 0.15, 0.57, "optimizer.step()\nthe same step", fontsize=10)
    box(ax, x0, 1.0, 4 * cw - 0.15, 0.47, "all-reduce: every rank receives the average (g0 + g1 + g2 + g3) / 4",
        kind="highlight", fontsize=10)
    text(ax, 0.1, 3.41, "its own data", ha="left", fontsize=10, color=MUTED)
    text(ax, 0.1, 2.63, "a full model\ncopy each", ha="left", fontsize=10, color=MUTED)
    text(ax, 0.1, 1.23, "communicate", ha="left", fontsize=10, color=ACCENT)
    text(ax, 0.1, 0.48, "weights stay\nidentical", ha="left", fontsize=10, color=MUTED)
    return fig


@diagram(
    "ch05_checkpoint_contents",
    alt="""What section 6 writes to the checkpoints folder. The checkpoint file ch05_verdict_checkpoint.pth,
    written by torch.save as a pickle, holds four entries: config (a plain dictionary), model_state_dict (every
    weight by name: 162 million float32 numbers, about 650 MB at full size), optimizer_state_dict (AdamW's two
    running averages per weight and its step count, about 1.3 GB) and history (steps, tokens seen, losses and
    samples as lists). In all it is about three times the size of the weights. The safetensors file holds the
    weights only, about 650 MB. Loading with torch.load and weights_only=True rebuilds only tensors and plain
    containers and refuses anything else, while weights_only=False would run whatever code the file names.""",
)
def checkpoint_contents():
    fig, ax = canvas(9.5, 4.2)
    box(ax, 0.15, 0.85, 5.3, 3.0, "", kind="plain")
    text(ax, 0.3, 3.6, "ch05_verdict_checkpoint.pth", ha="left", fontsize=10, weight="bold")
    text(ax, 0.3, 3.33, "torch.save: one pickle, ≈ 3 × the weights (1.95 GB at full size)", ha="left",
         fontsize=10, color=MUTED)
    data(ax, 0.35, 2.65, 4.9, 0.45, "config: a plain dict (GPTConfig's fields)", fontsize=10)
    parameter(ax, 0.35, 2.05, 4.9, 0.5, "model_state_dict: every weight by name\n162M float32 numbers ≈ 650 MB",
              fontsize=10)
    tensor(ax, 0.35, 1.45, 4.9, 0.5, "optimizer_state_dict: AdamW's 2 averages\nper weight + step count ≈ 1.3 GB",
              fontsize=10)
    data(ax, 0.35, 0.95, 4.9, 0.4, "history: steps, tokens seen, losses, samples", fontsize=10)
    text(ax, 2.8, 0.55, "to resume training: all four", fontsize=10, color=ACCENT)
    box(ax, 5.75, 2.9, 3.6, 0.95, "", kind="plain")
    text(ax, 5.9, 3.6, "ch05_verdict_model.safetensors", ha="left", fontsize=10, weight="bold")
    parameter(ax, 5.9, 3.0, 3.3, 0.45, "weights only ≈ 650 MB", fontsize=10)
    text(ax, 7.55, 2.65, "to use or share the model", fontsize=10, color=ACCENT)
    operation(ax, 5.75, 1.55, 3.6, 0.55, "torch.load(path, weights_only=True)", fontsize=10)
    box(ax, 5.75, 0.35, 3.6, 0.85, "rebuilds only tensors, dicts, lists,\nnumbers, strings; anything else:\n"
        "UnpicklingError", kind="highlight", fontsize=10)
    arrow(ax, (5.45, 1.82), (5.75, 1.82))
    arrow(ax, (7.55, 1.55), (7.55, 1.2))
    text(ax, 0.15, 0.2, "weights_only=False would run any code the file names: never for files from elsewhere",
         ha="left", fontsize=10, color=ACCENT)
    return fig


# ---- the companion notebooks: loading GPT-2, and fast generation ----

def _frame(ax, x, y, w, h, color=MUTED):
    """A dashed outline that groups the rows inside it (here: one transformer block)."""
    ax.add_patch(patches.FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0,rounding_size=0.12", facecolor="none",
                                        edgecolor=color, linewidth=1.1, linestyle="--", zorder=0))


def _named(ax, x, y, w, h, name, shape, kind):
    """A weight's box: name on the left, shape on the right, both monospaced; returns (left, right, mid_y)."""
    box(ax, x, y, w, h, kind=kind)
    ax.text(x + 0.1, y + h / 2, name, ha="left", va="center", fontsize=10, color=INK, family=MONO)
    ax.text(x + w - 0.1, y + h / 2, shape, ha="right", va="center", fontsize=10, color=MUTED, family=MONO)
    return x, x + w, y + h / 2


@diagram(
    "ch05_gpt2_weight_mapping",
    alt="""How the tensors in OpenAI's GPT-2 small checkpoint map onto the names of our GPTModel, one row per
    tensor, GPT-2's name on the left and ours on the right, with shapes. wte (50257, 768) becomes tok_emb and
    wpe (1024, 768) becomes pos_emb: only renamed. Inside one transformer block, the same for every i from 0
    to 11: h.i.ln_1 becomes trf_blocks.i.norm1, renamed, its weight and bias becoming scale and shift.
    h.i.attn.c_attn, one (768, 2304) matrix, is split in three along its columns (0 to 767, 768 to 1535,
    1536 to 2303) and each third is transposed into att.W_query, att.W_key and att.W_value, each (768, 768);
    this split is highlighted as the step easiest to get wrong. h.i.attn.c_proj is transposed into
    att.out_proj; it is square, so a forgotten transpose would still fit. h.i.ln_2 becomes norm2, renamed.
    h.i.mlp.c_fc (768, 3072) is transposed into ff.layers.0 (3072, 768) and h.i.mlp.c_proj (3072, 768) into
    ff.layers.2 (768, 3072). ln_f becomes final_norm, renamed. GPT-2 has no output head of its own: out_head
    (50257, 768) receives a copy of wte (tied weights). Transposing is needed because GPT-2's Conv1D layers
    store a weight as (in, out) and nn.Linear stores (out, in); the biases are copied as they are, c_attn's
    split in three like its weight.""",
)
def gpt2_weight_mapping():
    fig, ax = canvas(9.85, 7.9)
    lx, lw, rx, rw, h = 0.45, 3.0, 6.1, 3.55, 0.36  # left and right columns, box height
    pitch, top = 0.5, 7.15  # row spacing; the centre of the first row
    mid = (lx + lw + rx) / 2  # where the arrow labels go

    def y_of(i, extra=0.0):
        return top - i * pitch - extra

    text(ax, lx + lw / 2, 7.65, "OpenAI's GPT-2 checkpoint (124M)", fontsize=10, weight="bold")
    text(ax, mid, 7.65, "what the loader does", fontsize=10, weight="bold")
    text(ax, rx + rw / 2, 7.65, "our GPTModel (qkv_bias=True)", fontsize=10, weight="bold")

    def pair(y, gpt2, gpt2_shape, ours, our_shape, label, kind="parameter"):
        _, left_end, _ = _named(ax, lx, y - h / 2, lw, h, gpt2, gpt2_shape, kind)
        _named(ax, rx, y - h / 2, rw, h, ours, our_shape, kind)
        arrow(ax, (left_end, y), (rx, y))
        text(ax, mid, y + 0.1, label, fontsize=10, color=MUTED, va="bottom")

    pair(y_of(0), "wte", "(50257, 768)", "tok_emb", "(50257, 768)", "rename")
    pair(y_of(1), "wpe", "(1024, 768)", "pos_emb", "(1024, 768)", "rename")

    gap = 0.4  # the block's frame takes a little room above and below its rows
    block_top = y_of(2, gap) + h / 2 + 0.34
    pair(y_of(2, gap), "h.{i}.ln_1", "weight, bias (768,)", "trf_blocks.{i}.norm1", "scale, shift (768,)", "rename")

    # c_attn: one matrix, three projections side by side; split along the columns, each third transposed
    yq, yk, yv = y_of(3, gap), y_of(4, gap), y_of(5, gap)
    _, left_end, _ = _named(ax, lx, yk - h / 2, lw, h, "h.{i}.attn.c_attn", "(768, 2304)", "highlight")
    bus = left_end + 1.2
    ax.plot([left_end, bus], [yk, yk], color=INK, linewidth=1.3, solid_capstyle="butt")
    ax.plot([bus, bus], [yv, yq], color=INK, linewidth=1.3, solid_capstyle="butt")
    for y, name, columns in ((yq, "W_query", "columns 0–767"), (yk, "W_key", "768–1535"),
                             (yv, "W_value", "1536–2303")):
        _named(ax, rx, y - h / 2, rw, h, f"trf_blocks.{{i}}.att.{name}", "(768, 768)", "highlight")
        arrow(ax, (bus, y), (rx, y))
        text(ax, (bus + rx) / 2, y + 0.07, columns, fontsize=10, color=MUTED, va="bottom", family=MONO)
    text(ax, (left_end + bus) / 2 - 0.05, yk + 0.09, "split in 3\n+ transpose", fontsize=10, color=ACCENT, va="bottom",
         weight="bold")

    pair(y_of(6, gap), "h.{i}.attn.c_proj", "(768, 768)", "trf_blocks.{i}.att.out_proj", "(768, 768)", "transpose")
    pair(y_of(7, gap), "h.{i}.ln_2", "weight, bias (768,)", "trf_blocks.{i}.norm2", "scale, shift (768,)", "rename")
    pair(y_of(8, gap), "h.{i}.mlp.c_fc", "(768, 3072)", "trf_blocks.{i}.ff.layers.0", "(3072, 768)", "transpose")
    pair(y_of(9, gap), "h.{i}.mlp.c_proj", "(3072, 768)", "trf_blocks.{i}.ff.layers.2", "(768, 3072)", "transpose")
    block_bottom = y_of(9, gap) - h / 2 - 0.12
    _frame(ax, 0.33, block_bottom, 9.44, block_top - block_bottom)
    text(ax, 0.45, block_top - 0.14, "one transformer block: the same for every i = 0 … 11", ha="left", fontsize=10,
         color=MUTED)

    after = gap + 0.25
    pair(y_of(10, after), "ln_f", "weight, bias (768,)", "final_norm", "scale, shift (768,)", "rename")

    # GPT-2 has no head of its own: the logits reuse wte, so out_head gets a copy of it
    y_head = y_of(11, after)
    _named(ax, rx, y_head - h / 2, rw, h, "out_head", "(50257, 768)", "parameter")
    y_wte = y_of(0)
    ax.plot([lx, 0.18, 0.18, rx - 0.3], [y_wte, y_wte, y_head, y_head], color=INK, linewidth=1.3,
            solid_capstyle="butt")
    arrow(ax, (rx - 0.3, y_head), (rx, y_head))
    text(ax, mid, y_head + 0.1, "copy (tied)", fontsize=10, color=MUTED, va="bottom")
    text(ax, lx, y_head + 0.1, "no output head in the file: logits reuse wte", ha="left", fontsize=10,
         color=MUTED, va="bottom", style="italic")

    for y, words in ((0.56, "transpose: GPT-2's Conv1D stores a weight as (in, out) and computes x @ W; nn.Linear stores "
                              "(out, in) and computes x @ W.T."),
                     (0.34, "Shapes are the weights'. Every bias is copied as it is; c_attn's (2304,) is split in 3 "
                            "like its weight."),
                     (0.12, "attn.c_proj is square: a missing transpose still fits.")):
        text(ax, 0.18, y, words, ha="left", fontsize=10, color=MUTED)
    return fig


def _slot(ax, x, y, size, label, kind, hatch=None):
    """One position of a keys tensor: a square cell, its label in the middle."""
    fill, edge, _ = KINDS[kind]
    ax.add_patch(patches.Rectangle((x, y), size, size, facecolor=fill, edgecolor=edge, linewidth=1.1, hatch=hatch))
    if label:
        ax.text(x + size / 2, y + size / 2, label, ha="center", va="center", fontsize=10, color=INK, family=FONT)


@diagram(
    "ch05_static_kv_cache",
    alt="""One attention layer's cached keys over three decoding steps, after a prompt of four tokens, in two
    panels. Left, chapter 4's KVCache: every step glues the new key onto the old ones with torch.cat, which
    allocates a new, longer tensor and copies all earlier keys into it: 5 positions at step 1, 6 at step 2,
    7 at step 3, shapes (1, 12, 5, 64), (1, 12, 6, 64) and (1, 12, 7, 64). So the shape changes every step.
    Right, the StaticKVCache: one tensor of 8 slots (max_len, which is the context length by default), shape
    (1, 12, 8, 64), allocated once. At
    each step the new key is written in place at the slot given by position, a tensor holding 4, then 5,
    then 6; earlier keys stay where they are, and the slots after the position are hidden from attention by
    the future mask (drawn grey and hatched). The tensor and its shape are the same at every step, so the
    step is compiled once and replayed as a CUDA graph. Values are cached the same way, in every layer.""",
)
def static_kv_cache():
    fig, ax = canvas(9.8, 5.75)
    c, prompt, max_len = 0.42, 4, 8  # cell size, prompt length, slots of the static cache
    lx, rx = 1.05, 5.85  # where each panel's tensors start
    rows = [4.2, 3.0, 1.8]  # bottom of each step's cells

    ax.plot([5.0, 5.0], [0.6, 5.6], color=MUTED, linewidth=0.8, linestyle=":")
    text(ax, 0.15, 5.52, "chapter 4's KVCache: append with torch.cat", ha="left", fontsize=10, weight="bold")
    text(ax, 0.15, 5.32, "one layer's keys after each step (values alike)", ha="left", va="top", fontsize=10,
         color=MUTED)
    text(ax, 5.2, 5.52, "StaticKVCache: one tensor, written in place", ha="left", fontsize=10, weight="bold")
    text(ax, 5.2, 5.32, f"one layer's keys, (1, 12, {max_len}, 64), allocated once:\nmax_len = {max_len} slots here "
         "(context_length by default)", ha="left", va="top", fontsize=10, color=MUTED)
    for j in range(max_len):
        ax.text(rx + (j + 0.5) * c, rows[0] + c + 0.08, str(j), ha="center", va="bottom", fontsize=10, color=MUTED,
                family=MONO)
    text(ax, rx - 0.1, rows[0] + c + 0.15, "slot", ha="right", fontsize=10, color=MUTED)

    for step, y in enumerate(rows, start=1):
        new = prompt + step - 1  # the position decoded in this step (0-based)
        text(ax, 0.15, y + c / 2, f"step {step}", ha="left", fontsize=10, weight="bold")

        # left: a new tensor of new + 1 positions, the earlier keys copied into it
        for j in range(new + 1):
            _slot(ax, lx + j * c, y, c, f"k{j}", "highlight" if j == new else "tensor")
        ax.text(lx, y - 0.07, f"(1, 12, {new + 1}, 64): a new tensor", ha="left", va="top", fontsize=10,
                color=MUTED, family=MONO)
        if step > 1:
            x = lx + 0.35
            arrow(ax, (x, y + c + 0.5), (x, y + c + 0.05), color=MUTED, linewidth=1.0)
            ax.text(x + 0.12, y + c + 0.27, f"torch.cat: copy k0..k{new - 1}, add k{new}", ha="left",
                    va="center", fontsize=10, color=MUTED, family=FONT)

        # right: the same slots every step; the new key written at `position`, the later slots hidden
        for j in range(max_len):
            if j < new:
                _slot(ax, rx + j * c, y, c, f"k{j}", "tensor")
            elif j == new:
                _slot(ax, rx + j * c, y, c, f"k{j}", "highlight")
            else:
                _slot(ax, rx + j * c, y, c, "", "masked", hatch="////")
        target = rx + (new + 0.5) * c
        label_y = y - 0.3
        ax.text(rx, label_y, f"position = tensor({new})", ha="left", va="center", fontsize=10, color=INK,
                family=MONO)
        ax.plot([rx + 1.72, target], [label_y, label_y], color=INK, linewidth=1.0, solid_capstyle="butt")
        arrow(ax, (target, label_y), (target, y - 0.02), linewidth=1.0)
        if step == 1:
            brace(ax, rx + (new + 1) * c + 0.03, rx + max_len * c - 0.03, y - 0.08, "masked: the future",
                  fontsize=10)

    text(ax, 0.15, 1.05, "torch.cat: new tensor every step, shape changes", ha="left", fontsize=10, color=ACCENT)
    text(ax, 5.2, 1.05, "written in place; same shape every step\n→ compiled once, replayed as a CUDA graph",
         ha="left", fontsize=10, color=ACCENT)

    legend_y = 0.18
    _slot(ax, 0.15, legend_y, 0.24, "", "highlight")
    text(ax, 0.47, legend_y + 0.12, "this step's new key", ha="left", fontsize=10)
    _slot(ax, 2.2, legend_y, 0.24, "", "tensor")
    text(ax, 2.52, legend_y + 0.12, "keys of earlier steps", ha="left", fontsize=10)
    _slot(ax, 4.4, legend_y, 0.24, "", "masked", hatch="////")
    text(ax, 4.72, legend_y + 0.12, "a slot after position: not attended to", ha="left", fontsize=10)
    text(ax, 9.7, legend_y + 0.12, "GPT-2 small: 12 heads of 64", ha="right", fontsize=10, color=MUTED)
    return fig


@diagram(
    "ch05_hf_name_map",
    alt="""How load_hf_checkpoint renames a Hugging Face Llama 3 or Qwen3 checkpoint's tensors to our GPTModel's
    parameter names, one row per tensor, the Hub's name on the left and ours on the right. model.embed_tokens
    becomes tok_emb, model.norm becomes final_norm and lm_head becomes out_head (a tied head loads nothing of its
    own). In every block i, model.layers.{i}. becomes trf_blocks.{i}.: self_attn.q_proj, k_proj, v_proj and
    o_proj become att.W_query, W_key, W_value and out_proj; self_attn.q_norm and k_norm (Qwen3's QK-norm) become
    att.q_norm and att.k_norm; mlp.gate_proj, up_proj and down_proj become ff.gate, ff.up and ff.down;
    input_layernorm and post_attention_layernorm become norm1 and norm2. Norm weights become scales. Tensors
    are only renamed, never transposed.""",
)
def hf_name_map():
    from shared.open_weights import BLOCK_NAMES, TOP_NAMES  # the loader's own table, so the picture cannot drift

    block = [(hub, ours) for ours, hub in BLOCK_NAMES.items() if not ours.endswith(".bias")]
    top = [(hub, ours) for ours, hub in TOP_NAMES.items()]
    fig, ax = canvas(10.0, 1.75 + 0.36 * (len(block) + len(top)))
    H = fig.get_size_inches()[1]
    lx, rx, pitch = 4.55, 5.45, 0.36  # the Hub's names end at lx, ours start at rx

    def pair(y, hub, ours, note=""):
        text(ax, lx, y, hub, ha="right", fontsize=10, family=MONO)
        arrow(ax, (lx + 0.1, y), (rx - 0.1, y))
        text(ax, rx, y, ours, ha="left", fontsize=10, family=MONO)
        if note:
            text(ax, 9.85, y, note, ha="right", fontsize=10, color=ACCENT)

    text(ax, lx, H - 0.3, "Hugging Face (Llama 3, Qwen3)", ha="right", fontsize=11, weight="bold")
    text(ax, rx, H - 0.3, "our GPTModel", ha="left", fontsize=11, weight="bold")
    y = H - 0.75
    for hub, ours in top[:1]:
        pair(y, hub, ours)
    y -= pitch + 0.25
    frame_top = y + pitch / 2 + 0.05
    text(ax, 0.15, y, "every block i:", ha="left", fontsize=10, color=MUTED)
    text(ax, 0.15, y - pitch, "model.layers.{i}.", ha="left", fontsize=10, family=MONO, color=MUTED)
    text(ax, 0.15, y - 2 * pitch, "→ trf_blocks.{i}.", ha="left", fontsize=10, family=MONO, color=MUTED)
    for hub, ours in block:
        pair(y, hub, ours, "Qwen3 only (QK-norm)" if "norm" in ours and ours.startswith("att.") else "")
        y -= pitch
    ax.add_patch(patches.FancyBboxPatch((0.08, y + pitch / 2 - 0.05), 9.84, frame_top - y - pitch / 2 + 0.05,
                                        boxstyle="round,pad=0,rounding_size=0.1", facecolor="none", edgecolor=MUTED,
                                        linewidth=1.0, linestyle="--"))
    y -= 0.25
    for hub, ours in top[1:]:
        pair(y, hub, ours, "none if tied to tok_emb" if ours.startswith("out_head") else "")
        y -= pitch
    text(ax, 0.15, 0.25, "renamed only: the Hub stores nn.Linear weights as (out, in) too, so nothing is transposed",
         ha="left", fontsize=10, color=MUTED)
    return fig


# The first tokens of a line of the play, with their GPT-2 ids (tiktoken's "gpt2" encoding gives exactly these).
SHAKESPEARE_PIECES = [("ROM", 33676), ("EO", 4720), (":", 25), ("\\n", 198), ("But", 1537), (" soft", 2705),
                      (",", 11), (" what", 644)]  # "\\n": the newline token, written visibly


@diagram(
    "ch05_compact_vocabulary",
    alt="""The compact vocabulary of the Tiny Shakespeare companion, on a toy corpus made of the first eight
    tokens of "ROMEO: But soft, what": ROM, EO, colon, newline, But, soft, comma, what. GPT-2's tokenizer gives
    them ids between 0 and 50,256 (33676, 4720, 25, 198, 1537, 2705, 11, 644). The ids that occur are sorted,
    and compact id i stands for the i-th smallest: gpt2_ids = [11, 25, 198, 644, 1537, 2705, 4720, 33676]
    maps a compact id back to GPT-2's, and compact_ids maps the other way, so the line encodes as 7, 6, 1, 2,
    4, 5, 0, 3. The model's embedding table and output head then need only K rows, one per id the corpus uses:
    on all of Tiny Shakespeare K is 11,706 instead of 50,257.""",
)
def compact_vocabulary():
    from shared.text import CompactVocabulary

    pieces, gpt2 = zip(*SHAKESPEARE_PIECES)
    vocab = CompactVocabulary(gpt2, tokenizer=object())  # only the renumbering is drawn: no tokenizer needed
    fig, ax = canvas(10.0, 5.0)
    x0, w, h = 2.3, 0.92, 0.44

    def labelled_row(y, label, note, cells, kind):
        text(ax, 0.15, y + h / 2 + 0.1, label, ha="left", fontsize=10, weight="bold", family=MONO)
        text(ax, 0.15, y + h / 2 - 0.17, note, ha="left", fontsize=10, color=MUTED)
        return row(ax, x0, y, cells, w=w, h=h, kind=kind, fontsize=10, family=MONO)

    text(ax, 0.15, 4.7, "A toy corpus: the first 8 tokens of a line of the play", ha="left", fontsize=11,
         weight="bold")
    labelled_row(3.85, "tokens", "GPT-2's tokenizer", [f"'{p}'" for p in pieces], "data")
    labelled_row(3.0, "GPT-2 ids", "0 .. 50,256", gpt2, "data")
    labelled_row(1.85, "compact ids", f"0 .. K-1 (K = {vocab.n_vocab})", [vocab.compact_ids[i] for i in gpt2], "tensor")
    for c in (0, 7):
        arrow(ax, (x0 + (c + 0.5) * w, 3.0), (x0 + (c + 0.5) * w, 1.85 + h))
    text(ax, x0 + 4 * w, 2.6, "encode: compact_ids[gpt2_id]", fontsize=10, color=ACCENT, family=MONO)
    # the map itself: the sorted GPT-2 ids, indexed by compact id
    labelled_row(0.75, "gpt2_ids", "sorted(set(ids))", vocab.gpt2_ids, "parameter")
    for i in range(vocab.n_vocab):
        text(ax, x0 + (i + 0.5) * w, 0.75 + h + 0.17, f"[{i}]", fontsize=10, color=MUTED, family=MONO)
    text(ax, x0 + 8 * w - 0.05, 1.55, "decode: gpt2_ids[compact_id]", ha="right", fontsize=10, color=ACCENT,
         family=MONO)
    text(ax, 0.15, 0.3, "On all of Tiny Shakespeare, K = 11,706 of GPT-2's 50,257 ids: the embedding table and the "
         "output head keep only those rows.", ha="left", fontsize=10, color=MUTED)
    return fig
