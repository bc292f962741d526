"""Amazon ESCI relevance (E/S/C/I) on the labelled US test split of ``talr.data.esci``, two ways:

- ``esci``: generative, the label-only prompt and ``talr.data.esci``'s label extraction (what a chat user sees);
- ``esci_ll``: the four label words scored as choices by log-likelihood, every test row: the model's answer is the
  label whose whole assistant turn (the word and the end-of-turn token, through the chat template, exactly what
  label SFT trains on) is most probable. No extraction can fail, so it measures what the model knows about the
  labels even when its free text would not parse.

Both report ``acc`` (mean, binomial stderr) and the sanity baselines of :mod:`talr.evaluation.baselines`: chance
(1/4), the majority rate and label of the evaluated rows, macro-F1 over the four labels with a bootstrap stderr
(1,000 resamples, seeded; macro-F1 is not a mean of per-item scores), and the predicted-label distribution.
"""

from __future__ import annotations

from pathlib import Path

from talr.data import esci
from talr.data.sources import get_source
from talr.evaluation.baselines import label_baselines
from talr.evaluation.metrics import mean_with_stderr
from talr.evaluation.task import ChatChoices, Scored, Task
from talr.evaluation.tasks.domain import DomainTask
from talr.evaluation.tasks.multiple_choice import argmax

ACC = "acc,none"


def esci_aggregate(records: list[dict]) -> dict:
    """``acc`` plus the label baselines; an output with no label (``extracted`` None) is wrong for every label."""
    out = mean_with_stderr(ACC, [r["scores"][ACC] for r in records])
    scored = [r for r in records if r.get("target") is not None]
    if scored:
        out.update(label_baselines([r["target"] for r in scored], [r["extracted"] for r in scored], esci.LABELS,
                                   [len(esci.LABELS)] * len(scored)))
    return out


class ESCI(DomainTask):
    name = "esci"
    version = "1"
    description = "ESCI relevance label (E/S/C/I), label-only prompt, generated, accuracy and macro-F1"
    source = esci.NAME
    fmt = "label"
    max_new_tokens = 32
    metrics = {ACC: True, "macro_f1,none": True}

    def score(self, doc: dict, output: str) -> Scored:
        s = self.source_score(doc, output)
        return Scored(extracted=s["extracted"], target=s["target"], scores={ACC: float(s["correct"])})

    def failed_scores(self, doc: dict) -> dict:
        return {ACC: 0.0}

    def aggregate(self, records: list[dict]) -> dict:
        return esci_aggregate(records)


class ESCILogLikelihood(Task):
    name = "esci_ll"
    version = "1"
    kind = "loglikelihood"
    description = "ESCI relevance, every test row, the four label words scored as answers by log-likelihood"
    metrics = {ACC: True, "macro_f1,none": True}

    def load(self, data_dir: Path, limit: int | None) -> tuple[list[dict], int]:
        # the same seeded subset as the generative task, so the two variants are paired item by item
        return ESCI().load(data_dir, limit)

    def request(self, doc: dict) -> ChatChoices:
        return ChatChoices(messages=get_source(esci.NAME).eval_messages(doc, "label"),
                           responses=[esci.LABEL_WORDS[label] for label in esci.LABELS])

    def score(self, doc: dict, loglikelihoods: list[float]) -> Scored:
        if len(loglikelihoods) != len(esci.LABELS) or any(ll is None for ll in loglikelihoods):
            raise ValueError(f"expected {len(esci.LABELS)} finite log-likelihoods, got {loglikelihoods}")
        predicted = esci.LABELS[argmax(loglikelihoods)]
        target = doc["esci_label"]
        return Scored(extracted=predicted, target=target, scores={ACC: float(predicted == target)})

    def failed_scores(self, doc: dict) -> dict:
        return {ACC: 0.0}

    def aggregate(self, records: list[dict]) -> dict:
        return esci_aggregate(records)
