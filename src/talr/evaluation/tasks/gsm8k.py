"""GSM8K test set (1,319 problems), zero-shot chat, scored with lm-eval's gsm8k filters.

Prompt: the question as the user turn followed by an instruction to reason step by step and end with ``#### N``, the
format lm-eval's ``strict-match`` filter reads (chat models follow an instruction better than lm-eval's 5-shot
"Question: ... Answer:" text prompt, which does not fit a chat template). Greedy, 256 new tokens and lm-eval's stop
strings. Two metrics, exactly lm-eval's ``exact_match,strict-match`` (first ``#### N``) and
``exact_match,flexible-extract`` (last number in the output); extraction and normalisation are ``talr.data.math``'s
implementations of those filters.
"""

from __future__ import annotations

from pathlib import Path

from talr.data import math as math_source
from talr.evaluation.task import Generate, Scored, Task

STRICT = "exact_match,strict-match"
FLEXIBLE = "exact_match,flexible-extract"
INSTRUCTION = 'Solve the problem step by step. Write the final answer on the last line in the form "#### <number>".'


class GSM8K(Task):
    name = "gsm8k"
    version = "1"
    kind = "generate"
    description = "GSM8K test, zero-shot chat with a '#### N' instruction; lm-eval strict and flexible exact match"
    max_new_tokens = 256
    stop = ("Question:", "</s>", "<|im_end|>")
    metrics = {STRICT: True, FLEXIBLE: True}

    def load_all(self, data_dir: Path) -> list[dict]:
        return math_source.load_rows("test", data_dir)

    def request(self, doc: dict) -> Generate:
        return Generate(messages=[{"role": "user", "content": f"{doc['question']}\n\n{INSTRUCTION}"}])

    def score(self, doc: dict, output: str) -> Scored:
        strict = math_source.extract_strict(output)
        flexible = math_source.extract_flexible(output)
        return Scored(
            extracted={"strict-match": strict, "flexible-extract": flexible},
            target=doc["target"],
            scores={
                STRICT: float(math_source.exact_match(strict, doc["target"])),
                FLEXIBLE: float(math_source.exact_match(flexible, doc["target"])),
            },
        )
