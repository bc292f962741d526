"""Token-level analysis and code length: how probable each supervised target token is under a model, and what that
says about the data and about what fine-tuning did.

Everything starts from :func:`score_examples`, which tokenises chat examples exactly as training does
(:func:`talr.data.formats.tokenize_examples`: chat template, assistant tokens only) and records the natural-log
probability of every supervised target token. The statistics are pure functions of those scores:

* hard-token fractions (probability below a threshold; the paper's "hard" is p < 0.2), per-example statistics, the
  hardest tokens in context, and (for two models) which tokens' probabilities moved most;
* code length: a response ``z`` costs ``L_q(z) = -log2 q(z)`` bits under model ``q``, and for two models on the same
  responses ``Delta L(P) = E_P[L_q2] - E_P[L_q1] = KL(P || q2) - KL(P || q1)`` (the paper's Delta L). Both models
  score the same responses, so its standard error comes from the paired per-response differences.
"""

from __future__ import annotations

import collections
import inspect
import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from talr import losses
from talr.data.formats import CausalLMCollator, DataFormatError, TokenizeStats, read_jsonl, tokenize_examples
from talr.paths import data_dir
from talr.stats import cost_per_gain, mean_with_se, ratio_of_sums_with_se

LN2 = math.log(2.0)
HARD_THRESHOLDS = (0.1, losses.HARD_TOKEN_PROB, 0.5)
ALPACA_FILE = "alpaca/alpaca_5000.json"


# ---------------------------------------------------------------------------------------------------------------
# Data


def alpaca_to_chat(row: dict, source: str = "<alpaca>", line: int | None = None) -> dict:
    """One Alpaca row (``instruction``, optional ``input``, ``output``) as a user/assistant chat example."""
    where = f"{source}:{line}" if line is not None else source
    for key in ("instruction", "output"):
        if not isinstance(row.get(key), str):
            raise DataFormatError(f"{where}: Alpaca row needs a string {key!r}")
    prompt = row["instruction"] if not row.get("input") else f"{row['instruction']}\n\n{row['input']}"
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": row["output"]}]}


def load_chat_examples(path: str | Path) -> list[dict]:
    """Chat examples from a JSONL file of training examples, or from a JSON list of Alpaca rows (or of examples).

    The keyword ``alpaca`` names the Alpaca subset in the shared data folder (``talr.paths.data_dir()``).
    """
    if str(path) == "alpaca":
        path = data_dir() / ALPACA_FILE
        if not path.is_file():
            raise FileNotFoundError(f"The Alpaca general probe set {path} is missing; pass a JSONL file of chat examples")
    path = Path(path)
    if path.suffix != ".json":
        return read_jsonl(path)
    if not path.is_file():
        raise FileNotFoundError(f"Data file {path} does not exist")
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataFormatError(f"{path}: invalid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(rows, list) or not rows:
        raise DataFormatError(f"{path}: expected a non-empty JSON list of examples")
    return [row if "messages" in row or "prompt" in row else alpaca_to_chat(row, str(path), k + 1)
            for k, row in enumerate(rows)]


def default_general_probe() -> Path | None:
    """The Alpaca subset of the shared data folder, if there is one."""
    path = data_dir() / ALPACA_FILE
    return path if path.is_file() else None


def sample_examples(examples: Sequence[dict], n: int | None, seed: int = 0) -> list[dict]:
    """A seeded random subset of ``n`` examples in their original order (all of them when ``n`` is None or larger)."""
    if n is None or n >= len(examples):
        return list(examples)
    chosen = sorted(random.Random(seed).sample(range(len(examples)), n))
    return [examples[i] for i in chosen]


# ---------------------------------------------------------------------------------------------------------------
# Scoring


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


# ---------------------------------------------------------------------------------------------------------------
# Token statistics


def all_logp(scores: Sequence[ExampleScores]) -> np.ndarray:
    return np.concatenate([s.logp for s in scores]) if scores else np.zeros(0)


def hard_token_fractions(logp: np.ndarray, thresholds: Sequence[float] = HARD_THRESHOLDS) -> dict[float, float]:
    """Fraction of tokens whose probability is below each threshold."""
    if logp.size == 0:
        raise ValueError("no tokens to measure")
    probs = np.exp(logp)
    return {float(t): float((probs < t).mean()) for t in thresholds}


def example_statistics(scores: Sequence[ExampleScores], hard_threshold: float = losses.HARD_TOKEN_PROB) -> list[dict]:
    """Per example: supervised tokens, code length (bits, bits/token), mean and minimum token probability, and the
    fraction of hard tokens."""
    rows = []
    for s in scores:
        probs = np.exp(s.logp)
        rows.append({
            "index": s.index, "tokens": int(s.logp.size), "bits": s.bits, "bits_per_token": s.bits / s.logp.size,
            "mean_prob": float(probs.mean()), "min_prob": float(probs.min()),
            "hard_frac": float((probs < hard_threshold).mean()),
        })
    return rows


def _decode(tokenizer, ids) -> str:
    return tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)


