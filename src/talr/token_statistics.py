"""Per-token statistics of the next-token distribution, for weightings whose weights need more than ``logp``.

A statistic is a row-wise function of float32 logits, ``[n, vocab] -> [n]``, computed without gradient. A weighting
names the statistics it needs (``token_statistics``: name -> function); the loss head evaluates them on every
supervised position, chunk by chunk in the fused head (no ``[tokens, vocab]`` tensor) or on the full logits in the
reference head, and hands them to the weighting shaped like ``logp`` (0 where the label is ignored).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch

from talr.losses import IGNORE_INDEX

TokenStatistic = Callable[[torch.Tensor], torch.Tensor]


def topk_normalized_entropy(logits: torch.Tensor, k: int) -> torch.Tensor:
    """``H(softmax(top_k(logits))) / ln k`` per row: the entropy of the renormalised top-``k`` next-token
    distribution, in units of its maximum (0: all mass on one token, 1: uniform over the top ``k``). EAFT's gate."""
    if k < 2:
        raise ValueError(f"k must be at least 2 (the entropy is divided by ln k), got {k}")
    if k > logits.shape[-1]:
        raise ValueError(f"k ({k}) exceeds the vocabulary ({logits.shape[-1]} tokens)")
    top = logits.detach().to(torch.promote_types(logits.dtype, torch.float32)).topk(k, dim=-1).values
    log_q = top - top.logsumexp(dim=-1, keepdim=True)
    return -(log_q.exp() * log_q).sum(dim=-1) / math.log(k)


def check_statistic(name: str, value: torch.Tensor, rows: int) -> torch.Tensor:
    """The statistic's values, or a ``ValueError`` when the function is not row-wise (the fused head evaluates it
    chunk by chunk, which only a per-row function of the logits allows)."""
    if value.shape != (rows,):
        raise ValueError(
            f"token statistic {name!r} returned shape {tuple(value.shape)} for {rows} rows of logits: the fused head "
            "(training.loss_head: fused) needs a per-row function of the logits; use training.loss_head: reference "
            "for anything else"
        )
    return value.detach().float()


def statistics_of_logits(
    logits: torch.Tensor, labels: torch.Tensor, statistics: Mapping[str, TokenStatistic],
    ignore_index: int = IGNORE_INDEX,
) -> dict[str, torch.Tensor]:
    """The statistics from full ``[batch, seq, vocab]`` logits (the reference head's path): each ``[batch, seq - 1]``
    float32, aligned with :func:`talr.losses.token_logprobs`' ``logp``, 0 where the label is ignored."""
    if not statistics:
        return {}
    mask = labels[:, 1:] != ignore_index
    index = mask.reshape(-1).nonzero().squeeze(1)
    with torch.no_grad():
        rows = logits[:, :-1].reshape(-1, logits.shape[-1]).index_select(0, index).float()
        out = {}
        for name, statistic in statistics.items():
            values = check_statistic(name, statistic(rows), rows.shape[0])
            out[name] = torch.zeros(mask.numel(), device=values.device).index_copy(0, index, values).view(mask.shape)
    return out
