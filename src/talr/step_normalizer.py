"""Token weights computed over the whole optimizer step: every accumulation micro-batch and every process.

TALR's weights (softmax normaliser, median tau, floor) depend on every token of "the batch". Computed per micro-batch,
the update would depend on how a batch is split across accumulation steps and processes. The weights are detached
per-token scalars, so only the per-token log-probabilities of the step are needed to compute them exactly: this
module gathers those (one float per token, padded to a common shape) from every micro-batch and every process, applies
the registered weighting once to the whole step, and hands each micro-batch its slice. The weighting function itself
is the reference one (:mod:`talr.methods`), so the step weights are by construction what it gives the full batch.

When the step has one micro-batch per process the log-probabilities come from the training forward itself (the
gather sits between forward and backward). With gradient accumulation the later micro-batches have not run when the
first backward needs its weights, so the trainer runs a no-grad pre-pass over the step's micro-batches first (see
``docs/performance.md`` for the cost and the alternatives).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.distributed as dist

# Key under which the trainer passes a micro-batch's precomputed step weights from the pre-pass to compute_loss.
STEP_WEIGHTS_KEY = "talr_step_weights"


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _stack(tensors: Sequence[torch.Tensor], rows: int, cols: int, fill) -> torch.Tensor:
    out = torch.full((rows, cols), fill, dtype=tensors[0].dtype, device=tensors[0].device)
    row = 0
    for t in tensors:
        out[row : row + t.shape[0], : t.shape[1]] = t
        row += t.shape[0]
    return out


def gather_step(logps: Sequence[torch.Tensor], masks: Sequence[torch.Tensor], across_processes: bool = True):
    """Stack the micro-batches' ``[b_k, s_k]`` log-probabilities and masks, and (``across_processes``, under
    torch.distributed) those of every process.

    Returns ``(logp, mask, first_row)``: the step's ``[rows, max_len]`` tensors (padding masked out; a process's rows
    are padded to the largest process's) and the row where this process's first micro-batch starts.
    """
    local_rows = sum(t.shape[0] for t in logps)
    local_cols = max(t.shape[1] for t in logps)
    logp = _stack([t.detach().float() for t in logps], local_rows, local_cols, 0.0)
    mask = _stack(list(masks), local_rows, local_cols, False)
    if not (across_processes and _distributed()):
        return logp, mask, 0
    world, rank = dist.get_world_size(), dist.get_rank()
    shape = torch.tensor([local_rows, local_cols], device=logp.device)
    shapes = [torch.empty_like(shape) for _ in range(world)]
    dist.all_gather(shapes, shape)
    rows, cols = (int(v) for v in torch.stack(shapes).max(dim=0).values)
    logp = _stack([logp], rows, cols, 0.0)
    mask = _stack([mask.to(torch.uint8)], rows, cols, 0)  # uint8: gloo cannot reduce bool
    logps_all = [torch.empty_like(logp) for _ in range(world)]
    masks_all = [torch.empty_like(mask) for _ in range(world)]
    dist.all_gather(logps_all, logp)
    dist.all_gather(masks_all, mask)
    return torch.cat(logps_all), torch.cat(masks_all).bool(), rank * rows


def step_token_weights(weighting, logps: Sequence[torch.Tensor], masks: Sequence[torch.Tensor],
                       across_processes: bool = True) -> list[torch.Tensor]:
    """The weights of each of this process's micro-batches, computed by ``weighting`` over the whole step.

    ``weighting`` is a :class:`talr.methods.base.TokenWeighting`; it sees the step's tokens as one batch (with no
    side inputs). Each returned tensor is shaped like the corresponding ``logps[k]``.
    """
    logp, mask, first_row = gather_step(logps, masks, across_processes)
    weights = weighting.weights(logp, mask, {}).detach()
    out, row = [], first_row
    for local in logps:
        out.append(weights[row : row + local.shape[0], : local.shape[1]].to(local.dtype))
        row += local.shape[0]
    return out


def examples_per_normalisation(config) -> int:
    """How many training examples share one set of batch-dependent weights: the optimizer step's (all accumulation
    micro-batches of all processes) or, with ``talr.normalize_over: micro_batch``, one micro-batch's."""
    t = config.training
    if config.talr.normalize_over == "micro_batch":
        return t.per_device_batch_size
    world = dist.get_world_size() if _distributed() else 1
    return t.per_device_batch_size * t.gradient_accumulation_steps * world


def weights_as_trained(weighting, token_logps: Sequence[np.ndarray], config) -> list[np.ndarray]:
    """The weights ``weighting`` gives each example's supervised tokens (``token_logps[e]``: their
    log-probabilities) when the examples are fed to training in this order: consecutive groups of
    :func:`examples_per_normalisation` examples, each through :func:`step_token_weights` as training computes it.
    Used by the probes and the advisor to report the weights training would use."""
    group = examples_per_normalisation(config)
    out: list[np.ndarray] = []
    for start in range(0, len(token_logps), group):
        rows = [torch.as_tensor(np.asarray(logp, dtype=np.float64))[None] for logp in token_logps[start:start + group]]
        masks = [torch.ones_like(row, dtype=torch.bool) for row in rows]
        out.extend(w[0].numpy().copy() for w in step_token_weights(weighting, rows, masks, across_processes=False))
    return out
