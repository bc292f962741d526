"""Token losses for SFT: per-token log-probabilities and the loss weightings talr trains with.

Every function here is pure torch on ``logp`` (log-probability of each target token) and ``mask`` (which positions
are supervised). All weightings are expressed as per-token weights; the trainer turns weights into one loss with a
single reduction (:func:`weighted_nll`), so a new weighting is one function.

:func:`sft_loss`, :func:`talr_loss` and :func:`dft_loss` are reference implementations of whole losses from full
``logp``: training never calls them (the trainer and ``talr.loss_head`` reduce the weights itself), tests and
benchmarks compare the engine against them.

TALR (Token-Adaptive Loss Reweighting, Lin et al. 2025) gives each supervised token the weight that solves

    min_{w in simplex}  sum_i w_i * l_i  +  tau * sum_i w_i * log w_i ,   l_i = -log p_theta(x_i),

whose exact minimiser is ``w = softmax(-l / tau)``, i.e. ``w_i ∝ p_theta(x_i) ** (1 / tau)``: hard (low-probability)
tokens get less weight and move the model less. Choices the paper leaves open, with the defaults used here:

The settings travel as one :class:`talr.config.TalrConfig` (the ``talr:`` config section, whose defaults are the only
place they are written):

* ``tau="median"``: the median token loss of the batch (``tau_scope="token"``) or the median of the per-sequence mean
  losses (``tau_scope="sequence"``). The median of an even count is the mean of the two middle values (numpy's
  convention). A dynamic tau is clamped below at ``tau_min`` so a batch the model already predicts perfectly does not
  divide by zero.
* ``w_min=0.01``: the paper floors the weights to keep hard tokens alive but does not publish the value. The floor is
  in mean-normalised units (a uniform weighting has every weight 1), applied before renormalising.
* The normalisation set is the supervised tokens of the batch the function is given (the trainer passes the whole
  optimizer step, talr.step_normalizer).
* ``normalization="simplex"``: the weights are the simplex minimiser above (:func:`talr_weights`); ``"none"`` is the
  other public implementation's choice (DiSC): ``max(p ** (1 / tau), w_min)`` unnormalised
  (:func:`unnormalized_talr_weights`; docs/methods.md).

``sft_loss``, ``talr_loss`` and ``dft_loss`` are reference implementations (one loss from ``logp`` and ``mask``) for
tests and benchmarks; training goes through the registered weightings (talr.methods) and :func:`weighted_nll`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from talr.config import TalrConfig

IGNORE_INDEX = -100
TAU_MIN = TalrConfig.tau_min  # the floor of a dynamic temperature (FLOW's median tau shares it)
HARD_TOKEN_PROB = 0.2  # a token is "hard" when the model gives it probability below this (the paper's threshold)
DEFAULT_TALR = TalrConfig()


def token_logprobs(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability of each next-token target, and the supervision mask.

    ``logits`` is ``[batch, seq, vocab]`` and ``labels`` ``[batch, seq]`` as a causal LM sees them (position t
    predicts label t+1). Returns ``(logp, mask)`` both ``[batch, seq - 1]``, computed in float32; ``logp`` is 0
    where ``mask`` is false. Raises ``FloatingPointError`` if a supervised token's log-probability is not finite
    (NaN or infinite logits).
    """
    if logits.shape[:-1] != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} disagree")
    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:]
    mask = shift_labels != ignore_index
    targets = shift_labels.masked_fill(~mask, 0)
    # cross_entropy keeps one float32 [N, vocab] buffer, unlike log_softmax followed by gather.
    nll = F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)), targets.reshape(-1), reduction="none"
    ).view_as(targets)
    logp = (-nll).masked_fill(~mask, 0.0)
    check_finite(logp, mask)
    return logp, mask


def check_finite(logp: torch.Tensor, mask: torch.Tensor) -> None:
    """Raise ``FloatingPointError`` if a supervised token's log-probability is not finite (one host sync)."""
    bad = (~torch.isfinite(logp.detach()) & mask).sum()
    if bool(bad):
        raise FloatingPointError(
            f"{int(bad)} of {int(mask.sum())} supervised tokens have a non-finite log-probability "
            "(NaN or infinite logits): the model has diverged or the input is corrupt."
        )


