"""EAFT (Diao et al. 2026, "Entropy-Adaptive Fine-Tuning", arXiv 2601.02151): each token weighted by the normalised
entropy of the model's renormalised top-K next-token distribution, ``(H_K / ln K) ** alpha``, detached
(:func:`talr.losses.eaft_weights`). Confident tokens the data contradicts get little weight. docs/methods.md
compares it with LLaMA-Factory's and axolotl's implementations."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from talr import losses
from talr.config import ConfigError
from talr.methods.base import TokenWeighting
from talr.token_statistics import topk_normalized_entropy

TOP_K_ENTROPY = "eaft_topk_entropy"  # the name of the statistic in ``side``


@dataclass
class EaftOptions:
    """The ``eaft:`` config section. Defaults: the paper's and LLaMA-Factory's (``eaft_alpha``; K fixed at 20) and
    axolotl's (``eaft_alpha``, ``eaft_k``)."""

    alpha: float = 1.0  # exponent of the normalised entropy; 0 is SFT
    k: int = 20  # tokens of the top-K distribution whose entropy gates each token

    def check(self) -> None:
        if not self.alpha >= 0:
            raise ConfigError(f"alpha: must be >= 0, got {self.alpha}")
        if self.k < 2:
            raise ConfigError(f"k: must be at least 2 (the entropy is divided by ln k), got {self.k}")


class EaftWeighting(TokenWeighting):
    scope = "token"  # each weight from its own position's distribution
    Options = EaftOptions

    def __init__(self, config):
        super().__init__(config)
        self.options = config.options_for("eaft")
        self.token_statistics = {TOP_K_ENTROPY: functools.partial(topk_normalized_entropy, k=self.options.k)}

    def weights(self, logp: torch.Tensor, mask: torch.Tensor, side: dict) -> torch.Tensor:
        if TOP_K_ENTROPY not in side:
            raise KeyError(
                f"EAFT's weights need the top-{self.options.k} entropy of each position's logits ({TOP_K_ENTROPY!r}), "
                "which the loss head computes when asked for the weighting's token_statistics; this caller passed "
                "only log-probabilities"
            )
        return losses.eaft_weights(side[TOP_K_ENTROPY].to(logp.device), mask, self.options.alpha).to(logp.dtype)
