"""The dataset registry: each domain source is a module with the same functions (see docs/data.md).

A source module provides NAME, SPLITS, FORMATS, DEFAULT_FORMAT and ``load_rows(split, data_dir)``,
``to_sft_example(row, fmt)``, ``eval_messages(row, fmt)``, ``score(row, output)``, ``aggregate(scored_rows)``.
A new source = one new module + one entry below.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from talr.data import esci, math, medcalc
from talr.sampling import shuffled_prefix

# "gsm8k" is the math domain: GSM8K train rewritten MetaMathQA-style stands in for MetaMathQA (not obtainable).
SOURCES: dict[str, ModuleType] = {module.NAME: module for module in (medcalc, esci, math)}


def get_source(source: str) -> ModuleType:
    if source not in SOURCES:
        raise ValueError(f"unknown data source {source!r}; known: {', '.join(SOURCES)}")
    return SOURCES[source]


def load_sft_examples(source: str, split: str = "train", fmt: str | None = None, limit: int | None = None,
                      seed: int = 0, data_dir: Path | None = None) -> list[dict]:
    """Messages-form training examples ({"id", "messages", "meta"}) of one source; ``fmt`` defaults to the
    source's DEFAULT_FORMAT."""
    module = get_source(source)
    fmt = module.DEFAULT_FORMAT if fmt is None else fmt
    if fmt not in module.FORMATS:
        raise ValueError(f"unknown format {fmt!r} for {source}; known: {', '.join(module.FORMATS)}")
    rows = shuffled_prefix(module.load_rows(split, data_dir), limit, seed)
    return [module.to_sft_example(row, fmt) for row in rows]


def load_eval_rows(source: str, split: str = "test", limit: int | None = None, seed: int = 0,
                   data_dir: Path | None = None) -> list[dict]:
    """Raw rows to evaluate on (pass each to the source's eval_messages and score)."""
    return shuffled_prefix(get_source(source).load_rows(split, data_dir), limit, seed)
