"""Exact code-length theory of domain SFT on small, fully enumerable token trees.

A *tree model* over vocabulary ``V`` and depth ``n`` is one conditional distribution over ``V`` at every prefix of
length ``0..n-1`` (the internal nodes); the ``V**n`` leaves are the responses ``z``. Everything here is float64 and
exact: sequence probabilities by enumeration, KL by enumeration or by the chain rule over nodes, code length
``L_q(z) = -log2 q(z)`` in bits, and the code-length change ``Delta L(P) = E_P[L_q2] - E_P[L_q1]``.

Fine-tuning is one exponential-tilting step of every conditional along the expected (optionally TALR-weighted)
domain gradient. This reconstructs the analysis of Lin et al. 2025 ("SFT Doesn't Always Hurt General
Capabilities"); docs/theory.md states the reconstruction, its assumptions and what the figures show.

Node ``(k, i)`` is the prefix of length ``k`` whose tokens, read as base-``V`` digits, spell ``i``; its child by token
``v`` is ``(k + 1, i * V + v)``, so leaf indices enumerate sequences in lexicographic order.
"""

from __future__ import annotations

import argparse
import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LN2 = math.log(2.0)
Node = tuple[int, int]


@dataclass(frozen=True)
class TreeModel:
    """``conditionals[k]`` has shape ``(V**k, V)``: row ``i`` is the next-token distribution after prefix ``(k, i)``."""

    conditionals: tuple[np.ndarray, ...]

    def __post_init__(self) -> None:
        if not self.conditionals:
            raise ValueError("TreeModel needs at least one level (depth >= 1)")
        vocab = self.conditionals[0].shape[-1]
        for level, cond in enumerate(self.conditionals):
            if cond.shape != (vocab**level, vocab):
                expected = (vocab**level, vocab)
                raise ValueError(f"level {level}: conditionals have shape {cond.shape}, expected {expected}")
            if cond.dtype != np.float64:
                raise ValueError(f"level {level}: conditionals must be float64, got {cond.dtype}")
            if np.any(cond < 0) or not np.allclose(cond.sum(axis=1), 1.0, rtol=0.0, atol=1e-12):
                raise ValueError(f"level {level}: every row must be a probability distribution")

    @property
    def vocab(self) -> int:
        return self.conditionals[0].shape[-1]

    @property
    def depth(self) -> int:
        return len(self.conditionals)


