"""Weights from the frozen base model (``weights_from: base``, presets talr_base and dft_base; PriFT arXiv
2606.09396): float64 references on hand-made log-probabilities, the trainer's loss on a moved model, the step-exact
normalisation without a pre-pass, and one scoring pass per sweep."""

import copy

import numpy as np
import pytest
import torch
import yaml

from talr.config import config_from_dict
from talr.data.formats import CausalLMCollator, tokenize_examples
from talr.io import write_jsonl
from talr.losses import IGNORE_INDEX
from talr.methods.base import PreparedRun, build_weighting
from talr.models import load_model
from talr.paths import data_dir
from talr.reference_stats import REFERENCE_LOGP
from talr.trainer import TalrTrainer, training_arguments


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TALR_CACHE_DIR", str(tmp_path / "cache"))


def _config(method, tmp_path, **extra):
    return config_from_dict({"method": method, "output_dir": str(tmp_path / "run"),
                             "data": {"train": "unused.jsonl", "max_length": 96},
                             "training": {"autocast": "none", "per_device_batch_size": 4}, **extra})


# Hand-made: two sequences of 4 predicted tokens; the trained model's log-probabilities differ from the base's.
BASE = np.array([[-0.1, -2.0, -0.7, 0.0], [-3.0, -0.2, -1.1, -0.5]])
CURRENT = np.array([[-1.5, -0.3, -0.2, 0.0], [-0.1, -2.2, -0.4, -0.9]])
MASK = np.array([[True, True, True, False], [True, True, True, True]])


def _hand_made(config):
    weighting = build_weighting(config)
    side = {REFERENCE_LOGP: torch.tensor(np.pad(BASE, ((0, 0), (1, 0))), dtype=torch.float32)}  # label-aligned
    mask = torch.tensor(MASK)
    logp = torch.tensor(CURRENT, dtype=torch.float32)
    return weighting.weights(weighting.weights_logp(logp, mask, side), mask, side).double().numpy()


def test_dft_base_weights_are_the_base_probabilities(tmp_path):
    np.testing.assert_allclose(_hand_made(_config("dft_base", tmp_path)), np.exp(BASE) * MASK, rtol=1e-6)
    # and DFT proper (weights_from: current) weighs by the trained model's
    np.testing.assert_allclose(_hand_made(_config("dft", tmp_path)), np.exp(CURRENT) * MASK, rtol=1e-6)


def test_talr_base_weights_follow_the_formula_on_the_base_probabilities(tmp_path):
    """w = N * renormalise(max(softmax(log p_base / tau), w_min / N)), tau = median base token loss (float64)."""
    losses64 = -BASE[MASK]
    tau = np.median(losses64)
    simplex = np.exp(-losses64 / tau) / np.exp(-losses64 / tau).sum()
    simplex = np.maximum(simplex, 0.01 / len(losses64))
    expected = np.zeros_like(BASE)
    expected[MASK] = simplex / simplex.sum() * len(losses64)
    np.testing.assert_allclose(_hand_made(_config("talr_base", tmp_path)), expected, rtol=1e-6)
    assert not np.allclose(_hand_made(_config("talr", tmp_path)), expected, rtol=1e-3)


def _examples(n=8):
    return [{"messages": [{"role": "user", "content": f"Count to {i}."},
                          {"role": "assistant", "content": " ".join(str(k) for k in range(i + 2))}]}
            for i in range(n)]


def _float64_logp(model, batch):
    with torch.no_grad():
        logits = copy.deepcopy(model).double()(input_ids=batch["input_ids"],
                                               attention_mask=batch["attention_mask"]).logits
    targets = batch["labels"][:, 1:]
    mask = targets != IGNORE_INDEX
    logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(2, targets.clamp_min(0)[..., None])[..., 0]
    return logp.masked_fill(~mask, 0.0).numpy(), mask.numpy()


