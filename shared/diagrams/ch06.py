"""Diagrams for chapter 06."""

from matplotlib import patches

from . import diagram
from .style import (
    ACCENT, INK, MONO, MUTED, arrow, box, brace, canvas, data, legend, operation, parameter, path_arrow, row, tensor, text,
)

# ---- small primitives used by chapters 6 and 7 (style.py stays as it is) ----


def vbrace(ax, x, y0, y1, label="", right=True, fontsize=10, color=MUTED):
    """A square bracket beside the span y0..y1 at x, with its label on the open side (right by default)."""
    tick = -0.08 if right else 0.08
    ax.plot([x + tick, x, x, x + tick], [y0, y0, y1, y1], color=color, linewidth=1.1)
    if label:
        ax.text(x + (0.1 if right else -0.1), (y0 + y1) / 2, label, ha="left" if right else "right", va="center",
                fontsize=fontsize, color=color, family="DejaVu Sans")


def plus_node(ax, x, y, r=0.17):
    """A circle with a plus sign: two paths are added here. Returns its centre."""
    ax.add_patch(patches.Circle((x, y), r, facecolor="white", edgecolor=INK, linewidth=1.3))
    ax.text(x, y, "+", ha="center", va="center", fontsize=13, color=INK)
    return (x, y)


# ---- chapter 6 ----


@diagram(
    "ch06_data_pipeline",
    alt="""From the SMS Spam Collection to batches. The file holds 5,574 messages, 4,827 ham and 747 spam.
    balance_classes keeps all 747 spam messages and 747 randomly chosen ham messages, 1,494 in all.
    split_rows shuffles them with seed 123 and cuts them 70/10/20 into train.csv (1,045 messages),
    validation.csv (149) and test.csv (300). For each split, SpamDataset tokenizes every message and cuts or
    pads it to 92 tokens (the longest training message) with the end-of-text token, id 50256, giving a
    tensor of token ids and one class id per message (0 ham, 1 spam). A DataLoader serves batches of 8:
    inputs of shape (8, 92) and labels of shape (8,); 130 training, 19 validation and 38 test batches.""",
)
def data_pipeline():
    fig, ax = canvas(9.6, 4.3)
    # row 1: the file, balancing, splitting
    y, h = 2.95, 0.75
    data(ax, 0.15, y, 1.8, h, "SMS Spam Collection\n5,574 messages", fontsize=10)
    text(ax, 1.05, y - 0.2, "4,827 ham, 747 spam", fontsize=10, color=MUTED)
    operation(ax, 2.35, y + 0.05, 1.5, h - 0.1, "balance_classes", fontsize=10)
    text(ax, 3.1, y - 0.3, "all 747 spam +\n747 random ham", fontsize=10, color=MUTED)
    data(ax, 4.25, y, 1.45, h, "1,494 messages\nhalf of them spam", fontsize=10)
    operation(ax, 6.1, y + 0.05, 1.3, h - 0.1, "split_rows", fontsize=10)
    text(ax, 6.75, y - 0.3, "shuffle (seed 123),\ncut 70 / 10 / 20 %", fontsize=10, color=MUTED)
    for x0, x1 in [(1.95, 2.35), (3.85, 4.25), (5.7, 6.1)]:
        arrow(ax, (x0, y + h / 2), (x1, y + h / 2))
    splits = [("train.csv", "1,045"), ("validation.csv", "149"), ("test.csv", "300")]
    for i, (name, n) in enumerate(splits):
        by = 3.7 - i * 0.52
        data(ax, 7.85, by, 1.6, 0.42, f"{name}  {n}", fontsize=10)
        arrow(ax, (7.4, y + h / 2), (7.85, by + 0.21), linewidth=1.0)
    # the connection down to row 2
    path_arrow(ax, [(8.65, 2.66), (8.65, 2.2), (1.05, 2.2), (1.05, 1.75)], label="for each split: read_rows_csv",
               label_at=(1.2, 1.98), fontsize=10)
    # row 2: dataset, loader, batch
    y2, h2 = 1.0, 0.75
    data(ax, 0.15, y2, 1.8, h2, "(label, text) rows", fontsize=10)
    operation(ax, 2.35, y2 + 0.05, 1.5, h2 - 0.1, "SpamDataset", fontsize=10)
    text(ax, 3.1, y2 - 0.38, "tokenize; cut or pad every\nmessage to 92 tokens with\n<|endoftext|> (id 50256)",
         fontsize=10, color=MUTED)
    tensor(ax, 4.25, y2, 1.45, h2, "token ids\n+ class ids", fontsize=10)
    text(ax, 4.975, y2 - 0.3, "0 = ham, 1 = spam", fontsize=10, color=MUTED)
    operation(ax, 6.1, y2 + 0.05, 1.3, h2 - 0.1, "DataLoader", fontsize=10)
    text(ax, 6.75, y2 - 0.38, "batches of 8\n(training: shuffled,\nlast partial dropped)", fontsize=10, color=MUTED)
    tensor(ax, 7.85, y2, 1.6, h2, "one batch", fontsize=10)
    text(ax, 8.65, y2 - 0.3, "inputs (8, 92)\nlabels (8,)", fontsize=10, color=MUTED, family=MONO)
    for x0, x1 in [(1.95, 2.35), (3.85, 4.25), (5.7, 6.1), (7.4, 7.85)]:
        arrow(ax, (x0, y2 + h2 / 2), (x1, y2 + h2 / 2))
    text(ax, 9.45, 0.08, "130 training, 19 validation, 38 test batches", fontsize=10, color=ACCENT, ha="right",
         va="bottom")
    return fig


