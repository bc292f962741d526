import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from talr.config import TalrConfig
from talr.losses import (
    dft_loss,
    effective_sample_fraction,
    reference_kl,
    sft_loss,
    talr_loss,
    talr_tau,
    talr_weights,
    token_logprobs,
)


def _batch(seed=0, batch=3, seq=7, vocab=11):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, seq, vocab, generator=gen, dtype=torch.float64) * 2
    labels = torch.randint(0, vocab, (batch, seq), generator=gen)
    labels[0, :3] = -100  # a prompt
    labels[2, 5:] = -100  # padding
    return logits, labels


def test_token_logprobs_matches_float64_log_softmax():
    logits, labels = _batch()
    logp, mask = token_logprobs(logits, labels)
    ref = torch.log_softmax(logits.double(), dim=-1)
    for b in range(labels.shape[0]):
        for t in range(labels.shape[1] - 1):
            target = int(labels[b, t + 1])
            assert bool(mask[b, t]) == (target != -100)
            expected = ref[b, t, target].item() if target != -100 else 0.0
            assert logp[b, t].item() == pytest.approx(expected, abs=1e-5)


def test_sft_loss_is_mean_nll():
    logits, labels = _batch()
    logp, mask = token_logprobs(logits, labels)
    ref = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.size(-1)).double(), labels[:, 1:].reshape(-1), ignore_index=-100
    )
    assert sft_loss(logp, mask).item() == pytest.approx(ref.item(), rel=1e-6)


def _simplex_minimiser(losses: np.ndarray, tau: float) -> np.ndarray:
    """Generic constrained solver on the entropy-regularised objective (independent of the closed form)."""
    n = len(losses)

    def objective(w):
        w = np.clip(w, 1e-300, None)
        return float(w @ losses + tau * (w * np.log(w)).sum())

    result = minimize(
        objective,
        np.full(n, 1.0 / n),
        method="SLSQP",
        bounds=[(0.0, 1.0)] * n,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0}],
        options={"ftol": 1e-15, "maxiter": 1000},
    )
    assert result.success, result.message
    return result.x


@pytest.mark.parametrize("tau", ["median", 0.7, 2.5])
def test_talr_weights_solve_the_entropy_regularised_problem(tau):
    logits, labels = _batch(seed=1)
    logp, mask = token_logprobs(logits, labels)
    weights = talr_weights(logp, mask, TalrConfig(tau=tau, w_min=0.0))
    losses = (-logp[mask]).double().numpy()
    tau_value = float(np.median(losses)) if tau == "median" else tau
    expected = _simplex_minimiser(losses, tau_value)
    np.testing.assert_allclose(weights[mask].double().numpy(), expected, atol=2e-5)
    assert weights[mask].sum().item() == pytest.approx(1.0, abs=1e-6)


def test_masked_tokens_weigh_zero():
    logits, labels = _batch(seed=2)
    logp, mask = token_logprobs(logits, labels)
    weights = talr_weights(logp, mask)
    assert torch.all(weights[~mask] == 0)
    assert torch.all(weights[mask] > 0)


def test_tau_scopes_equal_the_numpy_median():
    logits, labels = _batch(seed=3, batch=4)
    logp, mask = token_logprobs(logits, labels)
    losses = (-logp).double().numpy()
    m = mask.numpy()
    assert talr_tau(logp, mask, TalrConfig(tau_scope="token")).item() == pytest.approx(np.median(losses[m]), rel=1e-6)
    per_sequence = [losses[b][m[b]].mean() for b in range(len(m)) if m[b].any()]
    assert talr_tau(logp, mask, TalrConfig(tau_scope="sequence")).item() == pytest.approx(np.median(per_sequence), rel=1e-6)


def test_dynamic_tau_is_clamped_and_fixed_tau_validated():
    logp = torch.zeros(1, 4)  # every token predicted with probability 1: median loss 0
    mask = torch.ones(1, 4, dtype=torch.bool)
    assert talr_tau(logp, mask, TalrConfig(tau_min=1e-3)).item() == pytest.approx(1e-3)
    for bad in (0.0, -1.0, "mean"):
        with pytest.raises(ValueError, match="tau"):
            talr_tau(logp, mask, TalrConfig(tau=bad))


def test_floor_is_in_mean_normalised_units():
    logp = torch.tensor([[0.0, -0.1, -30.0, -40.0]])  # two tokens the model finds hopeless
    mask = torch.ones_like(logp, dtype=torch.bool)
    w_min = 0.05
    weights = talr_weights(logp, mask, TalrConfig(tau=1.0, w_min=w_min))
    raw = torch.softmax(logp[0].double(), 0).clamp_min(w_min / 4)
    expected = raw / raw.sum()
    torch.testing.assert_close(weights[0].double(), expected, rtol=1e-6, atol=1e-9)
    assert (weights[0] * 4).min().item() >= w_min * 0.9  # hard tokens keep about w_min of a uniform share


