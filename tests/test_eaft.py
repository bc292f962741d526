"""EAFT in training: TalrTrainer's loss through either head equals the paper's formula computed independently from
full float64 logits; the plain-Trainer hook computes the same; TRL's fused head, which cannot see the logits,
refuses it; and per-token statistics reach batch-scope weightings over the whole optimizer step."""

import math

import numpy as np
import pytest
import torch

from talr.config import config_from_dict
from talr.data.formats import CausalLMCollator, tokenize_examples
from talr.methods.base import TokenWeighting
from talr.models import load_model
from talr.step_normalizer import step_token_weights
from talr.trainer import TalrTrainer, training_arguments

K = 20


def _examples():
    return [{"messages": [{"role": "user", "content": f"Add {i} and {i * 7 + 1}."},
                          {"role": "assistant", "content": f"The answer is {i * 8 + 1}." + " Yes!" * (i % 3)}]}
            for i in range(4)]


def _setup(model_dir, tmp_path, loss_head, alpha=1.0):
    config = config_from_dict({
        "model": str(model_dir), "output_dir": str(tmp_path / "run"), "method": "eaft",
        "eaft": {"alpha": alpha, "k": K}, "data": {"train": "unused.jsonl"},
        "training": {"max_steps": 1, "autocast": "none", "loss_head": loss_head, "per_device_batch_size": 4},
    })
    model, tokenizer = load_model(model_dir)
    with torch.no_grad():  # a random tiny model predicts nearly uniformly; sharper logits spread the entropies
        model.get_output_embeddings().weight.mul_(30)
    features, _ = tokenize_examples(_examples(), tokenizer, 128)
    trainer = TalrTrainer(model=model, args=training_arguments(config, tmp_path / "run"), train_dataset=features,
                          data_collator=CausalLMCollator(tokenizer.pad_token_id), processing_class=tokenizer,
                          run_config=config)
    batch = CausalLMCollator(tokenizer.pad_token_id)(features)
    return trainer, {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "labels")}


def _numpy_eaft_loss(logits: np.ndarray, labels: np.ndarray, alpha: float) -> float:
    """sum_t (H_topK(t) / ln K) ** alpha * l_t / (supervised tokens), one position at a time in float64."""
    total, count = 0.0, 0
    for b in range(labels.shape[0]):
        for t in range(labels.shape[1] - 1):
            target = labels[b, t + 1]
            if target == -100:
                continue
            row = logits[b, t]
            log_softmax = row - row.max() - np.log(np.exp(row - row.max()).sum())
            top = np.sort(row)[::-1][:K]
            q = np.exp(top - top.max())
            q /= q.sum()
            weight = (-(q * np.log(q)).sum() / math.log(K)) ** alpha
            total += weight * -log_softmax[target]
            count += 1
    return total / count


@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_trainer_loss_is_the_papers_formula_through_both_heads(tiny_model_dir, tmp_path, alpha):
    results = {}
    for loss_head in ("fused", "reference"):
        trainer, batch = _setup(tiny_model_dir, tmp_path / loss_head, loss_head, alpha)
        assert trainer.head.fused == (loss_head == "fused")
        model = trainer.model
        model.train()
        model.zero_grad()
        loss = trainer.compute_loss(model, dict(batch))
        loss.backward()
        results[loss_head] = (loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()
                                              if p.grad is not None})
        with torch.no_grad():
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        expected = _numpy_eaft_loss(logits.double().numpy(), batch["labels"].numpy(), alpha)
        assert loss.item() == pytest.approx(expected, rel=1e-4)  # float32 training path vs float64
    (fused_loss, fused_grads), (ref_loss, ref_grads) = results["fused"], results["reference"]
    torch.testing.assert_close(fused_loss, ref_loss, rtol=1e-5, atol=1e-6)
    for name, grad in ref_grads.items():
        torch.testing.assert_close(fused_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_the_plain_trainer_hook_computes_the_same_loss(tiny_model_dir, tmp_path):
    from talr.integrations.hf_trainer import TokenWeightedLoss

    trainer, batch = _setup(tiny_model_dir, tmp_path, "fused")
    trainer.model.train()
    expected = trainer.compute_loss(trainer.model, dict(batch))
    labels = batch["labels"]
    outputs = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    hook = TokenWeightedLoss(trainer.run_config)
    torch.testing.assert_close(hook(outputs, labels), expected, rtol=1e-5, atol=1e-6)


def test_trl_refuses_eaft_instead_of_training_plain_cross_entropy(tiny_model_dir, tmp_path):
    pytest.importorskip("trl")
    from datasets import Dataset
    from trl import SFTConfig

    from talr.integrations.trl import TalrSFTTrainer

    model, tokenizer = load_model(tiny_model_dir)
    features, _ = tokenize_examples(_examples(), tokenizer, 128)
    rows = [{"input_ids": f["input_ids"], "labels": f["labels"]} for f in features]
    args = SFTConfig(output_dir=str(tmp_path), bf16=False, use_cpu=True, report_to="none",
                     dataset_kwargs={"skip_prepare_dataset": True})
    with pytest.raises(ValueError, match="eaft_topk_entropy.*TRL's fused head does not return"):
        TalrSFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                       talr="eaft")


class _ShareOfStatistic(TokenWeighting):
    """A batch-scope weighting of a statistic: each token's share of the step's total, times the token count."""

    scope = "batch"
    token_statistics = {"s": lambda logits: logits.max(dim=-1).values}

    def weights(self, logp, mask, side):
        values = side["s"] * mask
        return values / values.sum() * mask.sum()


def test_statistics_are_gathered_over_the_step_like_the_log_probabilities():
    gen = torch.Generator().manual_seed(0)
    logp = -torch.rand(4, 6, generator=gen)
    stat = torch.rand(4, 6, generator=gen)
    mask = torch.rand(4, 6, generator=gen) > 0.2
    weighting = _ShareOfStatistic(config=None)
    (whole,) = step_token_weights(weighting, [logp], [mask], statistics=[{"s": stat}])
    halves = step_token_weights(weighting, [logp[:2], logp[2:, :4]], [mask[:2], mask[2:, :4]],
                                statistics=[{"s": stat[:2]}, {"s": stat[2:, :4]}])
    expected = stat * mask
    expected = expected / expected.sum() * mask.sum()
    torch.testing.assert_close(whole, expected)
    # the second micro-batch is narrower: its weights are those of the same tokens in a step holding both
    trimmed = torch.cat([mask[:2], torch.nn.functional.pad(mask[2:, :4], (0, 2))])
    reference = stat * trimmed
    reference = reference / reference.sum() * trimmed.sum()
    torch.testing.assert_close(halves[0], reference[:2])
    torch.testing.assert_close(halves[1], reference[2:, :4])