@diagram(
    "ch06_padding",
    alt="""Padding one message. "Call now to claim your prize!" is 7 GPT-2 tokens, ids 14134, 783, 284,
    1624, 534, 11596 and 0. To reach a length of 12 it is followed by 5 copies of the end-of-text token
    <|endoftext|>, id 50256, which GPT-2 already knows as the end of a text. The padding goes at the end, so
    the last position, the one the classifier reads, comes after the whole message. In the chapter's datasets
    every message is padded to 92 tokens, the length of the longest training message.""",
)
def padding():
    fig, ax = canvas(9.4, 2.55)
    text(ax, 0.25, 2.25, 'message: "Call now to claim your prize!"', ha="left", fontsize=10.5, weight="bold")
    ids = [14134, 783, 284, 1624, 534, 11596, 0] + [50256] * 5
    pieces = ["Call", "now", "to", "claim", "your", "prize", "!"] + ["<eot>"] * 5
    x0, y, w, h = 0.25, 1.1, 0.62, 0.46
    row(ax, x0, y, ids, w=w, h=h, kinds=["data"] * 7 + ["masked"] * 5, fontsize=10)
    for i, piece in enumerate(pieces):
        text(ax, x0 + (i + 0.5) * w, y + h + 0.16, piece, fontsize=10, color=MUTED, family=MONO)
    brace(ax, x0 + 0.02, x0 + 7 * w - 0.03, y - 0.1, "the message: 7 tokens")
    brace(ax, x0 + 7 * w + 0.03, x0 + 12 * w - 0.02, y - 0.1, "padding: 5 x <|endoftext|>, id 50256")
    arrow(ax, (x0 + 12 * w + 0.45, y + h / 2), (x0 + 12 * w + 0.04, y + h / 2), color=ACCENT)
    text(ax, x0 + 12 * w + 0.52, y + h / 2, "last position:\nthe classifier\nreads here", ha="left", fontsize=10,
         color=ACCENT)
    text(ax, 0.25, 0.35, "Padded to 12 here; in the chapter's datasets every message is padded to 92 tokens, "
         "the length of the longest training message.", ha="left", fontsize=10, color=MUTED)
    return fig