@pytest.mark.parametrize("method", ["dft_base", "talr_base"])
def test_trainer_loss_uses_the_cached_base_logprobs_after_the_model_moved(tmp_path, tiny_model_dir, method):
    config = _config(method, tmp_path)
    model, tokenizer = load_model(tiny_model_dir)
    examples = _examples()
    features, _ = tokenize_examples(examples, tokenizer, 96)
    weighting = build_weighting(config)
    weighting.prepare(PreparedRun(model, tokenizer, examples, features))
    base = copy.deepcopy(model)
    torch.manual_seed(1)
    with torch.no_grad():  # the trained model has moved away from the base
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    collate = CausalLMCollator(tokenizer.pad_token_id, float_fields=weighting.side_inputs)
    trainer = TalrTrainer(model=model, args=training_arguments(config, tmp_path / "run"), train_dataset=features,
                          data_collator=collate, processing_class=tokenizer, run_config=config, weighting=weighting)
    batch = collate(features[:4])
    ours = trainer.compute_loss(model, dict(batch)).item()

    current, mask = _float64_logp(model, batch)
    base_logp, _ = _float64_logp(base, batch)
    if method == "dft_base":
        weights = np.exp(base_logp) * mask
    else:
        losses64 = -base_logp[mask]
        simplex = np.exp(-losses64 / np.median(losses64))
        simplex = np.maximum(simplex / simplex.sum(), 0.01 / mask.sum())
        weights = np.zeros_like(base_logp)
        weights[mask] = simplex / simplex.sum() * mask.sum()
    assert ours == pytest.approx(-(weights * current).sum() / mask.sum(), rel=1e-5)


def test_step_weights_from_the_base_need_no_pre_pass(tmp_path, tiny_model_dir, monkeypatch):
    """With gradient accumulation, talr_base's step-exact weights come from the side inputs: the trainer's
    pre-pass over the trained model does not run, and they equal the weights over the stacked step."""
    config = _config("talr_base", tmp_path, training={"autocast": "none", "per_device_batch_size": 2,
                                                      "gradient_accumulation_steps": 2})
    model, tokenizer = load_model(tiny_model_dir)
    examples = _examples()
    features, _ = tokenize_examples(examples, tokenizer, 96)
    weighting = build_weighting(config)
    weighting.prepare(PreparedRun(model, tokenizer, examples, features))
    collate = CausalLMCollator(tokenizer.pad_token_id, float_fields=weighting.side_inputs)
    trainer = TalrTrainer(model=model, args=training_arguments(config, tmp_path / "run"), train_dataset=features,
                          data_collator=collate, processing_class=tokenizer, run_config=config, weighting=weighting)
    monkeypatch.setattr(trainer.head, "logprobs", lambda *a, **k: pytest.fail("a forward pre-pass ran"))
    micro = [collate(features[:2]), collate(features[2:4])]
    trainer._attach_step_weights(micro)
    whole = collate(features[:4])
    mask = whole["labels"][:, 1:] != IGNORE_INDEX
    expected = weighting.weights(weighting.weights_logp(None, mask, whole), mask, {})
    for k, batch in enumerate(micro):
        got = batch["talr_step_weights"]
        np.testing.assert_allclose(got.numpy(), expected[2 * k:2 * k + 2, :got.shape[1]].numpy(), rtol=1e-6)


needs_data = pytest.mark.skipif(not (data_dir() / "alpaca").is_dir(), reason="benchmark data folder not found")


@needs_data
def test_a_sweep_scores_the_base_model_once(tmp_path, tiny_model_dir, scoring_passes):
    """Two grid points with base-model weights (talr_base, dft_base) on the same data: one scoring pass, the second
    point reads the disk cache."""
    from talr.sweep import load_sweep_config, run_sweep
    examples = [{"prompt": f"Double {i}.", "completion": f"{2 * i}"} for i in range(16)]
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({
        "name": "base", "out_dir": str(tmp_path / "sweeps"),
        "grid": {"methods": ["talr_base", "dft_base"], "learning_rates": [1e-3], "seeds": [0]},
        "eval": {"domain": ["codelength_medcalc"], "general": ["codelength_alpaca"], "limit": 2, "batch_size": 4},
        "wise_ft": {"alphas": []},
        "train": {"model": str(tiny_model_dir), "data": {"train": str(write_jsonl(examples, tmp_path / "t.jsonl")),
                                                         "max_length": 32},
                  "training": {"max_steps": 2, "per_device_batch_size": 4, "autocast": "none"},
                  "probes": {"enabled": False}},
    }))
    root = run_sweep(load_sweep_config(path))
    assert sorted(p.name for p in (root / "runs").iterdir()) == ["dft_base_lr0.001_seed0", "talr_base_lr0.001_seed0"]
    assert len(scoring_passes) == 1
    assert len(list((tmp_path / "cache" / "reference").glob("*.safetensors"))) == 1
