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

from talr.data.rows import iter_jsonl


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

    def score_tasks(self, tasks: list[str]) -> list[str]:
        return [t for t in tasks if self.higher_is_better.get(t, True)]

    def bits_tasks(self, tasks: list[str]) -> list[str]:
        return [t for t in tasks if not self.higher_is_better.get(t, True)]

    def axis(self, point: Point, side: str, kind: str) -> float | None:
        """One number per point and side ("domain"/"general"), larger is better.

        ``kind="score"``: the mean of the side's accuracy-like tasks. ``kind="bits"``: the mean code-length change
        against the base model with the sign flipped, -Delta L in bits/token (domain: the gain; general: minus the
        damage).
        """
        tasks = self.domain if side == "domain" else self.general
        if kind == "score":
            values = [point.scores.get(t) for t in self.score_tasks(tasks)]
        else:
            if self.base is None:
                return None
            values = [None if point.scores.get(t) is None or self.base.scores.get(t) is None
                      else self.base.scores[t] - point.scores[t] for t in self.bits_tasks(tasks)]
        if not values or any(v is None for v in values):
            return None
        return sum(values) / len(values)

    def axis_stderr(self, point: Point, side: str, kind: str) -> float | None:
        tasks = self.domain if side == "domain" else self.general
        tasks = self.score_tasks(tasks) if kind == "score" else self.bits_tasks(tasks)
        errors = [point.stderrs.get(t) for t in tasks]
        if not errors or any(e is None for e in errors):
            return None
        return math.sqrt(sum(e * e for e in errors)) / len(errors)

    def kinds(self) -> list[str]:
        """The axis kinds both sides have tasks for: accuracy first, code length second."""
        return [k for k in ("score", "bits")
                if (self.score_tasks if k == "score" else self.bits_tasks)(self.domain)
                and (self.score_tasks if k == "score" else self.bits_tasks)(self.general)]


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


def _item_scores(point: Point, task: str, metric: str) -> dict[str, tuple[float, float]] | None:
    """Per item of a point's samples file: (value, tokens) — the metric's value (bits and token count for code
    length, weight 1 otherwise); None when the file is missing."""
    if point.run_dir is None:
        return None
    path = point.run_dir / "eval" / f"samples_{task}.jsonl"
    if not path.is_file():
        return None
    items = {}
    for _, row in iter_jsonl(path):
        scores = row.get("scores") or {}
        if "bits" in scores:
            if scores["bits"] is not None:
                items[str(row["doc_id"])] = (float(scores["bits"]), float(scores["n_tokens"]))
        elif isinstance(scores.get(metric), (int, float)):
            items[str(row["doc_id"])] = (float(scores[metric]), 1.0)
    return items


def paired_stderr(sweep: Sweep, a: Point, b: Point, side: str, kind: str) -> float | None:
    """Standard error of the difference of one axis between two points evaluated on the same items: per task, the
    per-item differences (code length: the difference of pooled bits per token, a ratio of sums with the shared
    token counts) — much smaller than combining the two points' own errors, which ignores that they share items.
    None where a samples file is missing (e.g. seed-averaged points)."""
    from talr.stats import ratio_of_sums_with_se

    tasks = sweep.domain if side == "domain" else sweep.general
    tasks = sweep.score_tasks(tasks) if kind == "score" else sweep.bits_tasks(tasks)
    errors = []
    for task in tasks:
        metric = sweep.metric_names.get(task, "")
        items_a, items_b = _item_scores(a, task, metric), _item_scores(b, task, metric)
        if not items_a or not items_b:
            return None
        shared = sorted(set(items_a) & set(items_b))
        if len(shared) < 2:
            return None
        diff = [items_a[k][0] - items_b[k][0] for k in shared]
        weight = [items_a[k][1] for k in shared]
        _, se = ratio_of_sums_with_se(diff, weight)
        errors.append(se)
    return math.sqrt(sum(e * e for e in errors)) / len(errors) if errors else None


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
    merged.run_dir = first.run_dir if len(points) == 1 else None  # its per-item samples, for paired errors
    return merged


def grouped_points(sweep: Sweep) -> list[Point]:
    groups: dict[tuple, list[Point]] = defaultdict(list)
    for point in sweep.points:
        groups[(point.method, point.learning_rate, point.alpha)].append(point)
    return [_aggregate_seeds(sweep, group) for group in groups.values()]


