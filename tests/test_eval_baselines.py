import itertools
import math
import random

import pytest

from talr import stats
from talr.data import esci
from talr.evaluation import baselines as b
from talr.evaluation.metrics import bootstrap_stderr
from talr.evaluation.tasks.esci import ESCI
from talr.evaluation.tasks.multiple_choice import ARCEasy, BoolQ

# The sweep's 24 ESCI items (the issue's count): Irrelevant 10 / Exact 7 / Substitute 6 / Complement 1.
SWEEP_TARGETS = ["I"] * 10 + ["E"] * 7 + ["S"] * 6 + ["C"]


def test_constant_irrelevant_answer_on_the_sweep_items_gives_the_issue_numbers():
    # F1(I) = 2*10 / (2*10 + 14 + 0) = 20/34, the other three 0: macro-F1 = 20/34/4 = 0.147; accuracy 41.7 %
    records = [{"target": t, "extracted": "I", "scores": {"acc,none": float(t == "I")}} for t in SWEEP_TARGETS]
    agg = ESCI().aggregate(records)
    assert agg["acc,none"] == agg[b.MAJORITY] == pytest.approx(10 / 24) and agg[b.MAJORITY_LABEL] == "I"
    assert agg[b.MACRO_F1] == pytest.approx(20 / 34 / 4) and round(agg[b.MACRO_F1], 3) == 0.147
    assert agg[b.PRED_DISTRIBUTION] == {"E": 0, "S": 0, "C": 0, "I": 24}
    assert any("collapsed onto 'I'" in line for line in b.baseline_warnings("esci", agg))


def test_majority_ties_go_to_the_first_listed_label_in_results():
    records = [{"target": t, "extracted": "E", "scores": {"acc,none": float(t == "E")}} for t in ["S", "E", "S", "E"]]
    agg = ESCI().aggregate(records)
    assert agg[b.MAJORITY_LABEL] == "E" and agg[b.MAJORITY] == 0.5  # E is listed before S in esci.LABELS


def test_macro_f1_equals_the_independent_per_label_implementation_on_all_small_cases():
    labels = ("E", "S", "I")
    for targets in itertools.product(labels, repeat=3):
        for predictions in itertools.product((*labels, None), repeat=3):
            expected = esci.macro_f1(list(targets), list(predictions), labels)[0]
            assert stats.macro_f1(list(targets), list(predictions), labels) == pytest.approx(expected)


def test_macro_f1_stderr_agrees_with_the_plain_bootstrap():
    rng = random.Random(3)
    targets = [rng.choice(esci.LABELS) for _ in range(300)]
    predictions = [t if rng.random() < 0.6 else rng.choice((*esci.LABELS, None)) for t in targets]
    pairs = list(zip(targets, predictions))
    plain = bootstrap_stderr(lambda items: esci.macro_f1([t for t, _ in items], [p for _, p in items])[0], pairs)
    fast = b.macro_f1_stderr(targets, predictions, esci.LABELS)
    assert fast == pytest.approx(plain, rel=0.12)  # two seeded Monte Carlo estimates of one standard deviation
    assert b.macro_f1_stderr(["E"], ["E"], esci.LABELS) is None


def test_warnings_below_chance_by_two_standard_errors_and_on_collapse():
    def result(acc, dist):
        return {"acc,none": acc, b.CHANCE: 0.25, b.MAJORITY: 0.3, b.PRED_DISTRIBUTION: dist}

    # N=24: se = sqrt(.25*.75/24) = 0.088, so 3/24 = 0.125 is within 2 se of chance: no warning
    assert b.baseline_warnings("arc_easy", result(0.125, {"A": 6, "B": 6, "C": 6, "D": 6})) == []
    # N=100: se = 0.0433, threshold 0.163
    lines = b.baseline_warnings("arc_easy", result(0.15, {"A": 25, "B": 25, "C": 25, "D": 25}))
    assert len(lines) == 1 and "below chance" in lines[0] and "N=100" in lines[0]
    lines = b.baseline_warnings("esci", result(0.3, {"A": 95, "B": 5, "C": 0, "D": 0}))
    assert len(lines) == 1 and "collapsed onto 'A'" in lines[0]
    lines = b.baseline_warnings("esci", result(0.3, {"A": 5, "B": 0, "C": 0, "D": 0, "none": 95}))
    assert len(lines) == 1 and "collapsed onto no label" in lines[0]
    assert b.baseline_warnings("gsm8k", {"exact_match,strict-match": 0.1}) == []


def _mc_record(target, prediction, n_choices=4):
    return {"prompt": [["q", " c"]] * n_choices, "target": target, "extracted": {"acc": prediction, "acc_norm": 0},
            "scores": {"acc,none": float(target == prediction), "acc_norm,none": float(target == 0)}}


def test_multiple_choice_results_carry_the_baselines():
    records = [_mc_record(t, p) for t, p in [(0, 0), (0, 0), (1, 0), (2, 0), (3, 3)]]
    records.append({"prompt": [["q", " c"]] * 4, "target": None, "extracted": None, "error": "boom",
                    "scores": {"acc,none": 0.0, "acc_norm,none": 0.0}})
    agg = ARCEasy().aggregate(records)
    assert agg["acc,none"] == pytest.approx(3 / 6)  # the failed item counts wrong
    assert agg[b.CHANCE] == 0.25
    assert agg[b.MAJORITY] == pytest.approx(2 / 5) and agg[b.MAJORITY_LABEL] == "A"
    assert agg[b.PRED_DISTRIBUTION] == {"A": 4, "B": 0, "C": 0, "D": 1}
    # F1: A = 2*2/(4+2+0) = 2/3, B = 0, C = 0, D = 1
    assert agg[b.MACRO_F1] == pytest.approx((2 / 3 + 1) / 4)
    assert isinstance(agg["macro_f1_stderr,none"], float)


def test_boolq_labels_are_no_and_yes():
    records = [_mc_record(t, 1, n_choices=2) for t in (1, 1, 0)]
    agg = BoolQ().aggregate(records)
    assert agg[b.PRED_DISTRIBUTION] == {"no": 0, "yes": 3}
    assert agg[b.MAJORITY_LABEL] == "yes" and agg[b.CHANCE] == 0.5
    assert agg[b.MAJORITY] == pytest.approx(2 / 3)


def test_esci_results_carry_the_baselines():
    records = [{"target": t, "extracted": p, "scores": {"acc,none": float(t == p)}}
               for t, p in zip(SWEEP_TARGETS, ["I"] * 23 + [None])]
    agg = ESCI().aggregate(records)
    assert agg["acc,none"] == pytest.approx(10 / 24)
    assert agg[b.MAJORITY] == pytest.approx(10 / 24) and agg[b.MAJORITY_LABEL] == "I"
    assert agg[b.CHANCE] == 0.25
    assert agg[b.PRED_DISTRIBUTION] == {"E": 0, "S": 0, "C": 0, "I": 23, "none": 1}
    assert agg[b.MACRO_F1] == pytest.approx(2 * 10 / (20 + 13 + 0) / 4)
    assert not math.isnan(agg["macro_f1_stderr,none"])
