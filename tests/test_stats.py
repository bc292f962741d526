"""talr.stats against hand computations, scipy, brute force and simulation."""

import math
import statistics

import numpy as np
import pytest
from scipy import stats as scipy_stats

from talr import stats


def test_mean_with_se_matches_statistics_module():
    x = np.random.default_rng(0).normal(3, 2, size=50)
    mean, se = stats.mean_with_se(x)
    assert mean == pytest.approx(statistics.fmean(x))
    assert se == pytest.approx(statistics.stdev(x) / math.sqrt(50))
    assert math.isnan(stats.mean_with_se(np.array([1.0]))[1])


def test_ratio_of_sums_se_agrees_with_the_jackknife():
    rng = np.random.default_rng(1)
    tokens = rng.integers(5, 200, size=400).astype(float)
    bits = tokens * rng.gamma(4, 0.5, size=400) + rng.normal(0, 5, size=400)
    ratio, se = stats.ratio_of_sums_with_se(bits, tokens)
    assert ratio == pytest.approx(bits.sum() / tokens.sum())
    n = bits.size
    leave_one_out = np.array([(bits.sum() - bits[i]) / (tokens.sum() - tokens[i]) for i in range(n)])
    jackknife = math.sqrt((n - 1) / n * ((leave_one_out - leave_one_out.mean()) ** 2).sum())
    assert se == pytest.approx(jackknife, rel=0.02)


def test_spearman_matches_scipy_including_ties():
    from itertools import permutations

    spearmanr = scipy_stats.spearmanr

    rng = np.random.default_rng(3)
    x = rng.integers(0, 4, 9).astype(float)  # ties
    y = x + rng.normal(0, 1.5, 9)
    rho, _ = stats.spearman(x, y)
    assert rho == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
    # brute force over all 7! pairings of a 7-point sample gives the exact permutation p-value
    a, b = [1.0, 2, 3, 4, 5, 6, 7], [2.0, 1, 4, 3, 7, 5, 6]
    rho_ab, p_ab = stats.spearman(a, b, permutations=50_000)
    exact = np.mean([abs(spearmanr(a, perm).statistic) >= rho_ab - 1e-12 for perm in permutations(b)])
    assert p_ab == pytest.approx(exact, abs=0.01)
    assert stats.average_ranks([3, 1, 3, 2]).tolist() == [3.5, 1.0, 3.5, 2.0]
    with pytest.raises(ValueError, match="equal length"):
        stats.spearman([1, 2], [1, 2])


def test_cost_per_gain_is_the_ratio_with_a_first_order_error():
    ratio, se = stats.cost_per_gain(0.6, 0.1, -2.0, 0.3)
    assert ratio == pytest.approx(0.3)

    def f(d1, d2):
        return d1 / -d2

    h = 1e-6
    g1 = (f(0.6 + h, -2.0) - f(0.6 - h, -2.0)) / (2 * h)
    g2 = (f(0.6, -2.0 + h) - f(0.6, -2.0 - h)) / (2 * h)
    assert se == pytest.approx(math.sqrt((g1 * 0.1) ** 2 + (g2 * 0.3) ** 2), rel=1e-6)
    assert stats.cost_per_gain(0.0, 0.1, -2.0, 0.3) == pytest.approx((0.0, 0.05))


def test_ratio_linearized_means_are_the_pooled_ratios_and_its_error_the_delta_method():
    rng = np.random.default_rng(2)
    tokens = rng.integers(3, 40, size=30).astype(float)
    bits = tokens[None, :] * rng.gamma(3, 0.5, size=(3, 30))
    z = stats.ratio_linearized(bits, tokens)
    for row, z_row in zip(bits, z):
        assert z_row.mean() == pytest.approx(row.sum() / tokens.sum(), rel=1e-12)
    assert z.mean() == pytest.approx(bits.sum() / (3 * tokens.sum()), rel=1e-12)
    one = stats.ratio_linearized(bits[0], tokens)
    assert stats.mean_with_se(one)[1] == pytest.approx(stats.ratio_of_sums_with_se(bits[0], tokens)[1], rel=1e-12)


