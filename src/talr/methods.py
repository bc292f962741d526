"""The registry of methods: four independent axes, and the named presets of the paper's comparison.

* loss weighting — how each supervised token's loss is weighted (``sft``, ``talr``, ``dft``, ``flow``);
* regulariser — a penalty added to the loss (``none``, ``l2``);
* adapter — which parameters train (``full``, ``lora``);
* averaging — a post-hoc step on the finished weights (``none``, ``wise_ft``).

Axes compose: ``{loss: talr, adapter: lora}`` is TALR on a LoRA adapter. A new method is one new module plus one
line in the registry of its axis (and, if the paper names it, one preset).

A loss weighting maps ``(logp, mask, inputs, config)`` to detached per-token weights shaped like ``logp``; the trainer
reduces every weighting the same way, ``loss = sum_i w_i * l_i / (supervised tokens of the optimizer step)``, so a
weighting whose weights average 1 keeps the scale of the SFT mean and learning rates stay comparable.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from talr import adapters, averaging, flow, losses, regularizers


def sft_token_weights(logp: torch.Tensor, mask: torch.Tensor, inputs: dict, config) -> torch.Tensor:
    return mask.to(logp.dtype)


def talr_token_weights(logp: torch.Tensor, mask: torch.Tensor, inputs: dict, config) -> torch.Tensor:
    # simplex weights rescaled to mean 1 over the micro-batch's supervised tokens
    simplex = losses.talr_weights(
        logp, mask, tau=config.talr.tau, tau_scope=config.talr.tau_scope, w_min=config.talr.w_min,
        tau_min=config.talr.tau_min,
    )
    return simplex * mask.sum()


def dft_token_weights(logp: torch.Tensor, mask: torch.Tensor, inputs: dict, config) -> torch.Tensor:
    return losses.dft_weights(logp, mask)


# What each weighting's weights depend on (talr.step_normalizer.weighting_scope): the trainer computes "labels"
# weights before the forward, and "batch" weights over the whole optimizer step.
sft_token_weights.scope = "labels"
dft_token_weights.scope = "token"
talr_token_weights.scope = "batch"
flow.flow_token_weights.scope = "labels"  # a per-sample constant: known before the forward
# Batch fields a weighting reads besides the log-probabilities (talr.integrations offers only those needing none).
flow.flow_token_weights.side_inputs = (flow.SAMPLE_WEIGHT,)

TokenWeighting = Callable[[torch.Tensor, torch.Tensor, dict, object], torch.Tensor]

LOSS_WEIGHTINGS: dict[str, TokenWeighting] = {
    "sft": sft_token_weights,
    "talr": talr_token_weights,
    "dft": dft_token_weights,
    "flow": flow.flow_token_weights,  # reads the static per-sample weight the trainer attaches before training
}

# name -> factory(model, config) returning an object with .penalty(model) -> scalar tensor, or None
REGULARIZERS: dict[str, Callable] = {
    "none": lambda model, config: None,
    "l2": regularizers.l2_to_init,
}

# name -> prepare(model, config) -> the model to train
ADAPTERS: dict[str, Callable] = {
    "full": lambda model, config: model,
    "lora": adapters.apply_lora,
}

# name -> post-hoc step(base, finetuned_dir, out_dir, config) -> out_dir on a finished run's weights; train() applies
# it at the end of a run (the run's model/ is then the average, finetuned/ what training produced); `talr average`
# and averaging.wise_ft_grid apply it to any pair of models.
AVERAGINGS: dict[str, Callable | None] = {
    "none": None,
    "wise_ft": averaging.wise_ft_from_config,
}

# The paper's methods as axis settings (its five baselines plus TALR and DFT).
PRESETS: dict[str, dict[str, str]] = {
    "sft": {"loss": "sft", "regularizer": "none", "adapter": "full", "averaging": "none"},
    "talr": {"loss": "talr", "regularizer": "none", "adapter": "full", "averaging": "none"},
    "dft": {"loss": "dft", "regularizer": "none", "adapter": "full", "averaging": "none"},
    "l2": {"loss": "sft", "regularizer": "l2", "adapter": "full", "averaging": "none"},
    "lora": {"loss": "sft", "regularizer": "none", "adapter": "lora", "averaging": "none"},
    "wise_ft": {"loss": "sft", "regularizer": "none", "adapter": "full", "averaging": "wise_ft"},
    "flow": {"loss": "flow", "regularizer": "none", "adapter": "full", "averaging": "none"},
}
