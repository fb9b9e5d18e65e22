"""Benchmark the course's plain training and generation against the fast path (shared/fast.py), in one run.

A hand-written script of the course package (ch05_performance.ipynb explains it), so it runs wherever the
package is installed:

    python -m shared.benchmark --device auto --out results.json          # GPT-2 124M, context 1024 (a GPU)
    python -m shared.benchmark --device cpu --quick --out quick.json      # a smoke test of every rung
    python -m shared.benchmark --model-size mini --context 256 --steps 5  # a CPU-sized run
    torchrun --standalone --nproc_per_node=2 -m shared.benchmark --ddp fast --batch-size 16  # data parallel

Training ladder: the chapter's plain float32 loop, then one switch more per rung (TF32, bf16 autocast, fused
attention, fused AdamW, torch.compile, padded vocabulary, pinned memory, a bigger batch). Every rung starts
from the same weights and (up to the bigger batch) sees the same batches, so the loss curves are comparable.
Each row reports tokens/s, model-FLOPs utilisation (MFU) and peak memory:

    FLOPs per token = 6 N + 12 L d T
    N: parameters that take part in a matrix multiply (all but the two embedding tables, which are lookups),
    L: layers, d: width, T: context length. 6N counts the forward (2N) and backward (4N) matmuls with the
    weights, 12 L d T the attention scores and weighted sums (forward and backward, causal mask ignored).
    MFU = tokens/s * FLOPs per token / peak, against the GPU's bf16 dense peak from its data sheet (GPUs only)
    and against a large matmul measured on the same device in this run (every device).

Generation ladder: new tokens/s for each prompt length (the uncached loop, the chapter 4 KV cache, the
static cache, the static cache compiled (CUDA graphs on a GPU), the same in bfloat16, and a batch), with
whether the tokens equal the uncached float32 loop's. Every row names the device it ran on.
"""

import argparse
import json
import platform
import sys
import time
import traceback
from dataclasses import asdict, replace
from pathlib import Path

import torch

from shared.budgets import per_token_parameters
from shared.data import fetch
from shared.fast import FastOptions, FastTrainer, StaticDecoder, copy_weights, fast_config
from shared.generation import generate_greedy
from shared.model import GPT2_SIZES, GPTConfig, GPTModel
from shared.text import gpt2_tokenizer, sample_batch
from shared.train_step import autocast_dtype
from shared.training import optimizer_step

# Sizes small enough for a CPU, besides GPT-2's own (same vocabulary, GPT-2's shape otherwise).
CPU_SIZES = {"mini": dict(emb_dim=256, n_layers=4, n_heads=4), "micro": dict(emb_dim=64, n_layers=2, n_heads=2)}
# bf16 dense tensor-core peaks from NVIDIA's data sheets (FLOP/s, without sparsity), matched on the device name.
GPU_BF16_PEAKS = [("H100 PCIe", 756e12), ("H100", 989e12), ("H200", 989e12), ("GH200", 989e12),
                  ("A100", 312e12), ("L40S", 362e12), ("L4", 121e12), ("A10G", 70e12), ("A10", 125e12)]


