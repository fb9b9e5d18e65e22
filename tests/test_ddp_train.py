"""shared/ddp_train.py: the data-parallel training script, launched by torchrun as the chapter 5 notebook does."""

import subprocess
import sys

import pytest
import torch

from shared import ddp_train
from shared.model import GPTConfig, GPTModel
from shared.notebook import subprocess_env


def torchrun_script(tmp_path, *flags):
    # As the notebook launches it: a module of the package, from a folder that is not the repository.
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "shared.ddp_train", "--steps=2", "--global-batch-size=4", f"--save={tmp_path / 'out.pt'}", *flags]
    result = subprocess.run(command, cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "world size 2, backend gloo" in result.stdout
    saved = torch.load(tmp_path / "out.pt", weights_only=True)
    assert saved["world_size"] == 2
    return result.stdout, saved


def test_ddp_script_runs_with_torchrun(tmp_path):
    stdout, _ = torchrun_script(tmp_path)
    assert "fast path" not in stdout


def test_ddp_script_trains_on_the_fast_path(tmp_path):
    stdout, saved = torchrun_script(tmp_path, "--fast", "--no-compile")  # compiling would take minutes on a CPU
    assert "fast path: FastOptions(" in stdout and "fused_adamw=True" in stdout and "compile=False" in stdout
    # Saved without the padding rows: the script's plain config loads them, as it loads a plain run's.
    args = ddp_train.parse_args([])
    cfg = GPTConfig(context_length=args.context_length, emb_dim=args.emb_dim, n_layers=args.n_layers,
                    n_heads=args.n_heads, drop_rate=0.0)
    GPTModel(cfg).load_state_dict(saved["model"])


def test_no_compile_needs_the_fast_path():
    assert ddp_train.parse_args(["--fast", "--no-compile"]).no_compile
    with pytest.raises(SystemExit):
        ddp_train.parse_args(["--no-compile"])
