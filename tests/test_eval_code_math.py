import pytest

from talr.evaluation.registry import get_task
from talr.evaluation.tasks.gsm8k import FLEXIBLE, STRICT
from talr.evaluation.tasks.humaneval import PASS_AT_1
from talr.paths import data_dir

needs_data = pytest.mark.skipif(not (data_dir() / "gsm8k").is_dir(), reason="shared benchmark data not present")


def test_gsm8k_strict_and_flexible_match_lm_eval_semantics():
    task = get_task("gsm8k")
    doc = {"id": "t", "question": "?", "target": "1,234"}
    cases = [
        ("so 1000 + 234 = 1234.\n#### 1234", 1.0, 1.0),
        ("The total is $1,234.", 0.0, 1.0),  # no "#### N": strict fails, the last number matches
        ("#### 1234\nthen I recount: 99", 1.0, 0.0),  # strict takes the first "####", flexible the last number
        ("#### 12.", 0.0, 0.0),
        ("", 0.0, 0.0),
        ("\x00garbage ####", 0.0, 0.0),
    ]
    for output, strict, flexible in cases:
        scores = task.score(doc, output).scores
        assert (scores[STRICT], scores[FLEXIBLE]) == (strict, flexible), output


@needs_data
def test_gsm8k_loads_the_test_set_and_prompts_for_the_strict_format():
    task = get_task("gsm8k")
    docs, total = task.load(data_dir(), 5)
    assert total == 1319 and len(docs) == 5
    assert "####" in task.request(docs[0]).messages[0]["content"]


@pytest.fixture(scope="module")
def humaneval_docs():
    if not (data_dir() / "humaneval" / "HumanEval.jsonl.gz").exists():
        pytest.skip("shared HumanEval data not present")
    docs, total = get_task("humaneval").load(data_dir(), None)
    assert total == 164
    return docs


def test_humaneval_canonical_solutions_pass_and_wrong_ones_fail(humaneval_docs):
    task = get_task("humaneval")
    for doc in humaneval_docs[:4]:
        assert task.score(doc, doc["canonical_solution"]).scores[PASS_AT_1] == 1.0, doc["id"]
    doc = humaneval_docs[0]
    for bad in ["", "    return None\n", "\x00\x01 not python", "    import os\n    os.system('rm -rf /')\n"]:
        scored = task.score(doc, bad)
        assert scored.scores[PASS_AT_1] == 0.0 and scored.details["status"] == "failed"


def test_humaneval_prompt_continues_the_function_like_lm_eval(humaneval_docs):
    request = get_task("humaneval").request(humaneval_docs[0])
    assert request.prefix.startswith("Here is the completed function:\n```python\n")
    assert request.prefix.endswith(humaneval_docs[0]["prompt"] + "\n")
