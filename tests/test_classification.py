"""shared/classification.py: SMS spam data, dataset, classifier setup, loss/accuracy, training with chapter 5's loop,
classify (chapter 6)."""

import functools

import matplotlib
import pytest
import torch

from shared.classification import (
    LABELS, ClassifierTop, MalformedDataError, SpamDataset, accuracy_after_each_epoch, balance_classes,
    classifier_accuracy, classifier_loss, classify, create_classification_loaders, encode_message, frozen_features,
    last_token_logits, plot_classifier_history, prepare_classifier, read_rows_csv, read_sms_collection, split_rows,
    write_rows_csv,
)
from shared.model import GPTConfig, GPTModel
from shared.model_tools import count_parameters
from shared.training import evaluate_model, loader_loss, train_model

matplotlib.use("Agg")

PAD = 50256


class WordTokenizer:
    """Each word is one token: its position in a fixed word list (ids stay far below PAD)."""

    WORDS = ("free prize win claim call now cash urgent txt reply stop hi see you at home later dinner "
             "milk pick up can we meet tomorrow ok thanks love mum").split()

    def encode(self, text):
        return [self.WORDS.index(w) if w in self.WORDS else len(self.WORDS) for w in text.lower().split()]


TOKENIZER = WordTokenizer()
SPAM = ["free prize win now", "claim cash call now", "urgent txt reply win", "win free cash now call",
        "call now claim prize", "txt win free", "urgent claim prize now", "free cash reply stop"]
HAM = ["hi see you at home", "can we meet tomorrow", "pick up milk later", "ok thanks love mum",
       "see you at dinner", "hi mum love you", "can you pick up milk", "ok see you later"]


@pytest.fixture(scope="module")
def tiny_model(tiny_model):
    """GPT-2's vocabulary (PAD is a token) and its query/key/value biases, at the shared tiny width."""
    return functools.partial(tiny_model, vocab_size=PAD + 1, context_length=32, qkv_bias=True)


def rows(n_each=8):
    return [("spam", SPAM[i % len(SPAM)]) for i in range(n_each)] + [("ham", HAM[i % len(HAM)]) for i in range(n_each)]


# --- reading the data -----------------------------------------------------------------------------------------

def test_read_sms_collection_parses_labels_and_tabs(tmp_path):
    path = tmp_path / "SMSSpamCollection"
    path.write_text("ham\tSee you at 6\nspam\tWIN a prize\twith a tab inside\n\n", encoding="utf-8")
    assert read_sms_collection(path) == [("ham", "See you at 6"), ("spam", "WIN a prize\twith a tab inside")]


@pytest.mark.parametrize("bad_line", ["maybe\tsome text", "ham no tab here", "spam\t   ", "\tno label"])
def test_read_sms_collection_names_the_malformed_line(tmp_path, bad_line):
    path = tmp_path / "SMSSpamCollection"
    path.write_text(f"ham\tfine\n{bad_line}\n", encoding="utf-8")
    with pytest.raises(MalformedDataError, match="line 2"):
        read_sms_collection(path)


def test_read_sms_collection_rejects_an_empty_file(tmp_path):
    path = tmp_path / "SMSSpamCollection"
    path.write_text("\n", encoding="utf-8")
    with pytest.raises(MalformedDataError, match="no messages"):
        read_sms_collection(path)


def test_csv_round_trip_keeps_commas_quotes_and_newlines(tmp_path):
    original = [("ham", 'He said "hi", then left'), ("spam", "line one\nline two, with comma")]
    write_rows_csv(original, tmp_path / "split.csv")
    assert read_rows_csv(tmp_path / "split.csv") == original


@pytest.mark.parametrize("content,match", [("text,label\nham,hi\n", "header"), ("label,text\nmaybe,hi\n", "line 2"),
                                           ("label,text\nham,hi,extra\n", "line 2")])
def test_read_rows_csv_rejects_malformed_files(tmp_path, content, match):
    path = tmp_path / "bad.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(MalformedDataError, match=match):
        read_rows_csv(path)


# --- balancing and splitting -----------------------------------------------------------------------------------

def test_balance_keeps_every_rare_example_and_an_equal_number_of_the_common_label():
    data_rows = [("ham", f"h{i}") for i in range(50)] + [("spam", f"s{i}") for i in range(7)]
    balanced = balance_classes(data_rows, seed=1)
    assert sum(label == "spam" for label, _ in balanced) == 7
    assert sum(label == "ham" for label, _ in balanced) == 7
    assert {t for label, t in balanced if label == "spam"} == {f"s{i}" for i in range(7)}
    assert balance_classes(data_rows, seed=1) == balanced  # reproducible
    assert balance_classes(data_rows, seed=2) != balanced  # and the seed matters


