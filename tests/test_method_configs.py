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
    ])
    run_dir = train(config)
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
    model_dir = run_dir / "model"
    assert (model_dir / "adapter_config.json" if name == "lora" else model_dir / "model.safetensors").is_file()
    if name == "wise_ft":
        assert (run_dir / "finetuned" / "model.safetensors").is_file()
    if name == "flow":
        assert json.loads((run_dir / "flow_weights.json").read_text())["tau"] > 0
