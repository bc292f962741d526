"""``talr report SWEEP_DIR``: tables, the domain-vs-general scatter with its Pareto front, training curves, and the
paper's two guidelines checked against the measured numbers.

Scores: each task's primary metric (``configs[task]["primary_metric"]`` in results.json, else its first metric).
Tasks whose primary metric is higher-is-better count as scores (accuracies, shown in percent); the others (code
length in bits per token) are shown as their change against the base model, Delta L, and never enter the general
average. The general average is the unweighted mean of the general tasks' scores.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import yaml


@dataclass
class Point:
    name: str
    method: str
    learning_rate: float | None
    seed: int | None
    alpha: float | None
    scores: dict[str, float] = field(default_factory=dict)   # task -> primary metric value
    stderrs: dict[str, float] = field(default_factory=dict)
    run_dir: Path | None = None


@dataclass
class Sweep:
    root: Path
    domain: list[str]
    general: list[str]
    higher_is_better: dict[str, bool]
    metric_names: dict[str, str]
    base: Point | None
    points: list[Point]

    @property
    def general_scores(self) -> list[str]:
        return [t for t in self.general if self.higher_is_better.get(t, True)]

    @property
    def general_bits(self) -> list[str]:
        return [t for t in self.general if not self.higher_is_better.get(t, True)]

    def domain_score(self, point: Point) -> float | None:
        values = [point.scores.get(t) for t in self.domain if self.higher_is_better.get(t, True)]
        values = [v for v in values if v is not None]
        return sum(values) / len(values) if values else None

    def general_average(self, point: Point) -> float | None:
        values = [point.scores.get(t) for t in self.general_scores]
        if not values or any(v is None for v in values):
            return None
        return sum(values) / len(values)

    def average_stderr(self, point: Point, tasks: list[str]) -> float | None:
        errors = [point.stderrs.get(t) for t in tasks]
        if not errors or any(e is None for e in errors):
            return None
        return math.sqrt(sum(e * e for e in errors)) / len(errors)


def _primary(results: dict, task: str) -> tuple[str, float, float | None, bool]:
    metrics = results["results"][task]
    config = results.get("configs", {}).get(task, {})
    keys = [k for k in metrics if k != "alias" and "_stderr" not in k.split(",")[0]]
    key = config.get("primary_metric") or keys[0]
    metric, _, filter_name = key.partition(",")
    stderr_key = f"{metric}_stderr,{filter_name}" if filter_name else f"{metric}_stderr"
    stderr = metrics.get(stderr_key)
    higher = results.get("higher_is_better", {}).get(task, {}).get(metric, True)
    return key, float(metrics[key]), (float(stderr) if isinstance(stderr, (int, float)) else None), higher


def _read_point(directory: Path, meta: dict) -> Point | None:
    results_path = directory / "eval" / "results.json"
    if not results_path.is_file():
        return None
    results = json.loads(results_path.read_text())
    point = Point(meta.get("name", directory.name), meta.get("method", "base"), meta.get("learning_rate"),
                  meta.get("seed"), meta.get("alpha"), run_dir=directory)
    for task in results.get("results", {}):
        _, value, stderr, _ = _primary(results, task)
        point.scores[task] = value
        if stderr is not None:
            point.stderrs[task] = stderr
    return point


def load_sweep(root: str | Path) -> Sweep:
    root = Path(root)
    config_path = root / "sweep.yaml"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found: is {root} a sweep directory (made by `talr sweep`)?")
    config = yaml.safe_load(config_path.read_text())
    domain, general = list(config["eval"]["domain"]), list(config["eval"]["general"])
    higher, names = {}, {}
    base = _read_point(root / "base", {"name": "base", "method": "base"})
    points = []
    for point_json in sorted((root / "runs").glob("*/point.json")):
        point = _read_point(point_json.parent, json.loads(point_json.read_text()))
        if point is not None:
            points.append(point)
    for directory in [root / "base", *(p.run_dir for p in points)]:
        results_path = directory / "eval" / "results.json"
        if results_path.is_file():
            results = json.loads(results_path.read_text())
            for task in results.get("results", {}):
                key, _, _, is_higher = _primary(results, task)
                higher[task], names[task] = is_higher, key
            break
    return Sweep(root, domain, general, higher, names, base, points)


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


def _aggregate_seeds(sweep: Sweep, points: list[Point]) -> Point:
    """Mean over seeds; the standard error combines each seed's measurement error (sqrt(sum se^2) / n)."""
    first = points[0]
    merged = Point(first.name, first.method, first.learning_rate, None, first.alpha)
    for task in {t for p in points for t in p.scores}:
        values = [p.scores[t] for p in points for t in [task] if t in p.scores]
        merged.scores[task] = sum(values) / len(values)
        errors = [p.stderrs[task] for p in points if task in p.stderrs]
        if len(errors) == len(values):
            merged.stderrs[task] = math.sqrt(sum(e * e for e in errors)) / len(errors)
    merged.seed = len(points)  # number of seeds behind the mean
    return merged


