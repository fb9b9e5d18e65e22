"""Diagrams for chapter 07: the LoRA counts from the chapter's own apply_lora, the DPO mask from its collate."""

import torch

from shared.instruction import instruction_collate, split_dataset
from shared.lora import apply_lora
from shared.model import GPTConfig, GPTModel
from shared.rl import group_advantages

from . import diagram
from .ch04 import parameter_count
from .primitives import (
    ACCENT, INK, MONO, MUTED, accent, arrow, bar, box, brace, chain, data, flow, frame, legend, line, mono, note,
    operation, parameter, path_arrow, row, subtitled, table, tensor, text, title,
)

EOT_ID = 50256  # <|endoftext|>, which also pads


def cells(ids):
    """(label, kind) for each id of a row: its first end-of-text highlighted, later ones and -100 masked as padding."""
    first = ids.index(EOT_ID) if EOT_ID in ids else len(ids)
    return [(i, "data" if k < first else "highlight" if k == first else "masked") for k, i in enumerate(ids)]


@diagram("ch07_pipeline", size=(9.6, 3.9))
def pipeline(ax):
    y, h = 2.2, 0.85
    flow(ax, 0.15, y, [("parameter", "pretrained\nGPT-2", 1.5), ("operation", "instruction\nfinetuning", 1.75),
                       ("parameter", "finetuned\nmodel", 1.45), ("operation", "generate\nresponses", 1.6),
                       ("data", "110 test\nresponses", 1.4)], h=h, gap=0.4)
    for cx, words in [(0.9, "355M on a GPU,\n124M on a CPU"), (2.925, "935 examples,\n2 epochs, AdamW"),
                      (6.85, "110 test instructions,\ngreedy, \u2264 64 tokens"), (8.75, "saved\nas JSON")]:
        note(ax, cx, y + h + 0.33, words, ha="center")
    evaluations = [(3.85, 2.2, "multiple choice\n24 questions", "letter probabilities", 4.925),
                   (6.35, 1.45, "overlap\nmetrics", "EM, F1, ROUGE-L", 8.5),
                   (8.05, 1.4, "LLM judge\n0-100", "Llama 3 via Ollama", 8.75)]  # (..., where its arrow starts)
    for x, w, label, how, source in evaluations:
        operation(ax, x, 0.55, w, 0.8, label)
        note(ax, x + w / 2, 0.35, how, ha="center")
        arrow(ax, (source, y), (x + w / 2, 1.35), linewidth=1.1)
    note(ax, 7.55, 1.8, "compared with the\nreference answers", ha="right")
    accent(ax, 0.15, 1.05, "every evaluation runs for the\nstarting model, the finetuned\nmodel and a LoRA model,\n"
           "then goes into one table")


@diagram("ch07_alpaca_template", size=(9.6, 4.45))
def alpaca_template(ax):
    sections = [  # (the lines of one part of the prompt, its kind), top to bottom, a blank line between parts
        (["Below is an instruction that describes a task. Write a response",
          "that appropriately completes the request."], "data"),
        (["### Instruction:", "Edit the following sentence for grammar."], "data"),
        (["### Input:", "He go to the park every day."], "data"),
        (["### Response:"], "highlight"),
        (["He goes to the park every day."], "plain"),
    ]
    y, lh, ends = 4.2, 0.33, []
    for k, (lines, kind) in enumerate(sections):
        y -= lh * (len(lines) + (k in (1, 2, 3)))  # the bottom of this part; parts 2 to 4 follow a blank line
        box(ax, 0.2, y + 0.02, 5.45, lh * len(lines) - 0.04, kind=kind)
        for i, words in enumerate(lines):
            mono(ax, 0.32, y + (len(lines) - i - 0.5) * lh, words, color=INK)
        ends.append(y + lh / 2)
    # nested brackets: the shortest span farthest right, so their ticks never cross
    for end, x, label, color in ((ends[2], 6.2, "format_input()", MUTED),
                                 (ends[3], 5.98, "format_prompt(): what the model continues", ACCENT),
                                 (ends[4], 5.76, "format_example(): a training text", ACCENT)):
        line(ax, [(x - 0.08, 4.18), (x, 4.18), (x, end), (6.32, end)], color=color, linewidth=1.1)
        text(ax, 6.4, end, label, ha="left", color=color)
    note(ax, 0.2, y - 0.25, "When a record's input is empty, the whole ### Input: section is left out.")


