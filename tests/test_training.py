"""shared/training.py: losses, evaluation, the training loop and the loss plot (chapter 5)."""

import functools
import math

import matplotlib
import pytest
import torch
import torch.nn.functional as F

from shared.text import create_dataloader
from shared.training import (
    batch_loss, evaluate_model, history_key, loader_loss, mean_over_batches, optimizer_step, plot_losses, train_model,
)

matplotlib.use("Agg")

CORPUS = "the cat sat on the mat. the dog sat on the log. " * 6
CONTEXT, BATCH = 8, 4


class CharTokenizer:
    """One token per character: enough to train and sample without downloading anything."""

    def __init__(self, text):
        self.chars = sorted(set(text))
        self.index = {c: i for i, c in enumerate(self.chars)}

    def encode(self, text):
        return [self.index[c] for c in text]

    def decode(self, ids):
        return "".join(self.chars[i] for i in ids)


TOKENIZER = CharTokenizer(CORPUS)


@pytest.fixture(scope="module")
def tiny_model(tiny_model):
    """A model of the character tokenizer's vocabulary, reading the loader's windows."""
    return functools.partial(tiny_model, vocab_size=len(TOKENIZER.chars), context_length=CONTEXT)


def loader(shuffle=False, text=CORPUS):
    return create_dataloader(text, batch_size=BATCH, max_length=CONTEXT, stride=CONTEXT, shuffle=shuffle,
                             drop_last=True, tokenizer=TOKENIZER)


def train(model, epochs, history=None, eval_freq=5, lr=5e-3):
    torch.manual_seed(1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1)
    return train_model(model, loader(shuffle=True), loader(), optimizer, "cpu", num_epochs=epochs, eval_freq=eval_freq,
                       eval_iter=2, start_context="the ", tokenizer=TOKENIZER, history=history,
                       max_new_tokens=5, progress=False)


def test_batch_loss_is_mean_negative_log_probability_of_the_targets(tiny_model):
    model = tiny_model()
    inputs, targets = next(iter(loader()))
    loss = batch_loss(model, inputs, targets)
    log_probas = torch.log_softmax(model(inputs), dim=-1)
    by_hand = -log_probas.gather(-1, targets.unsqueeze(-1)).mean()
    assert loss.shape == () and loss.requires_grad
    torch.testing.assert_close(loss, by_hand)
    torch.testing.assert_close(loss, F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten()))


def test_loader_loss_averages_the_first_n_batches_without_gradients(tiny_model):
    model = tiny_model()
    data = loader()
    batch_losses = [batch_loss(model, x, y).item() for x, y in data]
    assert len(batch_losses) >= 3
    assert loader_loss(model, data, "cpu") == pytest.approx(sum(batch_losses) / len(batch_losses), rel=1e-5)
    assert loader_loss(model, data, "cpu", num_batches=2) == pytest.approx(sum(batch_losses[:2]) / 2, rel=1e-5)
    assert loader_loss(model, data, "cpu", num_batches=1000) == pytest.approx(loader_loss(model, data, "cpu"))
    assert all(p.grad is None for p in model.parameters())
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="num_batches"):
            loader_loss(model, data, "cpu", num_batches=bad)


def test_mean_over_batches_averages_numbers_per_batch_and_pairs_per_count():
    """Numbers are averaged over batches; a (total, count) pair is summed apart, so a short last batch counts
    for what it holds. Tuple batches are spread into the measure's arguments, dict batches are handed over whole."""
    values = torch.tensor([1.0, 2.0, 3.0, 4.0, 10.0])  # batches of 2, 2 and 1
    tuples = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(values, values * 2), batch_size=2)

    def measure(model, x, doubled):
        assert model == "model" and torch.equal(doubled, x * 2)
        return {"loss": x.mean(), "above_two": ((x > 2).sum().item(), len(x))}

    means = mean_over_batches("model", tuples, "cpu", measure)
    assert means == {"loss": pytest.approx((1.5 + 3.5 + 10) / 3), "above_two": pytest.approx(3 / 5)}
    assert mean_over_batches("model", tuples, "cpu", measure, num_batches=2)["above_two"] == pytest.approx(2 / 4)
    dicts = [{"x": values[:3]}, {"x": values[3:]}]
    assert mean_over_batches("model", dicts, "cpu", lambda model, batch: batch["x"].sum()) == {"loss": 10.0}
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="num_batches"):
            mean_over_batches("model", tuples, "cpu", measure, num_batches=bad)