def softmax_rows(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def random_tree_model(vocab: int, depth: int, rng: np.random.Generator, logit_scale: float = 2.0) -> TreeModel:
    """Conditionals ``softmax(logit_scale * N(0, 1))``, independently at every node."""
    return TreeModel(tuple(softmax_rows(logit_scale * rng.standard_normal((vocab**k, vocab))) for k in range(depth)))


def perturbed(model: TreeModel, rng: np.random.Generator, logit_noise: float) -> TreeModel:
    """``model`` with ``N(0, logit_noise**2)`` added to every log-probability: a model that fits ``model`` closely."""
    return TreeModel(
        tuple(softmax_rows(np.log(c) + logit_noise * rng.standard_normal(c.shape)) for c in model.conditionals)
    )


def node_reach(model: TreeModel) -> list[np.ndarray]:
    """``reach[k][i]`` = probability that a response starts with prefix ``(k, i)``; ``reach[depth]`` = ``q(z)``."""
    reach = [np.ones(1)]
    for cond in model.conditionals:
        reach.append((reach[-1][:, None] * cond).reshape(-1))
    return reach


def sequence_probs(model: TreeModel) -> np.ndarray:
    return node_reach(model)[-1]


def code_length_bits(model: TreeModel) -> np.ndarray:
    """``L_q(z) = -log2 q(z)`` for every response ``z`` (inf where ``q(z) = 0``)."""
    with np.errstate(divide="ignore"):
        return -np.log2(sequence_probs(model))


def expected_code_length_bits(data: TreeModel, model: TreeModel) -> float:
    """``E_{z~data}[L_model(z)]`` by enumerating all responses."""
    p = sequence_probs(data)
    support = p > 0
    return float(np.sum(p[support] * code_length_bits(model)[support]))


def kl_bits(p_model: TreeModel, q_model: TreeModel) -> float:
    """``KL(P || q)`` in bits, by enumerating all ``V**n`` responses."""
    p, q = sequence_probs(p_model), sequence_probs(q_model)
    support = p > 0
    with np.errstate(divide="ignore"):
        return float(np.sum(p[support] * (np.log2(p[support]) - np.log2(q[support]))))


def kl_bits_by_nodes(p_model: TreeModel, q_model: TreeModel) -> float:
    """``KL(P || q)`` in bits by the chain rule: ``sum_s reach_P(s) KL(P(.|s) || q(.|s))`` over internal nodes."""
    total = 0.0
    for reach, p, q in zip(node_reach(p_model), p_model.conditionals, q_model.conditionals):
        support = p > 0
        with np.errstate(divide="ignore"):
            per_token = np.where(support, p * (np.log2(np.where(support, p, 1.0)) - np.log2(q)), 0.0)
        total += float(reach @ per_token.sum(axis=1))
    return total


def delta_code_length_bits(data: TreeModel, before: TreeModel, after: TreeModel) -> float:
    """``Delta L(P) = E_P[L_after] - E_P[L_before]`` (bits): positive means ``after`` codes ``P`` worse."""
    return expected_code_length_bits(data, after) - expected_code_length_bits(data, before)


# --- the general / domain construction -------------------------------------------------------------------------


def all_nodes(depth: int, vocab: int) -> list[Node]:
    return [(k, i) for k in range(depth) for i in range(vocab**k)]


def domain_distribution(
    general: TreeModel,
    model: TreeModel,
    hard_nodes: list[Node],
    hard_strength: float,
    threshold: float,
    easy_strength: float = 0.0,
) -> TreeModel:
    """``P2(.|s) = (1 - a) P1(.|s) + a onehot(d(s))``, ``a = hard_strength`` at hard nodes, else ``easy_strength``.

    The domain token ``d(s)`` is the one ``model`` finds most likely, except at ``hard_nodes`` where it is the one
    ``model`` finds least likely; a hard node's domain token must have model probability below ``threshold`` and an
    easy node's at least ``threshold``, and wherever the mixing weight is positive ``d(s)`` must end up P2's most
    likely token (the domain's preferred token). ``easy_strength = 0`` makes P2 equal P1 away from the hard nodes.
    """
    for name, value in (("hard_strength", hard_strength), ("easy_strength", easy_strength)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}")
    hard = set(hard_nodes)
    unknown = hard - set(all_nodes(model.depth, model.vocab))
    if unknown:
        raise ValueError(f"hard nodes {sorted(unknown)} are not internal nodes of a depth-{model.depth} tree")
    levels = []
    for k, (p1, q1) in enumerate(zip(general.conditionals, model.conditionals)):
        tokens = q1.argmax(axis=1)
        for level, i in hard:
            if level == k:
                tokens[i] = q1[i].argmin()
        token_prob = q1[np.arange(len(q1)), tokens]
        is_hard = np.array([(k, i) in hard for i in range(len(q1))], dtype=bool)
        if np.any(token_prob[is_hard] >= threshold):
            bad = [(k, int(i)) for i in np.flatnonzero(is_hard & (token_prob >= threshold))]
            raise ValueError(f"nodes {bad}: no token has model probability below threshold {threshold}")
        if np.any(token_prob[~is_hard] < threshold):
            bad = [(k, int(i)) for i in np.flatnonzero(~is_hard & (token_prob < threshold))]
            raise ValueError(f"nodes {bad}: the most likely token has model probability below threshold {threshold}")
        mix = np.where(is_hard, hard_strength, easy_strength)[:, None]
        p2 = (1.0 - mix) * p1 + mix * np.eye(model.vocab)[tokens]
        others = np.where(np.eye(model.vocab, dtype=bool)[tokens], -np.inf, p2).max(axis=1)
        not_preferred = (mix[:, 0] > 0) & (p2[np.arange(len(p2)), tokens] <= others)
        if np.any(not_preferred):
            bad = [(k, int(i)) for i in np.flatnonzero(not_preferred)]
            raise ValueError(f"nodes {bad}: mixing strength too small for the domain token to be P2's most likely")
        levels.append(p2)
    return TreeModel(tuple(levels))


def hard_node_order(
    model: TreeModel, general: TreeModel, hard_strength: float, threshold: float, easy_strength: float = 0.0
) -> list[Node]:
    """Nodes that can be made hard, in the order they are made hard: deepest level first, then most domain traffic.

    Deepest-first keeps the sets nested and makes each added hard node change one conditional without moving the
    domain's traffic to nodes made hard before it; within a level the order is by the reach of the all-easy domain.
    """
    easy_domain = domain_distribution(general, model, [], hard_strength, threshold, easy_strength)
    reach = node_reach(easy_domain)
    order = []
    for k in reversed(range(model.depth)):
        eligible = np.flatnonzero(model.conditionals[k].min(axis=1) < threshold)
        order += [(k, int(i)) for i in eligible[np.argsort(-reach[k][eligible], kind="stable")]]
    return order


@dataclass(frozen=True)
class Lab:
    """General distribution ``general`` (P1), model before fine-tuning ``model`` (q1), domain ``domain`` (P2)."""

    general: TreeModel
    model: TreeModel
    domain: TreeModel
    hard_nodes: tuple[Node, ...]


def make_lab(
    vocab: int = 4,
    depth: int = 4,
    n_hard: int = 4,
    seed: int = 0,
    logit_scale: float = 2.0,
    fit_noise: float = 0.0,
    hard_strength: float = 0.8,
    threshold: float = 0.1,
    easy_strength: float = 0.0,
) -> Lab:
    """A random lab: P1 with ``softmax(logit_scale * N(0, 1))`` conditionals; q1 = P1, or P1 with ``fit_noise``
    logit noise; P2 from ``domain_distribution`` with the first ``n_hard`` nodes of ``hard_node_order`` made hard."""
    rng = np.random.default_rng(seed)
    general = random_tree_model(vocab, depth, rng, logit_scale)
    model = perturbed(general, rng, fit_noise) if fit_noise > 0 else general
    order = hard_node_order(model, general, hard_strength, threshold, easy_strength)
    if n_hard > len(order):
        raise ValueError(f"n_hard={n_hard} but only {len(order)} nodes have a token below threshold {threshold}")
    hard = tuple(order[:n_hard])
    domain = domain_distribution(general, model, list(hard), hard_strength, threshold, easy_strength)
    return Lab(general, model, domain, hard)


# --- the fine-tuning step ----------------------------------------------------------------------------------------


def token_occurrence(domain: TreeModel) -> list[np.ndarray]:
    """``occ[k][i, v]``: share of supervised token occurrences that are token ``v`` after prefix ``(k, i)``."""
    reach = node_reach(domain)
    return [reach[k][:, None] * cond / domain.depth for k, cond in enumerate(domain.conditionals)]


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """Smallest value whose cumulative weight reaches half the total (the lower weighted median)."""
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, 0.5 * cumulative[-1])])


