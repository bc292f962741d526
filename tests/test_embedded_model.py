"""The real embedded SmolLM2-135M-Instruct (slow: the first load converts the GGUF file, ~30 s)."""

import json

import pytest
import torch

from talr.config import apply_overrides, config_from_dict
from talr.io import write_jsonl
from talr.models import load_model
from talr.trainer import train

pytestmark = pytest.mark.slow


def test_embedded_model_loads_and_answers():
    model, tokenizer = load_model("smollm2-135m-instruct")
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.vocab_size == 49152
    assert 134e6 < sum(p.numel() for p in model.parameters()) < 135e6
    messages = [{"role": "user", "content": "Tom has 3 apples and buys 5 more. How many apples does he have?"}]
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=30, do_sample=False)
    assert "8" in tokenizer.decode(out[0, inputs["input_ids"].shape[1]:])


def test_talr_trains_the_embedded_model(tmp_path):
    examples = [{"prompt": f"What is {a} times {b}?", "completion": f"{a} times {b} is {a * b}."}
                for a in range(3, 7) for b in range(4, 6)]
    config = config_from_dict({
        "output_dir": str(tmp_path / "run"), "method": "talr",
        "data": {"train": str(write_jsonl(examples, tmp_path / "d.jsonl")), "max_length": 64},
        "training": {"learning_rate": 1e-4, "max_steps": 6, "logging_steps": 1, "per_device_batch_size": 4,
                     "warmup_ratio": 0.0, "lr_scheduler": "constant", "save_model": False},
    })
    run_dir = train(config)
    # TALR's objective is the weighted loss: on 8 examples it falls while the unweighted NLL may rise (the weights
    # concentrate on tokens the model already finds easy), so the check is on the objective, averaged over both batches.
    loss = [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines() if '"nll"' in line]
    assert sum(loss[-2:]) < sum(loss[:2])



@pytest.mark.parametrize("method, adapter, lr", [("talr_base", "full", 1e-4), ("dft_base", "full", 1e-4),
                                                 ("asft", "full", 1e-4), ("asft", "lora", 1e-3)])
def test_frozen_base_methods_lower_their_own_objective(tmp_path, monkeypatch, method, adapter, lr):
    """One batch, three steps: the objective each method descends falls. With base-model weights that is the logged
    weighted loss (its weights are fixed). ASFT's token term p_i * l_i with p_i detached has the gradient of -p_i,
    so what it descends is -mean(p) + alpha * mean(KL); its logged loss moves with the detached weights and may rise
    while the model fits (p_i * l_i peaks at p_i = 1/e)."""
    from talr import reference_stats

    # a fresh reference cache, but the converted embedded model from the usual cache (no second de-quantisation)
    monkeypatch.setattr(reference_stats, "cache_path", lambda key: tmp_path / "reference" / f"{key}.safetensors")
    examples = [{"prompt": f"What is {a} plus {b}?", "completion": f"{a} plus {b} is {a + b}."}
                for a in range(2, 6) for b in range(3, 5)]
    raw = {
        "output_dir": str(tmp_path / "run"), "method": method,
        "data": {"train": str(write_jsonl(examples, tmp_path / "d.jsonl")), "max_length": 48},
        "training": {"learning_rate": lr, "max_steps": 3, "logging_steps": 1, "per_device_batch_size": 8,
                     "warmup_ratio": 0.0, "lr_scheduler": "constant", "save_model": False},
        "probes": {"enabled": False, "general": None, "domain_size": 0},
    }
    run_dir = train(config_from_dict(apply_overrides(raw, [f"method.adapter={adapter}"])))
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if '"nll"' in line]
    objective = [-r["mean_token_prob"] + r["auxiliary_loss"] if method == "asft" else r["loss"] for r in rows]
    assert len(objective) == 3 and objective[-1] < objective[0]
