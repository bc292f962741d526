"""Model calls used by evaluation: batched greedy generation, log-likelihood scoring, response code length.

All three take a Hugging Face causal LM and its tokenizer. Batches are sorted by length (longest first, so an
out-of-memory error shows up in the first batch) and LEFT padded with explicit position ids, so a prompt's result
does not depend on which other prompts share its batch (tests check batched == one-at-a-time).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Sequence

import torch
from tqdm.auto import tqdm
from transformers import DynamicCache

from talr.scoring import LN2



def chat_prompt(tokenizer, messages: Sequence[dict], prefix: str = "") -> str:
    """The chat-template text that asks the model for the next assistant turn, plus an optional start of that turn.

    ``prefix`` is text the assistant turn begins with (lm-eval's ``gen_prefix``); the model continues from it.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"tokenizer {type(tokenizer).__name__} ({getattr(tokenizer, 'name_or_path', '?')}) has no chat_template; "
            "evaluation prompts are chat messages"
        )
    text = tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)
    return text + prefix


def _encode(tokenizer, text: str) -> list[int]:
    # Chat templates write their own BOS/turn markers, so the tokenizer must not add special tokens again.
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _pad_id(tokenizer) -> int:
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    if tokenizer.eos_token_id is not None:
        return tokenizer.eos_token_id
    raise ValueError(f"tokenizer {getattr(tokenizer, 'name_or_path', '?')} has neither a pad nor an eos token")


