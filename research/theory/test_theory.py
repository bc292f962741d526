"""Exact checks of the theory lab (``theory.py`` beside this file) against independent computations (enumeration, autograd, Taylor expansion)."""

import itertools
import math

import numpy as np
import pytest
import torch

import theory as T  # research/theory/theory.py: pytest puts this folder on sys.path

LAB_CASES = [
    {"vocab": 3, "depth": 3, "n_hard": 3, "seed": 1},
    {"vocab": 4, "depth": 3, "n_hard": 5, "seed": 2, "easy_strength": 0.5},
    {"vocab": 5, "depth": 2, "n_hard": 2, "seed": 3, "fit_noise": 0.3, "easy_strength": 0.3, "hard_strength": 0.6},
]
METHODS = ("sft", "talr", "talr_node")


def walk_probability(model: T.TreeModel, tokens: tuple[int, ...]) -> float:
    """q(z) by walking the tree token by token (independent of the vectorised reach computation)."""
    prob, index = 1.0, 0
    for level, token in enumerate(tokens):
        prob *= model.conditionals[level][index, token]
        index = index * model.vocab + token
    return prob


@pytest.mark.parametrize("vocab,depth,seed", [(3, 3, 0), (5, 2, 1), (2, 4, 2)])
def test_sequence_probs_match_token_by_token_walk(vocab, depth, seed):
    model = T.random_tree_model(vocab, depth, np.random.default_rng(seed))
    walked = [walk_probability(model, z) for z in itertools.product(range(vocab), repeat=depth)]
    np.testing.assert_allclose(T.sequence_probs(model), walked, rtol=0, atol=1e-15)
    assert T.sequence_probs(model).sum() == pytest.approx(1.0, abs=1e-13)
    np.testing.assert_allclose(T.code_length_bits(model), -np.log2(walked), rtol=1e-13)


@pytest.mark.parametrize("case", LAB_CASES)
def test_kl_by_enumeration_equals_chain_rule(case):
    lab = T.make_lab(**case)
    other = T.random_tree_model(lab.model.vocab, lab.model.depth, np.random.default_rng(7))
    # hard_strength 1 puts zeros in P2's conditionals, exercising the 0 log 0 = 0 convention on both sides.
    one_hot_domain = T.domain_distribution(lab.general, lab.model, list(lab.hard_nodes), 1.0, 0.1, 1.0)
    for p, q in [(lab.general, other), (lab.domain, lab.model), (other, lab.general), (one_hot_domain, other)]:
        assert T.kl_bits(p, q) == pytest.approx(T.kl_bits_by_nodes(p, q), abs=1e-12)
    assert T.kl_bits_by_nodes(lab.general, lab.general) == 0.0


@pytest.mark.parametrize("case", LAB_CASES)
@pytest.mark.parametrize("method", METHODS)
def test_delta_code_length_is_kl_difference(case, method):
    lab = T.make_lab(**case)
    direction = T.method_direction(lab, method)
    for step in (0.05, 1.0, 20.0):
        tuned = T.tilt(lab.model, direction, step)
        for data in (lab.general, lab.domain):
            by_code_length = T.delta_code_length_bits(data, lab.model, tuned)
            by_kl = T.kl_bits_by_nodes(data, tuned) - T.kl_bits_by_nodes(data, lab.model)
            assert by_code_length == pytest.approx(by_kl, abs=1e-12)


@pytest.mark.parametrize("case", LAB_CASES)
@pytest.mark.parametrize("method", METHODS)
def test_update_direction_is_autograd_gradient_of_weighted_log_likelihood(case, method):
    lab = T.make_lab(**case)
    weights = T.WEIGHTINGS[method](lab)
    logits = [torch.tensor(np.log(c), requires_grad=True) for c in lab.model.conditionals]
    domain_probs = T.sequence_probs(lab.domain)
    objective = torch.zeros((), dtype=torch.float64)
    vocab = lab.model.vocab
    for z_index, tokens in enumerate(itertools.product(range(vocab), repeat=lab.model.depth)):
        prefix, weighted_log_lik = 0, torch.zeros((), dtype=torch.float64)
        for level, token in enumerate(tokens):
            log_q = torch.log_softmax(logits[level][prefix], dim=0)[token]
            weighted_log_lik = weighted_log_lik + weights[level][prefix, token] * log_q
            prefix = prefix * vocab + token
        objective = objective + domain_probs[z_index] * weighted_log_lik
    objective.backward()
    for grad, direction in zip(logits, T.update_direction(lab.model, lab.domain, weights)):
        np.testing.assert_allclose(grad.grad.numpy(), direction, rtol=0, atol=1e-13)


