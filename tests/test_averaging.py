import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from talr import averaging
from talr.averaging import AveragingError, wise_ft, wise_ft_grid
from talr.cli import main
from talr.models import load_model
from talr.testing import make_tiny_model


@pytest.fixture(scope="module")
def finetuned_dir(tmp_path_factory):
    """Stands in for a fine-tuned checkpoint: same architecture as tiny_model_dir, other weights."""
    return make_tiny_model(tmp_path_factory.mktemp("finetuned"), seed=1)


def _weights(folder):
    return load_file(folder / "model.safetensors")


def test_alpha_zero_is_the_base_and_one_the_finetuned_exactly(tmp_path, tiny_model_dir, finetuned_dir):
    base, tuned = _weights(tiny_model_dir), _weights(finetuned_dir)
    zero = _weights(wise_ft(tiny_model_dir, finetuned_dir, 0.0, tmp_path / "a0"))
    one = _weights(wise_ft(tiny_model_dir, finetuned_dir, 1.0, tmp_path / "a1"))
    assert set(zero) == set(base) == set(one)
    for name in base:
        assert torch.equal(zero[name], base[name]), name
        assert torch.equal(one[name], tuned[name]), name


def test_intermediate_alpha_interpolates_and_loads(tmp_path, tiny_model_dir, finetuned_dir):
    out = wise_ft(tiny_model_dir, finetuned_dir, 0.3, tmp_path / "a03")
    base, tuned, mixed = _weights(tiny_model_dir), _weights(finetuned_dir), _weights(out)
    for name in base:
        expected = 0.7 * base[name].double() + 0.3 * tuned[name].double()
        torch.testing.assert_close(mixed[name].double(), expected, rtol=1e-6, atol=1e-7)
    model, tokenizer = load_model(out)  # a loadable model folder with the fine-tuned side's tokenizer
    assert tokenizer.chat_template and model.config.vocab_size == 259
    record = json.loads((out / averaging.RECORD).read_text())
    assert record["alpha"] == 0.3 and record["finetuned"] == str(finetuned_dir)


def test_sharded_output_equals_single_file(tmp_path, tiny_model_dir, finetuned_dir):
    single = _weights(wise_ft(tiny_model_dir, finetuned_dir, 0.5, tmp_path / "single"))
    sharded = wise_ft(tiny_model_dir, finetuned_dir, 0.5, tmp_path / "sharded", shard_bytes=20_000)
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 2 and not (sharded / "model.safetensors").exists()
    merged = {k: v for shard in shards for k, v in load_file(sharded / shard).items()}
    assert merged.keys() == single.keys() and all(torch.equal(merged[k], single[k]) for k in single)
    # and a sharded checkpoint is a valid input too
    again = _weights(wise_ft(tiny_model_dir, sharded, 1.0, tmp_path / "from_sharded"))
    assert all(torch.equal(again[k], single[k]) for k in single)
    load_model(sharded)


def test_output_keeps_the_finetuned_dtype(tmp_path, tiny_model_dir):
    model, tokenizer = load_model(tiny_model_dir)
    bf16 = tmp_path / "bf16"
    model.to(torch.bfloat16).save_pretrained(bf16)
    tokenizer.save_pretrained(bf16)
    out = _weights(wise_ft(tiny_model_dir, bf16, 1.0, tmp_path / "out"))
    assert all(t.dtype == torch.bfloat16 for t in out.values())


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan"), True])
def test_alpha_outside_the_unit_interval_is_an_error(tmp_path, tiny_model_dir, finetuned_dir, alpha):
    with pytest.raises(AveragingError, match="alpha must be a number in"):
        wise_ft(tiny_model_dir, finetuned_dir, alpha, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_shape_mismatch_names_the_tensor(tmp_path, tiny_model_dir):
    wider = make_tiny_model(tmp_path / "wider", hidden_size=48)
    with pytest.raises(AveragingError, match=r"tensor 'model\.[a-z_.0-9]+' has shape"):
        wise_ft(tiny_model_dir, wider, 0.5, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))


def test_missing_tensor_and_other_architecture_are_errors(tmp_path, tiny_model_dir):
    deeper = make_tiny_model(tmp_path / "deeper", layers=3)
    with pytest.raises(AveragingError, match=r"tensor 'model\.layers\.2\..*' is in the fine-tuned"):
        wise_ft(tiny_model_dir, deeper, 0.5, tmp_path / "out")
    other = tmp_path / "other"
    shutil.copytree(tiny_model_dir, other)
    config = json.loads((other / "config.json").read_text())
    config.update(model_type="mistral", architectures=["MistralForCausalLM"])
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(AveragingError, match="same architecture"):
        wise_ft(tiny_model_dir, other, 0.5, tmp_path / "out")


def test_existing_output_is_kept_unless_overwrite(tmp_path, tiny_model_dir, finetuned_dir):
    out = wise_ft(tiny_model_dir, finetuned_dir, 0.5, tmp_path / "out")
    with pytest.raises(FileExistsError):
        wise_ft(tiny_model_dir, finetuned_dir, 0.2, out)
    wise_ft(tiny_model_dir, finetuned_dir, 0.2, out, overwrite=True)
    assert json.loads((out / averaging.RECORD).read_text())["alpha"] == 0.2


