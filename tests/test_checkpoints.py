"""shared/checkpoints.py: checkpoints that resume exactly, and every way a checkpoint can be unusable."""

import functools
import json
import warnings

import pytest
import torch

from safetensors.torch import load_file, save_file

from shared.checkpoints import (
    CONFIG_KEY, SEAL_SIZE, SEAL_TAG, CheckpointError, CheckpointWarning, load_checkpoint, load_for_inference, seal,
    save_checkpoint, save_for_inference, torch_bytes,
)
from shared.data import write_atomically
from shared.lora import apply_lora, merge_lora

from .architecture_switches import SWITCHES


@pytest.fixture(scope="module")
def tiny_model(tiny_model):
    """The shared tiny sizes with dropout on: the same model as RESUME_CODE's below."""
    return functools.partial(tiny_model, drop_rate=0.1)


# The same training code runs in this process and in a fresh Python process (the "resume after a crash").
RESUME_CODE = """
import json, sys
import torch
from shared.checkpoints import load_checkpoint
from shared.text import sample_batch
from shared.train_step import train_step, warmup_cosine_scheduler
from tests.conftest import make_tiny_model  # the fixture's own builder: the fresh process runs from the repository
TOKENS = torch.randint(0, 101, (3000,), generator=torch.Generator().manual_seed(0))
N = 10

def objects(seed):
    model = make_tiny_model(seed, drop_rate=0.1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.1)
    return model, optimizer, warmup_cosine_scheduler(optimizer, 3, N)

def run(model, optimizer, scheduler, first, last):
    model.train()
    return [float(train_step(model, optimizer, *sample_batch(TOKENS, 4, 16, s), scheduler, 1.0)[0])
            for s in range(first, last)]

if __name__ == "__main__":
    path, out = sys.argv[1], sys.argv[2]
    model, optimizer, scheduler = objects(seed=12345)  # overwritten by the checkpoint
    step = load_checkpoint(path, model, optimizer, scheduler)["step"]
    with open(out, "w") as f:
        json.dump(run(model, optimizer, scheduler, step, N), f)
"""


def test_resume_in_a_fresh_process_gives_the_same_losses(tmp_path, warm_python):
    namespace = {"__name__": "resume"}
    exec(RESUME_CODE, namespace)
    objects, run, n = namespace["objects"], namespace["run"], namespace["N"]
    model, optimizer, scheduler = objects(seed=1)
    torch.manual_seed(7)  # dropout draws from the global RNG, which the checkpoint must carry
    straight = run(model, optimizer, scheduler, 0, n)
    k = 4
    model, optimizer, scheduler = objects(seed=1)
    torch.manual_seed(7)
    first = run(model, optimizer, scheduler, 0, k)
    save_checkpoint(tmp_path / "ckpt.pt", model, optimizer, scheduler, step=k)
    # A process that has run none of this: forked from a Python that has only imported what RESUME_CODE imports.
    fresh = warm_python.start(RESUME_CODE, str(tmp_path / "ckpt.pt"), str(tmp_path / "rest.json"))
    _, stderr = fresh.communicate(timeout=300)
    assert fresh.returncode == 0, stderr
    rest = json.loads((tmp_path / "rest.json").read_text())
    assert first + rest == straight  # exactly, not approximately
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt", "rest.json"]


@pytest.fixture()
def saved(tmp_path, tiny_model):
    model = tiny_model()
    optimizer = torch.optim.AdamW(model.parameters())
    return save_checkpoint(tmp_path / "c.pt", model, optimizer, step=3, extra={"note": "x"})


def test_checkpoint_round_trip(saved, tiny_model):
    model = tiny_model(seed=1)  # other weights than the saved ones (seed 0), so the check below means something
    optimizer = torch.optim.AdamW(model.parameters())
    info = load_checkpoint(saved, model, optimizer)
    assert info == {"step": 3, "extra": {"note": "x"}}
    assert all(torch.equal(a, b) for a, b in zip(tiny_model().state_dict().values(), model.state_dict().values()))


