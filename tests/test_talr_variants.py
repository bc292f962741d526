"""TALR's open choices: DiSC's unnormalised weights against an independent float64 computation of its formula, and
the limit where TALR is DFT."""

import numpy as np
import pytest
import torch

from talr import losses
from talr.config import TalrConfig


def _hand_made(seed=0, batch=3, seq=8, vocab=13):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, seq, vocab, generator=gen, dtype=torch.float64) * 2
    logits[1, 3, 0] = -30.0  # a hopeless target: its weight sits on the floor
    labels = torch.randint(1, vocab, (batch, seq), generator=gen)
    labels[1, 4] = 0
    labels[0, :3] = -100  # a prompt
    labels[2, 6:] = -100  # padding
    return logits, labels


def _numpy_disc_weights(logits: np.ndarray, labels: np.ndarray, floor: float) -> np.ndarray:
    """DiSC's talr_loss weights: tau = median over sequences of their mean NLL, w = max(p ** (1 / tau), floor)."""
    shifted = logits[:, :-1]
    log_softmax = shifted - np.log(np.exp(shifted - shifted.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - shifted.max(-1, keepdims=True)
    targets = labels[:, 1:]
    valid = targets != -100
    logp = np.take_along_axis(log_softmax, np.where(valid, targets, 0)[..., None], -1)[..., 0]
    per_sequence = [(-logp[b][valid[b]]).mean() for b in range(len(valid))]
    tau = float(np.median(per_sequence))
    return np.where(valid, np.maximum(np.exp(logp) ** (1.0 / tau), floor), 0.0)


def test_unnormalized_weights_equal_discs_formula():
    logits, labels = _hand_made()
    logp, mask = losses.token_logprobs(logits, labels)
    disc = TalrConfig(tau="median", tau_scope="sequence", w_min=0.01, normalization="none")
    weights = losses.unnormalized_talr_weights(logp, mask, disc)
    expected = _numpy_disc_weights(logits.numpy(), labels.numpy(), 0.01)
    np.testing.assert_allclose(weights.double().numpy(), expected, rtol=1e-5, atol=1e-7)
    assert weights[1, 3].item() == pytest.approx(0.01)  # the hopeless target is floored, absolutely
    assert weights[mask].max() <= 1.0 and weights[mask].mean() < 1.0  # no normaliser: the mean weight is below 1


def test_tau_one_without_normalisation_is_dft():
    logits, labels = _hand_made(seed=1)
    logp, mask = losses.token_logprobs(logits, labels)
    weights = losses.unnormalized_talr_weights(logp, mask, TalrConfig(tau=1.0, w_min=0.0, normalization="none"))
    torch.testing.assert_close(weights, losses.dft_weights(logp, mask), rtol=1e-6, atol=0.0)
    # and the losses the trainer's reduction makes of them: sum_i w_i l_i / N
    tokens = mask.sum()
    assert (losses.weighted_nll(logp, weights) / tokens).item() == pytest.approx(
        losses.dft_loss(logp, mask).item(), rel=1e-6)