def describe_device(device):
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"{device.type} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gpu_bf16_peak(device):
    """The data-sheet bf16 dense peak of this GPU, or None (CPUs, unknown GPUs)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in GPU_BF16_PEAKS if key in name), None)


def measure_matmul_rate(device, dtype, n=None, repeats=None):
    """FLOP/s of an n x n x n matmul in `dtype`: what this device sustains on the easiest possible work."""
    n = n or (8192 if device.type == "cuda" else 1024)
    repeats = repeats or (20 if device.type == "cuda" else 5)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm-up
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def flops_per_token(cfg):
    """6 N + 12 L d T (see the module docstring); N from the unpadded model, counted by the course's one rule
    (budgets.per_token_parameters: a head tied to the token embedding still multiplies, so it counts)."""
    with torch.device("meta"):  # shapes only, no memory
        model = GPTModel(cfg)
    n = per_token_parameters(model)
    return 6 * n + 12 * cfg.n_layers * cfg.emb_dim * cfg.context_length, n


def peak_memory(device):
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


DTYPE_NAMES = {torch.bfloat16: "bf16", torch.float16: "fp16", None: None}


def training_ladder(device, big_batches, compile=True, compile_mode=None):
    """Rungs (name, model switches, options, batch size, skip reason), one switch more on each.

    The model switches are GPTConfig fields (fused attention, padded vocabulary); options are FastOptions,
    or None for the chapter's own loop; batch size None means the base one.
    """
    low = autocast_dtype(device)
    no_bf16 = None if low else f"{device.type} has no fast bf16/fp16 matmul here: measured in the matmul rows"
    switches, options = {}, FastOptions(tf32=True)
    rungs = [("plain fp32 (chapter loop)", switches, None, None, None),
             ("+ TF32 matmuls", switches, options, None, None if device.type == "cuda" else "TF32 is a CUDA setting: same as plain")]
    options = replace(options, autocast=low)
    rungs.append((f"+ {DTYPE_NAMES[low] or 'bf16'} autocast", switches, options, None, no_bf16))
    for name, model_change, option_change in [
            ("+ fused attention (SDPA)", dict(fused_attention=True), {}), ("+ fused AdamW", {}, dict(fused_adamw=True)),
            ("+ torch.compile", {}, dict(compile=True)), ("+ vocab padded to 50304", dict(pad_vocab_multiple=64), {}),
            ("+ pinned memory", {}, dict(pin_memory=True))]:
        switches, options = {**switches, **model_change}, replace(options, **option_change)
        skip = "pinned memory is a CUDA feature: same as above" if "pinned" in name and device.type != "cuda" else None
        rungs.append((name, switches, options, None, skip))
    for batch_size in big_batches:
        rungs.append((f"+ batch {batch_size}", switches, options, batch_size, None))
    if not compile:
        rungs = [(*rung[:4], rung[4] or ("--no-compile" if rung[2] is not None and rung[2].compile else None))
                 for rung in rungs]
    if compile_mode:
        rungs = [(name, sw, replace(o, compile_mode=compile_mode) if o is not None and o.compile else o, b, skip)
                 for name, sw, o, b, skip in rungs]
    return rungs


def describe_switches(switches, options):
    """The rung's switches as plain JSON values (dtypes by their short names)."""
    if options is None:
        return None
    described = {name: DTYPE_NAMES[value] if name == "autocast" else value for name, value in asdict(options).items()}
    return {**switches, **described}


def run_training(cfg, switches, options, batch_size, tokens, init_state, device, warmup, steps, seed=0):
    """Losses of warmup + steps steps from init_state on the same batches, and the timing of the last `steps`."""
    torch._dynamo.reset()  # every rung compiles afresh, for its own shapes (and the recompile limit is never hit)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    if options is None:  # the chapter's loop, exactly
        model = GPTModel(cfg).to(device)
        model.load_state_dict(init_state)
        chapter_step = optimizer_step(torch.optim.AdamW(model.parameters(), lr=4e-4, weight_decay=0.1))

        def step(inputs, targets):
            return chapter_step(model, inputs.to(device), targets.to(device))
    else:
        plain = GPTModel(cfg)
        plain.load_state_dict(init_state)
        model = copy_weights(plain, GPTModel(replace(cfg, **switches))).to(device)
        step = FastTrainer(model, options, lr=4e-4, weight_decay=0.1).step
    model.train()
    losses = []
    start = time.perf_counter()
    for i in range(warmup + steps):
        if i == warmup:  # the first steps compile, warm caches and allocate
            synchronize(device)
            warmup_seconds, start = time.perf_counter() - start, time.perf_counter()
        inputs, targets = sample_batch(tokens, batch_size, cfg.context_length, step=i, seed=seed)
        losses.append(step(inputs, targets))
    synchronize(device)
    elapsed = time.perf_counter() - start
    return {"losses": [loss.item() for loss in losses], "seconds": elapsed, "warmup_seconds": warmup_seconds,
            "tokens_per_second": steps * batch_size * cfg.context_length / elapsed, "peak_memory_gib": peak_memory(device)}