def mean_one(weights: list[np.ndarray], occ: list[np.ndarray]) -> list[np.ndarray]:
    mean = sum(float(np.sum(o * w)) for o, w in zip(occ, weights))
    return [w / mean for w in weights]


def sft_weights(lab: Lab) -> list[np.ndarray]:
    return [np.ones_like(c) for c in lab.model.conditionals]


def talr_weights(lab: Lab, tau: float | None = None, w_min: float = 0.01) -> list[np.ndarray]:
    """TALR weight of every (node, token) in the infinite-batch limit, in units where the mean weight is 1.

    ``w = max(w_min, exp(-l / tau) / E_occ[exp(-l / tau)])`` with ``l = -ln q1(v|s)`` (nats) and ``occ`` the
    domain's token-occurrence distribution; ``tau`` defaults to the occurrence-weighted median loss.
    """
    occ = token_occurrence(lab.domain)
    losses = [-np.log(c) for c in lab.model.conditionals]
    flat_losses, flat_occ = np.concatenate([x.ravel() for x in losses]), np.concatenate([x.ravel() for x in occ])
    seen = flat_occ > 0
    if tau is None:
        tau = weighted_median(flat_losses[seen], flat_occ[seen])
    if tau <= 0:
        raise ValueError(f"tau must be positive, got {tau}")
    lowest = flat_losses[seen].min()
    return [np.maximum(w, w_min) for w in mean_one([np.exp(-(x - lowest) / tau) for x in losses], occ)]


def talr_node_weights(lab: Lab, tau: float | None = None, w_min: float = 0.01) -> list[np.ndarray]:
    """Every token at node ``s`` gets the TALR weight of the node's domain token ``argmax_v P2(v|s)``."""
    return [
        np.repeat(w[np.arange(len(w)), p2.argmax(axis=1)][:, None], lab.model.vocab, axis=1)
        for w, p2 in zip(talr_weights(lab, tau, w_min), lab.domain.conditionals)
    ]


def local_optimal_node_weights(lab: Lab) -> list[np.ndarray]:
    """Node weights that minimise general damage at a given small domain gain when ``q1 = P1`` (needs P1).

    With node weight ``w_s`` the gain is ``step * sum_s w_s c_s`` and the damage ``step**2 / 2 * sum_s w_s**2 e_s``
    to leading order, where ``u_s`` is the SFT direction, ``c_s = reach_P2(s) (P2_s - q1_s).u_s`` and
    ``e_s = reach_P1(s) Var_q1(u_s)``; the minimiser is ``w_s ∝ c_s / e_s`` (0 where the domain gives no gradient).
    """
    sft = update_direction(lab.model, lab.domain, sft_weights(lab))
    weights = []
    for r1, r2, q1, p2, u in zip(
        node_reach(lab.general), node_reach(lab.domain), lab.model.conditionals, lab.domain.conditionals, sft
    ):
        gain = r2 * np.sum((p2 - q1) * u, axis=1)
        damage = r1 * (np.sum(q1 * u**2, axis=1) - np.sum(q1 * u, axis=1) ** 2)
        ratio = np.divide(gain, damage, out=np.zeros_like(gain), where=damage > 1e-300)
        weights.append(np.repeat(ratio[:, None], lab.model.vocab, axis=1))
    return mean_one(weights, token_occurrence(lab.domain))


