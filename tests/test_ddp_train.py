"""shared/ddp_train.py: the data-parallel training script, launched by torchrun as the chapter 5 notebook does."""

import math
import sys

import pytest
import torch

from shared import ddp_train
from shared.data import fetch
from shared.distributed import train_data_parallel
from shared.model import GPTConfig, GPTModel
from shared.notebook import subprocess_env
from shared.text import gpt2_tokenizer
from tests import early

STEPS, GLOBAL_BATCH = 2, 4


def script_config():
    """The model the script trains with its default sizes (its own GPTConfig: the script's, not a test's)."""
    args = ddp_train.parse_args([])
    return GPTConfig(context_length=args.context_length, emb_dim=args.emb_dim, n_layers=args.n_layers,
                     n_heads=args.n_heads, drop_rate=0.0)


def torchrun(folder_and_flags):
    # As the notebook launches it: a module of the package, from a folder that is not the repository.
    folder, flags, env = folder_and_flags
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "shared.ddp_train", f"--steps={STEPS}", f"--global-batch-size={GLOBAL_BATCH}",
               f"--save={folder / 'out.pt'}", *flags]
    return folder, early.run(command, cwd=folder, env=env, timeout=300)


# Each launch starts with the test loop and runs on the second core while the tests before these run (tests/early.py):
# the same torchrun command, with a folder of its own as its tmp_path.
@early.early(torchrun)
def plain_launch():
    return early.scratch("ddp-plain"), (), subprocess_env()


@early.early(torchrun)
def fast_launch():
    return early.scratch("ddp-fast"), ("--fast", "--no-compile"), subprocess_env()  # compiling: minutes on a CPU


def checked(launch):
    folder, result = launch
    assert result.returncode == 0, result.stderr[-2000:]
    assert "world size 2, backend gloo" in result.stdout
    saved = torch.load(folder / "out.pt", weights_only=True)
    assert saved["world_size"] == 2
    # It trained: one finite loss per step, the last one printed, and weights that left their initial values.
    assert len(saved["losses"]) == STEPS and all(math.isfinite(loss) for loss in saved["losses"]), saved["losses"]
    assert f"final loss {saved['losses'][-1]:.4f}" in result.stdout
    torch.manual_seed(ddp_train.parse_args([]).seed)  # train_data_parallel's initial weights
    initial = GPTModel(script_config()).state_dict()
    assert saved["model"].keys() == initial.keys()  # saved without padding rows, in the plain layout
    moved = [name for name, value in saved["model"].items() if not torch.equal(value, initial[name])]
    assert len(moved) == len(initial), f"unchanged by training: {sorted(set(initial) - set(moved))}"
    return result.stdout, saved


def test_ddp_script_runs_with_torchrun(plain_launch):
    stdout, saved = checked(plain_launch)
    assert "fast path" not in stdout
    # Two processes, each on half of every global batch, train what one process trains on the whole batch
    # (tests/test_distributed.py checks that for the library function; this checks the script drives it so).
    tokens = torch.tensor(gpt2_tokenizer().encode(fetch("the-verdict.txt").read_text(encoding="utf-8")))
    args = ddp_train.parse_args([])
    single, history = train_data_parallel(script_config(), tokens, STEPS, GLOBAL_BATCH, lr=args.lr, seed=args.seed)
    assert saved["losses"] == pytest.approx(history["losses"], abs=1e-5)
    differences = {k: (v - saved["model"][k]).abs().max().item() for k, v in single.state_dict().items()}
    assert max(differences.values()) < 1e-5, differences


def test_ddp_script_trains_on_the_fast_path(fast_launch):
    stdout, saved = checked(fast_launch)
    assert "fast path: FastOptions(" in stdout and "fused_adamw=True" in stdout and "compile=False" in stdout
    # Saved without the padding rows: the script's plain config loads them, as it loads a plain run's.
    GPTModel(script_config()).load_state_dict(saved["model"])


def test_no_compile_needs_the_fast_path():
    assert ddp_train.parse_args(["--fast", "--no-compile"]).no_compile
    with pytest.raises(SystemExit):
        ddp_train.parse_args(["--no-compile"])