def benchmark_training(args, device, cfg, tokens, log=print):
    fpt, n_matmul = flops_per_token(cfg)
    peak = gpu_bf16_peak(device)
    matmul_dtype = autocast_dtype(device) or torch.float32
    matmul_rate = measure_matmul_rate(device, matmul_dtype)
    fp32_rate = measure_matmul_rate(device, torch.float32) if matmul_dtype != torch.float32 else matmul_rate
    result = {"config": asdict(cfg), "flops_per_token": fpt, "matmul_parameters": n_matmul,
              "gpu_bf16_peak": peak, "matmul_dtype": str(matmul_dtype).replace("torch.", ""),
              "measured_matmul_flops": matmul_rate, "measured_fp32_matmul_flops": fp32_rate,
              "batch_size": args.batch_size, "warmup_steps": args.warmup, "timed_steps": args.steps, "rows": []}
    if device.type == "cpu" and matmul_dtype == torch.float32:
        result["measured_bf16_matmul_flops"] = measure_matmul_rate(device, torch.bfloat16, n=256, repeats=2)
    log(f"training: {cfg.n_layers} layers, width {cfg.emb_dim}, context {cfg.context_length}, vocabulary "
        f"{cfg.vocab_size}; {n_matmul / 1e6:.1f}M matmul parameters; {fpt / 1e9:.3f} GFLOP per token")
    log(f"measured {result['matmul_dtype']} matmul: {matmul_rate / 1e12:.3f} TFLOP/s" +
        (f"; data-sheet bf16 peak {peak / 1e12:.0f} TFLOP/s" if peak else "; no data-sheet peak (not a known GPU)"))
    torch.manual_seed(args.seed)
    init_state = GPTModel(cfg).state_dict()
    for name, switches, options, batch_size, skip in training_ladder(device, args.big_batches, not args.no_compile,
                                                                     args.compile_mode):
        row = {"name": name, "device": describe_device(device), "batch_size": batch_size or args.batch_size,
               "options": describe_switches(switches, options)}

        def measure(switches=switches, options=options, batch_size=row["batch_size"]):
            measured = run_training(cfg, switches, options, batch_size, tokens, init_state, device, args.warmup, args.steps)
            flops_per_second = measured["tokens_per_second"] * fpt
            return {**measured, "mfu_vs_peak": flops_per_second / peak if peak else None,
                    "mfu_vs_matmul": flops_per_second / matmul_rate}

        result["rows"].append(fill_row(row, skip, device, measure))
        log(format_training_row(row, result))
    plain = result["rows"][0]
    if plain["status"] == "ok":
        for row in result["rows"][1:]:
            if row["status"] == "ok":
                row["speedup"] = row["tokens_per_second"] / plain["tokens_per_second"]
                if row["batch_size"] == args.batch_size:  # same batches: the loss curves must agree
                    row["max_loss_difference"] = max(abs(a - b) for a, b in zip(row["losses"], plain["losses"]))
    return result


def fill_row(row, skip, device, measure):
    """Complete one rung's row of a ladder and return it: `status` is "skipped: <why>" when `skip` says why,
    "ok" with the results of measure() (a dict) merged in, "out of memory", or "failed: <error>"; one broken
    rung must not hide the others."""
    if skip:
        row["status"] = f"skipped: {skip}"
        return row
    try:
        row.update(measure())
        row["status"] = "ok"
    except torch.cuda.OutOfMemoryError:
        row["status"] = "out of memory"
    except Exception as error:
        row["status"] = f"failed: {type(error).__name__}: {str(error).splitlines()[0][:200]}"
        traceback.print_exc()
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return row


def format_training_row(row, result=None):
    if row.get("status") != "ok":
        return f"  {row['name']:<30} {row['status']}"
    memory = f"{row['peak_memory_gib']:.1f} GiB" if row["peak_memory_gib"] is not None else "n/a"
    peak = f"{100 * row['mfu_vs_peak']:5.1f}%" if row.get("mfu_vs_peak") is not None else "  n/a"
    return (f"  {row['name']:<30} batch {row['batch_size']:>3} | {row['tokens_per_second']:>10,.0f} tok/s | MFU vs peak "
            f"{peak} | vs measured matmul {100 * row['mfu_vs_matmul']:5.1f}% | peak memory {memory} | "
            f"final loss {row['losses'][-1]:.3f} | {row['device']}")


def verdict_prompts(tokens, length, batch_size):
    """batch_size prompts of `length` tokens from The Verdict, each from a different place."""
    starts = [(i * 997) % (len(tokens) - length) for i in range(batch_size)]
    return torch.stack([tokens[s : s + length] for s in starts])


def time_generation(generate, idx, device):
    synchronize(device)
    start = time.perf_counter()
    out = generate(idx)
    synchronize(device)
    return out, time.perf_counter() - start


