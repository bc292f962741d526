import math
import random

import pytest

from talr.evaluation.metrics import bootstrap_stderr, mean, mean_stderr, stderr_key, with_stderr


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


def test_stderr_keys_follow_lm_eval():
    assert stderr_key("acc,none") == "acc_stderr,none"
    assert stderr_key("exact_match,strict-match") == "exact_match_stderr,strict-match"
    assert with_stderr("acc,none", 0.5, None) == {"acc,none": 0.5, "acc_stderr,none": "N/A"}
