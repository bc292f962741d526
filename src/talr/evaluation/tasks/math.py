"""The math domain task: the math source's eval rows (GSM8K test, standing in for MetaMathQA) in the training format.

Unlike the general ``gsm8k`` task (``#### N`` instruction, lm-eval filters only), this one prompts as the domain
SFT data does (``talr.data.math.eval_messages``, "The answer is: X") and scores with ``talr.data.math.score``:
``accuracy`` (its answer extraction), plus lm-eval's strict and flexible exact match on the same outputs.
"""

from __future__ import annotations

from talr.data import math as math_source
from talr.evaluation.task import Scored
from talr.evaluation.tasks.domain import DomainTask

ACCURACY = "accuracy,none"
STRICT = "exact_match,strict-match"
FLEXIBLE = "exact_match,flexible-extract"


class Math(DomainTask):
    name = "math"
    version = "1"
    description = "math domain (GSM8K test) in the SFT format 'The answer is: X'; accuracy + lm-eval exact match"
    source = math_source.NAME
    fmt = "reasoning"
    max_new_tokens = 384
    metrics = {ACCURACY: True, STRICT: True, FLEXIBLE: True}

    def score(self, doc: dict, output: str) -> Scored:
        s = self.source_score(doc, output)
        return Scored(extracted=s["extracted"], target=s["target"],
                      scores={ACCURACY: float(s["correct"]), STRICT: float(s["strict_match"]),
                              FLEXIBLE: float(s["flexible_extract"])},
                      details={"method": s["method"]})