def token_in_context(tokenizer, score: ExampleScores, k: int, left: int = 16, right: int = 6) -> dict:
    """The ``k``-th target token of an example with the text around it (``left``/``right`` tokens)."""
    pos = int(score.positions[k])
    ids = score.input_ids
    return {
        "index": score.index, "position": pos, "token_id": int(ids[pos]), "token": _decode(tokenizer, [ids[pos]]),
        "before": _decode(tokenizer, ids[max(0, pos - left):pos]), "after": _decode(tokenizer, ids[pos + 1:pos + 1 + right]),
    }


def hardest_tokens(scores: Sequence[ExampleScores], tokenizer, count: int = 20, left: int = 16,
                   right: int = 6) -> list[dict]:
    """The ``count`` least probable target tokens over all examples, each with its surrounding text."""
    flat = [(float(lp), e, k) for e, s in enumerate(scores) for k, lp in enumerate(s.logp)]
    flat.sort(key=lambda item: item[0])
    return [{**token_in_context(tokenizer, scores[e], k, left, right), "prob": math.exp(lp)}
            for lp, e, k in flat[:count]]


def hard_token_types(scores: Sequence[ExampleScores], tokenizer, threshold: float = losses.HARD_TOKEN_PROB,
                     count: int = 20) -> list[dict]:
    """The token strings that are most often hard: how many of their occurrences are hard, out of how many."""
    hard: collections.Counter = collections.Counter()
    seen: collections.Counter = collections.Counter()
    for s in scores:
        ids = s.token_ids
        seen.update(ids.tolist())
        hard.update(ids[np.exp(s.logp) < threshold].tolist())
    return [{"token": _decode(tokenizer, [tid]), "token_id": int(tid), "hard": n, "occurrences": seen[tid],
             "hard_rate": n / seen[tid]} for tid, n in hard.most_common(count)]


def probability_summary(scores: Sequence[ExampleScores], thresholds: Sequence[float] = HARD_THRESHOLDS) -> dict:
    logp = all_logp(scores)
    bits = np.array([s.bits for s in scores])
    tokens = np.array([s.logp.size for s in scores], dtype=np.float64)
    bpt, bpt_se = ratio_of_sums_with_se(bits, tokens)
    return {
        "examples": len(scores), "tokens": int(logp.size),
        "hard_frac": {str(t): f for t, f in hard_token_fractions(logp, thresholds).items()},
        "mean_prob": float(np.exp(logp).mean()), "median_prob": float(np.median(np.exp(logp))),
        "bits_per_token": bpt, "bits_per_token_se": bpt_se,
    }


def _check_aligned(scores_a: Sequence[ExampleScores], scores_b: Sequence[ExampleScores]) -> None:
    if len(scores_a) != len(scores_b):
        raise ValueError(f"the two models scored {len(scores_a)} and {len(scores_b)} examples")
    for a, b in zip(scores_a, scores_b):
        if a.index != b.index or a.input_ids != b.input_ids or not np.array_equal(a.positions, b.positions):
            raise ValueError(
                f"example {a.index}: the two models tokenise it differently, so tokens cannot be compared one to one "
                "(token-level comparison needs the same tokenizer; code length works across tokenizers)"
            )


