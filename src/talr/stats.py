"""The one place for statistics: standard errors, rank correlation, power, multiple comparisons, seed-averaged
errors, matched-gain interpolation and the sanity baselines of a classification task. Pure functions, float64,
stdlib and numpy only (scipy is a test-time reference, not a dependency).

It is ~470 lines on purpose: one source of truth for every number the reports print (the house rule), in sections
that share conventions and helpers; splitting it would put the conventions in two places.

Conventions: a standard error is the estimated standard deviation of an estimate; "paired" means two models scored
on the same items, so per-item differences are the independent units; normal quantiles come from
:class:`statistics.NormalDist`.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

BOOTSTRAP_ITERS = 1000
BOOTSTRAP_SEED = 1234
COLLAPSE_THRESHOLD = 0.9  # share of predictions on one label from which a point counts as collapsed
NO_LABEL = "none"  # a label distribution's key for predictions of None (an output that named no label)

# ---------------------------------------------------------------------------------------------------------------
# Means, ratios, bootstrap


def mean(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("mean of no values")
    return math.fsum(values) / len(values)


def mean_stderr(values: Sequence[float]) -> float | None:
    """Standard error of the mean: sample standard deviation (n-1) / sqrt(n), as lm-eval's ``mean_stderr``.

    For 0/1 accuracies this is ``sqrt(p(1-p)/(n-1))``. None for fewer than two values.
    """
    n = len(values)
    if n < 2:
        return None
    mu = mean(values)
    variance = math.fsum((v - mu) ** 2 for v in values) / (n - 1)
    return math.sqrt(variance / n)


def bootstrap_stderr(
    statistic: Callable[[list[Any]], float],
    items: Sequence[Any],
    iters: int = BOOTSTRAP_ITERS,
    seed: int = BOOTSTRAP_SEED,
) -> float | None:
    """Standard deviation (n-1) of ``statistic`` over ``iters`` resamples of ``items`` with replacement.

    Used for metrics that are not means of per-item values (macro-F1, pooled ratios). Seeded, so reruns agree.
    """
    n = len(items)
    if n < 2:
        return None
    rng = random.Random(seed)
    estimates = [statistic([items[rng.randrange(n)] for _ in range(n)]) for _ in range(iters)]
    return math.sqrt(math.fsum((e - mean(estimates)) ** 2 for e in estimates) / (iters - 1))


def mean_with_se(values: np.ndarray) -> tuple[float, float]:
    """Sample mean and its standard error ``sd / sqrt(n)`` (sd with n - 1); the error is NaN for one value."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no values")
    se = float(values.std(ddof=1) / math.sqrt(values.size)) if values.size > 1 else float("nan")
    return float(values.mean()), se


def ratio_of_sums_with_se(numerator: np.ndarray, denominator: np.ndarray) -> tuple[float, float]:
    """``sum(x) / sum(y)`` over examples (e.g. bits per token) and its delta-method standard error, examples being
    the independent units: ``se = sqrt(sum((x_i - R y_i)^2) / (n (n - 1))) / mean(y)``."""
    x = np.asarray(numerator, dtype=np.float64)
    y = np.asarray(denominator, dtype=np.float64)
    if x.shape != y.shape or x.size == 0:
        raise ValueError("numerator and denominator must be non-empty and of equal length")
    ratio = float(x.sum() / y.sum())
    n = x.size
    if n < 2:
        return ratio, float("nan")
    residual = x - ratio * y
    return ratio, float(math.sqrt((residual ** 2).sum() / (n * (n - 1))) / y.mean())


