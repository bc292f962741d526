"""The starting (reference) model's per-token log-probabilities of the training data, computed once and cached.

Several methods read numbers that depend only on the frozen starting model and the data: FLOW's per-sample mean
losses (talr.flow) and the token weights of ``weights_from: base`` (TALR, DFT). Both are reductions of one table, the
base model's log-probability of every supervised token of every training feature, so one no-grad float32 pass (eval
mode, no autocast) computes it and later runs on the same data read it back.

The cache file is ``talr.paths.cache_dir()/reference/<key>.safetensors``: the supervised tokens' float32
log-probabilities of all features concatenated (``logp``), each feature's ``index`` and the ``offsets`` of its slice,
with the key's parts in the header's metadata. The key is the model fingerprint, the sha256 of the examples' content,
``max_length`` and the chat template (the same parts as FLOW's former JSON cache); a file that is unreadable or does
not cover the requested features is recomputed. Written atomically, so concurrent runs at worst both compute it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from talr import losses

logger = logging.getLogger(__name__)

CACHE_VERSION = 2  # 1 was FLOW's per-sample JSON cache (cache_dir()/flow), superseded by this table
# The per-token side input ``prepare`` attaches to each feature: aligned with ``labels`` (the log-probability of label
# t at position t, 0 where label t is not supervised and at position 0), so the collator pads it like the labels.
REFERENCE_LOGP = "reference_logp"


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

    return cache_dir() / "reference" / f"{key}.safetensors"


def score_tokens(model: torch.nn.Module, features: Sequence[dict], pad_token_id: int,
                 batch_size: int = 8) -> list[np.ndarray]:
    """Each feature's supervised tokens' log-probabilities under ``model`` (eval mode, no autocast, on the model's
    device), in order: one float32 array per feature, one entry per supervised label. The pass is
    :func:`talr.scoring.score_features`'s, the one the probes and ``talr analyze`` use."""
    from talr.scoring import score_features

    scores = score_features(model, features, pad_token_id, batch_size, progress=True,
                            desc="Scoring the training data with the base model")
    return [s.logp.astype(np.float32) for s in scores]


def _read(path: Path, features: Sequence[dict]) -> list[np.ndarray] | None:
    """The cached arrays of ``features`` (by their ``index``), or None when the file is absent or does not match."""
    if not path.is_file():
        return None
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        table = load_file(str(path))
        offsets, rows = table["offsets"], {int(i): k for k, i in enumerate(table["index"])}
        out = []
        for feature in features:
            k = rows[feature["index"]]
            values = table["logp"][offsets[k]:offsets[k + 1]]
            if len(values) != _supervised_count(feature):
                raise ValueError(f"feature {feature['index']} has {len(values)} cached tokens")
            out.append(values)
        return out
    except (OSError, ValueError, KeyError, SafetensorError) as err:
        logger.warning("Reference statistics cache %s is unreadable or stale (%s); recomputing", path, err)
        return None


def _write(path: Path, features: Sequence[dict], token_logps: Sequence[np.ndarray], meta: dict) -> None:
    from safetensors.numpy import save

    from talr.io import atomic_write_bytes

    lengths = np.array([len(v) for v in token_logps], dtype=np.int64)
    table = {"logp": np.concatenate(token_logps).astype(np.float32),
             "index": np.array([f["index"] for f in features], dtype=np.int64),
             "offsets": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)}
    atomic_write_bytes(path, save(table, metadata={k: str(v) for k, v in meta.items()}))


def _supervised_count(feature: dict) -> int:
    return sum(label != losses.IGNORE_INDEX for label in feature["labels"][1:])


def reference_token_logprobs(model: torch.nn.Module, tokenizer, examples: Sequence[dict], features: Sequence[dict],
                             config, batch_size: int = 8, use_cache: bool = True,
                             ) -> tuple[list[np.ndarray], Path | None]:
    """Per feature, the base ``model``'s float32 log-probabilities of its supervised tokens (call it before any
    adapter), from the disk cache when ``use_cache`` and the key match (written there otherwise); returns
    ``(arrays, cache_file)``."""
    from talr.models import model_fingerprint

    path = None
    if use_cache:
        meta = {"version": CACHE_VERSION, "model": model_fingerprint(config.model),
                "data_sha256": dataset_sha256(examples), "max_length": config.data.max_length,
                "chat_template": getattr(tokenizer, "chat_template", None) or ""}
        path = cache_path(cache_key(meta["model"], meta["data_sha256"], meta["max_length"], meta["chat_template"]))
        cached = _read(path, features)
        if cached is not None:
            logger.info("Reusing the base model's token log-probabilities from %s", path)
            return cached, path
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    token_logps = score_tokens(model, features, tokenizer.pad_token_id, batch_size)
    if path is not None:
        _write(path, features, token_logps, meta)
    return token_logps, path


def sample_mean_losses(token_logps: Sequence[np.ndarray]) -> list[float]:
    """Each feature's mean NLL over its supervised tokens (FLOW's ``f_s``), summed in float64."""
    return [-float(v.astype(np.float64).mean()) for v in token_logps]


def attach_token_logprobs(features: Sequence[dict], token_logps: Sequence[np.ndarray]) -> tuple[str, ...]:
    """Set ``feature[REFERENCE_LOGP]``, aligned with the feature's labels (see :data:`REFERENCE_LOGP`), and return
    the batch fields to carry to the loss."""
    for feature, values in zip(features, token_logps):
        supervised = np.array(feature["labels"][1:]) != losses.IGNORE_INDEX
        row = np.zeros(len(feature["labels"]), dtype=np.float32)
        row[1:][supervised] = values
        feature[REFERENCE_LOGP] = row.tolist()
    return (REFERENCE_LOGP,)
