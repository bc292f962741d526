"""Per-token scoring: the natural-log probability a model gives every supervised target token of chat examples.

:func:`score_examples` tokenises chat examples exactly as training does (:func:`talr.data.formats.tokenize_examples`:
chat template, assistant tokens only); :func:`score_features` scores already tokenised features. The training-time
probes (``talr.callbacks``), ``talr analyze``, ``talr codelength`` and ``talr advise`` all score through here; the
statistics of the scores are in :mod:`talr.token_stats`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from talr import losses
from talr.data.formats import CausalLMCollator, TokenizeStats, tokenize_examples

LN2 = math.log(2.0)


@dataclass
class ExampleScores:
    """The supervised target tokens of one example and their log-probabilities under one model."""

    index: int  # position of the example in the list that was scored
    input_ids: list[int]
    positions: np.ndarray  # where each target token sits in input_ids
    logp: np.ndarray  # natural-log probability of each target token, float64

    @property
    def token_ids(self) -> np.ndarray:
        return np.asarray(self.input_ids, dtype=np.int64)[self.positions]

    @property
    def bits(self) -> float:
        return float(-self.logp.sum() / LN2)


def _accepts_logits_to_keep(model) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


@torch.no_grad()
def score_features(model, features: Sequence[dict], pad_token_id: int, batch_size: int = 8,
                   progress: bool = False, desc: str = "scoring tokens") -> list[ExampleScores]:
    """Log-probability of every supervised target token of tokenised ``features`` (see ``tokenize_examples``).

    Runs in eval mode and restores the model's previous mode. Batches are formed longest-first to waste little
    padding, and logits are computed only from the first position any row of the batch needs (``logits_to_keep``),
    since the ``[batch, length, vocab]`` logits of long prompts dominate memory.
    """
    from tqdm.auto import tqdm

    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        keep_supported = _accepts_logits_to_keep(model)
        collate = CausalLMCollator(pad_token_id=pad_token_id)
        order = sorted(range(len(features)), key=lambda i: -len(features[i]["input_ids"]))
        out: list[ExampleScores | None] = [None] * len(features)
        for start in tqdm(range(0, len(order), batch_size), desc=desc, disable=not progress, leave=False):
            rows = order[start:start + batch_size]
            batch = collate([features[i] for i in rows])
            labels = batch.pop("labels")
            supervised = labels[:, 1:] != losses.IGNORE_INDEX
            first_target = int(supervised.any(dim=0).nonzero()[0]) + 1  # earliest supervised position in the batch
            offset = first_target - 1 if keep_supported else 0  # the logit at offset predicts position offset + 1
            kwargs = {"logits_to_keep": labels.shape[1] - offset} if offset else {}
            logits = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                           use_cache=False, **kwargs).logits
            logp, mask = losses.token_logprobs(logits, labels[:, offset:].to(device))
            logp, mask = logp.double().cpu(), mask.cpu()
            for r, i in enumerate(rows):
                cols = mask[r].nonzero().squeeze(-1)
                out[i] = ExampleScores(
                    index=int(features[i].get("index", i)), input_ids=list(features[i]["input_ids"]),
                    positions=(cols + offset + 1).numpy(), logp=logp[r, cols].numpy(),
                )
        return out  # type: ignore[return-value]
    finally:
        model.train(was_training)


def score_examples(model, tokenizer, examples: Sequence[dict], max_length: int = 512, batch_size: int = 8,
                   progress: bool = False, source: str = "<examples>") -> tuple[list[ExampleScores], TokenizeStats]:
    """Tokenise chat examples as training does and score their supervised tokens (:func:`score_features`)."""
    features, stats = tokenize_examples(examples, tokenizer, max_length, source=source)
    scores = score_features(model, features, tokenizer.pad_token_id, batch_size, progress, desc=f"scoring {source}")
    return scores, stats
