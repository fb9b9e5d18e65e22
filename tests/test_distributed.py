"""shared/distributed.py: data-parallel training, checked against one process on the same global batches."""

import pickle
import socket

import pytest
import torch

from shared.distributed import token_windows, train_data_parallel
from shared.fast import FastOptions
from shared.text import UNKNOWN, GPTDataset, SimpleTokenizer


# The fast path's switches that are quick on a CPU: fused AdamW here, and train_data_parallel adds the model-side
# ones (fused attention, padded vocabulary). Not torch.compile: compiling takes minutes on a CPU.
CPU_FAST = FastOptions(fused_adamw=True)


def random_tokens(n=3000, vocab=101):
    return torch.randint(0, vocab, (n,), generator=torch.Generator().manual_seed(0))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("n_tokens,context_length", [(20, 4), (21, 4), (17, 4), (10, 9)])
def test_token_windows_are_chapter_2s_windows_with_stride_equal_to_the_context(n_tokens, context_length):
    # Token i is the word "wi", whose id is i: GPTDataset then windows the ids 0..n-1, as token_windows does.
    vocab = {f"w{i}": i for i in range(n_tokens)} | {UNKNOWN: n_tokens}
    text = " ".join(f"w{i}" for i in range(n_tokens))
    expected = GPTDataset(text, SimpleTokenizer(vocab), context_length, stride=context_length)
    windows = token_windows(torch.arange(n_tokens), context_length)
    assert len(windows) == len(expected)
    assert all(torch.equal(a, b) for i in range(len(windows)) for a, b in zip(windows[i], expected[i]))


def test_token_windows_need_one_window():
    with pytest.raises(ValueError, match="too few"):
        token_windows(torch.arange(4), 4)  # one window needs context_length + 1 tokens


# One process of the 2-process runs: the plain path, then the fast path, one after the other (data_parallel_worker
# sets up and tears down its gloo group each time). The processes are forked from the session's warm Python
# (tests/warm_python.py) rather than spawned: a spawned Python spent seconds importing torch and torch._dynamo.
WORKER = """
import pickle, sys
from shared.distributed import data_parallel_worker
rank, world_size, arguments = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
with open(arguments, "rb") as f:
    runs = pickle.load(f)
for port, cfg, tokens, steps, batch, out_path, options in runs:
    data_parallel_worker(rank, world_size, port, cfg, tokens, steps, batch, out_path, options)
"""


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory, tiny_config, warm_python):
    """{"plain": ..., "fast": ...}: what rank 0 saved after training with 2 processes (gloo)."""
    folder = tmp_path_factory.mktemp("ddp")
    cfg = tiny_config(drop_rate=0.0)  # no dropout: two processes would draw other masks than one process
    runs = {name: (free_port(), cfg, random_tokens(), 4, 8, folder / f"{name}.pt", options)
            for name, options in [("plain", None), ("fast", CPU_FAST)]}
    (folder / "runs.pkl").write_bytes(pickle.dumps(list(runs.values())))
    workers = [warm_python.start(WORKER, str(rank), "2", str(folder / "runs.pkl")) for rank in range(2)]
    try:
        for rank, worker in enumerate(workers):
            _, stderr = worker.communicate(timeout=300)
            assert worker.returncode == 0, f"rank {rank}: {stderr}"
    finally:  # one that failed leaves the other waiting for it: end it too
        for worker in workers:
            if worker.returncode is None:
                worker.kill()
                worker.communicate(timeout=60)
    return {name: torch.load(run[5], weights_only=True) for name, run in runs.items()}


def check_two_processes_match_one(parallel, cfg, options=None, steps=4, batch=8):
    """Train with 1 process on the global batches that 2 processes trained on (`parallel`); return the 1-process run."""
    tokens = random_tokens()
    torch.set_num_threads(1)
    single, history = train_data_parallel(cfg, tokens, steps, batch, options=options)
    assert all(isinstance(loss, float) for loss in history["losses"])  # numbers, not tensors
    differences = {k: (v - parallel["model"][k]).abs().max().item() for k, v in single.state_dict().items()}
    print(f"2 processes vs 1 ({'fast' if options else 'plain'} path): "
          f"max |parameter difference| = {max(differences.values()):.2e}")
    assert max(differences.values()) < 1e-5, differences
    assert parallel["losses"] == pytest.approx(history["losses"], abs=1e-5)
    return single, history


def test_two_gloo_processes_match_one_process(two_process_runs, tiny_model, tiny_config):
    cfg = tiny_config(drop_rate=0.0)
    single, _ = check_two_processes_match_one(two_process_runs["plain"], cfg)
    # train_data_parallel's default seed: its initial weights
    initial = tiny_model(seed=123, drop_rate=0.0).state_dict()
    assert not torch.equal(initial["out_head.weight"], single.state_dict()["out_head.weight"])  # it trained


def test_two_gloo_processes_match_one_process_on_the_fast_path(two_process_runs, tiny_config):
    cfg = tiny_config(drop_rate=0.0)  # 101 tokens: the fast path pads the tables to 128 rows
    fast, fast_history = check_two_processes_match_one(two_process_runs["fast"], cfg, CPU_FAST)
    # What comes back is the caller's GPTModel(cfg), padding rows dropped: it compares with a plain run.
    assert fast.cfg == cfg and fast.out_head.weight.shape[0] == cfg.vocab_size
    plain, plain_history = train_data_parallel(cfg, random_tokens(), 4, 8)
    assert fast_history["losses"] == pytest.approx(plain_history["losses"], abs=1e-4)
    for key, value in plain.state_dict().items():  # fused kernels round differently: 1e-4, not exact
        assert torch.allclose(fast.state_dict()[key], value, atol=1e-4, rtol=0), key


def test_the_fast_path_with_every_option_off_trains_like_the_plain_path(tiny_config):
    # FastOptions() keeps only the model-side switches; the weight decay, schedule and clipping are the same.
    cfg = tiny_config(drop_rate=0.0)
    torch.set_num_threads(1)
    fast, fast_history = train_data_parallel(cfg, random_tokens(), 3, 4, options=FastOptions())
    plain, plain_history = train_data_parallel(cfg, random_tokens(), 3, 4)
    assert fast_history["losses"] == pytest.approx(plain_history["losses"], abs=1e-5)
    for key, value in plain.state_dict().items():
        assert torch.allclose(fast.state_dict()[key], value, atol=1e-5, rtol=0), key
