"""Chat examples named on the command line: JSONL files of training examples, JSON lists of Alpaca rows, the
``alpaca`` keyword (the Alpaca subset of the shared data folder) and data sources ``NAME[:SPLIT[:FORMAT]]``."""

from __future__ import annotations

import json
from pathlib import Path

from talr.data.formats import DataFormatError, read_jsonl
from talr.paths import data_dir
from talr.sampling import seeded_subset

ALPACA_FILE = "alpaca/alpaca_5000.json"


def alpaca_to_chat(row: dict, source: str = "<alpaca>", line: int | None = None) -> dict:
    """One Alpaca row (``instruction``, optional ``input``, ``output``) as a user/assistant chat example."""
    where = f"{source}:{line}" if line is not None else source
    for key in ("instruction", "output"):
        if not isinstance(row.get(key), str):
            raise DataFormatError(f"{where}: Alpaca row needs a string {key!r}")
    prompt = row["instruction"] if not row.get("input") else f"{row['instruction']}\n\n{row['input']}"
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": row["output"]}]}


def load_chat_examples(path: str | Path) -> list[dict]:
    """Chat examples from a JSONL file of training examples, or from a JSON list of Alpaca rows (or of examples).

    The keyword ``alpaca`` names the Alpaca subset in the shared data folder (``talr.paths.data_dir()``).
    """
    if str(path) == "alpaca":
        path = data_dir() / ALPACA_FILE
        if not path.is_file():
            raise FileNotFoundError(f"The Alpaca general probe set {path} is missing; pass a JSONL file of chat examples")
    path = Path(path)
    if path.suffix != ".json":
        return read_jsonl(path)
    if not path.is_file():
        raise FileNotFoundError(f"Data file {path} does not exist")
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataFormatError(f"{path}: invalid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(rows, list) or not rows:
        raise DataFormatError(f"{path}: expected a non-empty JSON list of examples")
    return [row if "messages" in row or "prompt" in row else alpaca_to_chat(row, str(path), k + 1)
            for k, row in enumerate(rows)]


def default_general_probe() -> Path | None:
    """The Alpaca subset of the shared data folder, if there is one."""
    path = data_dir() / ALPACA_FILE
    return path if path.is_file() else None


def _is_file_arg(text: str) -> bool:
    path = Path(text)
    return text == "alpaca" or path.suffix in (".json", ".jsonl") or path.exists()


def dataset_spec(text: str) -> dict:
    """The ``data.train`` mapping of a training config for a command-line data argument (see
    :func:`load_examples_arg`)."""
    if _is_file_arg(text):
        return {"path": str(data_dir() / ALPACA_FILE) if text == "alpaca" else text}
    name, _, rest = text.partition(":")
    split, _, fmt = rest.partition(":")
    return {"source": name, "split": split or "train", "format": fmt or None}


def load_examples_arg(text: str, limit: int | None = None, seed: int = 0) -> tuple[list[dict], str]:
    """Examples named on the command line: a JSONL/JSON file, ``alpaca``, or a data source ``NAME[:SPLIT[:FORMAT]]``
    (``talr.data.sources``), then a seeded sample of ``limit`` of them."""
    if _is_file_arg(text):
        return seeded_subset(load_chat_examples(text), limit, seed), text
    from talr.config import DatasetSpec
    from talr.data import load_train_examples

    return load_train_examples(DatasetSpec(**dataset_spec(text), limit=limit), seed=seed)
