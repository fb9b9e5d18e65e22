"""Diagrams for the big-picture introduction (ch02_text_data/ch01_big_picture.ipynb)."""

import math

from . import diagram
from .ch05 import TOY_VOCAB, probabilities  # chapter 5's toy next-word distribution, so the two chapters agree
from .primitives import (
    ACCENT, KINDS, MUTED, accent, arrow, bar, bar_chart, box, canvas, data, dot, flow, frame, grid, line, mono, note,
    operation, parameter, path_arrow, row, stack, subtitled, text, title,
)

# GPT-3's training mixture (Brown et al., 2020, Table 2.2): tokens in each dataset (billions) and its weight in the
# training mix (the share of training examples drawn from it).
GPT3_MIX = [("Common Crawl (filtered)", 410, 0.60), ("WebText2", 19, 0.22), ("Books1", 12, 0.08),
            ("Books2", 55, 0.08), ("Wikipedia", 3, 0.03)]

# The encoder-decoder example of the notebook's mask demonstration.
SOURCE = ["the", "cat", "sat", "down"]
TARGET_IN = ["<s>", "le", "chat", "s'est", "assis"]


@diagram("intro_what_an_llm_does", size=(9.4, 3.9))
def what_an_llm_does(ax):
    words = sorted(zip(probabilities(), TOY_VOCAB), reverse=True)[:5]  # chapter 5's toy distribution, largest first
    title(ax, 0.2, 3.55, "1. text in")
    data(ax, 0.2, 2.55, 2.3, 0.7, "The cat curled\nup on the", fontsize=11)
    title(ax, 3.0, 3.55, "2. the model")
    operation(ax, 3.0, 2.45, 1.6, 0.9, "LLM\n(a transformer)")
    parameter(ax, 3.05, 1.45, 1.5, 0.5, "learned weights")
    arrow(ax, (3.8, 1.95), (3.8, 2.45), color=KINDS["parameter"][1])
    arrow(ax, (2.5, 2.9), (3.0, 2.9))
    title(ax, 5.05, 3.55, "3. a probability for every next token (toy numbers)")
    arrow(ax, (4.6, 2.9), (5.05, 2.9))
    bar_chart(ax, 6.25, 3.3, [p for p, _ in words], [w for _, w in words], scale=4.2, row_h=0.3, digits=2,
              kinds=["highlight"] + ["tensor"] * 4)
    note(ax, 6.17, 1.65, "… every other token", ha="right")
    note(ax, 6.31, 1.65, f"{1 - sum(p for p, _ in words):.2f} together")
    line(ax, [(6.25, 1.5), (6.25, 1.8)], color=MUTED, linewidth=0.9)
    accent(ax, 8.3, 1.05, "4. choose one token\n(greedy: the most probable;\nor sample, chapter 5)", ha="right")
    data(ax, 6.0, 0.25, 2.3, 0.5, "The cat curled up on the")
    box(ax, 8.3, 0.25, 0.6, 0.5, words[0][1], kind="highlight")
    arrow(ax, (8.42, 3.05), (8.6, 0.75), color=ACCENT)
    path_arrow(ax, [(6.0, 0.5), (0.12, 0.5), (0.12, 2.9), (0.2, 2.9)], color=MUTED)  # feed it back in
    note(ax, 0.3, 0.68, "5. append it and feed the longer text back in: repeat")