def test_train_model_trains_on_the_loss_of_a_dict_and_records_its_other_metrics(tiny_model):
    model = tiny_model()
    calls = []

    def loss_and_accuracy(model, inputs, targets):
        logits = model(inputs)
        calls.append(torch.is_grad_enabled())
        accuracy = (logits.argmax(-1) == targets).float().mean()
        return {"loss": F.cross_entropy(logits.flatten(0, 1), targets.flatten()), "accuracy": accuracy}

    torch.manual_seed(1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    history = train_model(model, loader(shuffle=True), loader(), optimizer, "cpu", num_epochs=6, eval_freq=5,
                          eval_iter=2, progress=False, loss_fn=loss_and_accuracy)
    assert history_key("val", "loss") == "val_losses" and history_key("val", "accuracy") == "val_accuracy"
    n = len(history["steps"])
    assert all(len(history[key]) == n for key in ("train_losses", "val_losses", "train_accuracy", "val_accuracy"))
    assert history["train_losses"][-1] < history["train_losses"][0]
    assert history["train_accuracy"][-1] > history["train_accuracy"][0]
    assert True in calls and False in calls  # trained with gradients, measured without


def test_loader_loss_rejects_an_empty_loader(tiny_model):
    empty = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(0, CONTEXT, dtype=torch.long)))
    with pytest.raises(ValueError, match="no batches"):
        loader_loss(tiny_model(), empty, "cpu")


def test_training_lowers_the_loss_on_a_tiny_corpus(tiny_model):
    model = tiny_model()
    history = train(model, epochs=8)
    assert history["train_losses"][0] > 2.0  # about ln(vocabulary size) at the start
    assert history["train_losses"][-1] < 0.5 * history["train_losses"][0]
    assert history["val_losses"][-1] < history["val_losses"][0]
    # the trained model predicts the corpus far better than the untrained one
    assert loader_loss(model, loader(), "cpu") < 0.5 * loader_loss(tiny_model(), loader(), "cpu")
    assert model.training, "train_model leaves the model in training mode"


def test_history_records_steps_tokens_epochs_and_samples(tiny_model):
    model = tiny_model()
    steps_per_epoch = len(loader())
    history = train(model, epochs=3, eval_freq=4)
    total = 3 * steps_per_epoch
    assert history["total_steps"] == total and history["epochs_completed"] == 3
    assert history["total_tokens"] == total * BATCH * CONTEXT
    expected_steps = sorted({0, *range(4, total + 1, 4), total})  # before training, every 4 steps, and at the end
    assert history["steps"] == expected_steps
    assert history["tokens_seen"] == [s * BATCH * CONTEXT for s in expected_steps]
    assert history["epochs"] == pytest.approx([s / steps_per_epoch for s in expected_steps])
    n = len(expected_steps)
    assert len(history["train_losses"]) == len(history["val_losses"]) == n
    assert all(math.isfinite(v) for v in history["train_losses"] + history["val_losses"])
    assert len(history["samples"]) == 3 and all(s.startswith("the ") for s in history["samples"])


def test_passing_a_history_back_continues_it(tiny_model):
    model = tiny_model()
    first = train(model, epochs=1)
    snapshot = {k: (list(v) if isinstance(v, list) else v) for k, v in first.items()}
    second = train(model, epochs=1, history=first)
    assert first == snapshot, "the history passed in is not modified"
    steps_per_epoch = len(loader())
    assert second["total_steps"] == 2 * steps_per_epoch and second["epochs_completed"] == 2
    assert second["steps"][: len(first["steps"])] == first["steps"]
    new_steps = second["steps"][len(first["steps"]):]
    assert new_steps and min(new_steps) > first["steps"][-1], "no second evaluation at step 0"
    assert second["steps"][-1] == 2 * steps_per_epoch
    assert len(second["samples"]) == 2


