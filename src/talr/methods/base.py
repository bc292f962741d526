"""The loss-weighting protocol: what a method must say so the trainer can train with it, and nothing more.

A weighting maps the per-token log-probabilities of a batch to detached per-token weights; the trainer reduces every
weighting the same way, ``loss = sum_i w_i * l_i / (supervised tokens of the optimizer step)``, so a weighting whose
weights average 1 keeps the scale of the SFT mean and learning rates stay comparable. The trainer asks the weighting
what its weights depend on (:attr:`TokenWeighting.scope`) to pick the cheapest exact path (talr.trainer,
talr.step_normalizer); it never branches on a method's name.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, Literal

import torch

from talr.token_statistics import TokenStatistic

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
    * ``token_statistics`` — per-token statistics of the model's next-token distribution the weights read besides
      the log-probabilities (name -> row-wise function of the logits, :mod:`talr.token_statistics`): the loss head
      computes them on every supervised position (chunk by chunk in the fused head) and passes them in ``side``
      under their names.
    * ``weights_logp_field`` — the side input (aligned with the labels) holding the log-probabilities the weights
      are computed from when they are not the trained model's own: set by :meth:`use_base_model_logprobs`
      (``weights_from: base``). The trainer then passes those to :meth:`weights` as ``logp`` and, since they are
      known before the forward, computes the weights there (over the whole step for ``scope = "batch"``, with no
      pre-pass) and trains through the one-pass head.
    * ``needs_logits`` — whether :meth:`auxiliary_loss` reads the full ``[batch, seq, vocab]`` logits; the trainer
      then computes them (``training.loss_head: reference``) and refuses the fused head.
    """

    scope: ClassVar[Scope] = "batch"
    side_inputs: tuple[str, ...] = ()
    Options: ClassVar[type | None] = None
    token_statistics: Mapping[str, TokenStatistic] = MappingProxyType({})
    weights_logp_field: str | None = None
    needs_logits: ClassVar[bool] = False

    def __init__(self, config):
        self.config = config
        if self.needs_logits and config.training.loss_head == "fused":
            from talr.config import ConfigError

            raise ConfigError(f"training.loss_head: the {config.method.loss} loss reads the full logits, which the "
                              "fused head never forms; set training.loss_head: reference")

    def use_base_model_logprobs(self) -> None:
        """Compute the weights from the frozen starting model's token log-probabilities (``weights_from: base``;
        PriFT, Wang et al. 2026, arXiv 2606.09396) instead of the trained model's: :meth:`prepare` attaches them to
        the features from the reference statistics cache (talr.reference_stats), so training needs no extra
        forward pass and the weights do not move with the model."""
        from talr.reference_stats import REFERENCE_LOGP

        self.weights_logp_field = REFERENCE_LOGP
        self.side_inputs = (*self.side_inputs, REFERENCE_LOGP)

    def prepare(self, run: PreparedRun) -> None:
        """One-time work before training, before any adapter is applied (FLOW scores the base model here; a
        weighting with base-model weights attaches their log-probabilities). A subclass that overrides it calls
        this one."""
        if self.weights_logp_field is not None:
            from talr.reference_stats import attach_token_logprobs, reference_token_logprobs

            token_logps, _ = reference_token_logprobs(run.model, run.tokenizer, run.examples, run.features,
                                                      self.config)
            attach_token_logprobs(run.features, token_logps)

    def weights_logp(self, logp: torch.Tensor | None, mask: torch.Tensor, side: dict) -> torch.Tensor | None:
        """The log-probabilities :meth:`weights` reads: ``logp`` (the trained model's; None before the forward), or
        the ``[batch, seq]`` side input :attr:`weights_logp_field` names, cut to ``mask``'s ``[batch, seq - 1]``."""
        if self.weights_logp_field is None:
            return logp
        if self.weights_logp_field not in side:
            raise KeyError(f"{type(self).__name__} computes its weights from the batch field "
                           f"{self.weights_logp_field!r}, which its prepare() puts on the features (talr train only)")
        values = side[self.weights_logp_field][:, 1:]
        return values.to(device=mask.device, dtype=torch.float32).masked_fill(~mask, 0.0)

    def auxiliary_loss(self, model: torch.nn.Module, inputs: dict, logits: torch.Tensor,
                       mask: torch.Tensor) -> torch.Tensor | None:
        """A term added to the weighted NLL sum before the trainer divides it by the step's supervised tokens (so a
        sum over this batch's tokens), from the model being trained, the batch's model inputs and its full logits
        (only when :attr:`needs_logits`); None: no term (the default)."""
        return None

    def weights(self, logp: torch.Tensor, mask: torch.Tensor, side: dict) -> torch.Tensor:
        """Detached per-token weights shaped like ``logp``, zero where ``mask`` is false."""
        raise NotImplementedError


def build_weighting(config) -> TokenWeighting:
    """The loss weighting ``config.method.loss`` names, built on the run's config."""
    from talr.methods.registry import LOSS_WEIGHTINGS

    return LOSS_WEIGHTINGS.load(config.method.loss)(config)