WEIGHTINGS = {
    "sft": sft_weights,
    "talr": talr_weights,
    "talr_node": talr_node_weights,
    "local_optimal": local_optimal_node_weights,
}


def update_direction(model: TreeModel, domain: TreeModel, weights: list[np.ndarray]) -> list[np.ndarray]:
    """Gradient of ``E_{z~P2}[sum_t w(s_t, z_t) ln q(z_t | s_t)]`` w.r.t. the logits of every node (weights frozen).

    At node ``s``: ``reach_P2(s) * sum_v P2(v|s) w(s, v) (onehot(v) - q1(.|s))``; with ``w = 1`` this is
    ``reach_P2(s) * (P2(.|s) - q1(.|s))``.
    """
    reach = node_reach(domain)
    direction = []
    for k, (q1, p2, w) in enumerate(zip(model.conditionals, domain.conditionals, weights)):
        weighted = p2 * w
        direction.append(reach[k][:, None] * (weighted - q1 * weighted.sum(axis=1, keepdims=True)))
    return direction


def method_direction(lab: Lab, method: str, **weight_options) -> list[np.ndarray]:
    """Update direction of ``method`` (a key of ``WEIGHTINGS``); options go to its weighting function."""
    if method not in WEIGHTINGS:
        raise ValueError(f"unknown method {method!r}; choose from {sorted(WEIGHTINGS)}")
    return update_direction(lab.model, lab.domain, WEIGHTINGS[method](lab, **weight_options))


def tilt(model: TreeModel, direction: list[np.ndarray], step: float) -> TreeModel:
    """``log q2(.|s) = log q1(.|s) + step * direction(s)``, renormalised (one gradient step on the logits)."""
    if any(np.any(c <= 0) for c in model.conditionals):
        raise ValueError("tilt needs a model with full support (every conditional probability > 0)")
    return TreeModel(tuple(softmax_rows(np.log(c) + step * g) for c, g in zip(model.conditionals, direction)))


def step_outcome(lab: Lab, direction: list[np.ndarray], step: float) -> tuple[float, float]:
    """``(general damage Delta L(P1), domain gain -Delta L(P2))`` in bits after one step of size ``step``."""
    tuned = tilt(lab.model, direction, step)
    return (
        delta_code_length_bits(lab.general, lab.model, tuned),
        -delta_code_length_bits(lab.domain, lab.model, tuned),
    )


# --- exact analysis ----------------------------------------------------------------------------------------------


def step_expansion_bits(data: TreeModel, model: TreeModel, direction: list[np.ndarray]) -> tuple[float, float, float]:
    """``(a, b, c)`` with ``Delta L(P)(step) = a step + b step**2 / 2 + c step**3 / 6 + O(step**4)`` (bits).

    Per node, ``f(step) = KL(P_s || q_step)`` has ``f' = (q - P_s).g``, ``f'' = Var_q(g)`` and
    ``f''' = E_q[(g - E_q g)^3]`` (``q = q_step``); reach_P-weighted sums over nodes at step 0 give a, b, c.
    """
    a = b = c = 0.0
    for reach, p, q, g in zip(node_reach(data), data.conditionals, model.conditionals, direction):
        centred = g - np.sum(q * g, axis=1, keepdims=True)
        a += float(reach @ np.sum((q - p) * g, axis=1))
        b += float(reach @ np.sum(q * centred**2, axis=1))
        c += float(reach @ np.sum(q * centred**3, axis=1))
    return a / LN2, b / LN2, c / LN2


def matched_gain_expansion(lab: Lab, direction: list[np.ndarray]) -> tuple[float, float]:
    """``(d1, d2)`` with ``damage = d1 G + d2 G**2 + O(G**3)`` at domain gain ``G`` (bits), for small steps.

    Inverts ``G = A step + B step**2`` (``A = -a2``, ``B = -b2 / 2``) into ``damage = a1 step + b1 step**2 / 2``.
    ``d1 = 0`` when ``q1 = P1``; then ``d2`` alone ranks methods at small matched gain.
    """
    a1, b1, _ = step_expansion_bits(lab.general, lab.model, direction)
    a2, b2, _ = step_expansion_bits(lab.domain, lab.model, direction)
    first, second = -a2, -b2 / 2.0
    if first <= 0:
        raise ValueError("this direction does not improve the domain to first order (gain slope <= 0)")
    return a1 / first, b1 / (2.0 * first**2) - a1 * second / first**3


