"""shared/open_weights.py: Llama 3 and Qwen3 Hub checkpoints read into GPTModel, checked against transformers'
own implementations (random weights, small configs, saved in the Hub's layout)."""

import json

import pytest
import torch

from shared.checkpoints import CheckpointError
from shared.downloads import HubDownloadError
from shared.generation import generate_greedy
from shared.open_weights import (
    config_from_hf,
    convert_hf_state_dict,
    download_hf_model,
    hf_names,
    load_hf_checkpoint,
    load_tokenizer,
    read_safetensors,
    save_hf_checkpoint,
)

transformers = pytest.importorskip("transformers")  # a development dependency (requirements-dev.txt)
transformers.logging.set_verbosity_error()

SMALL = dict(vocab_size=300, hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=128)
LLAMA = dict(SMALL, rms_norm_eps=1e-5, tie_word_embeddings=False, rope_theta=500_000.0,
             rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                               original_max_position_embeddings=32))
QWEN3 = dict(SMALL, head_dim=24, rms_norm_eps=1e-6, rope_theta=1_000_000.0, tie_word_embeddings=True)


def reference(kind, folder, shard=None, **overrides):
    """A transformers model with random weights (norm scales too), saved in the Hub's layout in `folder`."""
    torch.manual_seed(0)
    if kind == "llama":
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**{**LLAMA, **overrides}))
    else:
        model = transformers.Qwen3ForCausalLM(transformers.Qwen3Config(**{**QWEN3, **overrides}))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1 + 0.3 * torch.randn_like(p))
    model.save_pretrained(folder, **({"max_shard_size": shard} if shard else {}))
    return model.eval()


@pytest.fixture(scope="module", params=["llama", "qwen3"])
def pair(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    theirs = reference(request.param, folder, shard="100kB" if request.param == "qwen3" else None)
    return request.param, folder, theirs, load_hf_checkpoint(folder)


def test_the_same_logits_within_1e_5_in_float32(pair):
    _, _, theirs, ours = pair
    ids = torch.randint(0, 300, (3, 70), generator=torch.Generator().manual_seed(1))  # past the 32 of llama3 scaling
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), theirs(ids).logits, rtol=0, atol=1e-5)


def test_the_same_greedy_tokens_with_and_without_the_kv_cache(pair):
    _, _, theirs, ours = pair
    prompt = torch.randint(0, 300, (1, 20), generator=torch.Generator().manual_seed(2))
    expected = theirs.generate(prompt, max_new_tokens=50, min_new_tokens=50, do_sample=False)
    assert torch.equal(generate_greedy(ours, prompt, 50, use_cache=True), expected)
    assert torch.equal(generate_greedy(ours, prompt, 50, use_cache=False), expected)


def test_the_cache_holds_only_the_key_value_heads(pair):
    _, _, _, ours = pair
    cache = ours.new_cache()
    with torch.no_grad():
        ours(torch.zeros(1, 5, dtype=torch.long), cache=cache)
    assert cache.layers[0].keys.shape[1] == 2 and ours.trf_blocks[0].att.num_heads == 4


def test_the_config_is_read_as_the_architecture_says(pair):
    kind, folder, _, ours = pair
    cfg = ours.cfg
    assert (cfg.norm, cfg.ffn, cfg.position, cfg.bias, cfg.kv_heads) == ("rmsnorm", "swiglu", "rope", False, 2)
    assert cfg.qk_norm == (kind == "qwen3") and cfg.tie_embeddings == (kind == "qwen3")
    assert cfg.per_head_dim == (24 if kind == "qwen3" else 12)
    assert (cfg.rope_scaling is not None) == (kind == "llama")
    assert (ours.out_head.weight is ours.tok_emb.weight) == (kind == "qwen3")


def test_a_config_written_the_hub_way_reads_the_same(pair):
    """The Hub's files say rope_theta and rope_scaling; transformers 5 writes rope_parameters."""
    kind, _, _, ours = pair
    published = {"model_type": kind, **(LLAMA if kind == "llama" else QWEN3)}
    assert config_from_hf(published) == ours.cfg