@diagram("intro_course_map")
def course_map():
    stages = [  # (x, heading, {folder: its chapters}, what the stage yields); a lettered chapter is a companion
        (0.1, "Stage 1: building blocks", {
            "ch02_text_data/": ["2. text data: tokens, embeddings", "2b. byte-level BPE from scratch"],
            "ch03_attention/": ["3. attention"],
            "ch04_gpt_model/": ["4. the GPT model", "4, part 2: generating fast", "4, part 3: modern architectures"],
        }, "an untrained GPT"),
        (3.35, "Stage 2: pretraining", {"ch05_pretraining/": [
            "5. train on unlabeled text", "5b. load GPT-2's weights", "5c. training at scale", "5d. performance",
            "5e. Tiny Shakespeare", "5f. Llama 3 and Qwen3",
        ]}, "a pretrained base model"),
        (6.6, "Stage 3: finetuning", {
            "ch06_classification_ft/": ["6. a spam classifier"],
            "ch07_instruction_ft/": ["7. follow instructions", "7, part 2: evaluate the answers",
                                     "7b. preferences (DPO)", "7c. RL with a checker (GRPO)"],
        }, "task models, an assistant"),
    ]
    rows, step = max(sum(map(len, folders.values())) for _, _, folders, _ in stages), 0.62
    frame_h = 0.55 + rows * step
    fig, ax = canvas(9.8, frame_h + 1.45)
    w, frame_w = 2.85, 3.1
    for x, heading, folders, result in stages:
        frame(ax, x, 1.0, frame_w, frame_h)
        title(ax, x + 0.12, 1.0 + frame_h - 0.2, heading)
        chapters = [(name, folder) for folder, names in folders.items() for name in names]
        for i, (name, folder) in enumerate(chapters):
            y = 1.0 + frame_h - 0.75 - i * step
            box(ax, x + 0.125, y, w, 0.4, name, kind="plain", weight="normal" if name[1].isalpha() else "bold")
            mono(ax, x + 0.125 + w / 2, y - 0.1, folder, ha="center")
        parameter(ax, x + 0.4, 0.2, frame_w - 0.8, 0.45, result)
        arrow(ax, (x + frame_w / 2, 1.0), (x + frame_w / 2, 0.65))
    arrow(ax, (0.1 + frame_w - 0.4, 0.42), (3.35 + 0.4, 0.42))
    arrow(ax, (3.35 + frame_w - 0.4, 0.42), (6.6 + 0.4, 0.42))
    accent(ax, 0.1, frame_h + 1.25, "You are here: chapter 1, the big picture (in ch02_text_data/). "
           "Bold: main chapters and their parts; lettered: companions.")
    return fig


@diagram("intro_three_architectures", size=(9.5, 4.4))
def three_architectures(ax):
    columns = [  # (centre, name, example, inputs and their cell width, output, what the output is, blocks, verdict)
        (1.45, "encoder-only", "e.g. BERT", ["the", "[MASK]", "sat", "down"], 0.58, "cat", "fills in [MASK]",
         (2.3, "encoder blocks", "every token sees every token"), "reads and understands"),
        (4.55, "decoder-only", "e.g. GPT (this course)", ["the", "cat", "sat"], 0.6, "down", "next token",
         (2.3, "decoder blocks", "sees itself and earlier tokens"), "generates text"),
    ]
    for cx, name, example, inputs, cell, output, what, (w, blocks, sees), verdict in columns:
        subtitled(ax, cx, 4.2, name, example, gap=0.28, ha="center")
        box(ax, cx - 0.6, 3.2, 1.2, 0.42, output, kind="highlight")
        note(ax, cx + 0.67, 3.41, what)
        stack(ax, cx - w / 2 - 0.04, 1.75, w, 0.75)
        text(ax, cx - 0.04, 2.23, blocks)
        note(ax, cx - 0.04, 1.98, sees, ha="center")
        row(ax, cx - len(inputs) * cell / 2, 0.55, inputs, w=cell, h=0.4)
        arrow(ax, (cx, 0.95), (cx, 1.75))
        arrow(ax, (cx, 2.62), (cx, 3.2))
        accent(ax, cx, 0.22, verdict, ha="center")
    # the third kind: two stacks, joined by cross-attention
    subtitled(ax, 7.75, 4.2, "encoder–decoder", "e.g. the original transformer, T5", gap=0.28, ha="center")
    for x, label, inputs, cell, under in ((6.35, "encoder", ["the", "cat", "sat", "down"], 0.4, "source"),
                                          (8.15, "decoder\n(causal)", ["le", "chat"], 0.5, "target so far")):
        operation(ax, x, 1.75, 1.2, 0.75, label)
        row(ax, x + 0.6 - len(inputs) * cell / 2, 0.55, inputs, w=cell, h=0.4)
        arrow(ax, (x + 0.6, 0.95), (x + 0.6, 1.75))
        note(ax, x + 0.55, 1.35, under, ha="right")
    arrow(ax, (7.55, 2.12), (8.15, 2.12), color=ACCENT)
    accent(ax, 7.85, 2.62, "cross-\nattention", ha="center")
    box(ax, 8.15, 3.2, 1.2, 0.42, "s'est", kind="highlight")
    arrow(ax, (8.75, 2.5), (8.75, 3.2))
    accent(ax, 7.75, 0.22, "turns one text into another", ha="center")


