"""Code length and drift from the base model on general text (:mod:`talr.evaluation.drift`), one pass per text.

The texts: 1,000 Stanford Alpaca instructions with their reference outputs, drawn with seed 0 from the 5,000-row
file (the ``codelength_alpaca`` rows). Metrics, all pooled over the texts with a bootstrap standard error over texts
(1,000 resamples, seeded), lower is better:

- ``bits_per_byte``: total bits / total UTF-8 bytes of the responses (tokenizer-independent);
- ``bits_per_token``: total bits / total scored tokens (what ``codelength_*`` reports);
- ``kl_base``: mean forward KL(base || model) per scored token, in nats (0 for the base model itself).
"""

from __future__ import annotations

from pathlib import Path

from talr.evaluation.metrics import bootstrap_stderr, with_stderr
from talr.evaluation.task import Response, Scored, Task
from talr.sampling import seeded_subset
from talr.evaluation.tasks.code_length import AlpacaCodeLength

BITS_PER_BYTE = "bits_per_byte,none"
BITS_PER_TOKEN = "bits_per_token,none"
KL_BASE = "kl_base,none"
N_TEXTS = 1000


def _ratio(numerator: str, denominator: str):
    def statistic(items: list[dict]) -> float:
        return sum(i[numerator] for i in items) / sum(i[denominator] for i in items)

    return statistic


class GeneralTextDrift(Task):
    name = "general_text"
    version = "1"
    kind = "response_drift"
    description = (f"{N_TEXTS} Alpaca responses: bits per byte, bits per token and KL(base || model) per token "
                   "(nats), one pass")
    metrics = {BITS_PER_BYTE: False, BITS_PER_TOKEN: False, KL_BASE: False}

    def load_all(self, data_dir: Path) -> list[dict]:
        return seeded_subset(AlpacaCodeLength().load_all(data_dir), N_TEXTS)

    def request(self, doc: dict) -> Response:
        return Response(messages=doc["messages"], response=doc["response"])

    def score(self, doc: dict, result: dict) -> Scored:
        return Scored(extracted=None, target=None, scores=dict(result))

    def failed_scores(self, doc: dict) -> dict:
        return {"bits": None, "n_tokens": 0, "bytes": 0, "kl_nats": None}

    def aggregate(self, records: list[dict]) -> dict:
        items = [r["scores"] for r in records if "error" not in r]
        if not items:
            raise ValueError(f"task {self.name}: no text was scored")
        out: dict = {}
        for key, numerator, denominator in ((BITS_PER_BYTE, "bits", "bytes"), (BITS_PER_TOKEN, "bits", "n_tokens")):
            statistic = _ratio(numerator, denominator)
            out.update(with_stderr(key, statistic(items), bootstrap_stderr(statistic, items)))
        if all(i["kl_nats"] is not None for i in items):
            statistic = _ratio("kl_nats", "n_tokens")
            out.update(with_stderr(KL_BASE, statistic(items), bootstrap_stderr(statistic, items)))
        out["tokens,none"] = sum(i["n_tokens"] for i in items)
        out["bytes,none"] = sum(i["bytes"] for i in items)
        return out
