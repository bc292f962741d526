"""Per-step time and peak memory of every method preset relative to SFT, on the embedded model.

Each preset trains from its configs/methods/<preset>.yaml in a fresh process (so peak RSS is its own), on the same
fixed-length batches: multi-problem GSM8K conversations truncated to exactly --length tokens, so every step does the
same work. A Trainer callback times each optimizer step in wall-clock and process CPU seconds (all threads); after
--warmup discarded steps the fastest step is reported, since other processes only ever slow a step down. FLOW runs
with its cache off so its scoring pass is counted in "other s" (model load, FLOW pass, saving, merging, averaging:
wall time minus training time).

    PYTHONPATH=src python benchmarks/methods.py                 # all presets, 1 warm-up + 4 timed steps, 2 threads
    PYTHONPATH=src python benchmarks/methods.py --presets sft l2 --steps 8

Other processes sharing the CPU move absolute numbers; compare ratios from one invocation (the load average is printed
with the table). The wise_ft preset trains exactly like sft, so its time ratio shows the noise of the run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from transformers import TrainerCallback

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "methods"
PRESET_ORDER = ("sft", "talr", "dft", "l2", "lora", "flow", "wise_ft")


def write_fixed_length_data(path: Path, count: int, problems_per_example: int = 3) -> Path:
    """GSM8K train problems chained into multi-turn conversations, long enough to be cut at any --length <= ~600."""
    from talr.io import write_jsonl
    from talr.data.sources import load_sft_examples

    single = load_sft_examples("gsm8k", split="train", limit=count * problems_per_example, seed=0)
    examples = [{"messages": [m for ex in single[k:k + problems_per_example] for m in ex["messages"]]}
                for k in range(0, len(single), problems_per_example)]
    return write_jsonl(examples, path)


class StepTimer(TrainerCallback):
    """Wall-clock and process CPU seconds of each optimizer step."""

    def __init__(self):
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def on_step_begin(self, args, state, control, **kwargs):
        self._started = (time.perf_counter(), time.process_time())

    def on_step_end(self, args, state, control, **kwargs):
        self.wall.append(time.perf_counter() - self._started[0])
        self.cpu.append(time.process_time() - self._started[1])


def run_child(args: argparse.Namespace) -> None:
    import torch

    from talr.config import load_config
    from talr.trainer import train

    config = load_config(CONFIGS / f"{args.child}.yaml", [
        f"output_dir={args.out_dir}", f"data.train={{path: {args.data}}}", f"data.max_length={args.length}",
        f"training.max_steps={args.warmup + args.steps}", f"training.per_device_batch_size={args.batch}",
        "training.logging_steps=1", "training.gradient_accumulation_steps=1", f"training.torch_threads={args.threads}",
        "flow.cache=false",
    ])
    timer = StepTimer()
    run_dir = train(config, callbacks=[timer])
    run = json.loads((run_dir / "run.json").read_text())
    if run["data"]["truncated"] != run["data"]["kept"]:
        raise SystemExit(f"only {run['data']['truncated']} of {run['data']['kept']} examples reach {args.length} "
                         "tokens, so steps would not all see the same token count")
    result = {
        "preset": args.child, "wall_s": timer.wall[args.warmup:], "cpu_s": timer.cpu[args.warmup:],
        "peak_rss_mib": run["peak_rss_mib"],
        "other_s": run["wall_time_s"] - run["train_runtime_s"],
        "cuda_peak_mib": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None,
    }
    Path(args.result).write_text(json.dumps(result))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=list(PRESET_ORDER), choices=PRESET_ORDER)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per preset")
    parser.add_argument("--warmup", type=int, default=1, help="untimed first steps")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--out-dir", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args)
        return 0

    presets = ["sft"] + [p for p in args.presets if p != "sft"]
    results = {}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="talr-bench-") as tmp:
        tmp = Path(tmp)
        data = write_fixed_length_data(tmp / "data.jsonl", count=args.batch * (args.warmup + args.steps))
        for preset in presets:
            print(f"[{preset}] training {args.warmup}+{args.steps} steps ...", file=sys.stderr, flush=True)
            result_file = tmp / f"{preset}.json"
            subprocess.run([
                sys.executable, __file__, "--child", preset, "--data", str(data), "--out-dir", str(tmp / preset),
                "--result", str(result_file), "--steps", str(args.steps), "--warmup", str(args.warmup),
                "--batch", str(args.batch), "--length", str(args.length), "--threads", str(args.threads),
            ], check=True, stdout=subprocess.DEVNULL)
            results[preset] = json.loads(result_file.read_text())
    load_after = os.getloadavg()

    sft = results["sft"]
    sft_wall, sft_cpu = min(sft["wall_s"]), min(sft["cpu_s"])
    has_cuda = sft["cuda_peak_mib"] is not None
    print(f"\nEmbedded smollm2-135m-instruct, batch {args.batch} x {args.length} tokens, {args.threads} threads, "
          f"fastest of {args.steps} steps after {args.warmup} warm-up; load average {load_before[0]:.1f} -> "
          f"{load_after[0]:.1f} on {os.cpu_count()} cores\n")
    header = ("| method | step wall s | wall / sft | step CPU s | CPU / sft | peak RSS MiB | RSS / sft |"
              + (" CUDA peak MiB |" if has_cuda else ""))
    print(header + " other s |")
    print("|" + " --- |" * (header.count("|") - 1 + 1))
    for preset in presets:
        r = results[preset]
        wall, cpu = min(r["wall_s"]), min(r["cpu_s"])
        row = (f"| {preset} | {wall:.2f} | {wall / sft_wall:.2f} | {cpu:.2f} | {cpu / sft_cpu:.2f} | "
               f"{r['peak_rss_mib']:.0f} | {r['peak_rss_mib'] / sft['peak_rss_mib']:.2f} |")
        if has_cuda:
            row += f" {r['cuda_peak_mib']:.0f} |"
        print(row + f" {r['other_s']:.1f} |")
    print("\nother s: wall time minus training time (model load, FLOW's scoring pass, saving, LoRA merge, averaging).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
