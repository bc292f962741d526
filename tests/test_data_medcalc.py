"""MedCalc-Bench: official extraction/correctness rules on hand-made outputs, loaders on real and broken files."""

import csv
import json
import random

import pytest

from talr import paths
from talr.data import medcalc

REAL_TEST = paths.data_dir() / medcalc.FILES["test"]
needs_data = pytest.mark.skipif(not REAL_TEST.is_file(), reason=f"MedCalc-Bench data not found at {REAL_TEST}")


def make_row(calculator_id, answer, lower=None, upper=None, category="lab", row_number="1"):
    return {"Row Number": row_number, "Calculator ID": str(calculator_id), "Calculator Name": f"calc {calculator_id}",
            "Category": category, "Output Type": "x", "Note ID": "n1", "Note Type": "Extracted",
            "Patient Note": "A 50-year-old man.", "Question": "What is it?", "Relevant Entities": "{}",
            "Ground Truth Answer": answer, "Lower Limit": lower if lower is not None else answer,
            "Upper Limit": upper if upper is not None else answer, "Ground Truth Explanation": "Because.",
            "id": f"test-{row_number}"}


def answer(value):
    return json.dumps({"answer": value})


DECIMAL = make_row(2, "25.238", "23.9761", "26.4999")  # Cockcroft-Gault, row 1 of test_data.csv


@pytest.mark.parametrize("value, correct", [
    ("23.9761", True), ("26.4999", True), ("25.238", True),   # the limits themselves count
    ("23.976", False), ("26.5", False), ("-25.238", False),   # just outside
])
def test_decimal_limits_are_inclusive(value, correct):
    result = medcalc.score(DECIMAL, answer(value))
    assert result["correct"] is correct and result["official_correct"] is correct
    assert result["method"] == "json"


@pytest.mark.parametrize("text, extracted", [
    ("25.238 mL/min", "25.238"),
    ("8.1 mL/min/1.73 m²", "8.1"),             # the eGFR rule takes the number before the unit
    ("53.1%", "0.531"),                        # a percentage is divided by 100
    ("str(round((140 - 87) * 2 / 4.2, 3))", str(round((140 - 87) * 2 / 4.2, 3))),
    ("str(sqrt(16) + 2^2)", "8.0"),            # ^ -> **, sqrt -> math.sqrt, as the official edits
    ("str(0.00001)", "1e-05"),
    ("str(__import__('os').getcwd())", None),  # never executed: not arithmetic
    ("no number", None),
])
def test_decimal_extraction_rules(text, extracted):
    assert medcalc.parse_answer(text, 2) == extracted


@pytest.mark.parametrize("value, correct", [
    ("4", True), ("4.4", True), ("3.5", True), ("4.5", True),  # Python's round: 3.5 -> 4 and 4.5 -> 4 (half to even)
    ("3.4", False), ("5.5", False), ("4.6", False),            # 5.5 -> 6
])
def test_integer_rounds_like_python(value, correct):
    assert medcalc.score(make_row(4, "4", category="risk"), answer(value))["correct"] is correct


def test_integer_half_to_even_and_special_forms():
    two = make_row(4, "2", category="risk")
    assert medcalc.score(two, answer("2.5"))["correct"]          # round(2.5) == 2 in Python
    assert not medcalc.score(make_row(4, "3"), answer("2.5"))["correct"]
    assert medcalc.parse_answer("3 out of 5", 4) == "3"
    assert medcalc.parse_answer("1, 2, 3", 4) == "3"             # the official code counts a list's items
    assert medcalc.parse_answer("score -1", 16) == "-1"
    assert not medcalc.score(make_row(4, "7"), answer("07"))["correct"]  # eval("07") fails in the official code


