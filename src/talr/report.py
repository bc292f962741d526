"""``talr report SWEEP_DIR``: tables, sanity baselines, the paper's two guidelines tested (minimum detectable
differences, Holm-corrected verdicts, TALR vs SFT at matched domain gain), the domain-vs-general Pareto front and
the figures. Reads a sweep directory or a committed record (:mod:`talr.report_data`).

Scores: each task's primary metric (``configs[task]["primary_metric"]`` in results.json, else its first metric).
Tasks whose primary metric is higher-is-better count as scores (accuracies, shown in percent); the others (code
length in bits per token) are shown as their change against the base model, Delta L, and never enter the general
average. The general average is the unweighted mean of the general tasks' scores.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

from talr import stats
from talr.report_baselines import baseline
from talr.report_cost import cost_lines
from talr.report_data import (Point, Sweep, grouped_points, load_sweep, paired_stderr, side_kind,
                              task_stderr)
from talr.report_verdicts import (AXIS_NAME, KIND_LABEL, finding_verdicts, forgetting_lines, guidelines,
                                  matched_gain_lines, no_gain_reasons)

__all__ = ["load_sweep", "paired_stderr", "pareto_front", "guidelines", "matched_gain_lines", "baseline_lines",
           "tables", "signal_agreement", "write_report", "KIND_LABEL"]


def _fmt(value: float | None, stderr: float | None = None, percent: bool = True) -> str:
    if value is None:
        return "—"
    scale = 100 if percent else 1
    text = f"{value * scale:.1f}" if percent else f"{value:.3f}"
    if stderr is not None:
        text += f" ± {stderr * scale:.1f}" if percent else f" ± {stderr:.3f}"
    return text


def _delta(value: float | None, base: float | None, percent: bool = True) -> str:
    if value is None or base is None:
        return "—"
    d = (value - base) * (100 if percent else 1)
    return f"{d:+.1f}" if percent else f"{d:+.3f}"


# ---------------------------------------------------------------------------------------------------------------
# Sanity baselines: which domain "gains" are not gains


def baseline_lines(sweep: Sweep) -> list[str]:
    """Per classification task: chance and majority rates on the items evaluated (and macro-F1's two levels: a
    uniform random guess, always the majority label), then every point's score, macro-F1 and predicted-label
    distribution, flagged when collapsed (>= 90 % one label), at/below majority, or with a macro-F1 no better than
    a random guess's."""
    lines = []
    everyone = [p for p in [sweep.base, *sweep.points] if p is not None]
    for task in sweep.score_tasks([*sweep.domain, *sweep.general]):
        rows = [(p, baseline(sweep, p, task)) for p in everyone]
        rows = [(p, b) for p, b in rows if b is not None]
        if not rows:
            continue
        ref = rows[0][1]
        n = len(rows[0][0].samples.get(task) or []) or None
        chance = "—" if ref.chance is None else f"{100 * ref.chance:.1f} %"
        f1_levels = ""
        if ref.guess_macro_f1 is not None:
            always = "" if ref.majority_macro_f1 is None else (
                f", always {ref.majority_label!r} {ref.majority_macro_f1:.3f}")
            f1_levels = f"; macro-F1 of a uniform random guess {ref.guess_macro_f1:.3f}{always}"
        lines += [f"**{task}** ({n or '?'} items): chance {chance}, majority class {ref.majority_label!r} "
                  f"{100 * ref.majority:.1f} %{f1_levels}.", "",
                  "| point | score (%) | macro-F1 | predictions | flag |", "|---|---|---|---|---|"]
        for point, b in rows:
            share = ", ".join(f"{k}: {v}" for k, v in list(b.distribution.items())[:4])
            flags = [f"collapsed onto {b.collapsed!r}"] if b.collapsed is not None else []
            if b.majority is not None and point.scores[task] <= b.majority + 1e-12:
                flags.append("≤ majority")
            if b.chance is not None and point.scores[task] < b.chance:
                flags.append("< chance")
            if b.macro_f1 is not None and b.guess_macro_f1 is not None and b.macro_f1 <= b.guess_macro_f1:
                flags.append("macro-F1 ≤ random guess")
            f1 = "—" if b.macro_f1 is None else f"{b.macro_f1:.3f}"
            lines.append(f"| {point.name} | {100 * point.scores[task]:.1f} | {f1} | {share} | {'; '.join(flags)} |")
        lines.append("")
    return lines


