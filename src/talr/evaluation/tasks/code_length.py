"""Code length of reference responses: bits per token the model needs to encode them (the paper's Delta L probe).

Each example is a prompt (formatted with the chat template) and a reference response; only the response tokens,
through the end-of-turn token, are scored (:func:`generation.response_bits`). Metrics: ``bits_per_token`` pooled over
the set (total bits / total tokens; lower is better), with a bootstrap standard error over examples, and
``bits_per_example`` (mean total bits of one response, binomial-style mean stderr), the per-example quantity to
compare two models on the same examples.

General text: Stanford Alpaca (5,000-row subset) and AlpacaEval's 805 instructions with their davinci-003 references.
Domain text: a domain source's test rows with the reference answer its SFT examples use (``to_sft_example``).
"""

from __future__ import annotations

import json
from pathlib import Path

from talr.data import math as math_source
from talr.data.rows import iter_jsonl, missing_fields, require_file
from talr.data.sources import get_source, load_eval_rows
from talr.evaluation.metrics import bootstrap_stderr, mean_with_stderr, with_stderr
from talr.evaluation.task import Response, Scored, Task

BITS_PER_TOKEN = "bits_per_token,none"
BITS_PER_EXAMPLE = "bits_per_example,none"


def pooled_bits_per_token(pairs: list[tuple[float, int]]) -> float:
    return sum(b for b, _ in pairs) / sum(n for _, n in pairs)


def user_turn(instruction: str, extra_input: str = "") -> list[dict]:
    content = instruction.strip() if not extra_input.strip() else f"{instruction.strip()}\n\n{extra_input.strip()}"
    return [{"role": "user", "content": content}]


class CodeLength(Task):
    kind = "response_bits"
    version = "1"
    metrics = {BITS_PER_TOKEN: False, BITS_PER_EXAMPLE: False}

    def request(self, doc: dict) -> Response:
        return Response(messages=doc["messages"], response=doc["response"])

    def score(self, doc: dict, result) -> Scored:
        bits, n_tokens = result
        if bits is None:
            raise ValueError(f"response of {n_tokens} tokens does not fit the model's context window")
        return Scored(extracted=None, target=None, scores={"bits": float(bits), "n_tokens": int(n_tokens)})

    def failed_scores(self, doc: dict) -> dict:
        return {"bits": None, "n_tokens": 0}

    def aggregate(self, records: list[dict]) -> dict:
        """Over the examples that were scored; a record with a scoring error carries no code length."""
        pairs = [(r["scores"]["bits"], r["scores"]["n_tokens"]) for r in records if "error" not in r]
        if not pairs:
            raise ValueError(f"task {self.name}: no example was scored")
        out = with_stderr(BITS_PER_TOKEN, pooled_bits_per_token(pairs), bootstrap_stderr(pooled_bits_per_token, pairs))
        out.update(mean_with_stderr(BITS_PER_EXAMPLE, [b for b, _ in pairs]))
        out["tokens,none"] = sum(n for _, n in pairs)
        return out


class AlpacaCodeLength(CodeLength):
    name = "codelength_alpaca"
    description = "bits/token of Stanford Alpaca reference outputs (5,000-row subset)"

    def load_all(self, data_dir: Path) -> list[dict]:
        path = require_file(Path(data_dir) / "alpaca" / "alpaca_5000.json")
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from e
        docs = []
        for i, row in enumerate(rows):
            if not isinstance(row, dict) or "instruction" not in row or "output" not in row:
                raise ValueError(f"{path}: item {i} lacks 'instruction' or 'output'")
            if row["output"].strip():
                docs.append({"id": i, "messages": user_turn(row["instruction"], row.get("input", "")),
                             "response": row["output"]})
        return docs


class AlpacaEvalCodeLength(CodeLength):
    name = "codelength_alpaca_eval"
    description = "bits/token of AlpacaEval's 805 davinci-003 reference outputs"

    def load_all(self, data_dir: Path) -> list[dict]:
        path = Path(data_dir) / "alpaca_eval" / "alpaca_eval.jsonl"
        docs = []
        for number, row in iter_jsonl(path):
            if missing := missing_fields(row, ("instruction", "output")):
                raise ValueError(f"{path}:{number}: AlpacaEval row lacks {', '.join(missing)}")
            docs.append({"id": number - 1, "messages": user_turn(row["instruction"]), "response": row["output"]})
        return docs


class DomainCodeLength(CodeLength):
    """Reference answers of a domain source's test rows in one of its SFT formats (``format``; None: the source's
    default). Measure the domain gain on the format the model was trained on: a label-only model loses probability
    on explanations it was never shown, which reads as a domain loss in the explanation format."""

    source: str
    format: str | None = None

    def load(self, data_dir: Path, limit: int | None) -> tuple[list[dict], int]:
        module = get_source(self.source)
        total = len(module.load_rows("test", data_dir))
        rows = load_eval_rows(self.source, "test", limit=limit, seed=0, data_dir=data_dir)
        docs = []
        for row in rows:
            messages = module.to_sft_example(row, self.format or module.DEFAULT_FORMAT)["messages"]
            if messages[-1]["role"] != "assistant":
                raise ValueError(f"{self.source} row {row['id']}: SFT example does not end with an assistant turn")
            docs.append({"id": row["id"], "messages": messages[:-1], "response": messages[-1]["content"]})
        return docs, total


class MedCalcCodeLength(DomainCodeLength):
    name = "codelength_medcalc"
    description = "bits/token of MedCalc-Bench test reference answers (explanation + JSON answer)"
    source = "medcalc_bench"


class MedCalcLabelCodeLength(MedCalcCodeLength):
    name = "codelength_medcalc_label"
    description = "bits/token of MedCalc-Bench test reference answers in the answer-only (label) SFT format"
    format = "label"


class EsciCodeLength(DomainCodeLength):
    name = "codelength_esci"
    description = "bits/token of the ESCI test split's reference labels in the label-only SFT format"
    source = "esci"
    format = "label"


class MathCodeLength(DomainCodeLength):
    name = "codelength_math"
    description = "bits/token of the math source's test reference solutions (GSM8K test) in the reasoning SFT format"
    source = math_source.NAME
    format = "reasoning"


class GeneralAnswersCodeLength(CodeLength):
    """The base model's own greedy answers to talr's fixed general prompts (``talr demo`` writes them to
    ``<data dir>/general_probes/base_answers.jsonl``): text the base model already models well, so any growth in its
    code length after fine-tuning is general damage (the paper's Delta L(P1))."""

    name = "codelength_general_answers"
    description = "bits/token of the base model's own answers to talr's general prompts"

    def load_all(self, data_dir: Path) -> list[dict]:
        path = Path(data_dir) / "general_probes" / "base_answers.jsonl"
        docs = []
        for number, row in iter_jsonl(path):
            try:
                *prompt, answer = row["messages"]
                docs.append({"id": row["id"], "messages": prompt, "response": answer["content"]})
            except (KeyError, ValueError, TypeError) as e:
                raise ValueError(f"{path}:{number}: bad general-answer row ({e!r})") from e
        return docs