def damage_bound_bits(data: TreeModel, model: TreeModel, direction: list[np.ndarray], step: float) -> float:
    """Upper bound on ``Delta L(P)`` valid for every step size (Hoeffding's lemma at every node), in bits.

    ``Delta L(P) <= sum_s reach_P(s) [step (q1 - P).g + step**2 (max g - min g)**2 / 8]``; the first term vanishes
    when ``q1 = P``, and ``max g - min g`` at a node is largest where the domain token is one q1 finds unlikely.
    """
    total = 0.0
    for reach, p, q, g in zip(node_reach(data), data.conditionals, model.conditionals, direction):
        spread = g.max(axis=1) - g.min(axis=1)
        total += float(reach @ (step * np.sum((q - p) * g, axis=1) + step**2 * spread**2 / 8.0))
    return total / LN2


# Largest step searched for the peak gain; a method whose gain still rises there is compared up to its gain there.
MAX_STEP = 300.0


def peak_gain_step(lab: Lab, direction: list[np.ndarray], max_step: float, grid: int = 120) -> float:
    """Step on a log grid up to ``max_step`` where the domain gain peaks: beyond it the one step overshoots P2."""
    steps = np.geomspace(max_step * 1e-4, max_step, grid)
    gains = [step_outcome(lab, direction, s)[1] for s in steps]
    return float(steps[int(np.argmax(gains))])


def step_for_gain(lab: Lab, direction: list[np.ndarray], target_gain: float, peak_step: float) -> float:
    """Smallest step in ``(0, peak_step]`` whose domain gain reaches ``target_gain``, to float precision.

    The first crossing is bracketed on a log grid (resolution 1.07x in step) and then bisected.
    """
    if not 0 < target_gain <= step_outcome(lab, direction, peak_step)[1]:
        raise ValueError(f"gain {target_gain} bits is not between 0 and the gain at step {peak_step}")
    grid = np.geomspace(peak_step * 1e-6, peak_step, 200)
    first = next(i for i, s in enumerate(grid) if step_outcome(lab, direction, s)[1] >= target_gain)
    low, high = (0.0 if first == 0 else float(grid[first - 1])), float(grid[first])
    for _ in range(60):
        mid = 0.5 * (low + high)
        if step_outcome(lab, direction, mid)[1] < target_gain:
            low = mid
        else:
            high = mid
    return 0.5 * (low + high)


def matched_gain_damages(lab: Lab, methods: tuple[str, ...], fractions: tuple[float, ...]) -> list[tuple[float, dict]]:
    """``[(gain, {method: damage})]`` at ``fraction * (smallest peak gain of methods)``; ``[]`` if that is <= 0."""
    directions = {m: method_direction(lab, m) for m in methods}
    peaks = {m: peak_gain_step(lab, d, MAX_STEP) for m, d in directions.items()}
    top = min(step_outcome(lab, directions[m], peaks[m])[1] for m in methods)
    if top <= 0:
        return []
    rows = []
    for fraction in fractions:
        gain = fraction * top
        steps = {m: step_for_gain(lab, d, gain, peaks[m]) for m, d in directions.items()}
        rows.append((gain, {m: step_outcome(lab, d, steps[m])[0] for m, d in directions.items()}))
    return rows



# --- figures and the numbers quoted in docs/theory.md ------------------------------------------------------------

FIGURE_LAB = {
    "vocab": 4, "depth": 4, "seed": 0, "n_hard": 8, "easy_strength": 0.5, "hard_strength": 0.8, "threshold": 0.1
}
METHOD_STYLE = {
    "sft": ("SFT (w = 1)", "tab:blue", "-"),
    "talr": ("TALR, per-token weights", "tab:orange", "-"),
    "talr_node": ("TALR, weight of the node's domain token", "tab:green", "--"),
    "local_optimal": ("locally optimal node weights (uses P1)", "tab:gray", ":"),
}
COMPARED = ("sft", "talr", "talr_node")
STEPS = np.geomspace(1e-2, 1e2, 161)


def _plot(ax, x, y, method: str, **extra) -> None:
    label, color, style = METHOD_STYLE[method]
    ax.plot(x, y, color=color, linestyle=style, label=label, **extra)