@diagram("ch07_template_tokens", size=(9.6, 3.0))
def template_tokens(ax):
    scale, template, content, answer = 0.118, "masked", "plain", "highlight"
    rows = [("Alpaca", 1.85, [(18, template, "preamble 18"), (6, template, "6"), (7, content, "7"),
                              (6, template, "6"), (8, content, "8"), (6, template, "6"), (8, answer, "8")]),
            ("chat", 1.15, [(6, template, "6"), (7, content, "7"), (1, template, ""), (8, content, "8"),
                            (8, template, "8"), (8, answer, "8")])]
    for name, y, segments in rows:
        sizes, kinds, labels = zip(*segments)
        row(ax, 1.05, y, labels, w=[n * scale for n in sizes], h=0.45, kinds=kinds, name=name)
        accent(ax, 1.17 + sum(sizes) * scale, y + 0.225, f"{sum(sizes)} tokens")
    text(ax, 0.15, 2.75, 'one record, in tokens: "Edit the following sentence for grammar." with the input "He go '
         'to the park every day."', ha="left")
    legend(ax, 1.05, 0.6, [("masked", "template: preamble, headers, markers"), ("plain", "instruction, input"),
                           ("highlight", "response")])
    note(ax, 0.15, 0.25, "Over all 1,100 records: 56.4 tokens per example in the Alpaca format, 38.9 in the chat "
         "format.")


@diagram("ch07_data_split", size=(9.4, 2.6))
def data_split(ax):
    parts = [len(part) for part in split_dataset(range(1100), seed=123)]  # the chapter's own split
    y, h = 1.35, 0.6
    flow(ax, 0.15, y, [("data", "1,100\nrecords", 1.3), ("operation", "shuffle\nseed 123", 1.2)], h=h, gap=0.35)
    arrow(ax, (3.0, y + h / 2), (3.35, y + h / 2))
    widths = [5.4 * n / sum(parts) for n in parts]
    centres = [x for x, _ in row(ax, 3.35, y, [f"training: {parts[0]}", parts[1], parts[2]], w=widths, h=h,
                                 kinds=["data", "data", "highlight"])]
    for x, n, where in zip(centres, parts, ("first ", "", "")):
        note(ax, x, y + h + 0.2, f"{where}{n / sum(parts):.0%}", ha="center")
    arrow(ax, (centres[0], y), (centres[0], 0.85), color=MUTED, linewidth=0.9)
    text(ax, centres[0], 0.6, f"finetuning\n({parts[0] // 8} batches of 8)")  # the last partial batch dropped
    line(ax, [(centres[1], y), (centres[1] - 0.3, 0.85)], color=MUTED, linewidth=0.9)
    text(ax, centres[1] - 0.3, 0.6, "validation:\nloss curves", ha="right")
    line(ax, [(centres[2], y), (centres[2] + 0.2, 0.85)], color=MUTED, linewidth=0.9)
    accent(ax, 9.3, 0.6, "test: the responses\nthat are evaluated", ha="right")
    note(ax, 0.15, 0.12, "split_dataset returns (train, validation, test), the order of its fractions")


@diagram("ch07_collate_steps", size=(9.6, 4.75))
def collate_steps(ax):
    examples = [[0, 1, 2, 3, 4], [5, 6], [7, 8, 9]]
    inputs, targets = instruction_collate(examples)  # the chapter's collate computes steps 3 and 4
    width = inputs.shape[1] + 1
    padded = [ex + [EOT_ID] * (width - len(ex)) for ex in examples]
    title(ax, 0.2, 4.5, "1. append one <|endoftext|> to each example")
    table(ax, 0.3, 3.85, [cells(ex + [EOT_ID]) for ex in examples])
    title(ax, 5.0, 4.5, "2. pad with 50256 to the longest in the batch")
    table(ax, 5.1, 3.85, [cells(r) for r in padded])
    arrow(ax, (3.8, 3.45), (4.95, 3.45))
    title(ax, 0.2, 2.35, "3. shift: inputs drop the last column, targets the first")
    note(ax, 0.3, 1.95, "inputs")
    table(ax, 0.3, 1.55, [cells(r) for r in inputs.tolist()])
    note(ax, 3.2, 1.95, "targets")
    table(ax, 3.2, 1.55, [cells(r[1:]) for r in padded])
    title(ax, 6.2, 2.35, "4. targets after the first 50256: -100")
    table(ax, 6.3, 1.55, [cells(r) for r in targets.tolist()])
    arrow(ax, (5.95, 1.2), (6.25, 1.2))
    accent(ax, 0.2, 0.3, "the first 50256 of each row stays a target (the model learns to stop);\n"
           "-100 marks a target the loss ignores")
    legend(ax, 6.3, 0.3, [("highlight", "end of text"), ("masked", "padding, -100")])


