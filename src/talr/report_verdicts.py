"""The verdicts of ``talr report``: the paper's two guidelines as tests (difference ± error, minimum detectable
difference at the N used, p and Holm-adjusted p over each axis's family), TALR vs SFT at matched domain gain (across
learning rates, and along each run's training-time probes), and which domain accuracies are no gain at all (at or
below the majority baseline, or collapsed onto one label)."""

from __future__ import annotations

from dataclasses import dataclass

from talr import stats
from talr.report_baselines import baseline
from talr.report_data import Point, Sweep, compare, drift, grouped_points, side_kind, task_difference

ALPHA, POWER = 0.05, 0.8
KIND_LABEL = {  # axis kind -> (domain axis label, general axis label)
    "score": ("domain score (%)", "general average (%)"),
    "bits": ("domain gain −ΔL(P2) (bits per token or byte)", "general change −ΔL(P1) (bits per token or byte; < 0 = "
             "damage)"),
    "bits_score": ("domain gain −ΔL(P2) (bits per token or byte)", "general average (%)"),
}
AXIS_NAME = {"score": "accuracy", "bits": "code length", "bits_score": "domain code length, general accuracy"}
FORMAT = {"score": "{:+.1f}", "bits": "{:+.4f}"}  # by side kind


def no_gain_reasons(sweep: Sweep, point: Point) -> list[str]:
    """Why a point's domain accuracy is not a gain: a domain task's score (the mean over seeds) at or below its
    majority baseline, or a seed's predictions collapsed onto one label (empty when neither, or when the baselines
    are unknown)."""
    reasons = []
    for task in sweep.score_tasks(sweep.domain):
        found = [(m, b) for m in point.members or [point] if (b := baseline(sweep, m, task)) is not None]
        reasons += [f"{task}: {m.name} collapsed onto {b.collapsed!r}" for m, b in found if b.collapsed is not None]
        majority = found[0][1].majority if found else None
        if majority is not None and point.scores.get(task, 1.0) <= majority + 1e-12:
            reasons.append(f"{task}: {100 * point.scores[task]:.1f} % ≤ majority baseline {100 * majority:.1f} %")
    return reasons


# ---------------------------------------------------------------------------------------------------------------
# Is there forgetting to prevent?

FORGETTING_Z = 2.0  # a general loss counts when it exceeds this many standard errors


def forgetting_lines(sweep: Sweep) -> list[str]:
    """Each method at its largest learning rate against the base, task by task on the general side (paired over
    items, averaged over seeds), with general_text's drift KL(base || model): a study whose largest rate loses no
    general ability beyond FORGETTING_Z errors cannot test a method against forgetting, and says so."""
    if sweep.base is None or not sweep.general:
        return []
    if not sweep.has_samples:
        return ["Not checked: this record has no per-item samples, so no point can be paired with the base on the "
                "same items."]
    groups = {(p.method, p.learning_rate): p for p in grouped_points(sweep) if p.alpha is None}
    header = ["point", "seeds", *[f"{t} Δ ({_unit(sweep, t)})" for t in sweep.general], "KL from base (nats/token)",
              f"general loss beyond {FORGETTING_Z:g} SE"]
    rows, verdicts = [], []
    for method in sorted({m for m, _ in groups}):
        lr = max(lr for m, lr in groups if m == method)
        point = groups[(method, lr)]
        cells, losses, compared = [], [], 0
        for task in sweep.general:
            found = task_difference(sweep, point, sweep.base, task)
            if found is None:
                cells.append("—")
                continue
            compared += 1
            higher = sweep.higher_is_better.get(task, True)
            scale = 100.0 if higher else 1.0
            difference, stderr = scale * found[0], scale * found[1]
            cells.append(f"{difference:+.{1 if higher else 4}f} ± {stderr:.{1 if higher else 4}f}")
            if (-difference if higher else difference) > FORGETTING_Z * stderr:
                losses.append(f"{task} ({cells[-1]} {_unit(sweep, task)})")
        kl = drift(point)
        rows.append([f"{method} lr {lr:g}", str(len(point.members or [point])), *cells,
                     f"{kl[0]:.4f} ± {kl[1]:.4f}" if kl else "—",
                     "; ".join(losses) or ("none" if compared else "not compared (no samples)")])
        verdicts.append((method, lr, losses, compared))
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows),
             ""]
    for method, lr, losses, compared in verdicts:
        if method != "sft":
            continue
        if not compared:
            lines.append(f"SFT at its largest rate ({lr:g}) has no per-item samples to pair with the base: whether "
                         "it forgets cannot be told from this record.")
        elif losses:
            lines.append(f"SFT at its largest rate ({lr:g}) loses general ability beyond {FORGETTING_Z:g} standard "
                         f"errors on {', '.join(losses)}: the grid reaches a regime where forgetting happens.")
        else:
            lines.append(f"SFT at its largest rate ({lr:g}) loses no general ability beyond {FORGETTING_Z:g} standard "
                         "errors on any general task: the grid does not reach a regime where forgetting happens, so "
                         "it cannot test a method against forgetting (train longer or at a higher rate).")
    lines += ["", "Δ: the point minus the base on the same items (accuracy in points, higher is better; code length "
              "in its own unit, lower is better), paired over items and averaged over the point's seeds; KL: "
              "KL(base ‖ model) per token on general_text's texts (the base has 0)."]
    return lines