def test_round_trip_through_our_writer_and_transformers_reads_it(pair, tmp_path):
    kind, _, _, ours = pair
    folder = save_hf_checkpoint(ours, tmp_path / "ours", kind)
    again = load_hf_checkpoint(folder)
    ids = torch.randint(0, 300, (2, 30), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(again(ids), ours(ids))
        cls = transformers.LlamaForCausalLM if kind == "llama" else transformers.Qwen3ForCausalLM
        theirs = cls.from_pretrained(folder, use_kernels=False).eval()  # plain PyTorch, no Hub kernels
        torch.testing.assert_close(theirs(ids).logits, ours(ids), rtol=0, atol=1e-5)


def test_bfloat16_loading_keeps_the_greedy_tokens_close(pair):
    _, folder, _, ours = pair
    half = load_hf_checkpoint(folder, dtype=torch.bfloat16)
    assert half.tok_emb.weight.dtype == torch.bfloat16
    ids = torch.randint(0, 300, (1, 16), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert (half(ids).float() - ours(ids)).abs().max() < 0.1


def test_context_length_is_capped_and_can_be_raised(tmp_path):
    reference("llama", tmp_path)
    assert load_hf_checkpoint(tmp_path).cfg.context_length == 128  # the model's own maximum
    assert load_hf_checkpoint(tmp_path, context_length=64).cfg.context_length == 64
    published = {"model_type": "llama", **LLAMA, "max_position_embeddings": 131_072}
    assert config_from_hf(published).context_length == 2048  # a 128k model: capped unless asked


# ---- what goes wrong says what to do ----

def test_missing_and_extra_tensors_and_wrong_shapes_are_refused(tmp_path):
    reference("llama", tmp_path)
    cfg = config_from_hf(json.loads((tmp_path / "config.json").read_text()))
    tensors = read_safetensors(tmp_path)
    without = {k: v for k, v in tensors.items() if k != "model.layers.1.mlp.up_proj.weight"}
    missing = r"lacks 1 of the model's tensors, e\.g\. 'model\.layers\.1\.mlp\.up_proj\.weight' \[our trf_blocks"
    with pytest.raises(CheckpointError, match=missing):
        convert_hf_state_dict(without, cfg)
    with pytest.raises(CheckpointError, match=r"holds 1 tensor the model has no place for, e\.g\. 'model\.mystery"):
        convert_hf_state_dict({**tensors, "model.mystery.weight": torch.zeros(1)}, cfg)
    wrong = dict(tensors, **{"model.norm.weight": torch.zeros(47)})
    shape = r"'model\.norm\.weight' \[our final_norm\.scale\] has shape \(47,\) but the model expects \(48,\)"
    with pytest.raises(CheckpointError, match=shape):
        convert_hf_state_dict(wrong, cfg)
    old_style = {**tensors, "model.layers.0.self_attn.rotary_emb.inv_freq": torch.zeros(6)}
    assert set(convert_hf_state_dict(old_style, cfg)) == set(hf_names(cfg))  # stored frequencies are ignored


@pytest.mark.parametrize("change, message", [
    (dict(model_type="gpt_neox"), r"model_type must be one of \[.llama., .qwen3.\] .*got .gpt_neox."),
    (dict(hidden_act="gelu"), r"hidden_act must be one of \[.silu.\] \(SwiGLU.s activation\), got .gelu."),
    (dict(use_sliding_window=True), "sliding-window"),
    (dict(rope_scaling=dict(rope_type="yarn", factor=4.0)), "yarn"),
])
def test_unsupported_configs_are_refused(change, message):
    with pytest.raises(CheckpointError, match=message):
        config_from_hf({"model_type": "llama", **LLAMA, **change})


def test_missing_damaged_and_incomplete_folders(tmp_path):
    with pytest.raises(CheckpointError, match="no config.json"):
        load_hf_checkpoint(tmp_path)
    reference("qwen3", tmp_path, shard="100kB")
    shards = sorted(tmp_path.glob("model-*.safetensors"))
    shards[0].write_bytes(shards[0].read_bytes()[:1000])  # a truncated download
    with pytest.raises(CheckpointError, match="damaged or incomplete"):
        load_hf_checkpoint(tmp_path)
    shards[1].unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_hf_checkpoint(tmp_path)
    for f in tmp_path.glob("model*"):
        f.unlink()
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        load_hf_checkpoint(tmp_path)


def test_offline_download_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubDownloadError, match="internet connection"):
        download_hf_model("Qwen/Qwen3-0.6B", cache_dir=tmp_path)


def test_a_gated_model_says_to_accept_its_license(monkeypatch):
    import huggingface_hub

    class GatedRepoError(Exception):  # what the Hub client raises for a model whose license is not accepted
        pass

    def refuse(*args, **kwargs):
        raise GatedRepoError("401 Client Error: access to model meta-llama/Llama-3.2-1B is restricted")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)
    gated = (r"Llama-3\.2-1B: GatedRepoError\. meta-llama/Llama-3\.2-1B is gated: "
             r"accept its license on https://huggingface\.co/meta-llama/Llama-3\.2-1B")
    with pytest.raises(HubDownloadError, match=gated):
        download_hf_model("meta-llama/Llama-3.2-1B")


def test_a_model_our_writer_cannot_express_is_refused(tmp_path, tiny_model):
    gpt2_like = tiny_model(vocab_size=10, context_length=8, emb_dim=8, n_heads=2, n_layers=1, ffn_hidden_dim=16,
                           bias=False)
    with pytest.raises(CheckpointError, match="norm='layernorm'"):
        save_hf_checkpoint(gpt2_like, tmp_path, "llama")
    assert not (tmp_path / "model.safetensors").exists()  # nothing half-written


# ---- the tokenizer: optional, read by the tokenizers library ----

def test_load_tokenizer_reads_tokenizer_json(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    tokenizer = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=60, special_tokens=["[UNK]"])
    tokenizer.train_from_iterator(["the cat sat on the mat", "the dog sat on the log"] * 20, trainer)
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    loaded = load_tokenizer(tmp_path)
    ids = loaded.encode("the cat sat").ids
    assert ids == tokenizer.encode("the cat sat").ids and loaded.decode(ids).replace(" ", "") == "thecatsat"
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        load_tokenizer(tmp_path / "elsewhere")
