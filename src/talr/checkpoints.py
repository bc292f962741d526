"""Resumable runs: finding a run's last complete checkpoint and putting its directory back to that checkpoint's step.

Every ``training.save_steps`` optimizer steps the Trainer writes ``run_dir/checkpoints/checkpoint-<step>/``: the
weights (the adapter for LoRA), optimizer, scheduler, gradient scaler, RNG states and, last, ``trainer_state.json``
(global step, log history). A folder whose ``trainer_state.json`` is missing, unreadable or names another step was
cut off by a kill and is not a checkpoint. Resuming continues from the last complete one: the Trainer restores the
weights, optimizer, scheduler, RNG states and data order (it skips the batches already seen); talr restores its own
files here (rows of ``metrics.jsonl`` and ``probes.jsonl`` after the checkpoint's step are dropped, as the resumed run
writes them again) and in ``talr.trainer.train`` (FLOW's sample weights read back from ``flow_weights.json``, the
probes' baseline scored on the starting model).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from talr.io import atomic_write_text
from talr.run_dir import RunDir

logger = logging.getLogger(__name__)

_CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")
# Settings that may change between a run and its resumption: none of them changes what the run computes.
RESUMABLE_CHANGES = frozenset({
    "output_dir", "training.save_steps", "training.save_total_limit", "training.keep_checkpoints",
    "training.divergence_check", "training.divergence_margin", "training.divergence_patience",
    "training.torch_threads",
})


class ResumeError(ValueError):
    """A run cannot be resumed as asked; the message names the run directory and why."""


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    step: int


def _complete_step(folder: Path) -> int | None:
    """The step of a complete checkpoint folder, or None for one cut off mid-write."""
    match = _CHECKPOINT_NAME.match(folder.name)
    if match is None or not folder.is_dir():
        return None
    try:
        state = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    step = int(match.group(1))
    return step if isinstance(state, dict) and state.get("global_step") == step else None


def complete_checkpoints(run_dir: str | Path) -> list[Checkpoint]:
    """The run's complete checkpoints, oldest first."""
    folder = RunDir(run_dir).checkpoints_dir
    found = []
    for path in folder.iterdir() if folder.is_dir() else ():
        step = _complete_step(path)
        if step is not None:
            found.append(Checkpoint(path, step))
    return sorted(found, key=lambda c: c.step)


def last_checkpoint(run_dir: str | Path) -> Checkpoint | None:
    found = complete_checkpoints(run_dir)
    return found[-1] if found else None


def remove_checkpoints(run_dir: str | Path, after_step: int = -1) -> None:
    """Delete every checkpoint folder (complete or not) whose step is above ``after_step`` (default: all of them),
    and the checkpoints folder when nothing is left in it. Anything else there is kept: the Trainer's logging
    integrations write there too (TensorBoard's ``runs/``)."""
    folder = RunDir(run_dir).checkpoints_dir
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        match = _CHECKPOINT_NAME.match(path.name)
        if match is not None and int(match.group(1)) > after_step:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    if not any(folder.iterdir()):
        folder.rmdir()


def truncate_jsonl(path: Path, step: int) -> None:
    """Keep the records of a JSONL log whose ``"step"`` is at most ``step`` (and those without one, such as a
    header); a line cut off by a kill is dropped. Rewritten atomically."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict) or not isinstance(record.get("step"), int) or record["step"] <= step:
            kept.append(line)
    atomic_write_text(path, "".join(line + "\n" for line in kept))


def _flatten(data: dict, prefix: str = "") -> dict[str, object]:
    flat = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def config_changes(saved: dict, current: dict) -> list[str]:
    """Dotted keys whose values differ between a run's saved config and the one it is resumed with, other than
    :data:`RESUMABLE_CHANGES`; keys the saved config lacks (settings added to talr since) are not compared."""
    old, new = _flatten(saved), _flatten(current)
    return sorted(k for k in old.keys() & new.keys() if old[k] != new[k] and k not in RESUMABLE_CHANGES)


def start_fresh(run_dir: Path) -> None:
    """A run started from step 0 drops whatever an earlier attempt left in its directory."""
    if complete_checkpoints(run_dir):
        logger.warning("%s: deleting the checkpoints of an earlier attempt and training from step 0 (--resume "
                       "continues from them instead)", run_dir)
    remove_checkpoints(run_dir)
    run = RunDir(run_dir)
    for path in (*run.logs, run.record_file):  # what a fresh run replaces (a resumed run truncates the logs)
        path.unlink(missing_ok=True)


def prepare_resume(current_config: dict, run_dir: Path, edit: bool = True) -> Checkpoint | None:
    """Put ``run_dir`` back to its last complete checkpoint and return it; with none, start afresh and return None.
    ``edit=False`` (processes other than the main one) only finds the checkpoint.

    Refuses (ResumeError) a finished run and a config that differs from the run's saved ``config.yaml`` in anything
    that changes what is computed (the data file's content is not checked)."""
    run = RunDir(run_dir)
    run_json, saved_path = run.record_file, run.config_file
    if run.read_record().get("status") == "finished":
        raise ResumeError(f"{run_json}: the run already finished; train without --resume to run it again")
    if saved_path.is_file():
        changed = config_changes(run.read_config(), current_config)
        if changed:
            raise ResumeError(f"{saved_path}: the config differs from the run's in {', '.join(changed)}; resuming "
                              "would mix two runs (train without --resume to start again)")
    checkpoint = last_checkpoint(run_dir)
    if not edit:
        return checkpoint
    if checkpoint is None:
        # a warning only when an earlier attempt trained here (a fresh sweep point is resumed too, and has nothing)
        earlier = run.metrics_file.is_file() or run.checkpoints_dir.is_dir()
        (logger.warning if earlier else logger.info)("%s has no complete checkpoint: training from step 0", run_dir)
        start_fresh(run_dir)
        return None
    logger.info("Resuming %s from %s (step %d)", run_dir, checkpoint.path.name, checkpoint.step)
    remove_checkpoints(run_dir, after_step=checkpoint.step)  # and folders cut off mid-write
    for log in run.logs:
        truncate_jsonl(log, checkpoint.step)
    run_json.unlink(missing_ok=True)
    return checkpoint