def _unit(sweep: Sweep, task: str) -> str:
    return "points" if sweep.higher_is_better.get(task, True) else sweep.code_length_unit(task)


# ---------------------------------------------------------------------------------------------------------------
# Tested comparisons


@dataclass
class Verdict:
    """One comparison of a family: its sentence is completed once the family's Holm adjustment is known."""

    text: str
    difference: float  # in display units
    stderr: float | None
    n_items: int | None
    verdicts: tuple[str, str, str]  # (no measurable difference, difference > 0, difference < 0)

    @property
    def p(self) -> float:
        return stats.two_sided_p(self.difference, self.stderr) if self.stderr is not None else float("nan")


def _finish(tests: list[Verdict], unit: str, fmt: str) -> list[str]:
    """The family's sentences: difference ± error, MDE at the N used, p and Holm-adjusted p, verdict at alpha."""
    testable = [t for t in tests if t.stderr is not None]
    adjusted = dict(zip(map(id, testable), stats.holm([t.p for t in testable])))
    lines = []
    for t in tests:
        if t.stderr is None:
            lines.append(f"{t.text}: not tested (no standard error for it).")
            continue
        mde = stats.mde_from_stderr(t.stderr, ALPHA, POWER)
        p_holm = adjusted[id(t)]
        verdict = t.verdicts[0] if p_holm >= ALPHA else t.verdicts[1] if t.difference > 0 else t.verdicts[2]
        n = f" at N = {t.n_items} items" if t.n_items else ""
        lines.append(f"{t.text}: difference {fmt.format(t.difference)} ± {fmt.format(t.stderr).lstrip('+')} {unit}, "
                     f"MDE {fmt.format(mde).lstrip('+')}{n}, p = {t.p:.3f}, Holm p = {p_holm:.3f}: {verdict}.")
    return lines


@dataclass
class MethodCurve:
    """A method's (domain gain, general cost) points across learning rates in display units, from the base model
    (0, 0): the rates whose domain accuracy is no gain are left out (``no_gain``), and so are the rates that the base
    or a smaller rate of the method beats on both sides, at least the domain gain for at most the general cost
    (``dominated``: past the useful range, a larger rate bought nothing). Sorting such a rate in by its gain would
    read the method's cost between it and a smaller rate, off a path the method never takes."""

    points: list[stats.CurvePoint]  # the base first, then the kept rates by domain gain
    names: list[str]  # the kept rates' point names, in the order of points[1:]
    no_gain: list[str]
    dominated: list[str]


def _beats(a: stats.CurvePoint, b: stats.CurvePoint) -> bool:
    """``a`` has at least ``b``'s domain gain at no more general cost, and is better on one of the two."""
    return a.gain >= b.gain and a.cost <= b.cost and (a.gain > b.gain or a.cost < b.cost)