@pytest.mark.parametrize("case", LAB_CASES)
@pytest.mark.parametrize("method", METHODS)
def test_step_expansion_leaves_a_fourth_order_remainder(case, method):
    lab = T.make_lab(**case)
    direction = T.method_direction(lab, method)
    unit = 1.0 / max(float(np.abs(g).max()) for g in direction)  # steps small against the largest logit change
    for data in (lab.general, lab.domain):
        a, b, c = T.step_expansion_bits(data, lab.model, direction)

        def remainder(step):
            exact = T.delta_code_length_bits(data, lab.model, T.tilt(lab.model, direction, step))
            return exact - (a * step + b * step**2 / 2 + c * step**3 / 6)

        small, double = remainder(0.02 * unit), remainder(0.04 * unit)
        assert abs(small) < 1e-3 * abs(a * 0.02 * unit + b * (0.02 * unit) ** 2 / 2)
        assert double / small == pytest.approx(16.0, rel=0.15)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("method", METHODS)
def test_general_damage_is_quadratic_and_growing_when_model_fits(seed, method):
    lab = T.make_lab(vocab=4, depth=3, n_hard=4, seed=seed, easy_strength=0.5)
    direction = T.method_direction(lab, method)
    a1, b1, _ = T.step_expansion_bits(lab.general, lab.model, direction)
    assert a1 == 0.0 and b1 > 0
    steps = np.geomspace(1e-3, 3.0, 25)
    damage = np.array([T.step_outcome(lab, direction, s)[0] for s in steps])
    assert np.all(damage > 0) and np.all(np.diff(damage) > 0)
    assert damage[0] / steps[0] ** 2 == pytest.approx(b1 / 2, rel=1e-2)