@diagram(
    "ch06_classification_head",
    alt="""The classifier made from GPT-2. A batch of token ids, shape (batch, 92), goes through GPT-2's
    body: the embeddings, the 12 transformer blocks and the final LayerNorm, giving hidden states of shape
    (batch, 92, 768), one row of 768 numbers per position. GPT-2's output head, which maps 768 numbers to
    50,257 token scores, is thrown away and replaced by a new linear layer from 768 to 2. It gives two scores
    for every position, shape (batch, 92, 2), and only the last position's row is kept: two scores, ham and
    spam, shape (batch, 2). The larger one is the predicted label; a softmax turns them into probabilities.""",
)
def classification_head():
    fig, ax = canvas(9.7, 3.9)
    mid = 1.7
    data(ax, 0.1, mid - 0.4, 0.95, 0.8, "token\nids", fontsize=10, shape="(batch, 92)")
    operation(ax, 1.35, mid - 1.0, 1.55, 2.0, "", fontsize=10)
    text(ax, 2.125, mid + 0.72, "GPT-2 body", fontsize=10, weight="bold")
    text(ax, 2.125, mid - 0.1, "embeddings\n12 transformer\nblocks\nfinal LayerNorm", fontsize=10)
    arrow(ax, (1.05, mid), (1.35, mid))
    arrow(ax, (2.9, mid), (3.25, mid))

    def stack(x, cells_per_row, label, shape, cell_w):
        """Rows for positions 1, 2, ..., 91, 92; the last one highlighted. Returns the last row's centre y."""
        labels = ["1", "2", None, "91", "92"]
        top = mid + 1.15
        text(ax, x + cells_per_row * cell_w / 2 + 0.2, top + 0.2, label, fontsize=10, weight="bold")
        for i, lab in enumerate(labels):
            ry = top - (i + 1) * 0.42
            if lab is None:
                text(ax, x + cells_per_row * cell_w / 2 + 0.2, ry + 0.2, "...", fontsize=11, color=MUTED)
                continue
            text(ax, x + 0.12, ry + 0.18, lab, fontsize=10, color=MUTED)
            kind = "highlight" if lab == "92" else "tensor"
            row(ax, x + 0.3, ry + 0.02, [""] * cells_per_row, w=cell_w, h=0.34, kind=kind)
        text(ax, x + cells_per_row * cell_w / 2 + 0.2, top - 5 * 0.42 - 0.15, shape, fontsize=10, color=MUTED,
             family=MONO)
        return top - 5 * 0.42 + 0.19

    last_y = stack(3.25, 4, "hidden states", "(batch, 92, 768)", 0.25)
    arrow(ax, (4.6, mid), (5.0, mid))
    parameter(ax, 5.0, mid - 0.45, 1.25, 0.9, "new head\nLinear(768, 2)", fontsize=10)
    box(ax, 5.0, mid + 1.1, 1.25, 0.65, "GPT-2's head\n768 \u2192 50,257", kind="masked", fontsize=10)
    arrow(ax, (5.625, mid + 1.1), (5.625, mid + 0.47), color=ACCENT, style="-|>", linewidth=1.0)
    text(ax, 5.7, mid + 0.78, "replaced", ha="left", fontsize=10, color=ACCENT)
    text(ax, 5.625, mid - 0.75, "applied at\nevery position", fontsize=10, color=MUTED)
    arrow(ax, (6.25, mid), (6.6, mid))
    stack(6.6, 2, "scores", "(batch, 92, 2)", 0.3)
    # keep the last row
    arrow(ax, (7.5, last_y), (8.15, last_y))
    text(ax, 7.82, last_y + 0.2, "last row", fontsize=10, color=MUTED)
    row(ax, 8.15, last_y - 0.22, ["ham", "spam"], w=0.7, h=0.44, kind="highlight", fontsize=10)
    text(ax, 8.85, last_y - 0.4, "(batch, 2)", fontsize=10, color=MUTED, family=MONO)
    text(ax, 8.85, last_y + 1.05, "larger score =\npredicted label;\nsoftmax gives\nprobabilities", fontsize=10,
         color=ACCENT)
    return fig


