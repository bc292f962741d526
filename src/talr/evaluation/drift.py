"""Code length and drift from the base model on general text, in one forward pass per text.

For each reference response (its prompt formatted with the chat template, the assistant turn through its end-of-turn
token scored, as in :func:`generation.response_token_ids`):

- ``bits``: -sum log2 p(token) of the response tokens; bits per byte divides by the UTF-8 bytes of the response text,
  which no tokenizer changes (two models with different tokenizers compare on it), bits per token by the tokens;
- ``kl_nats``: sum over the response positions of the forward KL(p_base || p_model) of the next-token distributions,
  the drift of the fine-tuned model from its base on text it did not train on (forward KL to the base predicts
  forgetting: Shenfeld et al. 2025, "RL's Razor", arXiv 2509.04259).

The base model's side is computed once and cached on disk (``<talr cache>/drift/``), keyed by the base weights'
fingerprint, the scored token ids and ``top_k``: storing its full distributions would cost vocab x tokens floats
(49,152 x ~60,000 = 12 GB for 1,000 Alpaca responses), so the cache keeps, per position, the base's ``top_k`` most
probable tokens with their log-probabilities and the log of the remaining mass. The KL is then computed exactly on
that partition (the top-k tokens plus one bucket for the rest): a lower bound of the full KL (coarse-graining never
increases a KL) that equals it when ``top_k`` is the vocabulary size; docs/evaluation.md gives the measured gap.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from talr.evaluation.generation import _left_padded, _length_sorted_batches, _max_length, _pad_id
from talr.evaluation.generation import response_token_ids
from talr.io import atomic_write_bytes
from talr.paths import cache_dir
from talr.run_dir import RunDir
from talr.scoring import LN2

DEFAULT_TOP_K = 256
CACHE_FORMAT = "2"  # part of the cache key: bump when what a cache file holds changes


@dataclass
class BaseSide:
    """Per text, per scored position: the base's ``top_k`` token ids ``[n, k]``, their log-probabilities ``[n, k]``
    and the log of the probability mass outside them ``[n]`` (``-inf`` when ``k`` is the vocabulary)."""

    ids: list[torch.Tensor]
    logprobs: list[torch.Tensor]
    log_rest: list[torch.Tensor]


def _sequences(tokenizer, examples: Sequence[dict]) -> list[tuple[list[int], int]]:
    return [response_token_ids(tokenizer, ex["messages"], ex["response"]) for ex in examples]


def _check_fit(model, sequences: Sequence[tuple[list[int], int]]) -> None:
    limit = _max_length(model)
    for i, (ids, _) in enumerate(sequences):
        if limit is not None and len(ids) - 1 > limit:
            raise ValueError(f"text {i}: {len(ids)} tokens do not fit the model's {limit} positions")


@torch.inference_mode()
def _scored_logprobs(model, sequences: Sequence[tuple[list[int], int]], pad_id: int, batch_size: int, desc: str,
                     progress: bool):
    """Yield ``(index, logprobs [n, vocab] float32)`` of the ``n`` scored positions of every sequence."""
    model.eval()
    device = next(model.parameters()).device
    inputs = [ids[:-1] for ids, _ in sequences]
    bar = tqdm(total=len(sequences), unit="text", desc=desc, disable=not progress)
    for batch in _length_sorted_batches([len(x) for x in inputs], batch_size):
        input_ids, attention_mask, position_ids = _left_padded([inputs[i] for i in batch], pad_id, device)
        keep = max(sequences[i][1] for i in batch)
        logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                       logits_to_keep=keep).logits
        for row, i in enumerate(batch):
            n = sequences[i][1]
            yield i, torch.log_softmax(logits[row, keep - n :].float(), dim=-1)
        bar.update(len(batch))
    bar.close()


def _top_k_side(logprobs: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    values, ids = logprobs.topk(min(k, logprobs.shape[-1]), dim=-1)
    if k >= logprobs.shape[-1]:  # the whole vocabulary: no rest (its rounding residue is not a probability)
        return ids.to(torch.int32), values, torch.full(values.shape[:-1], float("-inf"))
    # the rest's log-mass exactly as partition_kl computes the model's (logsumexp outside the top k), so a model
    # compared with itself gets 0 up to float64 rounding
    rest = logprobs.double().scatter(-1, ids, float("-inf"))
    return ids.to(torch.int32), values, torch.logsumexp(rest, dim=-1).float()


def base_side(model, tokenizer, examples: Sequence[dict], *, top_k: int = DEFAULT_TOP_K, batch_size: int = 8,
              progress: bool = False) -> BaseSide:
    """The base model's side of the KL for ``examples`` (computed, not cached; see :func:`cached_base_side`)."""
    sequences = _sequences(tokenizer, examples)
    _check_fit(model, sequences)
    n = len(sequences)
    side = BaseSide([None] * n, [None] * n, [None] * n)  # type: ignore[list-item]
    for i, logprobs in _scored_logprobs(model, sequences, _pad_id(tokenizer), batch_size, "base side", progress):
        side.ids[i], side.logprobs[i], side.log_rest[i] = _top_k_side(logprobs, top_k)
    return side


