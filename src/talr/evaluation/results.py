"""Per-item samples of an evaluation: append-only JSONL, resumable (results.json is written by ``talr.io``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class SampleLog:
    """``samples_<task>.jsonl``: one JSON record per finished item, appended and flushed as items complete.

    Opening an existing log reads the records already there (keyed by ``doc_id``) so an interrupted evaluation skips
    them. A last line cut off mid-write (no newline, or not JSON) is dropped and the file truncated before it, so new
    records start on a clean line; a bad line anywhere else is an error naming the file and line.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.records: dict[str, dict] = {}
        if self.path.exists():
            self._read_existing()

    def _read_existing(self) -> None:
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        offset = 0
        for number, line in enumerate(lines, start=1):
            is_last = number == len(lines)
            if is_last and not line:
                break
            complete = not is_last  # a final chunk without "\n" was cut off mid-write
            try:
                record = json.loads(line) if complete else None
            except json.JSONDecodeError:
                record = None
                if number < len(lines) - 1 or lines[-1]:
                    raise ValueError(f"{self.path}:{number}: not a JSON sample record") from None
            if record is None:
                with open(self.path, "r+b") as f:
                    f.truncate(offset)
                break
            if not isinstance(record, dict) or "doc_id" not in record:
                raise ValueError(f"{self.path}:{number}: sample record without a doc_id")
            self.records[str(record["doc_id"])] = record
            offset += len(line) + 1

    def __contains__(self, doc_id: Any) -> bool:
        return str(doc_id) in self.records

    def append(self, records: list[dict]) -> None:
        if not records:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())
        for record in records:
            self.records[str(record["doc_id"])] = record
