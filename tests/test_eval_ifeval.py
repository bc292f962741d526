import subprocess
import sys
import textwrap

import pytest

from talr.evaluation.registry import get_task
from talr.evaluation.tasks.ifeval import INST_LOOSE, INST_STRICT, PROMPT_LOOSE, PROMPT_STRICT, lm_eval_ifeval
from talr.paths import data_dir

DOCS = [
    {
        "id": 1,
        "prompt": "Write two sentences about Washington without commas.",
        "instruction_id_list": ["punctuation:no_comma", "length_constraints:number_sentences"],
        "kwargs": [{}, {"relation": "less than", "num_sentences": 3}],
    },
    {
        "id": 2,
        "prompt": "Answer in all lowercase letters and end with 'Is there anything else I can help with?'",
        "instruction_id_list": ["change_case:english_lowercase", "startend:end_checker"],
        "kwargs": [{}, {"end_phrase": "Is there anything else I can help with?"}],
    },
    {
        "id": 3,
        "prompt": "Wrap your entire response in double quotes and use at least 2 highlighted sections.",
        "instruction_id_list": ["startend:quotation", "detectable_format:number_highlighted_sections"],
        "kwargs": [{}, {"num_highlights": 2}],
    },
]
RESPONSES = [
    # "Mr." must not end a sentence (Punkt's abbreviation list): 2 sentences, so "less than 3" holds.
    "Mr. Smith went to Washington. He liked the city a lot.",
    # All lowercase English, but it does not end with the required phrase.
    "sure, here is a short answer about the weather in the city today. it will rain in the evening. is that all?",
    # Markdown first line: strict fails the quotation check, loose (first line removed) passes it.
    '# Title\n"*one* and *two*"',
]
# Hand-derived expectations (per instruction), strict and loose.
EXPECTED_STRICT = [[True, True], [True, False], [False, True]]
EXPECTED_LOOSE = [[True, True], [True, False], [True, True]]


@pytest.fixture(scope="module")
def task():
    return get_task("ifeval")


def test_scores_match_hand_derived_values_and_lm_eval(task):
    utils = lm_eval_ifeval()
    for doc, response, strict, loose in zip(DOCS, RESPONSES, EXPECTED_STRICT, EXPECTED_LOOSE):
        scored = task.score(doc, response)
        assert scored.scores[INST_STRICT] == strict
        assert scored.scores[INST_LOOSE] == loose
        assert scored.scores[PROMPT_STRICT] == float(all(strict))
        assert scored.scores[PROMPT_LOOSE] == float(all(loose))
        ref = utils.process_results({"key": doc["id"], **{k: doc[k] for k in doc if k != "id"}}, [response])
        assert scored.scores[INST_STRICT] == ref["inst_level_strict_acc"]
        assert scored.scores[PROMPT_LOOSE] == ref["prompt_level_loose_acc"]


def test_aggregate_pools_instructions_like_lm_eval(task):
    records = [{"scores": task.score(d, r).scores} for d, r in zip(DOCS, RESPONSES)]
    agg = task.aggregate(records)
    assert agg[PROMPT_STRICT] == pytest.approx(1 / 3)
    assert agg[INST_STRICT] == pytest.approx(4 / 6)
    assert agg[INST_LOOSE] == pytest.approx(5 / 6)
    assert agg[INST_STRICT] == lm_eval_ifeval().agg_inst_level_acc([r["scores"][INST_STRICT] for r in records])
    assert agg["prompt_level_strict_acc_stderr,none"] == pytest.approx((1 / 3 * 2 / 3 / 2) ** 0.5)
    assert isinstance(agg["inst_level_strict_acc_stderr,none"], float)


def test_empty_and_garbage_outputs_score_zero(task):
    for output in ["", "   \n "]:
        scores = task.score(DOCS[2], output).scores
        assert scores == {PROMPT_STRICT: 0.0, INST_STRICT: [False, False], PROMPT_LOOSE: 0.0, INST_LOOSE: [False, False]}
    # Binary junk is scored, not a crash: it has no quotes or highlights, so both instructions fail.
    assert task.score(DOCS[2], "\x00\ufffd" * 50).scores[INST_STRICT] == [False, False]


def test_loads_all_541_prompts(task):
    if not (data_dir() / "ifeval" / "input_data.jsonl").exists():
        pytest.skip("shared IFEval data not present")
    docs, total = task.load(data_dir(), None)
    assert total == len(docs) == 541


def test_punkt_tab_comes_from_the_offline_package_with_network_disabled(tmp_path):
    script = textwrap.dedent(
        """
        import socket
        def refuse(*a, **k):
            raise OSError("network disabled in this test")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        import nltk
        nltk.data.path[:] = []  # hide any installed nltk_data so the offline path is the one exercised
        from talr.evaluation.tasks.ifeval import lm_eval_ifeval
        lm_eval_ifeval()
        from lm_eval.tasks.ifeval import instructions_util as u
        print(u.count_sentences("Dr. Jones met Mr. Smith at 5 p.m. in the U.S. capital. They talked. Done!"))
        print(nltk.data.path[0])
        """
    )
    env = {"PATH": "/usr/bin:/bin", "TALR_CACHE_DIR": str(tmp_path), "PYTHONPATH": ":".join(sys.path)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    count, root = out.stdout.split()
    assert count == "3"
    assert root == str(tmp_path / "nltk_data")
    assert (tmp_path / "nltk_data" / "tokenizers" / "punkt_tab" / "english" / "abbrev_types.txt").exists()
