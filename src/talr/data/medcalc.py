"""MedCalc-Bench v1.0 (clinical calculations from patient notes): rows, SFT examples, prompts and official scoring.

Prompts, answer extraction and correctness follow the benchmark's own code (ncbi-nlp/MedCalc-Bench,
``evaluation/run.py``: ``direct_answer``, ``zero_shot``, ``extract_answer``; ``evaluation/evaluate.py``:
``check_correctness``; ``evaluation/table_stats.py``: ``compute_overall_accuracy``). See docs/data.md for the
rules, the fallback extraction and the two places where this module differs on purpose.
"""

from __future__ import annotations

import ast
import json
import math
import operator
import re
from datetime import datetime
from pathlib import Path

from talr import paths
from talr.data.rows import group_split, iter_csv, missing_fields

NAME = "medcalc_bench"
FILES = {"train": "medcalc_bench/train_subset/valid_split.csv", "test": "medcalc_bench/test_data.csv"}
# "dev_train"/"dev" split the test file by Note ID for users with no training file (no note in both).
SPLITS = ("train", "test", "dev_train", "dev")
DEV_FRACTION = 0.3
DEV_SEED = 0
FORMATS = ("label", "reasoning")
DEFAULT_FORMAT = "reasoning"
COLUMNS = (
    "Row Number", "Calculator ID", "Calculator Name", "Category", "Output Type", "Note ID", "Note Type",
    "Patient Note", "Question", "Relevant Entities", "Ground Truth Answer", "Lower Limit", "Upper Limit",
    "Ground Truth Explanation",
)

# Output type by Calculator ID, exactly the official lists (69 is checked before the integer list, as there).
DATE_IDS = frozenset({13, 68})
GESTATIONAL_AGE_IDS = frozenset({69})
INTEGER_IDS = frozenset({4, 15, 16, 17, 18, 20, 21, 25, 27, 28, 29, 32, 33, 36, 43, 45, 48, 51})
DECIMAL_IDS = frozenset({2, 3, 5, 6, 7, 8, 9, 10, 11, 19, 22, 23, 24, 26, 30, 31, 38, 39, 40, 44, 46, 49, 56, 57,
                         58, 59, 60, 61, 62, 63, 64, 65, 66, 67})
KNOWN_IDS = DATE_IDS | GESTATIONAL_AGE_IDS | INTEGER_IDS | DECIMAL_IDS

# The official prompts: "direct_answer" for the label format, "zero_shot" (step-by-step) for the reasoning format.
_SYSTEM = {
    "label": 'You are a helpful assistant for calculating a score for a given patient note. Please output answer only '
             'without any other text. Your output should only contain a JSON dict formatted as '
             '{"answer": str(value which is the answer to the question)}.',
    "reasoning": 'You are a helpful assistant for calculating a score for a given patient note. Please think '
                 'step-by-step to solve the question and then generate the required score. Your output should only '
                 'contain a JSON dict formatted as {"step_by_step_thinking": '
                 'str(your_step_by_step_thinking_procress_to_solve_the_question), '
                 '"answer": str(short_and_direct_answer_of_the_question)}.',
}
_JSON_SHAPE = {
    "label": '{"answer": str(value which is the answer to the question)}',
    "reasoning": '{"step_by_step_thinking": str(your_step_by_step_thinking_procress_to_solve_the_question), '
                 '"answer": str(short_and_direct_answer_of_the_question)}',
}
# The official extractor treats an answer that merely repeats the prompt's placeholder as not found.
_PLACEHOLDERS = ("str(short_and_direct_answer_of_the_question)", "str(value which is the answer to the question)",
                 "X.XX")

