"""How long a training checkpoint of the embedded SmolLM2-135M takes to write and how big it is, as a markdown table.

Each setting runs ``talr.trainer.train`` (the real recipe) for ``--steps`` optimizer steps with ``save_steps`` equal
to it, on short synthetic chat examples in float32, and times the checkpoint from the step's ``on_step_end`` to the
Trainer's ``on_save`` (weights, optimizer and scheduler state, RNG states, trainer_state.json; the Trainer does not
fsync, so this is serialisation plus the write into the page cache). Sizes are the checkpoint folder's files. Usage::

    PYTHONPATH=src python benchmarks/checkpoint.py
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loss_head import machine  # noqa: E402


def _examples(n: int) -> list[dict]:
    return [{"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                          {"role": "assistant", "content": f"{i} plus {i} is {2 * i}."}]} for i in range(n)]


def measure(adapter: str, steps: int, out: Path) -> dict:
    from transformers import TrainerCallback

    from talr.config import config_from_dict
    from talr.io import write_jsonl
    from talr.trainer import train

    class SaveTimer(TrainerCallback):
        started = seconds = None

        def on_step_end(self, args, state, control, **kwargs):
            if control.should_save:
                self.started = time.perf_counter()

        def on_save(self, args, state, control, **kwargs):
            self.seconds = time.perf_counter() - self.started

    timer = SaveTimer()
    config = config_from_dict({
        "output_dir": str(out / adapter), "method": {"loss": "sft", "adapter": adapter},
        "data": {"train": str(write_jsonl(_examples(16), out / "train.jsonl")), "max_length": 64},
        "probes": {"enabled": False},
        "training": {"max_steps": steps, "save_steps": steps, "keep_checkpoints": True, "logging_steps": 1000,
                     "per_device_batch_size": 2, "autocast": "none", "save_model": False},
    })
    run_dir = train(config, callbacks=[timer])
    folder = run_dir / "checkpoints" / f"checkpoint-{steps}"
    files = {p.name: p.stat().st_size for p in folder.iterdir() if p.is_file()}
    return {"adapter": adapter, "seconds": timer.seconds, "bytes": sum(files.values()), "files": files}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--adapters", nargs="+", default=["full", "lora"])
    args = parser.parse_args(argv)
    out = Path(tempfile.mkdtemp(prefix="talr-checkpoint-"))
    filesystem = subprocess.run(["df", "-T", str(out)], capture_output=True, text=True).stdout.splitlines()[-1]
    print(f"Machine: {machine()}\nFolder: {out} ({' '.join(filesystem.split()[:2])})\n")
    try:
        rows = [measure(adapter, args.steps, out) for adapter in args.adapters]
    finally:
        shutil.rmtree(out, ignore_errors=True)
    print("| adapter | write time (s) | size on disk (MiB) | largest files (MiB) |")
    print("| --- | ---: | ---: | --- |")
    for row in rows:
        largest = sorted(row["files"].items(), key=lambda kv: -kv[1])[:3]
        print(f"| {row['adapter']} | {row['seconds']:.2f} | {row['bytes'] / 2**20:.0f} | "
              + ", ".join(f"{name} {size / 2**20:.0f}" for name, size in largest) + " |")


if __name__ == "__main__":
    main()
