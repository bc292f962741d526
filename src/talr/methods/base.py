"""The loss-weighting protocol: what a method must say so the trainer can train with it, and nothing more.

A weighting maps the per-token log-probabilities of a batch to detached per-token weights; the trainer reduces every
weighting the same way, ``loss = sum_i w_i * l_i / (supervised tokens of the optimizer step)``, so a weighting whose
weights average 1 keeps the scale of the SFT mean and learning rates stay comparable. The trainer asks the weighting
what its weights depend on (:attr:`TokenWeighting.scope`) to pick the cheapest exact path (talr.trainer,
talr.step_normalizer); it never branches on a method's name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

Scope = Literal["labels", "token", "batch"]


@dataclass
class PreparedRun:
    """What a weighting's one-time :meth:`TokenWeighting.prepare` sees: the starting model (before any adapter),
    its tokenizer, the training examples and their tokenised features (which ``prepare`` may extend with the side
    inputs it declares), the run directory, and whether the run resumes from a checkpoint."""

    model: torch.nn.Module
    tokenizer: Any
    examples: list[dict]
    features: list[dict]
    run_dir: str | os.PathLike | None = None
    resumed: bool = False


class TokenWeighting:
    """Base class of the registered loss weightings (``talr.methods.registry.LOSS_WEIGHTINGS``).

    * ``scope`` — what the weights depend on: ``"labels"`` (only which tokens are supervised and the side inputs:
      computed before the forward, so the fused head takes one pass), ``"token"`` (each token's own
      log-probability), ``"batch"`` (every token of the optimizer step: computed over the whole step, all
      accumulation micro-batches and processes; the default, always correct).
    * ``side_inputs`` — batch fields the weights read besides the log-probabilities, put on the features by
      :meth:`prepare` (only ``talr train`` prepares them; the integrations offer the weightings that need none).
    * ``Options`` — the dataclass of the method's own settings, read from the config's top-level key of the same
      name (``config.options_for(name)``), or ``None``.
    """

    scope: ClassVar[Scope] = "batch"
    side_inputs: ClassVar[tuple[str, ...]] = ()
    Options: ClassVar[type | None] = None

    def __init__(self, config):
        self.config = config

    def prepare(self, run: PreparedRun) -> None:
        """One-time work before training, before any adapter is applied (FLOW scores the base model here)."""

    def weights(self, logp: torch.Tensor, mask: torch.Tensor, side: dict) -> torch.Tensor:
        """Detached per-token weights shaped like ``logp``, zero where ``mask`` is false."""
        raise NotImplementedError


def build_weighting(config) -> TokenWeighting:
    """The loss weighting ``config.method.loss`` names, built on the run's config."""
    from talr.methods.registry import LOSS_WEIGHTINGS

    return LOSS_WEIGHTINGS.load(config.method.loss)(config)
