"""results.json entries of aggregate metrics: lm-eval's key names for a metric and its standard error."""

from __future__ import annotations

# The statistics themselves live in talr.stats (one source); task modules take them from here with the
# results.json key helpers below.
from collections.abc import Sequence

from talr.stats import BOOTSTRAP_ITERS, BOOTSTRAP_SEED, bootstrap_stderr, mean, mean_stderr

__all__ = ["BOOTSTRAP_ITERS", "BOOTSTRAP_SEED", "bootstrap_stderr", "mean", "mean_stderr", "mean_with_stderr",
           "stderr_key", "with_stderr"]


def stderr_key(metric_key: str) -> str:
    """``"acc,none"`` -> ``"acc_stderr,none"`` (lm-eval's naming of a metric's standard error)."""
    metric, _, filter_name = metric_key.partition(",")
    return f"{metric}_stderr,{filter_name}" if filter_name else f"{metric}_stderr"


def with_stderr(metric_key: str, value: float, stderr: float | None) -> dict[str, float | str]:
    """The two results.json entries of a metric; a missing standard error is written "N/A" like lm-eval."""
    return {metric_key: value, stderr_key(metric_key): "N/A" if stderr is None else stderr}


def mean_with_stderr(metric_key: str, values: Sequence[float]) -> dict[str, float | str]:
    return with_stderr(metric_key, mean(values), mean_stderr(values))
