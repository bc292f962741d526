import json

import pytest

from talr.data import esci, medcalc
from talr.evaluation.registry import get_task
from talr.evaluation.tasks.medcalc import ACCURACY, OFFICIAL, category_key
from talr.paths import data_dir

pytestmark = pytest.mark.skipif(not (data_dir() / "medcalc_bench").is_dir(), reason="shared benchmark data not present")


def test_medcalc_scores_and_per_category_aggregate():
    task = get_task("medcalc")
    docs, total = task.load(data_dir(), 40)
    assert total == 1047 and len(docs) == 40
    records = []
    for i, doc in enumerate(docs):
        right = json.dumps({"step_by_step_thinking": "...", "answer": doc["Ground Truth Answer"]})
        scored = task.score(doc, right if i % 3 else "I cannot help with that.")
        assert scored.scores[ACCURACY] == float(bool(i % 3))
        records.append({"extracted": scored.extracted, "target": scored.target, "scores": scored.scores,
                        "details": scored.details})
    agg = task.aggregate(records)
    expected = medcalc.aggregate([medcalc.score(d, json.dumps({"answer": d["Ground Truth Answer"]}) if i % 3 else "")
                                  for i, d in enumerate(docs)])
    assert agg[ACCURACY] == pytest.approx(expected["accuracy"])
    assert agg[OFFICIAL] == pytest.approx(expected["official_accuracy"])
    for category, stats in expected["per_category"].items():
        assert agg[category_key(category)] == pytest.approx(stats["accuracy"])
    assert task.score(docs[0], "").scores == {ACCURACY: 0.0, OFFICIAL: 0.0}


def test_esci_accuracy_and_macro_f1_with_bootstrap_stderr():
    task = get_task("esci")
    docs, _ = task.load(data_dir(), 30)
    outputs = ["Label: Exact", "Irrelevant", "", "Label: Substitute", "garbage \x00"] * 6
    records = []
    for doc, output in zip(docs, outputs):
        scored = task.score(doc, output)
        records.append({"extracted": scored.extracted, "target": scored.target, "scores": scored.scores})
    agg = task.aggregate(records)
    reference = esci.metrics(docs, outputs)
    assert agg["acc,none"] == pytest.approx(reference["accuracy"])
    assert agg["macro_f1,none"] == pytest.approx(reference["macro_f1"])
    assert isinstance(agg["macro_f1_stderr,none"], float) and agg["macro_f1_stderr,none"] > 0


def test_math_domain_task_reads_the_training_answer_format():
    task = get_task("math")
    docs, total = task.load(data_dir(), 3)
    assert total == 1319
    doc = docs[0]
    assert "The answer is" in task.request(doc).messages[-1]["content"]
    assert task.score(doc, f"Step 1...\nThe answer is: {doc['target']}").scores["accuracy,none"] == 1.0
    assert task.score(doc, "").scores == {"accuracy,none": 0.0, "exact_match,strict-match": 0.0,
                                          "exact_match,flexible-extract": 0.0}
