"""Time and peak memory of the LM-head loss paths (forward + backward), printed as a markdown table.

Paths, all on the same random hidden states ``[batch, seq, hidden]`` and projection ``[vocab, hidden]`` (both trained,
as in full fine-tuning; ``--frozen-head`` for LoRA), every position supervised:

* ``hf_default``       transformers' default: ``lm_head`` then ``ForCausalLMLoss`` (full logits, float32 upcast);
* ``ce_chunked``       plain cross-entropy through the one-pass chunked head (gradients in the forward, Liger-style);
* ``ce_two_phase``     plain cross-entropy through the two-phase chunked head TALR uses (logp, then backward);
* ``talr_reference``   full logits, ``talr.losses.token_logprobs`` + ``talr_loss`` (the straightforward TALR);
* ``talr_fused``       two-phase chunked head + ``talr_loss`` (the engine's path with one micro-batch per step): the
                       softmax kept for the backward when it fits ``DEFAULT_CACHE_BYTES``, recomputed otherwise;
* ``talr_recompute``   the same, always recomputing (``cache_bytes=0``: the least memory);
* ``talr_prepass``     no-grad chunked pass for the weights, then the one-pass head (the engine's path with gradient
                       accumulation: the pre-pass's head share only; the body's pre-pass forward is in train_step.py).

Peak memory: each path's first forward + backward in a fresh process (peak resident size ``VmHWM`` after resetting
it, minus ``VmRSS`` before; it includes the gradients produced). Time: all paths in one process, one untimed round
then ``--repeats`` rounds taking the paths in turn, median per path. The time is the process's CPU time (one torch
thread, so it is the work done, and other jobs on a shared machine barely move it); wall time is printed beside it.
Usage::

    PYTHONPATH=src python benchmarks/loss_head.py --vocab 49152 151936 --seq 512 2048 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

PATHS = ["hf_default", "ce_chunked", "ce_two_phase", "talr_reference", "talr_fused", "talr_recompute", "talr_prepass"]


def _status_kib(field: str) -> int:
    return int(re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M).group(1))


def _loss_fn(path: str, h, w, labels, vocab: int):
    import torch
    import torch.nn.functional as F
    from transformers.loss.loss_utils import ForCausalLMLoss

    from talr import losses
    from talr.loss_head import fused_token_logprobs, fused_weighted_nll

    mask = labels[:, 1:] != losses.IGNORE_INDEX
    count = int(mask.sum())
    if path == "hf_default":
        return lambda: ForCausalLMLoss(F.linear(h, w), labels, vocab, num_items_in_batch=count)
    if path == "ce_chunked":
        return lambda: fused_weighted_nll(h, w, labels, mask / count)[0]
    if path == "ce_two_phase":
        return lambda: losses.sft_loss(*fused_token_logprobs(h, w, labels))
    if path == "talr_reference":
        return lambda: losses.talr_loss(*losses.token_logprobs(F.linear(h, w), labels))
    if path == "talr_fused":
        return lambda: losses.talr_loss(*fused_token_logprobs(h, w, labels))
    if path == "talr_recompute":
        return lambda: losses.talr_loss(*fused_token_logprobs(h, w, labels, cache_bytes=0))

    def talr_prepass():
        with torch.no_grad():
            weights = losses.talr_weights(*fused_token_logprobs(h, w, labels))
        return fused_weighted_nll(h, w, labels, weights)[0]

    return talr_prepass


def _setup(args, path):
    import torch

    gen = torch.Generator().manual_seed(0)
    h = torch.randn(args.batch, args.seq, args.hidden, generator=gen).requires_grad_()
    w = (torch.randn(args.vocab, args.hidden, generator=gen) * args.hidden**-0.5).requires_grad_(not args.frozen_head)
    labels = torch.randint(0, args.vocab, (args.batch, args.seq), generator=gen)
    fn = _loss_fn(path, h, w, labels, args.vocab)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if args.autocast else nullcontext()

    def step():
        h.grad = w.grad = None
        with autocast:
            loss = fn()
        loss.backward()

    return step


def worker(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    if args.worker == "timing":
        steps = {path: _setup(args, path) for path in args.paths}
        cpu = {path: [] for path in args.paths}
        wall = {path: [] for path in args.paths}
        for round_ in range(args.repeats + 1):
            for path, step in steps.items():
                start_cpu, start_wall = time.process_time(), time.perf_counter()
                step()
                if round_:
                    cpu[path].append(time.process_time() - start_cpu)
                    wall[path].append(time.perf_counter() - start_wall)
        return {path: {"time_s": statistics.median(cpu[path]), "wall_s": statistics.median(wall[path])}
                for path in args.paths}
    step = _setup(args, args.worker)
    base = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak to the current resident size
    step()
    return {"peak_mib": (_status_kib("VmHWM") - base) / 1024}


def _run_worker(args, worker_name: str, vocab: int, seq: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", worker_name, "--vocab", str(vocab), "--seq", str(seq),
           "--hidden", str(args.hidden), "--batch", str(args.batch), "--repeats", str(args.repeats),
           "--threads", str(args.threads), "--paths", *args.paths]
    cmd += ["--frozen-head"] * args.frozen_head + ["--autocast"] * args.autocast
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": _pythonpath()})
    if out.returncode != 0:
        raise RuntimeError(f"{worker_name} at vocab {vocab}, seq {seq} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_config(args, vocab: int, seq: int) -> dict:
    results = {path: _run_worker(args, path, vocab, seq) for path in args.paths}
    for path, timing in _run_worker(args, "timing", vocab, seq).items():
        results[path].update(timing)
    return results


def _pythonpath() -> str:
    src = str(Path(__file__).resolve().parents[1] / "src")
    return os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)


def machine() -> str:
    import torch
    import transformers

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    from talr.precision import hardware

    load = os.getloadavg()
    hw = hardware()
    gpu = hw.device_name if hw.device == "cuda" else "no GPU"
    return (f"{cpu}, {os.cpu_count()} cores, CPU capability {hw.cpu_capability} "
            f"({'native bf16' if hw.native_bf16 else 'no native bf16'} on the compute device), "
            f"Linux {platform.release()}; Python {platform.python_version()}, "
            f"torch {torch.__version__}, transformers {transformers.__version__}; {gpu}; "
            f"load average at start {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vocab", type=int, nargs="+", default=[49152, 151936])
    parser.add_argument("--seq", type=int, nargs="+", default=[512, 2048])
    parser.add_argument("--hidden", type=int, default=576, help="576 is SmolLM2-135M's")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--paths", nargs="+", default=PATHS, choices=PATHS)
    parser.add_argument("--frozen-head", action="store_true", help="projection without gradient (LoRA)")
    parser.add_argument("--autocast", action="store_true", help="bf16 autocast (default: float32)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        args.vocab, args.seq = args.vocab[0], args.seq[0]
        print(json.dumps(worker(args)))
        return

    from tqdm import tqdm

    print(f"Machine: {machine()}")
    print(f"Command: PYTHONPATH=src python benchmarks/loss_head.py {shlex.join(argv or sys.argv[1:])}")
    from talr.loss_head import DEFAULT_CHUNK_BYTES

    print(f"Chunked head: default chunks of {DEFAULT_CHUNK_BYTES // 2**20} MiB of float32 logits")
    print(f"Settings: hidden {args.hidden}, batch {args.batch}, {args.threads} thread(s), "
          f"{'bf16 autocast' if args.autocast else 'float32'}, projection "
          f"{'frozen' if args.frozen_head else 'trained'}, time: median of {args.repeats} interleaved rounds after "
          "one untimed\n")
    results = {}
    for vocab, seq in tqdm([(v, s) for v in args.vocab for s in args.seq], desc="sizes", file=sys.stderr):
        for path, r in run_config(args, vocab, seq).items():
            results[vocab, seq, path] = r
    print("| vocab | tokens | path | CPU time (s) | wall (s) | time / hf_default | peak MiB | peak / hf_default |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|")
    for vocab in args.vocab:
        for seq in args.seq:
            base = results.get((vocab, seq, "hf_default"))
            for path in args.paths:
                r = results[vocab, seq, path]
                t_ratio = f"{r['time_s'] / base['time_s']:.2f}" if base else "-"
                m_ratio = f"{r['peak_mib'] / base['peak_mib']:.3f}" if base else "-"
                print(f"| {vocab} | {args.batch * seq} | {path} | {r['time_s']:.3f} | {r['wall_s']:.3f} | {t_ratio} | "
                      f"{r['peak_mib']:.0f} | {m_ratio} |")
    print("\nTargets: talr_fused time / ce_chunked time <= 1.05; talr_fused peak <= 1/4 of hf_default at 49152 x 2048."
          " Time ratios are of CPU time.")
    print("| vocab | tokens | talr_fused / ce_chunked | talr_fused / ce_two_phase | talr_prepass / ce_chunked "
          "| talr_fused / talr_reference | peak talr_fused / hf_default |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for vocab in args.vocab:
        for seq in args.seq:
            def ratio(a, b, key="time_s"):
                if (vocab, seq, a) not in results or (vocab, seq, b) not in results:
                    return "-"
                return f"{results[vocab, seq, a][key] / results[vocab, seq, b][key]:.3f}"

            print(f"| {vocab} | {args.batch * seq} | {ratio('talr_fused', 'ce_chunked')} | "
                  f"{ratio('talr_fused', 'ce_two_phase')} | {ratio('talr_prepass', 'ce_chunked')} | "
                  f"{ratio('talr_fused', 'talr_reference')} | {ratio('talr_fused', 'hf_default', 'peak_mib')} |")


if __name__ == "__main__":
    main()
