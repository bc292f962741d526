import json

import pytest
import torch

from talr.config import config_from_dict
from talr.data.formats import CausalLMCollator, tokenize_examples
from talr.io import write_jsonl
from talr.models import load_model
from talr.trainer import train


def _examples(n=16):
    return [{"prompt": f"Triple {i}.", "completion": f"It is {3 * i}."} for i in range(n)]


def _config(tmp_path, model_dir, method="lora", **extra):
    data_file = write_jsonl(_examples(), tmp_path / "train.jsonl")
    return config_from_dict({
        "model": str(model_dir), "output_dir": str(tmp_path / "run"), "method": method,
        "data": {"train": str(data_file), "max_length": 64},
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
        "training": {"learning_rate": 1e-2, "max_steps": 6, "per_device_batch_size": 4, "autocast": "none",
                     "warmup_ratio": 0.0, "lr_scheduler": "constant", "logging_steps": 3},
        **extra,
    })


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_model_dir):
    tmp_path = tmp_path_factory.mktemp("lora")
    return train(_config(tmp_path, tiny_model_dir))


def test_only_adapter_parameters_change(lora_run, tiny_model_dir):
    from peft import PeftModel

    base, _ = load_model(tiny_model_dir)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    peft_model = PeftModel.from_pretrained(base, lora_run / "model")
    lora_b = {k: v for k, v in peft_model.state_dict().items() if "lora_B" in k}
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b.values())  # B starts at zero: the adapter trained
    base_weights = {k.replace("base_model.model.", "").replace(".base_layer", ""): v
                    for k, v in peft_model.state_dict().items() if "lora_" not in k}
    assert set(base_weights) == set(before)
    for name, tensor in before.items():
        assert torch.equal(base_weights[name], tensor), name


def test_run_directory_holds_adapter_and_merged_model(lora_run, tiny_model_dir):
    adapter = json.loads((lora_run / "model" / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and adapter["lora_alpha"] == 8
    assert adapter["base_model_name_or_path"] == str(tiny_model_dir.resolve())
    assert (lora_run / "model" / "adapter_model.safetensors").is_file()
    assert not (lora_run / "model" / "model.safetensors").exists()
    assert (lora_run / "merged" / "model.safetensors").is_file()
    assert (lora_run / "merged" / "tokenizer_config.json").is_file()


def test_merged_model_output_equals_adapter_output(lora_run, tiny_model_dir):
    from peft import PeftModel

    base, tokenizer = load_model(tiny_model_dir)
    peft_model = PeftModel.from_pretrained(base, lora_run / "model").eval()
    merged, _ = load_model(lora_run / "merged")
    via_run_dir, _ = load_model(lora_run)  # the run's model/ is the adapter; load_model merges it
    features, _ = tokenize_examples(_examples(4), tokenizer, 64)
    batch = CausalLMCollator(tokenizer.pad_token_id)(features)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with torch.no_grad():
        reference = peft_model(**inputs).logits
        assert not torch.allclose(reference, load_model(tiny_model_dir)[0](**inputs).logits, atol=1e-3)
        torch.testing.assert_close(merged.eval()(**inputs).logits, reference, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(via_run_dir.eval()(**inputs).logits, reference, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", ["talr", "dft", "flow"])
def test_lora_composes_with_every_loss_weighting(tmp_path, tiny_model_dir, method, monkeypatch):
    monkeypatch.setenv("TALR_CACHE_DIR", str(tmp_path / "cache"))
    config = _config(tmp_path, tiny_model_dir, method={"loss": method, "adapter": "lora"},
                     training={"learning_rate": 1e-2, "max_steps": 2, "autocast": "none", "save_model": True,
                               "logging_steps": 1})
    config.lora.save_merged = False
    run_dir = train(config)
    assert (run_dir / "model" / "adapter_model.safetensors").is_file() and not (run_dir / "merged").exists()
    steps = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor(s["loss"])) for s in steps if "loss" in s)