def method_curve(sweep: Sweep, method: str, kind: str) -> MethodCurve:
    """The curve the matched-gain verdicts read ``method``'s general cost off (errors paired against the base)."""
    measured, no_gain = [], []
    base = sweep.base
    for point in grouped_points(sweep):
        if point.method != method or point.alpha is not None:
            continue
        if side_kind("domain", kind) == "score" and no_gain_reasons(sweep, point):
            no_gain.append(point.name)
            continue
        gain, general = sweep.change(point, "domain", kind), sweep.change(point, "general", kind)
        if gain is None or general is None:
            continue
        gain_cmp, cost_cmp = compare(sweep, point, base, "domain", kind), compare(sweep, point, base, "general", kind)
        gain_scale, cost_scale = sweep.side_scale("domain", kind), sweep.side_scale("general", kind)
        measured.append((point.learning_rate or 0.0, point.name, stats.CurvePoint(
            gain, -general, cost_scale * cost_cmp.stderr if cost_cmp else 0.0,
            gain_scale * gain_cmp.stderr if gain_cmp else 0.0)))
    origin = stats.CurvePoint(0.0, 0.0)
    kept, dominated = [], []
    for lr, name, point in measured:
        smaller = [origin, *(other for other_lr, _, other in measured if other_lr < lr)]
        (dominated if any(_beats(other, point) for other in smaller) else kept).append((name, point))
    kept.sort(key=lambda pair: pair[1].gain)
    return MethodCurve([origin, *(p for _, p in kept)], [n for n, _ in kept], no_gain, [n for n, _ in dominated])


def left_out(*curves: MethodCurve) -> str:
    """'; left out as no gain: a, b; left out as beaten on both sides by the base or a smaller rate: c' for these
    curves (empty when nothing is left out)."""
    no_gain = [name for curve in curves for name in curve.no_gain]
    dominated = [name for curve in curves for name in curve.dominated]
    parts = [f"left out as no gain: {', '.join(no_gain)}" if no_gain else "",
             f"left out as beaten on both sides by the base or a smaller rate: {', '.join(dominated)}"
             if dominated else ""]
    return "".join(f"; {part}" for part in parts if part)


Z95 = 1.959963984540054  # two-sided 95 % normal quantile


def side_unit(sweep: Sweep, side: str, kind: str) -> str:
    """The unit of one side's axis: points, or the code-length unit its tasks share."""
    if side_kind(side, kind) == "score":
        return "points"
    units = {sweep.code_length_unit(t) for t in sweep.side_tasks(side, kind)}
    return units.pop() if len(units) == 1 else "bits per token or byte"


def _verdict(difference: float, stderr: float | None, fmt: str, unit: str, caveat: str | None = None) -> str:
    """'d, 95 % CI [a, b]: holds / does not hold / cannot be told at this N' for a difference whose positive sign is
    what the finding predicts; with a ``caveat``, 'd, 95 % CI [a, b]; caveat' (the interval is not a verdict)."""
    if stderr is None or not stderr == stderr:
        interval = f"{fmt.format(difference)} {unit}, no error for it"
        return f"{interval}; {caveat}" if caveat else f"{interval}: **cannot be told**"
    low, high = difference - Z95 * stderr, difference + Z95 * stderr
    if caveat:
        return f"{fmt.format(difference)} {unit}, 95 % CI [{fmt.format(low)}, {fmt.format(high)}]; {caveat}"
    call = ("**holds**" if low > 0 else "**does not hold** (the opposite is measured)" if high < 0 else
            f"**cannot be told at this N** (the data exclude an effect in the predicted direction larger than "
            f"{fmt.format(high).lstrip('+')} {unit})")
    return f"{fmt.format(difference)} {unit}, 95 % CI [{fmt.format(low)}, {fmt.format(high)}]: {call}"