@diagram(
    "ch06_last_token",
    alt="""Why the classifier reads the last position. The message "Win a free cruise now" is 5 tokens,
    padded with 5 end-of-text tokens to 10. Above the tokens sit the model's 10 output positions. With causal
    attention, position 3 can only look at the first 3 tokens, "Win a free", so it has not seen the rest of
    the message. Position 10, the last, looks at all 10 tokens: it is the only position that has seen the
    whole message, so its scores decide the label.""",
)
def last_token():
    fig, ax = canvas(9.2, 3.5)
    tokens = ["Win", "a", "free", "cruise", "now"] + ["<eot>"] * 5
    x0, w = 1.05, 0.76
    ty, th, oy, oh = 0.6, 0.42, 2.2, 0.42
    text(ax, 0.1, ty + th / 2, "tokens", ha="left", fontsize=10, weight="bold")
    text(ax, 0.1, oy + oh / 2, "positions", ha="left", fontsize=10, weight="bold")
    row(ax, x0, ty, tokens, w=w, h=th, kinds=["data"] * 5 + ["masked"] * 5, fontsize=10)
    kinds = ["tensor"] * 9 + ["highlight"]
    row(ax, x0, oy, [str(i) for i in range(1, 11)], w=w, h=oh, kinds=kinds, fontsize=10)
    for j in range(10):  # what the last position attends to
        ax.plot([x0 + 9.5 * w, x0 + (j + 0.5) * w], [oy, ty + th], color=ACCENT, linewidth=1.0)
    for j in range(3):  # what position 3 attends to
        ax.plot([x0 + 2.5 * w, x0 + (j + 0.5) * w], [oy, ty + th], color=MUTED, linewidth=1.6, linestyle="--")
    brace(ax, x0 + 0.02, x0 + 5 * w - 0.03, ty - 0.08, "the message")
    brace(ax, x0 + 5 * w + 0.03, x0 + 10 * w - 0.02, ty - 0.08, "padding")
    text(ax, x0 + 2.5 * w, oy + oh + 0.35, 'position 3 has seen only "Win a free"', fontsize=10, color=MUTED)
    text(ax, x0 + 10 * w, oy + oh + 0.35, "position 10 has seen\nthe whole message", fontsize=10, color=ACCENT,
         ha="right")
    text(ax, 0.1, 3.3, "causal attention: each position looks only at the tokens up to itself", ha="left",
         fontsize=10, color=INK)
    return fig


@diagram(
    "ch06_frozen_trainable",
    alt="""Which parts of the classifier train. The model is drawn as a stack from the token ids up. The token
    and position embeddings and transformer blocks 1 to 11 are frozen (requires_grad is False): 117,350,400
    parameters that do not change. Transformer block 12 (trf_blocks[11] in the code), the final LayerNorm
    and the new 768-to-2 head are trainable: 7,090,946 parameters, 5.7% of the 124,441,346 in the
    model.""",
)
def frozen_trainable():
    fig, ax = canvas(6.3, 5.0)
    x, w, h, step = 0.3, 3.1, 0.38, 0.5
    layers = [
        ("token ids  (batch, 92)", "data"),
        ("token + position embeddings", "masked"),
        ("transformer block 1", "masked"),
        ("transformer block 2", "masked"),
        (None, None),
        ("transformer block 11", "masked"),
        ("transformer block 12  (trf_blocks[11])", "parameter"),
        ("final LayerNorm", "parameter"),
        ("new head: Linear(768, 2)", "parameter"),
    ]
    ys = []
    for i, (label, kind) in enumerate(layers):
        y = 0.15 + i * step
        ys.append(y)
        if label is None:
            text(ax, x + w / 2, y + h / 2, "...", fontsize=12, color=MUTED)
            continue
        box(ax, x, y, w, h, label, kind=kind, fontsize=10)
        if i > 0 and layers[i - 1][0] is not None:
            arrow(ax, (x + w / 2, y - step + h), (x + w / 2, y))
    vbrace(ax, x + w + 0.2, ys[1], ys[5] + h, "frozen: requires_grad = False\n117,350,400 parameters", fontsize=10)
    vbrace(ax, x + w + 0.2, ys[6], ys[8] + h, "trainable\n7,090,946 parameters\n(5.7% of 124,441,346)",
           fontsize=10, color=ACCENT)
    legend(ax, 0.3, 4.7, [("masked", "frozen"), ("parameter", "trained"), ("data", "data")])
    return fig