# --- seeds ---------------------------------------------------------------------------------------------------------

TWO_SEEDS = [[1, 1, 1, 0], [0, 1, 0, 0]]  # rows: seeds, columns: the same four items


def test_seed_averaged_hand_case():
    # grand mean 0.5; seed means 0.75 / 0.25 -> MS_seeds = 4 * (0.25^2 + 0.25^2) = 0.5; residuals all +-0.25 ->
    # MS_residual = 8 * 0.0625 / (1 * 3) = 1/6; sigma_seed^2 = (0.5 - 1/6) / 4 = 1/12. Item means 0.5, 1, 0.5, 0:
    # variance 1/6, item se^2 = 1/24. Total 1/24 + (1/12) / 2 = 1/12.
    result = stats.seed_averaged(TWO_SEEDS)
    assert result.mean == 0.5
    assert result.seed_variance == pytest.approx(1 / 12)
    assert result.item_stderr == pytest.approx(math.sqrt(1 / 24))
    assert result.stderr == pytest.approx(math.sqrt(1 / 12))
    # the closed form (MS_items + MS_seeds - MS_residual) / (n k), MS_items = 2 * 0.5 / 3
    assert result.stderr ** 2 == pytest.approx((1 / 3 + 0.5 - 1 / 6) / 8)
    # no seed spread: the component is truncated at 0 and only item noise is left
    flat = stats.seed_averaged([[1, 0, 1], [1, 1, 0]])
    assert flat.seed_variance == 0.0 and flat.stderr == pytest.approx(1 / 6)
    one = stats.seed_averaged([[1, 0, 1, 1]])
    assert one.seed_variance is None and one.stderr == pytest.approx(statistics.stdev([1, 0, 1, 1]) / 2)


def test_seed_averaged_error_matches_simulated_spread_of_the_mean():
    """Items and seeds drawn from the random-effects model: the estimated variance of the grand mean averages to
    the variance the simulation shows, and the old sqrt(sum se^2)/k misses the seed term."""
    rng = np.random.default_rng(0)
    n, k, sigma_item, sigma_seed, sigma_noise = 30, 4, 1.0, 0.5, 0.7
    means, estimates, old = [], [], []
    for _ in range(3000):
        y = (rng.normal(0, sigma_item, n)[None, :] + rng.normal(0, sigma_seed, k)[:, None]
             + rng.normal(0, sigma_noise, (k, n)))
        result = stats.seed_averaged(y)
        means.append(result.mean)
        estimates.append(result.stderr ** 2)
        old.append(sum(stats.mean_stderr(list(row)) ** 2 for row in y) / k ** 2)
    true = sigma_item ** 2 / n + sigma_seed ** 2 / k + sigma_noise ** 2 / (n * k)
    assert np.var(means) == pytest.approx(true, rel=0.08)
    assert np.mean(estimates) == pytest.approx(true, rel=0.08)
    assert np.mean(old) < 0.3 * true


def test_seed_averaged_difference_hand_case():
    # per-item seed-mean differences 0.5, 0, 0.5, 0: variance 1/12, over 4 items 1/48; plus a's seed term
    # (1/12) / 2 = 1/24; b has one seed and adds none. Total 3/48 = 1/16.
    diff, se = stats.seed_averaged_difference(np.array(TWO_SEEDS), np.array([[0, 1, 0, 0]]))
    assert diff == pytest.approx(0.25)
    assert se == pytest.approx(0.25)
    with pytest.raises(ValueError, match="same"):
        stats.seed_averaged_difference(np.ones((2, 3)), np.ones((2, 4)))


def test_seed_averaged_from_summaries_hand_case():
    # item noise shared by the seeds: mean(se^2) = 0.04; seeds' spread: var(0.75, 0.25) / 2 = 0.125 / 2
    mean, se = stats.seed_averaged_from_summaries([0.75, 0.25], [0.2, 0.2])
    assert mean == 0.5
    assert se == pytest.approx(math.sqrt(0.04 + 0.0625))
    assert stats.seed_averaged_from_summaries([0.3], [0.1]) == pytest.approx((0.3, 0.1))


# --- power and multiple comparisons --------------------------------------------------------------------------------


