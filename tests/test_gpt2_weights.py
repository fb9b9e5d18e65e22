"""The GPT-2 weight loader, proven right without the real weights.

transformers' GPT2LMHeadModel built from a GPT2Config needs no download: it is the real GPT-2
architecture with random weights. We save it the way checkpoints are stored (safetensors), load it
through the notebook's code path (load_gpt2_state_dict -> load_weights_into_gpt) and compare logits.
Last, load_gpt2_or_random: GPT-2 when it can be had, labelled random weights of its shape when not.
"""

import contextlib
import hashlib
import os

import pytest
import torch
from safetensors.torch import save_file

from shared.gpt2_weights import (
    GPT2_REPOS,
    convert_gpt2_state_dict,
    download_gpt2,
    gpt2_state_dict_from_model,
    load_gpt2_or_random,
    load_gpt2_state_dict,
    load_weights_into_gpt,
)
from shared.checkpoints import CheckpointError
from shared.downloads import HubDownloadError
from shared.model import GPTConfig, GPTModel
from tests.conftest import make_tiny_config

TINY = dict(vocab_size=101, n_positions=32, n_embd=48, n_layer=2, n_head=4)


def hf_model(**config):
    # Imported here, not at the top: only the tests that compare with transformers need it.
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(**config, bos_token_id=0, eos_token_id=0) if config else transformers.GPT2Config()
    return transformers.GPT2LMHeadModel(cfg).eval()


def our_model(hf, **overrides):
    """Our model in the shape of transformers' `hf`, with GPT-2's query/key/value biases, without dropout."""
    c = hf.config
    shape = dict(vocab_size=c.vocab_size, context_length=c.n_positions, emb_dim=c.n_embd, n_layers=c.n_layer,
                 n_heads=c.n_head, qkv_bias=True, drop_rate=0.0)
    return GPTModel(make_tiny_config(**{**shape, **overrides})).eval()  # its weights are loaded from `hf`


def published_layout(hf):
    """Tensors as the Hub's model.safetensors holds them: no "transformer." prefix, no lm_head, mask buffers."""
    sd = {k.removeprefix("transformer."): v.contiguous() for k, v in hf.state_dict().items() if k != "lm_head.weight"}
    n = hf.config.n_positions
    for i in range(hf.config.n_layer):  # older checkpoints carry the causal mask as a buffer
        sd[f"h.{i}.attn.bias"] = torch.tril(torch.ones(n, n)).view(1, 1, n, n)
    return sd


