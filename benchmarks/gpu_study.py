"""The study of issue 14, small, on one GPU: one domain's grid and the general panel, in about ten minutes.

    python benchmarks/gpu_study.py --out DIR [--model-dir DIR] [--limit N]
    python benchmarks/gpu_study.py --out DIR --tiny    # on CPU (~90 CPU-s): what the test suite runs so this cannot rot

The embedded SmolLM2-135M-Instruct (``--model-dir``: its converted safetensors folder; default the one in the talr
cache; no ``gguf`` or lm-eval needed), fine-tuned label-only on ESCI (320 training rows, 32 of them held out for the
probes, one epoch of batch 8: 36 steps, the per-point training of configs/sweeps/study_esci_smollm2.yaml) by sft,
talr, dft, l2, flow and lora at three learning rates (LoRA at 10x), sft and talr with two seeds, WiSE-FT alpha 0.25 /
0.5 / 0.75 of the seed-0 SFT runs; scored by ``esci_ll`` and the ``general_panel`` on a seeded subset of ``--limit``
items per task (the panel's own Ns cap it). Precision ``auto``: bf16 autocast on a GPU, float32 on an AVX2 CPU.

Writes under ``--out``:

* ``sweep/``: the ``talr sweep`` folder; rerunning the same command resumes it (finished points are skipped), so a
  run cut off by a time limit continues where it stopped;
* ``record/``: what a record under docs/results/ holds: ``sweep.yaml``, ``results.json``, ``samples.jsonl.gz``
  (per-item samples), and ``report.md`` with its figures written by ``talr report`` on this folder alone, so
  ``talr report DIR/record`` reproduces it;
* ``study.json``: device, precision, versions, the command, the grid and the wall time of the sweep and the report.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

NAME = "gpu_study_esci"
METHODS = ["sft", "talr", "dft", "l2", "flow", "lora"]
LEARNING_RATES = [2.0e-6, 2.0e-5, 1.0e-4]
LORA_LEARNING_RATES = [2.0e-5, 2.0e-4, 1.0e-3]  # LoRA learns at about 10x full fine-tuning's rates
COMPARED_SEEDS = [0, 1]  # sft and talr, the two methods the study compares; the baselines run seed 0
WISE_FT_ALPHAS = [0.25, 0.5, 0.75]
LIMIT = 200  # items per evaluation task (esci_ll has 521 test rows; the panel's Ns are 250-1,000)
# tiny mode: a random model of a few thousand parameters, a handful of rows, two steps, two items per task, one
# learning rate (large enough to move it), one seed and one WiSE-FT alpha: every method, LoRA's own rate, WiSE-FT,
# the panel and the report run once, in the fewest evaluations
TINY_LEARNING_RATES = [1.0e-3]
TINY_LORA_LEARNING_RATES = [1.0e-2]
TINY_SEEDS = [0]
TINY_WISE_FT_ALPHAS = [0.5]
TINY_LIMIT = 2


def sweep_config(model: str, sweep_dir: Path, tiny: bool, limit: int) -> dict:
    """The study's sweep config as a mapping (written to DIR/study.yaml and loaded by ``talr.sweep``)."""
    learning_rates = TINY_LEARNING_RATES if tiny else LEARNING_RATES
    lora_learning_rates = TINY_LORA_LEARNING_RATES if tiny else LORA_LEARNING_RATES
    training = {"num_epochs": 1, "per_device_batch_size": 8, "logging_steps": 6, "warmup_ratio": 0.1,
                "autocast": "auto"}
    # the tiny tokenizer is byte-level: an ESCI prompt is ~900 tokens, so max_length must hold it and its label
    data = {"train": {"source": "esci", "split": "train", "format": "label", "limit": 16 if tiny else 320},
            "max_length": 1280 if tiny else 512}
    probes = {"every_n_steps": 12}
    if tiny:
        training.update(max_steps=2, per_device_batch_size=4, logging_steps=1)
        probes = {"every_n_steps": 2, "general_size": 2, "domain_size": 2, "hard_token_size": 2, "batch_size": 2}
    return {
        "name": sweep_dir.name,
        "out_dir": str(sweep_dir.parent),
        "keep_models": False,
        "grid": {
            "methods": METHODS,
            "learning_rates": learning_rates,
            "seeds": TINY_SEEDS if tiny else COMPARED_SEEDS,
            "by_method": {"dft": {"seeds": [0]}, "l2": {"seeds": [0]}, "flow": {"seeds": [0]},
                          "lora": {"learning_rates": lora_learning_rates, "seeds": [0]}},
        },
        "eval": {"domain": ["esci_ll"], "general": ["general_panel"], "limit": limit,
                 "batch_size": 4 if tiny else 32, "dtype": "auto"},
        "wise_ft": {"alphas": TINY_WISE_FT_ALPHAS if tiny else WISE_FT_ALPHAS, "methods": ["sft"], "seeds": [0]},
        "train": {
            "model": model,
            "data": data,
            "l2": {"weight": 1.0e+5},  # as configs/sweeps/study_esci_smollm2.yaml (docs/methods.md)
            "training": training,
            "probes": probes,
        },
    }