_JSON_ANSWER = re.compile(r'[Aa]nswer":\s*(.*?)\}')
_DATE_AT_START = re.compile(r"^(0?[1-9]|1[0-2])\/(0?[1-9]|[12][0-9]|3[01])\/(\d{4})")
_WEEKS_DAYS = re.compile(r"\(?[\"\']?(\d+)\s*(weeks?)?[\"\']?,?\s*[\"\']?(\d+)\s*(days?)?[\"\']?\s*\)?")
_OUT_OF = re.compile(r"(\d+) out of")
_NUMBER_LIST = re.compile(r"-?\d+(, ?-?\d+)+")
_NUMBER = re.compile(r"(-?\d+(\.\d+)?)")
_EXPRESSION = re.compile(r"str\((.*)\)")
_EGFR = re.compile(r"(-?\d+(\.\d+)?)\s*mL/min/1.73")
_PERCENT = re.compile(r"(-?\d+(\.\d+)?)\%")
# The official script strips these (in this order) from a str(...) expression before evaluating it.
_EXPRESSION_EDITS = (("^", "**"), ("is odd", "% 2 == 1"), ("is even", "% 2 == 0"), ("sqrt", "math.sqrt"),
                     (".math", ""), ("weight", ""), ("height", ""), ("mg/dl", ""), ("g/dl", ""), ("mmol/L", ""),
                     ("kg", ""), ("g", ""), ("mEq/L", ""))
# Fallback patterns, searched in the whole output when the JSON answer is missing or unparseable.
_ANY_DATE = re.compile(r"\b(0?[1-9]|1[0-2])[/-](0?[1-9]|[12][0-9]|3[01])[/-](\d{4})\b")
# (?<!\d) starts numbers only at their first digit, which keeps the search linear on long digit runs.
_WEEKS_OR_DAYS = re.compile(r"(?<!\d)(\d+)\s*weeks?(?:\W{0,3}(?:and\s+)?(\d+)\s*days?)?|(?<!\d)(\d+)\s*days?",
                            re.IGNORECASE)
# Numbers inside units are not answers: the 1.73 of "mL/min/1.73 m²" and the 2 of "kg/m^2".
_UNIT_NUMBERS = re.compile(r"/\s*1\.73\s*m|(?<=[A-Za-z])\^-?\d+")


def load_rows(split: str, data_dir: Path | None = None) -> list[dict]:
    """Rows of one split as the CSV's string fields plus ``id`` ("train-<Row Number>" / "test-<Row Number>")."""
    if split not in SPLITS:
        raise ValueError(f"unknown MedCalc-Bench split {split!r}; known: {', '.join(SPLITS)}")
    file_split = "train" if split == "train" else "test"
    path = Path(data_dir or paths.data_dir()) / FILES[file_split]
    rows, seen = [], set()
    for line_no, row in iter_csv(path):
        missing = missing_fields(row, COLUMNS)
        if missing:
            raise ValueError(f"{path}:{line_no}: missing column(s) {', '.join(missing)}")
        if not row["Calculator ID"].strip().isdigit() or int(row["Calculator ID"]) not in KNOWN_IDS:
            raise ValueError(f"{path}:{line_no}: unknown Calculator ID {row['Calculator ID']!r}")
        row_id = f"{file_split}-{row['Row Number']}"
        if row_id in seen:
            raise ValueError(f"{path}:{line_no}: duplicate Row Number {row['Row Number']!r}")
        seen.add(row_id)
        rows.append({**row, "id": row_id})
    if split in ("dev_train", "dev"):
        train, held_out = group_split(rows, lambda row: row["Note ID"], DEV_FRACTION, DEV_SEED)
        return held_out if split == "dev" else train
    return rows


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unknown MedCalc-Bench format {fmt!r}; known: {', '.join(FORMATS)}")


def eval_messages(row: dict, fmt: str) -> list[dict]:
    """The official system + user prompt ("direct_answer" for label, "zero_shot" for reasoning)."""
    _check_format(fmt)
    user = (f"Here is the patient note:\n{row['Patient Note']}\n\nHere is the task:\n{row['Question']}\n\n"
            f"Please directly output the JSON dict formatted as {_JSON_SHAPE[fmt]}:")
    return [{"role": "system", "content": _SYSTEM[fmt]}, {"role": "user", "content": user}]


def to_sft_example(row: dict, fmt: str) -> dict:
    """Prompt plus the JSON answer the official extractor reads: {"answer": ...} or with the explanation first."""
    _check_format(fmt)
    if fmt == "reasoning":
        target = {"step_by_step_thinking": row["Ground Truth Explanation"], "answer": row["Ground Truth Answer"]}
    else:
        target = {"answer": row["Ground Truth Answer"]}
    messages = eval_messages(row, fmt) + [{"role": "assistant", "content": json.dumps(target, ensure_ascii=False)}]
    return {"id": row["id"], "messages": messages,
            "meta": {"source": NAME, "format": fmt, "category": row["Category"], "calculator_id": int(row["Calculator ID"])}}