def test_the_file_ends_with_the_sha256_of_what_torch_saved_and_stays_a_torch_file(saved):
    import hashlib

    data = saved.read_bytes()
    body, tail = data[:-SEAL_SIZE], data[-SEAL_SIZE:]
    assert tail.startswith(SEAL_TAG) and tail[len(SEAL_TAG):-8] == hashlib.sha256(body).digest()
    assert int.from_bytes(tail[-8:], "little") == len(body)
    assert torch.load(saved, weights_only=True)["step"] == 3  # plain torch.load reads it too


def test_missing_checkpoint(tiny_model, tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "nope.pt", tiny_model())


@pytest.mark.parametrize("kept", ["10 bytes", "half", "all but the last byte"])
def test_a_truncated_checkpoint_with_nothing_before_it(tiny_model, saved, kept):
    data = saved.read_bytes()
    saved.write_bytes(data[: {"10 bytes": 10, "half": len(data) // 2, "all but the last byte": -1}[kept]])
    with pytest.raises(CheckpointError, match=r"no usable checkpoint.*c\.pt: .*truncated"):
        load_checkpoint(saved, tiny_model())


def test_checkpoint_damaged_after_saving_fails_its_checksum(tiny_model, saved):
    data = bytearray(saved.read_bytes())
    data[len(data) // 2] ^= 0xFF
    saved.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(saved, tiny_model())


def test_checkpoint_of_another_size_names_the_tensor(tiny_model, saved):
    bigger = tiny_model(emb_dim=64)
    before = {k: v.clone() for k, v in bigger.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"tok_emb\.weight.*\(101, 32\).*\(101, 64\)"):
        load_checkpoint(saved, bigger)
    assert all(torch.equal(before[k], v) for k, v in bigger.state_dict().items())
    deeper = tiny_model(n_layers=3)
    with pytest.raises(CheckpointError, match=r"trf_blocks\.2"):
        load_checkpoint(saved, deeper)


def test_not_a_checkpoint(tiny_model, tmp_path):
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a course checkpoint"):
        load_checkpoint(tmp_path / "other.pt", tiny_model())
    data = torch_bytes({"weights": torch.zeros(1)})
    write_atomically(tmp_path / "sealed.pt", data, seal(data))  # complete and undamaged, but not a checkpoint
    with pytest.raises(CheckpointError, match="not a checkpoint written by save_checkpoint"):
        load_checkpoint(tmp_path / "sealed.pt", tiny_model())


# Each save keeps the one before it, and loading falls back to it when the newest cannot be used.

def saved_weights(path):
    return torch.load(path, weights_only=True)["model"]


def test_a_second_save_keeps_the_first_as_prev(saved, tiny_model):
    save_checkpoint(saved, tiny_model(seed=1), step=4)
    assert sorted(p.name for p in saved.parent.iterdir()) == ["c.pt", "c.pt.prev"]
    assert torch.load(saved.with_name("c.pt.prev"), weights_only=True)["step"] == 3
    model = tiny_model(seed=5)
    assert load_checkpoint(saved, model)["step"] == 4
    assert all(torch.equal(a, b) for a, b in zip(tiny_model(seed=1).state_dict().values(), model.state_dict().values()))


def test_a_damaged_newest_save_falls_back_to_the_one_before_with_a_warning(saved, tiny_model):
    save_checkpoint(saved, tiny_model(seed=1), step=4)
    data = bytearray(saved.read_bytes())
    data[100] ^= 0xFF
    saved.write_bytes(bytes(data))
    model = tiny_model(seed=5)
    with pytest.warns(CheckpointWarning, match=r"c\.pt: .*sha256.*Resumed from c\.pt\.prev instead, saved at step 3"):
        assert load_checkpoint(saved, model)["step"] == 3
    assert all(torch.equal(a, b) for a, b in zip(tiny_model().state_dict().values(), model.state_dict().values()))


def test_a_save_killed_between_its_two_renames_resumes(saved, tiny_model):
    """The newest file was renamed to .prev, the new one not yet into place: the complete new one is used."""
    save_checkpoint(saved, tiny_model(seed=1), step=4)
    saved.rename(saved.with_name(".c.pt.part"))  # step 4 waits under its temporary name; .prev holds step 3
    with pytest.warns(CheckpointWarning, match=r"c\.pt is missing.*Resumed from \.c\.pt\.part instead, saved at step 4"):
        assert load_checkpoint(saved, tiny_model(seed=5))["step"] == 4
    data = saved.with_name(".c.pt.part").read_bytes()
    saved.with_name(".c.pt.part").write_bytes(data[: len(data) // 2])  # a half-written one is passed over
    with pytest.warns(CheckpointWarning, match="saved at step 3"):
        assert load_checkpoint(saved, tiny_model(seed=5))["step"] == 3


def test_the_next_save_removes_half_written_files(saved, tiny_model):
    for name in (".c.pt.part", ".c.pt.x7f3k2.part"):  # this version's name, and the random names older ones used
        (saved.parent / name).write_bytes(b"half a checkpoint")
    save_checkpoint(saved, tiny_model(), step=4)
    assert sorted(p.name for p in saved.parent.iterdir()) == ["c.pt", "c.pt.prev"]


@pytest.mark.parametrize("moment", ["while writing", "between the renames", "at the last rename"])
def test_a_keyboard_interrupt_during_a_save_leaves_a_checkpoint_that_resumes(saved, tiny_model, monkeypatch, moment):
    """Jupyter's interrupt button raises KeyboardInterrupt wherever the kernel is, a save included."""
    import os

    real_replace, calls = os.replace, []

    def interrupted_replace(source, target):
        calls.append(target)
        if len(calls) == 2:  # the second rename: the new file onto the checkpoint's name
            if moment == "at the last rename":
                real_replace(source, target)
            raise KeyboardInterrupt
        return real_replace(source, target)

    def interrupted_fsync(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync" if moment == "while writing" else "replace",
                        interrupted_fsync if moment == "while writing" else interrupted_replace)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(saved, tiny_model(seed=1), step=4)
    monkeypatch.undo()
    assert len(list(saved.parent.glob(".*part"))) == 0  # the interrupted save cleaned up after itself
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        step = load_checkpoint(saved, tiny_model(seed=5))["step"]
    assert step == (4 if moment == "at the last rename" else 3)


# A crash while saving must leave the previous checkpoint as it was.


def test_a_state_that_cannot_be_serialised_leaves_the_old_files(saved, tiny_model):
    originals = {p.name: p.read_bytes() for p in saved.parent.iterdir()}
    not_plain = {"batches": (i for i in range(3))}  # a generator: torch.save cannot serialise it
    with pytest.raises(TypeError, match="generator"):
        save_checkpoint(saved, tiny_model(seed=1), step=4, extra=not_plain)
    assert {p.name: p.read_bytes() for p in saved.parent.iterdir()} == originals


def test_a_write_that_fails_leaves_the_old_file_and_no_partial_file(saved):
    original = saved.read_bytes()
    with pytest.raises(TypeError):
        write_atomically(saved, "half a checkpoint, and not even bytes")  # fails once the temporary file exists
    assert saved.read_bytes() == original
    assert sorted(p.name for p in saved.parent.iterdir()) == ["c.pt"]


def test_torch_bytes_are_what_torch_load_reads_back():
    import io

    state = {"step": 3, "weights": torch.arange(4.0)}
    loaded = torch.load(io.BytesIO(torch_bytes(state)), weights_only=True)
    assert loaded["step"] == 3 and torch.equal(loaded["weights"], state["weights"])


# ---- a finished model kept for inference (chapter 7): safetensors weights beside a JSON config -----------------

@pytest.mark.parametrize("switches", ["gpt2", "no-bias-tied", "llama3-style", "qwen3-style", "moe"])
def test_a_model_saved_for_inference_comes_back_the_same(tiny_model, tmp_path, switches):
    model = tiny_model(seed=3, **SWITCHES[switches]).eval()
    folder = save_for_inference(tmp_path / "assistant", model, notes={"label": "RANDOM", "epochs": 2})
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    loaded, notes = load_for_inference(folder)
    assert notes == {"label": "RANDOM", "epochs": 2}
    assert loaded.cfg == model.cfg and not loaded.training
    assert list(loaded.state_dict()) == list(model.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    idx = torch.randint(0, 101, (2, 9), generator=torch.Generator().manual_seed(0))
    assert torch.equal(loaded(idx), model(idx))
    if model.cfg.tie_embeddings:  # still one table after loading, not two copies that would drift apart
        assert loaded.out_head.weight is loaded.tok_emb.weight


def test_saving_a_lora_model_asks_for_the_merge_and_writes_nothing(tiny_model, tmp_path):
    model = tiny_model()
    apply_lora(model, rank=2, alpha=2)
    with pytest.raises(CheckpointError, match="merge_lora"):
        save_for_inference(tmp_path / "lora", model)
    assert not (tmp_path / "lora").exists()
    merge_lora(model)
    save_for_inference(tmp_path / "merged", model)
    assert load_for_inference(tmp_path / "merged")[0].cfg == model.cfg


def test_notes_that_json_cannot_hold_are_refused_before_any_file_is_written(tiny_model, tmp_path):
    with pytest.raises(TypeError, match="plain values"):
        save_for_inference(tmp_path / "a", tiny_model(), notes={"when": object()})
    assert not (tmp_path / "a").exists()


@pytest.fixture
def assistant_folder(tiny_model, tmp_path):
    return save_for_inference(tmp_path / "assistant", tiny_model(seed=2), notes={"label": "x"})


def test_a_folder_without_its_files(assistant_folder, tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_for_inference(tmp_path / "empty")
    (assistant_folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        load_for_inference(assistant_folder)


def test_truncated_weights_are_named(assistant_folder):
    weights = assistant_folder / "model.safetensors"
    data = weights.read_bytes()
    for cut in (10, len(data) // 2, len(data) - 1):
        weights.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="model.safetensors cannot be read"):
            load_for_inference(assistant_folder)


def rewrite_config(folder, text, inside_weights=True):
    """Replace the folder's config: in config.json, and also inside the weights file, or with none there."""
    weights = folder / "model.safetensors"
    save_file(load_file(weights), weights, metadata={CONFIG_KEY: text} if inside_weights else None)
    (folder / "config.json").write_text(text)


@pytest.mark.parametrize("inside_weights", [True, False], ids=["carried-by-the-weights", "config.json-only"])
@pytest.mark.parametrize("config_text, message", [
    ("{not json", "not valid JSON"),
    (json.dumps({"format": "something-else", "config": {}}), "not written by save_for_inference"),
    (json.dumps({"format": "llm-course-model-v1", "config": {"emb_dim": 32, "wings": 2}, "notes": {}}), "cannot build"),
])
def test_a_config_that_cannot_be_used(assistant_folder, config_text, message, inside_weights):
    rewrite_config(assistant_folder, config_text, inside_weights)
    with pytest.raises(CheckpointError, match=message):
        load_for_inference(assistant_folder)


def test_weights_that_do_not_fit_the_config_name_the_tensor(assistant_folder):
    saved = json.loads((assistant_folder / "config.json").read_text())
    saved["config"]["emb_dim"] = 64
    rewrite_config(assistant_folder, json.dumps(saved))
    with pytest.raises(CheckpointError, match=r"tok_emb\.weight.*\(101, 32\).*\(101, 64\)"):
        load_for_inference(assistant_folder)


def test_weights_saved_before_they_carried_their_config_load_by_config_json(assistant_folder, tiny_model):
    rewrite_config(assistant_folder, (assistant_folder / "config.json").read_text(), inside_weights=False)
    model, notes = load_for_inference(assistant_folder)
    assert notes == {"label": "x"}
    assert all(torch.equal(a, b) for a, b in zip(tiny_model(seed=2).state_dict().values(), model.state_dict().values()))


def test_new_weights_beside_an_old_config_json_load_with_their_own_config(assistant_folder, tiny_model, tmp_path):
    """A save killed after the weights' rename and before config.json's: the reader must not mix the two."""
    wider = tiny_model(seed=4, emb_dim=64)
    save_for_inference(tmp_path / "wider", wider, notes={"label": "new"})
    (tmp_path / "wider" / "model.safetensors").replace(assistant_folder / "model.safetensors")
    with pytest.warns(CheckpointWarning, match="config.json does not match the config saved with the weights"):
        model, notes = load_for_inference(assistant_folder)
    assert model.cfg == wider.cfg and notes == {"label": "new"}
    assert all(torch.equal(a, b) for a, b in zip(wider.state_dict().values(), model.state_dict().values()))
