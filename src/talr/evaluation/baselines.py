"""Sanity baselines of label-style tasks (multiple choice, BoolQ, ESCI) as results.json entries: what chance, a
constant answer and the model's own use of the labels give on the items actually evaluated, and the warnings
``talr eval`` prints from them.

A score only means something next to these: a model that answers "Irrelevant" to every ESCI item scores the
majority rate with a macro-F1 near 1/4 of a single label's F1, and a multiple-choice score below chance by more than
sampling noise points at a scoring or data problem. The pure helpers (chance, majority with its tie rule, label
distribution, macro-F1, collapse) live in :mod:`talr.stats`; this module adds the vectorised bootstrap error of
macro-F1 and writes the keys the report reads.

Predictions are label names; ``None`` is an output with no label (an unparsed generation, a scorer error): it
counts as wrong for every label and is shown as ``"none"`` (``stats.NO_LABEL``) in the predicted-label distribution.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from talr import stats
from talr.evaluation.metrics import BOOTSTRAP_ITERS, BOOTSTRAP_SEED, with_stderr

CHANCE = "chance,none"
MAJORITY = "majority,none"
MAJORITY_LABEL = "majority_label"
MACRO_F1 = "macro_f1,none"
PRED_DISTRIBUTION = "pred_distribution"
BELOW_CHANCE_SE = 2.0  # "below chance" means more than this many standard errors (of chance-level guessing) below


def _codes(targets: Sequence[str], predictions: Sequence[str | None], labels: Sequence[str]):
    index = {label: i for i, label in enumerate(labels)}
    t = np.array([index[x] for x in targets], dtype=np.int64)
    p = np.array([len(labels) if x is None else index[x] for x in predictions], dtype=np.int64)  # None: own column
    return t, p


def _macro_f1_from_confusion(confusion: np.ndarray, n_labels: int) -> np.ndarray:
    """Macro-F1 (as :func:`talr.stats.macro_f1`, vectorised over bootstrap resamples) of confusion matrices
    ``[..., n_labels, n_labels + 1]`` (rows: target, columns: prediction, the last column the unparsed ones).
    F1 = 2TP / (2TP + FP + FN), 0 when that is 0/0; every label counts in the mean."""
    tp = np.diagonal(confusion[..., :n_labels], axis1=-2, axis2=-1)
    fp = confusion[..., :n_labels].sum(axis=-2) - tp
    fn = confusion.sum(axis=-1) - tp
    denominator = 2 * tp + fp + fn
    f1 = np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)
    return f1.mean(axis=-1)


def macro_f1_stderr(targets: Sequence[str], predictions: Sequence[str | None], labels: Sequence[str],
                    iters: int = BOOTSTRAP_ITERS, seed: int = BOOTSTRAP_SEED) -> float | None:
    """Bootstrap standard error of macro-F1: standard deviation (n-1) over ``iters`` resamples of the items
    (seeded; vectorised, so full-size sets cost milliseconds). None for fewer than two items."""
    n, k = len(targets), len(labels)
    if n < 2:
        return None
    t, p = _codes(targets, predictions, labels)
    codes = t * (k + 1) + p
    rng = np.random.default_rng(seed)
    estimates = []
    for start in range(0, iters, 100):  # 100 resamples at a time bound the index array's memory
        rows = min(100, iters - start)
        draws = codes[rng.integers(0, n, size=(rows, n))] + np.arange(rows)[:, None] * (k * (k + 1))
        confusion = np.bincount(draws.ravel(), minlength=rows * k * (k + 1)).reshape(rows, k, k + 1)
        estimates.append(_macro_f1_from_confusion(confusion, k))
    return float(np.concatenate(estimates).std(ddof=1))


def label_baselines(targets: Sequence[str], predictions: Sequence[str | None], labels: Sequence[str],
                    n_choices: Sequence[int]) -> dict:
    """The results.json entries of a label task: chance, majority rate and label, macro-F1 with its bootstrap
    standard error, and the predicted-label distribution."""
    label, rate = stats.majority_rate(targets, labels)
    out: dict = {CHANCE: stats.mean_chance_rate(n_choices), MAJORITY: rate, MAJORITY_LABEL: label}
    out.update(with_stderr(MACRO_F1, stats.macro_f1(targets, predictions, labels),
                           macro_f1_stderr(targets, predictions, labels)))
    out[PRED_DISTRIBUTION] = stats.label_distribution(predictions, labels)
    return out


def baseline_warnings(task: str, result: dict, accuracy_key: str = "acc,none") -> list[str]:
    """One line per problem in a task's results.json entry: accuracy below chance by more than 2 standard errors of
    chance-level guessing at the evaluated N, and predictions collapsed onto one label (>= 90 % of the items)."""
    if CHANCE not in result or PRED_DISTRIBUTION not in result:
        return []
    lines = []
    distribution = result[PRED_DISTRIBUTION]
    n = sum(distribution.values())
    chance = result[CHANCE]
    accuracy = result.get(accuracy_key)
    if isinstance(accuracy, float) and n > 0:
        se = math.sqrt(chance * (1 - chance) / n)
        if accuracy < chance - BELOW_CHANCE_SE * se:
            lines.append(f"{task}: {accuracy_key.split(',')[0]} {accuracy:.3f} is below chance {chance:.3f} by more "
                         f"than {BELOW_CHANCE_SE:g} standard errors ({se:.3f}) at N={n}: check the data and scoring")
    label = stats.collapsed_label(distribution)
    if label is not None:
        count = distribution[label]
        what = "no label (the outputs named none)" if label == stats.NO_LABEL else repr(label)
        lines.append(f"{task}: predictions collapsed onto {what} ({count}/{n} = {count / n:.0%} of the items; "
                     f"majority rate {result.get(MAJORITY, float('nan')):.3f})")
    return lines