def test_split_sizes_no_overlap_and_everything_used():
    data_rows = [("ham" if i % 2 else "spam", f"message {i}") for i in range(1494)]
    train, val, test = split_rows(data_rows, (0.7, 0.1, 0.2), seed=123)
    assert (len(train), len(val), len(test)) == (1045, 149, 300)
    texts = [{t for _, t in part} for part in (train, val, test)]
    assert not (texts[0] & texts[1]) and not (texts[0] & texts[2]) and not (texts[1] & texts[2])
    assert set().union(*texts) == {t for _, t in data_rows}


def test_split_rejects_fractions_that_do_not_sum_to_one():
    with pytest.raises(ValueError, match="sum to 1"):
        split_rows(rows(), (0.7, 0.2, 0.2))


# --- the dataset -------------------------------------------------------------------------------------------------

def test_dataset_pads_to_the_longest_message_with_end_of_text():
    ds = SpamDataset([("ham", "hi mum"), ("spam", "free prize win now")], TOKENIZER)
    assert ds.max_length == 4 and len(ds) == 2
    assert ds[0][0].tolist() == [TOKENIZER.WORDS.index("hi"), TOKENIZER.WORDS.index("mum"), PAD, PAD]
    assert ds[1][0].tolist() == TOKENIZER.encode("free prize win now")
    assert ds[0][1].item() == LABELS.index("ham") == 0 and ds[1][1].item() == LABELS.index("spam") == 1


def test_dataset_truncates_to_a_given_length_and_counts_truncations():
    ds = SpamDataset([("ham", "hi mum"), ("spam", "free prize win now")], TOKENIZER, max_length=3)
    assert ds.inputs.shape == (2, 3) and ds.truncated == 1
    assert ds[1][0].tolist() == TOKENIZER.encode("free prize win")
    assert ds[0][0].tolist()[-1] == PAD


def test_dataset_caps_the_length_at_the_context():
    ds = SpamDataset([("spam", "free prize win now call")], TOKENIZER, max_length=100, context_length=3)
    assert ds.max_length == 3 and ds.inputs.shape == (1, 3)


@pytest.mark.parametrize("bad_rows,match", [([("ham", "")], "row 0: the message is empty"),
                                             ([("ham", "hi"), ("spam", "  \n")], "row 1"),
                                             ([("eggs", "hi")], "unknown label"), ([], "no rows")])
def test_dataset_rejects_bad_rows(bad_rows, match):
    with pytest.raises(ValueError, match=match):
        SpamDataset(bad_rows, TOKENIZER)


def test_encode_message_rejects_empty_text():
    with pytest.raises(ValueError, match="empty message"):
        encode_message("   ", TOKENIZER, 5)
    assert encode_message("hi", TOKENIZER, 3) == [TOKENIZER.WORDS.index("hi"), PAD, PAD]


def test_loaders_batch_shapes_and_counts():
    ds = SpamDataset(rows(10), TOKENIZER)
    train, val, test = create_classification_loaders(ds, ds, ds, batch_size=8)
    inputs, labels = next(iter(train))
    assert inputs.shape == (8, ds.max_length) and labels.shape == (8,)
    assert (len(train), len(val), len(test)) == (2, 3, 3)  # 20 messages: train drops the partial batch
    first = [next(iter(create_classification_loaders(ds, ds, ds, seed=7)[0]))[1].tolist() for _ in range(2)]
    assert first[0] == first[1]  # the shuffle is reproducible


# --- the classifier -----------------------------------------------------------------------------------------------

def test_prepare_classifier_trains_exactly_the_last_block_final_norm_and_head(tiny_model):
    model = prepare_classifier(tiny_model(n_layers=3), num_classes=2, trainable_blocks=1)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("trf_blocks.2.", "final_norm.", "out_head.")) for n in trainable)
    expected = (sum(p.numel() for p in model.trf_blocks[2].parameters()) + 2 * 32 + (32 * 2 + 2))
    assert count_parameters(model, trainable_only=True) == expected
    assert model.out_head.out_features == 2


def test_prepare_classifier_at_gpt2_small_size_counts():
    with torch.device("meta"):  # shapes without values: counting needs no 124M random numbers
        gpt2_small = GPTModel(GPTConfig.gpt2("124M", qkv_bias=True))
    model = prepare_classifier(gpt2_small, trainable_blocks=1)
    assert model.out_head.weight.is_meta  # the new head is put where the model is
    # one block: q, k, v, out_proj (768x768 + bias each), the two feed-forward layers, two LayerNorms
    block = 4 * 768 * 768 + 4 * 768 + 2 * 768 * 3072 + 3072 + 768 + 4 * 768
    assert count_parameters(model, trainable_only=True) == block + 2 * 768 + (768 * 2 + 2) == 7_090_946


