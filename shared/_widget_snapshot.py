"""Replace the widgets in an executed notebook by static copies of their final state.

A widget's stored output is only a pointer (a model id) plus its ``repr``: without a running
kernel, GitHub, Colab and JupyterLab show ``VBox(children=(HBox(...`` or a progress bar frozen
at 0%, because the bar's later updates travel as widget messages, not as output. nbclient
records every widget's final state while it runs a notebook; ``freeze_widgets`` turns that
state into ordinary outputs that read right everywhere:

- a tqdm progress bar becomes its final text bar (``training: 100%|██████████| 90/90 [...]``);
- an image widget becomes the PNG it showed last; an Output widget becomes what it captured;
- controls (dropdowns, checkboxes, text boxes) become one line that names their values.

Running the cell again in a live kernel shows the live widget as usual. Used by ``_run.py``.
"""

from __future__ import annotations

import html
import re

import nbformat

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
MODEL_REFERENCE = "IPY_MODEL_"
STATIC_NOTE = "(a static copy of the widget's final state: run the notebook to use it)"
BAR_WIDTH = 10


def widget_states(nb: nbformat.NotebookNode) -> dict[str, dict]:
    """model id -> {"state": ..., "buffers": {path: base64 data}} from nbclient's stored widget state."""
    stored = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    states = {}
    for model_id, entry in stored.items():
        buffers = {tuple(b["path"]): b["data"] for b in entry.get("buffers", []) if b.get("encoding") == "base64"}
        states[model_id] = {"state": entry["state"], "buffers": buffers}
    return states


def plain_text(markup: str) -> str:
    """The visible text of a widget's HTML label: tags dropped, entities decoded, special spaces made plain."""
    text = html.unescape(re.sub(r"<[^>]*>", "", markup or ""))
    return text.replace("\xa0", " ").replace("\u2007", " ")  # tqdm pads with no-break and figure spaces


def children(state: dict) -> list[str]:
    return [ref.removeprefix(MODEL_REFERENCE) for ref in state.get("children", [])]


def progress_bar_text(model_id: str, states: dict) -> str | None:
    """tqdm's notebook bar is an HBox of (HTML label, progress, HTML counts); None for any other box."""
    parts = [states.get(child, {}).get("state", {}) for child in children(states[model_id]["state"])]
    names = [part.get("_model_name") for part in parts]
    if len(parts) != 3 or names[0] != "HTMLModel" or names[1] not in ("FloatProgressModel", "IntProgressModel"):
        return None
    left, progress, right = plain_text(parts[0].get("value")), parts[1], plain_text(parts[2].get("value"))
    total = progress.get("max") or 0
    filled = round(BAR_WIDTH * progress.get("value", 0) / total) if total else 0
    return f"{left}|{'█' * filled}{' ' * (BAR_WIDTH - filled)}|{right}"


def describe_control(state: dict) -> str | None:
    """One phrase for a control's current value, or None for widgets that are not controls."""
    name, label = state.get("_model_name", ""), state.get("description", "")
    if name == "DropdownModel" or name.endswith("SelectionModel") or name == "SelectModel":
        options, index = state.get("_options_labels", []), state.get("index")
        chosen = options[index] if isinstance(index, int) and 0 <= index < len(options) else ""
        return f"{label}: {chosen}"
    if name in ("CheckboxModel", "ToggleButtonModel"):
        return f"[{'x' if state.get('value') else ' '}] {label}"
    if name == "TextareaModel" or name.endswith(("TextModel", "SliderModel")):
        return f"{label} {state.get('value')}".strip()
    if name == "ButtonModel":
        return f"[{label or 'button'}]"
    if name in ("HTMLModel", "LabelModel"):
        return plain_text(state.get("value")) or None
    return None


def collect(model_id: str, states: dict, pieces: list) -> None:
    """Append ("text", str) and ("output", NotebookNode) pieces for one widget and its children."""
    entry = states.get(model_id)
    if entry is None:  # a model nbclient never saw (closed early): nothing to show
        return
    state, name = entry["state"], entry["state"].get("_model_name", "")
    bar = progress_bar_text(model_id, states) if name == "HBoxModel" else None
    if bar is not None:
        pieces.append(("bar", bar))
    elif "children" in state:
        for child in children(state):
            collect(child, states, pieces)
    elif name == "ImageModel" and ("value",) in entry["buffers"]:
        image_format = state.get("format", "png")
        pieces.append(("output", nbformat.v4.new_output(
            "display_data", data={f"image/{image_format}": entry["buffers"][("value",)], "text/plain": f"<image> {STATIC_NOTE}"}
        )))
    elif name == "OutputModel":
        pieces.extend(("output", nbformat.from_dict(output)) for output in state.get("outputs", []))
    else:
        phrase = describe_control(state)
        pieces.append(("control", phrase if phrase is not None else f"[{name.removesuffix('Model')} widget]"))


def static_outputs(model_id: str, states: dict) -> list[nbformat.NotebookNode]:
    """The ordinary outputs that stand in for one displayed widget."""
    pieces: list = []
    collect(model_id, states, pieces)
    outputs, controls = [], []

    def flush_controls():
        if controls:
            text = " | ".join(controls) + f"\n{STATIC_NOTE}"
            outputs.append(nbformat.v4.new_output("display_data", data={"text/plain": text}))
            controls.clear()

    for kind, value in pieces:
        if kind == "control":
            controls.append(value)
            continue
        flush_controls()
        if kind == "bar":
            outputs.append(nbformat.v4.new_output("display_data", data={"text/plain": value}))
        else:
            outputs.append(value)
    flush_controls()
    if not outputs:  # nbclient recorded no state for it: say so rather than show nothing
        outputs.append(nbformat.v4.new_output("display_data", data={"text/plain": f"[widget] {STATIC_NOTE}"}))
    return outputs


def freeze_widgets(nb: nbformat.NotebookNode) -> int:
    """Replace every widget output of `nb` in place by its static copy; returns how many were replaced."""
    states = widget_states(nb)
    replaced = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        new_outputs = []
        for output in cell.outputs:
            view = output.get("data", {}).get(WIDGET_VIEW)
            if view is None:
                new_outputs.append(output)
                continue
            new_outputs.extend(static_outputs(view["model_id"], states))
            replaced += 1
        cell.outputs = new_outputs
    return replaced
