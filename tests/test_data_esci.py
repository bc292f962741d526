"""ESCI: label extraction, macro-F1 against a hand computation, the query-disjoint split, loader errors."""

import itertools
import json

import pytest

from talr import paths
from talr.data import esci

REAL = paths.data_dir() / esci.FILE
needs_data = pytest.mark.skipif(not REAL.is_file(), reason=f"ESCI data not found at {REAL}")


def make_row(label="E", query_id=1, product_id="B0", **extra):
    return {"query_id": query_id, "query": "usb c cable", "product_id": product_id, "esci_label": label,
            "product_title": "Anker USB-C cable 6ft", "id": f"{query_id}-{product_id}", **extra}


@pytest.mark.parametrize("output, label", [
    ("Exact", "E"), (" substitute.", "S"), ("COMPLEMENT", "C"), ("Irrelevant\nQuery: exact", "I"),
    ("The product is not an exact match.\nLabel: Substitute", "S"),   # the marked label wins over earlier words
    ("It could be exact... The answer is: **Irrelevant**", "I"),
    ("E", "E"), ("(S)", "S"), ("I.", "I"),
    ("", None), (None, None), ("maybe", None), ("Exactly right", None), ("e", None),
])
def test_extract_label(output, label):
    assert esci.extract_label(output) == label


def test_score_fields():
    assert esci.score(make_row("S"), "Substitute") == {"extracted": "S", "target": "S", "correct": True, "label": "S"}
    assert esci.score(make_row("C"), "")["correct"] is False


def reference_f1(targets, predictions, label):
    """Textbook precision/recall/F1 (2PR/(P+R)) for one label, 0 where undefined."""
    predicted = [t for t, p in zip(targets, predictions) if p == label]
    actual = [p for t, p in zip(targets, predictions) if t == label]
    precision = sum(t == label for t in predicted) / len(predicted) if predicted else 0.0
    recall = sum(p == label for p in actual) / len(actual) if actual else 0.0
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def test_macro_f1_hand_computed():
    targets = ["E", "E", "S", "C", "I", "I"]
    predictions = ["E", "S", "S", None, "I", "E"]
    # E: TP 1 FP 1 FN 1 -> 0.5; S: TP 1 FP 1 -> 2/3; C: TP 0 FN 1 -> 0; I: TP 1 FN 1 -> 2/3
    macro, per_label = esci.macro_f1(targets, predictions)
    assert [per_label[label]["f1"] for label in esci.LABELS] == pytest.approx([0.5, 2 / 3, 0.0, 2 / 3])
    assert macro == pytest.approx((0.5 + 2 / 3 + 0 + 2 / 3) / 4)
    assert per_label["E"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}


def test_macro_f1_against_brute_force_on_all_small_cases():
    # every (target, prediction) assignment of length 3 over E/S/C/I plus "no label"
    for targets in itertools.product(esci.LABELS, repeat=3):
        for predictions in itertools.product(esci.LABELS + (None,), repeat=3):
            macro, _ = esci.macro_f1(list(targets), list(predictions))
            expected = sum(reference_f1(targets, predictions, label) for label in esci.LABELS) / 4
            assert macro == pytest.approx(expected)


def test_label_without_support_counts_as_zero():
    macro, per_label = esci.macro_f1(["E", "S", "I"], ["E", "S", "I"])
    assert per_label["C"]["f1"] == 0.0 and macro == pytest.approx(0.75)


def test_metrics_and_aggregate():
    rows = [make_row("E", 1), make_row("S", 2), make_row("I", 3), make_row("I", 4)]
    result = esci.metrics(rows, ["Exact", "Exact", "Irrelevant", "???"])
    assert result["accuracy"] == 0.5 and result["unparsed"] == 1 and result["n"] == 4
    # E: TP1 FP1 -> 2/3; S: FN1 -> 0; C: 0; I: TP1 FN1 -> 2/3
    assert result["macro_f1"] == pytest.approx((2 / 3 + 0 + 0 + 2 / 3) / 4)
    with pytest.raises(ValueError, match="4 rows but 3 outputs"):
        esci.metrics(rows, ["Exact"] * 3)


def test_sft_formats():
    row = make_row("C")
    example = esci.to_sft_example(row, "label")
    assert example["messages"][:-1] == esci.eval_messages(row, "label")
    assert example["messages"][-1] == {"role": "assistant", "content": "Complement"}
    assert "Query: usb c cable\nProduct: Anker USB-C cable 6ft" in example["messages"][0]["content"]
    with pytest.raises(ValueError, match="no rationale"):
        esci.to_sft_example(row, "reasoning")
    with_rationale = esci.to_sft_example(make_row("C", rationale="A cable goes with a charger."), "reasoning")
    reply = with_rationale["messages"][-1]["content"]
    assert reply == "A cable goes with a charger.\nLabel: Complement" and esci.extract_label(reply) == "C"


def test_loader_errors_name_file_and_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="esci_examples_sample.jsonl"):
        esci.load_rows("test", tmp_path)
    path = tmp_path / esci.FILE
    path.parent.mkdir(parents=True)
    good = {k: v for k, v in make_row().items() if k != "id"}
    path.write_text(json.dumps(good) + "\n\n{not json\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"esci_examples_sample\.jsonl:3: invalid JSON"):
        esci.load_rows("train", tmp_path)
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "product_id": "B1", "esci_label": "X"}) + "\n")
    with pytest.raises(ValueError, match=r"jsonl:2: esci_label 'X'"):
        esci.load_rows("train", tmp_path)
    path.write_text(json.dumps({"query": "q"}) + "\n")
    with pytest.raises(ValueError, match=r"jsonl:1: missing field\(s\) query_id, product_id"):
        esci.load_rows("train", tmp_path)


@needs_data
def test_real_split_by_query():
    train, test = esci.load_rows("train"), esci.load_rows("test")
    assert len(train) + len(test) == 1199
    assert not {r["query_id"] for r in train} & {r["query_id"] for r in test}
    assert len({r["id"] for r in train + test}) == 1199
    n_queries = len({r["query_id"] for r in train + test})
    assert len({r["query_id"] for r in test}) == round(esci.TEST_FRACTION * n_queries)
    assert [r["id"] for r in esci.load_rows("test")] == [r["id"] for r in test]
    assert {r["esci_label"] for r in train} == {r["esci_label"] for r in test} == set(esci.LABELS)
