"""HumanEval (164 problems), pass@1 with greedy decoding, every program run in the sandbox.

Prompt as lm-eval's ``humaneval_instruct``: the user asks for a solution to the problem shown in a python code block,
and the assistant turn starts with ``Here is the completed function:\\n```python\\n<prompt>`` which the model
continues. Generation stops at the closing code fence or lm-eval's HumanEval stop strings (``\\nclass``, ``\\ndef``,
``\\n#``, ``\\nif``, ``\\nprint``), up to 1024 new tokens. The program run is prompt + completion + the problem's
tests + ``check(entry_point)``; it passes when the sandbox sees it run to its end within the limits
(:mod:`talr.evaluation.sandbox`). Loading the task checks the sandbox first: with a layer missing it refuses (before
anything is generated) unless unsandboxed runs are allowed, and results.json records the layers in force.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import asdict
from pathlib import Path

from talr.data.rows import require_file
from talr.evaluation.sandbox import LAYERS, Limits, run_python, sandbox_layers
from talr.evaluation.task import Generate, Scored, Task

PASS_AT_1 = "pass@1,create_test"
LIMITS = Limits(timeout_s=10, cpu_s=10, memory_mb=1024)


def program(doc: dict, completion: str) -> str:
    return f"{doc['prompt']}{completion}\n\n{doc['test']}\n\ncheck({doc['entry_point']})\n"


class HumanEval(Task):
    name = "humaneval"
    version = "2"  # 2: "passed" means the program ran to its end (1 took exit status 0, which sys.exit(0) forges)
    kind = "generate"
    description = "HumanEval pass@1 (greedy), lm-eval humaneval_instruct prompt, sandboxed execution"
    max_new_tokens = 1024
    stop = ("```", "\nclass", "\ndef", "\n#", "\nif", "\nprint")
    metrics = {PASS_AT_1: True}
    runs_code = True

    def load(self, data_dir: Path, limit: int | None) -> tuple[list[dict], int]:
        sandbox_layers()  # refuse before any completion is generated, not at the first program
        return super().load(data_dir, limit)

    def config(self) -> dict:
        layers = sandbox_layers()
        return {**super().config(), "sandbox": {"layers": layers, "missing": [x for x in LAYERS if x not in layers],
                                                "limits": asdict(LIMITS)}}

    def load_all(self, data_dir: Path) -> list[dict]:
        path = require_file(Path(data_dir) / "humaneval" / "HumanEval.jsonl.gz")
        docs = []
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    docs.append({"id": row["task_id"], **{k: row[k] for k in ("prompt", "test", "entry_point")},
                                 "canonical_solution": row.get("canonical_solution", "")})
                except (json.JSONDecodeError, KeyError) as e:
                    raise ValueError(f"{path}:{number}: bad HumanEval row ({e})") from e
        return docs

    def request(self, doc: dict) -> Generate:
        ask = f"Write a solution to the following problem and make sure that it passes the tests:\n```python\n{doc['prompt']}\n```\n"
        return Generate(messages=[{"role": "user", "content": ask}],
                        prefix=f"Here is the completed function:\n```python\n{doc['prompt']}\n")

    def score(self, doc: dict, output: str) -> Scored:
        result = run_python(program(doc, output), LIMITS)
        return Scored(
            extracted=output,
            target=doc["entry_point"],
            scores={PASS_AT_1: float(result.passed)},
            details={"status": result.status, "stderr": result.stderr[-1000:]},
        )