@diagram("ch07_ignore_index", size=(9.4, 2.7))
def ignore_index(ax):
    _, targets = instruction_collate([[0, 1, 2, 3, 4], [5, 6], [7, 8, 9]])
    rows = [cells(r) for r in targets.tolist()]
    title(ax, 0.2, 2.4, "targets")
    table(ax, 0.2, 1.8, rows)
    arrow(ax, (3.05, 1.4), (3.45, 1.4))
    title(ax, 3.6, 2.4, "one cross-entropy term per target")
    table(ax, 3.6, 1.8, [[("", kind) if kind == "masked" else ("\u2113", "tensor") for _, kind in r] for r in rows])
    counted = (targets != -100).sum(dim=1).tolist()
    for i, n in enumerate(counted):
        note(ax, 6.5, 1.965 - i * 0.38, f"{n} terms")
    accent(ax, 8.35, 1.4, f"loss =\nthe sum of the\n{sum(counted)} terms / {sum(counted)}\n(not / {targets.numel()})",
           ha="center")
    note(ax, 0.2, 0.4, "-100 is the default ignore_index of F.cross_entropy: a -100 target adds nothing to the sum and "
         "is not counted\nin the number it is divided by. So chapter 5's batch_loss handles these batches unchanged.")


@diagram("ch07_mask_instruction", size=(9.2, 3.2))
def mask_instruction(ax):
    scale, x0, h = 0.088, 1.6, 0.42
    n_prompt, n_response = 40, 36
    n = n_prompt + n_response
    text(ax, x0, 3.0, f"the first training example: {n} tokens (its end-of-text token is the last target)", ha="left")
    rows = [  # (y, what the row is, segments of (tokens, label, kind))
        (2.35, "inputs", "", [(n_prompt, f"prompt: {n_prompt} tokens", "data"),
                              (n_response, f"response: {n_response} tokens", "plain")]),
        (1.5, "targets", "(default)", [(n - 1, f"{n - 1} next tokens, all kept", "tensor"), (1, "", "highlight")]),
        (0.65, "targets", "mask_instruction", [(n_prompt - 1, f"-100 \u00d7 {n_prompt - 1}: ignored", "masked"),
                                               (n_response, f"{n_response} response tokens", "tensor"),
                                               (1, "", "highlight")]),
    ]
    for y, name, variant, segments in rows:
        mono(ax, 0.15, y + h / 2 - 0.25, variant)
        sizes, labels, kinds = zip(*segments)
        row(ax, x0, y, labels, w=[size * scale for size in sizes], h=h, kinds=kinds, name=name)
    y_in, y_full, y_mask = 2.35, 1.5, 0.65
    end = x0 + n * scale
    accent(ax, end + 0.1, y_full + h / 2, f"{n} kept")
    accent(ax, end + 0.1, y_mask + h / 2, f"{n_response + 1} kept")
    note(ax, end, y_full + h + 0.15, "end of text", ha="center")
    bx = x0 + (n_prompt - 1) * scale
    line(ax, [(bx, y_mask), (bx, y_in + h)], color=ACCENT, linewidth=1.0, style="--")
    note(ax, bx - 0.05, 0.3, "the target at the prompt's last position predicts the first response token: kept",
         ha="center")


