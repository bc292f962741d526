"""ASFT, Anchored Supervised Fine-Tuning (Zhu et al. 2025, arXiv 2509.23753): DFT's loss plus a KL anchor to the
frozen starting model,

    loss = sum_i [ p_i * l_i  +  alpha * KL(pi_ref(.|x_<i) || pi_theta(.|x_<i)) ] / (supervised tokens of the step),

``p_i`` the token's own probability, detached (DFT), the KL over the full vocabulary at every supervised position.
Checked against the authors' code (zhuchichi56/ASFT ``train_v2.py``, mode ``asft``: ``F.kl_div(log_softmax(policy),
softmax(ref)).sum(-1)`` added to the DFT token losses, mean over the supervised tokens) and LLaMA-Factory
(``src/llamafactory/train/trainer_utils.py``: ``_asft_cross_entropy`` / ``_kl_divergence``; ``use_asft_loss``,
``asft_alpha`` = 0.1).

The reference: with an adapter (LoRA) the trained model with its adapter disabled (peft's ``disable_adapter()``, no
second copy, as the authors' code does); with full fine-tuning a frozen copy of the starting model made in
``prepare``, which costs a second model's memory and one more no-grad forward per micro-batch (docs/methods.md).
Both logits are needed in full, so ASFT runs with ``training.loss_head: reference`` (the preset sets it).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from talr import losses
from talr.methods.base import PreparedRun, TokenWeighting


@dataclass
class AsftOptions:
    # 0.1: the default of the authors' train_v2.py (kl_weight) and of LLaMA-Factory's asft_alpha
    alpha: float = 0.1

    def check(self) -> None:
        from talr.config import ConfigError

        if not self.alpha >= 0:
            raise ConfigError(f"alpha: must be >= 0, got {self.alpha}")


class AsftWeighting(TokenWeighting):
    scope = "token"
    Options = AsftOptions
    needs_logits = True

    def __init__(self, config):
        super().__init__(config)
        self.alpha = config.options_for("asft").alpha
        self.reference: torch.nn.Module | None = None

    def prepare(self, run: PreparedRun) -> None:
        super().prepare(run)
        from talr.methods.registry import ADAPTERS

        if ADAPTERS[self.config.method.adapter] is None:  # full fine-tuning: nothing to disable, so keep a copy
            self.reference = copy.deepcopy(run.model).eval().requires_grad_(False)

    def weights(self, logp: torch.Tensor, mask: torch.Tensor, side: dict) -> torch.Tensor:
        return losses.dft_weights(logp, mask)

    def auxiliary_loss(self, model: torch.nn.Module, inputs: dict, logits: torch.Tensor,
                       mask: torch.Tensor) -> torch.Tensor:
        """``alpha * sum_i KL(pi_ref || pi_theta)`` over this batch's supervised tokens."""
        return self.alpha * losses.reference_kl(logits, self._reference_logits(model, inputs), mask).sum()

    @torch.no_grad()
    def _reference_logits(self, model: torch.nn.Module, inputs: dict) -> torch.Tensor:
        if self.reference is not None:
            device = inputs["input_ids"].device
            if next(self.reference.parameters()).device != device:
                self.reference.to(device)
            return self.reference(**inputs).logits
        adapted = model
        while hasattr(adapted, "module"):  # DDP / accelerate wrappers
            adapted = adapted.module
        if not hasattr(adapted, "disable_adapter"):
            raise RuntimeError("ASFT's reference is the model with its adapter disabled, but the trained model has no "
                               "adapter (a PEFT model) and prepare() made no frozen copy")
        with adapted.disable_adapter():
            return model(**inputs).logits