def benchmark_generation(args, device, cfg, tokens, log=print):
    torch.manual_seed(args.seed)
    model = GPTModel(cfg).to(device).eval()
    low = autocast_dtype(device) == torch.bfloat16  # the bf16 generation rungs need fast bf16
    result = {"config": asdict(cfg), "new_tokens": args.gen_tokens, "rows": []}
    log(f"generation: {cfg.n_layers} layers, width {cfg.emb_dim}, context {cfg.context_length}, "
        f"{args.gen_tokens} new tokens, random weights (speed does not depend on what the weights are)")
    for prompt_length in args.gen_prompts:
        prompts = verdict_prompts(tokens, prompt_length, args.gen_batch).to(device)
        one = prompts[:1]
        n = args.gen_tokens
        for use_cache in (False, True):  # warm up (library initialisation must not count against the first row)
            generate_greedy(model, one, 2, use_cache=use_cache)
        StaticDecoder(model, 1).generate(one, 2)
        reference = None
        low_model = None
        if low:
            low_model = copy_weights(model, GPTModel(cfg).to(device=device, dtype=torch.bfloat16)).eval()
        rungs = [
            ("uncached loop (fp32)", 1, lambda idx: generate_greedy(model, idx, n, use_cache=False), None, None),
            ("chapter 4 KV cache (fp32)", 1, lambda idx: generate_greedy(model, idx, n, use_cache=True), None, None),
            ("static cache (fp32)", 1, lambda idx: StaticDecoder(model, 1).generate(idx, n), None, None),
            ("static cache + compile (fp32)", 1, "compile", model, None),
            ("static cache + compile (bf16)", 1, "compile", low_model, None if low else "no fast bf16 on this device"),
            (f"batch {args.gen_batch}: static + compile ({'bf16' if low else 'fp32'})", args.gen_batch, "compile",
             low_model if low else model, None),
        ]
        if args.skip_uncached:
            rungs[0] = (*rungs[0][:4], "--skip-uncached")
        if args.no_compile:
            rungs = [(*r[:4], r[4] or "--no-compile") if r[2] == "compile" else r for r in rungs]
        for name, batch, run, which_model, skip in rungs:
            row = {"name": name, "prompt_length": prompt_length, "batch_size": batch, "device": describe_device(device)}

            def measure(batch=batch, run=run, which_model=which_model):
                nonlocal reference
                measured = {}
                idx = prompts if batch > 1 else one
                if run == "compile":
                    torch._dynamo.reset()
                    decoder = StaticDecoder(which_model, batch, compile=True)
                    start = time.perf_counter()
                    decoder.generate(idx, 3)  # compiles (and records the CUDA graph) once
                    synchronize(device)
                    measured["compile_seconds"] = time.perf_counter() - start
                    run = lambda idx, decoder=decoder: decoder.generate(idx, n)  # noqa: E731
                out, seconds = time_generation(run, idx, device)
                measured.update(seconds=seconds, tokens_per_second=batch * n / seconds)
                new = out[0, prompt_length:].cpu()
                if reference is None:
                    reference = new  # the first row that ran: the uncached loop, or else the chapter 4 cache
                    measured["reference"] = True
                same = (new == reference).long()
                measured["identical_to_reference"] = bool(same.all())
                measured["first_difference"] = None if same.all() else int((same == 0).nonzero()[0, 0])
                return measured

            result["rows"].append(fill_row(row, skip, device, measure))
            log(format_generation_row(row))
    for row in result["rows"]:
        base = [r for r in result["rows"] if r["prompt_length"] == row["prompt_length"] and r["status"] == "ok"
                and r["name"].startswith("uncached")]
        if row["status"] == "ok" and base:
            row["speedup_vs_uncached"] = row["tokens_per_second"] / base[0]["tokens_per_second"]
    return result


def format_generation_row(row):
    if row.get("status") != "ok":
        return f"  prompt {row['prompt_length']:>4} | {row['name']:<36} {row['status']}"
    same = "identical" if row["identical_to_reference"] else f"differs from token {row['first_difference']}"
    return (f"  prompt {row['prompt_length']:>4} | {row['name']:<36} | {row['tokens_per_second']:>9,.1f} new tok/s "
            f"| {row['seconds']:7.2f} s | {same} | {row['device']}")


