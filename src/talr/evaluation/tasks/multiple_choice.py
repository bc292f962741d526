"""Multiple choice by log-likelihood, zero-shot, as lm-evaluation-harness scores it.

Each choice is scored by log P(" " + choice | context), summed over its tokens (:func:`generation.loglikelihood`).
``acc``: the highest log-likelihood is the gold choice. ``acc_norm``: the same after dividing each log-likelihood by
the number of characters of the choice text (lm-eval's ``completion_len``, the choice without the leading space).
Ties go to the first choice (``numpy.argmax``). Contexts follow lm-eval's task templates, built from LLM Foundry's
``query``/``choices``/``gold`` files (ARC, PIQA, BoolQ, OpenBookQA, WinoGrande) and the MMLU release CSVs.
HellaSwag is not included: no offline copy of its validation set was obtainable.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from talr.data.rows import require_file
from talr.evaluation.baselines import label_baselines
from talr.evaluation.task import Choices, Scored, Task

ACC = "acc,none"
ACC_NORM = "acc_norm,none"


def argmax(values: list[float]) -> int:
    best = 0
    for i, v in enumerate(values):
        if v > values[best]:
            best = i
    return best


def read_foundry_jsonl(path: Path) -> list[dict]:
    docs = []
    with open(require_file(path), encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                gold = int(row["gold"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise ValueError(f"{path}:{number}: bad multiple-choice row ({e})") from e
            docs.append({**row, "id": number - 1, "gold": gold})
    return docs


class MultipleChoice(Task):
    """Subclasses give the file, the context and the choice texts; scoring is shared."""

    kind = "loglikelihood"
    version = "1"
    path: str
    metrics = {ACC: True, ACC_NORM: True}
    # names of the choice positions, for the majority-class baseline and the predicted-label distribution
    label_names: tuple[str, ...] = ("A", "B", "C", "D", "E")

    def load_all(self, data_dir: Path) -> list[dict]:
        docs = read_foundry_jsonl(Path(data_dir) / self.path)
        for doc in docs:
            if not 0 <= doc["gold"] < len(self.choices(doc)):
                raise ValueError(f"{Path(data_dir) / self.path}: row {doc['id'] + 1} has gold {doc['gold']} "
                                 f"outside its {len(self.choices(doc))} choices")
        return docs

    def context(self, doc: dict) -> str:
        return doc["query"]

    def choices(self, doc: dict) -> list[str]:
        return list(doc["choices"])

    def request(self, doc: dict) -> Choices:
        context = self.context(doc)
        return Choices(pairs=[(context, " " + choice) for choice in self.choices(doc)])

    def score(self, doc: dict, loglikelihoods: list[float]) -> Scored:
        choices = self.choices(doc)
        if len(loglikelihoods) != len(choices):
            raise ValueError(f"{len(loglikelihoods)} log-likelihoods for {len(choices)} choices")
        if any(ll is None for ll in loglikelihoods):
            raise ValueError("a choice does not fit the model's context window")
        pred = argmax(loglikelihoods)
        pred_norm = argmax([ll / len(c) for ll, c in zip(loglikelihoods, choices)])
        scores = {ACC: float(pred == doc["gold"]), ACC_NORM: float(pred_norm == doc["gold"])}
        return Scored(extracted={"acc": pred, "acc_norm": pred_norm}, target=doc["gold"],
                      scores={k: v for k, v in scores.items() if k in self.metrics})

    def aggregate(self, records: list[dict]) -> dict:
        """Accuracies plus the sanity baselines (:mod:`talr.evaluation.baselines`) of the ``acc`` predictions, with
        choice positions as labels. Items whose scorer raised (a choice longer than the model's window: no target
        recorded) are left out of the baselines; ``acc`` counts them wrong."""
        scored = [r for r in records if r.get("target") is not None]
        if not scored:
            return super().aggregate(records)
        n_choices = [len(r["prompt"]) for r in scored]
        if max(n_choices) > len(self.label_names):
            raise ValueError(f"task {self.name}: an item has {max(n_choices)} choices, more than the "
                             f"{len(self.label_names)} named positions")
        labels = self.label_names[: max(n_choices)]
        targets = [labels[int(r["target"])] for r in scored]
        predictions = [labels[r["extracted"]["acc"]] for r in scored]
        return {**super().aggregate(records), **label_baselines(targets, predictions, labels, n_choices)}


class ARCEasy(MultipleChoice):
    name = "arc_easy"
    description = "ARC-Easy test (2,376), 'Question: ...\\nAnswer:' + ' choice', acc / acc_norm"
    path = "arc_easy/arc_easy.jsonl"

    def context(self, doc: dict) -> str:
        return doc["query"].strip() + "\nAnswer:"  # query already reads "Question: ..."


class ARCChallenge(ARCEasy):
    name = "arc_challenge"
    description = "ARC-Challenge test (1,172), 'Question: ...\\nAnswer:' + ' choice', acc / acc_norm"
    path = "arc_challenge/arc_challenge.jsonl"


class PIQA(ARCEasy):
    name = "piqa"
    description = "PIQA validation (1,838), 'Question: goal\\nAnswer:' + ' solution', acc / acc_norm"
    path = "piqa/piqa.jsonl"


class BoolQ(MultipleChoice):
    name = "boolq"
    description = "BoolQ validation (3,270), lm-eval's 'passage\\nQuestion: ...?\\nAnswer:' + ' no'/' yes', acc"
    path = "boolq/boolq.jsonl"
    metrics = {ACC: True}
    label_names = ("no", "yes")
    version = "2"  # 1 kept LLM Foundry's "Passage: " prefix, which lm-eval's template does not have

    def context(self, doc: dict) -> str:
        # Foundry's query is "Passage: <passage>\nQuestion: <question>?"; lm-eval's boolq template is
        # "{{passage}}\nQuestion: {{question}}?\nAnswer:", so the prefix goes
        return doc["query"].strip().removeprefix("Passage: ") + "\nAnswer:"


class OpenBookQA(MultipleChoice):
    name = "openbookqa"
    description = "OpenBookQA test (500), question stem + ' choice', acc / acc_norm"
    path = "openbookqa/openbook_qa.jsonl"


class WinoGrande(MultipleChoice):
    """Partial scoring (lm-eval): the sentence up to the blank, filled with each option, is the context; the shared
    rest of the sentence is the continuation. acc only (the continuation is the same for both options)."""

    name = "winogrande"
    description = "WinoGrande dev (1,267), partial scoring of the shared continuation, acc"
    path = "winogrande/winogrande.jsonl"
    metrics = {ACC: True}

    def choices(self, doc: dict) -> list[str]:
        return list(doc["context_options"])

    def request(self, doc: dict) -> Choices:
        return Choices(pairs=[(option, " " + doc["continuation"]) for option in doc["context_options"]])


class MMLU(MultipleChoice):
    """57 subjects, test split (14,042), zero-shot, lm-eval's ``mmlu`` template; one pooled accuracy (lm-eval's
    group score weights subjects by size, which is the same number)."""

    name = "mmlu"
    description = "MMLU test (14,042), zero-shot lm-eval template, answer letter, acc"
    metrics = {ACC: True}
    letters = ("A", "B", "C", "D")

    def load_all(self, data_dir: Path) -> list[dict]:
        folder = Path(data_dir) / "mmlu" / "test"
        files = sorted(folder.glob("*_test.csv"))
        if not files:
            raise FileNotFoundError(f"data files not found: {folder}/*_test.csv (set TALR_DATA_DIR or --data-dir)")
        docs = []
        for path in files:
            subject = path.name[: -len("_test.csv")]
            with open(path, encoding="utf-8", newline="") as f:
                for number, row in enumerate(csv.reader(f), start=1):
                    if len(row) != 6 or row[5].strip() not in self.letters:
                        raise ValueError(f"{path}:{number}: expected question, 4 options and an answer letter A-D")
                    docs.append({"id": f"{subject}-{number - 1}", "subject": subject, "question": row[0],
                                 "options": row[1:5], "gold": self.letters.index(row[5].strip())})
        return docs

    def context(self, doc: dict) -> str:
        subject = doc["subject"].replace("_", " ")
        options = "".join(f"\n{letter}. {text}" for letter, text in zip(self.letters, doc["options"]))
        return (f"The following are multiple choice questions (with answers) about {subject}.\n\n"
                f"{doc['question'].strip()}{options}\nAnswer:")

    def choices(self, doc: dict) -> list[str]:
        return list(self.letters)
