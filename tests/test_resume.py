"""Resumable training: a run killed with SIGKILL at a random step and resumed with `talr train --resume` ends where an
uninterrupted run ends (weights, metrics.jsonl, probes.jsonl); checkpoint bookkeeping on its own."""

import json
import os
import random
import signal
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file

from talr import cli
from talr.checkpoints import (
    ResumeError, complete_checkpoints, config_changes, last_checkpoint, prepare_resume, truncate_jsonl,
)
from talr.config import config_from_dict, config_to_dict, save_config
from talr.io import write_jsonl

# Dies by SIGKILL at the end of optimizer step argv[2], before that step's log and checkpoint.
KILL_SCRIPT = """
import os, signal, sys
from transformers import TrainerCallback
from talr.config import load_config
from talr.trainer import train

class KillAt(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == int(sys.argv[2]):
            os.kill(os.getpid(), signal.SIGKILL)

train(load_config(sys.argv[1]), callbacks=[KillAt()])
"""

MAX_STEPS, SAVE_STEPS = 12, 4


def _examples(n=26):
    return [{"messages": [{"role": "user", "content": f"Add {i} and {i + 1}."},
                          {"role": "assistant", "content": f"The answer is {2 * i + 1}."}]} for i in range(n)]


def _config(tmp_path, tiny_model_dir, name, method):
    data = write_jsonl(_examples(), tmp_path / "train.jsonl")
    general = write_jsonl(_examples(8)[::-1], tmp_path / "general.jsonl")
    return config_from_dict({
        "model": str(tiny_model_dir), "output_dir": str(tmp_path / name), "method": method,
        "data": {"train": str(data), "max_length": 64},
        # 24 training rows in steps of 2 x 2: two epochs, so the resumed data order crosses an epoch boundary
        "probes": {"general": str(general), "general_size": 4, "hard_token_size": 4, "every_n_steps": 3},
        "flow": {"cache": False},  # the resumed run reads flow_weights.json; the others score the base model
        "training": {"learning_rate": 3e-3, "max_steps": MAX_STEPS, "logging_steps": 2, "save_steps": SAVE_STEPS,
                     "per_device_batch_size": 2, "gradient_accumulation_steps": 2, "autocast": "none",
                     "warmup_ratio": 0.25, "lr_scheduler": "cosine"},
    })


def _rows(path, drop=("tokens_per_s", "train_runtime", "train_samples_per_second", "train_steps_per_second",
                      "train_loss")):
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in drop} for row in rows]


def _assert_same_rows(a, b):
    assert [r.get("step") for r in a] == [r.get("step") for r in b]  # nothing lost, nothing twice
    for ra, rb in zip(a, b):
        assert ra.keys() == rb.keys()
        for key in ra:
            if isinstance(ra[key], float):
                assert ra[key] == pytest.approx(rb[key], rel=1e-5, abs=1e-7), key
            else:
                assert ra[key] == rb[key], key


@pytest.mark.parametrize("method", [
    {"loss": "talr", "regularizer": "l2"},  # step-exact TALR weights, L2 to the initial weights
    {"loss": "flow", "adapter": "lora"},  # FLOW's sample weights, a LoRA adapter (dropout: RNG state)
], ids=["talr+l2", "flow+lora"])
def test_sigkill_at_a_random_step_then_resume_matches_an_uninterrupted_run(tmp_path, tiny_model_dir, method,
                                                                           monkeypatch):
    monkeypatch.setenv("TALR_CACHE_DIR", str(tmp_path / "cache"))
    kill_step = random.randint(SAVE_STEPS + 1, MAX_STEPS - 1)
    reference = cli.main(["train", "-c", _save(_config(tmp_path, tiny_model_dir, "whole", method), tmp_path)])
    assert reference == 0

    config_path = _save(_config(tmp_path, tiny_model_dir, "killed", method), tmp_path)
    killed = subprocess.run([sys.executable, "-c", KILL_SCRIPT, config_path, str(kill_step)], capture_output=True,
                            text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    run_dir = tmp_path / "killed"
    checkpoint = last_checkpoint(run_dir)
    assert checkpoint is not None and checkpoint.step == (kill_step - 1) // SAVE_STEPS * SAVE_STEPS, kill_step
    assert not (run_dir / "model").exists() and not (run_dir / "run.json").exists()

    assert cli.main(["train", "-c", config_path, "--resume"]) == 0, f"kill at step {kill_step}"
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "finished" and run["resumed_from_step"] == checkpoint.step
    assert not (run_dir / "checkpoints").exists()  # removed once finished (training.keep_checkpoints: false)
    whole, resumed = tmp_path / "whole" / "model", run_dir / "model"
    files = sorted(p.name for p in whole.glob("*.safetensors"))
    assert files and files == sorted(p.name for p in resumed.glob("*.safetensors"))
    for name in files:
        a, b = load_file(whole / name), load_file(resumed / name)
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-7, msg=f"{key} (kill at {kill_step})")
    _assert_same_rows(_rows(tmp_path / "whole" / "metrics.jsonl"), _rows(run_dir / "metrics.jsonl"))
    _assert_same_rows(_rows(tmp_path / "whole" / "probes.jsonl"), _rows(run_dir / "probes.jsonl"))
    if method["loss"] == "flow":
        assert (run_dir / "flow_weights.json").read_text() == (tmp_path / "whole" / "flow_weights.json").read_text()