def ratio_linearized(numerators: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Per-item values whose plain mean is the pooled ratio ``sum_i x_i / sum_i y_i`` and whose mean's standard
    error is the delta-method error of the ratio: ``z_i = R + (x_i - R y_i) / mean(y)``. ``numerators`` may be
    [items] or [seeds, items] (rows share the denominators: the same texts under the same tokenizer; ``R`` is the
    pooled ratio over every row), so ratio metrics such as bits per token go through the same item/seed machinery
    as accuracies."""
    x = np.asarray(numerators, dtype=np.float64)
    y = np.asarray(denominator, dtype=np.float64)
    if x.shape[-1] != y.size or y.size == 0:
        raise ValueError("numerators must have one value per denominator")
    ratio = x.sum() / (y.sum() * (x.size // y.size))
    return ratio + (x - ratio * y) / y.mean()


def cost_per_gain(delta_general: float, se_general: float, delta_domain: float,
                  se_domain: float) -> tuple[float, float]:
    """``Delta L(P1) / -Delta L(P2)``: bits of general code length lost per bit gained on the domain, with the
    delta-method standard error for two independent sets:
    ``se = |r| * sqrt((se1 / d1)^2 + (se2 / d2)^2)`` (first order; unreliable when the domain gain is within a few
    standard errors of zero, which callers should report alongside)."""
    if delta_domain == 0:
        return float("nan"), float("nan")
    ratio = delta_general / -delta_domain
    if delta_general == 0:
        return ratio, abs(se_general / delta_domain)
    return ratio, abs(ratio) * math.sqrt((se_general / delta_general) ** 2 + (se_domain / delta_domain) ** 2)


# ---------------------------------------------------------------------------------------------------------------
# Rank correlation


def format_with_se(value: float, stderr: float, spec: str = ".3f", sep: str = " +- ") -> str:
    """``value`` in the format ``spec`` (alignment, sign and width included) followed by its standard error at the same
    precision, unsigned and unpadded: ``format_with_se(-0.5, 0.25, ">+8.3f")`` is ``"  -0.500 +- 0.250"``."""
    precision = re.search(r"(\.\d+)?[a-z%]?$", spec).group(0)
    return f"{value:{spec}}{sep}{stderr:{precision}}"


def average_ranks(values: Sequence[float]) -> np.ndarray:
    """Ranks 1..n, ties sharing the mean of the ranks they span."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    ranks = np.empty(values.size, dtype=np.float64)
    start = 0
    while start < values.size:
        stop = start
        while stop + 1 < values.size and values[order[stop + 1]] == values[order[start]]:
            stop += 1
        ranks[order[start:stop + 1]] = (start + stop) / 2 + 1
        start = stop + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float], permutations: int = 20_000, seed: int = 0) -> tuple[float, float]:
    """Spearman's rank correlation (Pearson's on average ranks) and a two-sided permutation p-value (seeded, so the
    same data give the same p): the share of random pairings whose |rho| reaches the observed one."""
    rx, ry = average_ranks(x), average_ranks(y)
    if rx.size != ry.size or rx.size < 3:
        raise ValueError("spearman needs two sequences of equal length >= 3")
    rx, ry = rx - rx.mean(), ry - ry.mean()
    scale = math.sqrt((rx ** 2).sum() * (ry ** 2).sum())
    if scale == 0:
        return float("nan"), float("nan")
    rho = float((rx * ry).sum() / scale)
    rng = np.random.default_rng(seed)
    shuffled = np.array([rng.permutation(ry) for _ in range(permutations)])
    null = np.abs(shuffled @ rx) / scale
    p_value = float((1 + (null >= abs(rho) - 1e-12).sum()) / (permutations + 1))
    return rho, p_value


# ---------------------------------------------------------------------------------------------------------------
# Tests, power, multiple comparisons


def two_sided_p(difference: float, stderr: float) -> float:
    """Two-sided p-value of ``difference`` under a normal null with standard error ``stderr`` (1 when both are 0:
    no difference and no spread is no evidence)."""
    if stderr <= 0:
        return 1.0 if difference == 0 else 0.0
    return 2.0 * (1.0 - NormalDist().cdf(abs(difference) / stderr))


def _power_multiplier(alpha: float, power: float) -> float:
    if not (0 < alpha < 1 and 0 < power < 1):
        raise ValueError(f"alpha and power must lie in (0, 1), got {alpha}, {power}")
    z = NormalDist()
    return z.inv_cdf(1 - alpha / 2) + z.inv_cdf(power)


