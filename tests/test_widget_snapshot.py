"""shared._widget_snapshot: stored widgets become static copies of their final state."""

import base64

import nbformat
import pytest

from shared._widget_snapshot import STATIC_NOTE, WIDGET_STATE, WIDGET_VIEW, freeze_widgets

PNG = base64.b64encode(b"\x89PNG fake bytes").decode()


def model(name, **state):
    return {"state": {"_model_name": name, **state}}


def notebook_showing(model_id, states):
    """A notebook whose one cell displayed widget `model_id`, with nbclient-style stored state."""
    nb = nbformat.v4.new_notebook()
    view = {WIDGET_VIEW: {"model_id": model_id, "version_major": 2, "version_minor": 0}, "text/plain": "VBox(children=(...))"}
    nb.cells = [nbformat.v4.new_code_cell("show()", outputs=[nbformat.v4.new_output("display_data", data=view)])]
    nb.metadata.widgets = {WIDGET_STATE: {"state": states, "version_major": 2, "version_minor": 0}}
    return nb


@pytest.mark.parametrize("left, progress, right, expected", [
    ("training:&nbsp;100%", model("FloatProgressModel", value=90.0, max=90.0), "\u200790/90\u2007[00:12<00:00,\u20077.5it/s]",
     "training: 100%|██████████| 90/90 [00:12<00:00, 7.5it/s]"),
    ("check: 50%", model("IntProgressModel", value=2, max=4), " 2/4", "check: 50%|█████     | 2/4"),
])
def test_a_tqdm_bar_is_stored_as_its_final_text_bar(left, progress, right, expected):
    states = {
        "bar": model("HBoxModel", children=["IPY_MODEL_left", "IPY_MODEL_progress", "IPY_MODEL_right"]),
        "left": model("HTMLModel", value=left),
        "progress": progress,
        "right": model("HTMLModel", value=right),
    }
    nb = notebook_showing("bar", states)
    assert freeze_widgets(nb) == 1
    (output,) = nb.cells[0].outputs
    assert output.data == {"text/plain": expected}


def test_controls_and_an_image_become_a_line_of_values_and_the_last_picture():
    states = {
        "explorer": model("VBoxModel", children=["IPY_MODEL_row", "IPY_MODEL_picture"]),
        "row": model("HBoxModel", children=["IPY_MODEL_query", "IPY_MODEL_mask"]),
        "query": model("DropdownModel", description="query", _options_labels=["Every", "token", "looks"], index=2),
        "mask": model("CheckboxModel", description="causal mask", value=True),
        "picture": {**model("ImageModel", format="png"), "buffers": [{"path": ["value"], "data": PNG, "encoding": "base64"}]},
    }
    nb = notebook_showing("explorer", states)
    freeze_widgets(nb)
    text, image = nb.cells[0].outputs
    assert text.data["text/plain"] == f"query: looks | [x] causal mask\n{STATIC_NOTE}"
    assert image.data["image/png"] == PNG
    assert WIDGET_VIEW not in image.data


def test_an_output_widget_becomes_what_it_captured():
    captured = {"output_type": "stream", "name": "stdout", "text": "SPAM with probability 97%\n"}
    nb = notebook_showing("out", {"out": model("OutputModel", outputs=[captured])})
    freeze_widgets(nb)
    assert [dict(o) for o in nb.cells[0].outputs] == [captured]


def test_a_chat_box_becomes_its_fields_its_button_and_the_transcript_it_captured():
    said = {"output_type": "stream", "name": "stdout", "text": "you: Name a color.\nassistant: Blue.\n"}
    states = {
        "chat": model("VBoxModel", children=["IPY_MODEL_ask", "IPY_MODEL_send", "IPY_MODEL_log"]),
        "ask": model("TextModel", description="Instruction:", value=""),
        "send": model("ButtonModel", description="Send"),
        "log": model("OutputModel", outputs=[said]),
    }
    nb = notebook_showing("chat", states)
    freeze_widgets(nb)
    controls, transcript = nb.cells[0].outputs
    assert controls.data["text/plain"] == f"Instruction: | [Send]\n{STATIC_NOTE}"
    assert dict(transcript) == said


def test_a_widget_without_recorded_state_says_so_instead_of_vanishing():
    nb = notebook_showing("gone", {})
    freeze_widgets(nb)
    (output,) = nb.cells[0].outputs
    assert output.data["text/plain"].startswith("[widget]")


def test_ordinary_outputs_are_left_alone():
    nb = notebook_showing("gone", {})
    plain = nbformat.v4.new_output("stream", name="stdout", text="hello\n")
    nb.cells[0].outputs = [plain]
    assert freeze_widgets(nb) == 0 and nb.cells[0].outputs == [plain]