@diagram("intro_attention_masks", size=(9.5, 3.9))
def attention_masks(ax):
    size = 0.42

    def labelled(x, rows, columns, allowed, heading, count):
        kinds = [["tensor" if allowed(i, j) else "masked" for j in range(len(columns))] for i in range(len(rows))]
        cells = [["1" if kind == "tensor" else "0" for kind in line] for line in kinds]
        grid(ax, x, 2.9, cells, w=size, kinds=kinds, row_labels=rows, column_labels=columns)
        mid = x + len(columns) * size / 2
        title(ax, mid, 3.75, heading, ha="center")
        allowed_cells = sum(line.count("1") for line in cells)
        note(ax, mid, 2.68 - len(rows) * size, f"{count}: {allowed_cells} of {len(rows) * len(columns)}", ha="center")

    labelled(0.75, SOURCE, SOURCE, lambda i, j: True, "encoder self-attention", "all pairs")
    labelled(3.85, TARGET_IN, TARGET_IN, lambda i, j: j <= i, "decoder self-attention", "causal")
    labelled(7.45, TARGET_IN, SOURCE, lambda i, j: True, "cross-attention", "all pairs")
    accent(ax, 4.75, 0.15, "row = the token that looks (query);  column = a token it may look at (key);  0 = masked",
           ha="center")


@diagram("intro_gpt3_mixture", size=(9.4, 4.2))
def gpt3_mixture(ax):
    total = sum(tokens for _, tokens, _ in GPT3_MIX)
    x0, scale, top, block = 3.05, 6.8, 3.55, 0.64
    title(ax, 0.1, 4.0, "GPT-3's training mixture (Brown et al., 2020, Table 2.2)")
    for y, kind, words in ((3.88, "data", f"share of the {total} B tokens available"),
                           (3.64, "tensor", "sampling weight: share of what was read")):
        bar(ax, 5.3, y, 0.3, 0.16, kind=kind)
        text(ax, 5.67, y + 0.08, words, ha="left")
    for i, (name, tokens, weight) in enumerate(GPT3_MIX):
        y = top - (i + 1) * block
        share = tokens / total
        text(ax, x0 - 0.1, y + 0.4, name, ha="right")
        note(ax, x0 - 0.1, y + 0.17, f"{tokens} B tokens", ha="right")
        bar(ax, x0, y + 0.31, share * scale, 0.22, kind="data")
        note(ax, x0 + share * scale + 0.06, y + 0.42, f"{share:.1%}")
        bar(ax, x0, y + 0.07, weight * scale, 0.22, kind="tensor")
        text(ax, x0 + weight * scale + 0.06, y + 0.18, f"{weight:.0%}", ha="left")
    line(ax, [(x0, top - len(GPT3_MIX) * block), (x0, top)], color=MUTED, linewidth=0.9)
    note(ax, 9.3, 0.12, "weights as published; they sum to 101% by rounding", ha="right")