@pytest.mark.parametrize("value, correct, official", [
    ("12/09/2007", True, True), ("12/9/2007", True, True), ("The date is 12/09/2007", True, False),
    ("12/10/2007", False, False), ("2007-12-09", False, False), ("13/09/2007", False, False),
])
def test_dates_exact(value, correct, official):
    row = make_row(13, "12/09/2007", category="date")
    result = medcalc.score(row, answer(value))
    assert (result["correct"], result["official_correct"]) == (correct, official)


@pytest.mark.parametrize("value, extracted, correct", [
    ("(30, 3)", "(30, 3)", True), ("('30 weeks', '3 days')", "(30, 3)", True), ("[30, 3]", "(30, 3)", True),
    ("30 weeks 3 days", "(30, 3)", True), ("(30, 4)", "(30, 4)", False), ("(3, 30)", "(3, 30)", False),
    ("30 weeks", "(3, 0)", False),  # the official pattern splits one number into two digits
])
def test_gestational_age_tuple(value, extracted, correct):
    row = make_row(69, "('30 weeks', '3 days')", category="date")
    result = medcalc.score(row, answer(value))
    assert (result["extracted"], result["correct"]) == (extracted, correct)


def test_json_extraction_takes_last_answer_and_ignores_placeholders():
    out = '{"step_by_step_thinking": "x", "answer": "1"} then {"answer": "25.5"}'
    assert medcalc.extract_json_answer(out) == "25.5"
    assert medcalc.extract_json_answer('{"answer": "str(value which is the answer to the question)"}') is None
    assert medcalc.extract_json_answer("Answer: 25") is None


def test_fallback_without_json():
    result = medcalc.score(DECIMAL, "The clearance is 25.1 mL/min/1.73 m^2.")
    assert (result["extracted"], result["method"], result["correct"], result["official_correct"]) == ("25.1", "fallback", True, False)
    bmi = make_row(6, "14.525", "13.8", "15.25", category="physical")
    assert medcalc.score(bmi, "BMI = 10.2 kg / (0.838 m)^2 = 14.525 kg/m^2.")["extracted"] == "14.525"
    date = make_row(68, "12/31/2009", category="date")
    assert medcalc.score(date, "LMP 12/17/2009, conception is 12-31-2009.")["correct"]
    age = make_row(69, "('0 weeks', '6 days')", category="date")
    assert medcalc.score(age, "The gap is 6 days.")["extracted"] == "(0, 6)"


@pytest.mark.parametrize("calculator_id", [2, 4, 13, 69])
@pytest.mark.parametrize("output", ["", None, "}}{{", '{"answer": }', '{"answer": ""}', "lorem ipsum", "\x00" * 10,
                                    '{"answer": "str((((("}', '{"answer": "str(9**9**9**9)"}', "9" * 5000,
                                    "9" * 400 + ".5", '{"answer": "str(1e308 * 10)"}'])
def test_garbage_scores_zero_without_raising(calculator_id, output):
    row = make_row(calculator_id, {2: "1.5", 4: "3", 13: "01/02/2020", 69: "('3 weeks', '2 days')"}[calculator_id])
    result = medcalc.score(row, output)
    assert result["correct"] is False and result["official_correct"] is False


def test_random_outputs_never_raise():
    rng = random.Random(0)
    alphabet = '0123456789./-,()[]{}"\': answerstrweksdy%^*+mL'
    rows = [make_row(i, v) for i, v in [(2, "1.5"), (4, "3"), (13, "01/02/2020"), (69, "('3 weeks', '2 days')")]]
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        for row in rows:
            assert isinstance(medcalc.score(row, text)["correct"], bool)


def test_aggregate_overall_and_per_category():
    scored = [{"category": "lab", "correct": True, "official_correct": True},
              {"category": "lab", "correct": False, "official_correct": False},
              {"category": "risk", "correct": True, "official_correct": False}]
    result = medcalc.aggregate(scored)
    assert result["n"] == 3 and result["accuracy"] == pytest.approx(2 / 3)
    assert result["official_accuracy"] == pytest.approx(1 / 3)
    assert result["per_category"] == {"lab": {"n": 2, "accuracy": 0.5, "official_accuracy": 0.5},
                                      "risk": {"n": 1, "accuracy": 1.0, "official_accuracy": 0.0}}


