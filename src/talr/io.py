"""Files talr writes and reads back: atomic writes (a reader never sees half a file) and JSON Lines.

Every JSON, text and JSONL file a run, an evaluation or a sweep writes goes through :func:`atomic_write_bytes`
(write a temporary file beside the target, fsync, rename over it), so a kill mid-write leaves the old file or the
new one, never a truncated one that a resumed run would take for finished. Logs that grow line by line
(``metrics.jsonl``, ``probes.jsonl``) are appended with :func:`append_jsonl` instead; their readers drop a cut-off
last line.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write to a temporary file beside ``path``, fsync it, then rename over ``path``: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """UTF-8 text written atomically (:func:`atomic_write_bytes`); newlines are written as given."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, payload: Any) -> Path:
    """JSON (indented, UTF-8, non-JSON values as ``str``) written atomically (:func:`atomic_write_bytes`)."""
    return atomic_write_text(path, json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n")


def read_json(path: str | Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from e


def write_jsonl(rows: Iterable[dict], path: str | Path) -> Path:
    """One JSON object per line (UTF-8, non-ASCII kept), written atomically."""
    return atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def iter_jsonl(path: str | Path, error: type[ValueError] = ValueError) -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` for each non-blank line of a JSONL file, read strictly: a line that is not UTF-8 or not
    JSON raises ``error`` naming the file and line (data files; for a log a kill may cut off, see
    :func:`read_jsonl_records`)."""
    with Path(path).open("rb") as handle:  # bytes, so a decoding error is pinned to its line
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise error(f"{path}:{number}: not UTF-8 text") from None
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as err:
                raise error(f"{path}:{number}: invalid JSON ({err.msg} at column {err.colno})") from None
            except RecursionError:
                raise error(f"{path}:{number}: JSON nested too deeply") from None


def append_jsonl(path: str | Path, records: Iterable[dict]) -> None:
    """Append one line per record and flush: a log that survives a kill up to its last complete line."""
    with Path(path).open("a", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
        handle.flush()


def read_jsonl_records(path: str | Path) -> list[dict]:
    """The records of a log written by :func:`append_jsonl`, skipping blank lines and a last line cut off
    mid-write (a kill during an append); a bad line anywhere else is an error naming the file and line."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise ValueError(f"{path}:{number}: not a JSON record") from None
    return records
