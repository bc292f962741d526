"""A sweep killed mid-training resumes that point from its checkpoint; a diverging point is recorded and skipped while
the sweep goes on. Runs without the benchmark folder: the one evaluation task reads a small Alpaca file made here."""

import json
import os
import signal
import subprocess
import sys
import time

import yaml

from talr import cli
from talr.checkpoints import last_checkpoint
from talr.io import write_jsonl


def _sweep_file(tmp_path, tiny_model_dir, learning_rates, **training):
    data_dir = tmp_path / "data"
    (data_dir / "alpaca").mkdir(parents=True)
    (data_dir / "alpaca" / "alpaca_5000.json").write_text(json.dumps(
        [{"instruction": f"Name the number after {i}.", "input": "", "output": f"{i + 1}"} for i in range(4)]))
    train = write_jsonl([{"prompt": f"Double {i}.", "completion": f"{2 * i}"} for i in range(16)],
                        tmp_path / "train.jsonl")
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({
        "name": "tiny", "out_dir": str(tmp_path / "sweeps"),
        "grid": {"methods": ["sft"], "learning_rates": learning_rates, "seeds": [0]},
        "eval": {"general": ["codelength_alpaca"], "limit": 2, "batch_size": 2, "data_dir": str(data_dir)},
        "train": {"model": str(tiny_model_dir), "data": {"train": str(train), "max_length": 32},
                  "probes": {"enabled": False},
                  "training": {"per_device_batch_size": 2, "logging_steps": 2, "autocast": "none",
                               "lr_scheduler": "constant", "warmup_ratio": 0.0, **training}},
    }))
    return path


def test_a_sweep_killed_during_training_resumes_the_point_from_its_checkpoint(tmp_path, tiny_model_dir):
    config = _sweep_file(tmp_path, tiny_model_dir, [1e-3], max_steps=60, save_steps=4)
    run_dir = tmp_path / "sweeps" / "tiny" / "runs" / "sft_lr0.001_seed0"
    sweep = subprocess.Popen([sys.executable, "-m", "talr.cli", "sweep", str(config), "--no-report"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 480
    while time.time() < deadline and sweep.poll() is None and last_checkpoint(run_dir) is None:
        time.sleep(0.05)
    sweep.send_signal(signal.SIGKILL)
    _, stderr = sweep.communicate()
    assert sweep.returncode == -signal.SIGKILL, f"the sweep ended before a checkpoint:\n{stderr[-3000:]}"
    checkpoint = last_checkpoint(run_dir)
    assert checkpoint is not None and not (run_dir / "run.json").exists()
    assert json.loads((tmp_path / "sweeps" / "tiny" / "sweep.lock").read_text())["pid"] == sweep.pid  # stale now

    assert cli.main(["sweep", str(config), "--no-report"]) == 0
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "finished" and run["global_steps"] == 60
    assert run["resumed_from_step"] == checkpoint.step
    metrics = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert metrics[:-1] == [1, *range(2, 61, 2)]  # then the Trainer's summary row
    assert "codelength_alpaca" in json.loads((run_dir / "eval" / "results.json").read_text())["results"]
    assert not (tmp_path / "sweeps" / "tiny" / "sweep.lock").exists()


def test_a_diverging_point_is_recorded_and_the_sweep_goes_on(tmp_path, tiny_model_dir):
    # lr 10 without clipping: the step-2 loss is several nats above the step-1 loss; lr 1e-3 stays near its start
    config = _sweep_file(tmp_path, tiny_model_dir, [10.0, 1e-3], max_steps=4, max_grad_norm=0.0,
                         divergence_margin=1.0, divergence_patience=1, logging_steps=1)
    runs = tmp_path / "sweeps" / "tiny" / "runs"
    assert cli.main(["sweep", str(config), "--no-report"]) == 0
    diverged, healthy = runs / "sft_lr10_seed0", runs / "sft_lr0.001_seed0"
    assert json.loads((diverged / "run.json").read_text())["status"] == "diverged"
    point = json.loads((diverged / "point.json").read_text())
    assert point["status"] == "diverged" and point["diverged_at_step"] == 2
    assert not (diverged / "eval").exists()
    assert json.loads((healthy / "run.json").read_text())["status"] == "finished"
    assert (healthy / "eval" / "results.json").is_file()

    before = os.stat(diverged / "run.json").st_mtime_ns
    assert cli.main(["sweep", str(config), "--no-report"]) == 0  # a rerun does not train it again
    assert os.stat(diverged / "run.json").st_mtime_ns == before