def benchmark_data_parallel(args, tokens, log=print):
    """Run under torchrun: every process trains its share of each global batch with DDP; rank 0 reports tokens/s."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from shared.distributed import setup_distributed

    rank, world_size, device = setup_distributed()
    if args.device != "auto":
        device = torch.device(args.device)
    if device.type == "cpu" and world_size > 1:
        torch.set_num_threads(max(1, torch.get_num_threads() // world_size))  # the processes share the cores
    cfg = model_config(args.model_size, args.context)
    fast = args.ddp == "fast"
    options = FastOptions.fastest(device) if fast else FastOptions()
    if args.no_compile:
        options = replace(options, compile=False)
    torch.manual_seed(args.seed)
    plain = GPTModel(cfg)
    model = copy_weights(plain, GPTModel(fast_config(cfg) if fast else cfg)).to(device)
    if world_size > 1:
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    trainer = FastTrainer(model, options)
    if args.batch_size % world_size:
        raise SystemExit(f"--batch-size {args.batch_size} (the global batch) must be divisible by {world_size} processes")
    start = time.perf_counter()
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            synchronize(device)
            start = time.perf_counter()
        inputs, targets = sample_batch(tokens, args.batch_size, cfg.context_length, step=step, seed=0)
        loss = trainer.step(inputs[rank::world_size], targets[rank::world_size])  # this process's share
    synchronize(device)
    seconds = time.perf_counter() - start
    loss = loss.reshape(1)
    if world_size > 1:
        dist.all_reduce(loss)
        loss /= world_size
    if rank == 0:
        rate = args.steps * args.batch_size * cfg.context_length / seconds
        log(f"data parallel | {args.ddp} path | {world_size} process(es) on {describe_device(device)} | global batch "
            f"{args.batch_size} | {rate:,.0f} tok/s | last loss {loss.item():.4f}")
        if args.out:
            args.out.write_text(json.dumps({"path": args.ddp, "world_size": world_size, "device": describe_device(device),
                                            "tokens_per_second": rate, "options": describe_switches({}, options)}, indent=1))
    if dist.is_initialized():
        dist.destroy_process_group()


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1, ...")
    parser.add_argument("--out", type=Path, help="write every number to this JSON file")
    parser.add_argument("--quick", action="store_true", help="a tiny model and few steps: checks that every rung runs")
    parser.add_argument("--model-size", default="124M", help=f"one of {list(GPT2_SIZES) + list(CPU_SIZES)}")
    parser.add_argument("--context", type=int, default=1024, help="training context length")
    parser.add_argument("--batch-size", type=int, default=8, help="windows per step on every rung but the last")
    parser.add_argument("--big-batches", type=lambda s: [int(x) for x in s.split(",") if x], default=[16, 32, 64],
                        help="comma-separated batch sizes for the last rungs (the fastest that fits wins)")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per rung")
    parser.add_argument("--warmup", type=int, default=3, help="untimed training steps first (compilation happens here)")
    parser.add_argument("--gen-tokens", type=int, default=1000, help="new tokens per generation run")
    parser.add_argument("--gen-prompts", type=lambda s: [int(x) for x in s.split(",")], default=[8, 512])
    parser.add_argument("--gen-batch", type=int, default=16, help="rows in the batched generation rung")
    parser.add_argument("--gen-context", type=int, default=1024, help="context length of the generation model")
    parser.add_argument("--skip-uncached", action="store_true", help="leave out the (slow) uncached loop")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile rungs (slow to compile on CPUs)")
    parser.add_argument("--compile-mode", help="torch.compile mode for the training rungs, e.g. max-autotune")
    parser.add_argument("--no-train", action="store_true")
    parser.add_argument("--no-generate", action="store_true")
    parser.add_argument("--ddp", choices=["plain", "fast"], help="data-parallel training only (launch with torchrun)")
    parser.add_argument("--seed", type=int, default=123)
    args = parser.parse_args(argv)
    if args.quick:
        args.model_size, args.context, args.batch_size, args.big_batches = "micro", 64, 2, [4]
        args.steps, args.warmup, args.gen_tokens, args.gen_prompts, args.gen_batch, args.gen_context = 2, 1, 20, [8, 40], 2, 64
    return args


def model_config(size, context):
    shape = GPT2_SIZES.get(size) or CPU_SIZES.get(size)
    if shape is None:
        raise SystemExit(f"unknown --model-size {size!r}: choose one of {list(GPT2_SIZES) + list(CPU_SIZES)}")
    return GPTConfig(context_length=context, drop_rate=0.0, **shape)  # no dropout: the rungs must be comparable


def main(argv=None, log=print):
    args = parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    text = fetch("the-verdict.txt").read_text(encoding="utf-8")
    tokens = torch.tensor(gpt2_tokenizer().encode(text))
    if args.ddp:
        return benchmark_data_parallel(args, tokens, log)
    log(f"device: {describe_device(device)} | torch {torch.__version__} | corpus: The Verdict, "
        f"{len(text):,} characters, {len(tokens):,} GPT-2 tokens")
    results = {"device": describe_device(device), "torch": torch.__version__, "argv": sys.argv[1:] if argv is None else argv,
               "corpus_tokens": len(tokens), "model_size": args.model_size}
    if not args.no_train:
        results["training"] = benchmark_training(args, device, model_config(args.model_size, args.context), tokens, log)
    if not args.no_generate:
        results["generation"] = benchmark_generation(args, device, model_config(args.model_size, args.gen_context), tokens, log)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1))
        log(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
