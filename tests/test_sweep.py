"""A 2 x 2 sweep on a tiny random model: config errors up front, resumability after a real kill -9, the report."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from talr.config import ConfigError
from talr.io import write_jsonl
from talr.paths import data_dir
from talr.sweep import grid_points, load_sweep_config

needs_data = pytest.mark.skipif(not (data_dir() / "alpaca").is_dir(), reason="benchmark data folder not found")
TASKS = {"domain": ["codelength_medcalc"], "general": ["codelength_alpaca"]}


def _sweep_file(tmp_path, tiny_model_dir, **changes):
    examples = [{"prompt": f"Double {i}.", "completion": f"{2 * i}"} for i in range(16)]
    raw = {
        "name": "tiny",
        "out_dir": str(tmp_path / "sweeps"),
        "grid": {"methods": ["sft", "talr"], "learning_rates": [1e-3, 1e-2], "seeds": [0]},
        "eval": {**TASKS, "limit": 3, "batch_size": 4},
        "wise_ft": {"alphas": [0.5], "methods": ["sft"]},
        "train": {
            "model": str(tiny_model_dir),
            "data": {"train": str(write_jsonl(examples, tmp_path / "train.jsonl")), "max_length": 32},
            "training": {"max_steps": 2, "per_device_batch_size": 4, "logging_steps": 1, "autocast": "none"},
        },
    }
    for key, value in changes.items():
        raw[key] = value
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("change, message", [
    ({"grid": {"methods": ["magic"], "learning_rates": [1e-3]}}, "unknown method 'magic'"),
    ({"grid": {"methods": [], "learning_rates": [1e-3]}}, "must each be non-empty"),
    ({"grid": {"methods": ["sft"], "learning_rates": [0.0]}}, "is not positive"),
    ({"eval": {"domain": ["nope"], "general": []}}, "unknown task"),
    ({"train": {"data": {"train": "/nonexistent/train.jsonl"}}}, "does not exist"),
])
def test_config_errors_surface_before_training(tmp_path, tiny_model_dir, change, message):
    path = _sweep_file(tmp_path, tiny_model_dir, **change)
    with pytest.raises((ConfigError, FileNotFoundError), match=message):
        load_sweep_config(path)


def test_grid_points_are_named_and_validated(tmp_path, tiny_model_dir):
    sweep = load_sweep_config(_sweep_file(tmp_path, tiny_model_dir))
    names = [p.name for p in grid_points(sweep)]
    assert names == ["sft_lr0.001_seed0", "sft_lr0.01_seed0", "talr_lr0.001_seed0", "talr_lr0.01_seed0"]
    assert {p.config.method.loss for p in grid_points(sweep)} == {"sft", "talr"}


def test_grid_accepts_eaft_and_the_talr_variants(tmp_path, tiny_model_dir):
    grid = {"methods": ["eaft", "talr_seq", "talr_tau1", "talr_disc"], "learning_rates": [1e-3], "seeds": [0]}
    configs = {p.method: p.config for p in grid_points(load_sweep_config(_sweep_file(tmp_path, tiny_model_dir,
                                                                                      grid=grid)))}
    assert configs["eaft"].method.loss == "eaft" and configs["eaft"].options_for("eaft").k == 20
    assert {name: configs[name].method.loss for name in grid["methods"][1:]} == dict.fromkeys(grid["methods"][1:],
                                                                                              "talr")
    assert configs["talr_seq"].talr.tau_scope == "sequence" and configs["talr_tau1"].talr.tau == 1.0
    disc = configs["talr_disc"].talr
    assert (disc.normalization, disc.tau_scope, disc.tau) == ("none", "sequence", "median")


def _results(root: Path) -> dict[str, dict]:
    """The evaluation results of every finished point (all tasks present)."""
    out = {}
    for path in sorted(root.glob("runs/*/eval/results.json")):
        results = json.loads(path.read_text())["results"]
        if set(results) == {*TASKS["domain"], *TASKS["general"]}:
            out[path.parent.parent.name] = results
    return out


@needs_data
def test_sweep_survives_kill_9_and_resumes(tmp_path, tiny_model_dir):
    config = _sweep_file(tmp_path, tiny_model_dir)
    root = tmp_path / "sweeps" / "tiny"
    command = [sys.executable, "-m", "talr.cli", "sweep", str(config), "--no-report"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "sweep.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = time.time() + 480
        while time.time() < deadline and not _results(root) and process.poll() is None:
            time.sleep(0.05)
    assert process.poll() is None, f"the sweep exited early:\n{log.read_text()[-3000:]}"
    time.sleep(0.3)  # into the next point's training (or its checkpoint write)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished_before = _results(root)
    assert 1 <= len(finished_before) < 6, "the kill should land mid-sweep"

    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
    finished_after = _results(root)
    trained = [p.name for p in grid_points(load_sweep_config(config))]
    averaged = [f"{name}_wise_ft0.5" for name in trained if name.startswith("sft")]
    assert sorted(finished_after) == sorted(trained + averaged)
    for name, results in finished_before.items():
        assert finished_after[name] == results, name
    assert sorted(p.name for p in (root / "runs").iterdir()) == sorted(finished_after)

    from talr.report import write_report

    report = write_report(root).read_text()
    assert "Learning rate 0.001" in report and "talr" in report


def test_plan_writes_each_point_config_for_accelerate(tmp_path, tiny_model_dir):
    from talr.config import load_config
    from talr.sweep import plan_sweep

    sweep = load_sweep_config(_sweep_file(tmp_path, tiny_model_dir))
    commands = plan_sweep(sweep)
    assert len(commands) == 4 and all(c.startswith("accelerate launch -m talr.cli train --resume --config ") for c in commands)
    config = load_config(commands[-1].split()[-1])
    assert config.method.loss == "talr" and config.training.learning_rate == 1e-2
