"""Statistics of per-token scores (:class:`talr.scoring.ExampleScores`), all pure functions of them:

* hard-token fractions (probability below a threshold; the paper's "hard" is p < 0.2), per-example statistics, the
  hardest tokens in context, and (for two models) which tokens' probabilities moved most;
* code length: a response ``z`` costs ``L_q(z) = -log2 q(z)`` bits under model ``q``, and for two models on the same
  responses ``Delta L(P) = E_P[L_q2] - E_P[L_q1] = KL(P || q2) - KL(P || q1)`` (the paper's Delta L). Both models
  score the same responses, so its standard error comes from the paired per-response differences.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Sequence

import numpy as np

from talr import losses
from talr.scoring import ExampleScores
from talr.stats import mean_with_se, ratio_of_sums_with_se

HARD_THRESHOLDS = (0.1, losses.HARD_TOKEN_PROB, 0.5)


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


def decode_tokens(tokenizer, ids) -> str:
    return tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)


def token_in_context(tokenizer, score: ExampleScores, k: int, left: int = 16, right: int = 6) -> dict:
    """The ``k``-th target token of an example with the text around it (``left``/``right`` tokens)."""
    pos = int(score.positions[k])
    ids = score.input_ids
    return {
        "index": score.index, "position": pos, "token_id": int(ids[pos]), "token": decode_tokens(tokenizer, [ids[pos]]),
        "before": decode_tokens(tokenizer, ids[max(0, pos - left):pos]), "after": decode_tokens(tokenizer, ids[pos + 1:pos + 1 + right]),
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
    return [{"token": decode_tokens(tokenizer, [tid]), "token_id": int(tid), "hard": n, "occurrences": seen[tid],
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


def check_aligned(scores_a: Sequence[ExampleScores], scores_b: Sequence[ExampleScores]) -> None:
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
    check_aligned(scores_a, scores_b)
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


def token_rows(scores: Sequence[ExampleScores], tokenizer,
               compare: Sequence[ExampleScores] | None = None) -> list[dict]:
    """One row per supervised target token: example, position, token, probability (and model B's, if given)."""
    rows = []
    for e, s in enumerate(scores):
        for k, pos in enumerate(s.positions):
            row = {"example": s.index, "position": int(pos), "token_id": int(s.input_ids[pos]),
                   "token": decode_tokens(tokenizer, [s.input_ids[pos]]), "prob": math.exp(s.logp[k]),
                   "logprob": float(s.logp[k])}
            if compare is not None:
                row["prob_b"] = math.exp(compare[e].logp[k])
                row["delta_logprob"] = float(compare[e].logp[k] - s.logp[k])
            rows.append(row)
    return rows
