import json
import math

import numpy as np
import pytest
import torch

from talr import flow
from talr.config import Config, config_from_dict
from talr.data.formats import CausalLMCollator, tokenize_examples
from talr.io import write_jsonl
from talr.losses import IGNORE_INDEX
from talr.methods.flow import FlowWeighting
from talr.models import load_model
from talr.reference_stats import sample_mean_losses, score_tokens
from talr.trainer import TalrTrainer, train, training_arguments


def _examples(n=12):
    return [{"messages": [{"role": "user", "content": f"What is {i} squared?"},
                          {"role": "assistant", "content": f"{i} squared is {i * i}." + " Indeed." * (i % 3)}]}
            for i in range(n)]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TALR_CACHE_DIR", str(tmp_path / "cache"))


def _config(tmp_path, model_dir, data_file, **extra):
    return config_from_dict({
        "model": str(model_dir), "output_dir": str(tmp_path / "run"), "method": "flow",
        "data": {"train": str(data_file), "max_length": 128},
        "flow": {"batch_size": 5},
        "training": {"learning_rate": 1e-2, "max_steps": 3, "per_device_batch_size": 4, "autocast": "none",
                     "warmup_ratio": 0.0, "lr_scheduler": "constant", "logging_steps": 1},
        **extra,
    })


@pytest.mark.parametrize("values", [[3.0, 1.0, 2.0], [0.5, 4.0, 1.5, 2.5], [7.0]])
def test_tau_is_the_median(values):
    assert flow.flow_tau(values) == pytest.approx(float(np.median(values)), abs=0)


def test_fixed_tau_and_floor():
    assert flow.flow_tau([1.0, 2.0], tau=0.3) == 0.3
    assert flow.flow_tau([0.0, 0.0, 0.0]) == pytest.approx(1e-3)
    with pytest.raises(ValueError):
        flow.flow_tau([1.0], tau=-1.0)


def test_a_sample_at_tau_weighs_exp_minus_one():
    sample_losses = [0.2, 1.3, 2.0, 5.0, 9.0]
    tau = flow.flow_tau(sample_losses)
    weights = flow.flow_weights(sample_losses, tau)
    assert tau == 2.0
    assert weights[2] == pytest.approx(math.exp(-1), rel=1e-12)
    assert weights == pytest.approx([math.exp(-f / 2.0) for f in sample_losses], rel=1e-12)
    assert weights == sorted(weights, reverse=True)  # easy samples weigh more


def test_scores_are_each_samples_mean_nll(tiny_model_dir):
    model, tokenizer = load_model(tiny_model_dir)
    features, _ = tokenize_examples(_examples(), tokenizer, 128)
    scores = sample_mean_losses(score_tokens(model, features, tokenizer.pad_token_id, batch_size=5))
    for feature, score in zip(features, scores):  # reference: one unpadded sequence at a time, float64
        ids = torch.tensor([feature["input_ids"]])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), dim=-1)
        targets = torch.tensor(feature["labels"][1:])
        supervised = targets != IGNORE_INDEX
        expected = -logp[supervised.nonzero()[:, 0], targets[supervised]].mean().item()
        assert score == pytest.approx(expected, rel=1e-5)


def test_loss_is_weighted_sum_over_supervised_tokens(tmp_path, tiny_model_dir):
    """sum_s w_s sum_t l_st / N, with the weight column carried through the collator into compute_loss."""
    config = _config(tmp_path, tiny_model_dir, tmp_path / "unused.jsonl")
    model, tokenizer = load_model(tiny_model_dir)
    features, _ = tokenize_examples(_examples(4), tokenizer, 128)
    for feature, weight in zip(features, [0.1, 1.0, 0.5, 2.0]):
        feature[flow.SAMPLE_WEIGHT] = weight
    batch = CausalLMCollator(tokenizer.pad_token_id, float_fields=(flow.SAMPLE_WEIGHT,))(features)
    assert batch[flow.SAMPLE_WEIGHT].tolist() == pytest.approx([0.1, 1.0, 0.5, 2.0])
    trainer = TalrTrainer(model=model, args=training_arguments(config, tmp_path / "run"), train_dataset=features,
                          data_collator=CausalLMCollator(tokenizer.pad_token_id), processing_class=tokenizer,
                          run_config=config)
    ours = trainer.compute_loss(model, dict(batch))
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    total, tokens = 0.0, 0
    for row, weight in enumerate([0.1, 1.0, 0.5, 2.0]):
        targets = batch["labels"][row, 1:]
        supervised = (targets != IGNORE_INDEX).nonzero()[:, 0]
        logp = torch.log_softmax(logits[row, :-1].double(), dim=-1)
        total += weight * -logp[supervised, targets[supervised]].sum().item()
        tokens += len(supervised)
    assert ours.item() == pytest.approx(total / tokens, rel=1e-5)


def test_missing_weight_column_is_a_clear_error(tiny_model_dir):
    logp, mask = torch.zeros(2, 3), torch.ones(2, 3, dtype=torch.bool)
    with pytest.raises(KeyError, match="sample_weight"):
        FlowWeighting(Config()).weights(logp, mask, {})


def test_second_run_reuses_the_cache_and_new_data_invalidates_it(tmp_path, tiny_model_dir, scoring_passes):
    calls = scoring_passes
    data_file = write_jsonl(_examples(), tmp_path / "train.jsonl")
    first = train(_config(tmp_path, tiny_model_dir, data_file))
    first_weights = json.loads((first / "flow_weights.json").read_text())
    assert len(calls) == 1 and len(list((tmp_path / "cache" / "reference").glob("*.safetensors"))) == 1

    second = train(_config(tmp_path, tiny_model_dir, data_file, output_dir=str(tmp_path / "run2")))
    assert len(calls) == 1  # no second scoring pass
    assert json.loads((second / "flow_weights.json").read_text())["samples"] == first_weights["samples"]

    changed = _examples()
    changed[3]["messages"][1]["content"] = "Nine."
    train(_config(tmp_path, tiny_model_dir, write_jsonl(changed, tmp_path / "changed.jsonl"),
                  output_dir=str(tmp_path / "run3")))
    assert len(calls) == 2
    train(_config(tmp_path, tiny_model_dir, data_file, output_dir=str(tmp_path / "run4"),
                  data={"train": str(data_file), "max_length": 64}))
    assert len(calls) == 3  # max_length is part of the key


def test_weights_in_the_run_follow_the_definition(tmp_path, tiny_model_dir):
    run_dir = train(_config(tmp_path, tiny_model_dir, write_jsonl(_examples(), tmp_path / "train.jsonl")))
    summary = json.loads((run_dir / "flow_weights.json").read_text())
    sample_losses = [s["loss"] for s in summary["samples"]]
    assert summary["tau"] == pytest.approx(float(np.median(sample_losses)), rel=1e-12)
    for sample in summary["samples"]:
        assert sample["weight"] == pytest.approx(math.exp(-sample["loss"] / summary["tau"]), rel=1e-12)
    assert (run_dir / "model" / "model.safetensors").is_file()
