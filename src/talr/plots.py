"""Figures: saving one, and ``talr analyze``'s distribution of target-token probabilities."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from talr.token_stats import HARD_THRESHOLDS


def save_figure(fig, path: str | Path, dpi: int) -> Path:
    """Lay out ``fig``, write it to ``path`` (creating its folder) and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


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
    return save_figure(fig, path, dpi=120)