def mde_paired(n: int, sd_difference: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Minimum detectable difference of a paired comparison on ``n`` items: the true mean difference a two-sided
    level-``alpha`` test detects with probability ``power``, ``(z_{1-alpha/2} + z_power) * sd / sqrt(n)`` with
    ``sd`` the standard deviation of the per-item differences (normal approximation; at alpha 0.05 and power 0.8 the
    multiplier is 2.80). Given a standard error instead of an SD, pass ``n=1``."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return _power_multiplier(alpha, power) * sd_difference / math.sqrt(n)


def mde_from_stderr(stderr: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """The minimum detectable difference of an estimate with this standard error (``mde_paired`` with n = 1)."""
    return mde_paired(1, stderr, alpha, power)


def mde_proportions(n: int, rate: float, discordance: float | None = None, alpha: float = 0.05,
                    power: float = 0.8) -> float:
    """Minimum detectable difference between two models' accuracies on the same ``n`` items when both score about
    ``rate``. ``discordance``: the share of items on which the two disagree; the per-item difference is then -1, 0 or
    +1 with SD ``sqrt(discordance)`` at a small difference. Without it the two models' errors are taken as
    independent, ``discordance = 2 rate (1 - rate)`` (the unpaired worst case: fine-tuned variants of one model agree
    on more items than that, so their true MDE is smaller)."""
    if not 0 <= rate <= 1:
        raise ValueError(f"rate must lie in [0, 1], got {rate}")
    if discordance is None:
        discordance = 2 * rate * (1 - rate)
    if not 0 <= discordance <= 1:
        raise ValueError(f"discordance must lie in [0, 1], got {discordance}")
    return mde_paired(n, math.sqrt(discordance), alpha, power)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order: the i-th smallest p times (m - i + 1), made
    non-decreasing along the sorted order and capped at 1. Rejecting where the adjusted p is below alpha controls
    the family-wise error rate at alpha (Holm 1979)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


# ---------------------------------------------------------------------------------------------------------------
# Seed-averaged points


@dataclass(frozen=True)
class SeedAveraged:
    """A score averaged over seeds (rows) evaluated on the same items (columns)."""

    mean: float
    stderr: float  # item sampling and training noise together
    item_stderr: float  # item sampling only: the spread over items of the per-item seed means
    seed_variance: float | None  # between-seed variance component of one seed's score; None with one seed
    n_seeds: int
    n_items: int


def seed_variance_component(scores: np.ndarray) -> float:
    """The between-seed variance component ``sigma_s^2`` of the two-way random-effects model without replication,
    ``y_si = mu + a_i + b_s + e_si`` (items ``i``, seeds ``s``): ``(MS_seeds - MS_residual) / n_items``, truncated
    at 0 (ANOVA estimator; needs two seeds and two items)."""
    y = np.asarray(scores, dtype=np.float64)
    k, n = y.shape
    if k < 2 or n < 2:
        raise ValueError("the between-seed variance needs at least two seeds and two items")
    grand = y.mean()
    seed_means, item_means = y.mean(axis=1), y.mean(axis=0)
    ms_seeds = n * ((seed_means - grand) ** 2).sum() / (k - 1)
    residual = y - seed_means[:, None] - item_means[None, :] + grand
    ms_residual = (residual ** 2).sum() / ((k - 1) * (n - 1))
    return max(0.0, float((ms_seeds - ms_residual) / n))


def seed_averaged(scores: Sequence[Sequence[float]] | np.ndarray) -> SeedAveraged:
    """Mean over seeds of per-item scores and its standard error, training noise included.

    Variance components (two-way random effects, items x seeds): the mean over ``k`` seeds and ``n`` items has
    variance ``sigma_item^2 / n + sigma_seed^2 / k + sigma_residual^2 / (n k)``. The first and last terms are the
    variance over items of the per-item seed means divided by n; ``sigma_seed^2`` comes from
    :func:`seed_variance_component`. Untruncated this is ``(MS_items + MS_seeds - MS_residual) / (n k)``. With one
    seed the training-noise term cannot be estimated: the error is the item-sampling error and ``seed_variance`` is
    None, which callers must say. For ratio metrics pass :func:`ratio_linearized` values."""
    y = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    k, n = y.shape
    if n < 2:
        raise ValueError("a standard error needs at least two items")
    item_means = y.mean(axis=0)
    item_se = float(item_means.std(ddof=1) / math.sqrt(n))
    seed_var = seed_variance_component(y) if k > 1 else None
    total = item_se ** 2 + (seed_var / k if seed_var is not None else 0.0)
    return SeedAveraged(float(y.mean()), math.sqrt(total), item_se, seed_var, k, n)


def seed_averaged_difference(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Difference of two seed-averaged points on the same items (``a``: [seeds_a, items], ``b``: [seeds_b, items],
    columns aligned) and its standard error: the paired item-sampling error of the per-item seed-mean differences
    plus each point's between-seed variance over its seed count (training runs of different points are
    independent)."""
    a, b = np.atleast_2d(np.asarray(a, np.float64)), np.atleast_2d(np.asarray(b, np.float64))
    if a.shape[1] != b.shape[1] or a.shape[1] < 2:
        raise ValueError("the two points need the same >= 2 items")
    diff = a.mean(axis=0) - b.mean(axis=0)
    variance = diff.var(ddof=1) / diff.size
    for y in (a, b):
        if y.shape[0] > 1:
            variance += seed_variance_component(y) / y.shape[0]
    return float(diff.mean()), math.sqrt(variance)


def seed_averaged_from_summaries(means: Sequence[float], stderrs: Sequence[float]) -> tuple[float, float]:
    """Mean over seeds and its standard error when only each seed's score and item-sampling error are known (no
    per-item records): ``mean(se_s^2) + var_s(mean_s) / k``. The seeds share their items, so item noise does not
    shrink with k (``mean(se^2)``, not ``sum(se^2) / k^2``); ``var_s / k`` adds the between-seed spread. Compared
    with :func:`seed_averaged` it counts the residual term ``sigma_residual^2 / n`` once more: conservative."""
    k = len(means)
    if k == 0 or len(stderrs) != k:
        raise ValueError("one standard error per seed mean, at least one seed")
    variance = math.fsum(se * se for se in stderrs) / k
    if k > 1:
        mu = math.fsum(means) / k
        variance += math.fsum((m - mu) ** 2 for m in means) / (k - 1) / k
    return math.fsum(means) / k, math.sqrt(variance)


# ---------------------------------------------------------------------------------------------------------------
# Matched domain gain


@dataclass(frozen=True)
class CurvePoint:
    """One measured (domain gain, general cost) point of a method, each with its standard error."""

    gain: float
    cost: float
    cost_se: float = 0.0
    gain_se: float = 0.0


def cost_at_gain(curve: Sequence[CurvePoint], gain: float) -> tuple[float, float] | None:
    """The general cost at domain gain ``gain`` by linear interpolation between the two measured points that
    bracket it (points sorted by gain; no extrapolation: None outside the measured range), with a first-order
    error: ``c = (1 - w) c_i + w c_j``, ``w = (g - g_i) / (g_j - g_i)``; the costs' errors enter with weights
    ``(1 - w, w)`` and the gains' errors with the same weights times the slope (moving a bracketing point's gain
    moves where the line is read), the points' errors taken as independent."""
    points = sorted(curve, key=lambda p: p.gain)
    if not points or not points[0].gain <= gain <= points[-1].gain:
        return None
    for left, right in zip(points, points[1:]):
        if left.gain <= gain <= right.gain and right.gain > left.gain:
            w = (gain - left.gain) / (right.gain - left.gain)
            slope = (right.cost - left.cost) / (right.gain - left.gain)
            variance = ((1 - w) ** 2 * (left.cost_se ** 2 + slope ** 2 * left.gain_se ** 2)
                        + w ** 2 * (right.cost_se ** 2 + slope ** 2 * right.gain_se ** 2))
            return (1 - w) * left.cost + w * right.cost, math.sqrt(variance)
    exact = [p for p in points if p.gain == gain]  # a single point, or a vertical run of equal gains
    costs = [p.cost for p in exact]
    return mean(costs), math.sqrt(math.fsum(p.cost_se ** 2 for p in exact)) / len(exact)


