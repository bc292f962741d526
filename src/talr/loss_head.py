"""Chunked ("fused") language-model head: token log-probabilities and weighted NLL straight from hidden states.

The straightforward path (``logits = lm_head(h)`` then :func:`talr.losses.token_logprobs`) materialises a
``[tokens, vocab]`` tensor and its float32 upcast (~10 GB at 8 x 2048 tokens and a 152k vocabulary). The functions
here take the hidden states, the output projection and the labels, and walk the supervised tokens in chunks: at most
one chunk's ``[chunk, vocab]`` float32 logits exist at a time. Positions whose label is ignored never reach the head.

(~420 lines: two autograd functions that share the chunk walk, the kept-softmax cache and the per-token statistics;
they are one mechanism and change together.)

Two autograd functions, one per situation:

* :func:`fused_token_logprobs` (two-phase): the forward returns each token's log-probability and keeps only its
  log-sum-exp; the backward receives ``dL/dlogp_i`` (whatever weighting was applied on top, e.g. TALR's weights
  computed from *all* the log-probabilities) and recomputes each chunk's logits to form
  ``(onehot - softmax) * dL/dlogp_i``, accumulating the gradients of the hidden states and of the projection chunk by
  chunk. Cost: 4 vocab-sized matmuls (forward, recompute, grad_h, grad_W). When the projection gets no gradient
  (frozen head, e.g. LoRA) the forward also computes ``dlogp_i/dh_i``, which the later scalar only scales, so nothing
  is recomputed: 2 matmuls.
* :func:`fused_weighted_nll` (one-pass): when the per-token weights are known *before* the forward (SFT's uniform
  weights, TALR's weights from a pre-pass) the gradients are computed inside the forward (Liger-style) and only
  scaled by the backward: 3 matmuls (2 for a frozen head).

A weighting that needs more than each token's log-probability (EAFT: the entropy of the top-K next-token
distribution) names row-wise functions of the logits (:mod:`talr.token_statistics`); :func:`fused_token_logprobs`
evaluates them on each chunk's logits, without gradient, before the chunk is turned into its softmax.

Both compute the logits in the autocast dtype when autocast is on (as ``lm_head`` would) and otherwise in the promoted
dtype of the inputs, do the log-sum-exp and softmax in float32, and accumulate the projection's gradient in float32.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from talr.losses import IGNORE_INDEX, check_finite, token_logprobs
from talr.token_statistics import TokenStatistic, check_statistic, statistics_of_logits

logger = logging.getLogger(__name__)

# Bytes of float32 logits per chunk (341 tokens at a 49k vocabulary, 110 at 152k). The head's extra memory is a small
# multiple of this (the logits, their gradient in the compute dtype) plus the float32 projection gradient. Larger
# chunks are ~10% faster on CPU (1024 vs 341 tokens at 49k) but 4x the memory; see docs/performance.md.
DEFAULT_CHUNK_BYTES = 64 * 2**20
# On a GPU small chunks leave the matmuls launch-bound (measured on an H200, docs/benchmarks/gpu_h200.md: 341-token
# chunks made a chunked cross-entropy 2x slower than full logits), so a chunk there holds up to 1 GiB of float32
# logits, but at most an eighth of the tokens, which keeps the head's memory a small fraction of the full logits'.
CUDA_CHUNK_BYTES = 2**30
CUDA_MIN_CHUNKS = 8
# The two-phase head keeps every chunk's float32 softmax (unnormalised) between forward and backward when it fits
# this budget (then its backward needs no logit recomputation: plain cross-entropy's cost) and recomputes it otherwise
# (one more [tokens, vocab] matmul, bounded memory). 256 MiB holds 1,365 tokens at a 49k vocabulary (e.g. 4 x 256
# supervised tokens) and 441 at 152k; 0 always recomputes. See docs/performance.md.
DEFAULT_CACHE_BYTES = 256 * 2**20
MIN_CHUNK_TOKENS = 16


def default_chunk_size(vocab_size: int, chunk_bytes: int = DEFAULT_CHUNK_BYTES, tokens: int | None = None,
                       device: torch.device | None = None) -> int:
    """Tokens per chunk: ``chunk_bytes`` of float32 logits on CPU; on CUDA, :data:`CUDA_CHUNK_BYTES` but at most
    ``tokens / CUDA_MIN_CHUNKS`` (see there)."""
    if device is not None and device.type == "cuda":
        by_bytes = CUDA_CHUNK_BYTES // (4 * vocab_size)
        return max(MIN_CHUNK_TOKENS, min(by_bytes, -(-(tokens or by_bytes) // CUDA_MIN_CHUNKS)))
    return max(MIN_CHUNK_TOKENS, chunk_bytes // (4 * vocab_size))


def _compute_dtype(hidden: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    device_type = hidden.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return torch.promote_types(hidden.dtype, weight.dtype)


class _Head:
    """The projection cast once to the compute dtype, and chunk-by-chunk gradient accumulation."""

    def __init__(self, hidden, weight, bias, need_h=False, need_w=False, need_b=False, dtype=None):
        self.dtype = dtype or _compute_dtype(hidden, weight)
        self.w = weight.to(self.dtype)
        self.b = None if bias is None else bias.to(self.dtype)
        self.grad_h = torch.empty(hidden.shape, dtype=hidden.dtype, device=hidden.device) if need_h else None
        self.grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        self.grad_b = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device) if need_b else None

    @property
    def needs_grad(self) -> bool:
        return self.grad_h is not None or self.grad_w is not None or self.grad_b is not None

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return F.linear(h.to(self.dtype), self.w, self.b).float()

    def add_grad(self, start: int, h: torch.Tensor, grad_logits: torch.Tensor) -> None:
        g = grad_logits.to(self.dtype)
        if self.grad_h is not None:
            self.grad_h[start : start + h.shape[0]] = g @ self.w
        if self.grad_w is not None:
            if self.grad_w.dtype == g.dtype:
                self.grad_w.addmm_(g.T, h.to(self.dtype))  # no [vocab, hidden] temporary per chunk
            else:
                self.grad_w += g.T @ h.to(self.dtype)
        if self.grad_b is not None:
            self.grad_b += grad_logits.sum(0)

    def param_grads(self, weight, bias):
        gw = None if self.grad_w is None else self.grad_w.to(weight.dtype)  # no copy for float32 parameters
        gb = None if self.grad_b is None else self.grad_b.to(bias.dtype)
        return gw, gb


def _exps_to_grad_(exps: torch.Tensor, targets: torch.Tensor, coef: torch.Tensor,
                   sums: torch.Tensor | None = None) -> torch.Tensor:
    """Turn a chunk's float32 ``exps`` (row-shifted exponentials of its logits, ``sums`` their row sums; ``sums``
    None when ``exps`` is already the softmax), in place, into ``d(sum_i coef_i * logp_i)/dlogits``, i.e.
    ``coef * (onehot - softmax)``: one pass over the chunk, the normalisation folded into the scale."""
    scale = coef if sums is None else coef / sums
    return exps.mul_(-scale.unsqueeze(1)).scatter_add_(1, targets.unsqueeze(1), coef.unsqueeze(1))


def _forward_chunks(head: _Head, hidden, targets, chunk_size, coef=None, keep_exps: list | None = None,
                    statistics: Mapping[str, TokenStatistic] | None = None):
    """Token log-probabilities, log-sum-exps and the requested per-token ``statistics`` (``[n, len(statistics)]``,
    no gradient); with ``coef``, also the gradients of ``sum_i coef_i * logp_i``; with ``keep_exps`` (a list,
    ``coef`` unset), each chunk's float32 ``(exps, sums)`` (see :func:`_exps_to_grad_`) is appended to it: the
    softmax without its normalising pass, which the backward folds into its own."""
    n = hidden.shape[0]
    statistics = statistics or {}
    logp = torch.empty(n, dtype=torch.float32, device=hidden.device)
    lse = torch.empty(n, dtype=torch.float32, device=hidden.device)
    stats = torch.empty(n, len(statistics), dtype=torch.float32, device=hidden.device)
    with torch.autocast(hidden.device.type, enabled=False):
        for start in range(0, n, chunk_size):
            end = min(start + chunk_size, n)
            h, t = hidden[start:end], targets[start:end]
            logits = head.logits(h)
            target_logits = logits.gather(1, t.unsqueeze(1)).squeeze(1)
            with torch.no_grad():  # before the in-place softmax below overwrites the logits
                for column, (name, statistic) in enumerate(statistics.items()):
                    stats[start:end, column] = check_statistic(name, statistic(logits), end - start)
            # log-sum-exp in place (no [chunk, vocab] temporaries); the exponentials are reused for the softmax
            row_max = logits.amax(dim=1, keepdim=True)
            exps = logits.sub_(row_max).exp_()
            sums = exps.sum(dim=1)
            lse[start:end] = chunk_lse = row_max.squeeze(1) + sums.log()
            logp[start:end] = target_logits - chunk_lse
            if coef is not None:
                head.add_grad(start, h, _exps_to_grad_(exps, t, coef[start:end], sums))
            elif keep_exps is not None:
                keep_exps.append((exps, sums))
            del logits, exps
    return logp, lse, stats


class _TokenLogProbs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk_size, cache_bytes, statistics):
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        # A frozen projection: dlogp_i/dh_i is all the backward needs, and the later dL/dlogp_i only scales it.
        ctx.precomputed = need_h and not need_w and not need_b
        if ctx.precomputed:
            head = _Head(hidden, weight, bias, need_h=True)
            ones = torch.ones(hidden.shape[0], dtype=torch.float32, device=hidden.device)
            logp, _, stats = _forward_chunks(head, hidden, targets, chunk_size, coef=ones, statistics=statistics)
            ctx.save_for_backward(head.grad_h)
        else:
            cache = [] if hidden.shape[0] * weight.shape[0] * 4 <= cache_bytes else None
            head = _Head(hidden, weight, bias)
            logp, lse, stats = _forward_chunks(head, hidden, targets, chunk_size, keep_exps=cache,
                                               statistics=statistics)
            ctx.save_for_backward(hidden, weight, bias, targets, lse)
            # Autocast is off during backward: the forward's compute dtype is kept so that recomputed logits match
            # the saved log-sum-exps and the gradient matmuls run in the dtype lm_head's own backward would use.
            ctx.chunk_size, ctx.exps, ctx.compute_dtype = chunk_size, cache, head.dtype
        ctx.mark_non_differentiable(stats)
        return logp, stats

    @staticmethod
    def backward(ctx, grad_logp, _grad_stats):
        if ctx.precomputed:
            (dlogp_dh,) = ctx.saved_tensors
            return (grad_logp.float().unsqueeze(1) * dlogp_dh).to(dlogp_dh.dtype), None, None, None, None, None, None
        hidden, weight, bias, targets, lse = ctx.saved_tensors
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        head = _Head(hidden, weight, bias, need_h, need_w, need_b, dtype=ctx.compute_dtype)
        grad_logp = grad_logp.float()
        cache, ctx.exps = ctx.exps, None  # turned into gradients in place; a second backward recomputes
        with torch.autocast(hidden.device.type, enabled=False):
            for k, start in enumerate(range(0, hidden.shape[0], ctx.chunk_size)):
                end = min(start + ctx.chunk_size, hidden.shape[0])
                h, t, c = hidden[start:end], targets[start:end], grad_logp[start:end]
                if cache is None:
                    grad_logits = _exps_to_grad_(head.logits(h).sub_(lse[start:end].unsqueeze(1)).exp_(), t, c)
                else:
                    (exps, sums), cache[k] = cache[k], None
                    grad_logits = _exps_to_grad_(exps, t, c, sums)
                head.add_grad(start, h, grad_logits)
                del grad_logits
        return head.grad_h, *head.param_grads(weight, bias), None, None, None, None


class _WeightedNLL(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, coef, chunk_size):
        head = _Head(hidden, weight, bias, *ctx.needs_input_grad[:3])
        # loss = -sum_i coef_i * logp_i: its gradient wrt the logits is -coef * (onehot - softmax)
        neg_coef = -coef.float()
        logp, _, _ = _forward_chunks(head, hidden, targets, chunk_size, coef=neg_coef if head.needs_grad else None)
        # Kept as attributes, not saved tensors, so the backward can scale them in place: a [vocab, hidden] copy
        # of the projection gradient would double the head's largest buffer.
        ctx.head, ctx.param_dtypes = head, (weight.dtype, None if bias is None else bias.dtype)
        ctx.mark_non_differentiable(logp)
        return (neg_coef * logp).sum(), logp

    @staticmethod
    def backward(ctx, grad_loss, _grad_logp):
        head = ctx.head
        if head is None:
            raise RuntimeError("fused_weighted_nll's gradients were already used: its backward runs once")
        ctx.head = None
        scale = grad_loss.float()
        grads = [None if g is None else g.mul_(scale) for g in (head.grad_h, head.grad_w, head.grad_b)]
        w_dtype, b_dtype = ctx.param_dtypes
        return (grads[0], None if grads[1] is None else grads[1].to(w_dtype),
                None if grads[2] is None else grads[2].to(b_dtype), None, None, None)


def _supervised(hidden: torch.Tensor, labels: torch.Tensor, ignore_index: int):
    """The supervised positions' hidden states and targets, the mask, and the flat index of those positions.

    The index is the head's one host sync per call (its length sets the chunking); everything else selects and
    scatters through it, since each boolean-mask indexing would be a sync of its own on an accelerator.
    """
    if hidden.shape[:-1] != labels.shape:
        raise ValueError(f"hidden states {tuple(hidden.shape)} and labels {tuple(labels.shape)} disagree")
    shift_labels = labels[:, 1:]
    mask = shift_labels != ignore_index
    index = mask.reshape(-1).nonzero().squeeze(1)
    h = hidden[:, :-1].reshape(-1, hidden.shape[-1]).index_select(0, index)
    return h, shift_labels.reshape(-1).index_select(0, index), mask, index


def _select(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return values.reshape(-1).index_select(0, index)


def _scatter(values: torch.Tensor, mask: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    out = torch.zeros(mask.numel(), dtype=values.dtype, device=values.device)
    return out.index_copy(0, index, values).view(mask.shape)


def _tracks_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def fused_token_logprobs(
    hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, bias: torch.Tensor | None = None,
    ignore_index: int = IGNORE_INDEX, chunk_size: int | None = None, cache_bytes: int = DEFAULT_CACHE_BYTES,
    statistics: Mapping[str, TokenStatistic] | None = None,
):
    """Drop-in for :func:`talr.losses.token_logprobs` that takes the head's input instead of its output.

    ``hidden`` is ``[batch, seq, hidden]`` (the final hidden states a causal LM feeds its ``lm_head``), ``weight``
    ``[vocab, hidden]`` and ``bias`` ``[vocab]`` the projection, ``labels`` ``[batch, seq]``. Returns
    ``(logp, mask)``, both ``[batch, seq - 1]``, ``logp`` float32 and differentiable wrt ``hidden``, ``weight`` and
    ``bias``: any weighting may be applied to it afterwards. ``cache_bytes``: see ``DEFAULT_CACHE_BYTES``.
    With ``statistics`` (name -> row-wise function of float32 logits, :mod:`talr.token_statistics`) it returns
    ``(logp, mask, stats)``, ``stats`` a dict of ``[batch, seq - 1]`` float32 tensors without gradient, each
    computed chunk by chunk on the supervised positions (0 elsewhere).
    """
    h, targets, mask, index = _supervised(hidden, labels, ignore_index)
    chunk = chunk_size or default_chunk_size(weight.shape[0], tokens=h.shape[0], device=h.device)
    if _tracks_grad(h, weight, bias):
        logp_sel, stats = _TokenLogProbs.apply(h, weight, bias, targets, chunk, cache_bytes, statistics)
    else:
        logp_sel, _, stats = _forward_chunks(_Head(h, weight, bias), h, targets, chunk, statistics=statistics)
    check_finite(logp_sel, torch.ones_like(logp_sel, dtype=torch.bool))
    logp = _scatter(logp_sel, mask, index)
    if statistics is None:
        return logp, mask
    return logp, mask, {name: _scatter(stats[:, k], mask, index) for k, name in enumerate(statistics)}


def fused_weighted_nll(
    hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, token_weights: torch.Tensor,
    bias: torch.Tensor | None = None, ignore_index: int = IGNORE_INDEX, chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``-sum_i w_i * logp_i`` for per-token weights known before the forward (``[batch, seq - 1]``, held fixed as in
    :func:`talr.losses.weighted_nll`). Returns ``(loss, logp, mask)`` with ``logp`` detached (for logging). The
    gradients are computed during this call and only scaled by the backward.
    """
    h, targets, mask, index = _supervised(hidden, labels, ignore_index)
    if token_weights.shape != mask.shape:
        raise ValueError(f"token weights {tuple(token_weights.shape)} do not match the labels' {tuple(mask.shape)}")
    chunk = chunk_size or default_chunk_size(weight.shape[0], tokens=h.shape[0], device=h.device)
    coef = _select(token_weights.detach(), index)
    if _tracks_grad(h, weight, bias):
        loss, logp_sel = _WeightedNLL.apply(h, weight, bias, targets, coef, chunk)
    else:
        logp_sel, _, _ = _forward_chunks(_Head(h, weight, bias), h, targets, chunk)
        loss = -(coef.float() * logp_sel).sum()
    check_finite(logp_sel, torch.ones_like(logp_sel, dtype=torch.bool))
    return loss, _scatter(logp_sel, mask, index), mask


