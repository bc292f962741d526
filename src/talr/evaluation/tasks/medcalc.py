"""MedCalc-Bench v1.0 test (1,047 rows): the benchmark's prompts and correctness rules (``talr.data.medcalc``).

``accuracy`` counts an answer right when ``talr.data.medcalc.score`` does (official JSON extraction, else its
fallback), ``official_accuracy`` only with the official extraction; both overall and per Category
(``accuracy_<category>``), each a mean with the binomial standard error.
"""

from __future__ import annotations

import re

from talr.data import medcalc
from talr.evaluation.metrics import mean_with_stderr, with_stderr
from talr.evaluation.task import Scored
from talr.evaluation.tasks.domain import DomainTask

ACCURACY = "accuracy,none"
OFFICIAL = "official_accuracy,none"


def category_key(category: str) -> str:
    return f"accuracy_{re.sub(r'[^a-z0-9]+', '_', category.lower()).strip('_')},none"


class MedCalc(DomainTask):
    name = "medcalc"
    version = "1"
    description = "MedCalc-Bench test, official zero-shot step-by-step prompt, accuracy overall and per category"
    source = medcalc.NAME
    fmt = "reasoning"
    max_new_tokens = 512
    metrics = {ACCURACY: True, OFFICIAL: True}

    def score(self, doc: dict, output: str) -> Scored:
        s = self.source_score(doc, output)
        return Scored(extracted=s["extracted"], target=s["target"],
                      scores={ACCURACY: float(s["correct"]), OFFICIAL: float(s["official_correct"])},
                      details={"category": s["category"], "calculator_id": s["calculator_id"], "method": s["method"]})

    def failed_scores(self, doc: dict) -> dict:
        return {ACCURACY: 0.0, OFFICIAL: 0.0}

    def aggregate(self, records: list[dict]) -> dict:
        """Values from ``talr.data.medcalc.aggregate`` (the benchmark's own summary); standard errors added."""
        categories = [r.get("details", {}).get("category") for r in records]
        scored = [{"correct": bool(r["scores"][ACCURACY]), "official_correct": bool(r["scores"][OFFICIAL]),
                   "category": c} for r, c in zip(records, categories)]
        summary = medcalc.aggregate(scored)
        out = mean_with_stderr(ACCURACY, [r["scores"][ACCURACY] for r in records])
        out.update(mean_with_stderr(OFFICIAL, [r["scores"][OFFICIAL] for r in records]))
        for category, stats in summary["per_category"].items():
            values = [r["scores"][ACCURACY] for r, c in zip(records, categories) if c == category]
            out.update(with_stderr(category_key(str(category)), stats["accuracy"], mean_with_stderr("x", values)["x_stderr"]))
        return out


class MedCalcLabel(MedCalc):
    name = "medcalc_label"
    description = "MedCalc-Bench test, official direct-answer prompt (JSON answer only), accuracy overall and per category"
    fmt = "label"
    max_new_tokens = 64
