"""TALR (Lin et al. 2025): ``w_i ∝ p(x_i) ** (1 / tau)`` over the batch's supervised tokens, floored, detached
(:func:`talr.losses.talr_weights`; the open choices and their defaults are documented there and in the ``talr:``
config section, :class:`talr.config.TalrConfig`). With ``talr.weights_from: base`` ``p`` (and a median tau) is the
frozen starting model's probability instead of the trained model's (preset ``talr_base``)."""

from __future__ import annotations

import torch

from talr import losses
from talr.methods.base import TokenWeighting


class TalrWeighting(TokenWeighting):
    scope = "batch"  # the softmax normaliser and the median tau see every token of the step

    def __init__(self, config):
        super().__init__(config)
        self.talr = config.talr
        if self.talr.normalization == "none" and self.talr.tau != "median":
            self.scope = "token"  # no normaliser and a fixed tau: each weight is its own token's
        if config.talr.weights_from == "base":
            self.use_base_model_logprobs()

    def weights(self, logp: torch.Tensor, mask: torch.Tensor, side: dict) -> torch.Tensor:
        if self.talr.normalization == "none":
            return losses.unnormalized_talr_weights(logp, mask, self.talr)
        # simplex weights rescaled to mean 1 over the batch's supervised tokens
        return losses.talr_weights(logp, mask, self.talr) * mask.sum()
