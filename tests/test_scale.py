"""Scale-up utilities: schedule, clipping, mixed precision, exact resume, budgets, data parallelism."""

import functools
import json
import math
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from shared.scale import (
    CheckpointError,
    WarmupCosine,
    atomic_write,
    autocast_dtype,
    chinchilla_tokens,
    clip_gradients,
    gpu_hours,
    grad_norm,
    load_checkpoint,
    make_grad_scaler,
    sample_batch,
    save_checkpoint,
    train_data_parallel,
    train_step,
    training_flops,
    training_memory_gb,
    warmup_cosine_scheduler,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny_model(tiny_model):
    """The shared tiny sizes with dropout on: the same model as RESUME_CODE's below."""
    return functools.partial(tiny_model, drop_rate=0.1)


def random_tokens(n=3000, vocab=101):
    return torch.randint(0, vocab, (n,), generator=torch.Generator().manual_seed(0))


# --- schedule and clipping ---------------------------------------------------------------


def test_warmup_cosine_shape():
    f = WarmupCosine(warmup_steps=10, total_steps=100, min_ratio=0.1)
    values = [f(s) for s in range(100)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(values[:9], values[1:10]))  # rising during warmup
    assert all(a >= b for a, b in zip(values[10:], values[11:]))  # falling afterwards
    assert values[-1] == pytest.approx(0.1)
    assert values[10 + 45] == pytest.approx(0.55, abs=0.02)  # halfway down the cosine


@pytest.mark.parametrize("args", [(10, 10), (-1, 10), (5, 10, 1.5)])
def test_warmup_cosine_rejects_bad_arguments(args):
    with pytest.raises(ValueError):
        WarmupCosine(*args)


def test_scheduler_sets_learning_rates():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    scheduler = warmup_cosine_scheduler(optimizer, 2, 10, min_ratio=0.2)
    seen = []
    for _ in range(10):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen[0] == pytest.approx(0.25) and seen[1] == pytest.approx(0.5) and seen[-1] == pytest.approx(0.1)


def test_clip_gradients_caps_the_global_norm(tiny_model):
    model = tiny_model()
    inputs, targets = sample_batch(random_tokens(), 4, 16, step=0)
    (model(inputs).sum() * 100).backward()
    norm = grad_norm(model)
    before, after = clip_gradients(model, max_norm=1.0)
    assert before == pytest.approx(norm, rel=1e-5) and before > 1.0
    assert after == pytest.approx(1.0, rel=1e-4)
    before2, after2 = clip_gradients(model, max_norm=10.0)  # already below the cap: unchanged
    assert after2 == pytest.approx(before2, rel=1e-5)


def test_sample_batch_depends_only_on_step():
    tokens = random_tokens()
    x1, y1 = sample_batch(tokens, 4, 16, step=7, seed=3)
    torch.manual_seed(999)  # the global RNG must not matter
    x2, y2 = sample_batch(tokens, 4, 16, step=7, seed=3)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(x1, sample_batch(tokens, 4, 16, step=8, seed=3)[0])
    assert x1.shape == (4, 16) and torch.equal(x1[:, 1:], y1[:, :-1])
    with pytest.raises(ValueError):
        sample_batch(tokens[:10], 4, 16, step=0)


# --- mixed precision ---------------------------------------------------------------------


def test_cpu_uses_bfloat16_only_with_native_support_and_never_a_scaler(monkeypatch):
    native = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert autocast_dtype("cpu") == (torch.bfloat16 if native else None)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    assert autocast_dtype("cpu") == torch.bfloat16
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert autocast_dtype("cpu") is None  # emulated bfloat16 would be far slower than float32
    assert make_grad_scaler("cpu", torch.bfloat16) is None
    assert make_grad_scaler("cpu", torch.float16) is None  # scalers are for CUDA float16 only


def test_train_step_with_bfloat16_autocast_keeps_float32_weights(tiny_model):
    model = tiny_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = model.out_head.weight.clone()
    loss, norm = train_step(model, optimizer, *sample_batch(random_tokens(), 4, 16, 0), max_norm=1.0,
                            amp_dtype=torch.bfloat16)
    assert math.isfinite(loss) and norm > 0
    assert model.out_head.weight.dtype == torch.float32 and not torch.equal(before, model.out_head.weight)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the float16 + GradScaler branch needs a CUDA GPU")
def test_float16_with_grad_scaler_on_cuda(tiny_model):
    model = tiny_model().cuda()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = make_grad_scaler("cuda", torch.float16)
    inputs, targets = (t.cuda() for t in sample_batch(random_tokens(), 4, 16, 0))
    loss, _ = train_step(model, optimizer, inputs, targets, max_norm=1.0, amp_dtype=torch.float16, scaler=scaler)
    assert math.isfinite(loss)


# --- checkpoints -------------------------------------------------------------------------

# The same training code runs in this process and in a fresh Python process (the "resume after a crash").
RESUME_CODE = """
import json, sys
import torch
from shared.model import GPTConfig, GPTModel
from shared.scale import load_checkpoint, sample_batch, save_checkpoint, train_step, warmup_cosine_scheduler

CFG = GPTConfig(vocab_size=101, context_length=16, emb_dim=32, n_heads=2, n_layers=2, drop_rate=0.1)
TOKENS = torch.randint(0, 101, (3000,), generator=torch.Generator().manual_seed(0))
N = 10

def objects(seed):
    torch.manual_seed(seed)
    model = GPTModel(CFG)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.1)
    return model, optimizer, warmup_cosine_scheduler(optimizer, 3, N)

def run(model, optimizer, scheduler, first, last):
    model.train()
    return [train_step(model, optimizer, *sample_batch(TOKENS, 4, 16, s), scheduler, 1.0)[0] for s in range(first, last)]

if __name__ == "__main__":
    path, out = sys.argv[1], sys.argv[2]
    model, optimizer, scheduler = objects(seed=12345)  # overwritten by the checkpoint
    step = load_checkpoint(path, model, optimizer, scheduler)["step"]
    with open(out, "w") as f:
        json.dump(run(model, optimizer, scheduler, step, N), f)
"""


def test_resume_in_a_fresh_process_gives_the_same_losses(tmp_path):
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
    result = subprocess.run([sys.executable, "-c", RESUME_CODE, str(tmp_path / "ckpt.pt"), str(tmp_path / "rest.json")],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rest = json.loads((tmp_path / "rest.json").read_text())
    assert first + rest == straight  # exactly, not approximately
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt", "ckpt.pt.sha256", "rest.json"]


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


def test_missing_checkpoint(tiny_model, tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "nope.pt", tiny_model())


def test_truncated_checkpoint_without_checksum_file(tiny_model, saved):
    data = saved.read_bytes()
    saved.with_name("c.pt.sha256").unlink()
    saved.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
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
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        load_checkpoint(tmp_path / "other.pt", tiny_model())


def test_crash_while_writing_leaves_the_old_file_and_no_partial_file(saved):
    original = saved.read_bytes()

    def crash(f):
        f.write(b"half a checkpoint")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        atomic_write(saved, crash)
    assert saved.read_bytes() == original
    assert sorted(p.name for p in saved.parent.iterdir()) == ["c.pt", "c.pt.sha256"]


# --- budgets -----------------------------------------------------------------------------


def test_budget_arithmetic():
    assert chinchilla_tokens(1e9) == 2e10
    assert training_flops(1e9, 2e10) == pytest.approx(1.2e20)
    assert gpu_hours(3.6e15, 1e12, 1.0) == pytest.approx(1.0)
    assert gpu_hours(3.6e15, 1e12, 0.5) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        gpu_hours(1.0, 1.0, 0.0)


def test_training_memory_by_zero_stage():
    n = 1e9
    assert training_memory_gb(n) == pytest.approx(16.0)
    assert training_memory_gb(n, 8, 0) == pytest.approx(16.0)  # plain data parallelism: no saving
    assert training_memory_gb(n, 8, 1) == pytest.approx(4 + 12 / 8)
    assert training_memory_gb(n, 8, 2) == pytest.approx(2 + 14 / 8)
    assert training_memory_gb(n, 8, 3) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        training_memory_gb(n, 8, 4)


# --- data parallelism --------------------------------------------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_match_one_process(tmp_path, tiny_model, tiny_config):
    from shared.scale import data_parallel_worker

    cfg = tiny_config(drop_rate=0.0)  # no dropout: two processes would draw other masks than one process
    tokens, steps, batch = random_tokens(), 4, 8
    torch.set_num_threads(1)
    single, history = train_data_parallel(cfg, tokens, steps, batch)
    mp.spawn(data_parallel_worker, args=(2, free_port(), cfg, tokens, steps, batch, tmp_path / "ddp.pt"), nprocs=2)
    parallel = torch.load(tmp_path / "ddp.pt", weights_only=True)
    differences = {k: (v - parallel["model"][k]).abs().max().item() for k, v in single.state_dict().items()}
    print(f"2 processes vs 1: max |parameter difference| = {max(differences.values()):.2e}")
    assert max(differences.values()) < 1e-5, differences
    assert parallel["losses"] == pytest.approx(history["losses"], abs=1e-5)
    # train_data_parallel's default seed: its initial weights
    initial = tiny_model(seed=123, drop_rate=0.0).state_dict()
    assert not torch.equal(initial["out_head.weight"], single.state_dict()["out_head.weight"])  # it trained