def _save(config, tmp_path):
    path = tmp_path / f"{os.path.basename(config.output_dir)}.yaml"
    save_config(config, path)
    return str(path)


def _fake_checkpoint(run_dir, step, complete=True):
    folder = run_dir / "checkpoints" / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"weights")
    if complete:
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return folder


def test_a_checkpoint_cut_off_mid_write_is_not_resumed_from(tmp_path):
    _fake_checkpoint(tmp_path, 4)
    _fake_checkpoint(tmp_path, 8, complete=False)  # killed before trainer_state.json
    torn = _fake_checkpoint(tmp_path, 12, complete=False)
    (torn / "trainer_state.json").write_text('{"global_st')
    assert [c.step for c in complete_checkpoints(tmp_path)] == [4]
    assert last_checkpoint(tmp_path).step == 4
    assert last_checkpoint(tmp_path / "nothing") is None


def test_prepare_resume_truncates_the_logs_and_drops_later_checkpoints(tmp_path, tiny_model_dir):
    config = config_from_dict({"model": str(tiny_model_dir), "output_dir": str(tmp_path),
                               "data": {"train": "x.jsonl"}})
    save_config(config, tmp_path / "config.yaml")
    _fake_checkpoint(tmp_path, 4)
    _fake_checkpoint(tmp_path, 8, complete=False)
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in (1, 2, 4, 6))
                                            + '{"step": 8, "lo')  # the last line cut off by the kill
    (tmp_path / "probes.jsonl").write_text(json.dumps({"probe": "setup"}) + "\n" + json.dumps({"step": 0}) + "\n"
                                           + json.dumps({"step": 6}) + "\n")
    checkpoint = prepare_resume(config_to_dict(config), tmp_path)
    assert checkpoint.step == 4
    assert [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2, 4]
    assert [json.loads(line).get("step") for line in (tmp_path / "probes.jsonl").read_text().splitlines()] == [None, 0]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["checkpoint-4"]


def test_resume_refuses_a_changed_config_and_a_finished_run(tmp_path, tiny_model_dir):
    raw = {"model": str(tiny_model_dir), "output_dir": str(tmp_path), "data": {"train": "x.jsonl"}}
    save_config(config_from_dict(raw), tmp_path / "config.yaml")
    changed = config_to_dict(config_from_dict({**raw, "training": {"learning_rate": 1e-3, "save_steps": 10,
                                                                   "divergence_margin": 5.0}}))
    with pytest.raises(ResumeError, match=r"config.yaml: the config differs from the run's in "
                                          r"training.learning_rate;"):
        prepare_resume(changed, tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"status": "finished"}))
    with pytest.raises(ResumeError, match="already finished"):
        prepare_resume(config_to_dict(config_from_dict(raw)), tmp_path)


def test_config_changes_ignore_keys_a_saved_config_predates():
    saved = yaml.safe_load("training: {learning_rate: 1.0e-5, logging_steps: 5}\nseed: 0\n")
    current = {"training": {"learning_rate": 1e-5, "logging_steps": 5, "new_key": 1}, "seed": 1}
    assert config_changes(saved, current) == ["seed"]


def test_truncate_jsonl_keeps_records_without_a_step(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"probe": "setup"}\n{"step": 3}\n[1, 2]\n{"step": 5}\n')
    truncate_jsonl(path, 4)
    assert path.read_text() == '{"probe": "setup"}\n{"step": 3}\n[1, 2]\n'