def largest_changes(scores_a: Sequence[ExampleScores], scores_b: Sequence[ExampleScores], tokenizer,
                    count: int = 20, left: int = 16, right: int = 6) -> dict[str, list[dict]]:
    """The tokens whose log-probability rose and fell most from model A to model B, each in context."""
    _check_aligned(scores_a, scores_b)
    flat = [(float(b.logp[k] - a.logp[k]), e, k) for e, (a, b) in enumerate(zip(scores_a, scores_b))
            for k in range(a.logp.size)]
    flat.sort(key=lambda item: item[0])

    def describe(delta: float, e: int, k: int) -> dict:
        return {**token_in_context(tokenizer, scores_a[e], k, left, right), "prob_a": math.exp(scores_a[e].logp[k]),
                "prob_b": math.exp(scores_b[e].logp[k]), "delta_logp": delta}

    return {"rose": [describe(*item) for item in reversed(flat[-count:])],
            "fell": [describe(*item) for item in flat[:count]]}


def change_by_initial_probability(logp_a: np.ndarray, logp_b: np.ndarray,
                                  edges: Sequence[float] = (0.0, 0.01, 0.1, 0.2, 0.5, 0.9, 1.0)) -> list[dict]:
    """Mean change of log-probability from model A to model B, grouped by the token's probability under model A
    (bins ``[edges[i], edges[i+1])``, the last one closed): do hard tokens move more or less than easy ones?"""
    if logp_a.shape != logp_b.shape:
        raise ValueError("the two log-probability arrays must align token for token")
    pa = np.exp(logp_a)
    rows = []
    for i, (low, high) in enumerate(zip(edges[:-1], edges[1:])):
        last = i == len(edges) - 2
        inside = (pa >= low) & ((pa <= high) if last else (pa < high))
        n = int(inside.sum())
        delta = logp_b[inside] - logp_a[inside]
        rows.append({"low": low, "high": high, "tokens": n,
                     "mean_delta_logp": float(delta.mean()) if n else None,
                     "mean_prob_a": float(pa[inside].mean()) if n else None,
                     "mean_prob_b": float(np.exp(logp_b[inside]).mean()) if n else None})
    return rows


# ---------------------------------------------------------------------------------------------------------------
# Code length


def code_lengths(scores: Sequence[ExampleScores]) -> tuple[np.ndarray, np.ndarray]:
    """Per example: code length of its supervised tokens in bits, and their count."""
    return (np.array([s.bits for s in scores], dtype=np.float64),
            np.array([s.logp.size for s in scores], dtype=np.float64))


def _paired(scores_a: Sequence[ExampleScores], scores_b: Sequence[ExampleScores]):
    # Examples a model dropped (no supervised token left after truncation) cannot be paired.
    by_index = {s.index: s for s in scores_b}
    pairs = [(a, by_index[a.index]) for a in scores_a if a.index in by_index]
    if not pairs:
        raise ValueError("the two models share no scored example")
    return [a for a, _ in pairs], [b for _, b in pairs]


def compare_code_lengths(scores_a: Sequence[ExampleScores], scores_b: Sequence[ExampleScores]) -> dict:
    """Code length of the same responses under model A (q1) and model B (q2), and ``Delta L = L_B - L_A``.

    ``delta_bits`` is per response (the paper's Delta L, in bits); ``delta_bits_per_token`` divides the summed
    differences by model A's token count. Standard errors treat responses as the independent units and use the
    paired differences, which is what makes small Delta L measurable on a few hundred responses.
    """
    a, b = _paired(scores_a, scores_b)
    bits_a, tokens_a = code_lengths(a)
    bits_b, tokens_b = code_lengths(b)
    diff = bits_b - bits_a
    out = {"examples": len(a)}
    for name, bits, tokens in (("a", bits_a, tokens_a), ("b", bits_b, tokens_b)):
        out[f"bits_{name}"], out[f"bits_{name}_se"] = mean_with_se(bits)
        out[f"bits_per_token_{name}"], out[f"bits_per_token_{name}_se"] = ratio_of_sums_with_se(bits, tokens)
    out["delta_bits"], out["delta_bits_se"] = mean_with_se(diff)
    out["delta_bits_per_token"], out["delta_bits_per_token_se"] = ratio_of_sums_with_se(diff, tokens_a)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Plots