def grouped_points(sweep: Sweep) -> list[Point]:
    groups: dict[tuple, list[Point]] = defaultdict(list)
    for point in sweep.points:
        groups[(point.method, point.learning_rate, point.alpha)].append(point)
    return [_aggregate_seeds(sweep, group) for group in groups.values()]


def tables(sweep: Sweep) -> str:
    base = sweep.base
    base_dom = sweep.domain_score(base) if base else None
    base_gen = sweep.general_average(base) if base else None
    header = (["method", "seeds"] + [f"{t} (domain)" for t in sweep.domain] + sweep.general_scores + ["general avg"]
              + [f"Δ{t} (bits/token)" for t in sweep.general_bits] + ["Δ domain", "Δ general avg"])
    lines = []
    by_lr: dict[float | None, list[Point]] = defaultdict(list)
    for point in grouped_points(sweep):
        by_lr[point.learning_rate].append(point)
    for lr in sorted(by_lr, key=lambda v: (v is None, v)):
        lines += [f"### Learning rate {lr:g}" if lr is not None else "### Other", ""]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        rows = ([base] if base else []) + sorted(by_lr[lr], key=lambda p: p.method)
        for point in rows:
            is_base = point is base
            cells = [point.method if point.alpha is None else f"{point.method} (α={point.alpha:g})",
                     "—" if is_base else str(point.seed)]
            cells += [_fmt(point.scores.get(t), point.stderrs.get(t)) for t in sweep.domain]
            cells += [_fmt(point.scores.get(t), point.stderrs.get(t)) for t in sweep.general_scores]
            cells.append(_fmt(sweep.general_average(point), sweep.average_stderr(point, sweep.general_scores)))
            for task in sweep.general_bits:
                value = point.scores.get(task)
                cells.append(_delta(value, base.scores.get(task) if base else None, percent=False))
            cells.append("—" if is_base else _delta(sweep.domain_score(point), base_dom))
            cells.append("—" if is_base else _delta(sweep.general_average(point), base_gen))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def pareto_front(xy: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both coordinates (both maximised), sorted by x."""
    front = []
    for i, (x, y) in enumerate(xy):
        dominated = any((x2 >= x and y2 >= y) and (x2 > x or y2 > y) for j, (x2, y2) in enumerate(xy) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: xy[i][0])


def _plot_scatter(sweep: Sweep, out: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [p for p in grouped_points(sweep)
              if sweep.domain_score(p) is not None and sweep.general_average(p) is not None]
    if not points:
        return None
    methods = sorted({p.method for p in points})
    rates = sorted({p.learning_rate for p in points if p.learning_rate is not None})
    colours = plt.get_cmap("tab10")
    markers = ["o", "s", "^", "D", "v", "P", "X", "*"]
    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    xy = [(100 * sweep.domain_score(p), 100 * sweep.general_average(p)) for p in points]
    for p, (x, y) in zip(points, xy):
        ax.scatter(x, y, color=colours(methods.index(p.method) % 10),
                   marker=markers[rates.index(p.learning_rate) % len(markers)] if p.learning_rate in rates else "o",
                   s=70, edgecolor="black", linewidth=0.5, zorder=3)
    front = pareto_front(xy)
    ax.plot([xy[i][0] for i in front], [xy[i][1] for i in front], "--", color="grey", lw=1, zorder=2,
            label="Pareto front")
    if sweep.base and sweep.domain_score(sweep.base) is not None and sweep.general_average(sweep.base) is not None:
        ax.scatter(100 * sweep.domain_score(sweep.base), 100 * sweep.general_average(sweep.base), marker="*",
                   s=260, color="gold", edgecolor="black", zorder=4, label="base model")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colours(i % 10), marker="o", ls="", label=m) for i, m in enumerate(methods)]
    handles += [Line2D([], [], color="black", marker=markers[i % len(markers)], ls="", mfc="white",
                       label=f"lr {r:g}") for i, r in enumerate(rates)]
    handles += ax.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="best", fontsize=8, framealpha=0.9)
    ax.set_xlabel(f"domain score (%) — {', '.join(sweep.domain)}")
    ax.set_ylabel(f"general average (%) — {', '.join(sweep.general_scores)}")
    ax.set_title("Domain gain vs general capability (each point: method x learning rate)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out / "tradeoff.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _plot_curves(sweep: Sweep, out: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [p for p in sweep.points if p.run_dir and (p.run_dir / "metrics.jsonl").is_file()]
    if not runs:
        return None
    panels = [("nll", "token NLL (unweighted)"), ("hard_token_frac", "hard-token fraction (p < 0.2)"),
              ("tau", "tau (median token loss)")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    colours = plt.get_cmap("tab20")
    for k, point in enumerate(runs):
        records = [json.loads(line) for line in (point.run_dir / "metrics.jsonl").read_text().splitlines() if line]
        records = [r for r in records if "nll" in r]
        for ax, (key, _) in zip(axes, panels):
            ax.plot([r["step"] for r in records], [r[key] for r in records], color=colours(k % 20), lw=1.2,
                    label=point.name)
    for ax, (_, title) in zip(axes, panels):
        ax.set_title(title)
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    path = out / "training_curves.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def guidelines(sweep: Sweep) -> list[str]:
    """The paper's two claims, stated as measured (including when the data contradicts them)."""
    lines = []
    base_dom = sweep.domain_score(sweep.base) if sweep.base else None
    base_gen = sweep.general_average(sweep.base) if sweep.base else None
    groups = {(p.method, p.learning_rate): p for p in grouped_points(sweep) if p.alpha is None}
    if base_gen is None or base_dom is None:
        return ["The base model has no complete evaluation, so the guidelines cannot be checked."]

    def change(point):
        return 100 * (sweep.domain_score(point) - base_dom), 100 * (sweep.general_average(point) - base_gen)

    for method in sorted({m for m, _ in groups}):
        rates = sorted(lr for m, lr in groups if m == method)
        if len(rates) < 2:
            continue
        small, large = groups[(method, rates[0])], groups[(method, rates[-1])]
        d_small, g_small = change(small)
        d_large, g_large = change(large)
        verdict = ("consistent with guideline 1 (the smaller learning rate kept more general ability)"
                   if g_small > g_large else
                   "not consistent with guideline 1 here (the smaller learning rate did not keep more general ability)")
        lines.append(
            f"- **{method}, learning rate**: at lr {rates[0]:g} the general average changed {g_small:+.1f} points "
            f"(domain {d_small:+.1f}); at lr {rates[-1]:g} it changed {g_large:+.1f} (domain {d_large:+.1f}): "
            f"{verdict}."
        )
    for lr in sorted({lr for _, lr in groups}):
        if ("talr", lr) in groups and ("sft", lr) in groups:
            talr, sft = groups[("talr", lr)], groups[("sft", lr)]
            d_t, g_t = change(talr)
            d_s, g_s = change(sft)
            kept, cost = g_t - g_s, d_s - d_t
            se = sweep.average_stderr(talr, sweep.general_scores)
            se2 = sweep.average_stderr(sft, sweep.general_scores)
            noise = 100 * math.sqrt(se * se + se2 * se2) if se is not None and se2 is not None else None
            significance = (f" (the difference is {'within' if abs(kept) < 2 * noise else 'beyond'} two standard "
                            f"errors, {2 * noise:.1f} points)" if noise is not None else "")
            verdict = ("consistent with guideline 2" if kept > 0 and cost <= max(kept, 0) else
                       "consistent with guideline 2 on general ability but at a larger domain cost" if kept > 0 else
                       "not consistent with guideline 2 here")
            lines.append(
                f"- **TALR vs SFT at lr {lr:g}**: TALR kept {kept:+.1f} points more general average than SFT "
                f"for {cost:+.1f} points less domain score{significance}: {verdict}."
            )
    return lines or ["Not enough grid points (two learning rates of one method, or TALR and SFT at one rate)."]


def write_report(sweep_dir: str | Path) -> Path:
    sweep = load_sweep(sweep_dir)
    out = sweep.root
    scatter = _plot_scatter(sweep, out)
    curves = _plot_curves(sweep, out)
    config = yaml.safe_load((out / "sweep.yaml").read_text())
    train = config.get("train", {})
    parts = [
        f"# Sweep report: {config.get('name', out.name)}",
        "",
        f"Base model `{train.get('model', 'smollm2-135m-instruct')}`; training data `{train.get('data', {}).get('train')}`; "
        f"evaluation limit {config['eval'].get('limit')} items per task; "
        f"{len(sweep.points)} finished points. Scores in percent ± one standard error (binomial, per task; "
        "the general average's error combines them). Metrics: "
        + ", ".join(f"{t}: `{m}`" for t, m in sweep.metric_names.items()) + ".",
        "",
        "## The paper's guidelines, as measured",
        "",
        *guidelines(sweep),
        "",
        "## Results by learning rate",
        "",
        tables(sweep),
    ]
    if scatter:
        parts += ["## Domain vs general", "", f"![trade-off]({scatter.name})", ""]
    if curves:
        parts += ["## Training curves", "", f"![training curves]({curves.name})", ""]
    path = out / "report.md"
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(parts) + "\n")
    tmp.replace(path)
    return path
