"""Math word problems: GSM8K as the stand-in for MetaMathQA (not obtainable offline), rows, SFT examples, prompts,
and GSM8K answer extraction / exact match exactly as lm-evaluation-harness's ``gsm8k`` task.

SFT targets rewrite a GSM8K solution the way MetaMathQA writes its GSM rows: calculator annotations ``<<48/2=24>>``
removed, the ``#### 72`` line kept and ``The answer is: 72`` appended.
"""

from __future__ import annotations

import re
from pathlib import Path

from talr import paths
from talr.data.rows import iter_jsonl, missing_fields

NAME = "gsm8k"
FILES = {"train": "gsm8k/train.jsonl", "test": "gsm8k/test.jsonl"}
SPLITS = ("train", "test")
FORMATS = ("reasoning", "label")
DEFAULT_FORMAT = "reasoning"

_INSTRUCTION = {
    "reasoning": 'Solve the problem step by step, then give the final answer on the last line as "The answer is: X".',
    "label": 'Give only the final answer, as "The answer is: X".',
}
_ANNOTATION = re.compile(r"<<[^>]*>>")
_FINAL_LINE = re.compile(r"\n#### ([^\n]+)\s*$")

# lm_eval/tasks/gsm8k/gsm8k.yaml (lm-eval 0.4.x): filters "strict-match" and "flexible-extract", and the exact_match
# options ignore_case: true, ignore_punctuation: false, regexes_to_ignore applied in this order to both sides.
STRICT_PATTERN = re.compile(r"#### (\-?[0-9\.\,]+)")
FLEXIBLE_PATTERN = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
REGEXES_TO_IGNORE = (",", "\\$", "(?s).*#### ", "\\.$")
_ANSWER_IS = re.compile(r"the answer is:?\s*\$?\s*(-?[0-9.,]*[0-9][0-9.,]*)", re.IGNORECASE)


def load_rows(split: str, data_dir: Path | None = None) -> list[dict]:
    """GSM8K rows (question, answer) plus ``id`` = "<split>-<index in file>" and ``target`` = the final answer."""
    if split not in SPLITS:
        raise ValueError(f"unknown GSM8K split {split!r}; known: {', '.join(SPLITS)}")
    path = Path(data_dir or paths.data_dir()) / FILES[split]
    rows = []
    for line_no, row in iter_jsonl(path):
        missing = missing_fields(row, ("question", "answer"))
        if missing:
            raise ValueError(f"{path}:{line_no}: missing field(s) {', '.join(missing)}")
        if not isinstance(row["question"], str) or not isinstance(row["answer"], str):
            raise ValueError(f"{path}:{line_no}: question and answer must be strings")
        final = _FINAL_LINE.search(row["answer"])
        if not final:
            raise ValueError(f"{path}:{line_no}: answer does not end with a '#### <number>' line")
        rows.append({**row, "id": f"{split}-{len(rows)}", "target": final.group(1).strip()})
    return rows


def metamath_solution(answer: str) -> str:
    """A GSM8K solution in MetaMathQA's GSM style: no <<...>> annotations, ending "#### X\\nThe answer is: X"."""
    final = _FINAL_LINE.search(answer)
    if not final:
        raise ValueError(f"GSM8K answer does not end with a '#### <number>' line: {answer[-80:]!r}")
    return f"{_ANNOTATION.sub('', answer).rstrip()}\nThe answer is: {final.group(1).strip()}"


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unknown GSM8K format {fmt!r}; known: {', '.join(FORMATS)}")


def eval_messages(row: dict, fmt: str) -> list[dict]:
    _check_format(fmt)
    return [{"role": "user", "content": f"{row['question']}\n\n{_INSTRUCTION[fmt]}"}]


def to_sft_example(row: dict, fmt: str) -> dict:
    _check_format(fmt)
    answer = metamath_solution(row["answer"]) if fmt == "reasoning" else f"The answer is: {row['target']}"
    return {"id": row["id"], "messages": eval_messages(row, fmt) + [{"role": "assistant", "content": answer}],
            "meta": {"source": NAME, "format": fmt}}


def _regex_filter(pattern: re.Pattern, text: str, group_select: int) -> str | None:
    """lm-eval's RegexFilter on one response; None where it returns its "[invalid]" fallback."""
    matches = pattern.findall(text if isinstance(text, str) else "")
    if not matches:
        return None
    match = matches[group_select]
    if isinstance(match, tuple):
        match = next((group for group in match if group), None)
        if match is None:
            return None
    return match.strip()


def extract_strict(text: str) -> str | None:
    """lm-eval gsm8k "strict-match": the first "#### X"."""
    return _regex_filter(STRICT_PATTERN, text, 0)


def extract_flexible(text: str) -> str | None:
    """lm-eval gsm8k "flexible-extract": the last number-like span."""
    return _regex_filter(FLEXIBLE_PATTERN, text, -1)


def normalize(text: str) -> str:
    """lm-eval exact_match normalisation for gsm8k: drop the ignored regexes in order, then lowercase."""
    for pattern in REGEXES_TO_IGNORE:
        if pattern == "(?s).*#### ":  # same result as re.sub (drop through the last "#### "), in linear time
            text = text.rpartition("#### ")[2]
        else:
            text = re.sub(pattern, "", text)
    return text.lower()


def exact_match(prediction: str | None, target: str) -> bool:
    """lm-eval exact_match with the gsm8k options; ``target`` may be the full GSM8K answer or the final number."""
    return prediction is not None and normalize(prediction) == normalize(target)


def extract_answer(text: str) -> tuple[str | None, str | None]:
    """(answer, method): the last "The answer is: X", else strict "#### X", else flexible (last number)."""
    if not isinstance(text, str):
        return None, None
    if marked := _ANSWER_IS.findall(text):
        return marked[-1], "answer_is"
    if strict := extract_strict(text):
        return strict, "strict"
    if flexible := extract_flexible(text):
        return flexible, "flexible"
    return None, None


def score(row: dict, output: str) -> dict:
    """``correct``: extract_answer then exact_match; also lm-eval's own two gsm8k verdicts on the same output."""
    extracted, method = extract_answer(output)
    target = row["target"]
    return {"extracted": extracted, "target": target, "correct": exact_match(extracted, target), "method": method,
            "strict_match": exact_match(extract_strict(output), target),
            "flexible_extract": exact_match(extract_flexible(output), target)}


def aggregate(scored_rows: list[dict]) -> dict:
    n = len(scored_rows)

    def mean(key: str) -> float:
        return sum(item[key] for item in scored_rows) / n if n else 0.0

    return {"n": n, "accuracy": mean("correct"), "strict_match": mean("strict_match"),
            "flexible_extract": mean("flexible_extract")}
