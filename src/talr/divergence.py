"""Stopping a diverging run: the rule (applied by talr.callbacks.DivergenceCallback) and what a diverged run leaves
behind.

The rule, checked on each training log (values the Trainer already brought to the host, identical on every process,
so it adds no device sync and every process stops together):

* a non-finite logged ``loss`` or ``grad_norm`` stops the run at once (``grad_norm`` is not checked under fp16
  autocast, whose gradient scaler skips such steps by design);
* a logged ``loss`` above the run's first logged loss + ``training.divergence_margin`` (nats, default 3.0: every
  token about 20x less likely than at the start) for ``training.divergence_patience`` consecutive logs (default 3)
  stops it too.

``training.divergence_check: false`` turns both off. The logged loss is the method's training loss: for DFT, whose
per-token loss ``p * -log p`` never exceeds 1/e, only the non-finite rule can fire. No checkpoint is written while
the loss is above the margin, so the last checkpoint of a diverged run is one whose log passed the rule; checkpoints
after the last passing log are deleted. ``run.json`` then says ``"status": "diverged"`` with the step and reason.
"""

from __future__ import annotations

import math
from pathlib import Path

from talr.checkpoints import complete_checkpoints, remove_checkpoints


class TrainingDiverged(RuntimeError):
    """The divergence rule stopped a run."""

    def __init__(self, step: int, reason: str, last_good_step: int):
        self.step, self.reason, self.last_good_step = step, reason, last_good_step
        super().__init__(f"training diverged at step {step}: {reason}")


class DivergenceRule:
    """The rule over a run's training logs, fed one at a time."""

    def __init__(self, margin: float, patience: int, check_grad_norm: bool = True):
        self.margin = margin
        self.patience = patience
        self.check_grad_norm = check_grad_norm
        self.reference: float | None = None
        self.above: list[int] = []  # steps of the current run of logs above the margin
        self.last_good_step = 0

    def observe(self, step: int, logs: dict) -> str | None:
        """Take one training log (with ``"loss"``); the reason to stop, or None."""
        loss = float(logs["loss"])
        grad_norm = logs.get("grad_norm")
        if not math.isfinite(loss):
            return f"the logged loss is {loss}"
        if self.check_grad_norm and grad_norm is not None and not math.isfinite(float(grad_norm)):
            return f"the gradient norm is {grad_norm}"
        if self.reference is None:
            self.reference = loss
        if loss > self.reference + self.margin:
            self.above.append(step)
            if len(self.above) >= self.patience:
                return (f"the logged loss ({loss:.4g}) stayed above the first logged loss ({self.reference:.4g}) + "
                        f"training.divergence_margin ({self.margin:g}) for {len(self.above)} consecutive logs "
                        f"(steps {self.above[0]}-{step})")
            return None
        self.above = []
        self.last_good_step = step
        return None


def divergence_rule(config) -> DivergenceRule | None:
    """The rule for a run's config; None when ``training.divergence_check`` is off."""
    t = config.training
    if not t.divergence_check:
        return None
    return DivergenceRule(t.divergence_margin, t.divergence_patience, check_grad_norm=t.autocast != "fp16")


def record_divergence(run_dir: Path, error: TrainingDiverged, extra: dict) -> Path | None:
    """Delete the checkpoints written after the last log that passed the rule, write ``run.json`` with
    ``"status": "diverged"``, and return the last good checkpoint (None when there is none)."""
    from talr.io import atomic_write_json
    from talr.run_dir import RunDir

    remove_checkpoints(run_dir, after_step=error.last_good_step)
    kept = complete_checkpoints(run_dir)
    last_good = kept[-1].path if kept else None
    atomic_write_json(RunDir(run_dir).record_file, {
        "status": "diverged", "diverged_at_step": error.step, "reason": error.reason,
        "last_good_step": error.last_good_step,
        "last_good_checkpoint": str(last_good.relative_to(run_dir)) if last_good else None, **extra,
    })
    return last_good
