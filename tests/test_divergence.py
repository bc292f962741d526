"""Divergence: the rule on its own, then real runs of a tiny model stopped by an absurd learning rate and by NaN
weights."""

import json
import math

import pytest
import torch
from transformers import TrainerCallback

from talr import cli
from talr.config import config_from_dict, save_config
from talr.io import write_jsonl
from talr.divergence import DivergenceRule, TrainingDiverged
from talr.trainer import train


def _feed(rule, losses, grad_norms=None):
    """Feed logs at steps 1, 2, ...; (step, reason) of the first stop, or None."""
    for step, loss in enumerate(losses, start=1):
        logs = {"loss": loss}
        if grad_norms is not None:
            logs["grad_norm"] = grad_norms[step - 1]
        reason = rule.observe(step, logs)
        if reason is not None:
            return step, reason
    return None


def test_non_finite_loss_or_gradient_norm_stops_at_once():
    assert _feed(DivergenceRule(3.0, 3), [2.0, 1.5, math.nan])[0] == 3
    assert _feed(DivergenceRule(3.0, 3), [2.0, math.inf])[0] == 2
    step, reason = _feed(DivergenceRule(3.0, 3), [2.0, 1.9], grad_norms=[1.0, math.nan])
    assert step == 2 and "gradient norm is nan" in reason
    # fp16 autocast: the gradient scaler skips steps with an inf norm by design
    assert _feed(DivergenceRule(3.0, 3, check_grad_norm=False), [2.0, 1.9], grad_norms=[1.0, math.inf]) is None


def test_margin_rule_needs_patience_consecutive_logs_above_the_first_loss_plus_margin():
    rule = DivergenceRule(margin=1.0, patience=3)
    # the first log (2.0) is the reference; 3.5 is above 2 + 1, 2.9 is not and resets the count
    assert _feed(rule, [2.0, 3.5, 3.5, 2.9, 3.5, 3.5]) is None
    assert rule.last_good_step == 4 and rule.above == [5, 6]
    assert "for 3 consecutive logs (steps 5-7)" in rule.observe(7, {"loss": 3.5})
    rule = DivergenceRule(margin=1.0, patience=3)
    step, reason = _feed(rule, [2.0, 1.0, 3.01, 4.0, 10.0])
    assert step == 5 and "steps 3-5" in reason and rule.last_good_step == 2


def _config(tmp_path, tiny_model_dir, **training):
    data = write_jsonl([{"prompt": f"Double {i}.", "completion": f"{2 * i}"} for i in range(16)],
                       tmp_path / "train.jsonl")
    return config_from_dict({
        "model": str(tiny_model_dir), "output_dir": str(tmp_path / "run"), "method": "sft",
        "data": {"train": str(data), "max_length": 32}, "probes": {"enabled": False},
        "training": {"learning_rate": 3e-3, "max_steps": 12, "per_device_batch_size": 4, "logging_steps": 1,
                     "save_steps": 1, "save_total_limit": 0, "autocast": "none", "warmup_ratio": 0.0,
                     "lr_scheduler": "constant", **training},
    })


def test_absurd_learning_rate_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, tiny_model_dir):
    # lr 10 without clipping: the loss jumps far above its start but stays finite (measured: 5.6 -> 9.7, 33, 23)
    config = _config(tmp_path, tiny_model_dir, learning_rate=10.0, max_grad_norm=0.0, divergence_patience=2)
    with pytest.raises(TrainingDiverged, match="stayed above the first logged loss") as caught:
        train(config)
    run_dir = tmp_path / "run"
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "diverged" and run["diverged_at_step"] == caught.value.step
    # checkpoints are held back while the loss is above the margin: the last one kept passed the rule
    assert run["last_good_checkpoint"] == f"checkpoints/checkpoint-{run['last_good_step']}"
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == \
        [f"checkpoint-{s}" for s in range(1, run["last_good_step"] + 1)]
    assert not (run_dir / "model").exists()


class PoisonAt(TrainerCallback):
    """Sets one weight to NaN after optimizer step ``step``: the next forward's loss is NaN."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.step:
            with torch.no_grad():
                next(model.parameters()).view(-1)[0] = math.nan


def test_nan_weights_stop_the_run_at_the_next_forward(tmp_path, tiny_model_dir):
    config = _config(tmp_path, tiny_model_dir, logging_steps=2, save_steps=2)
    with pytest.raises(TrainingDiverged, match="at step 6: .* non-finite log-probability"):
        train(config, callbacks=[PoisonAt(5)])
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["status"] == "diverged" and run["diverged_at_step"] == 6
    assert run["last_good_step"] == 4 and run["last_good_checkpoint"] == "checkpoints/checkpoint-4"
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["checkpoint-2", "checkpoint-4"]


@pytest.mark.parametrize("check", [True, False])
def test_divergence_check_can_be_turned_off(tmp_path, tiny_model_dir, check):
    # one update at lr 10 without clipping: the step-2 loss is far above the step-1 loss (finite)
    config = _config(tmp_path, tiny_model_dir, learning_rate=10.0, max_grad_norm=0.0, max_steps=2, save_steps=0,
                     divergence_margin=0.0, divergence_patience=1, divergence_check=check)
    if check:
        with pytest.raises(TrainingDiverged, match="at step 2: the logged loss"):
            train(config)
    else:
        assert json.loads((train(config) / "run.json").read_text())["status"] == "finished"


def test_cli_reports_divergence_in_one_line_with_its_own_exit_status(tmp_path, tiny_model_dir, capsys):
    config = _config(tmp_path, tiny_model_dir, learning_rate=1e3, max_grad_norm=1.0)
    save_config(config, tmp_path / "config.yaml")
    assert cli.main(["train", "-c", str(tmp_path / "config.yaml")]) == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.count("talr train: error: training diverged at step ") == 1  # (after a progress bar's last line)
