"""Per-token statistics of the next-token distribution (EAFT's top-K entropy) and the weights built on them, against
float64 references computed independently with numpy, through both loss heads."""

import functools
import math

import numpy as np
import pytest
import torch

from talr import losses
from talr.loss_head import CausalLMHead, fused_token_logprobs
from talr.models import load_model
from talr.token_statistics import statistics_of_logits, topk_normalized_entropy

VOCAB = 50


def _numpy_eaft_weights(logits: np.ndarray, labels: np.ndarray, k: int, alpha: float) -> np.ndarray:
    """The paper's weight, one row at a time: (H of the renormalised top-K distribution / ln K) ** alpha."""
    weights = np.zeros(labels[:, 1:].shape)
    for b in range(labels.shape[0]):
        for t in range(labels.shape[1] - 1):
            if labels[b, t + 1] == -100:
                continue
            top = np.sort(logits[b, t])[::-1][:k]
            q = np.exp(top - top.max())
            q /= q.sum()
            entropy = -(q * np.log(q)).sum()
            weights[b, t] = (entropy / math.log(k)) ** alpha
    return weights


def _hand_made_logits(batch=3, seq=9, seed=0):
    """Random logits with a few hand-set rows: one confident (low entropy), one flat (entropy ln K), one tie."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, seq, VOCAB, generator=gen, dtype=torch.float64) * 3
    logits[0, 4] = 0.0
    logits[0, 4, 7] = 25.0  # confident: almost all mass on one token
    logits[1, 2] = 0.0  # flat: every top-K renormalised probability 1/K
    logits[2, 1, :2] = 40.0  # two tied leaders far above the rest: entropy ln 2
    labels = torch.randint(0, VOCAB, (batch, seq), generator=gen)
    labels[0, :3] = -100  # a prompt
    labels[2, 7:] = -100  # padding
    return logits, labels


@pytest.mark.parametrize("k, alpha", [(20, 1.0), (20, 0.5), (5, 2.0)])
def test_eaft_weights_equal_the_papers_formula(k, alpha):
    logits, labels = _hand_made_logits()
    _, mask = losses.token_logprobs(logits, labels)
    stats = statistics_of_logits(logits, labels, {"h": functools.partial(topk_normalized_entropy, k=k)})
    weights = losses.eaft_weights(stats["h"], mask, alpha)
    expected = _numpy_eaft_weights(logits.numpy(), labels.numpy(), k, alpha)
    np.testing.assert_allclose(weights.double().numpy(), expected, rtol=1e-5, atol=1e-6)
    assert weights[1, 2].item() == pytest.approx(1.0, abs=1e-6)  # the flat row
    assert weights[0, 4].item() < 1e-2  # the confident row
    assert weights[2, 1].item() == pytest.approx((math.log(2) / math.log(k)) ** alpha, rel=1e-5)


def test_eaft_with_alpha_zero_is_sft():
    logits, labels = _hand_made_logits()
    _, mask = losses.token_logprobs(logits, labels)
    stats = statistics_of_logits(logits, labels, {"h": functools.partial(topk_normalized_entropy, k=20)})
    assert torch.equal(losses.eaft_weights(stats["h"], mask, alpha=0.0), mask.float())


def test_topk_entropy_rejects_k_it_cannot_normalise():
    logits = torch.randn(4, VOCAB)
    for bad in (1, VOCAB + 1):
        with pytest.raises(ValueError, match="k"):
            topk_normalized_entropy(logits, bad)


def _inputs(batch=3, seq=23, hidden=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    h = torch.randn(batch, seq, hidden, generator=gen).requires_grad_()
    w = torch.randn(VOCAB, hidden, generator=gen).requires_grad_()
    labels = torch.randint(0, VOCAB, (batch, seq), generator=gen)
    labels[0, :6] = -100
    labels[2, 15:] = -100
    return h, w, labels


@pytest.mark.parametrize("path", ["two_phase", "frozen_head", "no_grad"])
def test_fused_head_statistics_equal_the_float64_reference(path):
    h, w, labels = _inputs()
    if path == "frozen_head":
        w.requires_grad_(False)
    statistics = {"h": functools.partial(topk_normalized_entropy, k=20)}
    expected = _numpy_eaft_weights((h.double() @ w.double().T).detach().numpy(), labels.numpy(), 20, 1.0)
    with torch.set_grad_enabled(path != "no_grad"):
        # a chunk of 7 does not divide the 47 supervised tokens: the last chunk is short
        logp, mask, stats = fused_token_logprobs(h, w, labels, chunk_size=7, statistics=statistics)
    weights = losses.eaft_weights(stats["h"], mask, 1.0)
    np.testing.assert_allclose(weights.double().numpy(), expected, rtol=1e-4, atol=1e-5)
    assert not stats["h"].requires_grad and logp.requires_grad == (path != "no_grad")
    if path != "no_grad":  # the statistics ride along; the log-probabilities still backpropagate
        (-(weights * logp).sum()).backward()
        assert h.grad is not None and torch.isfinite(h.grad).all()


def test_a_statistic_that_is_not_row_wise_names_the_setting():
    h, w, labels = _inputs()
    with pytest.raises(ValueError, match="training.loss_head"):
        fused_token_logprobs(h, w, labels, chunk_size=7, statistics={"bad": lambda logits: logits.mean()})


def test_both_heads_hand_the_same_statistics_on_a_model(tiny_model_dir):
    model, tokenizer = load_model(tiny_model_dir)
    texts = ["Hello there, general.", "The answer is 42."]
    ids = [tokenizer(t)["input_ids"] for t in texts]
    length = max(map(len, ids))
    input_ids = torch.full((2, length), tokenizer.pad_token_id)
    labels = torch.full((2, length), -100)
    for i, row in enumerate(ids):
        input_ids[i, : len(row)] = torch.tensor(row)
        labels[i, 2 : len(row)] = torch.tensor(row[2:])
    inputs = {"input_ids": input_ids, "attention_mask": (labels != -100) | (input_ids != tokenizer.pad_token_id)}
    statistics = {"h": functools.partial(topk_normalized_entropy, k=20)}
    fused = CausalLMHead(model, fused=True, chunk_size=5)
    reference = CausalLMHead(model, fused=False)
    assert fused.fused and not reference.fused
    _, mask_f, stats_f = fused.logprobs(model, inputs, labels, statistics=statistics)
    _, mask_r, stats_r = reference.logprobs(model, inputs, labels, statistics=statistics)
    assert torch.equal(mask_f, mask_r) and mask_f.any()
    torch.testing.assert_close(stats_f["h"], stats_r["h"], rtol=1e-5, atol=1e-6)
    assert torch.all(stats_f["h"][~mask_f] == 0)