# ---------------------------------------------------------------------------------------------------------------
# Tables


def tables(sweep: Sweep) -> str:
    """One table per learning rate: every task's value ± stderr, the side averages and their change vs the base."""
    base = sweep.base
    header = ["method", "seeds"]

    unit = sweep.code_length_unit

    header += [f"{t} (domain{f', {unit(t)}' if t in sweep.bits_tasks(sweep.domain) else ''})" for t in sweep.domain]
    header += [f"{t}{f' ({unit(t)})' if t in sweep.bits_tasks(sweep.general) else ''}" for t in sweep.general]
    scored = [side for side in ("domain", "general") if sweep.side_tasks(side, "score")]
    coded = [side for side in ("domain", "general") if sweep.side_tasks(side, "bits")]
    if "general" in scored:
        header += ["general avg (%)"]
    header += [f"Δ {'domain' if side == 'domain' else 'general avg'} (pts)" for side in scored]
    header += [f"−ΔL {side}" for side in coded]
    lines = []
    by_lr: dict[float | None, list[Point]] = defaultdict(list)
    for point in grouped_points(sweep):
        by_lr[point.learning_rate].append(point)
    flagged = False
    for lr in sorted(by_lr, key=lambda v: (v is None, v)):
        lines += [f"### Learning rate {lr:g}" if lr is not None else "### Other", ""]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        rows = ([base] if base else []) + sorted(by_lr[lr], key=lambda p: (p.method, p.alpha or 0))
        for point in rows:
            is_base = point is base
            cells = [point.method if point.alpha is None else f"{point.method} (α={point.alpha:g})",
                     "—" if is_base else str(point.seed)]
            for task in [*sweep.domain, *sweep.general]:
                percent = sweep.higher_is_better.get(task, True)
                cells.append(_fmt(point.scores.get(task), task_stderr(sweep, point, task), percent=percent))
            if "general" in scored:
                cells.append(_fmt(sweep.axis(point, "general", "score"), sweep.axis_stderr(point, "general", "score")))
            for side in scored:
                cell = ("—" if is_base or base is None else
                        _delta(sweep.axis(point, side, "score"), sweep.axis(base, side, "score")))
                if side == "domain" and not is_base and no_gain_reasons(sweep, point):
                    cell, flagged = cell + " †", True
                cells.append(cell)
            for side in coded:
                value = sweep.axis(point, side, "bits")
                cells.append("—" if is_base or value is None else f"{value:+.3f}")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if flagged:
        lines += ["† not a domain gain: a domain task at or below its majority-class baseline, or predictions "
                  "collapsed onto one label (see Sanity baselines).", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# Pareto front


def pareto_front(xy: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both coordinates (both maximised), sorted by x."""
    front = []
    for i, (x, y) in enumerate(xy):
        dominated = any((x2 >= x and y2 >= y) and (x2 > x or y2 > y) for j, (x2, y2) in enumerate(xy) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: xy[i][0])


def axis_points(sweep: Sweep, kind: str) -> tuple[list[Point], list[tuple[float, float]]]:
    """The (seed-averaged) points with both axes, and their (domain, general) coordinates in display units."""
    points = [p for p in grouped_points(sweep)
              if sweep.axis(p, "domain", kind) is not None and sweep.axis(p, "general", kind) is not None]
    return points, [(sweep.side_scale("domain", kind) * sweep.axis(p, "domain", kind),
                     sweep.side_scale("general", kind) * sweep.axis(p, "general", kind)) for p in points]


def off_front(sweep: Sweep, kind: str) -> dict[str, list[str]]:
    """Points kept off the accuracy front, with the reasons (their domain accuracy is no gain)."""
    if side_kind("domain", kind) != "score":
        return {}
    points, _ = axis_points(sweep, kind)
    return {p.name: reasons for p in points if (reasons := no_gain_reasons(sweep, p))}


def front_indices(sweep: Sweep, kind: str) -> list[int]:
    points, xy = axis_points(sweep, kind)
    excluded = off_front(sweep, kind)
    eligible = [i for i, p in enumerate(points) if p.name not in excluded]
    return [eligible[i] for i in pareto_front([xy[i] for i in eligible])]


def pareto_names(sweep: Sweep, kind: str) -> list[str]:
    """Names of the points on the domain-vs-general Pareto front, by increasing domain score."""
    points, _ = axis_points(sweep, kind)
    return [points[i].name for i in front_indices(sweep, kind)]


def signal_agreement(sweep: Sweep) -> list[str]:
    """How well the cheap general signal (code length, no generation) ranks the points like the generation-based
    general scores do: Spearman's rho over every evaluated point, the base model included (its -Delta L is 0)."""
    if not sweep.score_tasks(sweep.general) or not sweep.bits_tasks(sweep.general) or sweep.base is None:
        return []
    points = [sweep.base, *sweep.points]
    signal = {p.name: sweep.axis(p, "general", "bits") for p in points}
    lines = []
    targets = [("general average", lambda p: sweep.axis(p, "general", "score"))]
    targets += [(task, lambda p, t=task: p.scores.get(t)) for task in sweep.score_tasks(sweep.general)]
    for label, value in targets:
        pairs = [(signal[p.name], value(p)) for p in points if signal[p.name] is not None and value(p) is not None]
        if len(pairs) < 4:
            continue
        rho, p_value = stats.spearman([a for a, _ in pairs], [b for _, b in pairs])
        if math.isnan(rho):
            lines.append(f"- {label}: constant over the points, no ranking to compare.")
            continue
        lines.append(f"- {label}: Spearman rho = {rho:+.2f} over {len(pairs)} points (permutation p = {p_value:.3f}).")
    if not lines:
        return []
    return ["General code-length change (−ΔL on " + ", ".join(sweep.bits_tasks(sweep.general)) + ", no generation) "
            "against the generation-based general scores, ranked over the points (+1: the cheap signal orders the "
            "points exactly as the benchmark does):", "", *lines]


def _preamble(sweep: Sweep) -> list[str]:
    config, train = sweep.config, sweep.config.get("train", {})
    seeds = sorted({len(p.members) for p in grouped_points(sweep)})
    text = [
        f"Base model `{train.get('model', 'smollm2-135m-instruct')}`; training data "
        f"`{train.get('data', {}).get('train')}`; evaluation: "
        f"{'all' if config['eval'].get('limit') is None else config['eval']['limit']} items per task; "
        f"{len(sweep.points)} finished points. Accuracies in percent and code lengths in bits per token, each ± one "
        "standard error. −ΔL is the code-length change against the base model with the sign flipped (positive = the "
        "model compresses that text better). Metrics: "
        + ", ".join(f"{t}: `{m}`" for t, m in sweep.metric_names.items()) + ".", "",
    ]
    if seeds == [1]:
        text.append("One seed per point: every error is item sampling only (binomial, or the delta method for code "
                    "length); training noise is not measured, so a difference between two points may be seed luck.")
    else:
        text.append(f"Seeds per point: {', '.join(map(str, seeds))}. A seed-averaged point's error adds the "
                    "between-seed spread to item sampling (variance components, `talr.stats.seed_averaged`).")
    if not sweep.has_samples:
        text.append("**Per-item samples are not in this record** (no `samples.jsonl.gz`): comparisons use unpaired "
                    "errors (larger than paired ones), and majority baselines, macro-F1 from predictions and "
                    "collapse checks cannot be computed; chance rates and the evaluator's own numbers are shown where "
                    "results.json has them.")
    if sweep.generation_budgets:
        from talr.evaluation.registry import get_task

        text.append("Generation budgets (new tokens): " + ", ".join(
            f"{t} {n}" + (f" (the benchmark's own: {get_task(t).max_new_tokens}; scores are not comparable with "
                          "published ones)" if n < get_task(t).max_new_tokens else "")
            for t, n in sweep.generation_budgets.items()) + ".")
    return [line for paragraph in text if paragraph for line in (paragraph, "")][:-1]


def write_report(sweep_dir: str | Path) -> Path:
    from talr import report_plots
    from talr.io import atomic_write_text

    sweep = load_sweep(sweep_dir)
    out = sweep.root
    scatters = [path for kind in sweep.kinds() if (path := report_plots.plot_scatter(sweep, out, kind)) is not None]
    curves, probes = report_plots.plot_curves(sweep, out), report_plots.plot_probes(sweep, out)
    parts = [f"# Sweep report: {sweep.config.get('name', out.name)}", "", *_preamble(sweep), ""]
    if verdicts := finding_verdicts(sweep):
        parts += ["## Verdicts on the paper's two findings", "", *verdicts, "",
                  "Finding 1 is read at the smallest SFT rate whose domain change is not measurably below the largest "
                  "rate's; finding 2 where TALR's and SFT's learning-rate curves reach the same domain gain. Each "
                  "difference is signed so that positive is what the paper predicts; \"holds\" when its 95 % "
                  "interval excludes 0 on that side, \"does not hold\" when it excludes 0 on the other.", ""]
    parts += ["## The paper's guidelines, as measured", "", *guidelines(sweep), ""]
    if forgetting := forgetting_lines(sweep):
        parts += ["## Is there forgetting? Each method at its largest learning rate against the base", "",
                  *forgetting, ""]
    if matched := matched_gain_lines(sweep):
        parts += ["## TALR vs SFT at matched domain gain, along training", "", *matched, ""]
    if sanity := baseline_lines(sweep):
        parts += ["## Sanity baselines", "", *sanity]
    parts += ["## Results by learning rate", "", tables(sweep)]
    if agreement := signal_agreement(sweep):
        parts += ["## Does the cheap code-length signal track the general scores?", "", *agreement, ""]
    if cost := cost_lines(sweep):
        parts += ["## Cost", "", *cost, ""]
    if scatters:
        parts += ["## Domain vs general", ""] + [f"![trade-off]({path.name})" for path in scatters] + [""]
        for kind in sweep.kinds():
            parts.append(f"Pareto front ({AXIS_NAME[kind]}): "
                         + ", ".join(f"`{name}`" for name in pareto_names(sweep, kind)) + ".")
            parts += [f"Kept off the front: `{name}` ({'; '.join(why)})."
                      for name, why in off_front(sweep, kind).items()]
        parts += [""]
    for title, path, figure, note in (
            ("Training curves", curves, "training_curves.png", ""),
            ("Training-time probes", probes, "probes.png",
             "Code length on the fixed general and held-out domain probe sets every `probes.every_n_steps`, and the "
             "TALR weight of the tokens that were hard (p < 0.2) at the start, per epoch: the paper's implicit "
             "curriculum (`talr.callbacks`).")):
        if path is None and (out / figure).is_file():  # a record without run logs keeps the figure drawn at run time
            note = (note + " " if note else "") + "(Drawn when the sweep ran; the run logs are not in this record.)"
            path = out / figure
        if path is not None:
            parts += [f"## {title}", "", *([note, ""] if note else []), f"![{title.lower()}]({path.name})", ""]
    return atomic_write_text(out / "report.md", "\n".join(parts) + "\n")