KIND_LABEL = {
    "score": ("domain score (%)", "general average (%)", 100.0),
    "bits": ("domain gain −ΔL(P2) (bits/token)", "general change −ΔL(P1) (bits/token; < 0 = damage)", 1.0),
}


def tables(sweep: Sweep) -> str:
    """One table per learning rate: every task's value ± stderr, the side averages and their change vs the base."""
    base = sweep.base
    header = ["method", "seeds"]
    header += [f"{t} (domain{', bits/token' if t in sweep.bits_tasks(sweep.domain) else ''})" for t in sweep.domain]
    header += [f"{t}{' (bits/token)' if t in sweep.bits_tasks(sweep.general) else ''}" for t in sweep.general]
    kinds = sweep.kinds()
    if "score" in kinds:
        header += ["general avg (%)", "Δ domain (pts)", "Δ general avg (pts)"]
    if "bits" in kinds:
        header += ["−ΔL domain", "−ΔL general"]
    lines = []
    by_lr: dict[float | None, list[Point]] = defaultdict(list)
    for point in grouped_points(sweep):
        by_lr[point.learning_rate].append(point)
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
                cells.append(_fmt(point.scores.get(task), point.stderrs.get(task), percent=percent))
            if "score" in kinds:
                cells.append(_fmt(sweep.axis(point, "general", "score"), sweep.axis_stderr(point, "general", "score")))
                for side in ("domain", "general"):
                    cells.append("—" if is_base or base is None else
                                 _delta(sweep.axis(point, side, "score"), sweep.axis(base, side, "score")))
            if "bits" in kinds:
                for side in ("domain", "general"):
                    value = sweep.axis(point, side, "bits")
                    cells.append("—" if is_base or value is None else f"{value:+.3f}")
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


def _axis_points(sweep: Sweep, kind: str) -> tuple[list[Point], list[tuple[float, float]]]:
    """The (seed-averaged) points with both axes, and their (domain, general) coordinates in display units."""
    scale = KIND_LABEL[kind][2]
    points = [p for p in grouped_points(sweep)
              if sweep.axis(p, "domain", kind) is not None and sweep.axis(p, "general", kind) is not None]
    return points, [(scale * sweep.axis(p, "domain", kind), scale * sweep.axis(p, "general", kind)) for p in points]


def pareto_names(sweep: Sweep, kind: str) -> list[str]:
    """Names of the points on the domain-vs-general Pareto front, by increasing domain score."""
    points, xy = _axis_points(sweep, kind)
    return [points[i].name for i in pareto_front(xy)]


def _plot_scatter(sweep: Sweep, out: Path, kind: str) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    x_label, y_label, scale = KIND_LABEL[kind]
    points, xy = _axis_points(sweep, kind)
    if not points:
        return None
    methods = sorted({p.method for p in points})
    rates = sorted({p.learning_rate for p in points if p.learning_rate is not None})
    colours = plt.get_cmap("tab10")
    markers = ["o", "s", "^", "D", "v", "P", "X", "*"]
    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    # Points at the same coordinates (common at small evaluation sizes) are drawn as concentric markers, the first
    # largest, so every method stays visible without moving any point.
    coincident: dict[tuple[float, float], int] = defaultdict(int)
    for x, y in xy:
        coincident[(round(x, 9), round(y, 9))] += 1
    drawn: dict[tuple[float, float], int] = defaultdict(int)
    for p, (x, y) in zip(points, xy):
        key = (round(x, 9), round(y, 9))
        size = 70 + 90 * (coincident[key] - 1 - drawn[key])
        drawn[key] += 1
        marker = markers[rates.index(p.learning_rate) % len(markers)] if p.learning_rate in rates else "o"
        ax.scatter(x, y, color=colours(methods.index(p.method) % 10), marker=marker, s=size, edgecolor="black",
                   linewidth=0.5, zorder=3 + drawn[key] / 10)
    front = pareto_front(xy)
    ax.plot([xy[i][0] for i in front], [xy[i][1] for i in front], "--", color="grey", lw=1, zorder=2)
    base_xy = None
    if sweep.base is not None:
        bx, by = sweep.axis(sweep.base, "domain", kind), sweep.axis(sweep.base, "general", kind)
        if bx is not None and by is not None:
            base_xy = (scale * bx, scale * by)
            # beneath the points, so a run that did not move from the base stays visible
            ax.scatter(*base_xy, marker="*", s=260, color="gold", edgecolor="black", zorder=2.5)
    handles = [Line2D([], [], color=colours(i % 10), marker="o", ls="", label=m) for i, m in enumerate(methods)]
    handles += [Line2D([], [], color="black", marker=markers[i % len(markers)], ls="", mfc="white",
                       label=f"lr {r:g}") for i, r in enumerate(rates)]
    handles.append(Line2D([], [], color="grey", ls="--", label="Pareto front"))
    if base_xy is not None:
        handles.append(Line2D([], [], color="gold", marker="*", ls="", markersize=14, markeredgecolor="black",
                              label="base model"))
    ax.legend(handles=handles, loc="best", fontsize=8, framealpha=0.9)
    tasks_x = sweep.score_tasks(sweep.domain) if kind == "score" else sweep.bits_tasks(sweep.domain)
    tasks_y = sweep.score_tasks(sweep.general) if kind == "score" else sweep.bits_tasks(sweep.general)
    ax.set_xlabel(f"{x_label}\n[{', '.join(tasks_x)}]")
    ax.set_ylabel(f"{y_label}\n[{', '.join(tasks_y)}]")
    ax.set_title("Domain gain vs general capability (one point per method x learning rate)")
    if kind == "bits":
        ax.axhline(0, color="black", lw=0.6)
        ax.axvline(0, color="black", lw=0.6)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out / f"tradeoff_{'accuracy' if kind == 'score' else 'codelength'}.png"
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


