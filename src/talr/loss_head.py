"""Chunked ("fused") language-model head: token log-probabilities and weighted NLL straight from hidden states.

The straightforward path (``logits = lm_head(h)`` then :func:`talr.losses.token_logprobs`) materialises a
``[tokens, vocab]`` tensor and its float32 upcast (~10 GB at 8 x 2048 tokens and a 152k vocabulary). The functions
here take the hidden states, the output projection and the labels, and walk the supervised tokens in chunks: at most
one chunk's ``[chunk, vocab]`` float32 logits exist at a time. Positions whose label is ignored never reach the head.

Two autograd functions, one per situation:

* :func:`fused_token_logprobs` (two-phase): the forward returns each token's log-probability and keeps only the
  log-sum-exp per token; the backward receives ``dL/dlogp_i`` (whatever weighting was applied on top, e.g. TALR's
  weights computed from *all* the log-probabilities) and recomputes each chunk's logits to form
  ``(onehot - softmax) * dL/dlogp_i``, accumulating the gradients of the hidden states and of the projection chunk by
  chunk. Cost: 4 vocab-sized matmuls (forward, recompute, grad_h, grad_W). When the projection gets no gradient
  (frozen head, e.g. LoRA) the forward also computes ``dlogp_i/dh_i`` (linear in the later scalar), so nothing is
  recomputed: 2 matmuls.
* :func:`fused_weighted_nll` (one-pass): when the per-token weights are known *before* the forward (SFT's uniform
  weights, or TALR weights from a pre-pass) the gradients are computed inside the forward (Liger-style) and only
  scaled in the backward: 3 matmuls (2 for a frozen head).

Both compute the logits in the autocast dtype when autocast is on (as ``lm_head`` would) and in the promoted dtype of
the inputs otherwise, do the softmax in float32, and accumulate the projection's gradient in float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from talr.losses import IGNORE_INDEX, check_finite

# Bytes of float32 logits per chunk. 64 MiB keeps the head's extra memory a small multiple of this (the logits, their
# gradient in the compute dtype, the float32 projection gradient) while chunks stay large enough for efficient
# matmuls (1365 tokens at a 49k vocabulary, 441 at 152k).
DEFAULT_CHUNK_BYTES = 64 * 2**20
MIN_CHUNK_TOKENS = 16


def default_chunk_size(vocab_size: int, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    return max(MIN_CHUNK_TOKENS, chunk_bytes // (4 * vocab_size))


def _compute_dtype(hidden: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    device_type = hidden.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return torch.promote_types(hidden.dtype, weight.dtype)


def _chunk_logits(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    return F.linear(h.to(dtype), w, b).float()


def _logits_to_grad_(logits: torch.Tensor, lse: torch.Tensor, targets: torch.Tensor, coef: torch.Tensor) -> None:
    """Turn a chunk's float32 logits, in place, into ``d(sum_i coef_i * logp_i)/dlogits = coef * (onehot - softmax)``."""
    logits.sub_(lse.unsqueeze(1)).exp_().mul_(-coef.unsqueeze(1))
    logits.scatter_add_(1, targets.unsqueeze(1), coef.unsqueeze(1))


class _HeadGradients:
    """Chunk-by-chunk accumulation of the gradients of hidden states, projection and bias."""

    def __init__(self, hidden, w, bias, need_h, need_w, need_b, dtype):
        self.w, self.dtype = w, dtype
        self.grad_h = torch.empty(hidden.shape, dtype=hidden.dtype, device=hidden.device) if need_h else None
        self.grad_w = torch.zeros(w.shape, dtype=torch.float32, device=w.device) if need_w else None
        self.grad_b = torch.zeros(bias.shape, dtype=torch.float32, device=w.device) if need_b else None

    def add(self, start: int, h: torch.Tensor, grad_logits: torch.Tensor) -> None:
        g = grad_logits.to(self.dtype)
        if self.grad_h is not None:
            self.grad_h[start : start + h.shape[0]] = g @ self.w
        if self.grad_w is not None:
            self.grad_w += g.T @ h.to(self.dtype)
        if self.grad_b is not None:
            self.grad_b += grad_logits.sum(0)