def linear_head(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The output projection ``(weight, bias)`` of a causal LM whose logits are ``linear(h, weight, bias)``.

    Raises ``ValueError`` naming the reason when the head is something else (a LoRA-wrapped ``lm_head``, logit
    soft-capping or scaling).
    """
    head = model.get_output_embeddings()
    if not isinstance(head, nn.Linear):
        raise ValueError(f"the output layer is a {type(head).__name__}, not a plain nn.Linear")
    for key, neutral in (("final_logit_softcapping", None), ("logit_scale", None), ("logits_scaling", 1.0)):
        value = getattr(model.config, key, neutral)
        if value is not None and value != neutral:
            raise ValueError(f"the model post-processes its logits (config.{key}={value})")
    return head.weight, head.bias


def _base_causal_lm(model: nn.Module) -> nn.Module:
    """The transformers causal LM inside DDP/accelerate and PEFT wrappers."""
    while hasattr(model, "module"):
        model = model.module
    return model.get_base_model() if hasattr(model, "get_base_model") else model


class CausalLMHead:
    """Token log-probabilities of a causal LM batch, through the fused head or the straightforward one.

    The fused path calls the (possibly wrapped: DDP, PEFT) model itself, so every wrapper's forward runs, with
    ``logits_to_keep`` set to no position, and takes the final hidden states from a forward hook on the decoder.
    ``fused=True`` falls back to the straightforward path, with a warning, for a model whose head is not a plain
    linear layer or whose logits do not match ``linear(hidden, W, b)`` on a probe input.
    """

    def __init__(self, model: nn.Module, fused: bool = True, chunk_size: int | None = None,
                 cache_bytes: int = DEFAULT_CACHE_BYTES):
        self.chunk_size, self.cache_bytes = chunk_size, cache_bytes
        self.fused = fused and self._fused_applies(model)

    def _fused_applies(self, model: nn.Module) -> bool:
        base = _base_causal_lm(model)
        try:
            linear_head(base)
            probe = torch.arange(1, 9, device=base.get_output_embeddings().weight.device).unsqueeze(0) % (
                base.get_output_embeddings().weight.shape[0]
            )
            was_training = model.training
            model.eval()  # no dropout, so both calls see the same function
            try:
                with torch.no_grad():
                    reference = model(input_ids=probe).logits.float()
                    hidden, _ = self._hidden_states(model, {"input_ids": probe})
                    weight, bias = linear_head(base)
                    fused = F.linear(hidden.to(weight.dtype), weight, bias).float()
            finally:
                model.train(was_training)
            if not torch.allclose(fused, reference, rtol=1e-3, atol=1e-3):
                raise ValueError("its logits are not linear(final hidden states, lm_head)")
        except (ValueError, TypeError, AttributeError, RuntimeError) as err:
            logger.warning("Fused loss head not used (%s); computing full logits instead.", err)
            return False
        return True

    @staticmethod
    def _hidden_states(model: nn.Module, inputs: dict) -> tuple[torch.Tensor, torch.dtype | None]:
        """The decoder's final hidden states, and the autocast dtype the model's ``lm_head`` would have run under
        (accelerate applies autocast inside the wrapped model's forward only)."""
        captured = []

        def capture(module, args, output):
            hidden = output[0]
            device_type = hidden.device.type
            dtype = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None
            captured.append((hidden, dtype))

        handle = _base_causal_lm(model).get_decoder().register_forward_hook(capture)
        try:
            none = torch.empty(0, dtype=torch.long, device=inputs["input_ids"].device)
            model(**inputs, logits_to_keep=none)
        finally:
            handle.remove()
        if len(captured) != 1:
            raise RuntimeError(f"the decoder ran {len(captured)} times in one forward")
        return captured[0]

    def _run(self, model, inputs, fn, *args, **kwargs):
        weight, bias = linear_head(_base_causal_lm(model))
        hidden, autocast_dtype = self._hidden_states(model, inputs)
        autocast = torch.autocast(hidden.device.type, dtype=autocast_dtype) if autocast_dtype else nullcontext()
        with autocast:
            return fn(hidden, weight, *args, bias=bias, chunk_size=self.chunk_size, **kwargs)

    def logprobs(self, model: nn.Module, inputs: dict, labels: torch.Tensor,
                 statistics: Mapping[str, TokenStatistic] | None = None):
        """``(logp, mask)`` as :func:`talr.losses.token_logprobs` returns them, differentiable; with
        ``statistics``, ``(logp, mask, stats)`` as :func:`fused_token_logprobs` returns them, from either head."""
        if not self.fused:
            logits = model(**inputs).logits
            logp, mask = token_logprobs(logits, labels)
            if statistics is None:
                return logp, mask
            return logp, mask, statistics_of_logits(logits, labels, statistics)
        return self._run(model, inputs, fused_token_logprobs, labels, cache_bytes=self.cache_bytes,
                         statistics=statistics)

    def weighted_nll(self, model: nn.Module, inputs: dict, labels: torch.Tensor, token_weights: torch.Tensor):
        """``(sum_i w_i * l_i, logp, mask)`` for weights known before the forward; ``logp`` detached."""
        if not self.fused:
            logp, mask = token_logprobs(model(**inputs).logits, labels)
            return -(token_weights.detach() * logp).sum(), logp.detach(), mask
        return self._run(model, inputs, fused_weighted_nll, labels, token_weights)