@pytest.mark.parametrize("mode", [True, False], ids=["found-in-train-mode", "found-in-eval-mode"])
def test_evaluate_model_restores_the_mode_and_computes_no_gradients(tiny_model, mode):
    model = tiny_model(drop_rate=0.5)
    model.train(mode)
    seen = []
    model.out_head.register_forward_hook(lambda m, i, o: seen.append((torch.is_grad_enabled(), m.training, o.requires_grad)))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train, val = evaluate_model(model, loader(), loader(), "cpu", eval_iter=2)
    assert set(train) == set(val) == {"loss"}
    assert model.training is mode
    assert all(m.training is mode for m in model.modules())
    assert seen and all(entry == (False, False, False) for entry in seen), "forward passes ran in eval mode, no grad"
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # eval mode switches dropout off, so the evaluation is deterministic even with drop_rate=0.5
    assert (train, val) == evaluate_model(model, loader(), loader(), "cpu", eval_iter=2)


def test_evaluate_model_restores_the_mode_when_evaluation_fails(tiny_model):
    model = tiny_model()
    model.train()

    class Broken:
        def __len__(self):
            return 1

        def __iter__(self):
            raise RuntimeError("broken loader")

    with pytest.raises(RuntimeError, match="broken loader"):
        evaluate_model(model, Broken(), Broken(), "cpu", eval_iter=1)
    assert model.training