def test_prepare_classifier_rejects_impossible_block_counts(tiny_model):
    with pytest.raises(ValueError, match="between 0 and 2"):
        prepare_classifier(tiny_model(), trainable_blocks=3)


def test_frozen_features_plus_top_equal_the_whole_model(tiny_model):
    model = prepare_classifier(tiny_model(n_layers=3))
    ds = SpamDataset(rows(4), TOKENIZER)
    loader = torch.utils.data.DataLoader(ds, batch_size=3)
    features = frozen_features(model, loader, first_block=2, device="cpu")
    assert features.tensors[0].shape == (8, ds.max_length, 32) and features.tensors[1].tolist() == ds.labels.tolist()
    with torch.no_grad():
        torch.testing.assert_close(ClassifierTop(model, 2)(features.tensors[0]), model(ds.inputs), atol=1e-5, rtol=1e-5)


def test_classifier_top_trains_on_frozen_features_through_train_model(tiny_model):
    torch.manual_seed(0)
    model = prepare_classifier(tiny_model(seed=1, n_layers=3), trainable_blocks=1)
    ds = SpamDataset(rows(8), TOKENIZER)
    tokens_loader = torch.utils.data.DataLoader(ds, batch_size=4)
    features = frozen_features(model, tokens_loader, first_block=2, device="cpu", desc="test")
    train, val, _ = create_classification_loaders(features, features, features, batch_size=4, seed=0)
    frozen = model.trf_blocks[0].att.W_query.weight.detach().clone()
    head = model.out_head.weight.detach().clone()
    history = finetune(ClassifierTop(model, 2), train, val, num_epochs=2, eval_iter=1)
    # inputs are hidden states (batch, tokens, emb_dim): the loop counts batch x tokens, not the width
    assert history["tokens_seen"][-1] == 2 * 16 * ds.max_length and history["examples_seen"][-1] == 2 * 16
    assert len(history["epoch_val_accuracy"]) == 2
    assert not torch.equal(model.out_head.weight, head)  # training the top trained the model's head
    assert torch.equal(model.trf_blocks[0].att.W_query.weight, frozen)
    assert classifier_accuracy(model, tokens_loader, "cpu") == classifier_accuracy(ClassifierTop(model, 2), val, "cpu")


def test_frozen_features_refuses_to_cache_a_trainable_block(tiny_model):
    model = prepare_classifier(tiny_model(n_layers=3), trainable_blocks=2)
    loader = torch.utils.data.DataLoader(SpamDataset(rows(2), TOKENIZER), batch_size=2)
    with pytest.raises(ValueError, match="trainable"):
        frozen_features(model, loader, first_block=2, device="cpu")