def _as_param_dtype(grad: torch.Tensor | None, like: torch.Tensor | None) -> torch.Tensor | None:
    return None if grad is None else grad.to(like.dtype)


class _TokenLogProbs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk_size):
        dtype = _compute_dtype(hidden, weight)
        device_type = hidden.device.type
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        with torch.autocast(device_type, enabled=False):
            w = weight.to(dtype)
            b = None if bias is None else bias.to(dtype)
            n = hidden.shape[0]
            logp = torch.empty(n, dtype=torch.float32, device=hidden.device)
            lse = torch.empty(n, dtype=torch.float32, device=hidden.device)
            # A frozen projection: dlogp_i/dh_i is all the backward needs, and it is linear in the later dL/dlogp_i.
            precompute = need_h and not need_w and not need_b
            grads = _HeadGradients(hidden, w, bias, need_h, False, False, dtype) if precompute else None
            ones = torch.ones(chunk_size, dtype=torch.float32, device=hidden.device)
            for start in range(0, n, chunk_size):
                h = hidden[start : start + chunk_size]
                t = targets[start : start + chunk_size]
                logits = _chunk_logits(h, w, b, dtype)
                chunk_lse = torch.logsumexp(logits, dim=1)
                lse[start : start + h.shape[0]] = chunk_lse
                logp[start : start + h.shape[0]] = logits.gather(1, t.unsqueeze(1)).squeeze(1) - chunk_lse
                if precompute:
                    _logits_to_grad_(logits, chunk_lse, t, ones[: h.shape[0]])
                    grads.add(start, h, logits)
                del logits
        ctx.dtype, ctx.chunk_size = dtype, chunk_size
        if precompute:
            ctx.save_for_backward(grads.grad_h)
            ctx.precomputed = True
        else:
            ctx.save_for_backward(hidden, weight, bias, targets, lse)
            ctx.precomputed = False
        return logp

    @staticmethod
    def backward(ctx, grad_logp):
        if ctx.precomputed:
            (dlogp_dh,) = ctx.saved_tensors
            return (grad_logp.unsqueeze(1) * dlogp_dh).to(dlogp_dh.dtype), None, None, None, None
        hidden, weight, bias, targets, lse = ctx.saved_tensors
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        dtype, chunk_size = ctx.dtype, ctx.chunk_size
        grad_logp = grad_logp.float()
        with torch.autocast(hidden.device.type, enabled=False):
            w = weight.to(dtype)
            b = None if bias is None else bias.to(dtype)
            grads = _HeadGradients(hidden, w, bias, need_h, need_w, need_b, dtype)
            for start in range(0, hidden.shape[0], chunk_size):
                h = hidden[start : start + chunk_size]
                end = start + h.shape[0]
                logits = _chunk_logits(h, w, b, dtype)
                _logits_to_grad_(logits, lse[start:end], targets[start:end], grad_logp[start:end])
                grads.add(start, h, logits)
                del logits
        return grads.grad_h, _as_param_dtype(grads.grad_w, weight), _as_param_dtype(grads.grad_b, bias), None, None


class _WeightedNLL(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, coef, chunk_size):
        dtype = _compute_dtype(hidden, weight)
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        with torch.autocast(hidden.device.type, enabled=False):
            w = weight.to(dtype)
            b = None if bias is None else bias.to(dtype)
            n = hidden.shape[0]
            logp = torch.empty(n, dtype=torch.float32, device=hidden.device)
            grads = _HeadGradients(hidden, w, bias, need_h, need_w, need_b, dtype)
            # The loss is -sum_i coef_i * logp_i, so its gradient wrt the logits is -coef * (onehot - softmax).
            neg_coef = -coef.float()
            for start in range(0, n, chunk_size):
                h = hidden[start : start + chunk_size]
                end = start + h.shape[0]
                t = targets[start:end]
                logits = _chunk_logits(h, w, b, dtype)
                chunk_lse = torch.logsumexp(logits, dim=1)
                logp[start:end] = logits.gather(1, t.unsqueeze(1)).squeeze(1) - chunk_lse
                if need_h or need_w or need_b:
                    _logits_to_grad_(logits, chunk_lse, t, neg_coef[start:end])
                    grads.add(start, h, logits)
                del logits
        loss = (neg_coef * logp).sum()
        ctx.save_for_backward(grads.grad_h, grads.grad_w, grads.grad_b)
        ctx.param_dtypes = (weight.dtype, None if bias is None else bias.dtype)
        ctx.mark_non_differentiable(logp)
        return loss, logp

    @staticmethod
    def backward(ctx, grad_loss, _grad_logp):
        grad_h, grad_w, grad_b = ctx.saved_tensors
        w_dtype, b_dtype = ctx.param_dtypes
        scale = grad_loss.float()
        out_h = None if grad_h is None else (grad_h * scale).to(grad_h.dtype)
        out_w = None if grad_w is None else (grad_w * scale).to(w_dtype)
        out_b = None if grad_b is None else (grad_b * scale).to(b_dtype)
        return out_h, out_w, out_b, None, None, None


