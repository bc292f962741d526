"""Model cards: every saved model folder gets a README.md whose YAML front matter parses back."""

import json

import pytest
import yaml

from talr import __version__
from talr.averaging import wise_ft
from talr.config import config_from_dict
from talr.io import write_jsonl
from talr.model_card import ModelCardError, hub_base_model, parse_card, read_card, render_card, write_run_cards
from talr.trainer import train


def _run(tmp_path, model_dir, name, **method):
    data = write_jsonl([
        {"prompt": f"Add {i} and {i + 1}.", "completion": f"The answer is {2 * i + 1}."} for i in range(8)
    ], tmp_path / "train.jsonl")
    config = config_from_dict({
        "model": str(model_dir), "output_dir": str(tmp_path / name), "method": method or "talr", "seed": 3,
        "data": {"train": str(data), "max_length": 64}, "probes": {"enabled": False},
        "training": {"learning_rate": 2e-3, "max_steps": 2, "logging_steps": 1, "autocast": "none",
                     "per_device_batch_size": 4},
    })
    return train(config)


def test_render_and_parse_round_trip():
    metadata = {"base_model": "org/model", "library_name": "transformers", "tags": ["talr", "lora"],
                "datasets": ["openai/gsm8k"]}
    text = render_card(metadata, "# Title\n\nbody: with --- inside")
    assert parse_card(text) == (metadata, "# Title\n\nbody: with --- inside")
    assert yaml.safe_load(text.split("---\n")[1]) == metadata  # what the Hub reads


@pytest.mark.parametrize("text, error", [
    ("# no front matter\n", "no YAML front matter"),
    ("---\nbase_model: x\n", "not closed"),
    ("---\n- a list\n---\nbody", "not a YAML mapping"),
    ("---\nkey: [unclosed\n---\nbody", "invalid YAML"),
])
def test_malformed_cards_name_the_file(text, error):
    with pytest.raises(ModelCardError, match=f"x/README.md: .*{error}"):
        parse_card(text, "x/README.md")


def test_hub_base_model(tmp_path):
    assert hub_base_model("smollm2-135m-instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert hub_base_model("Qwen/Qwen2.5-0.5B") == "Qwen/Qwen2.5-0.5B"
    assert hub_base_model(str(tmp_path)) is None  # a local folder without a card or run config
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("model: smollm2-135m-instruct\n")
    assert hub_base_model(str(run)) == "HuggingFaceTB/SmolLM2-135M-Instruct"  # a run is followed to its base


def test_training_run_card_then_eval_results(tmp_path, tiny_model_dir):
    run_dir = _run(tmp_path, tiny_model_dir, "talr-run")
    metadata, body = read_card(run_dir / "model")
    # "talr" is both the library's tag and the method's
    assert metadata["library_name"] == "transformers" and metadata["tags"] == ["talr"]
    assert "base_model" not in metadata and "datasets" not in metadata  # a local base and a local JSONL file
    for fact in ("| learning rate | 0.002 |", "| steps | 2 |", "| seed | 3 |", f"| talr version | {__version__} |",
                 "loss: `talr`", "`train.jsonl` (JSONL)", "Not evaluated yet"):
        assert fact in body, fact

    (run_dir / "eval").mkdir()
    (run_dir / "eval" / "results.json").write_text(json.dumps({
        "results": {"gsm8k": {"alias": "gsm8k", "exact_match,flexible-extract": 0.125,
                              "exact_match_stderr,flexible-extract": 0.05}},
        "versions": {"gsm8k": 3.0}, "config": {"model": str(run_dir), "limit": 8, "dtype": "float32"},
        "date": "2026-11-27T18:00:00+00:00",
    }))
    write_run_cards(run_dir)
    _, body = read_card(run_dir / "model")
    assert "| gsm8k | 3.0 | exact_match | flexible-extract | 0.1250 | 0.0500 |" in body and "limit 8" in body


def test_lora_run_cards_and_wise_ft_average(tmp_path, tiny_model_dir):
    run_dir = _run(tmp_path, tiny_model_dir, "lora-run", loss="sft", adapter="lora")
    adapter_meta, adapter_body = read_card(run_dir / "model")
    merged_meta, _ = read_card(run_dir / "merged")
    assert adapter_meta["library_name"] == "peft" and "LoRA adapter" in adapter_body
    assert merged_meta["library_name"] == "transformers" and merged_meta["tags"] == ["talr", "sft", "lora"]

    sft_run = _run(tmp_path, tiny_model_dir, "sft-run", loss="sft")
    out = wise_ft(str(tiny_model_dir), str(sft_run), 0.25, tmp_path / "avg")
    metadata, body = read_card(out)
    assert metadata["tags"] == ["talr", "sft", "wise_ft"] and "| alpha | 0.25 |" in body


def test_averaging_run_model_card_says_wise_ft(tmp_path, tiny_model_dir):
    run_dir = _run(tmp_path, tiny_model_dir, "wise-run", loss="sft", averaging="wise_ft")
    metadata, body = read_card(run_dir / "model")
    assert metadata["tags"] == ["talr", "sft", "wise_ft"] and "WiSE-FT: 0.5 x base + 0.5 x trained" in body
    finetuned_meta, _ = read_card(run_dir / "finetuned")
    assert finetuned_meta["tags"] == ["talr", "sft", "wise_ft"]