@diagram(
    "ch06_loss_all_vs_last",
    alt="""Two losses side by side. Left, chapter 5's pretraining loss: for the inputs "Win a free cruise",
    every position has a target, the next token ("a", "free", "cruise", "now"), each position's output is
    50,257 scores, and the loss is the mean of the 4 cross-entropies. Right, chapter 6's classification loss:
    for "Win a free cruise now", each position's output is 2 scores, but only the last position is used; its
    two scores are compared with the message's label (spam, class 1), one cross-entropy per message. The
    other positions' scores are ignored. Accuracy asks whether the larger of the last position's two scores
    is the label.""",
)
def loss_all_vs_last():
    fig, ax = canvas(9.7, 4.3)
    ax.plot([4.62, 4.62], [0.2, 4.05], color="#cccccc", linewidth=1.0)
    # left: chapter 5
    text(ax, 0.15, 3.95, "Chapter 5: a target at every position", ha="left", fontsize=10.5, weight="bold")
    x0, w = 0.45, 0.98
    text(ax, x0, 3.45, "inputs", ha="left", fontsize=10, color=MUTED)
    row(ax, x0, 2.9, ["Win", "a", "free", "cruise"], w=w, h=0.42, kind="data", fontsize=10, gap=0.05)
    row(ax, x0, 1.85, ["50,257\nscores"] * 4, w=w, h=0.5, kind="tensor", fontsize=10, gap=0.05)
    text(ax, x0, 1.45, "targets: the next tokens", ha="left", fontsize=10, color=MUTED)
    row(ax, x0, 0.85, ["a", "free", "cruise", "now"], w=w, h=0.42, kind="highlight", fontsize=10, gap=0.05)
    for i in range(4):
        cx = x0 + i * (w + 0.05) + w / 2
        arrow(ax, (cx, 2.9), (cx, 2.35), linewidth=1.0)
    text(ax, 2.5, 0.45, "loss = mean of 4 cross-entropies", fontsize=10, color=ACCENT)
    # right: chapter 6
    text(ax, 4.8, 3.95, "Chapter 6: one target per message", ha="left", fontsize=10.5, weight="bold")
    x1, w1 = 4.85, 0.88
    text(ax, x1, 3.45, "inputs", ha="left", fontsize=10, color=MUTED)
    row(ax, x1, 2.9, ["Win", "a", "free", "cruise", "now"], w=w1, h=0.42, kind="data", fontsize=10, gap=0.05)
    kinds = ["masked"] * 4 + ["highlight"]
    row(ax, x1, 1.85, ["2 scores"] * 5, w=w1, h=0.5, kinds=kinds, fontsize=10, gap=0.05)
    for i in range(5):
        cx = x1 + i * (w1 + 0.05) + w1 / 2
        arrow(ax, (cx, 2.9), (cx, 2.35), linewidth=1.0)
    text(ax, x1 + 2 * (w1 + 0.05), 1.55, "not used", fontsize=10, color=MUTED)
    last_x = x1 + 4 * (w1 + 0.05)
    box(ax, last_x + w1 - 1.45, 0.85, 1.45, 0.42, "label: spam (1)", kind="highlight", fontsize=10)
    arrow(ax, (last_x + w1 / 2, 1.85), (last_x + w1 / 2, 1.27), color=MUTED, linewidth=1.0)
    text(ax, last_x + w1 - 1.5, 1.06, "target:", ha="right", fontsize=10, color=MUTED)
    text(ax, 7.15, 0.45, "loss = cross-entropy of the last 2 scores vs the label", fontsize=10, color=ACCENT)
    text(ax, 7.15, 0.15, "accuracy: is the larger of the 2 scores the label?", fontsize=10, color=MUTED)
    return fig