def cache_key(fingerprint: str, tokenizer, examples: Sequence[dict], top_k: int) -> str:
    """Hash of the base weights' fingerprint, every scored token sequence and ``top_k``."""
    digest = hashlib.sha256(f"{CACHE_FORMAT}\n{fingerprint}\n{top_k}\n".encode())
    for ids, n in _sequences(tokenizer, examples):
        digest.update(f"{n}:{','.join(map(str, ids))}\n".encode())
    return digest.hexdigest()[:32]


def cached_base_side(load_base, fingerprint: str, tokenizer, examples: Sequence[dict], *,
                     top_k: int = DEFAULT_TOP_K, batch_size: int = 8, progress: bool = False) -> BaseSide:
    """The base side from ``<talr cache>/drift/<key>.pt``, computing and saving it first when missing.

    ``load_base()`` returns the base model; it is called only on a cache miss.
    """
    path = cache_dir() / "drift" / f"{cache_key(fingerprint, tokenizer, examples, top_k)}.pt"
    if path.is_file():
        data = torch.load(path, weights_only=True)
        return BaseSide(data["ids"], data["logprobs"], data["log_rest"])
    side = base_side(load_base(), tokenizer, examples, top_k=top_k, batch_size=batch_size, progress=progress)
    buffer = io.BytesIO()
    torch.save({"ids": side.ids, "logprobs": side.logprobs, "log_rest": side.log_rest}, buffer)
    atomic_write_bytes(path, buffer.getvalue())  # a cut-off save never looks like a cache hit
    return side


def partition_kl(base_ids: torch.Tensor, base_logprobs: torch.Tensor, base_log_rest: torch.Tensor,
                 model_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-position KL(base || model) in nats on the partition {each of the base's top-k tokens, the rest}.

    ``model_logprobs`` are the model's full log-probabilities ``[n, vocab]``. Computed in float64.
    """
    q = model_logprobs.double()
    q_top = q.gather(-1, base_ids.long())
    p_top = base_logprobs.double()
    kl = (p_top.exp() * (p_top - q_top)).sum(-1)
    rest = base_log_rest.double()
    has_rest = torch.isfinite(rest)
    if has_rest.any():
        q_rest = q.clone()
        q_rest.scatter_(-1, base_ids.long(), float("-inf"))
        log_q_rest = torch.logsumexp(q_rest, dim=-1)
        kl = kl + torch.where(has_rest, rest.exp() * (rest - log_q_rest), torch.zeros_like(kl))
    return kl


def text_drift(model, tokenizer, examples: Sequence[dict], base: BaseSide | None, *, batch_size: int = 8,
               progress: bool = False) -> list[dict]:
    """Per example ``{"bits", "n_tokens", "bytes", "kl_nats"}`` (``kl_nats`` None without a base side).

    ``base`` must come from the same ``examples`` (and tokenizer), in the same order.
    """
    sequences = _sequences(tokenizer, examples)
    _check_fit(model, sequences)
    out: list[dict] = [{} for _ in examples]
    for i, logprobs in _scored_logprobs(model, sequences, _pad_id(tokenizer), batch_size, "text drift", progress):
        ids, n = sequences[i]
        target = torch.tensor(ids[len(ids) - n :], device=logprobs.device)
        nats = -float(logprobs.gather(-1, target[:, None]).double().sum())
        kl = None
        if base is not None:
            if base.ids[i].shape[0] != n:
                raise ValueError(f"text {i}: the base side has {base.ids[i].shape[0]} positions, the text {n}")
            kl = float(partition_kl(base.ids[i].to(logprobs.device), base.logprobs[i].to(logprobs.device),
                                    base.log_rest[i].to(logprobs.device), logprobs).sum())
        out[i] = {"bits": nats / LN2, "n_tokens": n, "bytes": len(examples[i]["response"].encode("utf-8")),
                  "kl_nats": kl}
    return out


def base_model_spec(model_spec: str | Path) -> str | None:
    """The base a model was fine-tuned from: a talr run directory's ``config.yaml`` ``model``, a WiSE-FT folder's
    ``talr_average.json`` ``base``; None when the spec records no base (an original checkpoint: its own base)."""
    import json

    path = Path(str(model_spec)).expanduser()
    run = RunDir(path)
    if run.record_file.is_file() and run.config_file.is_file():
        model = run.read_config().get("model")
        return str(model) if model else None
    record = path / "talr_average.json"
    if record.is_file():
        return json.loads(record.read_text()).get("base")
    return None
