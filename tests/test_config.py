import pytest

from talr.config import ConfigError, config_from_dict, load_config


def test_defaults_are_valid():
    config = config_from_dict({"data": {"train": "x.jsonl"}})
    assert config.method.loss == "sft" and config.data.train.path == "x.jsonl"


def test_preset_expands_into_axes_and_can_be_refined(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("method: talr\ndata:\n  train: d.jsonl\n")
    config = load_config(path, ["training.learning_rate=1e-6", "talr.w_min=0"])
    assert config.method.loss == "talr" and config.method.adapter == "full"
    assert config.training.learning_rate == 1e-6 and config.talr.w_min == 0.0


@pytest.mark.parametrize("raw, key", [
    ({"trainig": {}}, "trainig: unknown key"),
    ({"training": {"learning_rate": "fast"}}, "training.learning_rate: expected a finite number"),
    ({"training": {"per_device_batch_size": 2.5}}, "training.per_device_batch_size: expected an integer"),
    ({"training": {"learning_rate": 0}}, "training.learning_rate: must be positive"),
    ({"talr": {"tau": -1.0}}, "talr.tau"),
    ({"talr": {"tau": "mean"}}, "talr.tau"),
    ({"talr": {"tau_scope": "batch"}}, "talr.tau_scope"),
    ({"method": "magic"}, "method: unknown preset"),
    ({"method": {"loss": "magic"}}, "method.loss: unknown value"),
    ({"data": {"train": {"path": "a", "source": "gsm8k"}}}, "data.train"),
])
def test_bad_values_name_the_key(raw, key):
    raw = {"data": {"train": "x.jsonl"}, **raw}
    with pytest.raises(ConfigError, match=key):
        config_from_dict(raw)


def test_cli_fails_on_unknown_key_before_loading_a_model(tmp_path, capsys):
    from talr.cli import main

    path = tmp_path / "c.yaml"
    path.write_text("model: does-not-exist\ndata:\n  train: d.jsonl\ntraining:\n  lerning_rate: 1\n")
    assert main(["train", "--config", str(path)]) == 2
    assert "training.lerning_rate: unknown key" in capsys.readouterr().err