def _eos_ids(model, tokenizer) -> list[int]:
    ids: list[int] = []
    for source in (getattr(model.generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if source is None:
            continue
        for token in source if isinstance(source, (list, tuple)) else [source]:
            if token not in ids:
                ids.append(int(token))
    return ids


def _left_padded(rows: Sequence[Sequence[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """input_ids, attention_mask and position_ids for left-padded rows (positions start at 0 on the first real token)."""
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            input_ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            attention_mask[i, width - len(row) :] = 1
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    return input_ids.to(device), attention_mask.to(device), position_ids.to(device)


def _length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def truncate_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` cut before the earliest occurrence of any stop string (unchanged when none occurs)."""
    cut = len(text)
    for s in stop:
        if s:
            at = text.find(s)
            if at != -1:
                cut = min(cut, at)
    return text[:cut]


class _StopCheck:
    """Whether a row is done after its newest token: an EOS token, or one of the stop strings in its decoded tail.

    Only the newest tokens need decoding: a stop string of ``n`` characters lies within the last ``n`` tokens plus a
    few for tokens that straddle it.
    """

    def __init__(self, tokenizer, stop: Sequence[str], eos_ids: Sequence[int]):
        self.tokenizer = tokenizer
        self.stop = [s for s in stop if s]
        self.eos_ids = set(eos_ids)
        self.window = max((len(s) for s in self.stop), default=0) + 4

    def __call__(self, row: list[int]) -> bool:
        if row[-1] in self.eos_ids:
            return True
        if not self.stop:
            return False
        tail = self.tokenizer.decode(row[-self.window :], skip_special_tokens=True)
        return any(s in tail for s in self.stop)


def _cache_argument(model) -> str:
    """The forward's name for the KV cache: ``cache`` since transformers 5.2x (``past_key_values`` then warns that it
    is deprecated on every generation), ``past_key_values`` before."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _greedy_batch(model, input_ids, attention_mask, position_ids, max_new_tokens: int, done: _StopCheck):
    """Greedy new tokens of each left-padded row, with a KV cache; a row leaves the batch once it is done.

    Dropping finished rows (from the cache too) is what transformers' ``generate`` does not do: there a row that ended
    early keeps being computed, padded, until the batch's longest row is done, which on long budgets (IFEval's 1,280
    tokens) can be most of the work. Greedy argmax over the raw logits is ``generate(do_sample=False)`` without logits
    processors; tests check the outputs equal plain ``model.generate`` on unpadded prompts.
    """
    rows: list[list[int]] = [[] for _ in range(input_ids.shape[0])]
    active = list(range(input_ids.shape[0]))
    cache = {_cache_argument(model): DynamicCache(config=model.config)}
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                   use_cache=True, logits_to_keep=1, **cache).logits
    next_position = position_ids[:, -1] + 1
    for step in range(max_new_tokens):
        tokens = logits[:, -1].argmax(-1)
        keep = []
        for k, (i, token) in enumerate(zip(active, tokens.tolist())):
            rows[i].append(token)
            if not done(rows[i]):
                keep.append(k)
        if not keep or step == max_new_tokens - 1:
            break
        if len(keep) < len(active):
            index = torch.tensor(keep, device=input_ids.device)
            next(iter(cache.values())).batch_select_indices(index)
            active = [active[k] for k in keep]
            tokens, attention_mask, next_position = tokens[index], attention_mask[index], next_position[index]
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones(len(active), 1)], dim=1)
        logits = model(input_ids=tokens[:, None], attention_mask=attention_mask, position_ids=next_position[:, None],
                       use_cache=True, **cache).logits
        next_position = next_position + 1
    return rows


@torch.inference_mode()
def generate(
    model,
    tokenizer,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    stop: Sequence[str] = (),
    batch_size: int = 16,
    progress: bool = False,
    on_batch: Callable[[list[int], list[str]], None] | None = None,
) -> list[str]:
    """Greedy continuations of already formatted prompt texts (see :func:`chat_prompt`), in input order.

    Each output is the decoded new text (special tokens skipped) cut at the first stop string. ``on_batch(indices,
    outputs)`` is called as each batch completes, with positions into ``prompts``, so callers can save results as
    they come.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    model.eval()
    encoded = [_encode(tokenizer, p) for p in prompts]
    for i, ids in enumerate(encoded):
        if not ids:
            raise ValueError(f"prompt {i} encodes to no tokens")
    pad_id = _pad_id(tokenizer)
    done = _StopCheck(tokenizer, stop, _eos_ids(model, tokenizer))
    device = next(model.parameters()).device
    outputs: list[str | None] = [None] * len(prompts)
    bar = tqdm(total=len(prompts), unit="item", desc="generate", disable=not progress)
    for batch in _length_sorted_batches([len(e) for e in encoded], batch_size):
        input_ids, attention_mask, position_ids = _left_padded([encoded[i] for i in batch], pad_id, device)
        new_tokens = _greedy_batch(model, input_ids, attention_mask, position_ids, max_new_tokens, done)
        texts = [truncate_at_stop(tokenizer.decode(row, skip_special_tokens=True), stop) for row in new_tokens]
        for i, text in zip(batch, texts):
            outputs[i] = text
        if on_batch is not None:
            on_batch(list(batch), texts)
        bar.update(len(batch))
    bar.close()
    return outputs  # type: ignore[return-value]


def _max_length(model) -> int | None:
    return getattr(model.config, "max_position_embeddings", None)


@torch.inference_mode()
def _span_logprobs(
    model, sequences: Sequence[tuple[list[int], int]], pad_id: int, batch_size: int, progress: bool, desc: str
) -> list[float | None]:
    """Sum of natural-log probabilities of the last ``n`` tokens of each ``(token_ids, n)`` given what precedes them.

    None where the ``n`` scored tokens alone exceed the model's positions (the caller records that item as failed);
    a longer context is cut from the left.

    Rows are left padded, so the scored tokens sit at the end of every row and only the last ``max n`` positions'
    logits are computed (``logits_to_keep``): the vocabulary-sized logits are the memory that matters.
    """
    model.eval()
    device = next(model.parameters()).device
    limit = _max_length(model)
    inputs, targets, fits = [], [], []
    for ids, n in sequences:
        if n < 1 or n > len(ids) - 1:
            raise ValueError(f"cannot score {n} tokens of a {len(ids)}-token sequence")
        if limit is not None and len(ids) - 1 > limit:
            ids = ids[-(limit + 1) :]  # keep the scored tail and as much context as fits, like lm-eval
        inputs.append(ids[:-1])
        targets.append(ids[len(ids) - n :])
        fits.append(limit is None or n <= limit)
    # Sequences with the same input row and span length share one forward pass: the logits at the scored positions
    # depend on the inputs only (e.g. BoolQ's " no"/" yes" or MMLU's letters, one-token answers to one context).
    rows: dict[tuple[tuple[int, ...], int], list[int]] = {}
    for i in range(len(sequences)):
        if fits[i]:
            rows.setdefault((tuple(inputs[i]), len(targets[i])), []).append(i)
    unique = list(rows.values())
    results: list[float | None] = [None] * len(sequences)
    bar = tqdm(total=len(sequences), unit="item", desc=desc, disable=not progress)
    bar.update(len(sequences) - sum(len(members) for members in unique))
    for group in _length_sorted_batches([len(inputs[members[0]]) for members in unique], batch_size):
        batch = [unique[j] for j in group]
        input_ids, attention_mask, position_ids = _left_padded([inputs[m[0]] for m in batch], pad_id, device)
        keep = max(len(targets[m[0]]) for m in batch)
        logits = model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, logits_to_keep=keep
        ).logits
        for row, members in enumerate(batch):
            n = len(targets[members[0]])
            logprobs = torch.log_softmax(logits[row, keep - n :].float(), dim=-1)
            for i in members:
                target = torch.tensor(targets[i], device=device)
                results[i] = float(logprobs.gather(-1, target[:, None]).double().sum())
            bar.update(len(members))
    bar.close()
    return results


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], int]:
    """Token ids of context+continuation and how many trailing ids are the continuation (lm-eval's ``_encode_pair``).

    The whole string is tokenized at once so merges across the boundary match how the text would be read; trailing
    spaces of the context move to the continuation, as lm-eval does. An empty context is replaced by the BOS (else EOS)
    token so the first continuation token has something to be conditioned on.
    """
    spaces = len(context) - len(context.rstrip(" "))
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    if not context:
        prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        if prefix is None:
            raise ValueError("empty context and the tokenizer has neither a BOS nor an EOS token to stand in for it")
        return [prefix, *whole], len(whole)
    context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
    return whole, len(whole) - len(context_ids)


def loglikelihood(
    model, tokenizer, requests: Sequence[tuple[str, str]], *, batch_size: int = 16, progress: bool = False
) -> list[float | None]:
    """log P(continuation | context) summed over the continuation's tokens, for each ``(context, continuation)``
    (None for a continuation longer than the model's context window)."""
    sequences = [encode_pair(tokenizer, c, x) for c, x in requests]
    return _span_logprobs(model, sequences, _pad_id(tokenizer), batch_size, progress, "loglikelihood")


def response_token_ids(tokenizer, messages: Sequence[dict], response: str) -> tuple[list[int], int]:
    """Ids of the chat-formatted conversation ending in ``response`` and how many trailing ids are the response.

    The response tokens are the assistant turn as the chat template writes it, up to and including its end-of-turn
    (EOS) token, which is what SFT trains on; anything the template adds after that token (e.g. a newline) is dropped.
    """
    prompt = chat_prompt(tokenizer, messages)
    full = tokenizer.apply_chat_template(
        [*messages, {"role": "assistant", "content": response}], tokenize=False
    )
    if not full.startswith(prompt):
        raise ValueError("the chat template renders the conversation so that it does not start with its prompt")
    prompt_ids = _encode(tokenizer, prompt)
    ids = _encode(tokenizer, full)
    if ids[: len(prompt_ids)] != prompt_ids:  # a merge across the prompt/response boundary: tokenize apart
        ids = prompt_ids + _encode(tokenizer, full[len(prompt) :])
    response_ids = ids[len(prompt_ids) :]
    eos = tokenizer.eos_token_id
    if eos is not None and eos in response_ids:
        response_ids = response_ids[: response_ids.index(eos) + 1]
    if not response_ids:
        raise ValueError("empty response: nothing to score")
    return prompt_ids + response_ids, len(response_ids)


def _common_prefix_length(rows: Sequence[Sequence[int]]) -> int:
    """How many leading tokens every row shares, leaving each row at least its last token of its own."""
    length = min(len(r) for r in rows) - 1
    first = rows[0]
    for row in rows[1:]:
        same = 0
        while same < length and row[same] == first[same]:
            same += 1
        length = same
    return max(length, 0)


@torch.inference_mode()
def _shared_prefix_logprobs(model, groups: Sequence[tuple[list[int], list[list[int]]]], pad_id: int,
                            batch_size: int) -> list[list[float]]:
    """For each ``(prefix ids, [continuation ids, ...])``: the summed log-probability of every continuation given the
    prefix, running the prefix once (its KV cache is copied to one row per continuation).

    The leading tokens all prefixes share (a system prompt and a task's instructions: ~70 % of an ESCI prompt) run
    once for the whole call, and every batch starts from a copy of their cache. Each row is then laid out as
    ``[shared tokens][left padding][own prefix tokens]`` with explicit positions and the padding masked, so the last
    column is every row's last prompt token; continuations are right padded after it, which no real token attends to
    (causal attention), so each continuation's result does not depend on its batch.
    """
    model.eval()
    device = next(model.parameters()).device
    cache_name = _cache_argument(model)
    out: list[list[float]] = [[] for _ in groups]
    shared = _common_prefix_length([p for p, _ in groups]) if len(groups) > 1 else 0
    shared_cache = None
    if shared:
        shared_cache = DynamicCache(config=model.config)
        model(input_ids=torch.tensor([groups[0][0][:shared]], device=device), use_cache=True, logits_to_keep=1,
              **{cache_name: shared_cache})
    for batch in _length_sorted_batches([len(p) for p, _ in groups], batch_size):
        input_ids, attention_mask, position_ids = _left_padded([groups[g][0][shared:] for g in batch], pad_id, device)
        if shared_cache is None:
            cache = DynamicCache(config=model.config)
        else:
            cache = copy.deepcopy(shared_cache)
            cache.batch_repeat_interleave(len(batch))
            attention_mask = torch.cat([attention_mask.new_ones((len(batch), shared)), attention_mask], 1)
            position_ids = position_ids + shared
        first = torch.log_softmax(model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                        use_cache=True, logits_to_keep=1, **{cache_name: cache}).logits[:, -1].float(),
                                  dim=-1)
        rows = [(b, c) for b, g in enumerate(batch) for c in groups[g][1]]  # (prefix row, continuation)
        width = max(len(c) for _, c in rows) - 1
        later = None
        if width > 0:
            cache.batch_select_indices(torch.tensor([b for b, _ in rows], device=device))
            tokens = torch.full((len(rows), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for r, (_, c) in enumerate(rows):
                tokens[r, : len(c) - 1] = torch.tensor(c[:-1], dtype=torch.long)
                mask[r, : len(c) - 1] = 1
            prefix_rows = torch.tensor([b for b, _ in rows], device=device)
            start = position_ids[prefix_rows, -1:] + 1
            full_mask = torch.cat([attention_mask[prefix_rows], mask.to(device)], 1)
            positions = start + torch.arange(width, device=device)
            later = torch.log_softmax(model(
                input_ids=tokens.to(device), attention_mask=full_mask, position_ids=positions, use_cache=True,
                **{cache_name: cache},
            ).logits.float(), dim=-1)
        r = 0
        for b, g in enumerate(batch):
            for c in groups[g][1]:
                total = first[b, c[0]].double()
                if len(c) > 1:
                    total = total + later[r, torch.arange(len(c) - 1), torch.tensor(c[1:])].double().sum()
                out[g].append(float(total))
                r += 1
    return out


def response_loglikelihood(
    model, tokenizer, examples: Sequence[dict], *, batch_size: int = 8, progress: bool = False
) -> list[float | None]:
    """Natural-log probability of each reference response ``{"messages": [...], "response": str}`` as the whole
    assistant turn (see :func:`response_token_ids`); None for a response longer than the model's context window.

    Responses to the same prompt (candidate answers) share one pass over the prompt.
    """
    sequences = [response_token_ids(tokenizer, ex["messages"], ex["response"]) for ex in examples]
    limit = _max_length(model)
    groups: dict[tuple[int, ...], list[int]] = {}
    results: list[float | None] = [None] * len(sequences)
    for i, (ids, n) in enumerate(sequences):
        if limit is None or len(ids) - 1 <= limit:
            groups.setdefault(tuple(ids[: len(ids) - n]), []).append(i)
    prefixes = list(groups)
    bar = tqdm(total=len(sequences), unit="item", desc="response log-likelihood", disable=not progress)
    values = _shared_prefix_logprobs(
        model, [(list(p), [sequences[i][0][len(p):] for i in groups[p]]) for p in prefixes], _pad_id(tokenizer),
        batch_size,
    )
    for prefix, group_values in zip(prefixes, values):
        for i, value in zip(groups[prefix], group_values):
            results[i] = value
    bar.update(len(sequences))
    bar.close()
    return results


def response_bits(
    model, tokenizer, examples: Sequence[dict], *, batch_size: int = 8, progress: bool = False
) -> list[tuple[float | None, int]]:
    """Code length of reference responses: ``(bits, n_tokens)`` per example ``{"messages": [...], "response": str}``.

    ``messages`` are the prompt turns (formatted with the chat template and a generation prompt); only the response
    tokens are scored (see :func:`response_token_ids`). ``bits = -sum log2 p(token)``; bits per token is the ratio.
    ``bits`` is None for a response longer than the model's context window.
    """
    sequences = [response_token_ids(tokenizer, ex["messages"], ex["response"]) for ex in examples]
    logprobs = _span_logprobs(model, sequences, _pad_id(tokenizer), batch_size, progress, "response bits")
    return [(None if lp is None else -lp / LN2, n) for lp, (_, n) in zip(logprobs, sequences)]