@diagram("ch07_generate_response", size=(9.6, 3.4))
def generate_response(ax):
    y, h = 1.7, 0.85
    flow(ax, 0.15, y, [("data", "record", 1.1), ("operation", "format_prompt", 1.45),
                       ("data", "prompt, ending in\n### Response:", 1.65),
                       ("operation", "model: next\ntoken (greedy)", 1.5),
                       ("operation", "decode the new tokens,\nclean_response", 2.35)], h=h, gap=0.3)
    # the generation loop
    arrow(ax, (6.45, y + h), (5.55, y + h), color=ACCENT, linewidth=1.2, curve=0.9)
    accent(ax, 6.0, y + h + 0.55, "append it, repeat", ha="center")
    note(ax, 6.0, y - 0.3, "until <|endoftext|>\nor 64 new tokens", ha="center")
    note(ax, 8.275, y - 0.3, "cut at the first stop marker,\nstrip spaces", ha="center")
    # an example of the cut
    note(ax, 0.15, 0.72, "generated:")
    row(ax, 1.15, 0.5, ["Paris is the capital.", "\\n\\n### Instruction:\\nName a city."], w=3.0, h=0.42,
        kinds=["plain", "masked"], family=MONO)
    arrow(ax, (7.2, 0.71), (7.6, 0.71))
    box(ax, 7.6, 0.5, 1.85, 0.42, "Paris is the capital.", kind="highlight", family=MONO)
    note(ax, 4.2, 0.32, "stop marker: everything from here is dropped", va="top")


@diagram("ch07_overlap_metrics", size=(9.6, 3.6))
def overlap_metrics(ax):
    text(ax, 0.15, 3.35, 'response "The capital of France is Paris."   reference "Paris is the capital of France."',
         ha="left")
    note(ax, 0.15, 3.05, "after normalising (lower case, no punctuation, no a / an / the):")
    w, h = 0.95, 0.4
    response = ["capital", "of", "france", "is", "paris"]
    reference = ["paris", "is", "capital", "of", "france"]
    lcs = {"capital", "of", "france"}
    xr = 1.35
    for y, name, words in ((2.3, "response", response), (1.1, "reference", reference)):
        row(ax, xr, y, words, w=w, h=h, kinds=["highlight" if t in lcs else "data" for t in words], name=name)
    for i, word in enumerate(response):
        if word in lcs:
            j = reference.index(word)
            line(ax, [(xr + (i + 0.5) * w, 2.3), (xr + (j + 0.5) * w, 1.1 + h)], color=ACCENT, linewidth=1.2)
    accent(ax, xr + 2.5 * w, 0.75, 'longest common subsequence: "capital of france", 3 words', ha="center")
    scores = [("exact match", "0", "the texts differ"), ("token F1", "1.0", "the same 5 words, order ignored"),
              ("ROUGE-L", "0.6", "LCS 3 of 5 words, in order")]
    for k, (name, value, why) in enumerate(scores):
        yy = 2.45 - k * 0.62
        subtitled(ax, 6.55, yy, name, why, gap=0.25)
        mono(ax, 7.95, yy, value, color=ACCENT)
    note(ax, 0.15, 0.25, "All three compare words only: a correct answer in other words scores low.")


@diagram("ch07_multiple_choice", size=(9.85, 4.0))
def multiple_choice(ax):
    data(ax, 0.15, 0.3, 4.5, 3.45)
    prompt = ["The following are multiple choice questions", "(with answers) about general knowledge and English.", "",
              "+ 3 worked examples, each ending", '  in its answer, e.g. "Answer: B"', "",
              "Which word is the opposite of 'ancient'?", "A. old", "B. modern", "C. broken", "D. large", "Answer:"]
    worked = prompt[3:5]  # the worked examples, summarised in muted italics
    for i, words in enumerate(prompt):
        color = MUTED if words in worked else ACCENT if words == "Answer:" else INK
        mono(ax, 0.3, 3.5 - i * 0.265, words, color=color, style="italic" if words in worked else "normal")
    arrow(ax, (4.65, 2.1), (5.0, 2.1))
    flow(ax, 5.0, 1.7, [("operation", "model:\none forward\npass", 1.25),
                        ("tensor", "next-token\nprobabilities", 1.25)], h=0.8, gap=0.35)
    note(ax, 7.225, 1.5, "50,257 of them", ha="center")
    # the four letters
    probs = [("A", 317, 0.10), ("B", 347, 0.70), ("C", 327, 0.12), ("D", 360, 0.08)]
    bx, base, bw = 8.2, 1.0, 0.36
    arrow(ax, (7.85, 2.1), (8.1, 2.1))
    for k, (letter, token, p) in enumerate(probs):
        x = bx + k * 0.4
        bar(ax, x, base, p * 2.6, bw, kind="highlight" if letter == "B" else "tensor", vertical=True)
        note(ax, x + bw / 2, base + p * 2.6 + 0.13, f"{p:.2f}", ha="center")
        mono(ax, x + bw / 2, base - 0.15, f'" {letter}"', color=INK, ha="center")
        mono(ax, x + bw / 2, base - 0.38, str(token), ha="center")
    note(ax, bx + 0.78, 3.5, "the 4 letters,\nrenormalised\n(example numbers)", ha="center")
    accent(ax, bx + 0.78, 0.25, "choice: B (correct)", ha="center")