def finetune(model, train, val, num_epochs, eval_iter=2, lr=3e-3, history=None):
    """Chapter 6's finetuning: chapter 5's train_model with the classifier's loss and the accuracy hook."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.1)
    return train_model(model, train, val, optimizer, "cpu", num_epochs=num_epochs, eval_freq=5, eval_iter=eval_iter,
                       history=history, progress=False, loss_fn=classifier_loss, desc="finetuning",
                       on_epoch_end=accuracy_after_each_epoch(train, val, "cpu", num_batches=eval_iter))


def test_classifier_loss_is_the_cross_entropy_of_the_last_position_model_first(tiny_model):
    model = prepare_classifier(tiny_model(seed=3))
    ds = SpamDataset(rows(4), TOKENIZER)
    loss = classifier_loss(model, ds.inputs, ds.labels)
    assert loss.requires_grad and loss.shape == ()
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(model(ds.inputs)[:, -1], ds.labels))
    assert torch.equal(last_token_logits(model, ds.inputs), model(ds.inputs)[:, -1, :])


def test_loader_loss_and_evaluate_model_take_the_classifier_loss(tiny_model):
    model = prepare_classifier(tiny_model(seed=3)).train()
    ds = SpamDataset(rows(6), TOKENIZER)
    loader = torch.utils.data.DataLoader(ds, batch_size=4)  # 12 messages: 3 batches
    per_batch = [classifier_loss(model, x, y).item() for x, y in loader]
    assert loader_loss(model, loader, "cpu", loss_fn=classifier_loss) == pytest.approx(sum(per_batch) / 3)
    assert loader_loss(model, loader, "cpu", num_batches=2, loss_fn=classifier_loss) == pytest.approx(sum(per_batch[:2]) / 2)
    train, val = evaluate_model(model, loader, loader, "cpu", eval_iter=1, loss_fn=classifier_loss)
    assert train == val == {"loss": pytest.approx(per_batch[0])}
    assert model.training  # evaluate_model hands the model back in its mode


def test_classifier_accuracy_counts_messages_in_eval_mode_and_restores_the_mode(tiny_model):
    model = prepare_classifier(tiny_model(seed=3), num_classes=2)
    ds = SpamDataset(rows(6), TOKENIZER)
    loader = torch.utils.data.DataLoader(ds, batch_size=5)  # 12 messages: batches of 5, 5 and 2
    with torch.no_grad():
        right = (model(ds.inputs)[:, -1].argmax(-1) == ds.labels).tolist()
    modes = []
    model.trf_blocks[0].register_forward_hook(lambda module, args, out: modes.append(module.training))
    model.train()
    assert classifier_accuracy(model, loader, "cpu") == pytest.approx(sum(right) / 12)
    assert classifier_accuracy(model, loader, "cpu", num_batches=2) == pytest.approx(sum(right[:10]) / 10)
    assert modes and not any(modes) and model.training  # measured in eval mode, handed back in training mode
    with pytest.raises(ValueError, match="no batches"):
        classifier_accuracy(model, [], "cpu")


def test_tiny_end_to_end_finetune_beats_chance(tiny_model):
    torch.manual_seed(0)
    model = prepare_classifier(tiny_model(seed=1), trainable_blocks=2)
    ds = SpamDataset(rows(24), TOKENIZER)
    train, val, _ = create_classification_loaders(ds, ds, ds, batch_size=8, seed=0)
    before = classifier_accuracy(model, val, "cpu")
    history = finetune(model, train, val, num_epochs=6)
    after = classifier_accuracy(model, val, "cpu")
    assert after >= 0.9 > before + 0.2
    assert history["val_losses"][-1] < history["val_losses"][0]
    assert len(history["epoch_train_accuracy"]) == 6 and history["examples_seen"][-1] == 6 * 48
    assert history["tokens_seen"][-1] == 6 * 48 * ds.max_length
    assert model.training  # train_model leaves the model in training mode
    label, probability = classify("urgent win free cash now", model, TOKENIZER, "cpu", max_length=ds.max_length)
    assert label == "spam" and 0.5 < probability <= 1.0
    assert classify("see you at home later", model, TOKENIZER, "cpu", max_length=ds.max_length)[0] == "ham"
    assert loader_loss(model, val, "cpu", loss_fn=classifier_loss) < 0.5


def test_train_model_with_the_accuracy_hook_records_one_accuracy_pair_per_epoch(tiny_model, capsys):
    torch.manual_seed(0)
    model = prepare_classifier(tiny_model(seed=1), trainable_blocks=1)
    ds = SpamDataset(rows(8), TOKENIZER)
    train, val, _ = create_classification_loaders(ds, ds, ds, batch_size=4, seed=0)  # 4 steps per epoch
    history = finetune(model, train, val, num_epochs=3, eval_iter=4)  # losses and accuracies on all 16 messages
    assert len(history["epoch_train_accuracy"]) == len(history["epoch_val_accuracy"]) == history["epochs_completed"] == 3
    assert all(0.0 <= acc <= 1.0 for acc in history["epoch_train_accuracy"] + history["epoch_val_accuracy"])
    # the hook measures on the first eval_iter batches of each loader: the last value is the trained model's
    assert history["epoch_val_accuracy"][-1] == classifier_accuracy(model, val, "cpu", num_batches=4)
    assert history["train_losses"][-1] < history["train_losses"][0] - 0.2
    assert history["val_losses"][-1] < history["val_losses"][0] - 0.2
    assert history["total_steps"] == 12 and history["seconds"] > 0
    printed = capsys.readouterr().out
    assert printed.count("train accuracy") == 3 and "epoch 3: train accuracy" in printed
    import matplotlib.pyplot as plt

    plt.close(plot_classifier_history(history))  # the plot reads this history as it is
    more = finetune(model, train, val, num_epochs=1, eval_iter=4, history=history)  # a run continued
    assert len(more["epoch_train_accuracy"]) == more["epochs_completed"] == 4
    assert more["epoch_val_accuracy"][:3] == history["epoch_val_accuracy"] and len(history["epoch_val_accuracy"]) == 3


def test_classify_rejects_empty_and_too_long_messages(tiny_model):
    model = prepare_classifier(tiny_model(context_length=8))
    with pytest.raises(ValueError, match="empty message"):
        classify("", model, TOKENIZER, "cpu", max_length=4)
    with pytest.raises(ValueError, match="9 tokens long but the model reads at most 8"):
        classify("win " * 9, model, TOKENIZER, "cpu", max_length=4)


def test_classify_truncates_like_the_training_data_and_restores_the_mode(tiny_model):
    model = prepare_classifier(tiny_model()).train()
    long_text, cut_text = "free prize win now call", "free prize win"
    assert classify(long_text, model, TOKENIZER, "cpu", max_length=3) == classify(cut_text, model, TOKENIZER, "cpu", max_length=3)
    assert model.training