def extract_json_answer(output: str) -> str | None:
    """The official extraction of the JSON "answer" value (last match, quotes stripped); None when not found."""
    found = _JSON_ANSWER.findall(output)
    if not found:
        return None
    value = found[-1].strip().strip('"')
    return None if value in _PLACEHOLDERS else value


def parse_answer(text: str, calculator_id: int) -> str | None:
    """The official per-output-type normalisation of an answer string; None where the official code gives N/A."""
    if calculator_id in DATE_IDS:
        match = _DATE_AT_START.search(text)
        return f"{int(match.group(1)):02}/{int(match.group(2)):02}/{match.group(3)}" if match else None
    if calculator_id in GESTATIONAL_AGE_IDS:
        if not _WEEKS_DAYS.search(text):
            return None
        match = _WEEKS_DAYS.search(text.replace("[", "(").replace("]", ")").replace("'", "").replace('"', ""))
        return f"({match.group(1)}, {match.group(3)})" if match else None
    if calculator_id in INTEGER_IDS:
        if match := _OUT_OF.search(text):  # "3 out of 5"
            return match.group(1)
        if match := _NUMBER_LIST.search(text):  # "3, 4, 5": the official code counts the items
            return str(len(match.group(0).split(",")))
        numbers = _NUMBER.findall(text)
        return numbers[-1][0] if numbers else None
    if calculator_id in DECIMAL_IDS:
        value = _decimal_value(text)
        return None if value is None else str(value)
    raise ValueError(f"unknown Calculator ID {calculator_id}")


def _decimal_value(text: str) -> float | int | None:
    if match := _EXPRESSION.search(text):  # "str(round(140 * ...))": the model wrote an expression
        expression = match.group(1)
        for old, new in _EXPRESSION_EDITS:
            expression = expression.replace(old, new)
        expression = expression.split("#")[0]
        opened, closed = expression.count("("), expression.count(")")
        expression = expression + ")" * (opened - closed) if opened > closed else "(" * (closed - opened) + expression
        return _arithmetic(expression)
    if match := _EGFR.search(text):  # "8.1 mL/min/1.73 m²"
        return _python_number(match.group(1))
    if percents := _PERCENT.findall(text):  # "53.1%"
        value = _python_number(percents[-1][0])
        return None if value is None else value / 100
    numbers = _NUMBER.findall(text)
    return _python_number(numbers[-1][0]) if numbers else None


def _python_number(literal: str) -> float | int | None:
    """What the official ``eval(literal)`` gives for a number string, None where eval fails: Python rejects integer
    literals with leading zeros ("07") and integers longer than 4300 digits."""
    digits = literal.lstrip("-")
    try:
        if not digits.isdigit():  # "1.5", and str(float) forms such as "1e-05"
            return float(literal)
        if len(digits) > 1 and digits[0] == "0" and digits.strip("0"):
            return None
        return int(literal)
    except ValueError:
        return None


_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
              ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
              ast.USub: operator.neg, ast.UAdd: operator.pos}
# Powers run in floats so an expression cannot build a giant integer; math functions are a small numeric set.
_FUNCTIONS = {"min": min, "pow": math.pow, "round": round, "abs": abs, "int": int, "float": float}
_MATH_FUNCTIONS = {name: getattr(math, name) for name in ("sqrt", "exp", "log", "log10", "log2", "floor", "ceil", "fabs", "pow")}


def _arithmetic(expression: str) -> float | int | None:
    """Evaluate the arithmetic the official code hands to ``eval`` (numbers, + - * / // % **, min/pow/round/abs/
    int/float, math.sqrt/exp/log/...) without executing model output; anything else (numpy, comparisons) is N/A."""

    def evaluate(node: ast.AST) -> float | int:
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return node.value
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](evaluate(node.operand))
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            left, right = evaluate(node.left), evaluate(node.right)
            if isinstance(node.op, ast.Pow):
                left, right = float(left), float(right)
            return _OPERATORS[type(node.op)](left, right)
        if isinstance(node, ast.Call) and not node.keywords:
            return _function(node.func)(*[evaluate(arg) for arg in node.args])
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "math":
            if node.attr in ("pi", "e"):
                return getattr(math, node.attr)
        raise ValueError(f"unsupported expression {ast.dump(node)[:80]}")

    def _function(node: ast.AST):
        if isinstance(node, ast.Name) and node.id in _FUNCTIONS:
            return _FUNCTIONS[node.id]
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "math":
            if node.attr in _MATH_FUNCTIONS:
                return _MATH_FUNCTIONS[node.attr]
        raise ValueError("unsupported function")

    try:
        value = evaluate(ast.parse(expression.strip(), mode="eval").body)
    except (SyntaxError, ValueError, TypeError, ArithmeticError, RecursionError):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return value