@diagram(
    "ch06_training_loop",
    alt="""The classifier's training loop: chapter 5's train_model, given the classification loss and an
    accuracy hook. For each batch of 8 messages (inputs of shape (8, 92), labels of
    shape (8,)): zero the gradients, run the model and keep the last position's scores, shape (8, 2), compute
    the cross-entropy against the labels, backpropagate, and let AdamW (learning rate 5e-5, weight decay 0.1)
    update the trainable weights. Then the next batch: 130 batches per epoch, 5 epochs, 650 steps. Every 50
    steps the loop measures the loss on 5 batches of the training and validation sets, and after each epoch
    the accuracy on 5 batches of each.""",
)
def training_loop():
    fig, ax = canvas(9.8, 3.55)
    y, h, w, gap = 2.05, 0.8, 1.38, 0.26
    steps = [("batch of 8\nmessages", "data"), ("zero_grad()", "operation"),
             ("model:\nlast-position\nscores (8, 2)", "operation"), ("cross-entropy\nvs labels (8,)", "operation"),
             ("backward()", "operation"), ("step():\nAdamW, lr 5e-5,\nweight decay 0.1", "operation")]
    xs = [0.15 + i * (w + gap) for i in range(len(steps))]
    for x, (label, kind) in zip(xs, steps):
        box(ax, x, y, w, h, label, kind=kind, fontsize=10)
    for a, b in zip(xs, xs[1:]):
        arrow(ax, (a + w, y + h / 2), (b, y + h / 2))
    path_arrow(ax, [(xs[-1] + w / 2, y), (xs[-1] + w / 2, y - 0.4), (xs[0] + w / 2, y - 0.4), (xs[0] + w / 2, y)],
               color=ACCENT)
    text(ax, (xs[0] + xs[-1] + w) / 2, y - 0.6, "next batch: 130 per epoch, 5 epochs = 650 steps", fontsize=10,
         color=ACCENT)
    text(ax, 0.15, 0.95, "measured on the side, without gradients:", ha="left", fontsize=10, color=MUTED)
    operation(ax, 0.15, 0.15, 4.5, 0.6, "every 50 steps: the loss on 5 batches\nof the training and validation sets",
              fontsize=10)
    operation(ax, 5.1, 0.15, 4.5, 0.6, "after each epoch (the hook): the accuracy on 5\nbatches of the training and validation sets",
              fontsize=10)
    text(ax, 4.9, 3.3, "train_model(..., loss_fn=classifier_loss, on_epoch_end=accuracy hook)", fontsize=10,
         weight="bold", family=MONO)
    return fig


@diagram(
    "ch06_feature_cache",
    alt="""The frozen-feature cache used on a CPU. Once, before training and without gradients, every message's
    token ids go through the embeddings and the frozen blocks 1 to 11, and the resulting hidden states, shape
    (messages, 92, 768), are stored: 1,045 training, 149 validation and 300 test messages. Then, at every step
    of every epoch, ClassifierTop runs only block 12, the final LayerNorm and the head on the stored hidden
    states, and the loss at the last position is backpropagated through those three parts alone. A check
    confirms that the top on the stored states gives the same scores as the whole model on the tokens.""",
)
def feature_cache():
    fig, ax = canvas(9.6, 4.1)
    text(ax, 0.15, 3.85, "once, before training (no gradients): frozen_features", ha="left", fontsize=10,
         weight="bold")
    y1, h = 2.6, 0.8
    data(ax, 0.15, y1, 1.3, h, "token ids", fontsize=10, shape="(messages, 92)")
    box(ax, 1.85, y1, 1.9, h, "embeddings +\nblocks 1-11 (frozen)", kind="masked", fontsize=10)
    tensor(ax, 4.15, y1, 1.6, h, "hidden states", fontsize=10, shape="(messages, 92, 768)")
    box(ax, 6.2, y1, 3.2, h, "stored on the CPU:\n1,045 train, 149 validation,\n300 test messages", kind="highlight",
        fontsize=10)
    for a, b in [(1.45, 1.85), (3.75, 4.15), (5.75, 6.2)]:
        arrow(ax, (a, y1 + h / 2), (b, y1 + h / 2))
    text(ax, 0.6, 1.72, "every step of every epoch: ClassifierTop", ha="left", fontsize=10, weight="bold")
    y2 = 0.55
    tensor(ax, 0.15, y2, 1.6, h, "stored hidden\nstates", fontsize=10)
    parameter(ax, 2.15, y2, 1.25, h, "block 12", fontsize=10)
    parameter(ax, 3.8, y2, 1.3, h, "final\nLayerNorm", fontsize=10)
    parameter(ax, 5.5, y2, 1.3, h, "head\n768 \u2192 2", fontsize=10)
    operation(ax, 7.2, y2, 2.2, h, "last position:\ncross-entropy", fontsize=10)
    for a, b in [(1.75, 2.15), (3.4, 3.8), (5.1, 5.5), (6.8, 7.2)]:
        arrow(ax, (a, y2 + h / 2), (b, y2 + h / 2))
    path_arrow(ax, [(7.8, y2 + h), (7.8, 3.0 - 1.55), (2.775, 1.45), (2.775, y2 + h)], color=ACCENT)
    text(ax, 5.25, 1.58, "gradients reach only the top", fontsize=10, color=ACCENT)
    path_arrow(ax, [(7.8, y1), (7.8, 2.12), (0.4, 2.12), (0.4, y2 + h)], color=MUTED, linewidth=1.1)
    text(ax, 0.15, 0.2, "checked: the same scores as the whole model on the tokens (largest difference 0.0)",
         ha="left", fontsize=10, color=MUTED)
    return fig


