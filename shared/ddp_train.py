"""Data-parallel training of a small GPT with PyTorch DDP, launched by torchrun (a hand-written script).

    torchrun --standalone --nproc_per_node=2 -m shared.ddp_train --steps 20
    torchrun --standalone --nproc_per_node=1 -m shared.ddp_train --steps 20   # the 1-process reference
    torchrun --standalone --nproc_per_node=2 -m shared.ddp_train --steps 20 --fast   # on the fast path
    torchrun --standalone --nproc_per_node=2 -m shared.ddp_train --fast --no-compile  # without torch.compile

Each process trains on its share of every global batch (a DistributedSampler splits the windows of
The Verdict); DDP averages the gradients so every process takes the same step. The backend is NCCL
when CUDA GPUs are present (one GPU per process) and gloo on CPUs. Run without torchrun, it trains
as a single process. See ch05_training_at_scale.ipynb for the explanation.

--fast trains on the fast path (shared.fast, explained in ch05_performance.ipynb): fused attention, a
vocabulary padded to a multiple of 64, fused AdamW, autocast where the device has a fast low-precision type,
TF32, pinned memory and torch.compile. Compiling takes minutes on a CPU; --no-compile leaves it out.
The weights saved are the same shape either way (no padding rows), so a fast run compares with a plain one.

It is a module of the course package so that it is there wherever the package is installed (Colab
included); every process must be able to import `shared` (from a notebook, pass
`env=shared.notebook.subprocess_env()` to the subprocess that runs torchrun).
"""

import argparse
from dataclasses import replace
from pathlib import Path

import torch
import torch.distributed as dist

from shared.checkpoints import torch_bytes
from shared.data import fetch, write_atomically
from shared.distributed import setup_distributed, train_data_parallel
from shared.model import GPTConfig
from shared.text import gpt2_tokenizer


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps")
    parser.add_argument("--global-batch-size", type=int, default=8, help="windows per step, summed over processes")
    parser.add_argument("--context-length", type=int, default=64)
    parser.add_argument("--emb-dim", type=int, default=64)
    parser.add_argument("--n-layers", type=int, default=2)
    parser.add_argument("--n-heads", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (after warmup)")
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--fast", action="store_true", help="train on the fast path: FastOptions.fastest(device)")
    parser.add_argument("--no-compile", action="store_true", help="with --fast: leave out torch.compile (slow on CPUs)")
    parser.add_argument("--save", type=Path, help="rank 0 saves final weights, losses and throughput here")
    args = parser.parse_args(argv)
    if args.no_compile and not args.fast:
        parser.error("--no-compile only applies to the fast path: add --fast")
    return args


def main(argv=None):
    args = parse_args(argv)
    rank, world_size, device = setup_distributed()
    # Dropout off: each process would draw different dropout masks, and the point here is parity.
    cfg = GPTConfig(context_length=args.context_length, emb_dim=args.emb_dim, n_layers=args.n_layers,
                    n_heads=args.n_heads, drop_rate=0.0)
    text = fetch("the-verdict.txt").read_text(encoding="utf-8")  # every process reads the cached file
    tokens = torch.tensor(gpt2_tokenizer().encode(text))
    options = None
    if args.fast:
        from shared.fast import FastOptions  # only on the fast path, as in train_data_parallel

        options = FastOptions.fastest(device)  # every switch on, autocast only where the device is fast at it
        if args.no_compile:
            options = replace(options, compile=False)
    if rank == 0:
        backend = dist.get_backend() if dist.is_initialized() else "none (single process)"
        print(f"world size {world_size}, backend {backend}, device {device}, "
              f"{args.global_batch_size // world_size} windows per process per step")
        if options is not None:
            print(f"fast path: {options}")
    model, history = train_data_parallel(
        cfg, tokens, args.steps, args.global_batch_size, rank, world_size, device, lr=args.lr, seed=args.seed,
        log=print if args.steps <= 10 else None, options=options,
    )
    if rank == 0:
        print(f"final loss {history['losses'][-1]:.4f}; {history['tokens_per_second']:,.0f} tokens/s "
              f"over {args.steps} steps ({history['seconds']:.1f} s)")
        if args.save:
            state = {"model": model.state_dict(), "losses": history["losses"],
                     "tokens_per_second": history["tokens_per_second"], "world_size": world_size}
            write_atomically(args.save, torch_bytes(state))  # serialised first, so a failure leaves no half file
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