def fallback_answer(output: str, calculator_id: int) -> str | None:
    """Not official: the last date (MM/DD/YYYY or MM-DD-YYYY), "N weeks [M days]" / "M days", or number anywhere in
    the output, ignoring numbers inside units; for outputs without a usable JSON answer."""
    if calculator_id in DATE_IDS:
        dates = _ANY_DATE.findall(output)
        return f"{int(dates[-1][0]):02}/{int(dates[-1][1]):02}/{dates[-1][2]}" if dates else None
    if calculator_id in GESTATIONAL_AGE_IDS:
        ages = _WEEKS_OR_DAYS.findall(output)
        if not ages:
            return None
        weeks, days, days_only = ages[-1]
        return f"({weeks or 0}, {days or days_only or 0})"
    numbers = _NUMBER.findall(_UNIT_NUMBERS.sub(" ", output))
    return numbers[-1][0] if numbers else None


def is_correct(answer: str, row: dict) -> bool:
    """The official check_correctness on a parsed answer: dates and (weeks, days) exact, integers rounded with
    Python's round() then exact, decimals inside [Lower Limit, Upper Limit] inclusive."""
    calculator_id = int(row["Calculator ID"])
    truth = row["Ground Truth Answer"]
    try:
        if calculator_id in DATE_IDS:
            return datetime.strptime(answer, "%m/%d/%Y") == datetime.strptime(truth, "%m/%d/%Y")
        if calculator_id in GESTATIONAL_AGE_IDS:
            expected, got = _WEEKS_DAYS.search(truth), _WEEKS_DAYS.search(answer)
            return got is not None and (int(got.group(1)), int(got.group(3))) == (int(expected.group(1)), int(expected.group(3)))
        value = _python_number(answer)
        if value is None:
            return False
        if calculator_id in INTEGER_IDS:
            return round(value) == _python_number(truth)
        return _python_number(row["Lower Limit"]) <= value <= _python_number(row["Upper Limit"])
    except (ValueError, TypeError, OverflowError):  # incorrect, as in the official script's except branch
        return False


def score(row: dict, output: str) -> dict:
    """Score one generation. ``correct`` uses the official JSON extraction, else the fallback; ``official_correct``
    is the official script's verdict alone (no fallback). Never raises on any output."""
    output = output if isinstance(output, str) else ""
    calculator_id = int(row["Calculator ID"])
    json_answer = extract_json_answer(output)
    official = parse_answer(json_answer, calculator_id) if json_answer is not None else None
    if official is not None:
        extracted, method = official, "json"
    else:
        extracted = fallback_answer(output, calculator_id)
        method = "fallback" if extracted is not None else None
    correct = extracted is not None and is_correct(extracted, row)
    return {"extracted": extracted, "target": row["Ground Truth Answer"], "correct": correct,
            "official_correct": correct and method == "json", "method": method,
            "category": row["Category"], "calculator": row["Calculator Name"], "calculator_id": calculator_id}


def aggregate(scored_rows: list[dict]) -> dict:
    """Overall accuracy (over rows, as compute_overall_accuracy) and accuracy per Category, as fractions."""

    def summary(items: list[dict]) -> dict:
        n = len(items)
        return {"n": n,
                "accuracy": sum(item["correct"] for item in items) / n if n else 0.0,
                "official_accuracy": sum(item["official_correct"] for item in items) / n if n else 0.0}

    categories = sorted({item["category"] for item in scored_rows})
    return {**summary(scored_rows),
            "per_category": {cat: summary([item for item in scored_rows if item["category"] == cat]) for cat in categories}}
