"""DFT (Wu et al. 2025, "On the Generalization of SFT"; TRL's ``loss_type="dft"``): each token weighted by its own
detached probability (:func:`talr.losses.dft_weights`)."""

from __future__ import annotations

import torch

from talr import losses
from talr.methods.base import TokenWeighting


class DftWeighting(TokenWeighting):
    scope = "token"

    def weights(self, logp: torch.Tensor, mask: torch.Tensor, side: dict) -> torch.Tensor:
        return losses.dft_weights(logp, mask)