def test_train_model_trains_any_loss_and_calls_the_epoch_hook(tiny_model):
    """The openings the finetuning chapters use: another loss of one batch, and a hook after each epoch."""

    def last_position_loss(model, inputs, targets):  # only the last position counts, as in chapter 6
        return F.cross_entropy(model(inputs)[:, -1, :], targets[:, -1])

    seen = []
    model = tiny_model()
    torch.manual_seed(1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    history = train_model(model, loader(shuffle=True), loader(), optimizer, "cpu", num_epochs=2, eval_freq=1000,
                          eval_iter=2, loss_fn=last_position_loss, progress=False,
                          on_epoch_end=lambda m, h: seen.append((m is model, h["epochs_completed"], len(h["steps"]))))
    assert seen == [(True, 1, 1), (True, 2, 2)], "called once per epoch, after that epoch's evaluations"
    assert history["samples"] == [], "no start_context: no samples"
    # the recorded losses are last_position_loss, not next-token prediction over every position (no dropout here)
    assert history["val_losses"][-1] == pytest.approx(loader_loss(model, loader(), "cpu", 2, last_position_loss))
    assert history["val_losses"][-1] != pytest.approx(loader_loss(model, loader(), "cpu", 2))
    assert history["examples_seen"][-1] == history["total_examples"] == 2 * len(loader()) * BATCH
    assert history["seconds"] > 0


def test_train_model_wants_start_context_and_tokenizer_together(tiny_model):
    model = tiny_model()
    optimizer = torch.optim.AdamW(model.parameters())
    with pytest.raises(ValueError, match="together"):
        train_model(model, loader(), loader(), optimizer, "cpu", 1, 1, 1, start_context="the ", progress=False)


@pytest.mark.parametrize("bad", [dict(num_epochs=-1), dict(num_epochs=1.5), dict(eval_freq=0), dict(eval_iter=0)])
def test_train_model_rejects_bad_settings(tiny_model, bad):
    model = tiny_model()
    optimizer = torch.optim.AdamW(model.parameters())
    kwargs = {**dict(num_epochs=1, eval_freq=1, eval_iter=1), **bad}
    with pytest.raises(ValueError, match=next(iter(bad))):
        train_model(model, loader(), loader(), optimizer, "cpu", start_context="the ", tokenizer=TOKENIZER,
                    progress=False, **kwargs)


def test_plot_losses_draws_both_losses_against_epochs_and_tokens(tiny_model):
    import matplotlib.pyplot as plt

    history = train(tiny_model(), epochs=1)
    fig = plot_losses(history, title="tiny")
    bottom, top = fig.axes
    assert bottom.get_xlabel() == "epochs" and top.get_xlabel() == "tokens seen"
    assert [line.get_label() for line in bottom.get_lines()] == ["training loss", "validation loss"]
    assert list(bottom.get_lines()[1].get_ydata()) == history["val_losses"]
    plt.close(fig)


def test_a_step_function_takes_the_optimizer_step_and_the_plain_one_is_its_special_case(tiny_model):
    """step_fn replaces the loop's four-line step; handing it that same step reproduces the default run."""
    from shared.train_step import train_step

    def run(step_fn_for):
        model = tiny_model()
        torch.manual_seed(1)
        optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
        calls = []

        def counted(m, inputs, targets):
            calls.append(len(inputs))
            return step_fn_for(optimizer)(m, inputs, targets)

        history = train_model(model, loader(shuffle=True), loader(), None if step_fn_for else optimizer, "cpu",
                              num_epochs=2, eval_freq=3, eval_iter=2, progress=False,
                              step_fn=counted if step_fn_for else None)
        return history, calls

    plain, _ = run(None)
    stepped, calls = run(lambda optimizer: lambda m, x, y: train_step(m, optimizer, x, y)[0])
    assert calls == [BATCH] * (2 * len(loader())), "called once per batch, with the whole batch"
    assert stepped["train_losses"] == pytest.approx(plain["train_losses"], abs=1e-6)
    assert stepped["val_losses"] == pytest.approx(plain["val_losses"], abs=1e-6)
    # a step that does nothing leaves the model untouched, whatever the optimizer would have done
    model = tiny_model()
    before = [p.detach().clone() for p in model.parameters()]
    train_model(model, loader(), loader(), None, "cpu", 1, 1000, 1, progress=False, step_fn=lambda m, x, y: None)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    # one step function at a time: an optimizer for the default step, or a step_fn with its own, never both
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    for optimizer_given, step_fn in ((optimizer, lambda m, x, y: None), (None, None)):
        with pytest.raises(ValueError, match="pass an optimizer, or a step_fn"):
            train_model(model, loader(), loader(), optimizer_given, "cpu", 1, 1000, 1, progress=False, step_fn=step_fn)


def test_the_default_step_is_optimizer_step(tiny_model):
    """Passing optimizer_step(optimizer) as step_fn is the same run as passing the optimizer."""
    def run(as_step_fn):
        model = tiny_model()
        torch.manual_seed(1)
        optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
        return train_model(model, loader(shuffle=True), loader(), None if as_step_fn else optimizer, "cpu",
                           num_epochs=2, eval_freq=3, eval_iter=2, progress=False,
                           step_fn=optimizer_step(optimizer) if as_step_fn else None)

    plain, explicit = run(False), run(True)
    assert explicit["train_losses"] == plain["train_losses"] and explicit["val_losses"] == plain["val_losses"]
    assert plain["train_losses"][-1] < plain["train_losses"][0]
    # the step hands back the loss it trained on, detached: what a caller that logs losses (the benchmark) reads
    model = tiny_model()
    model.eval()  # no dropout, so the loss before the step can be computed again
    inputs, targets = next(iter(loader()))
    before = batch_loss(model, inputs, targets).item()
    loss = optimizer_step(torch.optim.SGD(model.parameters(), lr=0.1))(model, inputs, targets)
    assert loss.dim() == 0 and not loss.requires_grad and loss.item() == pytest.approx(before)
    assert batch_loss(model, inputs, targets).item() < before


def test_the_epoch_hook_sees_the_time_spent_so_far(tiny_model):
    """A checkpoint written by the hook must carry the time of the epochs it holds (a resumed run adds to it)."""
    seen = []
    model = tiny_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    history = train_model(model, loader(), loader(), optimizer, "cpu", num_epochs=2, eval_freq=1000, eval_iter=1,
                          progress=False, on_epoch_end=lambda m, h: seen.append(h["seconds"]))
    assert 0 < seen[0] < seen[1] <= history["seconds"]
