"""shared/pretraining.py: a pretraining run with the training-at-scale tools, checkpointed and resumed."""

import dataclasses

import pytest
import torch

from shared.checkpoints import CheckpointError, CheckpointWarning
from shared.pretraining import PretrainingRun, Recipe
from shared.text import create_dataloader
from tests.conftest import make_tiny_config
from tests.test_training import CORPUS, TOKENIZER

CONTEXT, BATCH = 8, 4
CONFIG = make_tiny_config(vocab_size=len(TOKENIZER.chars), context_length=CONTEXT, drop_rate=0.1)
RECIPE = Recipe(epochs=2, lr=5e-3, accumulation_steps=2)


def loaders():
    torch.manual_seed(0)
    make = lambda shuffle: create_dataloader(CORPUS, batch_size=BATCH, max_length=CONTEXT, stride=CONTEXT,
                                             shuffle=shuffle, drop_last=True, tokenizer=TOKENIZER)
    return make(True), make(False)


def test_a_run_resumed_from_its_checkpoint_continues_exactly(tmp_path):
    """Dropout, shuffling, AdamW's moments and the schedule all continue: the same numbers as one sitting.

    train_model evaluates after the last step of every call, and evaluating draws from the random generator
    (the shuffled training loader), so the uninterrupted run must evaluate at the epoch boundary too: an
    evaluation every epoch's worth of steps.
    """
    train, val = loaders()
    whole = PretrainingRun(CONFIG, RECIPE, len(train), "cpu")
    every_epoch = len(train)
    whole.train(train, val, eval_freq=every_epoch, eval_iter=2, progress=False)

    train, val = loaders()
    first = PretrainingRun(CONFIG, RECIPE, len(train), "cpu")
    first.train(train, val, eval_freq=every_epoch, eval_iter=2, epochs=1, checkpoint=tmp_path / "run.pth", progress=False)
    torch.manual_seed(999)  # whatever ran in between must not matter
    second = PretrainingRun.resume(tmp_path / "run.pth", CONFIG, RECIPE, len(train), "cpu")
    assert second.epochs_done == 1
    assert second.history["seconds"] > 0, "the first sitting's time is in the checkpoint"
    second.train(train, val, eval_freq=every_epoch, eval_iter=2, progress=False)

    assert second.history["train_losses"] == whole.history["train_losses"]
    assert second.history["val_losses"] == whole.history["val_losses"]
    assert all(torch.equal(a, b) for a, b in zip(second.model.parameters(), whole.model.parameters()))
    # the schedule ran to its end: warmup, then the cosine down to min_lr_ratio of the peak
    assert second.scheduler.get_last_lr()[0] == pytest.approx(RECIPE.lr * RECIPE.min_lr_ratio)


def test_the_optimizer_decays_only_linear_weights():
    run = PretrainingRun(CONFIG, RECIPE, 5, "cpu")
    decayed, exempt = run.optimizer.param_groups
    assert decayed["weight_decay"] == RECIPE.weight_decay and exempt["weight_decay"] == 0.0
    linear_weights = {id(m.weight) for m in run.model.modules() if isinstance(m, torch.nn.Linear)}
    assert {id(p) for p in decayed["params"]} == linear_weights
    assert id(run.model.tok_emb.weight) in {id(p) for p in exempt["params"]}
    assert run.optimizer.defaults["betas"] == RECIPE.betas


@pytest.mark.parametrize("changed", ["config", "recipe"])
def test_resuming_with_another_config_or_recipe_is_refused(tmp_path, changed):
    train, val = loaders()
    run = PretrainingRun(CONFIG, RECIPE, len(train), "cpu")
    run.train(train, val, eval_freq=100, eval_iter=1, epochs=1, checkpoint=tmp_path / "run.pth", progress=False)
    config = dataclasses.replace(CONFIG, drop_rate=0.0) if changed == "config" else CONFIG
    recipe = Recipe(epochs=3, lr=RECIPE.lr, accumulation_steps=2) if changed == "recipe" else RECIPE
    with pytest.raises(CheckpointError, match=f"another {changed}"):
        PretrainingRun.resume(tmp_path / "run.pth", config, recipe, len(train), "cpu")


def test_train_refuses_more_epochs_than_the_recipe_has_left():
    train, val = loaders()
    run = PretrainingRun(CONFIG, RECIPE, len(train), "cpu")
    with pytest.raises(ValueError, match=r"epochs must be an integer from 0 to 2 \(the recipe has 2 epochs left\)"):
        run.train(train, val, eval_freq=1, eval_iter=1, epochs=3, progress=False)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        PretrainingRun(CONFIG, RECIPE, 0, "cpu")


def test_each_epochs_checkpoint_holds_what_on_epoch_end_recorded_and_a_damaged_one_falls_back(tmp_path):
    """The hook runs before the save, so a resumed run has every epoch's sample; the save before is kept."""
    train, val = loaders()
    run = PretrainingRun(CONFIG, RECIPE, len(train), "cpu")
    record = lambda model, history: history["samples"].append(f"after epoch {history['epochs_completed']}")
    run.train(train, val, eval_freq=100, eval_iter=1, checkpoint=tmp_path / "run.pth", on_epoch_end=record,
              progress=False)
    resumed = PretrainingRun.resume(tmp_path / "run.pth", CONFIG, RECIPE, len(train), "cpu")
    assert resumed.history["samples"] == ["after epoch 1", "after epoch 2"]

    newest = (tmp_path / "run.pth").read_bytes()
    (tmp_path / "run.pth").write_bytes(newest[: len(newest) // 2])  # the last epoch's save, damaged
    with pytest.warns(CheckpointWarning, match=f"Resumed from run.pth.prev instead, saved at step {len(train)}"):
        earlier = PretrainingRun.resume(tmp_path / "run.pth", CONFIG, RECIPE, len(train), "cpu")
    assert earlier.epochs_done == 1 and earlier.history["samples"] == ["after epoch 1"]
