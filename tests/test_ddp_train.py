"""shared/ddp_train.py: the data-parallel training script, launched by torchrun as the chapter 5 notebook does."""

import subprocess
import sys

import torch

from shared.notebook import subprocess_env


def test_ddp_script_runs_with_torchrun(tmp_path):
    # As the notebook launches it: a module of the package, from a folder that is not the repository.
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "shared.ddp_train", "--steps=2", "--global-batch-size=4", f"--save={tmp_path / 'out.pt'}"]
    result = subprocess.run(command, cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "world size 2, backend gloo" in result.stdout
    assert torch.load(tmp_path / "out.pt", weights_only=True)["world_size"] == 2