@diagram("intro_pretrain_finetune", size=(9.5, 4.4))
def pretrain_finetune(ax):
    title(ax, 2.8, 4.2, "stage 2: pretraining (chapter 5)", ha="center")
    title(ax, 7.7, 4.2, "stage 3: finetuning (chapters 6 and 7)", ha="center")
    flow(ax, 0.1, 1.72, [("data", "unlabeled text\nweb, books,\nWikipedia", 1.75)], h=0.95)
    note(ax, 0.975, 1.5, "100s of billions of tokens", ha="center")
    arrow(ax, (1.85, 2.2), (2.2, 2.2))
    operation(ax, 2.2, 1.77, 1.55, 0.85, "pretraining:\npredict the\nnext token")
    note(ax, 2.975, 1.5, "weeks on many GPUs", ha="center")
    arrow(ax, (3.75, 2.2), (4.1, 2.2))
    parameter(ax, 4.1, 1.82, 1.4, 0.75, "base model\n(continues text)")
    branches = [  # (height, where the base model's arrow leaves it, the labelled data (above or below), step, result)
        (3.0, 2.4, 3.4, "~1,500 messages labelled\nspam / not spam", "finetune\n(2-way output head)",
         "spam classifier\n(chapter 6)"),
        (1.4, 2.0, 0.5, "1,100 pairs: instruction\n→ good response", "finetune\n(same next-token loss)",
         "assistant\n(chapter 7)"),
    ]
    for y, leaves_at, data_y, examples, step, result in branches:
        arrow(ax, (5.5, leaves_at), (5.95, y))
        data(ax, 5.85, data_y, 1.9, 0.5, examples)
        arrow(ax, (6.8, data_y + (0 if data_y > y else 0.5)), (6.8, y + (0.28 if data_y > y else -0.28)))
        flow(ax, 5.95, y - 0.28, [("operation", step, 1.7), ("parameter", result, 1.45)], h=0.56, gap=0.3)
    accent(ax, 0.1, 0.65, "finetuning starts from the base model's weights\nand needs minutes to hours, not weeks")


# Training compute, 6 x parameters x tokens (see the notebook's section 7 for the sources), and where each label goes.
COMPUTE = [  # (name, parameters, tokens, label alignment, label above the axis?, detail)
    ("this course: chapter 5's run", 162_419_712, 46_080, "left", True,
     "162M parameters, 46,080 tokens:\nabout 11 minutes on a 2-core CPU"),
    ("GPT-3 Small", 125e6, 300e9, "right", False, "125M parameters, 300B tokens"),
    ("GPT-3 175B", 175e9, 300e9, "right", True, "175B parameters, 300B tokens"),
    ("Chinchilla", 70e9, 1.4e12, "right", False, "70B parameters, 1.4T tokens"),
]


def scientific(x):
    """3.15e+23 as 3.15×10^23 (matplotlib mathtext for the exponent)."""
    mantissa, exponent = f"{x:.2e}".split("e")
    return f"{mantissa}×$10^{{{int(exponent)}}}$"


@diagram("intro_compute_ladder", size=(9.4, 3.2))
def compute_ladder(ax):
    lo, hi, x0, x1, y = 12, 24, 0.6, 9.0, 1.6

    def xpos(flops):
        return x0 + (math.log10(flops) - lo) / (hi - lo) * (x1 - x0)

    line(ax, [(x0, y), (x1, y)], linewidth=1.2)
    for e in range(lo, hi + 1, 2):
        line(ax, [(xpos(10 ** e), y - 0.07), (xpos(10 ** e), y + 0.07)], linewidth=1.0)
        text(ax, xpos(10 ** e), y - 0.12, f"$10^{{{e}}}$", va="top")
    flops = {name: 6 * n * d for name, n, d, *_ in COMPUTE}
    for name, n, d, ha, above, detail in COMPUTE:
        x, end = xpos(flops[name]), 2.45 if above else 0.95
        dot(ax, x, y, kind="highlight" if name.startswith("this course") else "tensor", size=11)
        line(ax, [(x, y + (0.09 if above else -0.09)), (x, end)], color=MUTED, linewidth=0.8)
        text(ax, x + (0.05 if ha == "left" else -0.05), end + (0.03 if above else -0.03),
             f"{name}: {scientific(flops[name])}\n{detail}", ha=ha, va="bottom" if above else "top")
    ours, gpt3 = flops["this course: chapter 5's run"], flops["GPT-3 175B"]
    arrow(ax, (xpos(ours) + 0.15, 2.05), (xpos(gpt3) - 0.15, 2.05), color=ACCENT, style="<|-|>")
    accent(ax, (xpos(ours) + xpos(gpt3)) / 2, 2.2, f"GPT-3 175B: about {gpt3 / ours / 1e9:.0f} billion times more",
           ha="center")
    note(ax, 0.1, 0.2, "training FLOPs ≈ 6 × parameters × tokens (logarithmic scale)")
