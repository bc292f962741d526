"""A talr run directory: the one place that knows what ``talr train`` writes where.

Layout (every name is relative to the run directory)::

    config.yaml      the fully resolved config the run trained with
    metrics.jsonl    one line per logging step (appended as training goes)
    probes.jsonl     the training-time probes (talr.callbacks), when enabled
    run.json         versions, seed, git hash, wall time, device, throughput, peak memory; its "status" is
                     "finished", or "diverged" when talr.divergence stopped the run
    model/           the method's final model (safetensors + tokenizer; a LoRA run's adapter)
    finetuned/       with post-hoc averaging: the trained weights, ``model/`` then holds the average
    merged/          a LoRA run with ``lora.save_merged``: the adapter merged into the base weights
    checkpoints/     while training: what ``train(..., resume=True)`` continues from (talr.checkpoints)
    eval/            ``talr eval`` of the run: results.json and samples_<task>.jsonl (a sweep's base/ has one too)
    flow_weights.json  FLOW's sample weights (written and read by talr.flow)

A folder is taken for a run directory when it has ``run.json`` or ``model/`` (a run cut off before ``run.json`` still
has its model once training saved it); directories written by earlier versions have the same names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MODEL_FOLDERS = ("model", "merged", "finetuned")  # every folder of a run that holds a loadable model


@dataclass(frozen=True)
class RunDir:
    path: Path

    def __init__(self, path: str | os.PathLike):
        object.__setattr__(self, "path", Path(path).expanduser())

    @property
    def config_file(self) -> Path:
        return self.path / "config.yaml"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def probes_file(self) -> Path:
        return self.path / "probes.jsonl"

    @property
    def record_file(self) -> Path:
        return self.path / "run.json"

    @property
    def logs(self) -> tuple[Path, Path]:
        """The step-indexed logs a resumed run truncates to its checkpoint's step."""
        return self.metrics_file, self.probes_file

    @property
    def model_dir(self) -> Path:
        return self.path / "model"

    @property
    def finetuned_dir(self) -> Path:
        return self.path / "finetuned"

    @property
    def merged_dir(self) -> Path:
        return self.path / "merged"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def flow_weights_file(self) -> Path:
        return self.path / "flow_weights.json"

    @property
    def eval_dir(self) -> Path:
        return self.path / "eval"

    @property
    def results_file(self) -> Path:
        from talr.evaluation.evaluator import RESULTS_FILE  # the evaluator names what it writes in any out_dir

        return self.eval_dir / RESULTS_FILE

    def samples_file(self, task: str) -> Path:
        from talr.evaluation.evaluator import samples_path

        return samples_path(self.eval_dir, task)

    def folder(self, name: str) -> Path:
        """One of :data:`MODEL_FOLDERS`."""
        if name not in MODEL_FOLDERS:
            raise ValueError(f"{name!r} is not a model folder of a run ({', '.join(MODEL_FOLDERS)})")
        return self.path / name

    def is_run(self) -> bool:
        """A talr run directory (see the module docstring), finished or not."""
        return self.path.is_dir() and (self.record_file.is_file() or self.model_dir.is_dir())

    def read_config(self) -> dict:
        """``config.yaml`` as a mapping ({} when there is none)."""
        import yaml

        return (yaml.safe_load(self.config_file.read_text(encoding="utf-8")) or {}) if self.config_file.is_file() else {}

    def read_record(self) -> dict:
        """``run.json`` ({} while the run has not finished or stopped)."""
        from talr.io import read_json

        return read_json(self.record_file) if self.record_file.is_file() else {}

    def status(self) -> str | None:
        """``run.json``'s status ("finished", "diverged"), or None for a run not done, never started or whose record
        cannot be read."""
        try:
            return self.read_record().get("status")
        except ValueError:
            return None