def finding_verdicts(sweep: Sweep) -> list[str]:
    """The paper's two findings, one sentence each per axis kind, at matched (or similar) domain gain.

    Finding 1, small learning rate: among SFT's smaller rates whose domain change is not measurably below the
    largest rate's (paired, the 95 % interval of the difference reaches 0), the smallest one against the largest on
    the general side. Finding 2, TALR: the general cost of TALR and of SFT read off their learning-rate curves at
    the largest domain gain both reach (as in the guidelines), and TALR on LoRA against LoRA at the same rate.
    Intervals are 95 %, not corrected for multiplicity: these are the study's pre-stated questions."""
    if sweep.base is None:
        return []
    groups = {(p.method, p.learning_rate): p for p in grouped_points(sweep) if p.alpha is None}
    lines = []
    for kind in sweep.kinds():
        dfmt, fmt = FORMAT[side_kind("domain", kind)], FORMAT[side_kind("general", kind)]
        dscale, scale = sweep.side_scale("domain", kind), sweep.side_scale("general", kind)
        unit, domain_unit = side_unit(sweep, "general", kind), side_unit(sweep, "domain", kind)
        axis = AXIS_NAME[kind]

        def change(point, side):
            return sweep.change(point, side, kind)

        # a rate whose domain accuracy is no gain (at the majority baseline, or one label) cannot anchor a
        # comparison at similar gain
        no_gain = sorted(lr for (m, lr), p in groups.items() if m == "sft" and side_kind("domain", kind) == "score"
                         and no_gain_reasons(sweep, p))
        rates = sorted(lr for m, lr in groups if m == "sft" and lr not in no_gain)
        if no_gain:
            lines.append(f"- SFT at lr {', '.join(f'{lr:g}' for lr in no_gain)} left out of finding 1 ({axis}): "
                         "its domain accuracy is no gain (see Sanity baselines).")
        if len(rates) < 2 and any(m == "sft" for m, _ in groups):
            lines.append(f"- **Finding 1, small learning rate ({axis})**: fewer than two SFT rates with a domain "
                         "gain: **cannot be told**.")
        elif len(rates) >= 2:
            large = groups[("sft", rates[-1])]
            similar = []
            for lr in rates[:-1]:
                cmp = compare(sweep, groups[("sft", lr)], large, "domain", kind)
                d_small, d_large = change(groups[("sft", lr)], "domain"), change(large, "domain")
                if cmp and None not in (d_small, d_large) and d_small - d_large + Z95 * dscale * cmp.stderr >= 0:
                    similar.append(lr)
            head = f"- **Finding 1, small learning rate ({axis})**: "
            if not similar:
                domains = ", ".join(f"lr {lr:g} {dfmt.format(change(groups[('sft', lr)], 'domain') or 0.0)}"
                                    for lr in rates)
                lines.append(head + f"no smaller rate reached a domain change similar to lr {rates[-1]:g}'s "
                             f"(domain change in {domain_unit}: {domains}): **cannot be told** at similar domain "
                             "gain in this training budget.")
            else:
                small = groups[("sft", similar[0])]
                cmp = compare(sweep, small, large, "general", kind)
                g_small, g_large = change(small, "general"), change(large, "general")
                lines.append(head + f"SFT at lr {similar[0]:g} changed the domain side "
                             f"{dfmt.format(change(small, 'domain'))} {domain_unit} and the general side "
                             f"{fmt.format(g_small)} {unit}; at lr {rates[-1]:g}, {dfmt.format(change(large, 'domain'))} "
                             f"and {fmt.format(g_large)}. General side, small minus "
                             f"large: " + _verdict(g_small - g_large, scale * cmp.stderr if cmp else None, fmt, unit)
                             + ".")
        talr_curve, sft_curve = method_curve(sweep, "talr", kind), method_curve(sweep, "sft", kind)
        both = len(talr_curve.points) > 1 and len(sft_curve.points) > 1
        matched = stats.matched_gain(talr_curve.points, sft_curve.points) if both else None
        head = f"- **Finding 2, TALR vs SFT at matched domain gain ({axis})**: "
        if matched is None or matched.gain <= 0:
            if both:
                lines.append(head + "their domain gains do not overlap, or are no gains: **cannot be told**.")
            elif {"talr", "sft"} <= {m for m, _ in groups}:
                lines.append(head + f"({left_out(talr_curve, sft_curve).removeprefix('; ')}) no domain gain on "
                             "TALR's or SFT's learning-rate curve to match: **cannot be told**.")
        else:
            dropped = left_out(talr_curve, sft_curve).removeprefix("; ")
            lines.append(head + (f"({dropped}) " if dropped else "")
                         + f"at domain gain {dfmt.format(matched.gain)} {domain_unit} the general cost is "
                         f"{fmt.format(matched.cost_a)} ± {fmt.format(matched.cost_a_se).lstrip('+')} {unit} under "
                         f"TALR and {fmt.format(matched.cost_b)} ± {fmt.format(matched.cost_b_se).lstrip('+')} under "
                         f"SFT; SFT's cost minus TALR's: "
                         + _verdict(-matched.difference, matched.difference_se, fmt, unit) + ".")
        for (method, lr), point in sorted(groups.items()):
            if method != "lora_talr" or ("lora", lr) not in groups:
                continue
            lora = groups[("lora", lr)]
            cmp = compare(sweep, point, lora, "general", kind)
            g_talr, g_lora = change(point, "general"), change(lora, "general")
            if None in (g_talr, g_lora):
                continue
            # a point that learnt no domain gain has no trade-off to compare: its general cost is all it shows
            unlearnt = [p.method for p in (point, lora) if side_kind("domain", kind) == "score"
                        and no_gain_reasons(sweep, p)]
            caveat = (f"but {' and '.join(unlearnt)} learnt no domain gain (see Sanity baselines), so this is no "
                      "trade-off: **cannot be told**") if unlearnt else None
            verdict = _verdict(g_talr - g_lora, scale * cmp.stderr if cmp else None, fmt, unit, caveat)
            lines.append(f"- **Finding 2 on LoRA ({axis}, lr {lr:g}, equal rate)**: the general side changed "
                         f"{fmt.format(g_talr)} {unit} under TALR on LoRA (domain "
                         f"{dfmt.format(change(point, 'domain') or 0.0)} {domain_unit}) and {fmt.format(g_lora)} "
                         f"under LoRA (domain {dfmt.format(change(lora, 'domain') or 0.0)}); TALR minus LoRA: "
                         + verdict + ".")
    return lines


