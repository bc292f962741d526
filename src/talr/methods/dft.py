"""DFT (Wu et al. 2025, "On the Generalization of SFT"; TRL's ``loss_type="dft"``): each token weighted by its own
detached probability (:func:`talr.losses.dft_weights`). With ``dft: {weights_from: base}`` the probability is the
frozen starting model's instead (PriFT-prob, Wang et al. 2026, arXiv 2606.09396; preset ``dft_base``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from talr import losses
from talr.methods.base import TokenWeighting


@dataclass
class DftOptions:
    # "current": the trained model's probability (DFT); "base": the frozen starting model's, computed once before
    # training and cached (talr.reference_stats)
    weights_from: Literal["current", "base"] = "current"


class DftWeighting(TokenWeighting):
    scope = "token"
    Options = DftOptions

    def __init__(self, config):
        super().__init__(config)
        if config.options_for("dft").weights_from == "base":
            self.use_base_model_logprobs()

    def weights(self, logp: torch.Tensor, mask: torch.Tensor, side: dict) -> torch.Tensor:
        return losses.dft_weights(logp, mask)