def _figure_step_size(lab: Lab, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11.5, 4.6), constrained_layout=True)
    for method in COMPARED:
        direction = method_direction(lab, method)
        damage, gain = np.array([step_outcome(lab, direction, s) for s in STEPS]).T
        _plot(left, STEPS, damage, method)
        _plot(right, STEPS, gain, method)
    sft_gain_peak = max(step_outcome(lab, method_direction(lab, "sft"), s)[1] for s in STEPS)
    _, b1, _ = step_expansion_bits(lab.general, lab.model, method_direction(lab, "sft"))
    left.plot(STEPS, b1 / 2 * STEPS**2, color="black", linestyle=":", linewidth=1,
              label="SFT quadratic term (b1/2) λ²")
    left.set(xscale="log", yscale="log", ylim=(1e-7, None), xlabel="step size λ",
             ylabel="general damage ΔL(P1)  [bits]", title="General damage grows ~λ² (q1 = P1)")
    right.axhline(0.0, color="black", linewidth=0.6)
    right.set(xscale="log", ylim=(-2.0, 1.3 * sft_gain_peak), xlabel="step size λ",
              ylabel="domain gain −ΔL(P2)  [bits]  (clipped below −2)",
              title="Domain gain rises ~λ, then one step overshoots")
    for ax in (left, right):
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(f"One tilting step on a V={lab.model.vocab}, n={lab.model.depth} token tree "
                 f"({len(lab.hard_nodes)} hard nodes)", fontsize=11)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _figure_hard_nodes(path: Path) -> Path:
    import matplotlib.pyplot as plt

    counts = np.arange(0, 25)
    steps = (1.0, 10.0)
    domains = (
        (0.0, "P2 = P1 except at hard nodes"),
        (FIGURE_LAB["easy_strength"], "mixed domain (easy nodes sharpened too)"),
    )
    fig, axes = plt.subplots(2, 2, figsize=(11.5, 8.0), constrained_layout=True)
    for row, (easy_strength, domain_name) in enumerate(domains):
        labs = [make_lab(**{**FIGURE_LAB, "n_hard": int(m), "easy_strength": easy_strength}) for m in counts]
        for col, step in enumerate(steps):
            ax = axes[row, col]
            for method in COMPARED:
                damage = np.array([step_outcome(lab, method_direction(lab, method), step)[0] for lab in labs])
                # below 1e-12 bits is zero up to rounding (no domain gradient yet); keep it off the log axis
                _plot(ax, counts, np.where(damage > 1e-12, damage, np.nan), method, marker="o", markersize=3)
            ax.set(yscale="log", xlabel="number of hard nodes m", ylabel="general damage ΔL(P1)  [bits]",
                   title=f"{domain_name}, λ = {step:g}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8, loc="best")
    fig.suptitle("General damage at a fixed step vs the number of hard nodes (points with zero damage are left out "
                 "of the log axis)", fontsize=11)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _figure_cost_per_gain(lab: Lab, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11.5, 4.6), constrained_layout=True)
    for method in (*COMPARED, "local_optimal"):
        direction = method_direction(lab, method)
        outcomes = np.array([step_outcome(lab, direction, s) for s in STEPS])
        rising = STEPS <= peak_gain_step(lab, direction, MAX_STEP)
        damage, gain = outcomes[rising].T
        positive = gain > 0
        _plot(left, STEPS[rising][positive], damage[positive] / gain[positive], method)
        _plot(right, gain, damage, method)
    left.set(xscale="log", yscale="log", xlabel="step size λ (up to each method's peak gain)",
             ylabel="ΔL(P1) / −ΔL(P2)", title="Cost per unit gain at the same step")
    right.set(xscale="log", yscale="log", xlabel="domain gain −ΔL(P2)  [bits]",
              ylabel="general damage ΔL(P1)  [bits]", title="Damage at matched domain gain (lower is better)")
    for ax in (left, right):
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle("Trade-off of one step: SFT vs token-adaptive reweighting", fontsize=11)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


SCAN_SETTINGS = tuple((easy, hard_strength) for easy in (0.0, 0.5) for hard_strength in (0.5, 0.8))
SCAN_FRACTIONS = (0.1, 0.5, 0.9)


