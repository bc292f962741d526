"""GSM8K (MetaMathQA stand-in): extraction and exact match identical to lm-eval's gsm8k task, SFT rewriting, loaders."""

import json
from pathlib import Path

import pytest
import yaml

from talr import paths
from talr.data import math as gsm

REAL = paths.data_dir() / gsm.FILES["train"]
needs_data = pytest.mark.skipif(not REAL.is_file(), reason=f"GSM8K data not found at {REAL}")

OUTPUTS = [
    "She sold 48/2 = 24 clips.\n#### 72", "#### 1,080.", "#### -3.5\n#### 4", "The answer is: $1,080.",
    "So 5 + 3 = 8 apples.", "It costs $12.50 in total.", "It is 3", "no digits", "", "#### x then 42.",
    "Answer: 0.5.", "-7 degrees", "The answer is 18. Question: next", "$.", "1.2.3", "#### 5, then 6,000",
    "####, 9 #### 8 and #### 7", "A\n#### 12\nB #### 13.",
]
TARGETS = ["72", "1080", "-3.5", "1,080", "8", "12.50", "3", "5", "0", "42", "0.5", "-7", "18", "1", "1.2.3", "5",
           "7", "12\n#### 13"]


def lm_eval_gsm8k_config():
    import lm_eval

    path = Path(lm_eval.__file__).parent / "tasks" / "gsm8k" / "gsm8k.yaml"
    return yaml.safe_load(path.read_text())


def test_patterns_are_the_installed_lm_eval_gsm8k_config():
    pytest.importorskip("lm_eval")
    config = lm_eval_gsm8k_config()
    filters = {f["name"]: f["filter"][0] for f in config["filter_list"]}
    assert filters["strict-match"]["regex_pattern"] == gsm.STRICT_PATTERN.pattern
    assert filters["flexible-extract"]["regex_pattern"] == gsm.FLEXIBLE_PATTERN.pattern
    assert filters["flexible-extract"]["group_select"] == -1
    metric = config["metric_list"][0]
    assert tuple(metric["regexes_to_ignore"]) == gsm.REGEXES_TO_IGNORE
    assert metric["ignore_case"] is True and metric["ignore_punctuation"] is False


@pytest.mark.parametrize("output", OUTPUTS)
def test_extraction_matches_lm_eval_regex_filter(output):
    extraction = pytest.importorskip("lm_eval.filters.extraction")
    strict = extraction.RegexFilter(regex_pattern=gsm.STRICT_PATTERN.pattern)
    flexible = extraction.RegexFilter(regex_pattern=gsm.FLEXIBLE_PATTERN.pattern, group_select=-1)
    expected_strict = list(strict.apply([[output]], None))[0][0]
    expected_flexible = list(flexible.apply([[output]], None))[0][0]
    assert (gsm.extract_strict(output) or "[invalid]") == expected_strict
    assert (gsm.extract_flexible(output) or "[invalid]") == expected_flexible


@pytest.mark.parametrize("output, target", list(zip(OUTPUTS, TARGETS)))
def test_exact_match_matches_lm_eval_metric(output, target):
    metrics = pytest.importorskip("lm_eval.api.metrics")
    for prediction in (gsm.extract_strict(output), gsm.extract_flexible(output), output):
        expected = metrics.exact_match_hf_evaluate(
            [prediction or "[invalid]"], [target], regexes_to_ignore=list(gsm.REGEXES_TO_IGNORE),
            ignore_case=True, ignore_punctuation=False)["exact_match"]
        assert gsm.exact_match(prediction, target) == bool(expected)


def test_exact_match_normalisation_by_hand():
    assert gsm.exact_match("1,080.", "1080")
    assert gsm.exact_match("$18", "Natalia sold 48/2 = 24 clips.\n#### 18")  # the full GSM8K answer as reference
    assert not gsm.exact_match("18.0", "18")                                  # no numeric comparison, as lm-eval
    assert not gsm.exact_match(None, "18")


@pytest.mark.parametrize("output, extracted, method", [
    ("2 + 2 = 4\n#### 4\nThe answer is: 4", "4", "answer_is"),
    ("The answer is 3. Wait, the answer is: 5.", "5.", "answer_is"),
    ("#### 7\nso 9", "7", "strict"),
    ("I get 12 then 15", "15", "flexible"),
    ("nothing", None, None), ("", None, None), (None, None, None),
])
def test_extract_answer_order(output, extracted, method):
    assert gsm.extract_answer(output) == (extracted, method)


def test_score_and_aggregate():
    row = {"question": "q", "answer": "x\n#### 1,080", "target": "1,080", "id": "test-0"}
    result = gsm.score(row, "So 1080 in total.\nThe answer is: 1080")
    assert result == {"extracted": "1080", "target": "1,080", "correct": True, "method": "answer_is",
                      "strict_match": False, "flexible_extract": True}
    for garbage in ("", None, "#### ", "The answer is: ."):
        assert gsm.score(row, garbage)["correct"] is False
    scored = [gsm.score(row, "#### 1080"), gsm.score(row, "1079")]
    assert gsm.aggregate(scored) == {"n": 2, "accuracy": 0.5, "strict_match": 0.5, "flexible_extract": 0.5}


def test_metamath_rewrite():
    answer = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips.\n#### 72"
    assert gsm.metamath_solution(answer) == (
        "Natalia sold 48/2 = 24 clips in May.\nNatalia sold 48+24 = 72 clips.\n#### 72\nThe answer is: 72")
    row = {"question": "How many?", "answer": answer, "target": "72", "id": "train-0"}
    reasoning = gsm.to_sft_example(row, "reasoning")
    assert reasoning["messages"][:-1] == gsm.eval_messages(row, "reasoning")
    assert reasoning["messages"][-1]["content"].endswith("The answer is: 72")
    assert gsm.to_sft_example(row, "label")["messages"][-1]["content"] == "The answer is: 72"
    with pytest.raises(ValueError, match="reasoning, label"):
        gsm.to_sft_example(row, "cot")


def test_loader_errors_name_file_and_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="train.jsonl"):
        gsm.load_rows("train", tmp_path)
    path = tmp_path / gsm.FILES["train"]
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"question": "q", "answer": "a\n#### 1"}) + "\n" +
                    json.dumps({"question": "q", "answer": "no final line"}) + "\n")
    with pytest.raises(ValueError, match=r"train\.jsonl:2: answer does not end with"):
        gsm.load_rows("train", tmp_path)
    path.write_text('{"question": "q", "answer": "a\\n#### 1"}\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"train\.jsonl:2: expected a JSON object"):
        gsm.load_rows("train", tmp_path)


@needs_data
def test_real_files_and_targets():
    train, test = gsm.load_rows("train"), gsm.load_rows("test")
    assert (len(train), len(test)) == (7473, 1319)
    assert train[0]["id"] == "train-0" and train[0]["target"] == "72"
    for row in train + test:
        example = gsm.to_sft_example(row, "reasoning")
        reply = example["messages"][-1]["content"]
        assert "<<" not in reply and gsm.score(row, reply)["correct"] and gsm.score(row, reply)["strict_match"]