def _supervised(hidden: torch.Tensor, labels: torch.Tensor, ignore_index: int):
    if hidden.shape[:-1] != labels.shape:
        raise ValueError(f"hidden states {tuple(hidden.shape)} and labels {tuple(labels.shape)} disagree")
    shift_labels = labels[:, 1:]
    mask = shift_labels != ignore_index
    return hidden[:, :-1][mask], shift_labels[mask], mask


def _scatter(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.zeros(mask.shape, dtype=values.dtype, device=values.device).masked_scatter(mask, values)


def fused_token_logprobs(
    hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, bias: torch.Tensor | None = None,
    ignore_index: int = IGNORE_INDEX, chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop-in for :func:`talr.losses.token_logprobs` taking the head's input instead of its output.

    ``hidden`` is ``[batch, seq, hidden]`` (the final hidden states a causal LM feeds its ``lm_head``), ``weight``
    ``[vocab, hidden]`` and ``bias`` ``[vocab]`` the projection, ``labels`` ``[batch, seq]``. Returns
    ``(logp, mask)``, both ``[batch, seq - 1]``, ``logp`` float32 and differentiable wrt ``hidden``, ``weight`` and
    ``bias``; any weighting may be applied to ``logp`` afterwards.
    """
    h, targets, mask = _supervised(hidden, labels, ignore_index)
    chunk = chunk_size or default_chunk_size(weight.shape[0])
    logp = _scatter(_TokenLogProbs.apply(h, weight, bias, targets, chunk), mask)
    check_finite(logp, mask)
    return logp, mask


def fused_weighted_nll(
    hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, token_weights: torch.Tensor,
    bias: torch.Tensor | None = None, ignore_index: int = IGNORE_INDEX, chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``-sum_i w_i * logp_i`` for per-token weights known before the forward (detached ``[batch, seq - 1]``, as
    :func:`talr.losses.weighted_nll` takes them). Returns ``(loss, logp, mask)``; ``logp`` is detached (for
    logging). The gradients are computed during this call and only scaled by the backward.
    """
    h, targets, mask = _supervised(hidden, labels, ignore_index)
    if token_weights.shape != mask.shape:
        raise ValueError(f"token weights {tuple(token_weights.shape)} do not match the labels' {tuple(mask.shape)}")
    chunk = chunk_size or default_chunk_size(weight.shape[0])
    loss, logp_sel = _WeightedNLL.apply(h, weight, bias, targets, token_weights.detach()[mask], chunk)
    logp = _scatter(logp_sel, mask)
    check_finite(logp, mask)
    return loss, logp, mask


def linear_head(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The output projection ``(weight, bias)`` of a causal LM whose logits are exactly ``linear(h, weight, bias)``.

    Raises ``ValueError`` naming the reason when the head is something else (a LoRA-wrapped ``lm_head``, logit
    soft-capping or scaling); callers then keep the straightforward path.
    """
    head = model.get_output_embeddings()
    if not isinstance(head, nn.Linear):
        raise ValueError(f"the output layer is a {type(head).__name__}, not a plain nn.Linear")
    config = getattr(model, "config", None)
    for key, neutral in (("final_logit_softcapping", None), ("logit_scale", None), ("logits_scaling", 1.0)):
        value = getattr(config, key, neutral)
        if value is not None and value != neutral:
            raise ValueError(f"the model post-processes its logits (config.{key}={value})")
    return head.weight, head.bias