def _plot_probes(sweep: Sweep, out: Path) -> Path | None:
    from talr.callbacks import PROBES_FILE, plot_probes

    runs = {p.name: p.run_dir for p in sweep.points if p.run_dir and (p.run_dir / PROBES_FILE).is_file()}
    return plot_probes(runs, out / "probes.png") if runs else None


def guidelines(sweep: Sweep) -> list[str]:
    """The paper's two claims, stated as measured (including when the data contradicts them), on each axis kind."""
    lines = []
    if sweep.base is None:
        return ["The base model has no complete evaluation, so the guidelines cannot be checked."]
    groups = {(p.method, p.learning_rate): p for p in grouped_points(sweep) if p.alpha is None}
    for kind in sweep.kinds():
        _, _, scale = KIND_LABEL[kind]
        unit = "points" if kind == "score" else "bits/token"
        fmt = "{:+.1f}" if kind == "score" else "{:+.3f}"
        base_dom = sweep.axis(sweep.base, "domain", kind) if kind == "score" else 0.0
        base_gen = sweep.axis(sweep.base, "general", kind) if kind == "score" else 0.0
        what = ("general average / domain score (accuracy)" if kind == "score"
                else "general / domain code length (−ΔL, bits per token)")
        lines.append(f"*Measured on {what}:*")

        def change(point, side):
            value = sweep.axis(point, side, kind)
            ref = base_dom if side == "domain" else base_gen
            return None if value is None or ref is None else scale * (value - ref)

        def noise(a, b, difference):
            """The clause on whether a general difference between two points exceeds two standard errors: paired
            over the shared items when both points' samples are there, else from the two points' own errors."""
            se, how = paired_stderr(sweep, a, b, "general", kind), "paired over the same items"
            if se is None:
                se_a, se_b = sweep.axis_stderr(a, "general", kind), sweep.axis_stderr(b, "general", kind)
                if se_a is None or se_b is None:
                    return "", False
                se, how = math.sqrt(se_a * se_a + se_b * se_b), "unpaired"
            two_se = 2 * scale * se
            within = abs(difference) <= two_se  # a zero difference with zero spread is no difference
            return (f" (the general difference is {'within' if within else 'beyond'} two standard errors, "
                    f"{fmt.format(two_se).lstrip('+')} {unit}, {how})"), within

        for method in sorted({m for m, _ in groups}):
            rates = sorted(lr for m, lr in groups if m == method)
            if len(rates) < 2:
                continue
            small, large = groups[(method, rates[0])], groups[(method, rates[-1])]
            d_small, g_small = change(small, "domain"), change(small, "general")
            d_large, g_large = change(large, "domain"), change(large, "general")
            if None in (d_small, g_small, d_large, g_large):
                continue
            significance, within_noise = noise(small, large, g_small - g_large)
            if within_noise:
                verdict = "no measurable difference at this evaluation size"
            elif g_small > g_large:
                verdict = "consistent with guideline 1: the smaller learning rate kept more general ability"
            else:
                verdict = ("not consistent with guideline 1 here: the smaller learning rate did not keep more "
                           "general ability")
            lines.append(
                f"- **{method}, learning rate**: at lr {rates[0]:g} the general side changed {fmt.format(g_small)} "
                f"{unit} (domain {fmt.format(d_small)}); at lr {rates[-1]:g} it changed {fmt.format(g_large)} "
                f"(domain {fmt.format(d_large)}){significance}: {verdict}."
            )
        for lr in sorted({lr for _, lr in groups}):
            if ("talr", lr) not in groups or ("sft", lr) not in groups:
                continue
            talr, sft = groups[("talr", lr)], groups[("sft", lr)]
            values = [change(talr, "general"), change(sft, "general"), change(sft, "domain"), change(talr, "domain")]
            if None in values:
                continue
            kept, cost = values[0] - values[1], values[2] - values[3]
            significance, within_noise = noise(talr, sft, kept)
            if within_noise:
                verdict = "no measurable difference at this evaluation size"
            elif kept > 0:
                verdict = ("consistent with guideline 2" if cost <= kept else
                           "TALR kept more general ability but gave up more domain gain than it kept")
            else:
                verdict = "not consistent with guideline 2 here: TALR kept less general ability than SFT"
            lines.append(
                f"- **TALR vs SFT at lr {lr:g}**: TALR kept {fmt.format(kept)} {unit} more on the general side than "
                f"SFT for {fmt.format(cost)} {unit} less domain gain{significance}: {verdict}."
            )
    if len(lines) == len(sweep.kinds()):  # only the headings: nothing was comparable
        lines.append("Not enough grid points (two learning rates of one method, or TALR and SFT at one rate).")
    return lines


