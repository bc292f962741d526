"""Amazon ESCI (Shopping Queries) query-product relevance: rows, SFT examples, prompts, label extraction, metrics.

Labels (Reddy et al. 2022, "Shopping Queries Dataset"): E = Exact, S = Substitute, C = Complement, I = Irrelevant.
Only ``esci/esci_examples_sample.jsonl`` (1,199 labelled US test-split rows with product titles) is available, so
train and test are a seeded split of it by query (no query in both); see docs/data.md.
"""

from __future__ import annotations

import re
from pathlib import Path

from talr import paths, stats
from talr.data.rows import group_split, iter_jsonl, missing_fields

NAME = "esci"
FILE = "esci/esci_examples_sample.jsonl"
SPLITS = ("train", "test")
TEST_FRACTION = 0.4
SPLIT_SEED = 0
FORMATS = ("label", "reasoning")
DEFAULT_FORMAT = "label"
RATIONALE_FIELD = "rationale"
FIELDS = ("query_id", "query", "product_id", "esci_label", "product_title")
LABELS = ("E", "S", "C", "I")
LABEL_WORDS = {"E": "Exact", "S": "Substitute", "C": "Complement", "I": "Irrelevant"}
_WORD_TO_LABEL = {word.lower(): label for label, word in LABEL_WORDS.items()}

# Definitions from the ESCI paper's annotation guidelines, shortened.
_TASK = (
    "Judge how relevant the product is to the shopping query, using one of four labels:\n"
    "Exact: the product is relevant for the query and satisfies all the query specifications.\n"
    "Substitute: the product is somewhat relevant; it fails some aspects of the query but can be used as a "
    "functional substitute.\n"
    "Complement: the product does not fulfil the query but could be used in combination with an exact item.\n"
    "Irrelevant: the product is irrelevant for the query, or fails a central aspect of it.\n\n"
)
_ANSWER_INSTRUCTION = {
    "label": "Answer with the label only.",
    "reasoning": 'Explain your judgement briefly, then give the label on the last line as "Label: <label>".',
}
_WORD = r"(exact|substitute|complement|irrelevant)"
_MARKED_LABEL = re.compile(rf"(?:label|answer(?: is)?)\s*[:=]?\s*\**\s*{_WORD}\b", re.IGNORECASE)
_ANY_LABEL = re.compile(rf"\b{_WORD}\b", re.IGNORECASE)
_LETTER_ONLY = re.compile(r"\W*([ESCI])\W*")


def load_rows(split: str, data_dir: Path | None = None) -> list[dict]:
    """Rows of one split (file fields plus ``id`` = "<query_id>-<product_id>"), in file order."""
    if split not in SPLITS:
        raise ValueError(f"unknown ESCI split {split!r}; known: {', '.join(SPLITS)}")
    path = Path(data_dir or paths.data_dir()) / FILE
    rows, seen = [], set()
    for line_no, row in iter_jsonl(path):
        missing = missing_fields(row, FIELDS)
        if missing:
            raise ValueError(f"{path}:{line_no}: missing field(s) {', '.join(missing)}")
        if row["esci_label"] not in LABELS:
            raise ValueError(f"{path}:{line_no}: esci_label {row['esci_label']!r} is not one of {', '.join(LABELS)}")
        row_id = f"{row['query_id']}-{row['product_id']}"
        if row_id in seen:
            raise ValueError(f"{path}:{line_no}: duplicate (query_id, product_id) {row_id}")
        seen.add(row_id)
        rows.append({**row, "id": row_id})
    train, test = group_split(rows, lambda row: str(row["query_id"]), TEST_FRACTION, SPLIT_SEED)
    return test if split == "test" else train


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unknown ESCI format {fmt!r}; known: {', '.join(FORMATS)}")


def eval_messages(row: dict, fmt: str) -> list[dict]:
    _check_format(fmt)
    user = f"{_TASK}Query: {row['query']}\nProduct: {row['product_title']}\n\n{_ANSWER_INSTRUCTION[fmt]}"
    return [{"role": "user", "content": user}]


def to_sft_example(row: dict, fmt: str) -> dict:
    """Prompt plus the label word; the reasoning format needs a ``rationale`` field, which this data lacks."""
    _check_format(fmt)
    word = LABEL_WORDS[row["esci_label"]]
    if fmt == "reasoning":
        rationale = row.get(RATIONALE_FIELD)
        if not isinstance(rationale, str) or not rationale.strip():
            raise ValueError(
                f"ESCI row {row.get('id')}: the reasoning format needs a non-empty {RATIONALE_FIELD!r} field and "
                "this data has no rationale; use fmt='label'"
            )
        answer = f"{rationale.strip()}\nLabel: {word}"
    else:
        answer = word
    return {"id": row["id"], "messages": eval_messages(row, fmt) + [{"role": "assistant", "content": answer}],
            "meta": {"source": NAME, "format": fmt, "label": row["esci_label"]}}


def extract_label(output: str) -> str | None:
    """The label letter in a generation: the last "Label: X" / "answer is X", else the first label word,
    else an output that is just the letter E/S/C/I; None when there is none."""
    if not isinstance(output, str):
        return None
    if marked := _MARKED_LABEL.findall(output):
        return _WORD_TO_LABEL[marked[-1].lower()]
    if word := _ANY_LABEL.search(output):
        return _WORD_TO_LABEL[word.group(1).lower()]
    if letter := _LETTER_ONLY.fullmatch(output):
        return letter.group(1)
    return None


def score(row: dict, output: str) -> dict:
    extracted = extract_label(output)
    target = row["esci_label"]
    return {"extracted": extracted, "target": target, "correct": extracted == target, "label": target}


def macro_f1(targets: list[str], predictions: list[str | None], labels: tuple[str, ...] = LABELS) -> tuple[float, dict]:
    """Macro-F1 over ``labels`` (all four count, with or without support) and per-label precision/recall/F1/support
    (:func:`talr.stats.per_label_f1`: a prediction of None, nothing extracted, is a miss for its target label)."""
    per_label = stats.per_label_f1(targets, predictions, labels)
    return stats.macro_f1(targets, predictions, labels), per_label


def aggregate(scored_rows: list[dict]) -> dict:
    """Accuracy, macro-F1 over E/S/C/I, per-label stats and how many outputs had no label."""
    targets = [item["target"] for item in scored_rows]
    predictions = [item["extracted"] for item in scored_rows]
    macro, per_label = macro_f1(targets, predictions)
    n = len(scored_rows)
    return {"n": n, "accuracy": sum(item["correct"] for item in scored_rows) / n if n else 0.0, "macro_f1": macro,
            "per_label": per_label, "unparsed": sum(p is None for p in predictions)}


def metrics(rows: list[dict], outputs: list[str]) -> dict:
    """Score generations against their rows and aggregate (accuracy, macro-F1)."""
    if len(rows) != len(outputs):
        raise ValueError(f"{len(rows)} rows but {len(outputs)} outputs")
    return aggregate([score(row, output) for row, output in zip(rows, outputs)])