@diagram("ch07_judge_loop", size=(9.6, 3.35))
def judge_loop(ax):
    operation(ax, 0.15, 2.35, 2.0, 0.75, "check_judge:\nGET /api/tags")
    note(ax, 2.35, 2.88, "no server, or no llama3 model:")
    accent(ax, 2.35, 2.6, 'the judge is skipped, its scores read "not run"')
    arrow(ax, (1.15, 2.35), (1.15, 1.8), label="ready")
    steps = [("data", "test record +\nmodel's answer", 1.65), ("operation", "judge_prompt", 1.55),
             ("operation", "POST /api/chat to Ollama\nmodel llama3,\ntemperature 0, seed 123", 2.2),
             ("data", "reply\n\"Score: 72.\"", 1.4), ("operation", "parse_score\n\u2192 72", 1.25)]
    centres = flow(ax, 0.15, 1.0, steps, h=0.8, gap=0.3)
    note(ax, centres[1][0], 1.95, "task, reference, answer", ha="center")
    path_arrow(ax, [(centres[-1][0], 1.0), (centres[-1][0], 0.6), (0.975, 0.6), (0.975, 1.0)], color=ACCENT)
    accent(ax, 4.9, 0.4, "next record: 110 in all, then the mean score (0-100)", ha="center")
    note(ax, 9.45, 2.05, "no clear score in 0-100:\nJudgeResponseError,\nthe score is left out", ha="right")


@diagram("ch07_lora", size=(9.4, 4.75))
def lora(ax):
    with torch.device("meta"):  # GPT-2 124M as the chapter builds it: shapes only, no memory, no weights
        model = GPTModel(GPTConfig(qkv_bias=True))
        everything = parameter_count(model)
        layers = apply_lora(model, rank=16, alpha=16, exclude=("out_head",))
    lora_size = parameter_count(model, trainable=True)
    parts = ["token + position embeddings", "transformer blocks 1-12", "final LayerNorm",
             "output head 768 \u2192 50,257"]
    for x, heading, kind, w, count in [
            (0.3, "full finetuning (lr 5e-5)", "parameter", 4.0, f"{everything:,} trainable (all)"),
            (5.0, "LoRA, r = 16, \u03b1 = 16 (lr 2e-4)", "masked", 3.0,
             f"{lora_size:,} trainable ({lora_size / everything:.2%})")]:
        title(ax, x, 4.0, heading, fontsize=10.5)
        chain(ax, x + w / 2, 1.2, [(kind, label) for label in parts], w=w, h=0.5, gap=0.2, up=True)
        accent(ax, x, 0.75, count)
    parameter(ax, 8.1, 1.9, 1.15, 0.5, "+ A B")
    note(ax, 8.675, 1.73, f"6 per block,\n{layers} layers", va="top", ha="center")
    note(ax, 8.15, 3.55, "excluded:\nfrozen")
    line(ax, [(4.65, 0.55), (4.65, 4.15)], color="#cccccc", linewidth=1.0)
    legend(ax, 0.3, 4.4, [("masked", "frozen"), ("parameter", "trained")])
    note(ax, 0.3, 0.25, "Counts for GPT-2 124M, as in the stored CPU run; GPT-2 medium (on a GPU) has more of "
         "everything.")


