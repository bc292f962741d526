"""Reading benchmark files row by row (errors name file and line) and seeded group-disjoint splits."""

from __future__ import annotations

import csv
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import talr.io

# Patient notes in MedCalc-Bench exceed csv's default 128 KiB field limit; 2**31 - 1 fits a C long everywhere.
_CSV_FIELD_LIMIT = 2**31 - 1


def require_file(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: data file not found (talr reads benchmark data from talr.paths.data_dir(); "
            "set TALR_DATA_DIR to the folder laid out like shared/data)"
        )
    return path


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for each non-blank line of a data file; a line that is not a JSON object is an
    error (:func:`talr.io.iter_jsonl`)."""
    for line_no, row in talr.io.iter_jsonl(require_file(path)):
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{line_no}: expected a JSON object, got {type(row).__name__}")
        yield line_no, row


def iter_csv(path: Path) -> Iterator[tuple[int, dict]]:
    """Yield (line number where the record starts, row dict); a record with the wrong number of fields is an error."""
    csv.field_size_limit(max(csv.field_size_limit(), _CSV_FIELD_LIMIT))
    with require_file(path).open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        start = 1
        try:
            if not reader.fieldnames:
                raise ValueError(f"{path}:1: empty file, expected a header line")
            start = reader.line_num + 1
            for row in reader:
                if None in row or any(value is None for value in row.values()):
                    raise ValueError(f"{path}:{start}: record does not have the header's {len(reader.fieldnames)} "
                                     "fields")
                yield start, row
                start = reader.line_num + 1
        except UnicodeDecodeError:  # decoded in blocks: the record where it surfaced, not the exact line
            raise ValueError(f"{path}:{start}: not UTF-8 text") from None
        except csv.Error as err:
            raise ValueError(f"{path}:{start}: malformed CSV ({err})") from None


def missing_fields(row: dict, fields: tuple[str, ...]) -> list[str]:
    return [name for name in fields if name not in row]


def group_split(rows: list[dict], group_of: Callable[[dict], str], eval_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Split rows into (train, eval) so that no group is in both.

    The sorted distinct groups are shuffled with ``random.Random(seed)`` and the first ``round(eval_fraction * n)``
    go to eval. Rows keep their file order inside each part.
    """
    groups = sorted({group_of(row) for row in rows})
    random.Random(seed).shuffle(groups)
    eval_groups = set(groups[: round(eval_fraction * len(groups))])
    train = [row for row in rows if group_of(row) not in eval_groups]
    held_out = [row for row in rows if group_of(row) in eval_groups]
    return train, held_out