@dataclass(frozen=True)
class MatchedGain:
    gain: float  # the common domain gain both curves are read at
    cost_a: float
    cost_a_se: float
    cost_b: float
    cost_b_se: float

    @property
    def difference(self) -> float:
        """``cost_a - cost_b``: negative when method a pays less general cost at this gain."""
        return self.cost_a - self.cost_b

    @property
    def difference_se(self) -> float:
        return math.hypot(self.cost_a_se, self.cost_b_se)


def matched_gain(curve_a: Sequence[CurvePoint], curve_b: Sequence[CurvePoint],
                 gain: float | None = None) -> MatchedGain | None:
    """Both methods' general cost at one domain gain: ``gain``, or by default the largest gain both curves reach
    (the smaller of their maximum gains). None when the curves' gain ranges do not overlap there."""
    if not curve_a or not curve_b:
        return None
    if gain is None:
        gain = min(max(p.gain for p in curve_a), max(p.gain for p in curve_b))
    a, b = cost_at_gain(curve_a, gain), cost_at_gain(curve_b, gain)
    if a is None or b is None:
        return None
    return MatchedGain(gain, a[0], a[1], b[0], b[1])


# ---------------------------------------------------------------------------------------------------------------
# Sanity baselines of classification tasks


def chance_rate(n_choices: int) -> float:
    """Accuracy of a uniform random guess among ``n_choices`` answers."""
    if n_choices < 1:
        raise ValueError(f"n_choices must be >= 1, got {n_choices}")
    return 1.0 / n_choices


def mean_chance_rate(n_choices: Sequence[int]) -> float:
    """Expected accuracy of uniform random guessing over items with these numbers of choices: the mean of 1 / k."""
    if not n_choices:
        raise ValueError("chance rate of no items")
    return mean([chance_rate(k) for k in n_choices])


