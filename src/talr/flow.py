"""FLOW (Sanyal et al. 2025, "Upweighting Easy Samples in Fine-Tuning Mitigates Forgetting").

Each training sample s gets a static weight from the *base* model's loss on it, computed once before training::

    f_s = mean NLL of s's supervised tokens under the base model,   tau = median_s f_s,   w_s = exp(-f_s / tau)

and training minimises ``sum_s w_s * sum_t l_{s,t} / (supervised tokens of the step)``: easy samples (low base loss)
weigh more, so the model drifts less. As in the reference code, the weights are not renormalised, so the effective
learning rate is about ``mean(w) * lr``. The scoring pass runs in float32 without autocast and its per-sample losses
are cached on disk (``talr.paths.cache_dir()/flow/<key>.json``) keyed by the model fingerprint, the dataset content,
``max_length`` and the chat template, so later runs on the same data skip it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from talr import losses

logger = logging.getLogger(__name__)

SAMPLE_WEIGHT = "sample_weight"  # the per-example feature and batch field the weighting reads
CACHE_VERSION = 1


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


@torch.no_grad()
def score_samples(model: torch.nn.Module, features: Sequence[dict], pad_token_id: int, batch_size: int = 8,
                  device: str | torch.device | None = None) -> list[float]:
    """Mean NLL of each feature's supervised tokens under ``model`` (float32, no autocast, eval mode), in order."""
    from tqdm.auto import tqdm

    from talr.data.formats import CausalLMCollator

    device = torch.device(device) if device is not None else next(model.parameters()).device
    collate = CausalLMCollator(pad_token_id=pad_token_id)
    was_training = model.training
    model.eval()
    # longest first, so the slowest batch shows up at once and padding stays low
    order = sorted(range(len(features)), key=lambda i: -len(features[i]["input_ids"]))
    result: list[float] = [math.nan] * len(features)
    try:
        for start in tqdm(range(0, len(order), batch_size), desc="FLOW: scoring samples with the base model",
                          unit="batch"):
            chunk = order[start:start + batch_size]
            batch = {k: v.to(device) for k, v in collate([features[i] for i in chunk]).items()}
            labels = batch.pop("labels")
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            logp, mask = losses.token_logprobs(logits, labels)
            mean_nll = -(logp * mask).sum(dim=-1) / mask.sum(dim=-1)
            for i, value in zip(chunk, mean_nll.tolist()):
                result[i] = value
    finally:
        model.train(was_training)
    return result


def dataset_sha256(examples: Sequence[dict]) -> str:
    """sha256 of the examples' content (canonical JSON, in order)."""
    digest = hashlib.sha256()
    for example in examples:
        digest.update(json.dumps(example, sort_keys=True, ensure_ascii=False).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def cache_key(model_fingerprint: str, data_sha256: str, max_length: int, chat_template: str | None) -> str:
    parts = {"version": CACHE_VERSION, "model": model_fingerprint, "data": data_sha256, "max_length": max_length,
             "chat_template": chat_template or ""}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()[:32]


def cache_path(key: str) -> Path:
    from talr.paths import cache_dir

    return cache_dir() / "flow" / f"{key}.json"


def _read_cache(path: Path, indices: Sequence[int]) -> list[float] | None:
    if not path.is_file():
        return None
    try:
        stored = json.loads(path.read_text())["losses"]
        return [float(stored[str(i)]) for i in indices]
    except (OSError, ValueError, KeyError, TypeError) as err:
        logger.warning("FLOW cache %s is unreadable (%s); recomputing", path, err)
        return None


def _write_cache(path: Path, indices: Sequence[int], sample_losses: Sequence[float], meta: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({**meta, "losses": {str(i): f for i, f in zip(indices, sample_losses)}}))
    os.replace(tmp, path)  # atomic: a reader never sees half a file


def base_sample_losses(model: torch.nn.Module, tokenizer, examples: Sequence[dict], features: Sequence[dict],
                       config) -> tuple[list[float], Path | None]:
    """Per-feature mean NLL under the base model, from the disk cache when ``config.flow.cache`` and the key match;
    returns ``(losses, cache_file)``."""
    from talr.models import model_fingerprint

    indices = [f["index"] for f in features]
    path = None
    if config.flow.cache:
        meta = {"model": model_fingerprint(config.model), "data_sha256": dataset_sha256(examples),
                "max_length": config.data.max_length, "chat_template": getattr(tokenizer, "chat_template", None)}
        path = cache_path(cache_key(meta["model"], meta["data_sha256"], meta["max_length"], meta["chat_template"]))
        cached = _read_cache(path, indices)
        if cached is not None:
            logger.info("FLOW: reusing the base model's sample losses from %s", path)
            return cached, path
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    sample_losses = score_samples(model, features, tokenizer.pad_token_id, config.flow.batch_size, device)
    if path is not None:
        _write_cache(path, indices, sample_losses, {"version": CACHE_VERSION, **meta})
    return sample_losses, path


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
        Path(run_dir, "flow_weights.json").write_text(json.dumps(summary, indent=1) + "\n")
    return (SAMPLE_WEIGHT,)


def restore_sample_weights(features: list[dict], run_dir: str | os.PathLike) -> tuple[str, ...]:
    """A resumed run's sample weights, read back from the ``flow_weights.json`` it wrote when it started, so it
    trains on exactly those; returns the batch fields as :func:`add_sample_weights` does, or ``()`` when the file is
    missing or does not cover these features (then they are computed again)."""
    path = Path(run_dir, "flow_weights.json")
    try:
        stored = {s["index"]: float(s["weight"]) for s in json.loads(path.read_text())["samples"]}
        weights = [stored[f["index"]] for f in features]
    except (OSError, ValueError, KeyError, TypeError):
        return ()
    for feature, weight in zip(features, weights):
        feature[SAMPLE_WEIGHT] = weight
    logger.info("FLOW: sample weights restored from %s", path)
    return (SAMPLE_WEIGHT,)