def test_mde_paired_matches_scipy_quantiles_and_a_t_test_power():
    multiplier = scipy_stats.norm.ppf(0.975) + scipy_stats.norm.ppf(0.8)
    assert stats.mde_paired(100, 1.0) == pytest.approx(multiplier / 10, rel=1e-9)
    assert stats.mde_paired(100, 1.0) == pytest.approx(0.28016, abs=1e-5)
    assert stats.mde_from_stderr(0.05) == pytest.approx(multiplier * 0.05, rel=1e-9)
    # independent check: a paired t-test at that true difference has ~80 % power (noncentral t, n = 400)
    n, sd = 400, 0.6
    delta = stats.mde_paired(n, sd)
    critical = scipy_stats.t.ppf(0.975, n - 1)
    noncentrality = delta / (sd / math.sqrt(n))
    power = scipy_stats.nct.sf(critical, n - 1, noncentrality) + scipy_stats.nct.cdf(-critical, n - 1, noncentrality)
    assert power == pytest.approx(0.8, abs=0.005)
    assert stats.mde_paired(100, 1.0, alpha=0.01, power=0.9) == pytest.approx(
        (scipy_stats.norm.ppf(0.995) + scipy_stats.norm.ppf(0.9)) / 10)
    with pytest.raises(ValueError):
        stats.mde_paired(0, 1.0)


def test_mde_proportions_hand_cases():
    multiplier = scipy_stats.norm.ppf(0.975) + scipy_stats.norm.ppf(0.8)
    # independent errors at 50 %: per-item difference SD sqrt(2 * 0.25) -> 2.8016 * 0.7071 / 10 = 0.1981
    assert stats.mde_proportions(100, 0.5) == pytest.approx(multiplier * math.sqrt(0.5) / 10)
    assert stats.mde_proportions(100, 0.5) == pytest.approx(0.1981, abs=1e-4)
    # the two models disagree on 20 % of the items: SD sqrt(0.2)
    assert stats.mde_proportions(100, 0.5, discordance=0.2) == pytest.approx(multiplier * math.sqrt(0.2) / 10)
    # 24 items, disagreeing on a quarter of them: ~29 points, as the ESCI record's verdicts could never reach
    assert stats.mde_proportions(24, 0.3, discordance=0.25) == pytest.approx(0.2859, abs=1e-4)


def test_two_sided_p_matches_scipy():
    assert stats.two_sided_p(1.959964, 1.0) == pytest.approx(0.05, abs=1e-6)
    assert stats.two_sided_p(-0.3, 0.2) == pytest.approx(2 * scipy_stats.norm.sf(1.5))
    assert stats.two_sided_p(0.0, 0.0) == 1.0 and stats.two_sided_p(0.1, 0.0) == 0.0


def test_holm_hand_case():
    # sorted: 0.005 * 4 = 0.02, 0.01 * 3 = 0.03, 0.03 * 2 = 0.06, 0.04 * 1 = 0.04 -> raised to 0.06 (monotone)
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert stats.holm([]) == []


def test_holm_equals_the_step_down_procedure_by_brute_force():
    rng = np.random.default_rng(5)
    for _ in range(200):
        p = list(rng.uniform(0, 0.1, size=rng.integers(1, 8)))
        adjusted = stats.holm(p)
        order = sorted(range(len(p)), key=lambda i: p[i])
        rejected = set()
        for rank, i in enumerate(order):  # reject while p_(i) <= alpha / (m - i + 1), then stop
            if p[i] > 0.05 / (len(p) - rank):
                break
            rejected.add(i)
        assert {i for i, a in enumerate(adjusted) if a <= 0.05} == rejected


# --- matched domain gain ------------------------------------------------------------------------------------------


def _line(slope, intercept, gains, cost_se=0.0, gain_se=0.0):
    return [stats.CurvePoint(g, slope * g + intercept, cost_se, gain_se) for g in gains]