@diagram(
    "ch06_lora",
    alt="""A LoRA layer. The input x, with 768 numbers per position, takes two paths. On the first it is
    multiplied by the original weight W, 768 by 768, which is frozen. On the second it is multiplied by A, 768
    by 16, which starts random, then by B, 16 by 768, which starts at zero, and the result is scaled by alpha
    over r (16 / 16 = 1 here). The two results are added: x W + (alpha / r) x A B. W holds 589,824 frozen
    weights; A and B together hold 24,576 trained ones. Because B starts at zero, the layer at first computes
    exactly what the original did.""",
)
def lora():
    fig, ax = canvas(9.2, 4.3)
    tensor(ax, 0.15, 1.85, 0.8, 0.7, "x", fontsize=12, shape="(..., 768)")
    # the frozen path
    box(ax, 2.0, 2.95, 1.7, 0.85, "W  768 \u00d7 768\nfrozen", kind="masked", fontsize=10)
    tensor(ax, 4.55, 3.05, 0.9, 0.65, "x W", fontsize=10.5)
    path_arrow(ax, [(0.95, 2.2), (1.45, 2.2), (1.45, 3.375), (2.0, 3.375)])
    arrow(ax, (3.7, 3.375), (4.55, 3.375))
    # the low-rank path
    parameter(ax, 2.0, 0.25, 0.42, 1.5, "A", fontsize=11)
    text(ax, 2.52, 1.45, "768 \u00d7 16\nstarts random", ha="left", fontsize=10, color=MUTED)
    parameter(ax, 3.05, 0.45, 1.5, 0.42, "B", fontsize=11)
    text(ax, 3.8, 0.3, "16 \u00d7 768, starts at 0", fontsize=10, color=ACCENT, va="top")
    operation(ax, 4.85, 0.38, 0.95, 0.56, "\u00d7 \u03b1 / r", fontsize=10.5)
    path_arrow(ax, [(0.95, 2.2), (1.45, 2.2), (1.45, 1.0), (2.0, 1.0)])
    arrow(ax, (2.42, 0.66), (3.05, 0.66))
    arrow(ax, (4.55, 0.66), (4.85, 0.66))
    # the sum
    plus = plus_node(ax, 6.45, 2.2)
    path_arrow(ax, [(5.45, 3.375), (6.45, 3.375), (6.45, 2.37)])
    path_arrow(ax, [(5.8, 0.66), (6.45, 0.66), (6.45, 2.03)])
    tensor(ax, 7.0, 1.85, 2.05, 0.7, "x W + (\u03b1 / r) x A B", fontsize=10, shape="(..., 768)")
    arrow(ax, (plus[0] + 0.17, 2.2), (7.0, 2.2))
    text(ax, 7.0, 3.6, "rank r = 16, \u03b1 = 16, so \u03b1 / r = 1\nW: 589,824 weights, frozen\nA and B: 24,576, trained",
         ha="left", fontsize=10, color=MUTED)
    text(ax, 7.0, 0.95, "B = 0 at the start:\nthe layer computes\nexactly x W", ha="left", fontsize=10,
         color=ACCENT)
    legend(ax, 0.15, 4.0, [("masked", "frozen"), ("parameter", "trained")])
    return fig