@pytest.mark.parametrize("case", LAB_CASES)
@pytest.mark.parametrize("method", ("sft", "talr_node"))
def test_domain_gain_is_positive_for_small_steps(case, method):
    lab = T.make_lab(**case)
    direction = T.method_direction(lab, method)
    assert T.step_outcome(lab, direction, 1e-2)[1] > 0
    if method == "sft":
        reach = T.node_reach(lab.domain)
        slope = sum(float(r**2 @ ((p - q) ** 2).sum(axis=1))
                    for r, p, q in zip(reach, lab.domain.conditionals, lab.model.conditionals))
        gain_slope = -T.step_expansion_bits(lab.domain, lab.model, direction)[0]
        assert gain_slope == pytest.approx(slope / math.log(2), rel=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_sft_damage_grows_with_hard_nodes_when_domain_differs_only_there(seed):
    """Each added hard node adds exactly its own (positive) term reach_P1(s) KL(q1_s || q2_s) to the damage."""
    labs = [T.make_lab(vocab=3, depth=3, n_hard=m, seed=seed, logit_scale=2.5) for m in range(7)]
    assert all(k == 2 for k, _ in labs[-1].hard_nodes)  # the deepest level is made hard first
    reach = T.node_reach(labs[0].general)
    for step in (0.3, 3.0, 30.0):
        damage = [T.step_outcome(lab, T.method_direction(lab, "sft"), step)[0] for lab in labs]
        assert abs(damage[0]) < 1e-14
        for previous, lab, increase in zip(labs, labs[1:], np.diff(damage)):
            (k, i), = set(lab.hard_nodes) - set(previous.hard_nodes)
            q1 = lab.model.conditionals[k][i]
            q2 = T.tilt(lab.model, T.method_direction(lab, "sft"), step).conditionals[k][i]
            own_term = reach[k][i] * float(np.sum(q1 * np.log2(q1 / q2)))
            assert own_term > 0
            assert increase == pytest.approx(own_term, rel=1e-6, abs=1e-14)


@pytest.mark.parametrize("case", LAB_CASES)
@pytest.mark.parametrize("method", METHODS)
def test_hoeffding_bound_holds_at_every_step(case, method):
    lab = T.make_lab(**case)
    direction = T.method_direction(lab, method)
    for step in np.geomspace(1e-3, 100.0, 30):
        tuned = T.tilt(lab.model, direction, step)
        for data in (lab.general, lab.domain):
            exact = T.delta_code_length_bits(data, lab.model, tuned)
            assert exact <= T.damage_bound_bits(data, lab.model, direction, step) + 1e-12


def test_talr_weights_follow_the_definition():
    lab = T.make_lab(vocab=4, depth=3, n_hard=4, seed=5, easy_strength=0.5)
    occ = np.concatenate([o.ravel() for o in T.token_occurrence(lab.domain)])
    losses = np.concatenate([-np.log(c).ravel() for c in lab.model.conditionals])
    assert occ.sum() == pytest.approx(1.0, abs=1e-13)
    # default tau: smallest loss at which the cumulative occurrence share reaches one half, found by scanning
    tau = next(x for x in sorted(losses) if occ[losses <= x].sum() >= 0.5 - 1e-15)
    unfloored = np.concatenate([w.ravel() for w in T.talr_weights(lab, w_min=0.0)])
    assert occ @ unfloored == pytest.approx(1.0, abs=1e-12)
    expected = np.exp(-losses / tau) / (occ @ np.exp(-losses / tau))
    np.testing.assert_allclose(unfloored, expected, rtol=1e-12)
    floored = np.concatenate([w.ravel() for w in T.talr_weights(lab, w_min=0.05)])
    np.testing.assert_allclose(floored, np.maximum(expected, 0.05), rtol=1e-12)
    explicit = np.concatenate([w.ravel() for w in T.talr_weights(lab, tau=2.0, w_min=0.0)])
    np.testing.assert_allclose(explicit, np.exp(-losses / 2.0) / (occ @ np.exp(-losses / 2.0)), rtol=1e-12)
    with pytest.raises(ValueError, match="tau"):
        T.talr_weights(lab, tau=0.0)


def test_talr_node_weights_are_the_domain_tokens_weight():
    lab = T.make_lab(vocab=4, depth=3, n_hard=4, seed=5, easy_strength=0.5)
    per_token, per_node = T.talr_weights(lab), T.talr_node_weights(lab)
    for k, i in lab.hard_nodes:
        token = lab.model.conditionals[k][i].argmin()
        assert lab.domain.conditionals[k][i].argmax() == token
        np.testing.assert_array_equal(per_node[k][i], per_token[k][i][token])


@pytest.mark.parametrize("easy_strength", (0.0, 0.5))
def test_local_optimal_weights_minimise_small_gain_damage(easy_strength):
    lab = T.make_lab(vocab=4, depth=3, n_hard=4, seed=6, easy_strength=easy_strength)
    best = T.matched_gain_expansion(lab, T.method_direction(lab, "local_optimal"))[1]
    for method in ("sft", "talr_node"):
        assert best <= T.matched_gain_expansion(lab, T.method_direction(lab, method))[1]
    optimal = T.local_optimal_node_weights(lab)
    rng = np.random.default_rng(0)
    for _ in range(10):
        factors = [np.repeat(np.exp(0.3 * rng.standard_normal((len(w), 1))), lab.model.vocab, axis=1) for w in optimal]
        jittered = T.update_direction(lab.model, lab.domain, [w * f for w, f in zip(optimal, factors)])
        assert best <= T.matched_gain_expansion(lab, jittered)[1] * (1 + 1e-12)


@pytest.mark.parametrize("case", LAB_CASES)
def test_matched_gain_expansion_matches_bisection(case):
    lab = T.make_lab(**case)
    direction = T.method_direction(lab, "sft")
    d1, d2 = T.matched_gain_expansion(lab, direction)
    peak = T.peak_gain_step(lab, direction, T.MAX_STEP)
    gain = 1e-3 * T.step_outcome(lab, direction, peak)[1]
    damage = T.step_outcome(lab, direction, T.step_for_gain(lab, direction, gain, peak))[0]
    assert damage == pytest.approx(d1 * gain + d2 * gain**2, rel=1e-2, abs=1e-12)


def test_documented_findings_on_the_figure_lab():
    """docs/theory.md: reweighting costs more general damage than SFT at the same domain gain in the figure lab,
    although in a domain that differs from P1 only at hard nodes it lowers the cost per gain at the same step."""
    lab = T.make_lab(**T.FIGURE_LAB)
    for _, damages in T.matched_gain_damages(lab, T.COMPARED, T.SCAN_FRACTIONS):
        assert damages["talr"] > damages["sft"] and damages["talr_node"] > damages["sft"]
    hard_only = T.make_lab(**{**T.FIGURE_LAB, "easy_strength": 0.0})
    (d_sft, g_sft), (d_node, g_node) = (T.step_outcome(hard_only, T.method_direction(hard_only, m), 1.0)
                                        for m in ("sft", "talr_node"))
    assert 0 < d_node / g_node < d_sft / g_sft


def test_construction_rejects_bad_input():
    lab = T.make_lab(vocab=3, depth=2, n_hard=1, seed=0)
    with pytest.raises(ValueError, match="not internal nodes"):
        T.domain_distribution(lab.general, lab.model, [(2, 0)], 0.8, 0.1)
    with pytest.raises(ValueError, match="below threshold"):
        T.domain_distribution(lab.general, lab.model, [(0, 0)], 0.8, 1e-9)
    with pytest.raises(ValueError, match="strength too small"):
        T.domain_distribution(lab.general, lab.model, list(lab.hard_nodes), 0.01, 0.1)
    with pytest.raises(ValueError, match="only"):
        T.make_lab(vocab=3, depth=2, n_hard=50)
    with pytest.raises(ValueError, match="unknown method"):
        T.method_direction(lab, "dft")
    with pytest.raises(ValueError, match="shape"):
        T.TreeModel((np.full((1, 3), 1 / 3), np.full((2, 3), 1 / 3)))
    with pytest.raises(ValueError, match="probability distribution"):
        T.TreeModel((np.array([[0.5, 0.6, -0.1]]),))
