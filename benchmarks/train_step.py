"""Whole training-step throughput and peak memory of SFT vs the token weightings (TALR and its variants, DFT, EAFT)
on the embedded SmolLM2-135M, as a markdown table.

Each setting runs ``TalrTrainer`` (the real engine: data collator, autocast, AdamW, clipping) in a fresh process for
``1 + --steps`` optimizer steps on synthetic chat examples that all fill ``--max-length`` tokens. The first step is
not timed; the time of a step is between consecutive ``on_step_end`` callbacks, so it includes the step's data fetch
and, for TALR over the whole step with gradient accumulation, its no-grad pre-pass. Times are the process's CPU time
(one torch thread: the work done, barely moved by other jobs on a shared machine), wall time beside it. Peak memory
is the process's peak resident size above its size once the model and trainer are built (``VmHWM`` after a reset;
it includes AdamW's state). Usage::

    PYTHONPATH=src python benchmarks/train_step.py --steps 3
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loss_head import _pythonpath, _status_kib, machine  # noqa: E402

# name -> (method preset, loss_head, normalize_over, per-device batch, accumulation) at the same 4 sequences per step;
# a name starts with its preset, and each setting is compared with the "sft" one of the same head and split.
SETTINGS = {
    "sft reference head": ("sft", "reference", "step", 4, 1),
    "sft fused": ("sft", "fused", "step", 4, 1),
    "talr reference head": ("talr", "reference", "step", 4, 1),
    "talr fused": ("talr", "fused", "step", 4, 1),
    "sft fused, 2x2": ("sft", "fused", "step", 2, 2),
    "talr fused, 2x2, step-exact": ("talr", "fused", "step", 2, 2),
    "talr fused, 2x2, micro-batch": ("talr", "fused", "micro_batch", 2, 2),
    "talr_seq fused": ("talr_seq", "fused", "step", 4, 1),
    "talr_tau1 fused": ("talr_tau1", "fused", "step", 4, 1),
    "talr_disc fused": ("talr_disc", "fused", "step", 4, 1),
    "dft reference head": ("dft", "reference", "step", 4, 1),
    "dft fused": ("dft", "fused", "step", 4, 1),
    "eaft reference head": ("eaft", "reference", "step", 4, 1),
    "eaft fused": ("eaft", "fused", "step", 4, 1),
}

WORDS = ("the model learns domain facts while keeping its general skills small learning rates token adaptive "
         "loss reweighting softens the gradient of hard tokens").split()


def _examples(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [{"messages": [{"role": "user", "content": f"Question {i}: explain."},
                          {"role": "assistant", "content": " ".join(rng.choices(WORDS, k=600))}]} for i in range(n)]


def worker(args) -> dict:
    import torch
    from transformers import TrainerCallback

    from talr.config import config_from_dict
    from talr.data.formats import CausalLMCollator, tokenize_examples
    from talr.io import write_jsonl
    from talr.models import load_model
    from talr.trainer import TalrTrainer, training_arguments

    torch.set_num_threads(args.threads)
    method, loss_head, normalize_over, batch, accumulation = SETTINGS[args.worker]
    workdir = Path(tempfile.mkdtemp(prefix="talr-bench-"))
    examples = _examples(batch * accumulation * (args.steps + 1))
    data = write_jsonl(examples, workdir / "train.jsonl")
    config = config_from_dict({
        "model": args.model, "output_dir": str(workdir / "run"), "method": method,
        "data": {"train": str(data), "max_length": args.max_length},
        "talr": {"normalize_over": normalize_over},
        "training": {"max_steps": args.steps + 1, "per_device_batch_size": batch,
                     "gradient_accumulation_steps": accumulation, "loss_head": loss_head, "autocast": args.autocast,
                     "logging_steps": 10_000, "learning_rate": 1e-5, "save_model": False},
    })
    model, tokenizer = load_model(args.model)
    features, stats = tokenize_examples(examples, tokenizer, args.max_length)
    tokens_per_step = sum(len(f["input_ids"]) for f in features) / len(features) * batch * accumulation
    ends: list[tuple[float, float]] = []

    class StepClock(TrainerCallback):
        def on_step_end(self, *a, **k):
            ends.append((time.process_time(), time.perf_counter()))

    trainer = TalrTrainer(
        model=model, args=training_arguments(config, workdir / "run"), train_dataset=features,
        data_collator=CausalLMCollator(tokenizer.pad_token_id), processing_class=tokenizer, run_config=config,
        callbacks=[StepClock()],
    )
    trainer.args.disable_tqdm = True
    base = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    trainer.train()
    step_times = [b[0] - a[0] for a, b in zip(ends, ends[1:])]
    wall_times = [b[1] - a[1] for a, b in zip(ends, ends[1:])]
    return {
        "step_s": statistics.median(step_times), "step_times": step_times, "wall_s": statistics.median(wall_times),
        "tokens_per_step": tokens_per_step,
        "peak_mib": (_status_kib("VmHWM") - base) / 1024, "rss_before_mib": base / 1024,
        "fused": trainer.head.fused,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--steps", type=int, default=3, help="timed optimizer steps (after one untimed)")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--autocast", default="auto", choices=["auto", "bf16", "none"],
                        help="auto: bf16 where the hardware computes it natively, float32 elsewhere (talr.precision)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return

    from tqdm import tqdm

    print(f"Machine: {machine()}")
    print(f"Command: PYTHONPATH=src python benchmarks/train_step.py {shlex.join(argv or sys.argv[1:])}")
    print(f"Settings: {args.model}, 4 sequences x {args.max_length} tokens per optimizer step, autocast "
          f"{args.autocast}, AdamW, {args.threads} thread(s), median of {args.steps} steps after one untimed\n")
    results = {}
    for name in tqdm(args.settings, desc="settings", file=sys.stderr):
        cmd = [sys.executable, __file__, "--worker", name, "--model", args.model, "--steps", str(args.steps),
               "--max-length", str(args.max_length), "--autocast", args.autocast, "--threads", str(args.threads)]
        out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": _pythonpath()})
        if out.returncode != 0:
            raise RuntimeError(f"{name} failed:\n{out.stderr[-3000:]}")
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])

    def baseline(name):  # the SFT setting with the same head and split
        return re.sub(r"^\S+", "sft", name).replace(", step-exact", "").replace(", micro-batch", "")

    print("| setting | step CPU (s) | step wall (s) | tokens per CPU-s | time / SFT same head+split | "
          "peak MiB above model | peak / SFT same head+split | fused head |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for name, r in results.items():
        base = results.get(baseline(name))
        ratio = f"{r['step_s'] / base['step_s']:.3f}" if base else "-"
        peak_ratio = f"{r['peak_mib'] / base['peak_mib']:.3f}" if base else "-"
        print(f"| {name} | {r['step_s']:.2f} | {r['wall_s']:.2f} | {r['tokens_per_step'] / r['step_s']:.0f} | "
              f"{ratio} | {r['peak_mib']:.0f} | {peak_ratio} | {r['fused']} |")
    print("\nStep CPU times (s): " + "; ".join(f"{n}: {', '.join(f'{t:.2f}' for t in r['step_times'])}"
                                         for n, r in results.items()))


if __name__ == "__main__":
    main()
