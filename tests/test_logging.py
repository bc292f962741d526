"""training.report_to reaches the Trainer; a tiny TensorBoard run writes talr's own metrics (offline)."""

import pytest

from talr.config import ConfigError, config_from_dict
from talr.io import write_jsonl
from talr.trainer import train, training_arguments


def _config(tmp_path, model_dir, **training):
    data = write_jsonl([
        {"messages": [{"role": "user", "content": f"Add {i} and {i + 1}."},
                      {"role": "assistant", "content": f"The answer is {2 * i + 1}."}]} for i in range(8)
    ], tmp_path / "train.jsonl")
    return config_from_dict({
        "model": str(model_dir), "output_dir": str(tmp_path / "run"), "method": "talr",
        "data": {"train": str(data), "max_length": 64}, "probes": {"enabled": False},
        "training": {"learning_rate": 3e-3, "max_steps": 4, "logging_steps": 2, "autocast": "none",
                     "per_device_batch_size": 2, "save_model": False, **training},
    })


def test_report_to_defaults_to_none_and_is_passed_on(tmp_path, tiny_model_dir):
    assert training_arguments(_config(tmp_path, tiny_model_dir), tmp_path).report_to == []
    args = training_arguments(_config(tmp_path, tiny_model_dir, report_to=["tensorboard", "wandb"]), tmp_path)
    assert args.report_to == ["tensorboard", "wandb"]


def test_unknown_report_to_names_the_key(tmp_path, tiny_model_dir):
    with pytest.raises(ConfigError, match="training.report_to: unknown 'tensorbord'"):
        _config(tmp_path, tiny_model_dir, report_to="tensorbord")


def test_tensorboard_event_file_holds_talr_metrics(tmp_path, tiny_model_dir):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = train(_config(tmp_path, tiny_model_dir, report_to="tensorboard"))
    (event_file,) = (run_dir / "checkpoints" / "runs").glob("*/events.out.tfevents.*")
    events = EventAccumulator(str(event_file))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for name in ("loss", "tau", "ess_frac", "hard_token_frac", "nll"):
        assert f"train/{name}" in tags, name
    taus = [event.value for event in events.Scalars("train/tau")]
    assert len(taus) == 3 and all(tau > 0 for tau in taus)  # logged at steps 1, 2 and 4