def test_cost_at_gain_reads_a_straight_line_exactly():
    curve = _line(2.0, 1.0, [0.0, 1.0, 2.0], cost_se=0.1)
    cost, se = stats.cost_at_gain(curve, 1.5)
    assert cost == pytest.approx(4.0)
    assert se == pytest.approx(math.sqrt(0.25 * 0.01 * 2))  # weights 0.5 / 0.5 on two independent points
    # gain errors move the reading point: slope^2 times the same weights
    _, se = stats.cost_at_gain(_line(2.0, 1.0, [0.0, 1.0, 2.0], 0.1, 0.1), 1.5)
    assert se == pytest.approx(math.sqrt(0.25 * 2 * (0.01 + 4 * 0.01)))
    assert stats.cost_at_gain(curve, 1.0) == pytest.approx((3.0, 0.1))  # on a measured point
    assert stats.cost_at_gain(curve, 2.5) is None  # no extrapolation
    assert stats.cost_at_gain(list(reversed(curve)), 0.5) == pytest.approx((2.0, math.sqrt(0.5) * 0.1))


def test_matched_gain_on_synthetic_curves_with_a_known_answer():
    # a (TALR-like): learns the domain slowly, reaching gain 2 at cost 0.5 per unit; b: reaches 3, cost 1.5 per unit.
    a = _line(0.5, 0.0, [0.0, 1.0, 2.0])
    b = _line(1.5, 0.0, [0.0, 0.8, 3.0])
    result = stats.matched_gain(a, b)
    assert result.gain == 2.0  # the largest gain both reach
    assert result.cost_a == pytest.approx(1.0) and result.cost_b == pytest.approx(3.0)
    assert result.difference == pytest.approx(-2.0)
    assert stats.matched_gain(a, b, gain=0.5).difference == pytest.approx(0.25 - 0.75)
    assert stats.matched_gain(_line(1, 0, [2.0, 3.0]), _line(1, 0, [0.0, 1.0])) is None  # ranges do not meet


def test_matched_gain_error_matches_simulation():
    """Noisy measurements of two known curves: the interpolated difference is unbiased and its error bar matches
    its spread over repetitions."""
    rng = np.random.default_rng(11)
    gains_a, gains_b, se_cost, se_gain = [0.0, 1.0, 2.0], [0.0, 1.5, 3.0], 0.05, 0.05
    differences, errors = [], []
    for _ in range(4000):
        a = [stats.CurvePoint(g + rng.normal(0, se_gain), 0.5 * g + rng.normal(0, se_cost), se_cost, se_gain)
             for g in gains_a]
        b = [stats.CurvePoint(g + rng.normal(0, se_gain), g + rng.normal(0, se_cost), se_cost, se_gain)
             for g in gains_b]
        result = stats.matched_gain(a, b, gain=1.2)
        differences.append(result.difference)
        errors.append(result.difference_se)
    assert np.mean(differences) == pytest.approx(0.6 - 1.2, abs=0.01)
    assert np.std(differences) == pytest.approx(np.mean(errors), rel=0.1)


# --- sanity baselines ---------------------------------------------------------------------------------------------

ESCI_24 = ["Irrelevant"] * 10 + ["Exact"] * 7 + ["Substitute"] * 6 + ["Complement"]
ESCI_LABELS = ("Exact", "Substitute", "Complement", "Irrelevant")
ESCI_LABELS_SHORT = ("E", "S", "C", "I")


def test_chance_and_majority_rates():
    assert stats.chance_rate(4) == 0.25 and stats.chance_rate(2) == 0.5
    with pytest.raises(ValueError):
        stats.chance_rate(0)
    assert stats.majority_rate(ESCI_24) == ("Irrelevant", pytest.approx(10 / 24))
    assert stats.majority_rate(["b", "a", "a", "b"]) == ("b", 0.5)  # ties: the first seen
    assert stats.majority_rate(["S", "E", "S", "E"], ESCI_LABELS_SHORT) == ("E", 0.5)  # ties: the first listed
    with pytest.raises(ValueError, match="not among the labels"):
        stats.majority_rate(["X"], ESCI_LABELS_SHORT)
    assert stats.mean_chance_rate([4, 4, 2]) == pytest.approx((0.25 + 0.25 + 0.5) / 3)
    with pytest.raises(ValueError):
        stats.mean_chance_rate([])