def max_logit_difference(hf, ours, seq_len=12, batch=2):
    ids = torch.randint(0, hf.config.vocab_size, (batch, seq_len), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return (ours(ids) - hf(ids).logits).abs().max().item()


def test_tiny_checkpoint_saved_by_transformers_matches_its_logits(tmp_path):
    hf = hf_model(**TINY)
    hf.save_pretrained(tmp_path)  # keys with the "transformer." prefix
    ours = load_weights_into_gpt(our_model(hf), load_gpt2_state_dict(tmp_path / "model.safetensors"))
    assert max_logit_difference(hf, ours) < 1e-5


def test_tiny_checkpoint_in_published_layout_matches(tmp_path):
    hf = hf_model(**TINY)
    save_file(published_layout(hf), tmp_path / "model.safetensors")
    ours = load_weights_into_gpt(our_model(hf), load_gpt2_state_dict(tmp_path / "model.safetensors"))
    assert max_logit_difference(hf, ours) < 1e-5
    assert torch.equal(ours.out_head.weight, ours.tok_emb.weight)  # the tied head was copied


@contextlib.contextmanager
def nan_initialised():
    """Models built inside start with NaN weights instead of random draws (~1 s for a 124M-parameter model)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        for init in ("kaiming_uniform_", "uniform_", "normal_"):  # what nn.Linear and nn.Embedding initialise with
            monkeypatch.setattr(torch.nn.init, init, lambda tensor, *args, **kwargs: tensor.detach().fill_(float("nan")))
        yield


def test_full_124m_shape_matches_transformers(tmp_path):
    hf = hf_model()  # GPT2Config() is GPT-2 124M
    save_file(published_layout(hf), tmp_path / "model.safetensors")
    # Our model's initial weights are never used: the loader overwrites every tensor of its state dict. So they are
    # NaN instead of 124M random draws: a tensor the loader left out would make the logits NaN and fail the
    # comparison below, as a random one would have.
    with nan_initialised():
        ours = GPTModel(GPTConfig.gpt2("124M", qkv_bias=True, drop_rate=0.0)).eval()
    assert all(parameter.isnan().all() for parameter in ours.trf_blocks[0].att.W_query.parameters())
    load_weights_into_gpt(ours, load_gpt2_state_dict(tmp_path / "model.safetensors"))
    difference = max_logit_difference(hf, ours, seq_len=8, batch=1)
    print(f"124M: max |logit difference| = {difference:.2e}")
    assert difference < 1e-4


def test_shorter_context_keeps_the_first_positions():
    hf = hf_model(**TINY)
    ours = load_weights_into_gpt(our_model(hf, context_length=8), hf.state_dict())
    assert torch.equal(ours.pos_emb.weight, hf.transformer.wpe.weight[:8])
    assert max_logit_difference(hf, ours, seq_len=8) < 1e-5


def test_round_trip_through_gpt2_layout(tiny_model):
    source = tiny_model(qkv_bias=True).eval()
    target = GPTModel(source.cfg).eval()  # other weights: the global generator has moved on
    load_weights_into_gpt(target, gpt2_state_dict_from_model(source))
    ids = torch.randint(0, 101, (2, 10))
    assert torch.equal(source(ids), target(ids))


def test_model_without_qkv_bias_is_written_with_zero_biases(tiny_model, tiny_config):
    source = tiny_model().eval()
    target = GPTModel(tiny_config(qkv_bias=True)).eval()
    sd = gpt2_state_dict_from_model(source)
    assert torch.count_nonzero(sd["h.0.attn.c_attn.bias"]) == 0
    load_weights_into_gpt(target, sd)
    ids = torch.randint(0, 101, (2, 10))
    torch.testing.assert_close(source(ids), target(ids))


def test_conversion_transposes_and_splits():
    hf = hf_model(**TINY)
    converted = convert_gpt2_state_dict(hf.state_dict())
    c_attn = hf.transformer.h[1].attn.c_attn.weight
    tensor, source = converted["trf_blocks.1.att.W_key.weight"]
    assert torch.equal(tensor, c_attn[:, 48:96].T)
    assert "key third" in source and "transposed" in source


@pytest.fixture()
def tiny_sd():
    return published_layout(hf_model(**TINY))


def test_missing_tensor_is_named(tiny_sd):
    hf = hf_model(**TINY)
    del tiny_sd["h.1.mlp.c_fc.bias"]
    with pytest.raises(CheckpointError, match=r"h\.1\.mlp\.c_fc\.bias"):
        load_weights_into_gpt(our_model(hf), tiny_sd)


def test_wrong_shape_is_named_and_nothing_is_copied(tiny_sd):
    hf = hf_model(**TINY)
    model = our_model(hf)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    bad = dict(tiny_sd, **{"h.0.attn.c_proj.weight": torch.zeros(48, 40)})
    message = (r"'trf_blocks\.0\.att\.out_proj\.weight' \[GPT-2's h\.0\.attn\.c_proj\.weight \(transposed\)\] "
               r"has shape \(40, 48\) but the model expects \(48, 48\)")
    with pytest.raises(CheckpointError, match=message):
        load_weights_into_gpt(model, bad)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_checkpoint_of_another_size_is_refused(tiny_sd):
    deeper = hf_model(**dict(TINY, n_layer=3))
    with pytest.raises(CheckpointError, match="3 blocks of width 48.*2 blocks of width 48"):
        load_weights_into_gpt(our_model(hf_model(**TINY)), deeper.state_dict())
    with torch.device("meta"):
        medium = GPTModel(GPTConfig.gpt2("355M", qkv_bias=True))
    with pytest.raises(CheckpointError, match="GPT-2 355M"):
        load_weights_into_gpt(medium, tiny_sd)


def test_model_without_qkv_bias_is_refused(tiny_sd):
    model = our_model(hf_model(**TINY), qkv_bias=False)
    with pytest.raises(CheckpointError, match="qkv_bias=True"):
        load_weights_into_gpt(model, tiny_sd)


def test_unknown_tensor_is_named(tiny_sd):
    with pytest.raises(CheckpointError, match="h.0.attn.extra"):
        load_weights_into_gpt(our_model(hf_model(**TINY)), dict(tiny_sd, **{"h.0.attn.extra": torch.zeros(1)}))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="download_gpt2"):
        load_gpt2_state_dict(tmp_path / "model.safetensors")


def test_truncated_file_says_to_download_again(tmp_path, tiny_sd):
    path = tmp_path / "model.safetensors"
    save_file(tiny_sd, path)
    data = path.read_bytes()
    for cut in (len(data) // 2, 5):
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="truncated or corrupted.*download it again"):
            load_gpt2_state_dict(path)


def fake_hub_cache(root, data, sha256):
    """The Hugging Face cache layout: blobs/<sha256> holds the bytes, snapshots/<rev>/<name> links to it."""
    blob = root / "blobs" / sha256
    blob.parent.mkdir(parents=True)
    blob.write_bytes(data)
    link = root / "snapshots" / "abc123" / "model.safetensors"
    link.parent.mkdir(parents=True)
    os.symlink(os.path.relpath(blob, link.parent), link)
    return link


def test_corrupted_file_in_hub_cache_fails_its_checksum(tmp_path, tiny_sd):
    good = tmp_path / "good.safetensors"
    save_file(tiny_sd, good)
    data = good.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    corrupted = bytearray(data)
    corrupted[-100] ^= 0xFF  # a flipped byte inside the weights: safetensors alone would not notice
    link = fake_hub_cache(tmp_path / "bad", bytes(corrupted), sha)
    with pytest.raises(CheckpointError, match="sha256.*force_download=True"):
        load_gpt2_state_dict(link)
    assert len(load_gpt2_state_dict(fake_hub_cache(tmp_path / "ok", data, sha))) == len(tiny_sd)
    with pytest.raises(CheckpointError, match="sha256"):
        load_gpt2_state_dict(good, expected_sha256="0" * 64)


def test_download_offline_fails_clearly_and_writes_nothing(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubDownloadError, match="internet connection") as error:
        download_gpt2("124M", cache_dir=tmp_path)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    assert error.value.__cause__ is None and error.value.__suppress_context__, "the Hub client's chain would bury the message"


def test_unknown_size():
    assert set(GPT2_REPOS) == {"124M", "355M", "774M", "1558M"}
    with pytest.raises(ValueError, match="unknown GPT-2 size"):
        download_gpt2("7B")


# --- the offline fallback ---------------------------------------------------------------------------------------

def test_load_gpt2_or_random_labels_random_weights_when_the_download_fails(monkeypatch, capsys):
    import shared.gpt2_weights as weights

    def offline(size, *args, **kwargs):
        raise HubDownloadError(f"could not download GPT-2 {size}")

    monkeypatch.setattr(weights, "download_gpt2", offline)
    # load_pretrained_gpt2 builds its model before it downloads, and drops it when the download fails: that model
    # starts with NaN weights (two fewer 124M-parameter random draws in this test). The stand-in is drawn after.
    pretrained = weights.load_pretrained_gpt2

    def load_pretrained_without_drawing(*args, **kwargs):
        with nan_initialised():
            return pretrained(*args, **kwargs)

    monkeypatch.setattr(weights, "load_pretrained_gpt2", load_pretrained_without_drawing)
    model, label = load_gpt2_or_random("124M", drop_rate=0.0)
    assert label == "RANDOM WEIGHTS (GPT-2 124M shape, NOT GPT-2)"
    assert "RANDOM WEIGHTS" in capsys.readouterr().out
    assert model.cfg.qkv_bias and model.cfg.drop_rate == 0.0 and model.cfg.emb_dim == 768 and not model.training
    again, _ = load_gpt2_or_random("124M", drop_rate=0.0)
    assert torch.equal(model.out_head.weight, again.out_head.weight)  # seeded: the same stand-in each time
    assert not model.out_head.weight.isnan().any()  # random weights, not the dropped model's


def test_load_gpt2_or_random_labels_real_weights_as_gpt2(monkeypatch, tiny_model):
    import shared.gpt2_weights as weights

    sentinel = tiny_model()
    monkeypatch.setattr(weights, "load_pretrained_gpt2", lambda size, **overrides: sentinel)
    assert load_gpt2_or_random("355M") == (sentinel, "GPT-2 355M")