def guidelines(sweep: Sweep) -> list[str]:
    """The paper's two claims tested on each axis kind: guideline 1 (small vs large learning rate, per method) and
    guideline 2 (TALR vs SFT at matched domain gain), Holm-corrected over the kind's family of comparisons."""
    if sweep.base is None:
        return ["The base model has no complete evaluation, so the guidelines cannot be checked."]
    lines = []
    groups = {(p.method, p.learning_rate): p for p in grouped_points(sweep) if p.alpha is None}
    for kind in sweep.kinds():
        scale = sweep.side_scale("general", kind)
        unit = side_unit(sweep, "general", kind)
        dfmt, fmt = FORMAT[side_kind("domain", kind)], FORMAT[side_kind("general", kind)]
        lines.append(f"*Measured on {AXIS_NAME[kind]} (domain change in {side_unit(sweep, 'domain', kind)}, general "
                     f"in {unit}):*")

        def change(point, side):
            return sweep.change(point, side, kind)

        tests = []
        for method in sorted({m for m, _ in groups}):
            rates = sorted(lr for m, lr in groups if m == method)
            if len(rates) < 2:
                continue
            small, large = groups[(method, rates[0])], groups[(method, rates[-1])]
            d_small, g_small = change(small, "domain"), change(small, "general")
            d_large, g_large = change(large, "domain"), change(large, "general")
            if None in (d_small, g_small, d_large, g_large):
                continue
            cmp = compare(sweep, small, large, "general", kind)
            tests.append(Verdict(
                f"- **{method}, learning rate**: at lr {rates[0]:g} the general side changed {fmt.format(g_small)} "
                f"{unit} (domain {dfmt.format(d_small)}); at lr {rates[-1]:g} it changed {fmt.format(g_large)} "
                f"(domain {dfmt.format(d_large)}); small minus large, {'paired' if cmp and cmp.paired else 'unpaired'}",
                g_small - g_large, scale * cmp.stderr if cmp else None, cmp.n_items if cmp else None,
                ("no measurable difference at this evaluation size",
                 "consistent with guideline 1: the smaller learning rate kept more general ability",
                 "not consistent with guideline 1 here: the smaller learning rate kept less general ability")))
        for lr in sorted(lr for m, lr in groups if m == "talr" and ("sft", lr) in groups):
            talr, sft = groups[("talr", lr)], groups[("sft", lr)]
            g_talr, g_sft = change(talr, "general"), change(sft, "general")
            if None in (g_talr, g_sft):
                continue
            cmp = compare(sweep, talr, sft, "general", kind)
            tests.append(Verdict(
                f"- **TALR vs SFT at lr {lr:g}** (equal learning rate, not equal domain gain): the general side "
                f"changed {fmt.format(g_talr)} {unit} under TALR (domain {dfmt.format(change(talr, 'domain'))}) and "
                f"{fmt.format(g_sft)} under SFT (domain {dfmt.format(change(sft, 'domain'))}); TALR minus SFT, "
                f"{'paired' if cmp and cmp.paired else 'unpaired'}",
                g_talr - g_sft, scale * cmp.stderr if cmp else None, cmp.n_items if cmp else None,
                ("no measurable difference at this evaluation size", "TALR kept more general ability at this "
                 "learning rate", "TALR kept less general ability at this learning rate")))
        talr_curve, sft_curve = method_curve(sweep, "talr", kind), method_curve(sweep, "sft", kind)
        matched = (stats.matched_gain(talr_curve.points, sft_curve.points)
                   if len(talr_curve.points) > 1 and len(sft_curve.points) > 1 else None)
        if matched is not None and matched.gain > 0:
            tests.append(Verdict(
                f"- **TALR vs SFT at matched domain gain** {dfmt.format(matched.gain)} "
                f"{side_unit(sweep, 'domain', kind)} (the largest both reach, "
                f"read off each method's learning-rate curve through the base model"
                + left_out(talr_curve, sft_curve)
                + f"): general cost TALR {fmt.format(matched.cost_a)} ± {fmt.format(matched.cost_a_se).lstrip('+')}, "
                f"SFT {fmt.format(matched.cost_b)} ± {fmt.format(matched.cost_b_se).lstrip('+')}; SFT's cost minus "
                "TALR's", -matched.difference, matched.difference_se, None,
                ("no measurable difference at matched gain", "consistent with guideline 2: at the same domain gain "
                 "TALR cost less general ability", "not consistent with guideline 2 here: at the same domain gain "
                 "TALR cost more general ability")))
        lines += _finish(tests, unit, fmt)
        both = {"talr", "sft"} <= {m for m, _ in groups}
        if both and (matched is None or matched.gain <= 0):
            lines.append("- **TALR vs SFT at matched domain gain**: not tested — the two methods' domain gains do "
                         "not overlap, or are no gains.")
    if len(lines) == len(sweep.kinds()):  # only the headings: nothing was comparable
        lines.append("Not enough grid points (two learning rates of one method, or TALR and SFT).")
    else:
        lines += ["", f"Each verdict is a two-sided test at alpha {ALPHA} with Holm's correction over the comparisons "
                  "of its axis (Holm p); MDE is the difference that test detects with 80 % power at the error shown "
                  "(talr.stats.mde_from_stderr). Matched-gain errors combine the two curves' points as independent."]
    return lines


