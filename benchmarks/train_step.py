"""Whole training-step time and peak memory of the method presets (SFT, TALR and its variants, DFT, EAFT, the
frozen-base weights, ASFT) on the embedded SmolLM2-135M, as a markdown table.

Each setting trains through ``talr.trainer.train`` (the real recipe: the method's one-time ``prepare``, its adapter,
data collator, autocast, AdamW, clipping) in a fresh process for ``1 + --steps`` optimizer steps on synthetic chat
examples that all fill ``--max-length`` tokens. The first step is not timed; the time of a step is between
consecutive ``on_step_end`` callbacks, so it includes the step's data fetch and, for TALR over the whole step with
gradient accumulation, its no-grad pre-pass. Times are the process's CPU time (one torch thread: the work done, barely
moved by other jobs on a shared machine), wall time beside it. Peak memory is the process's peak resident size above
its size when training begins (``VmHWM`` after a reset in ``on_train_begin``; it includes AdamW's state); the size
at that moment ("RSS at start": the model, the trainer and anything ``prepare`` built, e.g. ASFT's frozen copy of
the model) is a column of its own. A method's one-time scoring pass before training (FLOW, ``weights_from: base``)
is in neither. Usage::

    PYTHONPATH=src python benchmarks/train_step.py --steps 3
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loss_head import _pythonpath, _status_kib, machine  # noqa: E402

# name -> (preset, loss_head, normalize_over, per-device batch, accumulation, adapter or None for the preset's) at the
# same 4 sequences per step
SETTINGS = {
    "sft reference head": ("sft", "reference", "step", 4, 1, None),
    "sft fused": ("sft", "fused", "step", 4, 1, None),
    "talr reference head": ("talr", "reference", "step", 4, 1, None),
    "talr fused": ("talr", "fused", "step", 4, 1, None),
    "sft fused, 2x2": ("sft", "fused", "step", 2, 2, None),
    "talr fused, 2x2, step-exact": ("talr", "fused", "step", 2, 2, None),
    "talr fused, 2x2, micro-batch": ("talr", "fused", "micro_batch", 2, 2, None),
    "talr_base fused": ("talr_base", "fused", "step", 4, 1, None),
    "dft_base fused": ("dft_base", "fused", "step", 4, 1, None),
    "talr_seq fused": ("talr_seq", "fused", "step", 4, 1, None),
    "talr_tau1 fused": ("talr_tau1", "fused", "step", 4, 1, None),
    "talr_disc fused": ("talr_disc", "fused", "step", 4, 1, None),
    "dft reference head": ("dft", "reference", "step", 4, 1, None),
    "dft fused": ("dft", "fused", "step", 4, 1, None),
    "eaft reference head": ("eaft", "reference", "step", 4, 1, None),
    "eaft fused": ("eaft", "fused", "step", 4, 1, None),
    "asft reference head": ("asft", "reference", "step", 4, 1, None),
    "sft lora reference head": ("sft", "reference", "step", 4, 1, "lora"),
    "sft lora fused": ("sft", "fused", "step", 4, 1, "lora"),
    "asft lora reference head": ("asft", "reference", "step", 4, 1, "lora"),
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

    from talr.config import apply_overrides, config_from_dict
    from talr.io import write_jsonl
    from talr.trainer import train

    torch.set_num_threads(args.threads)
    preset, loss_head, normalize_over, batch, accumulation, adapter = SETTINGS[args.worker]
    workdir = Path(tempfile.mkdtemp(prefix="talr-bench-"))
    os.environ["TALR_CACHE_DIR"] = str(workdir / "cache")  # a method's scoring pass runs, outside the timed steps
    examples = _examples(batch * accumulation * (args.steps + 1))
    data = write_jsonl(examples, workdir / "train.jsonl")
    config = config_from_dict(apply_overrides({
        "model": args.model, "output_dir": str(workdir / "run"), "method": preset,
        "data": {"train": str(data), "max_length": args.max_length},
        "talr": {"normalize_over": normalize_over},
        "training": {"max_steps": args.steps + 1, "per_device_batch_size": batch,
                     "gradient_accumulation_steps": accumulation, "loss_head": loss_head, "autocast": args.autocast,
                     "logging_steps": 10_000, "learning_rate": 1e-5, "save_model": False, "save_steps": 0},
        "probes": {"enabled": False, "general": None, "domain_size": 0, "hard_token_size": 0},
    }, [f"method.adapter={adapter}"] if adapter else []))
    ends: list[tuple[float, float]] = []
    start: dict = {}

    class StepClock(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            start["rss_kib"] = _status_kib("VmRSS")
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM counts from here

        def on_step_end(self, *a, **k):
            ends.append((time.process_time(), time.perf_counter()))

    run_dir = train(config, callbacks=[StepClock()])
    run = json.loads((run_dir / "run.json").read_text())["data"]
    if run["truncated"] != run["kept"]:
        raise SystemExit(f"only {run['truncated']} of {run['kept']} examples fill {args.max_length} tokens")
    step_times = [b[0] - a[0] for a, b in zip(ends, ends[1:])]
    wall_times = [b[1] - a[1] for a, b in zip(ends, ends[1:])]
    return {
        "step_s": statistics.median(step_times), "step_times": step_times, "wall_s": statistics.median(wall_times),
        "tokens_per_step": args.max_length * batch * accumulation,
        "peak_mib": (_status_kib("VmHWM") - start["rss_kib"]) / 1024, "rss_start_mib": start["rss_kib"] / 1024,
    }


def step_benchmark_parser(doc: str, settings: dict) -> argparse.ArgumentParser:
    """The arguments every whole-step benchmark takes (this one and trl_step.py): each setting runs in a worker
    process of the same script."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--steps", type=int, default=3, help="timed optimizer steps (after one untimed)")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--settings", nargs="+", default=list(settings), choices=list(settings))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser


def main(argv=None) -> None:
    parser = step_benchmark_parser(__doc__, SETTINGS)
    parser.add_argument("--autocast", default="auto", choices=["auto", "bf16", "none"],
                        help="auto: bf16 where the hardware computes it natively, float32 elsewhere (talr.precision)")
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

    def baseline(name):  # the SFT setting with the same head, split and adapter
        _, head, _, batch, accumulation, adapter = SETTINGS[name]
        return next((n for n, (preset, *rest) in SETTINGS.items() if preset == "sft"
                     and (rest[0], *rest[2:]) == (head, batch, accumulation, adapter)), None)

    def ratio(name, key, of):
        return f"{results[name][key] / results[of][key]:.3f}" if of in results else "-"

    print("| setting | step CPU (s) | step wall (s) | tokens per CPU-s | time / SFT same head+split+adapter | "
          "time / sft fused | peak MiB above start | peak / SFT same head+split+adapter | RSS at start MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['step_s']:.2f} | {r['wall_s']:.2f} | {r['tokens_per_step'] / r['step_s']:.0f} | "
              f"{ratio(name, 'step_s', baseline(name))} | {ratio(name, 'step_s', 'sft fused')} | "
              f"{r['peak_mib']:.0f} | {ratio(name, 'peak_mib', baseline(name))} | {r['rss_start_mib']:.0f} |")
    print("\nStep CPU times (s): " + "; ".join(f"{n}: {', '.join(f'{t:.2f}' for t in r['step_times'])}"
                                         for n, r in results.items()))


if __name__ == "__main__":
    main()