# Label order, the one tie rule: ``labels`` when the caller gives them (a task's label set: choice letters, ESCI's
# E/S/C/I), else the order in which labels first occur. A tie for the most frequent label goes to the earliest one.


def _label_order(values: Sequence[Hashable], labels: Sequence[Hashable] | None) -> list:
    if labels is None:
        return list(dict.fromkeys(v for v in values if v is not None))
    unknown = {v for v in values if v is not None} - set(labels)
    if unknown:
        raise ValueError(f"{sorted(map(str, unknown))} are not among the labels {list(labels)}")
    return list(labels)


def label_distribution(preds: Sequence[Hashable], labels: Sequence[Hashable] | None = None) -> dict:
    """``{label: count}`` of the predictions over the labels in their order (zeros included when ``labels`` are
    given), then ``NO_LABEL`` ("none") for predictions of None (nothing extracted) when there are any. A prediction
    outside the given ``labels`` is an error."""
    counts = Counter(preds)
    out = {label: counts[label] for label in _label_order(preds, labels)}
    if counts[None]:
        out[NO_LABEL] = counts[None]
    return out


def majority_rate(gold: Sequence[Hashable], labels: Sequence[Hashable] | None = None) -> tuple[Hashable, float]:
    """The most frequent gold label (ties: the earliest in the label order above) and the accuracy of answering it
    for every item."""
    if not gold:
        raise ValueError("majority_rate of no labels")
    counts = Counter(gold)
    order = _label_order(gold, labels)
    label = max(order, key=lambda lab: (counts[lab], -order.index(lab)))
    return label, counts[label] / len(gold)


def scored_labels(gold: Sequence[Hashable], pred: Sequence[Hashable]) -> list:
    """The labels F1 is averaged over when none are given: every gold or predicted label except None (sklearn's
    union), sorted by their text."""
    return sorted({x for x in [*gold, *pred] if x is not None}, key=str)


def per_label_f1(gold: Sequence[Hashable], pred: Sequence[Hashable],
                 labels: Sequence[Hashable] | None = None) -> dict:
    """Per label: precision, recall, F1 = 2TP / (2TP + FP + FN) and support; a 0/0 is 0 (sklearn's
    ``zero_division=0``). ``labels`` default: every gold or predicted label except None (sklearn's union); a
    prediction of None (nothing extracted) is a miss for its gold label."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold labels but {len(pred)} predictions")
    if labels is None:
        labels = scored_labels(gold, pred)
    out = {}
    for label in labels:
        tp = sum(g == label and p == label for g, p in zip(gold, pred))
        fp = sum(g != label and p == label for g, p in zip(gold, pred))
        fn = sum(g == label and p != label for g, p in zip(gold, pred))
        out[label] = {
            "precision": tp / (tp + fp) if tp + fp else 0.0,
            "recall": tp / (tp + fn) if tp + fn else 0.0,
            "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0,
            "support": tp + fn,
        }
    return out


def macro_f1(gold: Sequence[Hashable], pred: Sequence[Hashable], labels: Sequence[Hashable] | None = None) -> float:
    """Unweighted mean over ``labels`` of the per-label F1 (:func:`per_label_f1`); every listed label counts, with
    or without support."""
    per_label = per_label_f1(gold, pred, labels)
    if not per_label:
        raise ValueError("macro_f1 needs at least one label")
    return mean([v["f1"] for v in per_label.values()])


def uniform_guess_macro_f1(gold: Sequence[Hashable], labels: Sequence[Hashable] | None = None) -> float:
    """Macro-F1 of answering one of the K ``labels`` uniformly at random, from the expected confusion counts (label
    c with n_c of N items: TP = n_c / K, FP = (N - n_c) / K, FN = n_c - n_c / K, so F1_c = 2 n_c / (N + K n_c)). The
    chance level of macro-F1: unlike accuracy's 1 / K it depends on how the gold labels are spread. ``labels``
    default: the gold labels."""
    if not gold:
        raise ValueError("uniform_guess_macro_f1 of no labels")
    counts, order = Counter(gold), _label_order(gold, labels)
    return mean([2 * counts[c] / (len(gold) + len(order) * counts[c]) for c in order])


def collapsed_label(distribution: dict, threshold: float = COLLAPSE_THRESHOLD) -> Hashable | None:
    """The key of a :func:`label_distribution` holding at least ``threshold`` of its counts (the model answers one
    thing whatever the input; ``NO_LABEL`` when that one thing is no label at all), else None."""
    total = sum(distribution.values())
    if total == 0:
        return None
    label = max(distribution, key=distribution.get)  # ties: the earliest key
    return label if distribution[label] >= threshold * total else None