def _require_tokens(mask: torch.Tensor) -> torch.Tensor:
    """The number of supervised tokens, as a tensor on ``mask``'s device.

    An empty batch is an error where checking is free (CPU). On an accelerator the check would cost a host-device sync
    per micro-batch, so it is skipped there: talr's data pipeline drops examples with no supervised token, and an empty
    batch would show as a non-finite loss.
    """
    count = mask.sum()
    if mask.device.type == "cpu" and int(count) == 0:
        raise ValueError(
            "The batch has no supervised token (every label is -100). talr's data pipeline drops such examples; "
            "a batch made only of them means the data or the collator is wrong."
        )
    return count


def sft_loss(logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood over the supervised tokens (reference loss for tests and benchmarks)."""
    count = _require_tokens(mask)
    return -(logp * mask).sum() / count


def _masked_median(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Median of ``values`` where ``mask`` holds, without a host sync (no boolean indexing, no Python count): the
    unmasked entries sort last as +inf and the middle positions are gathered by a device-side index."""
    flat = values.reshape(-1)
    keep = mask.reshape(-1)
    ordered = flat.masked_fill(~keep, float("inf")).sort().values
    count = keep.sum()
    middle = torch.stack([(count - 1).clamp_min(0) // 2, count // 2]).clamp_max(flat.numel() - 1)
    return ordered.gather(0, middle).mean()


def talr_tau(logp: torch.Tensor, mask: torch.Tensor, settings: TalrConfig = DEFAULT_TALR) -> torch.Tensor:
    """The temperature of TALR's weights for this batch (a detached float32 scalar): ``settings.tau`` when fixed,
    else the median of the token losses (``tau_scope: token``) or of the per-sequence mean losses (``sequence``),
    clamped below at ``tau_min``."""
    tau, tau_scope = settings.tau, settings.tau_scope
    if tau != "median":
        if not isinstance(tau, (int, float)) or isinstance(tau, bool) or not tau > 0:
            raise ValueError(f"tau must be 'median' or a positive number, got {tau!r}")
        return torch.tensor(float(tau), device=logp.device)
    _require_tokens(mask)
    losses = -logp.detach().float()
    if tau_scope == "token":
        median = _masked_median(losses, mask)
    elif tau_scope == "sequence":
        counts = mask.sum(dim=-1)
        per_sequence = (losses * mask).sum(dim=-1) / counts.clamp_min(1)
        median = _masked_median(per_sequence, counts > 0)
    else:
        raise ValueError(f"tau_scope must be 'token' or 'sequence', got {tau_scope!r}")
    return median.clamp_min(settings.tau_min)


def talr_weights(logp: torch.Tensor, mask: torch.Tensor, settings: TalrConfig = DEFAULT_TALR) -> torch.Tensor:
    """TALR token weights on the simplex: detached, shaped like ``logp``, summing to 1, zero where ``mask`` is false.

    ``w = softmax(-l / tau)`` over the supervised tokens, then floored at ``w_min / N`` (``w_min`` in units where the
    mean weight is 1) and renormalised.
    """
    w_min = settings.w_min
    if w_min < 0:
        raise ValueError(f"w_min must be >= 0, got {w_min}")
    count = _require_tokens(mask)
    temperature = talr_tau(logp, mask, settings)
    # softmax(-l / tau) with l = -logp over the supervised tokens; masked ops rather than boolean indexing, which
    # would sync the host with an accelerator on every micro-batch
    scores = (logp.detach().float() / temperature).masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores.reshape(-1), dim=0).view_as(scores)
    if w_min > 0:
        weights = torch.where(mask, weights.clamp_min(w_min / count), 0.0)
        weights = weights / weights.sum()
    return weights.to(logp.dtype)


def unnormalized_talr_weights(logp: torch.Tensor, mask: torch.Tensor,
                              settings: TalrConfig = DEFAULT_TALR) -> torch.Tensor:
    """TALR's weights as the other public implementation computes them (``talr.normalization: none``; DiSC,
    ``talr_loss`` in shankarp8/distillation-retains-capabilities ``src/disc/objectives.py``, whose tau is
    ``tau_scope: sequence``): ``max(p ** (1 / tau), w_min)`` with no normaliser, so a weight is in (0, 1] and the
    mean weight below 1; ``w_min`` is an absolute floor. Detached, shaped like ``logp``, 0 where ``mask`` is false.
    With ``tau = 1`` and ``w_min = 0`` these are DFT's weights."""
    if settings.w_min < 0:
        raise ValueError(f"w_min must be >= 0, got {settings.w_min}")
    temperature = talr_tau(logp, mask, settings)
    weights = (logp.detach().float() / temperature).exp().clamp_min(settings.w_min)
    return torch.where(mask, weights, 0.0).to(logp.dtype)


def eaft_weights(normalized_entropy: torch.Tensor, mask: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """EAFT (Diao et al. 2026, arXiv 2601.02151): each token weighted by ``(H_topK / ln K) ** alpha``, the normalised
    entropy of the model's renormalised top-K next-token distribution
    (:func:`talr.token_statistics.topk_normalized_entropy`), detached; 0 where ``mask`` is false. ``alpha = 0``
    gives SFT's weights."""
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    return torch.where(mask, normalized_entropy.detach().float().pow(alpha), 0.0)


def weighted_nll(logp: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum_i w_i * l_i`` with the weights held fixed (no gradient flows through them)."""
    return -(weights.detach() * logp).sum()


def talr_loss(logp: torch.Tensor, mask: torch.Tensor, settings: TalrConfig = DEFAULT_TALR) -> torch.Tensor:
    """TALR loss ``sum_i w_i * l_i`` with simplex weights: on the same scale as the SFT mean, so learning rates are
    comparable between the two (uniform weights give exactly :func:`sft_loss`). Reference loss for tests and
    benchmarks."""
    return weighted_nll(logp, talr_weights(logp, mask, settings))


def dft_weights(logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """DFT (Wu et al. 2025; TRL's ``loss_type="dft"``): each token weighted by its own detached probability."""
    return logp.detach().exp() * mask


def dft_loss(logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``mean_i(p_i * l_i)`` over supervised tokens, ``p_i`` detached: TALR with tau = 1 and no normalisation.
    Reference loss for tests and benchmarks."""
    count = _require_tokens(mask)
    return weighted_nll(logp, dft_weights(logp, mask)) / count


def reference_kl(logits: torch.Tensor, ref_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-token ``KL(pi_ref || pi_theta) = sum_v q_v (log q_v - log p_v)`` over the full vocabulary, ``p`` the
    softmax of ``logits`` (the model being trained) and ``q`` of ``ref_logits`` (the frozen reference), both
    ``[batch, seq, vocab]`` as a causal LM outputs them; ``mask`` is ``[batch, seq - 1]`` as from
    :func:`token_logprobs`. Returns ``[batch, seq - 1]`` float32, 0 where ``mask`` is false; differentiable wrt
    ``logits`` (its gradient there is ``p - q``). Only the supervised positions are computed (ASFT, Zhu et al. 2025,
    sums the KL over the supervised tokens only)."""
    if logits.shape != ref_logits.shape or logits.shape[:2] != (mask.shape[0], mask.shape[1] + 1):
        raise ValueError(f"logits {tuple(logits.shape)}, reference logits {tuple(ref_logits.shape)} and mask "
                         f"{tuple(mask.shape)} disagree")
    seq, vocab = logits.shape[1], logits.shape[2]
    positions = mask.nonzero()
    rows = positions[:, 0] * seq + positions[:, 1]  # position t of the mask predicts with the logits at t
    log_p = F.log_softmax(logits.reshape(-1, vocab).index_select(0, rows).float(), dim=-1)
    log_q = F.log_softmax(ref_logits.detach().reshape(-1, vocab).index_select(0, rows).float(), dim=-1)
    kl = F.kl_div(log_p, log_q, reduction="none", log_target=True).sum(dim=-1)
    flat = mask.reshape(-1).nonzero().squeeze(1)
    return torch.zeros(mask.numel(), dtype=kl.dtype, device=kl.device).index_copy(0, flat, kl).view(mask.shape)


def effective_sample_fraction(weights: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Effective sample size of the weights as a fraction of the token count: ``1 / (N * sum_i w_i^2)`` with ``w``
    normalised to the simplex; 1 for uniform weights, 1/N when one token takes all the weight. A 0-d tensor on the
    weights' device (no host sync), in float32 or the weights' wider dtype."""
    count = _require_tokens(mask)
    w = weights.detach().to(torch.promote_types(weights.dtype, torch.float32)) * mask
    w = w / w.sum()
    return 1.0 / (count * (w * w).sum())
