import math
import random

import pytest

from talr.evaluation.metrics import bootstrap_stderr, macro_f1, mean, mean_stderr, stderr_key, with_stderr


def test_mean_stderr_is_binomial_with_n_minus_1():
    values = [1.0] * 30 + [0.0] * 70
    p = 0.3
    assert mean_stderr(values) == pytest.approx(math.sqrt(p * (1 - p) / 99))
    assert mean_stderr([1.0]) is None


def test_mean_stderr_matches_statistics_module():
    import statistics

    rng = random.Random(0)
    values = [rng.random() for _ in range(57)]
    assert mean_stderr(values) == pytest.approx(statistics.stdev(values) / math.sqrt(57), rel=1e-12)


def test_bootstrap_stderr_of_the_mean_approaches_the_analytic_value():
    values = [1.0] * 40 + [0.0] * 60
    boot = bootstrap_stderr(mean, values, iters=2000)
    assert boot == pytest.approx(mean_stderr(values), rel=0.1)
    assert bootstrap_stderr(mean, values, iters=200) == bootstrap_stderr(mean, values, iters=200)  # seeded


def test_macro_f1_hand_example():
    # classes E, S, I; per-class F1 = 2tp/(2tp+fp+fn): E 4/(4+2+1), S 2/(2+1+1), I 0 (gold I never predicted)
    pairs = [("E", "E"), ("E", "E"), ("E", "S"), ("S", "S"), ("S", "E"), ("E", "I")]
    assert macro_f1(pairs) == pytest.approx((4 / 7 + 1 / 2 + 0) / 3)
    assert macro_f1(pairs, labels=["E", "S", "I", "C"]) == pytest.approx((4 / 7 + 1 / 2) / 4)
    assert macro_f1([("x", "E"), ("E", "E")]) == pytest.approx(2 / 3)  # unparseable prediction: a miss for E


def test_stderr_keys_follow_lm_eval():
    assert stderr_key("acc,none") == "acc_stderr,none"
    assert stderr_key("exact_match,strict-match") == "exact_match_stderr,strict-match"
    assert with_stderr("acc,none", 0.5, None) == {"acc,none": 0.5, "acc_stderr,none": "N/A"}
