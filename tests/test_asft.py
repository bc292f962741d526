"""ASFT (arXiv 2509.23753): DFT's loss plus alpha * KL(pi_ref || pi_theta) over the vocabulary, against float64, with
a frozen copy (full fine-tuning) or the adapter disabled (LoRA) as the reference; the fused head is refused."""

import copy

import numpy as np
import pytest
import torch

from talr.adapters import apply_lora
from talr.config import ConfigError, config_from_dict
from talr.data.formats import CausalLMCollator, tokenize_examples
from talr.losses import IGNORE_INDEX
from talr.methods.base import PreparedRun, build_weighting
from talr.models import load_model
from talr.trainer import TalrTrainer, training_arguments


def _config(tmp_path, **method):
    return config_from_dict({"method": "asft", "output_dir": str(tmp_path / "run"), "asft": {"alpha": 0.3},
                             "data": {"train": "unused.jsonl", "max_length": 96},
                             **({"method": {"loss": "asft", **method}} if method else {}),
                             "training": {"autocast": "none", "per_device_batch_size": 4, "loss_head": "reference"},
                             "lora": {"dropout": 0.0}})


def _examples(n=4):
    return [{"messages": [{"role": "user", "content": f"Spell {i}."},
                          {"role": "assistant", "content": f"{i} is " + "one " * (i + 1)}]} for i in range(n)]


def _float64_log_softmax(model, batch):
    with torch.no_grad():
        logits = copy.deepcopy(model).double()(input_ids=batch["input_ids"],
                                               attention_mask=batch["attention_mask"]).logits
    return torch.log_softmax(logits[:, :-1], dim=-1).numpy()


def _expected(trained, reference, batch, alpha):
    """mean over supervised tokens of p_i * l_i + alpha * sum_v q_v (log q_v - log p_v), in float64."""
    log_p, log_q = _float64_log_softmax(trained, batch), _float64_log_softmax(reference, batch)
    targets = batch["labels"][:, 1:].numpy()
    mask = targets != IGNORE_INDEX
    token_logp = np.take_along_axis(log_p, np.maximum(targets, 0)[..., None], axis=-1)[..., 0]
    kl = (np.exp(log_q) * (log_q - log_p)).sum(-1)
    return (np.exp(token_logp) * -token_logp + alpha * kl)[mask].sum() / mask.sum()


def _loss(tmp_path, tiny_model_dir, adapter):
    config = _config(tmp_path, **({"adapter": "lora"} if adapter else {}))
    model, tokenizer = load_model(tiny_model_dir)
    features, _ = tokenize_examples(_examples(), tokenizer, 96)
    weighting = build_weighting(config)
    weighting.prepare(PreparedRun(model, tokenizer, _examples(), features))
    base = copy.deepcopy(model)
    if adapter:
        model = apply_lora(model, config)
    torch.manual_seed(2)
    with torch.no_grad():  # move the trained weights (for LoRA: the adapter's) away from the reference
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    model.eval()
    collate = CausalLMCollator(tokenizer.pad_token_id)
    trainer = TalrTrainer(model=model, args=training_arguments(config, tmp_path / "run"), train_dataset=features,
                          data_collator=collate, processing_class=tokenizer, run_config=config, weighting=weighting)
    batch = collate(features)
    return trainer.compute_loss(model, dict(batch)).item(), _expected(model, base, batch, 0.3), weighting


def test_full_fine_tuning_anchors_to_a_frozen_copy(tmp_path, tiny_model_dir):
    ours, expected, weighting = _loss(tmp_path, tiny_model_dir, adapter=False)
    assert weighting.reference is not None and not any(p.requires_grad for p in weighting.reference.parameters())
    assert ours == pytest.approx(expected, rel=1e-5)


def test_lora_anchors_to_the_model_with_its_adapter_disabled(tmp_path, tiny_model_dir):
    ours, expected, weighting = _loss(tmp_path, tiny_model_dir, adapter=True)
    assert weighting.reference is None  # no second copy
    assert ours == pytest.approx(expected, rel=1e-5)


def test_the_fused_head_is_refused_by_name(tmp_path):
    config = config_from_dict({"method": "asft", "data": {"train": "unused.jsonl"},
                               "training": {"loss_head": "fused"}})
    with pytest.raises(ConfigError, match="training.loss_head: the asft loss reads the full logits"):
        build_weighting(config)