@functools.lru_cache(maxsize=4)
def matched_gain_scan(seeds: int) -> dict[tuple[float, float, str], dict]:
    """TALR variant vs SFT over random trees (``FIGURE_LAB``, seeds ``0..seeds-1``) for each ``SCAN_SETTINGS`` domain.

    Per (easy_strength, hard_strength, variant): damage ratios variant / SFT at matched gains (``SCAN_FRACTIONS`` of the
    smaller peak gain), cost-per-gain ratios variant / SFT at step 1, and how many trees give the variant no gain.
    """
    from tqdm import tqdm

    scan = {}
    for easy_strength, hard_strength in tqdm(SCAN_SETTINGS, desc="matched-gain scan", leave=False):
        settings = {**FIGURE_LAB, "easy_strength": easy_strength, "hard_strength": hard_strength}
        labs = [make_lab(**{**settings, "seed": seed}) for seed in range(seeds)]
        for variant in ("talr", "talr_node"):
            result = {"matched": {f: [] for f in SCAN_FRACTIONS}, "same_step": [], "no_gain": 0}
            for lab in labs:
                rows = matched_gain_damages(lab, ("sft", variant), SCAN_FRACTIONS)
                result["no_gain"] += not rows
                for (_, damages), fraction in zip(rows, SCAN_FRACTIONS):
                    result["matched"][fraction].append(damages[variant] / damages["sft"])
                (d_sft, g_sft), (d_var, g_var) = (
                    step_outcome(lab, method_direction(lab, m), 1.0) for m in ("sft", variant)
                )
                if g_var > 0:
                    result["same_step"].append((d_var / g_var) / (d_sft / g_sft))
            scan[(easy_strength, hard_strength, variant)] = result
    return scan


