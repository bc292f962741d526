"""IFEval (Zhou et al. 2023): 541 prompts with verifiable instructions, scored by lm-eval's own checkers.

Prompt- and instruction-level accuracy, strict and loose, exactly as ``lm_eval.tasks.ifeval.utils.process_results`` and
``agg_inst_level_acc`` compute them (same functions, called here). Zero-shot, the prompt as the single user turn,
greedy, up to 1280 new tokens (lm-eval's ``max_gen_toks``). langdetect is seeded (lm-eval leaves it random) so the
few language checks are reproducible.
"""

from __future__ import annotations

import functools
from pathlib import Path

from talr.data.rows import iter_jsonl, missing_fields
from talr.evaluation.metrics import bootstrap_stderr, mean_with_stderr, with_stderr
from talr.evaluation.nltk_offline import ensure_punkt_tab
from talr.evaluation.task import Generate, Scored, Task

PROMPT_STRICT = "prompt_level_strict_acc,none"
INST_STRICT = "inst_level_strict_acc,none"
PROMPT_LOOSE = "prompt_level_loose_acc,none"
INST_LOOSE = "inst_level_loose_acc,none"


@functools.cache
def lm_eval_ifeval():
    """lm-eval's IFEval utils, imported after the offline punkt_tab is in place (its import would download it)."""
    ensure_punkt_tab()
    import langdetect
    from lm_eval.tasks.ifeval import utils

    langdetect.DetectorFactory.seed = 0
    return utils


def inst_level_acc(follow_lists: list[list[bool]]) -> float:
    return lm_eval_ifeval().agg_inst_level_acc(follow_lists)


class IFEval(Task):
    name = "ifeval"
    version = "lm-eval-4.0"
    kind = "generate"
    description = "IFEval: verifiable instruction following (lm-eval checkers), prompt- and instruction-level"
    max_new_tokens = 1280
    metrics = {PROMPT_STRICT: True, INST_STRICT: True, PROMPT_LOOSE: True, INST_LOOSE: True}

    def load_all(self, data_dir: Path) -> list[dict]:
        path = Path(data_dir) / "ifeval" / "input_data.jsonl"
        docs = []
        for number, row in iter_jsonl(path):
            if missing := missing_fields(row, ("key", "prompt", "instruction_id_list", "kwargs")):
                raise ValueError(f"{path}:{number}: IFEval row lacks {', '.join(missing)}")
            docs.append({"id": row["key"], **{k: row[k] for k in ("prompt", "instruction_id_list", "kwargs")}})
        return docs

    def request(self, doc: dict) -> Generate:
        return Generate(messages=[{"role": "user", "content": doc["prompt"]}])

    def score(self, doc: dict, output: str) -> Scored:
        result = lm_eval_ifeval().process_results(
            {"key": doc["id"], **{k: doc[k] for k in ("prompt", "instruction_id_list", "kwargs")}}, [output]
        )
        scores = {
            PROMPT_STRICT: float(result["prompt_level_strict_acc"]),
            INST_STRICT: [bool(x) for x in result["inst_level_strict_acc"]],
            PROMPT_LOOSE: float(result["prompt_level_loose_acc"]),
            INST_LOOSE: [bool(x) for x in result["inst_level_loose_acc"]],
        }
        return Scored(extracted=output, target=doc["instruction_id_list"], scores=scores)

    def failed_scores(self, doc: dict) -> dict:
        n = len(doc["instruction_id_list"])
        return {PROMPT_STRICT: 0.0, INST_STRICT: [False] * n, PROMPT_LOOSE: 0.0, INST_LOOSE: [False] * n}

    def aggregate(self, records: list[dict]) -> dict:
        """Prompt level: mean with binomial stderr. Instruction level: pooled over instructions (lm-eval's
        ``agg_inst_level_acc``), stderr by bootstrap over prompts (lm-eval reports none), since one prompt's
        instructions are not independent."""
        out: dict = {}
        for prompt_key, inst_key in ((PROMPT_STRICT, INST_STRICT), (PROMPT_LOOSE, INST_LOOSE)):
            out.update(mean_with_stderr(prompt_key, [float(r["scores"][prompt_key]) for r in records]))
            lists = [r["scores"][inst_key] for r in records]
            out.update(with_stderr(inst_key, inst_level_acc(lists), bootstrap_stderr(inst_level_acc, lists)))
        return out