@diagram("ch07_dpo_vs_rlhf", size=(9.6, 4.9))
def dpo_vs_rlhf(ax):
    h = 0.75
    # the shared start of both methods: the finetuned model and the preference pairs
    frame(ax, 0.1, 1.45, 1.6, 2.1)
    note(ax, 0.9, 3.72, "the same start", ha="center")
    parameter(ax, 0.25, 2.6, 1.3, 0.75, "SFT model\n(chapter 7)")
    data(ax, 0.25, 1.6, 1.3, 0.8, "preference\npairs: prompt,\nchosen, rejected")
    # RLHF row
    ry = 3.75
    title(ax, 2.05, 4.7, "RLHF with a reward model and PPO", fontsize=10.5)
    ppo = "PPO loop: the model writes\nanswers, they are scored,\nthe model is updated"
    flow(ax, 2.05, ry, [("operation", "train a reward\nmodel on the pairs", 1.55), ("parameter", "reward\nmodel", 1.25),
                        ("operation", ppo, 2.25), ("parameter", "tuned\nmodel", 1.3)], h=h, gap=0.35)
    path_arrow(ax, [(1.7, 3.1), (1.85, 3.1), (1.85, ry + h / 2), (2.05, ry + h / 2)])
    note(ax, 5.55, ry - 0.45, "+ a penalty for drifting from a frozen SFT copy")
    note(ax, 2.05, ry - 0.22, "two models trained, sampling at every step")
    # DPO row
    dy = 1.7
    title(ax, 2.05, 2.85, "DPO: one loss on the pairs, no reward model, no sampling", fontsize=10.5)
    box(ax, 2.05, 0.45, 1.55, 0.7, "frozen reference\n(SFT copy)", kind="masked")
    flow(ax, 3.95, dy, [("tensor", "log-probs of both\nanswers: \u03c0 and \u03c0_ref", 1.9),
                        ("operation", "DPO loss\n\u2212log \u03c3(r_c \u2212 r_r)", 1.6),
                        ("parameter", "tuned\nmodel", 1.3)], h=h, gap=0.35)
    arrow(ax, (1.7, dy + h / 2), (3.95, dy + h / 2))
    arrow(ax, (3.6, 0.8), (4.3, dy))
    accent(ax, 4.45, 0.85, "implicit reward of an answer:\nr = \u03b2 \u00b7 log(\u03c0 / \u03c0_ref)")
    note(ax, 7.0, 1.4, "gradient: chosen up,\nrejected down", va="top", ha="center")
    legend(ax, 6.75, 0.25, [("parameter", "trained"), ("masked", "frozen")])


@diagram("ch07_rl_pipeline", size=(10.3, 4.6))
def rl_pipeline(ax):
    h = 0.7
    flow(ax, 0.1, 2.0, [("parameter", "pretrained\nmodel", 1.2), ("operation", "supervised\nfinetuning", 1.25),
                        ("parameter", "SFT\nmodel", 1.05)], h=h, gap=0.3)
    note(ax, 2.225, 1.75, "worked examples", ha="center")
    rows = [
        (3.55, "RL with a checker (GRPO, this notebook)", "sample a group of\nanswers per prompt",
         "a program checks\nthe final answer: 1 or 0", "raise answers that\nbeat their group"),
        (2.0, "RLHF", "people compare\npairs of answers", "train a reward\nmodel on them",
         "PPO against the\nlearned reward"),
        (0.45, "DPO", "people compare\npairs of answers", "one loss on the pairs:\nno reward model",
         "no sampling\nduring training"),
    ]
    for y, heading, first, second, third in rows:
        title(ax, 4.55, y + h + 0.2, heading, color=ACCENT if "GRPO" in heading else INK)
        checked = "data" if "program" in second else "operation"  # a program's verdict is data, not a model
        flow(ax, 4.55, y, [("operation", first, 1.55), (checked, second, 2.0), ("operation", third, 1.5)], h=h, gap=0.3)
        path_arrow(ax, [(4.2, 2.35), (4.38, 2.35), (4.38, y + h / 2), (4.55, y + h / 2)])
    note(ax, 0.1, 0.75, "every row keeps the tuned model\nclose to a frozen copy of the\nSFT model (a KL penalty\n"
         "or DPO's reference)")


