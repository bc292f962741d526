"""Shared shape of the domain tasks: a ``talr.data`` source supplies rows, prompts and scoring; the task adds the
generation settings and the results.json metrics. ``--limit`` draws the source's seeded subset (``load_eval_rows``)."""

from __future__ import annotations

from pathlib import Path

from talr.data.sources import get_source, load_eval_rows
from talr.evaluation.task import Generate, Task


class DomainTask(Task):
    kind = "generate"
    source: str
    fmt: str  # the prompt/answer format of talr.data (match the format the model was trained on)

    def load(self, data_dir: Path, limit: int | None) -> tuple[list[dict], int]:
        total = len(get_source(self.source).load_rows("test", data_dir))
        return load_eval_rows(self.source, "test", limit=limit, seed=0, data_dir=data_dir), total

    def request(self, doc: dict) -> Generate:
        return Generate(messages=get_source(self.source).eval_messages(doc, self.fmt))

    def source_score(self, doc: dict, output: str) -> dict:
        return get_source(self.source).score(doc, output)

    def config(self) -> dict:
        return {**super().config(), "source": self.source, "format": self.fmt}