def test_talr_gradient_is_weighted_sum_of_token_gradients():
    logits, labels = _batch(seed=4)
    logits = logits.clone().requires_grad_(True)
    logp, mask = token_logprobs(logits, labels)
    loss = talr_loss(logp, mask)
    (autograd,) = torch.autograd.grad(loss, logits, retain_graph=True)

    weights = talr_weights(logp, mask)
    reference = torch.zeros_like(logits)
    for b, t in mask.nonzero().tolist():  # gradient of each token loss on its own, weights held fixed
        (g,) = torch.autograd.grad(-logp[b, t], logits, retain_graph=True)
        reference += weights[b, t] * g
    torch.testing.assert_close(autograd, reference, rtol=1e-6, atol=1e-9)


def test_uniform_limit_recovers_sft():
    logits, labels = _batch(seed=5)
    logp, mask = token_logprobs(logits, labels)
    assert talr_loss(logp, mask, TalrConfig(tau=1e9, w_min=0.0)).item() == pytest.approx(sft_loss(logp, mask).item(), rel=1e-6)


def test_dft_loss_is_probability_weighted_mean():
    logits, labels = _batch(seed=6)
    logp, mask = token_logprobs(logits, labels)
    p = logp[mask].exp()
    expected = (p * -logp[mask]).mean()
    assert dft_loss(logp, mask).item() == pytest.approx(expected.item(), rel=1e-6)


def test_effective_sample_fraction():
    mask = torch.ones(1, 4, dtype=torch.bool)
    assert effective_sample_fraction(torch.full((1, 4), 0.25), mask) == pytest.approx(1.0)
    assert effective_sample_fraction(torch.tensor([[1.0, 0, 0, 0]]), mask) == pytest.approx(0.25)
    weights = torch.tensor([[0.1, 0.2, 0.3, 0.4]], dtype=torch.float64)  # float64 in, float64 out (talr advise)
    ess = effective_sample_fraction(weights, mask)
    assert ess.dtype == torch.float64
    assert float(ess) == pytest.approx(1 / (4 * ((weights / weights.sum()) ** 2).sum().item()), rel=1e-15)


def test_empty_batch_raises():
    logp = torch.zeros(2, 3)
    mask = torch.zeros(2, 3, dtype=torch.bool)
    for fn in (sft_loss, talr_loss, dft_loss):
        with pytest.raises(ValueError, match="no supervised token"):
            fn(logp, mask)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_logits_raise(bad):
    logits, labels = _batch(seed=7)
    logits[1, 2, :] = bad
    with pytest.raises(FloatingPointError, match="non-finite"):
        token_logprobs(logits, labels)


def _log_softmax64(x):
    x = np.asarray(x, dtype=np.float64)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def test_reference_kl_matches_float64_on_hand_made_logits():
    """KL(pi_ref || pi_theta) per supervised token, the direction of ASFT's F.kl_div(log_softmax(policy),
    softmax(ref)), against numpy float64; its gradient wrt the trained logits is p - q."""
    logits = torch.tensor([[[2.0, 0.5, -1.0, 0.0], [0.1, 0.2, 0.3, 0.4], [5.0, -5.0, 0.0, 1.0]],
                           [[-1.0, 3.0, 0.5, 0.5], [0.0, 0.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0]]],
                          requires_grad=True)
    ref = torch.tensor([[[1.0, 1.0, -1.0, 0.0], [0.4, 0.3, 0.2, 0.1], [0.0, 0.0, 0.0, 9.0]],
                        [[-1.0, 3.0, 0.5, 0.5], [2.0, -2.0, 0.0, 1.0], [7.0, 2.0, 3.0, 4.0]]])
    mask = torch.tensor([[True, False], [True, True]])
    kl = reference_kl(logits, ref, mask)
    log_p, log_q = _log_softmax64(logits.detach().numpy()), _log_softmax64(ref.numpy())
    expected = (np.exp(log_q) * (log_q - log_p)).sum(-1)[:, :2] * mask.numpy()
    assert kl.dtype == torch.float32 and kl.shape == (2, 2)
    np.testing.assert_allclose(kl.detach().numpy(), expected, rtol=1e-6, atol=1e-7)
    assert float(kl.detach()[1, 0]) == pytest.approx(0.0, abs=1e-7)  # identical distributions
    assert float(kl.detach()[0, 1]) == 0.0  # unsupervised position
    kl.sum().backward()
    grad = np.zeros((2, 3, 4))
    for b, t in [(0, 0), (1, 0), (1, 1)]:
        grad[b, t] = np.exp(log_p[b, t]) - np.exp(log_q[b, t])
    np.testing.assert_allclose(logits.grad.numpy(), grad, rtol=1e-5, atol=1e-7)
