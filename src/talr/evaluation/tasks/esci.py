"""Amazon ESCI relevance (E/S/C/I) on the labelled US test sample, prompts and label extraction of ``talr.data.esci``.

``acc``: mean with binomial stderr. ``macro_f1``: ``talr.data.esci.macro_f1`` over the four labels, standard error by
bootstrap over items (1,000 resamples, seeded), since macro-F1 is not a mean of per-item scores.
"""

from __future__ import annotations

from talr.data import esci
from talr.evaluation.metrics import bootstrap_stderr, mean_with_stderr, with_stderr
from talr.evaluation.task import Scored
from talr.evaluation.tasks.domain import DomainTask

ACC = "acc,none"
MACRO_F1 = "macro_f1,none"


def macro_f1(pairs: list[tuple[str | None, str]]) -> float:
    """Macro-F1 of (predicted, target) pairs."""
    return esci.macro_f1([t for _, t in pairs], [p for p, _ in pairs])[0]


class ESCI(DomainTask):
    name = "esci"
    version = "1"
    description = "ESCI relevance label (E/S/C/I), label-only prompt, accuracy and macro-F1"
    source = esci.NAME
    fmt = "label"
    max_new_tokens = 32
    metrics = {ACC: True, MACRO_F1: True}

    def score(self, doc: dict, output: str) -> Scored:
        s = self.source_score(doc, output)
        return Scored(extracted=s["extracted"], target=s["target"], scores={ACC: float(s["correct"])})

    def failed_scores(self, doc: dict) -> dict:
        return {ACC: 0.0}

    def aggregate(self, records: list[dict]) -> dict:
        # A record whose scorer crashed has neither prediction nor target: wrong for acc, and outside every label's
        # counts for macro-F1 (talr.data.esci.score does not raise, so this is a safety net only).
        pairs = [(r["extracted"], r["target"]) for r in records]
        out = mean_with_stderr(ACC, [r["scores"][ACC] for r in records])
        out.update(with_stderr(MACRO_F1, macro_f1(pairs), bootstrap_stderr(macro_f1, pairs)))
        return out