def signal_agreement(sweep: Sweep) -> list[str]:
    """How well the cheap general signal (code length, no generation) ranks the points like the generation-based
    general scores do: Spearman's rho over every evaluated point, the base model included (its -Delta L is 0)."""
    from talr.stats import spearman

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
        rho, p_value = spearman([a for a, _ in pairs], [b for _, b in pairs])
        if math.isnan(rho):
            lines.append(f"- {label}: constant over the points, no ranking to compare.")
            continue
        lines.append(f"- {label}: Spearman rho = {rho:+.2f} over {len(pairs)} points (permutation p = {p_value:.3f}).")
    if not lines:
        return []
    return ["General code-length change (−ΔL on " + ", ".join(sweep.bits_tasks(sweep.general)) + ", no generation) "
            "against the generation-based general scores, ranked over the points (+1: the cheap signal orders the "
            "points exactly as the benchmark does):", "", *lines]


def write_report(sweep_dir: str | Path) -> Path:
    sweep = load_sweep(sweep_dir)
    out = sweep.root
    scatters = [path for kind in sweep.kinds() if (path := _plot_scatter(sweep, out, kind)) is not None]
    curves = _plot_curves(sweep, out)
    probes = _plot_probes(sweep, out)
    config = yaml.safe_load((out / "sweep.yaml").read_text())
    train = config.get("train", {})
    parts = [
        f"# Sweep report: {config.get('name', out.name)}",
        "",
        f"Base model `{train.get('model', 'smollm2-135m-instruct')}`; training data `{train.get('data', {}).get('train')}`; "
        f"evaluation: {'all' if config['eval'].get('limit') is None else config['eval']['limit']} items per task; "
        f"{len(sweep.points)} finished points. Accuracies in percent and code lengths in bits per token, each ± one "
        "standard error (binomial or bootstrap, per task; an average's error combines them). −ΔL is the code-length "
        "change against the base model with the sign flipped (positive = the model compresses that text better). "
        "Metrics: "
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
    agreement = signal_agreement(sweep)
    if agreement:
        parts += ["## Does the cheap code-length signal track the general scores?", "", *agreement, ""]
    if scatters:
        parts += ["## Domain vs general", ""] + [f"![trade-off]({path.name})" for path in scatters] + [""]
        parts += [f"Pareto front ({'accuracy' if kind == 'score' else 'code length'}): "
                  + ", ".join(f"`{name}`" for name in pareto_names(sweep, kind)) + "." for kind in sweep.kinds()]
        parts += [""]
    if curves:
        parts += ["## Training curves", "", f"![training curves]({curves.name})", ""]
    if probes:
        parts += ["## Training-time probes", "",
                  ("Code length on the fixed general and held-out domain probe sets every `probes.every_n_steps`, and "
                   "the TALR weight of the tokens that were hard (p < 0.2) at the start, per epoch: the paper's "
                   "implicit curriculum (`talr.callbacks`)."), "", f"![probes]({probes.name})", ""]
    path = out / "report.md"
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(parts) + "\n")
    tmp.replace(path)
    return path