def test_macro_f1_hand_cases():
    # a: TP 1, FP 1, FN 1 -> 0.5; b: TP 2, FP 1, FN 0 -> 0.8; c: TP 0, FN 1 -> 0
    gold, pred = ["a", "a", "b", "b", "c"], ["a", "b", "b", "b", "a"]
    assert stats.macro_f1(gold, pred) == pytest.approx(1.3 / 3)
    # answering "Irrelevant" to all 24 ESCI items: F1 = 20 / 34 on that label, 0 on three -> 0.147 (the figure)
    constant = stats.macro_f1(ESCI_24, ["Irrelevant"] * 24, ESCI_LABELS)
    assert constant == pytest.approx(20 / 34 / 4)
    assert round(constant, 3) == 0.147
    # None (nothing extracted) is a miss, never a label of its own
    assert stats.macro_f1(["a", "b"], [None, "b"]) == pytest.approx((0 + 1) / 2)  # a: FN 1; b: TP 1
    details = stats.per_label_f1(gold, pred)
    assert details["b"] == {"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2}
    with pytest.raises(ValueError, match="2 gold labels but 1"):
        stats.macro_f1(["a", "b"], ["a"])


def test_uniform_guess_macro_f1_is_the_macro_f1_of_the_expected_confusion_counts():
    # each label's items answered with every label equally often: the expected confusion counts exactly
    counts = {"E": 8, "S": 12, "C": 4, "I": 16}
    gold = [c for c, n in counts.items() for _ in range(n)]
    spread = [lab for c, n in counts.items() for lab in list(counts) * (n // 4)]
    assert stats.uniform_guess_macro_f1(gold) == pytest.approx(stats.macro_f1(gold, spread))
    # and the mean macro-F1 of many random guesses (a ratio, so only close to it) on ESCI-like proportions
    rng = np.random.default_rng(0)
    gold = ["I"] * 194 + ["S"] * 174 + ["E"] * 140 + ["C"] * 13
    guesses = [stats.macro_f1(gold, list(rng.choice(list("ESCI"), len(gold)))) for _ in range(300)]
    assert stats.uniform_guess_macro_f1(gold, list("ESCI")) == pytest.approx(np.mean(guesses), abs=0.003)
    # a label with no gold items still counts as one of the K guesses (F1 0)
    assert stats.uniform_guess_macro_f1(["a", "a"], ["a", "b"]) == pytest.approx((2 * 2 / (2 + 2 * 2) + 0) / 2)
    with pytest.raises(ValueError):
        stats.uniform_guess_macro_f1([])


def test_label_distribution_and_collapse():
    preds = ["x"] * 9 + ["y"]
    assert stats.label_distribution(preds) == {"x": 9, "y": 1}
    assert list(stats.label_distribution(["y", "x", "x"])) == ["y", "x"]  # first-seen order without labels
    # with labels: their order, zeros included; None (nothing extracted) counted under "none"
    assert stats.label_distribution(["E", None, "I", "I"], ESCI_LABELS_SHORT) == {"E": 1, "S": 0, "C": 0, "I": 2,
                                                                                  "none": 1}
    with pytest.raises(ValueError, match="not among the labels"):
        stats.label_distribution(["X"], ESCI_LABELS_SHORT)
    assert stats.collapsed_label(stats.label_distribution(preds)) == "x"  # 90 % on one label
    assert stats.collapsed_label({"A": 8, "B": 2}) is None
    assert stats.collapsed_label({"A": 8, "B": 2}, threshold=0.8) == "A"
    assert stats.collapsed_label(stats.label_distribution([None] * 9 + ["a"])) == stats.NO_LABEL
    assert stats.collapsed_label({"A": 0, "B": 0}) is None


def test_format_with_se_keeps_the_value_format_and_gives_the_error_its_precision():
    assert stats.format_with_se(-0.5, 0.25, ">+8.3f") == "  -0.500 +- 0.250"
    assert stats.format_with_se(1.23456, 0.01) == "1.235 +- 0.010"
    assert stats.format_with_se(3.0, 0.1, ">8.4f", sep=" +-") == "  3.0000 +-0.1000"