def _random_adapter(base_dir, out):
    from peft import LoraConfig, get_peft_model

    model, _ = load_model(base_dir)
    torch.manual_seed(3)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                                  init_lora_weights=False))  # B != 0: a non-trivial update
    peft_model.save_pretrained(out)
    config = json.loads((out / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(base_dir)
    (out / "adapter_config.json").write_text(json.dumps(config))
    return out


@pytest.mark.parametrize("alpha", [0.0, 0.35, 1.0])
def test_lora_path_equals_interpolating_merged_weights(tmp_path, tiny_model_dir, alpha):
    adapter = _random_adapter(tiny_model_dir, tmp_path / "adapter")
    full, _ = load_model(adapter)  # base + adapter, merged
    merged_dir = tmp_path / "merged"
    full.save_pretrained(merged_dir)
    out = wise_ft(tiny_model_dir, adapter, alpha, tmp_path / "lora_avg")
    reference = _weights(wise_ft(tiny_model_dir, merged_dir, alpha, tmp_path / "full_avg"))
    ours = _weights(out)
    assert ours.keys() == reference.keys()
    for name in reference:
        torch.testing.assert_close(ours[name], reference[name], rtol=1e-5, atol=1e-6)
    assert load_model(out)[1].chat_template  # tokenizer came along (from the adapter's base)


def test_grid_writes_one_folder_per_alpha_and_resumes(tmp_path, tiny_model_dir, finetuned_dir, monkeypatch):
    folders = wise_ft_grid(tiny_model_dir, finetuned_dir, [0.0, 0.5, 1.0], tmp_path / "grid")
    assert [f.name for f in folders] == ["alpha_0", "alpha_0.5", "alpha_1"]
    assert torch.equal(_weights(folders[0])["model.norm.weight"], _weights(tiny_model_dir)["model.norm.weight"])

    def fail(*args, **kwargs):
        raise AssertionError("recomputed a finished average")

    monkeypatch.setattr(averaging, "wise_ft", fail)
    assert wise_ft_grid(tiny_model_dir, finetuned_dir, [0.5, 1.0], tmp_path / "grid") == folders[1:]
    with pytest.raises(AveragingError):
        wise_ft_grid(tiny_model_dir, finetuned_dir, [0.5, 2.0], tmp_path / "grid")


def test_cli_average(tmp_path, tiny_model_dir, finetuned_dir, capsys):
    out = tmp_path / "cli"
    assert main(["average", "--base", str(tiny_model_dir), "--finetuned", str(finetuned_dir), "--alpha", "0.5",
                 "--out", str(out)]) == 0
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    assert main(["average", "--base", str(tiny_model_dir), "--finetuned", str(finetuned_dir), "--alpha", "1.2",
                 "--out", str(tmp_path / "bad")]) == 2
    assert "alpha must be a number in [0, 1], got 1.2" in capsys.readouterr().err
    assert main(["average", "--base", str(tiny_model_dir), "--finetuned", str(finetuned_dir), "--alpha", "0.5",
                 "--out", str(out)]) == 2  # exists
    assert main(["average", "--base", str(tiny_model_dir), "--finetuned", str(finetuned_dir), "--alpha", "0.2",
                 "0.8", "--out", str(tmp_path / "grid")]) == 0
    assert (tmp_path / "grid" / "alpha_0.8" / "model.safetensors").is_file()


def test_wise_ft_preset_trains_then_averages_the_run(tmp_path, tiny_model_dir):
    from talr.config import config_from_dict
    from talr.io import write_jsonl
    from talr.trainer import train

    data = write_jsonl([{"prompt": f"Say {i}.", "completion": f"{i}."} for i in range(8)], tmp_path / "d.jsonl")
    run_dir = train(config_from_dict({
        "model": str(tiny_model_dir), "output_dir": str(tmp_path / "run"), "method": "wise_ft",
        "wise_ft": {"alpha": 0.25}, "data": {"train": str(data), "max_length": 64},
        "training": {"learning_rate": 1e-2, "max_steps": 2, "autocast": "none", "logging_steps": 1},
    }))
    base, tuned, final = _weights(tiny_model_dir), _weights(run_dir / "finetuned"), _weights(run_dir / "model")
    for name in base:
        torch.testing.assert_close(final[name], torch.lerp(base[name], tuned[name], 0.25))
    assert not torch.equal(tuned["model.norm.weight"], base["model.norm.weight"])
    # averaging the run again starts from what training produced, not from the average
    again = _weights(wise_ft(tiny_model_dir, run_dir, 1.0, tmp_path / "again"))
    assert all(torch.equal(again[k], tuned[k]) for k in tuned)


def test_unreachable_hub_model_is_a_clear_error(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)  # read at call time; no network in tests
    from talr.models import ModelNotFoundError  # talr.models names what was tried, before any download

    with pytest.raises(ModelNotFoundError, match="'no-such-org/no-such-model' not found; tried: .*HF_HUB_OFFLINE"):
        wise_ft("no-such-org/no-such-model", tiny_model_dir, 0.5, tmp_path / "out")
