"""A ``compute_loss_func`` for a plain ``transformers.Trainer`` (no TRL, no Trainer subclass of talr's).

    trainer = Trainer(model=model, args=args, train_dataset=ds, compute_loss_func=token_weighted_loss("talr"))

The Trainer runs the model's ordinary forward (full ``[tokens, vocab]`` logits, as its default loss does) and hands
the outputs here; the loss is ``sum_i w_i * l_i / num_items_in_batch`` exactly as :class:`talr.trainer.TalrTrainer`
computes it, through :func:`talr.losses.token_logprobs` (a float32 cross-entropy over the logits, the same work as
transformers' own causal-LM loss) and the registered weighting. The one difference: a ``compute_loss_func`` sees one
micro-batch at a time, so batch-dependent weights (TALR's tau and softmax) are normalised per micro-batch
(``normalize_over: micro_batch``); with gradient accumulation, use ``TalrTrainer`` (a ``transformers.Trainer``
subclass) or ``TalrSFTTrainer`` for the step-exact weights. See docs/integrations.md.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from talr import losses
from talr.config import Config
from talr.integrations import weighting_config
from talr.methods.base import build_weighting


class TokenWeightedLoss:
    """``compute_loss_func(outputs, labels, num_items_in_batch=None)`` applying a talr weighting."""

    def __init__(self, config: Config):
        self.config = config
        self.weighting = build_weighting(config)

    def __call__(self, outputs, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
        logp, mask = losses.token_logprobs(outputs.logits, labels)
        weights = self.weighting.weights(logp, mask, {}).detach()
        denominator = mask.sum() if num_items_in_batch is None else num_items_in_batch
        # Trainer multiplies by the number of processes itself (average_tokens_across_devices)
        return losses.weighted_nll(logp, weights) / denominator


def token_weighted_loss(talr: Config | Mapping | str = "talr") -> TokenWeightedLoss:
    """The ``compute_loss_func`` for ``talr`` (as :func:`talr.integrations.weighting_config` reads it)."""
    return TokenWeightedLoss(weighting_config(talr))
