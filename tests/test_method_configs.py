"""configs/methods/: one config per preset of the paper's comparison, each valid and (slow) trainable."""

import json
from pathlib import Path

import pytest

from talr.config import load_config
from talr.methods import PRESETS

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "methods"


def test_there_is_one_config_per_preset():
    assert sorted(p.stem for p in CONFIGS.glob("*.yaml")) == sorted(PRESETS)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_config_is_valid_and_selects_its_preset(name):
    config = load_config(CONFIGS / f"{name}.yaml")
    for section, values in PRESETS[name].items():  # every setting the preset makes, a method's options included
        settings = getattr(config, section) if hasattr(config, section) else config.options_for(section)
        for key, value in values.items():
            assert getattr(settings, key) == value, f"{section}.{key}"
    assert config.model == "smollm2-135m-instruct" and config.data.train.source is not None


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_config_trains_the_embedded_model(tmp_path, name):
    from talr.trainer import train

    config = load_config(CONFIGS / f"{name}.yaml", [
        f"output_dir={tmp_path / name}", "training.max_steps=1", "data.train.limit=4",
        "training.per_device_batch_size=2", "training.logging_steps=1",
        "probes.enabled=false",  # the probes' scoring passes are most of a one-step run (tests/test_callbacks.py)
    ])
    run_dir = train(config)
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
    model_dir = run_dir / "model"
    adapter = PRESETS[name].get("method", {}).get("adapter") == "lora"  # lora, lora_talr: model/ is the adapter
    assert (model_dir / "adapter_config.json" if adapter else model_dir / "model.safetensors").is_file()
    if name == "wise_ft":
        assert (run_dir / "finetuned" / "model.safetensors").is_file()
    if name == "flow":
        assert json.loads((run_dir / "flow_weights.json").read_text())["tau"] > 0



@pytest.mark.slow
@pytest.mark.parametrize("name, adapter", [("eaft", "full"), ("eaft", "lora"), ("talr_seq", "full"),
                                           ("talr_tau1", "full"), ("talr_disc", "full")])
def test_a_few_steps_lower_the_methods_own_objective(tmp_path, name, adapter):
    """Three steps on the same two short conversations: the logged loss (the method's own weighted objective on that
    batch, before each step's update) goes down."""
    from talr.io import write_jsonl
    from talr.trainer import train

    data = write_jsonl([
        {"messages": [{"role": "user", "content": "What is 12 + 30?"},
                      {"role": "assistant", "content": "12 + 30 = 42. The answer is 42."}]},
        {"messages": [{"role": "user", "content": "Name a primary colour."},
                      {"role": "assistant", "content": "Blue is a primary colour."}]},
    ], tmp_path / "train.jsonl")
    config = load_config(CONFIGS / f"{name}.yaml", [
        f"output_dir={tmp_path / name}", f"data.train={{path: {data}}}", "data.max_length=64",
        "training.max_steps=3", "training.per_device_batch_size=2", "training.logging_steps=1",
        "training.save_model=false", "training.warmup_ratio=0.0", "probes.enabled=false", "training.torch_threads=1",
        f"training.learning_rate={1e-3 if adapter == 'lora' else 1e-4}", f"method.adapter={adapter}",
    ])
    run_dir = train(config)
    losses = [row["loss"] for row in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
              if "loss" in row]
    assert len(losses) == 3 and losses[-1] < losses[0], losses
