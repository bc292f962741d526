import math

import pytest

from talr.evaluation.evaluator import evaluate
from talr.evaluation.registry import TASKS, get_task
from talr.evaluation.tasks.code_length import BITS_PER_EXAMPLE, BITS_PER_TOKEN, pooled_bits_per_token
from talr.evaluation.tasks.multiple_choice import ACC, ACC_NORM
from talr.models import load_model
from talr.paths import data_dir

MC_TASKS = ["arc_easy", "arc_challenge", "piqa", "boolq", "openbookqa", "winogrande", "mmlu"]
needs_data = pytest.mark.skipif(not (data_dir() / "arc_easy").is_dir(), reason="shared benchmark data not present")


def test_acc_and_acc_norm_follow_lm_eval():
    task = get_task("arc_easy")
    doc = {"id": 0, "query": "Question: q", "choices": ["a", "bbbb", "cc"], "gold": 1}
    # raw: choice 0 wins; normalised by characters (-1/1, -2/4, -1.5/2): choice 1 wins.
    scored = task.score(doc, [-1.0, -2.0, -1.5])
    assert scored.scores == {ACC: 0.0, ACC_NORM: 1.0}
    assert scored.extracted == {"acc": 0, "acc_norm": 1}
    assert task.score(doc, [-3.0, -3.0, -5.0]).extracted["acc"] == 0  # ties go to the first choice
    with pytest.raises(ValueError):
        task.score(doc, [-1.0])


def test_mc_contexts_match_lm_eval_templates():
    arc = get_task("arc_easy").request({"query": "Question: Why?", "choices": ["x", "y"], "gold": 0})
    assert arc.pairs == [("Question: Why?\nAnswer:", " x"), ("Question: Why?\nAnswer:", " y")]
    piqa = get_task("piqa").request({"query": "Question: goal\n", "choices": ["s1", "s2"], "gold": 0})
    assert piqa.pairs[0] == ("Question: goal\nAnswer:", " s1")
    wino = get_task("winogrande").request({"context_options": ["A so A", "A so B"], "continuation": "won.", "gold": 0})
    assert wino.pairs == [("A so A", " won."), ("A so B", " won.")]
    mmlu = get_task("mmlu")
    doc = {"subject": "high_school_biology", "question": " What? ", "options": ["1", "2", "3", "4"], "gold": 2}
    assert mmlu.request(doc).pairs[2] == (
        "The following are multiple choice questions (with answers) about high school biology.\n\n"
        "What?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer:",
        " C",
    )


@needs_data
@pytest.mark.parametrize("name", MC_TASKS)
def test_mc_files_load_with_valid_gold(name):
    docs, total = get_task(name).load(data_dir(), 20)
    assert len(docs) == 20 and total >= 500
    assert len({d["id"] for d in docs}) == 20


@needs_data
def test_medcalc_code_length_scores_the_trained_format():
    """The label variant scores exactly the answer-only SFT example's assistant turn, after its prompt."""
    from talr.data import medcalc

    explained, _ = get_task("codelength_medcalc").load(data_dir(), 3)
    label, total = get_task("codelength_medcalc_label").load(data_dir(), 3)
    assert total == 1047 and [d["id"] for d in label] == [d["id"] for d in explained]
    rows = {row["id"]: row for row in medcalc.load_rows("test", data_dir())}
    for doc in label:
        example = medcalc.to_sft_example(rows[doc["id"]], "label")["messages"]
        assert doc["messages"] == example[:-1] and doc["response"] == example[-1]["content"]
        assert doc["response"].startswith('{"answer": ')
    assert all(len(e["response"]) > len(lab["response"]) for e, lab in zip(explained, label))


@needs_data
def test_esci_code_length_scores_the_label_sft_turn():
    from talr.data import esci

    docs, total = get_task("codelength_esci").load(data_dir(), 4)
    assert total == len(esci.load_rows("test", data_dir()))
    rows = {row["id"]: row for row in esci.load_rows("test", data_dir())}
    for doc in docs:
        example = esci.to_sft_example(rows[doc["id"]], "label")["messages"]
        assert doc["messages"] == example[:-1] and doc["response"] == example[-1]["content"]
        assert doc["response"] in {"Exact", "Substitute", "Complement", "Irrelevant"}


@needs_data
def test_math_code_length_scores_the_reasoning_sft_turn():
    from talr.data import math as math_source

    docs, total = get_task("codelength_math").load(data_dir(), 3)
    rows = {row["id"]: row for row in math_source.load_rows("test", data_dir())}
    assert total == len(rows)
    for doc in docs:
        example = math_source.to_sft_example(rows[doc["id"]], "reasoning")["messages"]
        assert doc["messages"] == example[:-1] and doc["response"] == example[-1]["content"]
        assert "The answer is: " in doc["response"]


def test_code_length_pools_bits_over_tokens():
    task = get_task("codelength_alpaca")
    records = [{"scores": {"bits": 10.0, "n_tokens": 5}}, {"scores": {"bits": 30.0, "n_tokens": 5}},
               {"scores": {"bits": None, "n_tokens": 0}, "error": "x"}]
    agg = task.aggregate(records)
    assert agg[BITS_PER_TOKEN] == pytest.approx(4.0)
    assert agg[BITS_PER_EXAMPLE] == pytest.approx(20.0)
    assert agg["bits_per_example_stderr,none"] == pytest.approx(10.0)
    assert pooled_bits_per_token([(1.0, 1), (3.0, 3)]) == 1.0


@needs_data
def test_probes_run_end_to_end_on_a_tiny_model(tmp_path, tiny_model_dir):
    model, tok = load_model(tiny_model_dir)
    out = evaluate(model, tok, ["arc_easy", "winogrande", "codelength_alpaca_eval"], out_dir=tmp_path, limit=6,
                   batch_size=4, progress=False)
    res = out["results"]
    assert 0.0 <= res["arc_easy"][ACC] <= 1.0 and ACC_NORM in res["arc_easy"]
    # accuracy, its error and the sanity baselines of a label task (chance, majority, macro-F1, predictions)
    assert {"alias", ACC, "acc_stderr,none", "chance,none", "majority,none", "macro_f1,none",
            "pred_distribution"} <= set(res["winogrande"])
    assert ACC_NORM not in res["winogrande"]
    # A random 300-token-vocabulary model: about log2(vocab) bits per token.
    assert math.log2(len(tok)) - 1.5 < res["codelength_alpaca_eval"][BITS_PER_TOKEN] < math.log2(len(tok)) + 1.5


def test_every_registered_task_instantiates_with_its_registry_name():
    for name in TASKS:
        task = get_task(name)
        assert task.name == name and task.metrics and task.kind in ("generate", "loglikelihood", "response_bits",
                                                                    "response_drift")