def _default_model_dir() -> Path:
    from talr.models import DEFAULT_MODEL
    from talr.paths import cache_dir

    converted = cache_dir() / "models" / DEFAULT_MODEL
    if not (converted / "config.json").is_file():
        raise SystemExit(f"gpu_study: no converted embedded model at {converted}; pass --model-dir (a folder made "
                         f"by talr.models.embedded_model_folder() on a machine with the gguf package)")
    return converted


def _versions() -> dict:
    import torch
    import transformers

    import talr
    from talr.precision import hardware

    return {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "transformers": transformers.__version__, "talr": talr.__version__, "hardware": hardware().as_dict()}


def write_record(sweep_root: Path, record: Path) -> Path:
    """Copy the sweep's record into ``record`` and write its report there; returns report.md's path."""
    from talr.report import write_report
    from talr.sweep_record import write_record as bundle

    if record.exists():
        shutil.rmtree(record)
    record.mkdir(parents=True)
    bundle(sweep_root, record)
    shutil.copy(sweep_root / "sweep.yaml", record / "sweep.yaml")
    return write_report(record)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for sweep/, record/ and study.json")
    parser.add_argument("--model-dir", default=None,
                        help="the embedded model's converted folder (default: the talr cache's)")
    parser.add_argument("--limit", type=int, default=None, help=f"items per task (default {LIMIT}, tiny {TINY_LIMIT})")
    parser.add_argument("--tiny", action="store_true", help="a tiny random model and grid (runs on CPU, ~90 CPU-s)")
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.tiny:
        from talr.testing import make_tiny_model

        # a fixed folder, so a rerun resumes against the same model (a changed model would restart every point)
        model_dir = out / "tiny_model"
        if not (model_dir / "config.json").is_file():
            make_tiny_model(Path(tempfile.mkdtemp(prefix="tiny_model.", dir=out))).rename(model_dir)
    else:
        model_dir = Path(args.model_dir).resolve() if args.model_dir else _default_model_dir()
    limit = args.limit or (TINY_LIMIT if args.tiny else LIMIT)
    config = sweep_config(str(model_dir), out / "sweep" / NAME, args.tiny, limit)
    config_path = out / "study.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    from talr.sweep import grid_points, load_sweep_config, run_sweep

    sweep = load_sweep_config(config_path)
    started = time.time()
    root = run_sweep(sweep)
    swept = time.time()
    report = write_record(root, out / "record")
    done = time.time()
    study = {
        "command": " ".join(["python", "benchmarks/gpu_study.py", *(argv if argv is not None else sys.argv[1:])]),
        "versions": _versions(),
        "model": str(model_dir),
        "grid_points": [p.name for p in grid_points(sweep)],
        "wise_ft_points": len(sweep.wise_ft.alphas) * sum(
            p.method in sweep.wise_ft.methods and p.seed in sweep.wise_ft.seeds for p in grid_points(sweep)),
        "limit": limit,
        "sweep_wall_s": round(swept - started, 1),  # this call's; a resumed sweep's earlier calls are not counted
        "report_wall_s": round(done - swept, 1),
    }
    (out / "study.json").write_text(json.dumps(study, indent=2) + "\n")
    print(f"gpu_study: {len(study['grid_points'])} trained points + {study['wise_ft_points']} WiSE-FT points in "
          f"{study['sweep_wall_s']:.0f} s on {study['versions']['hardware']['device_name']}; report {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
