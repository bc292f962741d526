"""Aggregate metrics and their standard errors (pure functions, float64)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import Any

BOOTSTRAP_ITERS = 1000
BOOTSTRAP_SEED = 1234


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


def stderr_key(metric_key: str) -> str:
    """``"acc,none"`` -> ``"acc_stderr,none"`` (lm-eval's naming of a metric's standard error)."""
    metric, _, filter_name = metric_key.partition(",")
    return f"{metric}_stderr,{filter_name}" if filter_name else f"{metric}_stderr"


def with_stderr(metric_key: str, value: float, stderr: float | None) -> dict[str, float | str]:
    """The two results.json entries of a metric; a missing standard error is written "N/A" like lm-eval."""
    return {metric_key: value, stderr_key(metric_key): "N/A" if stderr is None else stderr}


def mean_with_stderr(metric_key: str, values: Sequence[float]) -> dict[str, float | str]:
    return with_stderr(metric_key, mean(values), mean_stderr(values))
