"""The report's figures: the domain-vs-general scatter with its Pareto front, training curves and probes."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from talr.io import read_jsonl_records
from talr.report import KIND_LABEL, axis_points, front_indices, off_front
from talr.report_data import Sweep, compare, side_kind
from talr.report_verdicts import method_curve
from talr.run_dir import RunDir

PLOT_NAME = {"score": "accuracy", "bits": "codelength", "bits_score": "codelength_accuracy"}  # tradeoff_<name>.png


def plot_scatter(sweep: Sweep, out: Path, kind: str) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    x_label, y_label = KIND_LABEL[kind]
    points, xy = axis_points(sweep, kind)
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
    if sweep.base is not None:  # error bars: one standard error of each side's change from the base (paired)
        for p, (x, y) in zip(points, xy):
            errors = [compare(sweep, p, sweep.base, side, kind) for side in ("domain", "general")]
            if None not in errors:
                ax.errorbar(x, y, xerr=sweep.side_scale("domain", kind) * errors[0].stderr,
                            yerr=sweep.side_scale("general", kind) * errors[1].stderr, fmt="none",
                            ecolor=colours(methods.index(p.method) % 10), elinewidth=0.8, alpha=0.6, zorder=2.8)
    front = front_indices(sweep, kind)
    excluded = off_front(sweep, kind)
    for p, (x, y) in zip(points, xy):  # crossed out: a domain "gain" at/below the majority baseline, or collapsed
        if p.name in excluded:
            ax.scatter(x, y, marker="x", s=120, color="red", linewidth=1.5, zorder=6)
    ax.plot([xy[i][0] for i in front], [xy[i][1] for i in front], "--", color="grey", lw=1, zorder=2)
    base_xy = None
    if sweep.base is not None:
        bx, by = sweep.axis(sweep.base, "domain", kind), sweep.axis(sweep.base, "general", kind)
        if bx is not None and by is not None:
            base_xy = (sweep.side_scale("domain", kind) * bx, sweep.side_scale("general", kind) * by)
            # beneath the points, so a run that did not move from the base stays visible
            ax.scatter(*base_xy, marker="*", s=260, color="gold", edgecolor="black", zorder=2.5)
            where = {p.name: point_xy for p, point_xy in zip(points, xy)}
            for i, method in enumerate(methods):  # the curves the matched-gain verdicts read off, from the base
                names = [n for n in method_curve(sweep, method, kind).names if n in where]
                if names:
                    line = [base_xy, *(where[n] for n in names)]
                    ax.plot([x for x, _ in line], [y for _, y in line], "-", color=colours(i % 10), lw=1.0,
                            alpha=0.7, zorder=2.2)
    handles = [Line2D([], [], color=colours(i % 10), marker="o", ls="", label=m) for i, m in enumerate(methods)]
    handles += [Line2D([], [], color="black", marker=markers[i % len(markers)], ls="", mfc="white",
                       label=f"lr {r:g}") for i, r in enumerate(rates)]
    handles.append(Line2D([], [], color="grey", ls="--", label="Pareto front"))
    if base_xy is not None:
        handles.append(Line2D([], [], color="black", ls="-", lw=1.0, label="a method's curve (matched gain)"))
    if excluded:
        handles.append(Line2D([], [], color="red", marker="x", ls="",
                              label="≤ majority or collapsed (off the front)"))
    if base_xy is not None:
        handles.append(Line2D([], [], color="gold", marker="*", ls="", markersize=14, markeredgecolor="black",
                              label="base model"))
    ax.legend(handles=handles, loc="best", fontsize=8, framealpha=0.9)
    ax.set_xlabel(f"{x_label}\n[{', '.join(sweep.side_tasks('domain', kind))}]")
    ax.set_ylabel(f"{y_label}\n[{', '.join(sweep.side_tasks('general', kind))}]")
    ax.set_title("Domain gain vs general capability (one point per method x learning rate; bars ±1 SE)", fontsize=10)
    if side_kind("domain", kind) == "bits":  # a change against the base: 0 is the base
        ax.axvline(0, color="black", lw=0.6)
    if side_kind("general", kind) == "bits":
        ax.axhline(0, color="black", lw=0.6)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out / f"tradeoff_{PLOT_NAME[kind]}.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_curves(sweep: Sweep, out: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [p for p in sweep.points if p.run_dir and RunDir(p.run_dir).metrics_file.is_file()]
    if not runs:
        return None
    panels = [("nll", "token NLL (unweighted)"), ("hard_token_frac", "hard-token fraction (p < 0.2)"),
              ("tau", "tau (median token loss)")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    colours = plt.get_cmap("tab20")
    for k, point in enumerate(runs):
        records = read_jsonl_records(RunDir(point.run_dir).metrics_file)
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


def plot_probes(sweep: Sweep, out: Path) -> Path | None:
    from talr.callbacks import plot_probes as draw

    runs = {p.name: p.run_dir for p in sweep.points if p.run_dir and RunDir(p.run_dir).probes_file.is_file()}
    return draw(runs, out / "probes.png") if runs else None


