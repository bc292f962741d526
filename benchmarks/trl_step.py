"""Training-step time of TRL's SFTTrainer with and without talr's TALR (talr.integrations.trl), as a markdown table.

Each setting runs in a fresh process on the embedded SmolLM2-135M, float32 (no autocast), AdamW, for ``1 + --steps``
optimizer steps on the synthetic chat examples of train_step.py (tokenised by talr, so every setting sees the same
tokens; TRL's own dataset preparation is skipped). The first step is not timed; a step's time is between
consecutive ``on_step_end`` callbacks (data fetch and, for step-exact TALR with accumulation, its no-grad pre-pass
included), in process CPU time with one torch thread (wall time beside it). Usage::

    PYTHONPATH=src nice -n 19 python benchmarks/trl_step.py --steps 3
"""

from __future__ import annotations

import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loss_head import _pythonpath, machine  # noqa: E402
from train_step import _examples, step_benchmark_parser  # noqa: E402

# name -> (talr weighting or None for TRL's own loss, per-device batch, accumulation), 4 sequences per step
SETTINGS = {
    "trl sft": (None, 4, 1),
    "trl + talr talr": ("talr", 4, 1),
    "trl + talr sft": ("sft", 4, 1),
    "trl sft, 2x2": (None, 2, 2),
    "trl + talr talr, 2x2 step-exact": ("talr", 2, 2),
}


def worker(args) -> dict:
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from talr.data.formats import tokenize_examples
    from talr.integrations.trl import TalrSFTTrainer
    from talr.models import load_model

    torch.set_num_threads(args.threads)
    weighting, batch, accumulation = SETTINGS[args.worker]
    model, tokenizer = load_model(args.model)
    features, _ = tokenize_examples(_examples(batch * accumulation * (args.steps + 1)), tokenizer, args.max_length)
    dataset = Dataset.from_list([{"input_ids": f["input_ids"], "labels": f["labels"]} for f in features])
    ends: list[tuple[float, float]] = []

    class StepClock(TrainerCallback):
        def on_step_end(self, *a, **k):
            ends.append((time.process_time(), time.perf_counter()))

    sft_args = SFTConfig(
        output_dir=tempfile.mkdtemp(prefix="talr-trl-bench-"), max_steps=args.steps + 1, learning_rate=1e-5,
        per_device_train_batch_size=batch, gradient_accumulation_steps=accumulation, bf16=False,
        gradient_checkpointing=False, use_cpu=True, report_to="none", logging_steps=10_000, save_strategy="no",
        disable_tqdm=True, dataset_kwargs={"skip_prepare_dataset": True}, seed=0,
    )
    kwargs = {"model": model, "args": sft_args, "train_dataset": dataset, "processing_class": tokenizer,
              "callbacks": [StepClock()]}
    trainer = SFTTrainer(**kwargs) if weighting is None else TalrSFTTrainer(**kwargs, talr=weighting)
    trainer.train()
    step_times = [b[0] - a[0] for a, b in zip(ends, ends[1:])]
    wall_times = [b[1] - a[1] for a, b in zip(ends, ends[1:])]
    return {"step_s": statistics.median(step_times), "step_times": step_times,
            "wall_s": statistics.median(wall_times),
            "tokens_per_step": sum(len(f["input_ids"]) for f in features) / len(features) * batch * accumulation}


def main(argv=None) -> None:
    args = step_benchmark_parser(__doc__, SETTINGS).parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return

    import trl

    print(f"Machine: {machine()}; trl {trl.__version__}")
    print(f"Command: PYTHONPATH=src python benchmarks/trl_step.py {shlex.join(argv or sys.argv[1:])}")
    print(f"Settings: {args.model}, 4 sequences x {args.max_length} tokens per optimizer step, float32, AdamW, "
          f"{args.threads} thread(s), median of {args.steps} steps after one untimed\n")
    results = {}
    for name in args.settings:
        cmd = [sys.executable, __file__, "--worker", name, "--model", args.model, "--steps", str(args.steps),
               "--max-length", str(args.max_length), "--threads", str(args.threads)]
        out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": _pythonpath()})
        if out.returncode != 0:
            raise RuntimeError(f"{name} failed:\n{out.stderr[-3000:]}")
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"done: {name}", file=sys.stderr)

    def baseline(name):  # TRL's own SFT at the same split
        return "trl sft, 2x2" if "2x2" in name else "trl sft"

    print("| setting | step CPU (s) | step wall (s) | tokens per CPU-s | time / TRL SFT same split |")
    print("|---|---:|---:|---:|---:|")
    for name, r in results.items():
        base = results.get(baseline(name))
        ratio = f"{r['step_s'] / base['step_s']:.3f}" if base else "-"
        print(f"| {name} | {r['step_s']:.2f} | {r['wall_s']:.2f} | {r['tokens_per_step'] / r['step_s']:.0f} | "
              f"{ratio} |")
    print("\nStep CPU times (s): " + "; ".join(f"{n}: {', '.join(f'{t:.2f}' for t in r['step_times'])}"
                                         for n, r in results.items()))


if __name__ == "__main__":
    main()
