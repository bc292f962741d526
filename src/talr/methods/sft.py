"""SFT: every supervised token weighs 1 (the mean negative log-likelihood of the step)."""

from __future__ import annotations

import torch

from talr.methods.base import TokenWeighting


class SftWeighting(TokenWeighting):
    scope = "labels"

    def weights(self, logp: torch.Tensor, mask: torch.Tensor, side: dict) -> torch.Tensor:
        return mask.to(logp.dtype)
