"""shared/benchmark.py: the ladders' structure and the arithmetic behind MFU (the timings themselves are not tested)."""

import json

import pytest
import torch

from shared import benchmark
from shared.fast import FastOptions
from shared.model import GPTConfig, GPTModel
from shared.text import sample_batch
from shared.training import batch_loss


def test_the_chapter_loop_rung_takes_chapter_5s_step_and_records_each_batch_loss():
    cfg = GPTConfig(vocab_size=50, context_length=8, emb_dim=16, n_heads=2, n_layers=1, drop_rate=0.0)
    torch.manual_seed(0)
    init = GPTModel(cfg).state_dict()
    tokens = torch.randint(0, 50, (200,), generator=torch.Generator().manual_seed(1))
    result = benchmark.run_training(cfg, {}, None, 4, tokens, init, torch.device("cpu"), warmup=1, steps=3)
    untrained = GPTModel(cfg)
    untrained.load_state_dict(init)
    losses_before_training = [batch_loss(untrained, *sample_batch(tokens, 4, 8, step=i)).item() for i in range(4)]
    assert len(result["losses"]) == 4
    assert result["losses"][0] == pytest.approx(losses_before_training[0])  # step 0's loss, before its update
    assert result["losses"][1] != pytest.approx(losses_before_training[1])  # step 1 sees the updated weights


def test_each_training_rung_adds_one_switch_to_the_one_before():
    rungs = benchmark.training_ladder(torch.device("cpu"), big_batches=[16])
    name, switches, options, batch, skip = rungs[0]
    assert options is None and switches == {} and batch is None and skip is None  # the chapter's own loop first
    described = [benchmark.describe_switches(switches, options) for _, switches, options, _, _ in rungs]
    json.dumps(described)  # what the results file stores must be plain JSON
    for i in range(2, len(rungs)):
        name, _, _, batch, skip = rungs[i]
        changed = {key for key in described[i] if described[i][key] != described[i - 1].get(key, False)}
        if skip is None and batch is None:  # a rung that runs measures exactly one more switch
            assert len(changed) == 1, (name, changed)
    assert rungs[-1][1] == dict(fused_attention=True, pad_vocab_multiple=64)  # the model side of the fast path
    assert rungs[-1][3] == 16 and rungs[-1][2].compile


def test_without_compile_every_compiled_rung_is_skipped_with_the_reason():
    rungs = benchmark.training_ladder(torch.device("cpu"), big_batches=[], compile=False)
    for name, switches, options, batch, skip in rungs:
        if options is not None and options.compile:
            assert skip is not None, name  # "--no-compile", unless it had a reason to skip already
    assert any(options is not None and not options.compile and skip is None for _, _, options, _, skip in rungs)


def test_gpu_only_rungs_say_why_they_are_skipped_on_a_cpu():
    skips = {name: skip for name, _, _, _, skip in benchmark.training_ladder(torch.device("cpu"), big_batches=[])}
    assert "CUDA" in skips["+ TF32 matmuls"] and "CUDA" in skips["+ pinned memory"]


def test_flops_per_token_of_gpt2_small():
    cfg = GPTConfig.gpt2("124M")
    flops, n_matmul = benchmark.flops_per_token(cfg)
    # All parameters but the two embedding tables: 163,009,536 - 50,257*768 - 1,024*768.
    assert n_matmul == 163_009_536 - 50_257 * 768 - 1_024 * 768
    assert flops == 6 * n_matmul + 12 * 12 * 768 * 1024
    # N comes from the model the config builds, so a padded config would count its 47 unused output rows as
    # work: the benchmark passes the unpadded config, and MFU counts only useful arithmetic.
    assert benchmark.flops_per_token(GPTConfig.gpt2("124M", pad_vocab_multiple=64))[0] > flops


def test_describe_switches_names_the_autocast_type():
    assert benchmark.describe_switches({}, None) is None
    described = benchmark.describe_switches({"fused_attention": True}, FastOptions(autocast=torch.bfloat16))
    assert described["autocast"] == "bf16" and described["fused_attention"] is True


def test_the_data_parallel_report_is_json_when_the_fast_path_trains_in_bfloat16(tmp_path, monkeypatch):
    """On a CPU or GPU that computes bfloat16 natively the fast path autocasts to it, and the report said so
    with a torch.dtype, which JSON cannot hold: the benchmark crashed on exactly the machines it is for."""
    import shared.fast

    monkeypatch.setattr(shared.fast, "autocast_dtype", lambda device: torch.bfloat16)  # as on such a machine
    out = tmp_path / "ddp.json"
    benchmark.main(["--ddp", "fast", "--device", "cpu", "--model-size", "micro", "--context", "16", "--batch-size", "2",
                    "--steps", "1", "--warmup", "0", "--no-compile", "--out", str(out)], log=lambda line: None)
    report = json.loads(out.read_text())
    assert report["options"]["autocast"] == "bf16" and report["world_size"] == 1


def test_a_head_tied_to_the_embedding_still_counts_its_flops():
    """The output layer multiplies at every position whether or not it shares its table with the embedding,
    so tying it changes the parameter count but not the work: the benchmark and the scaling lab agree."""
    from shared.budgets import per_token_parameters
    from shared.model import GPTModel

    untied, tied = GPTConfig.gpt2("124M"), GPTConfig.gpt2("124M", tie_embeddings=True)
    assert benchmark.flops_per_token(tied) == benchmark.flops_per_token(untied)
    with torch.device("meta"):
        assert benchmark.flops_per_token(tied)[1] == per_token_parameters(GPTModel(tied))