def _figure_scan(seeds: int, path: Path) -> Path:
    import matplotlib.pyplot as plt

    scan = matched_gain_scan(seeds)
    fig, ax = plt.subplots(figsize=(11.5, 4.8), constrained_layout=True)
    ticks = []
    for position, ((easy_strength, hard_strength, variant), result) in enumerate(scan.items()):
        label, color, _ = METHOD_STYLE[variant]
        for offset, fraction, marker in zip((-0.2, 0.0, 0.2), SCAN_FRACTIONS, ("o", "s", "^")):
            ratios = result["matched"][fraction]
            ax.scatter(np.full(len(ratios), position + offset), ratios, color=color, marker=marker, s=14, alpha=0.7,
                       label=f"{label}, gain = {fraction:.0%} of peak" if position < 2 else None)
        ticks.append(f"easy {easy_strength}, hard {hard_strength}\n{'per-token' if variant == 'talr' else 'node'}"
                     + (f"\n({result['no_gain']} trees: no gain)" if result["no_gain"] else ""))
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(ticks)), ticks, fontsize=8)
    ax.set(yscale="log", ylim=(0.5, 1e9), ylabel="damage ratio TALR / SFT at matched gain",
           xlabel="domain: easy_strength, hard_strength; TALR variant",
           title=f"{seeds} random trees per setting: below 1 = reweighting costs less general damage for the same "
                 "domain gain")
    ax.grid(alpha=0.3, which="both", axis="y")
    ax.legend(fontsize=8, ncol=2, loc="upper left")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def render_figures(out_dir: str | Path, scan_seeds: int = 20) -> list[Path]:
    """Write the four ``theory_*.png`` figures of docs/theory.md into ``out_dir`` and return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lab = make_lab(**FIGURE_LAB)
    return [
        _figure_step_size(lab, out / "theory_step_size.png"),
        _figure_hard_nodes(out / "theory_hard_nodes.png"),
        _figure_cost_per_gain(lab, out / "theory_cost_per_gain.png"),
        _figure_scan(scan_seeds, out / "theory_matched_gain_scan.png"),
    ]


def report_lines(scan_seeds: int = 20) -> list[str]:
    """The numbers docs/theory.md quotes: the figure lab in detail, then the scan over random trees."""
    lab = make_lab(**FIGURE_LAB)
    lines = [f"figure lab {FIGURE_LAB}: {len(all_nodes(lab.model.depth, lab.model.vocab))} internal nodes, "
             f"{lab.model.vocab ** lab.model.depth} responses"]
    talr = talr_weights(lab)
    optimal = local_optimal_node_weights(lab)
    for k, i in lab.hard_nodes:
        token = int(lab.domain.conditionals[k][i].argmax())
        lines.append(f"  hard node {(k, i)}: q1(domain token) = {lab.model.conditionals[k][i][token]:.4f}, "
                     f"TALR weight {talr[k][i][token]:.3f}, locally optimal node weight {optimal[k][i][0]:.3f}")
    lines.append("  method          a1(bits)  b1(bits)  gain slope -a2  d2 (damage ~ d2 G^2)")
    for method in (*COMPARED, "local_optimal"):
        direction = method_direction(lab, method)
        a1, b1, _ = step_expansion_bits(lab.general, lab.model, direction)
        a2, _, _ = step_expansion_bits(lab.domain, lab.model, direction)
        d2 = matched_gain_expansion(lab, direction)[1]
        lines.append(f"  {method:14s} {a1:9.2e} {b1:9.4f} {-a2:14.4f} {d2:10.4f}")
    lines.append("  step   " + "  ".join(f"{m + ' dmg / gain = ratio':>30s}" for m in COMPARED))
    for step in (0.1, 1.0, 3.0, 10.0, 30.0):
        cells = []
        for method in COMPARED:
            damage, gain = step_outcome(lab, method_direction(lab, method), step)
            ratio = f"= {damage / gain:.4f}" if gain > 0 else "(no gain)"
            cells.append(f"{damage:.4f} / {gain:.4f} {ratio}")
        lines.append(f"  {step:5g}  " + "  ".join(f"{c:>30s}" for c in cells))
    lines.append("  matched gain   " + "  ".join(f"{m:>10s}" for m in COMPARED))
    for gain, damages in matched_gain_damages(lab, COMPARED, SCAN_FRACTIONS):
        lines.append(f"  {gain:12.4f}   " + "  ".join(f"{damages[m]:10.5f}" for m in COMPARED))

    lines.append("hard-node sweep (figure lab, m hard nodes): general damage at a fixed step; bound = Hoeffding, SFT")
    for easy_strength in (0.0, FIGURE_LAB["easy_strength"]):
        settings = {**FIGURE_LAB, "easy_strength": easy_strength}
        labs = {m: make_lab(**{**settings, "n_hard": m}) for m in (0, 1, 4, 8, 16, 24)}
        for step in (1.0, 10.0):
            cells = {method: [step_outcome(case, method_direction(case, method), step)[0] for case in labs.values()]
                     for method in COMPARED}
            cells["bound"] = [damage_bound_bits(case.general, case.model, method_direction(case, "sft"), step)
                              for case in labs.values()]
            lines.append(f"  easy_strength {easy_strength}, step {step:g}, m = {list(labs)}")
            lines += [f"    {name:9s} " + " ".join(f"{v:9.5f}" for v in values) for name, values in cells.items()]
    for easy_strength in (0.5, 0.8):
        changes = []
        for seed in range(10):
            settings = {**FIGURE_LAB, "seed": seed, "easy_strength": easy_strength}
            pair = [make_lab(**{**settings, "n_hard": m}) for m in (0, 1)]
            changes.append([step_outcome(case, method_direction(case, "sft"), 1.0)[0] for case in pair])
        drops = [(seed, before, after) for seed, (before, after) in enumerate(changes) if after < before]
        listed = ", ".join(f"seed {seed} {before:.5f} -> {after:.5f}" for seed, before, after in drops)
        lines.append(f"mixed domain, easy_strength {easy_strength}, SFT step 1: making the first node hard lowers the "
                     f"damage in {len(drops)}/10 seeds: {listed}")
    first_order = []
    for seed in range(10):
        noisy = make_lab(**{**FIGURE_LAB, "seed": seed, "fit_noise": 0.3})
        first_order.append(step_expansion_bits(noisy.general, noisy.model, method_direction(noisy, "sft"))[0])
    lines.append(f"q1 != P1 (fit_noise 0.3, seeds 0..9): SFT first-order damage a1 in [{min(first_order):.4f}, "
                 f"{max(first_order):.4f}] bits per unit step, negative in {sum(a < 0 for a in first_order)}/10")
    lines.append(f"scan over seeds 0..{scan_seeds - 1} (V=4, n=4, 8 hard nodes): wins = trees where the TALR variant "
                 "is below SFT; median ratio variant / SFT")
    for (easy_strength, hard_strength, variant), result in matched_gain_scan(scan_seeds).items():
        matched = "  ".join(
            f"G={f:.0%}: {sum(r < 1 for r in ratios)}/{len(ratios)} wins, median {np.median(ratios):.2f}"
            for f, ratios in result["matched"].items() if ratios
        )
        same = result["same_step"]
        same_text = (f"same step 1: {sum(r < 1 for r in same)}/{len(same)} wins, median {np.median(same):.2f}"
                     if same else "same step 1: no positive gain")
        no_gain = f" | {result['no_gain']} trees without positive gain" if result["no_gain"] else ""
        lines.append(f"  easy {easy_strength}, hard {hard_strength}, {variant:9s} | matched damage: "
                     f"{matched or 'no positive gain'} | cost/gain at {same_text}{no_gain}")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python research/theory/theory.py", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/figures", help="folder for the PNGs (default docs/figures)")
    parser.add_argument("--scan-seeds", type=int, default=20, help="random trees per setting in the scan")
    args = parser.parse_args(argv)
    for path in render_figures(args.out, args.scan_seeds):
        print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")
    print("\n".join(report_lines(args.scan_seeds)))


if __name__ == "__main__":
    main()