def matched_gain_lines(sweep: Sweep) -> list[str]:
    """TALR vs SFT at matched domain gain along each run's training-time probes (code length on the held-out domain
    and general probe sets per checkpoint): one line per seed and learning rate both methods ran."""
    runs = {(p.method, p.learning_rate, p.seed): p for p in sweep.points if p.probes and p.alpha is None}
    lines = []
    for (method, lr, seed), talr in sorted(runs.items(), key=lambda kv: (kv[0][1], kv[0][2])):
        sft = runs.get(("sft", lr, seed))
        if method != "talr" or sft is None:
            continue
        curves = [[stats.CurvePoint(-r["domain_delta_bits_per_token"], r["general_delta_bits_per_token"],
                                    r["general_delta_bits_per_token_se"], r["domain_delta_bits_per_token_se"])
                   for r in run.probes if "domain_delta_bits_per_token" in r and "general_delta_bits_per_token" in r]
                  for run in (talr, sft)]
        result = stats.matched_gain(*curves)
        if result is None or result.gain <= 0:
            continue
        d, se = result.difference, result.difference_se
        lines.append(f"- lr {lr:g}, seed {seed}: at domain gain {result.gain:.3f} bits/token (TALR's last probe or "
                     f"SFT's, the smaller) the general code length rose {result.cost_a:+.4f} ± {result.cost_a_se:.4f} "
                     f"under TALR and {result.cost_b:+.4f} ± {result.cost_b_se:.4f} under SFT: TALR minus SFT "
                     f"{d:+.4f} ± {se:.4f} bits/token (MDE {stats.mde_from_stderr(se):.4f}, "
                     f"p = {stats.two_sided_p(d, se):.3f}, not corrected for multiplicity).")
    if not lines:
        return []
    return ["General code-length increase at the same domain code-length gain, read along each run's probes "
            "(linear interpolation between checkpoints; probe-set errors from the per-example differences):", "",
            *lines]
