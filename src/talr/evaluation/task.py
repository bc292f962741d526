"""What a task is: its documents, the model call each needs, and how outputs become scores.

A task turns each document into one request of a kind the evaluator knows how to run:

- :class:`Generate`: greedy generation from chat messages (``max_new_tokens`` and ``stop`` are the task's);
- :class:`Choices`: log-likelihood of each ``(context, continuation)`` pair (multiple choice);
- :class:`ChatChoices`: log-likelihood of each candidate assistant turn to chat messages (labels as answers);
- :class:`Response`: code length (bits) of a reference response to chat messages.

``score(doc, result)`` returns a :class:`Scored`; ``aggregate(records)`` turns saved sample records into results.json
metrics. Scores are keyed ``"metric,filter"`` as in lm-evaluation-harness.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from talr.evaluation.metrics import mean_with_stderr
from talr.sampling import seeded_subset


@dataclass(frozen=True)
class Generate:
    messages: list[dict]
    prefix: str = ""  # start of the assistant turn the model continues from (lm-eval's gen_prefix)


@dataclass(frozen=True)
class Choices:
    pairs: list[tuple[str, str]]


@dataclass(frozen=True)
class ChatChoices:
    """Candidate answers scored as whole assistant turns (through the end-of-turn token) after chat ``messages``."""

    messages: list[dict]
    responses: list[str]


@dataclass(frozen=True)
class Response:
    messages: list[dict]
    response: str


@dataclass
class Scored:
    extracted: Any
    target: Any
    scores: dict[str, Any]
    details: dict[str, Any] = field(default_factory=dict)


class Task:
    """Base class: subclasses set the class attributes and implement ``load_all``, ``request`` and ``score``."""

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    kind: ClassVar[str]  # "generate", "loglikelihood" (Choices or ChatChoices) or "response_bits"
    description: ClassVar[str] = ""
    max_new_tokens: ClassVar[int] = 256
    stop: ClassVar[tuple[str, ...]] = ()
    metrics: ClassVar[dict[str, bool]]  # "metric,filter" -> higher is better
    n_shot: ClassVar[int] = 0

    def load_all(self, data_dir: Path) -> list[dict]:
        """Every document of the evaluation split, each with a unique JSON-able ``"id"``."""
        raise NotImplementedError

    def load(self, data_dir: Path, limit: int | None) -> tuple[list[dict], int]:
        """The documents to evaluate (a seeded subset of ``limit``, see :func:`talr.sampling.seeded_subset`) and the
        size of the full split."""
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        docs = self.load_all(data_dir)
        return seeded_subset(docs, limit), len(docs)

    def request(self, doc: dict) -> Generate | Choices | Response:
        raise NotImplementedError

    def score(self, doc: dict, result: Any) -> Scored:
        raise NotImplementedError

    def failed_scores(self, doc: dict) -> dict[str, Any]:
        """Scores of an item whose scorer raised: wrong on every metric."""
        return {key: 0.0 for key in self.metrics}

    def aggregate(self, records: Sequence[dict]) -> dict[str, Any]:
        """Default: every metric is the mean of its per-item scores, with the binomial/mean standard error."""
        out: dict[str, Any] = {}
        for key in self.metrics:
            out.update(mean_with_stderr(key, [float(r["scores"][key]) for r in records]))
        return out

    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"task": self.name, "description": self.description, "output_type": self.kind}
        if self.kind == "generate":
            cfg["generation_kwargs"] = {"max_new_tokens": self.max_new_tokens, "until": list(self.stop), "do_sample": False}
        return cfg