@diagram("ch07_grpo_step", size=(9.6, 4.3))
def grpo_step(ax):
    answers = ["7+5+0=12,...>0432.", "7+5+0=12,...>0432.", "7+5+0=12,...>0422.", "7+5+0=12,...>0432."]
    rewards = [1, 1, 0, 1]  # the checker's verdicts: 047 + 385 = 432
    advantages = group_advantages(torch.tensor([rewards]))[0]  # the notebook's own normalisation
    data(ax, 0.1, 1.95, 1.25, 0.6, "prompt\n047+385=", family=MONO)
    for x, heading in ((2.85, "1. sample G answers\n(temperature > 0)"), (4.7, "2. checker:\nreward"),
                       (5.8, "3. advantage\n(r \u2212 mean) / std")):
        title(ax, x, 4.05, heading, ha="center")
    for i, (answer, r, a) in enumerate(zip(answers, rewards, advantages)):
        y = 3.0 - i * 0.62
        box(ax, 1.75, y, 2.25, 0.42, answer, kind="data" if r else "masked", family=MONO)
        arrow(ax, (1.35, 2.25), (1.75, y + 0.21), linewidth=0.9)
        title(ax, 4.7, y + 0.21, str(r), ha="center", color=ACCENT if r else MUTED)
        arrow(ax, (4.0, y + 0.21), (4.5, y + 0.21), linewidth=0.9)
        tensor(ax, 5.35, y, 0.85, 0.42, f"{a:+.2f}".replace("-", "\u2212"))
        arrow(ax, (4.9, y + 0.21), (5.35, y + 0.21), linewidth=0.9)
        line(ax, [(6.2, y + 0.21), (6.5, y + 0.21)], linewidth=0.9)
    line(ax, [(6.5, 1.35), (6.5, 3.21)], linewidth=0.9)
    arrow(ax, (6.5, 2.3), (6.75, 2.3), linewidth=0.9)
    operation(ax, 6.75, 1.55, 2.75, 1.5, "4. loss on answer tokens:\n\u2212min(ratio\u00b7A, clip(ratio)\u00b7A)\n"
              "+ \u03b2 \u00b7 KL(\u03c0 \u2016 \u03c0_ref)\nratio = \u03c0 / \u03c0_old")
    parameter(ax, 7.35, 0.35, 1.55, 0.6, "optimizer step")
    arrow(ax, (8.125, 1.55), (8.125, 0.95))
    mean, std = torch.tensor(rewards, dtype=torch.float).mean(), torch.tensor(rewards, dtype=torch.float).std(0, False)
    note(ax, 0.1, 0.65, f"mean {mean:.2f}, std {std:.2f}: right answers up, the wrong one down.\n"
         "A group whose rewards are all equal has advantage 0: it teaches nothing.")


@diagram("ch07_dpo_batch", size=(10.0, 4.2))
def dpo_batch(ax):
    from shared.preference import _padded_with_mask

    prompt = ["Say", " hi", " to", " me", "."]  # the instruction; the real prompt wraps it in the Alpaca template
    answers = {"chosen": [" Hi", "!", " How", " are", " you", "?"], "rejected": [" Go", " away", "."]}
    width = max(len(prompt) + len(a) + 1 for a in answers.values())
    x0, w, h = 1.75, 0.66, 0.42
    title(ax, 0.15, 3.95, "One DPO pair: prompt + chosen answer and prompt + rejected answer, padded to one width",
          fontsize=11)
    for r, (side, answer) in enumerate(answers.items()):
        example = {"input_ids": list(range(len(prompt) + len(answer))), "prompt_length": len(prompt)}
        _, mask = _padded_with_mask([example], width, pad_token_id=-1)  # the collate's own mask
        pads = width - len(prompt) - len(answer) - 1
        y = 2.85 - r * 1.3
        subtitled(ax, 0.15, y + h / 2, f"{side}_ids", f"{side}_mask", gap=0.4, under=mono, family=MONO)
        labels = prompt + answer + ["<eot>"] + ["<pad>"] * pads
        kinds = ["data"] * len(prompt) + ["tensor"] * len(answer) + ["highlight"] + ["masked"] * pads
        row(ax, x0, y, labels, w=w, h=h, kinds=kinds)
        for c, m in enumerate(mask[0].tolist()):
            text(ax, x0 + (c + 0.5) * w, y - 0.4 + h / 2, str(int(m)), family=MONO, color=ACCENT if m else MUTED,
                 weight="bold" if m else "normal")
    brace(ax, x0, x0 + len(prompt) * w, 3.42, "the same prompt (in the real batch, inside the Alpaca template)",
          below=False)
    note(ax, x0 + 11.5 * w, 3.42, "id 50256", va="bottom", ha="center")
    accent(ax, 0.15, 0.75, "log p(answer) = sum over the 1s of log p(token | the tokens before it): the logits at "
           "position t - 1 score token t")
    note(ax, 0.15, 0.3,
         "<eot> and <pad> are the same id, 50256: only the first after the answer counts; the mask tells them apart")
