"""Training data as tables: parquet files and folders written by ``datasets.Dataset.save_to_disk``.

The rows have the JSONL format's columns (``messages``, or ``prompt`` and ``completion``; other columns are kept) and
go through the same validation (:func:`talr.data.formats.validate_example`), so the same assistant-only supervision
applies and a malformed row is an error naming the file and its 1-based row. pyarrow and datasets are optional
(``pip install "talr[data]"``) and imported only when such a file is read.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from talr.data.formats import DataFormatError, read_jsonl, validate_example


def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f'reading parquet or save_to_disk training data needs {module.split(".")[0]}: '
                          'pip install "talr[data]"') from None


def _validated(rows: Iterable[dict], source: str) -> list[dict]:
    examples = []
    for number, row in enumerate(rows, start=1):
        validate_example(row, source, f"row {number}")
        examples.append(row)
    if not examples:
        raise DataFormatError(f"{source}: no examples")
    return examples


def read_parquet(path: str | Path) -> list[dict]:
    parquet = _require("pyarrow.parquet")
    path = Path(path)
    try:
        table = parquet.read_table(path)
    except Exception as err:  # pyarrow raises its own ArrowInvalid / OSError family
        raise DataFormatError(f"{path}: not a readable parquet file ({err})") from None
    return _validated(table.to_pylist(), str(path))


def read_saved_dataset(path: str | Path, split: str = "train") -> list[dict]:
    """Rows of a ``Dataset.save_to_disk`` folder; a ``DatasetDict`` folder gives its ``split``."""
    datasets = _require("datasets")
    path = Path(path)
    try:
        dataset = datasets.load_from_disk(str(path))
    except FileNotFoundError as err:
        raise DataFormatError(f"{path}: not a folder written by datasets' save_to_disk ({err})") from None
    source = str(path)
    if isinstance(dataset, datasets.DatasetDict):
        if split not in dataset:
            raise DataFormatError(f"{path}: a DatasetDict without a {split!r} split (has: {', '.join(dataset)})")
        dataset, source = dataset[split], f"{path}[{split}]"
    return _validated(iter(dataset), source)


def read_examples(path: str | Path) -> list[dict]:
    """Training examples from a JSONL file, a parquet file or a ``save_to_disk`` folder (by what ``path`` is)."""
    path = Path(path)
    if path.is_dir():
        return read_saved_dataset(path)
    if path.suffix == ".parquet":
        if not path.is_file():
            raise FileNotFoundError(f"Training data file {path} does not exist")
        return read_parquet(path)
    return read_jsonl(path)
