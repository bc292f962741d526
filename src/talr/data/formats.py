"""Training data format: JSONL examples, chat-template tokenisation with assistant-only labels, and the collator.

One example per line, either ``{"messages": [{"role": ..., "content": ...}, ...]}`` (roles system/user/assistant,
at least one assistant turn) or ``{"prompt": ..., "completion": ...}`` (treated as one user turn and one assistant
turn). Extra keys are kept for the caller (``id``, ``meta``, ...). Only assistant tokens are supervised: every other
label is -100.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from talr.io import iter_jsonl
from talr.losses import IGNORE_INDEX

logger = logging.getLogger(__name__)

ROLES = ("system", "user", "assistant")


class DataFormatError(ValueError):
    """A training example is malformed; the message names the file and line."""


def _where(source: str, line: int | str | None) -> str:
    return f"{source}:{line}" if line is not None else source


def _check_text(text: str, what: str) -> None:
    # JSON can spell a lone UTF-16 surrogate ("\ud800"), which no tokenizer can encode
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise DataFormatError(f"{what} is not valid Unicode (a lone surrogate)") from None


def validate_example(example: Any, source: str = "<examples>", line: int | str | None = None) -> list[dict[str, str]]:
    """Check one example and return it as a list of chat messages (``line``: a JSONL line number or ``"row N"``)."""
    where = _where(source, line)
    if not isinstance(example, dict):
        raise DataFormatError(f"{where}: an example must be a JSON object, got {type(example).__name__}")
    if "messages" in example:
        messages = example["messages"]
        if not isinstance(messages, list) or not messages:
            raise DataFormatError(f"{where}: 'messages' must be a non-empty list")
        for k, message in enumerate(messages):
            if not isinstance(message, dict) or "role" not in message or "content" not in message:
                raise DataFormatError(f"{where}: messages[{k}] needs 'role' and 'content'")
            if message["role"] not in ROLES:
                raise DataFormatError(
                    f"{where}: messages[{k}] has role {message['role']!r}; expected one of {', '.join(ROLES)}"
                )
            if not isinstance(message["content"], str):
                raise DataFormatError(f"{where}: messages[{k}].content must be a string")
            _check_text(message["content"], f"{where}: messages[{k}].content")
        if not any(m["role"] == "assistant" for m in messages):
            raise DataFormatError(f"{where}: no assistant message, so nothing to learn from")
        return [{"role": m["role"], "content": m["content"]} for m in messages]
    if "prompt" in example or "completion" in example:
        for key in ("prompt", "completion"):
            if not isinstance(example.get(key), str):
                raise DataFormatError(f"{where}: '{key}' is missing or not a string")
            _check_text(example[key], f"{where}: '{key}'")
        return [{"role": "user", "content": example["prompt"]}, {"role": "assistant", "content": example["completion"]}]
    raise DataFormatError(f"{where}: expected a 'messages' list or 'prompt' and 'completion' fields")


def read_jsonl(path: str | Path) -> list[dict]:
    """Read and validate a JSONL file of training examples; errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Training data file {path} does not exist")
    examples = []
    for number, example in iter_jsonl(path, DataFormatError):
        validate_example(example, str(path), number)
        examples.append(example)
    if not examples:
        raise DataFormatError(f"{path}: no examples")
    return examples


