"""FLOW (Sanyal et al. 2025, "Upweighting Easy Samples in Fine-Tuning Mitigates Forgetting").

Each training sample s gets a static weight from the *base* model's loss on it, computed once before training::

    f_s = mean NLL of s's supervised tokens under the base model,   tau = median_s f_s,   w_s = exp(-f_s / tau)

and training minimises ``sum_s w_s * sum_t l_{s,t} / (supervised tokens of the step)``: easy samples (low base loss)
weigh more, so the model drifts less. As in the reference code, the weights are not renormalised, so the effective
learning rate is about ``mean(w) * lr``. ``f_s`` is the mean of the base model's token log-probabilities of s, read
from the reference statistics cache (talr.reference_stats: one float32 scoring pass per model, data, ``max_length``
and chat template, shared with the methods whose weights come from the base model).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from talr import losses
from talr.io import atomic_write_text
from talr.reference_stats import reference_token_logprobs, sample_mean_losses
from talr.run_dir import RunDir

logger = logging.getLogger(__name__)

SAMPLE_WEIGHT = "sample_weight"  # the per-example feature and batch field the weighting reads


def flow_tau(sample_losses: Sequence[float], tau: float | str = "median", tau_min: float = losses.TAU_MIN) -> float:
    """The temperature: the median of the per-sample losses (numpy's convention for an even count), or a fixed
    positive number; a median below ``tau_min`` is raised to it so a perfectly predicted dataset does not divide by
    zero."""
    if tau != "median":
        if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not tau > 0:
            raise ValueError(f"tau must be 'median' or a positive number, got {tau!r}")
        return float(tau)
    if len(sample_losses) == 0:
        raise ValueError("FLOW needs at least one sample loss")
    return max(float(np.median(np.asarray(sample_losses, dtype=np.float64))), tau_min)


def flow_weights(sample_losses: Sequence[float], tau: float) -> list[float]:
    """``w_s = exp(-f_s / tau)`` for each per-sample loss ``f_s``."""
    return [math.exp(-float(f) / tau) for f in sample_losses]


def base_sample_losses(model: torch.nn.Module, tokenizer, examples: Sequence[dict], features: Sequence[dict],
                       config) -> tuple[list[float], Path | None]:
    """Per-feature mean NLL under the base model: a reduction of the reference model's token log-probabilities
    (talr.reference_stats, cached on disk when ``config.flow.cache``); returns ``(losses, cache_file)``."""
    token_logps, path = reference_token_logprobs(model, tokenizer, examples, features, config,
                                                 batch_size=config.flow.batch_size, use_cache=config.flow.cache)
    return sample_mean_losses(token_logps), path


def add_sample_weights(model: torch.nn.Module, tokenizer, examples: Sequence[dict], features: list[dict], config,
                       run_dir: str | os.PathLike | None = None) -> tuple[str, ...]:
    """Set ``feature["sample_weight"]`` on every feature from the base ``model`` (call it before any adapter) and
    return the batch fields the trainer must carry to the loss. With ``run_dir``, the weights and tau are written to
    ``run_dir/flow_weights.json``."""
    sample_losses, path = base_sample_losses(model, tokenizer, examples, features, config)
    tau = flow_tau(sample_losses, config.flow.tau)
    weights = flow_weights(sample_losses, tau)
    for feature, weight in zip(features, weights):
        feature[SAMPLE_WEIGHT] = weight
    logger.info("FLOW: tau = %.4f; weights min %.4f, mean %.4f, max %.4f over %d samples", tau, min(weights),
                sum(weights) / len(weights), max(weights), len(weights))
    if run_dir is not None:
        summary = {"tau": tau, "cache": str(path) if path else None, "mean_weight": sum(weights) / len(weights),
                   "samples": [{"index": f["index"], "loss": loss, "weight": w}
                               for f, loss, w in zip(features, sample_losses, weights)]}
        atomic_write_text(RunDir(run_dir).flow_weights_file, json.dumps(summary, indent=1) + "\n")
    return (SAMPLE_WEIGHT,)


def restore_sample_weights(features: list[dict], run_dir: str | os.PathLike) -> tuple[str, ...]:
    """A resumed run's sample weights, read back from the ``flow_weights.json`` it wrote when it started, so it
    trains on exactly those; returns the batch fields as :func:`add_sample_weights` does, or ``()`` when the file is
    missing or does not cover these features (then they are computed again)."""
    path = RunDir(run_dir).flow_weights_file
    try:
        stored = {s["index"]: float(s["weight"]) for s in json.loads(path.read_text())["samples"]}
        weights = [stored[f["index"]] for f in features]
    except (OSError, ValueError, KeyError, TypeError):
        return ()
    for feature, weight in zip(features, weights):
        feature[SAMPLE_WEIGHT] = weight
    logger.info("FLOW: sample weights restored from %s", path)
    return (SAMPLE_WEIGHT,)