def plot_probability_histogram(probs: dict[str, np.ndarray], path: str | Path, log_scale: bool = False,
                               thresholds: Sequence[float] = HARD_THRESHOLDS, bins: int = 50) -> Path:
    """Histogram of target-token probabilities, one outline per model, with the hard-token thresholds marked.

    ``log_scale`` spaces the bins logarithmically in probability (down to the smallest one seen) and puts the counts
    on a log axis, which shows the tail of very improbable tokens that a linear plot squeezes into its first bin.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    if log_scale:
        smallest = min(float(p[p > 0].min()) for p in probs.values() if (p > 0).any())
        edges = np.logspace(math.floor(math.log10(smallest)), 0, bins + 1)
        ax.set_xscale("log")
        ax.set_yscale("log")
    else:
        edges = np.linspace(0, 1, bins + 1)
    for label, p in probs.items():
        ax.hist(np.clip(p, edges[0], 1.0), bins=edges, histtype="step", linewidth=1.5,
                weights=np.full(p.size, 100.0 / p.size), label=f"{label} ({p.size} tokens)")
    for k, t in enumerate(thresholds):
        ax.axvline(t, color="grey", linestyle=":", linewidth=1,
                   label="hard-token thresholds p = " + ", ".join(f"{x:g}" for x in thresholds) if k == 0 else None)
    ax.set_xlabel("probability of the target token" + (" (log scale)" if log_scale else ""))
    ax.set_ylabel("% of supervised tokens" + (" (log scale)" if log_scale else ""))
    ax.set_title("Target-token probabilities")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------------------------
# The `talr analyze` and `talr codelength` commands


def _is_file_arg(text: str) -> bool:
    path = Path(text)
    return text == "alpaca" or path.suffix in (".json", ".jsonl") or path.exists()


def dataset_spec(text: str) -> dict:
    """The ``data.train`` mapping of a training config for a command-line data argument (see
    :func:`load_examples_arg`)."""
    if _is_file_arg(text):
        return {"path": str(data_dir() / ALPACA_FILE) if text == "alpaca" else text}
    name, _, rest = text.partition(":")
    split, _, fmt = rest.partition(":")
    return {"source": name, "split": split or "train", "format": fmt or None}


def load_examples_arg(text: str, limit: int | None = None, seed: int = 0) -> tuple[list[dict], str]:
    """Examples named on the command line: a JSONL/JSON file, ``alpaca``, or a data source ``NAME[:SPLIT[:FORMAT]]``
    (``talr.data.sources``), then a seeded sample of ``limit`` of them."""
    if _is_file_arg(text):
        return sample_examples(load_chat_examples(text), limit, seed), text
    from talr.config import DatasetSpec
    from talr.data import load_train_examples

    return load_train_examples(DatasetSpec(**dataset_spec(text), limit=limit), seed=seed)


def _write_csv(rows: list[dict], path: Path) -> None:
    import csv

    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def token_rows(scores: Sequence[ExampleScores], tokenizer,
               compare: Sequence[ExampleScores] | None = None) -> list[dict]:
    """One row per supervised target token: example, position, token, probability (and model B's, if given)."""
    rows = []
    for e, s in enumerate(scores):
        for k, pos in enumerate(s.positions):
            row = {"example": s.index, "position": int(pos), "token_id": int(s.input_ids[pos]),
                   "token": _decode(tokenizer, [s.input_ids[pos]]), "prob": math.exp(s.logp[k]),
                   "logprob": float(s.logp[k])}
            if compare is not None:
                row["prob_b"] = math.exp(compare[e].logp[k])
                row["delta_logprob"] = float(compare[e].logp[k] - s.logp[k])
            rows.append(row)
    return rows


def analyze(model: str, data: str, compare: str | None = None, out: str | Path | None = None, *,
            max_length: int = 512, batch_size: int = 8, limit: int | None = None, seed: int = 0,
            log_scale: bool = False, top: int = 20, progress: bool = True) -> dict:
    """Token-level analysis of ``data`` under ``model`` (and ``compare``), written to ``out``.

    Files: ``summary.json`` (hard-token fractions, hardest tokens in context, hard token types; with ``compare``
    the largest changes and the change by initial probability), ``tokens.csv`` (every supervised token),
    ``examples.csv`` (per-example statistics), ``histogram.png``. Returns the summary.
    """
    from talr.models import load_model

    examples, source = load_examples_arg(data, limit, seed)
    out = Path(out) if out is not None else Path(f"analysis_{Path(source).stem.replace(':', '_')}")
    out.mkdir(parents=True, exist_ok=True)
    model_a, tokenizer = load_model(model)
    scores, stats = score_examples(model_a, tokenizer, examples, max_length, batch_size, progress, source)
    del model_a
    summary = {"model": model, "data": source, "max_length": max_length, "tokenize": stats.as_dict(),
               **probability_summary(scores),
               "hardest_tokens": hardest_tokens(scores, tokenizer, top),
               "hard_token_types": hard_token_types(scores, tokenizer, count=top)}
    probs = {Path(model).name or model: np.exp(all_logp(scores))}
    scores_b = None
    if compare is not None:
        model_b, tokenizer_b = load_model(compare)
        scores_b, _ = score_examples(model_b, tokenizer_b, examples, max_length, batch_size, progress, source)
        del model_b
        _check_aligned(scores, scores_b)
        summary["compare"] = {
            "model": compare, **probability_summary(scores_b),
            "code_length": compare_code_lengths(scores, scores_b),
            "change_by_initial_prob": change_by_initial_probability(all_logp(scores), all_logp(scores_b)),
            **largest_changes(scores, scores_b, tokenizer, top),
        }
        probs[Path(compare).name or compare] = np.exp(all_logp(scores_b))
    per_example = example_statistics(scores)
    if scores_b is not None:
        for row, b in zip(per_example, scores_b):
            row["bits_b"] = b.bits
            row["hard_frac_b"] = float((np.exp(b.logp) < losses.HARD_TOKEN_PROB).mean())
    _write_csv(per_example, out / "examples.csv")
    _write_csv(token_rows(scores, tokenizer, scores_b), out / "tokens.csv")
    plot_probability_histogram(probs, out / "histogram.png", log_scale=log_scale)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    summary["out"] = str(out)
    return summary


def _show_token(row: dict) -> str:
    def clean(text: str) -> str:
        return text.replace("\n", "\\n")

    return f"...{clean(row['before'])}[[{clean(row['token'])}]]{clean(row['after'])}..."


def format_analysis(summary: dict) -> str:
    lines = [f"{summary['model']} on {summary['data']}: {summary['examples']} examples, {summary['tokens']} "
             f"supervised tokens (max_length {summary['max_length']}; {summary['tokenize']['truncated']} truncated, "
             f"{summary['tokenize']['dropped_no_supervised_tokens']} dropped)",
             "hard-token fraction: " + ", ".join(f"p<{t}: {f:.3f}" for t, f in summary["hard_frac"].items()),
             f"mean token probability {summary['mean_prob']:.3f}, median {summary['median_prob']:.3f}, "
             f"{summary['bits_per_token']:.3f} +- {summary['bits_per_token_se']:.3f} bits/token",
             "", "hardest tokens:"]
    lines += [f"  p={row['prob']:.2e}  ex {row['index']:>4}  {_show_token(row)}" for row in summary["hardest_tokens"]]
    lines += ["", "most often hard (hard / occurrences):"]
    lines += ["  " + ", ".join(f"{r['token']!r} {r['hard']}/{r['occurrences']}" for r in summary["hard_token_types"])]
    if "compare" in summary:
        c = summary["compare"]
        cl = c["code_length"]
        lines += ["", f"compared with {c['model']}: hard-token fraction "
                  + ", ".join(f"p<{t}: {f:.3f}" for t, f in c["hard_frac"].items()),
                  f"Delta L = {cl['delta_bits']:+.2f} +- {cl['delta_bits_se']:.2f} bits/response "
                  f"({cl['delta_bits_per_token']:+.4f} +- {cl['delta_bits_per_token_se']:.4f} bits/token)",
                  "mean change of log p by probability under the first model:"]
        lines += [f"  p in [{r['low']}, {r['high']}): {r['tokens']:>6} tokens, "
                  + (f"{r['mean_delta_logp']:+.3f}" if r["tokens"] else "-") for r in c["change_by_initial_prob"]]
        for key in ("rose", "fell"):
            lines += ["", f"tokens whose probability {key} most:"]
            lines += [f"  {r['prob_a']:.2e} -> {r['prob_b']:.2e}  ex {r['index']:>4}  {_show_token(r)}"
                      for r in c[key]]
    lines += ["", f"written to {summary['out']}/ (summary.json, tokens.csv, examples.csv, histogram.png)"]
    return "\n".join(lines)


def codelength(model_a: str, model_b: str, domain: str, general: str | None = "alpaca", *, max_length: int = 512,
               batch_size: int = 8, limit: int | None = 200, seed: int = 0, progress: bool = True) -> dict:
    """Code length of a general set (P1) and a domain set (P2) under two models, Delta L on each with standard
    errors, and the general cost per unit of domain gain ``Delta L(P1) / -Delta L(P2)``."""
    from talr.models import load_model

    sets = {"domain": load_examples_arg(domain, limit, seed)}
    if general is not None:
        sets["general"] = load_examples_arg(general, limit, seed)
    scores: dict[str, dict[str, list[ExampleScores]]] = {name: {} for name in sets}
    for which, spec in (("a", model_a), ("b", model_b)):
        model, tokenizer = load_model(spec)
        for name, (examples, source) in sets.items():
            scores[name][which], _ = score_examples(model, tokenizer, examples, max_length, batch_size, progress,
                                                    source)
        del model
    result = {"model_a": model_a, "model_b": model_b, "max_length": max_length}
    for name, (_, source) in sets.items():
        result[name] = {"data": source, **compare_code_lengths(scores[name]["a"], scores[name]["b"])}
    if "general" in result:
        g, d = result["general"], result["domain"]
        ratio, se = cost_per_gain(g["delta_bits"], g["delta_bits_se"], d["delta_bits"], d["delta_bits_se"])
        result["cost_per_gain"], result["cost_per_gain_se"] = ratio, se
    return result


def format_codelength(result: dict) -> str:
    lines = [f"A = {result['model_a']}", f"B = {result['model_b']}", "",
             f"{'set':<8} {'n':>5} {'bits/token A':>16} {'bits/token B':>16} {'Delta L bits/resp':>20} "
             f"{'Delta L bits/token':>22}"]
    for name in ("general", "domain"):
        if name not in result:
            continue
        r = result[name]
        lines.append(
            f"{name:<8} {r['examples']:>5} {r['bits_per_token_a']:>8.4f} +-{r['bits_per_token_a_se']:.4f} "
            f"{r['bits_per_token_b']:>8.4f} +-{r['bits_per_token_b_se']:.4f} "
            f"{r['delta_bits']:>+11.3f} +-{r['delta_bits_se']:.3f} "
            f"{r['delta_bits_per_token']:>+12.5f} +-{r['delta_bits_per_token_se']:.5f}"
        )
    if "cost_per_gain" in result:
        d = result["domain"]
        gain_z = -d["delta_bits"] / d["delta_bits_se"] if d["delta_bits_se"] > 0 else float("nan")
        lines += ["", f"general cost per unit of domain gain  Delta L(P1) / -Delta L(P2) = "
                  f"{result['cost_per_gain']:.3f} +- {result['cost_per_gain_se']:.3f}  "
                  f"(domain gain = {gain_z:.1f} standard errors" + ("; too small for a reliable ratio)" if
                                                                     gain_z < 3 else ")")]
    return "\n".join(lines)