def _render(tokenizer, messages: list[dict], add_generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def render_segments(tokenizer, messages: list[dict[str, str]]) -> list[tuple[str, bool]]:
    """Split the chat-template rendering of ``messages`` into ``(text, supervised)`` segments.

    Each assistant turn's segment runs from after its generation prompt to the end of the turn (so the end-of-turn
    token is learnt, and the model learns to stop). Works for any template whose rendering of a conversation prefix
    is a string prefix of the whole; a template that rewrites earlier turns raises a clear error.
    Without a chat template, turns are joined as plain text and the EOS token ends each assistant turn.
    """
    if not getattr(tokenizer, "chat_template", None):
        segments, eos = [], tokenizer.eos_token or ""
        for message in messages:
            if message["role"] == "assistant":
                segments.append((message["content"] + eos, True))
            else:
                segments.append((message["content"] + "\n", False))
        return segments
    segments: list[tuple[str, bool]] = []
    done = ""
    for k, message in enumerate(messages):
        if message["role"] == "assistant":
            prompt = _render(tokenizer, messages[:k], add_generation_prompt=True) if k else ""
            _append(segments, done, prompt, False)
            done = prompt
        full = _render(tokenizer, messages[: k + 1])
        _append(segments, done, full, message["role"] == "assistant")
        done = full
    return segments


def _append(segments: list[tuple[str, bool]], done: str, text: str, supervised: bool) -> None:
    if not text.startswith(done):
        raise DataFormatError(
            "The chat template renders a conversation prefix differently from the whole conversation, so assistant "
            "tokens cannot be located; use a template whose turns are appended in order."
        )
    if len(text) > len(done):
        segments.append((text[len(done):], supervised))


@dataclass
class TokenizeStats:
    examples: int = 0
    kept: int = 0
    truncated: int = 0
    dropped_no_supervised_tokens: int = 0
    supervised_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def tokenize_example(tokenizer, messages: list[dict[str, str]], max_length: int) -> tuple[dict[str, list[int]], bool]:
    """Token ids and labels (-100 outside assistant turns), truncated on the right to ``max_length``.

    Returns ``(features, truncated)``.
    """
    input_ids: list[int] = []
    labels: list[int] = []
    for text, supervised in render_segments(tokenizer, messages):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        input_ids.extend(ids)
        labels.extend(ids if supervised else [IGNORE_INDEX] * len(ids))
    truncated = len(input_ids) > max_length
    return {"input_ids": input_ids[:max_length], "labels": labels[:max_length]}, truncated


def tokenize_examples(
    examples: Sequence[dict], tokenizer, max_length: int, source: str = "<examples>"
) -> tuple[list[dict], TokenizeStats]:
    """Tokenise examples; drop (and count) those left with no supervised token after truncation.

    Each returned feature dict carries ``input_ids``, ``labels`` and ``index`` (the example's position in
    ``examples``, so per-example side data such as sample weights can be joined back).
    """
    stats = TokenizeStats(examples=len(examples))
    features = []
    for index, example in enumerate(examples):
        messages = validate_example(example, source, index + 1)
        feature, truncated = tokenize_example(tokenizer, messages, max_length)
        stats.truncated += truncated
        # position 0 is never a prediction target in a causal LM, so it cannot count as supervised
        supervised = sum(label != IGNORE_INDEX for label in feature["labels"][1:])
        if supervised == 0:
            stats.dropped_no_supervised_tokens += 1
            continue
        stats.kept += 1
        stats.supervised_tokens += supervised
        feature["index"] = index
        features.append(feature)
    if stats.truncated or stats.dropped_no_supervised_tokens:
        logger.warning(
            "%s: %d of %d examples truncated to %d tokens; %d dropped for having no supervised token left",
            source, stats.truncated, stats.examples, max_length, stats.dropped_no_supervised_tokens,
        )
    if not features:
        raise DataFormatError(f"{source}: every example was dropped (no supervised tokens within max_length)")
    return features, stats


@dataclass
class CausalLMCollator:
    """Right-pads ``input_ids`` / ``labels`` into a batch. Float fields named in ``float_fields`` reach
    ``compute_loss`` as tensors: a per-example number (FLOW's ``sample_weight``) is stacked into ``[batch]``, a
    per-token list aligned with the labels (talr.reference_stats' ``reference_logp``) is padded with 0 into
    ``[batch, seq]``."""

    pad_token_id: int
    pad_to_multiple_of: int | None = None
    float_fields: tuple[str, ...] = ()

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        length = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch = {
            "input_ids": torch.full((len(features), length), self.pad_token_id, dtype=torch.long),
            "attention_mask": torch.zeros((len(features), length), dtype=torch.long),
            "labels": torch.full((len(features), length), IGNORE_INDEX, dtype=torch.long),
        }
        for row, feature in enumerate(features):
            n = len(feature["input_ids"])
            batch["input_ids"][row, :n] = torch.tensor(feature["input_ids"])
            batch["attention_mask"][row, :n] = 1
            batch["labels"][row, :n] = torch.tensor(feature["labels"])
        for name in self.float_fields:
            if isinstance(features[0][name], Sequence):
                batch[name] = torch.zeros((len(features), length), dtype=torch.float32)
                for row, feature in enumerate(features):
                    batch[name][row, :len(feature[name])] = torch.tensor(feature[name], dtype=torch.float32)
            else:
                batch[name] = torch.tensor([float(f[name]) for f in features], dtype=torch.float32)
        return batch
