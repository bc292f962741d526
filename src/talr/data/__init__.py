"""Training data: JSONL files (``formats``), parquet files and ``save_to_disk`` folders (``tables``), and registered
sources (``sources``: MedCalc-Bench, ESCI, math, ...)."""

from __future__ import annotations

from pathlib import Path

from talr.sampling import seeded_subset


def load_train_examples(spec, seed: int = 0) -> tuple[list[dict], str]:
    """Examples for a :class:`talr.config.DatasetSpec` and a name for them (used in logs and errors).

    A JSONL file keeps its order and ``limit`` takes a seeded random sample of it; a source applies its own split,
    format and seeded sampling.
    """
    from talr.data.tables import read_examples

    if spec.path is not None:
        examples = read_examples(spec.path)  # JSONL, parquet or a save_to_disk folder
        examples = seeded_subset(examples, spec.limit, seed)
        return examples, str(spec.path)
    from talr.data.formats import DataFormatError
    from talr.data.sources import load_sft_examples

    try:
        examples = load_sft_examples(
            spec.source, split=spec.split, fmt=spec.format, limit=spec.limit, seed=seed,
            data_dir=Path(spec.data_dir) if spec.data_dir else None,
        )
    except DataFormatError:
        raise
    except ValueError as err:  # the source readers' errors name the file and line (talr.data.rows)
        raise DataFormatError(str(err)) from None
    return examples, f"{spec.source}:{spec.split}" + (f":{spec.format}" if spec.format else "")