def test_sft_example_is_the_eval_prompt_plus_the_json_answer():
    row = make_row(2, "25.238", "23.9761", "26.4999")
    for fmt in medcalc.FORMATS:
        example = medcalc.to_sft_example(row, fmt)
        assert example["messages"][:-1] == medcalc.eval_messages(row, fmt)
        assert [m["role"] for m in example["messages"]] == ["system", "user", "assistant"]
        target = json.loads(example["messages"][-1]["content"])
        assert target["answer"] == "25.238"
        assert ("step_by_step_thinking" in target) == (fmt == "reasoning")
        assert medcalc.score(row, example["messages"][-1]["content"])["official_correct"]
    with pytest.raises(ValueError, match="label, reasoning"):
        medcalc.eval_messages(row, "cot")


def write_csv(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=medcalc.COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: v for k, v in row.items() if k != "id"})


def test_loader_errors_name_file_and_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="test_data.csv"):
        medcalc.load_rows("test", tmp_path)
    path = tmp_path / medcalc.FILES["test"]
    write_csv(path, [make_row(2, "1.5", row_number="1"), make_row(2, "1.5", row_number="2")])
    with path.open("a", encoding="utf-8") as handle:
        handle.write('3,2,"calc\nwith newline",lab\n')  # record starting on line 4 has 4 fields
    with pytest.raises(ValueError, match=r"test_data\.csv:4: .*14 fields"):
        medcalc.load_rows("test", tmp_path)
    write_csv(path, [make_row(2, "1.5", row_number="1"), make_row(99, "1", row_number="2")])
    with pytest.raises(ValueError, match=r"test_data\.csv:3: unknown Calculator ID '99'"):
        medcalc.load_rows("test", tmp_path)
    with pytest.raises(ValueError, match="known: train, test, dev_train, dev"):
        medcalc.load_rows("validation", tmp_path)


@needs_data
def test_real_files():
    train, test = medcalc.load_rows("train"), medcalc.load_rows("test")
    assert (len(train), len(test)) == (1006, 1047)
    assert test[0]["id"] == "test-1" and test[0]["Ground Truth Answer"] == "25.238"
    assert len({row["id"] for row in train + test}) == 1006 + 1047
    assert {int(row["Calculator ID"]) for row in test} == medcalc.KNOWN_IDS


@needs_data
def test_dev_split_is_by_note_and_seeded():
    dev, dev_train, test = medcalc.load_rows("dev"), medcalc.load_rows("dev_train"), medcalc.load_rows("test")
    assert not {r["Note ID"] for r in dev} & {r["Note ID"] for r in dev_train}
    assert sorted(r["id"] for r in dev + dev_train) == sorted(r["id"] for r in test)
    assert [r["id"] for r in medcalc.load_rows("dev")] == [r["id"] for r in dev]
    n_notes = len({r["Note ID"] for r in test})
    assert len({r["Note ID"] for r in dev}) == round(medcalc.DEV_FRACTION * n_notes)


@needs_data
@pytest.mark.parametrize("split", ["train", "test"])
def test_every_real_target_scores_correct(split):
    rows = medcalc.load_rows(split)
    for fmt in medcalc.FORMATS:
        scored = [medcalc.score(row, medcalc.to_sft_example(row, fmt)["messages"][-1]["content"]) for row in rows]
        assert medcalc.aggregate(scored)["official_accuracy"] == 1.0
    # the fallback alone recovers the answer from the plain explanation text (no JSON)
    scored = [medcalc.score(row, row["Ground Truth Explanation"]) for row in rows]
    assert medcalc.aggregate(scored)["accuracy"] == 1.0