@diagram(
    "ch06_lora_where",
    alt="""Where LoRA goes in the classifier. Each of the 12 transformer blocks has six linear layers, and
    each gets its own pair A, B of rank 16: the query, key and value projections and the attention's output
    projection (768 to 768, 24,576 LoRA weights each) and the feed-forward's two layers (768 to 3,072 and
    3,072 to 768, 61,440 each). That is 221,184 per block and 2,654,208 for 72 layers. With the new 768-to-2
    head, trained in full (1,538), 2,655,746 parameters train: 2.13% of 124,441,346. Everything else,
    embeddings, LayerNorms and the original weights, is frozen.""",
)
def lora_where():
    fig, ax = canvas(9.6, 4.0)
    ax.add_patch(patches.FancyBboxPatch((0.15, 0.15), 4.3, 3.7, boxstyle="round,pad=0,rounding_size=0.1",
                                        facecolor="white", edgecolor=MUTED, linewidth=1.1, linestyle="--"))
    text(ax, 2.3, 3.62, "one transformer block (\u00d7 12)", fontsize=10, weight="bold")
    text(ax, 0.35, 3.28, "attention (768 \u2192 768 each)", ha="left", fontsize=10, color=MUTED)
    text(ax, 0.35, 1.4, "feed-forward", ha="left", fontsize=10, color=MUTED)
    names = [("W_query", 2.78), ("W_key", 2.4), ("W_value", 2.02), ("out_proj", 1.64),
             ("768 \u2192 3,072", 0.9), ("3,072 \u2192 768", 0.52)]
    for name, y in names:
        box(ax, 0.45, y, 2.3, 0.32, name, kind="masked", fontsize=10, family=MONO if "_" in name else "DejaVu Sans")
        parameter(ax, 3.0, y, 1.1, 0.32, "+ A B", fontsize=10)
    text(ax, 4.25, 0.3, "LayerNorms: frozen, no LoRA", ha="right", fontsize=10, color=MUTED)
    lines = [
        ("768 \u2192 768 layer: 16 \u00d7 (768 + 768)", "24,576"),
        ("768 \u2194 3,072 layer: 16 \u00d7 (768 + 3,072)", "61,440"),
        ("one block: 4 \u00d7 24,576 + 2 \u00d7 61,440", "221,184"),
        ("12 blocks, 72 layers", "2,654,208"),
        ("+ the new head, trained in full", "1,538"),
    ]
    text(ax, 5.0, 3.72, "LoRA weights of rank r = 16", ha="left", fontsize=10, weight="bold")
    for i, (words, n) in enumerate(lines):
        yy = 3.3 - i * 0.45
        text(ax, 5.0, yy, words, ha="left", fontsize=10)
        text(ax, 9.45, yy, n, ha="right", fontsize=10, family=MONO)
    ax.plot([5.0, 9.45], [3.3 - 4.5 * 0.45, 3.3 - 4.5 * 0.45], color=INK, linewidth=1.0)
    text(ax, 5.0, 1.0, "trainable with LoRA", ha="left", fontsize=10, weight="bold", color=ACCENT)
    text(ax, 9.45, 1.0, "2,655,746", ha="right", fontsize=10, weight="bold", color=ACCENT, family=MONO)
    text(ax, 9.45, 0.64, "2.13% of 124,441,346", ha="right", fontsize=10, color=MUTED)
    text(ax, 9.45, 0.3, "(the last block + norm + head: 7,090,946)", ha="right", fontsize=10, color=MUTED)
    return fig
