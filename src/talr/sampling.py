"""Seeded choices of which items a run or an evaluation uses.

Two different things, kept apart because they choose different items for the same seed:

* :func:`seeded_subset` draws ``limit`` items uniformly without replacement and keeps them in their original order
  (training files, evaluation sets, probes). A random subset rather than the first N, because several files are
  sorted (MMLU by subject, MedCalc by calculator), so a prefix would measure one slice.
* :func:`shuffled_prefix` shuffles all items with the seed and takes the first ``limit``, so a smaller limit is a
  prefix of a larger one (the data sources' ``limit``). Changing either would change which items past runs used.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def seeded_indices(n: int, count: int, seed: int = 0) -> list[int]:
    """``count`` distinct indices of ``range(n)`` drawn with ``random.Random(seed)``, sorted."""
    return sorted(random.Random(seed).sample(range(n), count))


def seeded_subset(items: Sequence[T], limit: int | None, seed: int = 0) -> list[T]:
    """``limit`` items drawn with a fixed seed, kept in their original order (all of them when ``limit`` is None or
    at least ``len(items)``)."""
    if limit is None or limit >= len(items):
        return list(items)
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    return [items[i] for i in seeded_indices(len(items), limit, seed)]


def shuffled_prefix(items: Sequence[T], limit: int | None, seed: int = 0) -> list[T]:
    """All items in their order when ``limit`` is None, else the first ``limit`` after a seeded shuffle (a smaller
    limit is a prefix of a larger one)."""
    if limit is None:
        return list(items)
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    shuffled = list(items)
    random.Random(seed).shuffle(shuffled)
    return shuffled[:limit]
