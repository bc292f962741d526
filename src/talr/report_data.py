"""What ``talr report`` reads: a sweep's points, their per-item samples and probes, seed-averaged errors, paired
comparisons (the per-task sanity baselines: :mod:`talr.report_baselines`). Two layouts are read the same way:

* a sweep directory made by ``talr sweep``: ``base/eval/``, ``runs/<point>/{point.json, eval/, probes.jsonl}``;
* a committed record (:mod:`talr.sweep_record`): ``results.json`` holding every point's results (and probes) and
  ``samples.jsonl.gz`` holding every point's per-item samples. A record without the samples file still reports, with
  unpaired errors and without the baselines that need per-item predictions, and says so.

Errors: a task's error for a point averaged over seeds is the variance-components error of
:func:`talr.stats.seed_averaged` (item sampling plus the between-seed spread) when per-item samples exist, else
:func:`talr.stats.seed_averaged_from_summaries` (conservative); with one seed it is the item-sampling error alone.
Code length (bits per token, a pooled ratio) enters through :func:`talr.stats.ratio_linearized`.
"""

from __future__ import annotations

import gzip
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from talr import stats
from talr.data.rows import iter_jsonl
from talr.evaluation.metrics import stderr_key
from talr.io import read_json
from talr.run_dir import RunDir

RECORD_RESULTS = "results.json"
RECORD_SAMPLES = "samples.jsonl.gz"
# run.json keys a record keeps beside each point's results: the training's cost and machine (talr.report_cost)
RUN_FACTS = ("cpu_time_s", "wall_time_s", "train_runtime_s", "global_steps", "resumed_from_step", "torch_threads",
             "hardware", "precision", "versions", "git", "peak_rss_mib")
BASELINE_METRICS = ("chance", "majority")  # results.json entries the evaluator adds next to a task's own metrics


@dataclass
class Point:
    name: str
    method: str
    learning_rate: float | None
    seed: int | None  # for a seed-averaged point: the number of seeds behind it
    alpha: float | None
    scores: dict[str, float] = field(default_factory=dict)   # task -> primary metric value
    stderrs: dict[str, float] = field(default_factory=dict)
    run_dir: Path | None = None
    results: dict[str, dict] = field(default_factory=dict)  # task -> every results.json metric of the task
    samples: dict[str, list[dict]] = field(default_factory=dict)  # task -> per-item records
    probes: list[dict] = field(default_factory=list)  # the run's code-length probe records
    members: list[Point] = field(default_factory=list)  # the seeds behind a seed-averaged point
    timings: dict[str, dict] = field(default_factory=dict)  # task -> the evaluation's task_timings entry
    n_items: dict[str, int] = field(default_factory=dict)  # task -> items evaluated
    hardware: dict = field(default_factory=dict)  # the evaluation's hardware facts
    run: dict = field(default_factory=dict)  # the training run's run.json facts (RUN_FACTS)


@dataclass
class Sweep:
    root: Path
    config: dict
    domain: list[str]
    general: list[str]
    higher_is_better: dict[str, bool]
    metric_names: dict[str, str]
    generation_budgets: dict[str, int]
    base: Point | None
    points: list[Point]
    layout: str  # "runs" (a sweep directory) or "record"

    @property
    def has_samples(self) -> bool:
        return any(p.samples for p in [*(p for p in [self.base] if p), *self.points])

    def side_tasks(self, side: str, kind: str) -> list[str]:
        tasks = self.domain if side == "domain" else self.general
        return self.score_tasks(tasks) if side_kind(side, kind) == "score" else self.bits_tasks(tasks)

    def side_scale(self, side: str, kind: str) -> float:
        """Display units per axis unit: 100 (points) for accuracy, 1 for code length."""
        return 100.0 if side_kind(side, kind) == "score" else 1.0

    def change(self, point: Point, side: str, kind: str) -> float | None:
        """The side's change against the base in display units (larger is better): points of accuracy, or −ΔL in
        bits (the code-length axis is already a change against the base)."""
        value = self.axis(point, side, kind)
        if value is None or side_kind(side, kind) == "bits":
            return value
        reference = self.axis(self.base, side, kind) if self.base is not None else None
        return None if reference is None else 100.0 * (value - reference)

    def code_length_unit(self, task: str) -> str:
        """The unit of a code-length task's primary metric (general_text: bits per byte)."""
        return "bits/byte" if self.metric_names.get(task, "").startswith("bits_per_byte") else "bits/token"

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
        if side_kind(side, kind) == "score":
            values = [point.scores.get(t) for t in self.side_tasks(side, kind)]
        else:
            if self.base is None:
                return None
            values = [None if point.scores.get(t) is None or self.base.scores.get(t) is None
                      else self.base.scores[t] - point.scores[t] for t in self.side_tasks(side, kind)]
        if not values or any(v is None for v in values):
            return None
        return sum(values) / len(values)

    def axis_stderr(self, point: Point, side: str, kind: str) -> float | None:
        """The side average's error: each task's error (seed-averaged where the point has seeds), tasks taken as
        independent."""
        errors = [task_stderr(self, point, t) for t in self.side_tasks(side, kind)]
        if not errors or any(e is None for e in errors):
            return None
        return math.sqrt(sum(e * e for e in errors)) / len(errors)

    def kinds(self) -> list[str]:
        """The axis kinds both sides have tasks for: accuracy first, code length second, then domain code length
        against general accuracy where the domain has no accuracy (a domain a small model scores ~0 on)."""
        kinds = [k for k in ("score", "bits") if self.side_tasks("domain", k) and self.side_tasks("general", k)]
        if not self.side_tasks("domain", "score") and self.side_tasks("domain", "bits") and self.side_tasks(
                "general", "score"):
            kinds.append("bits_score")
        return kinds


# axis kind -> the kind of its (domain, general) sides: accuracy ("score") or code length ("bits")
AXIS_KINDS = {"score": ("score", "score"), "bits": ("bits", "bits"), "bits_score": ("bits", "score")}


def side_kind(side: str, kind: str) -> str:
    return AXIS_KINDS[kind][0 if side == "domain" else 1]


def _primary(metrics: dict, config: dict, higher_table: dict, task: str) -> tuple[str, float, float | None, bool]:
    keys = [k for k, v in metrics.items() if k != "alias" and "_stderr" not in k.split(",")[0]
            and k.split(",")[0] not in BASELINE_METRICS and isinstance(v, (int, float))]
    key = config.get("primary_metric") or keys[0]
    stderr = metrics.get(stderr_key(key))
    metric = key.partition(",")[0]
    higher = higher_table.get(metric)
    if higher is None:  # a record without higher_is_better: the task's own declaration
        from talr.evaluation.registry import get_task

        higher = dict((k.partition(",")[0], v) for k, v in get_task(task).metrics.items()).get(metric, True)
    return key, float(metrics[key]), (float(stderr) if isinstance(stderr, (int, float)) else None), higher


def _point_from_results(results: dict, meta: dict, run_dir: Path | None, sweep_info: dict) -> Point:
    point = Point(meta.get("name", "base"), meta.get("method", "base"), meta.get("learning_rate"), meta.get("seed"),
                  meta.get("alpha"), run_dir=run_dir)
    for task, metrics in results.get("results", {}).items():
        key, value, stderr, higher = _primary(metrics, results.get("configs", {}).get(task, {}),
                                              results.get("higher_is_better", {}).get(task, {}), task)
        point.scores[task], point.results[task] = value, metrics
        if stderr is not None:
            point.stderrs[task] = stderr
        sweep_info["higher"][task], sweep_info["names"][task] = higher, key
        budget = results.get("configs", {}).get(task, {}).get("generation_kwargs", {}).get("max_new_tokens")
        if budget is not None:
            sweep_info["budgets"][task] = int(budget)
    point.timings = results.get("task_timings") or {}
    point.n_items = {task: int(n["effective"]) for task, n in (results.get("n-samples") or {}).items()
                     if isinstance(n, dict) and "effective" in n}
    point.hardware = (results.get("config") or {}).get("hardware") or {}
    return point


def _slim(record: dict) -> dict:
    """The part of a sample record the statistics use (prompts and raw outputs stay in the run's own files)."""
    out = {k: record.get(k) for k in ("doc_id", "target", "extracted", "scores")}
    if isinstance(record.get("prompt"), list):  # log-likelihood tasks: the (context, continuation) pairs
        out["n_choices"] = len(record["prompt"])
    return out


def read_run_dir(directory: Path, meta: dict, info: dict) -> Point | None:
    run = RunDir(directory)
    if not run.results_file.is_file():
        return None
    point = _point_from_results(read_json(run.results_file), meta, directory, info)
    for task in point.scores:
        path = run.samples_file(task)
        if path.is_file():
            point.samples[task] = [_slim(row) for _, row in iter_jsonl(path)]
    if run.probes_file.is_file():
        point.probes = [r for _, r in iter_jsonl(run.probes_file) if r.get("probe") == "codelength"]
    point.run = {key: value for key, value in run.read_record().items() if key in RUN_FACTS}
    return point


def _read_record(root: Path, info: dict) -> tuple[Point | None, list[Point]]:
    record = read_json(root / RECORD_RESULTS)
    samples: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    if (root / RECORD_SAMPLES).is_file():
        with gzip.open(root / RECORD_SAMPLES, "rt", encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                try:
                    row = json.loads(line)
                    samples[row.pop("point")][row.pop("task")].append(row)
                except (json.JSONDecodeError, KeyError) as error:
                    raise ValueError(f"{root / RECORD_SAMPLES}: line {number}: {error}") from None
    base, points = None, []
    for name, entry in record.items():
        raw = entry["results"] if "point" in entry else entry  # the first record kept the base bare
        results = raw if "results" in raw else {"results": raw}  # and only each point's task metrics
        meta = entry.get("point", {"name": name, "method": "base"})
        point = _point_from_results(results, meta, None, info)
        point.samples = dict(samples.get(name, {}))
        point.probes = entry.get("probes", [])
        point.run = entry.get("run", {})
        if name == "base":
            base = point
        else:
            points.append(point)
    return base, points


def load_sweep(root: str | Path) -> Sweep:
    root = Path(root)
    config_path = root / "sweep.yaml"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found: is {root} a sweep directory (made by `talr sweep`)?")
    config = yaml.safe_load(config_path.read_text())
    info: dict = {"higher": {}, "names": {}, "budgets": {}}
    if (root / "runs").is_dir() or RunDir(root / "base").eval_dir.is_dir():
        layout = "runs"
        base = read_run_dir(root / "base", {"name": "base", "method": "base"}, info)
        points = [p for path in sorted((root / "runs").glob("*/point.json"))
                  if (p := read_run_dir(path.parent, read_json(path), info)) is not None]
    elif (root / RECORD_RESULTS).is_file():
        layout = "record"
        base, points = _read_record(root, info)
    else:
        raise FileNotFoundError(f"{root} holds neither runs/ nor {RECORD_RESULTS}: nothing to report")
    budgets = info["budgets"]
    cap = config.get("eval", {}).get("max_new_tokens")
    from talr.evaluation.registry import get_task

    domain, general = _record_tasks(config["eval"], [p for p in (base, *points) if p is not None])
    for task in [*domain, *general]:  # panels stand for their tasks
        if task not in budgets and get_task(task).kind == "generate":  # a record without the task configs
            budgets[task] = min(get_task(task).max_new_tokens, cap) if cap else get_task(task).max_new_tokens
    return Sweep(root, config, domain, general, info["higher"], info["names"], budgets, base, points, layout)


def _record_tasks(eval_config: dict, points: list[Point]) -> tuple[list[str], list[str]]:
    """The domain and general tasks of a sweep's ``eval`` section, a panel standing for the tasks the record
    evaluated under it (what it held when the sweep ran: a panel's definition may change later), else for its
    current tasks."""
    from talr.evaluation.registry import PANELS, expand_tasks

    evaluated = list(dict.fromkeys(task for point in points for task in point.results))
    named = {name.partition(":")[0] for side in ("domain", "general") for name in eval_config.get(side) or []}
    sides = []
    for side in ("domain", "general"):
        tasks: list[str] = []
        for name in eval_config.get(side) or []:
            if name in PANELS and evaluated:
                tasks += [t for t in evaluated if t not in named]
            else:
                tasks += [task for task, _ in expand_tasks([name])]
        sides.append(list(dict.fromkeys(tasks)))
    return sides[0], sides[1]


# ---------------------------------------------------------------------------------------------------------------
# Seeds and per-item values


def grouped_points(sweep: Sweep) -> list[Point]:
    """One point per (method, learning rate, alpha): the mean over its seeds, its members kept for the errors."""
    groups: dict[tuple, list[Point]] = defaultdict(list)
    for point in sweep.points:
        groups[(point.method, point.learning_rate, point.alpha)].append(point)
    return [_aggregate_seeds(group) for group in groups.values()]


def _aggregate_seeds(points: list[Point]) -> Point:
    first = points[0]
    if len(points) == 1:
        merged = Point(**{**first.__dict__, "seed": 1, "members": [first]})
        return merged
    merged = Point(first.name, first.method, first.learning_rate, len(points), first.alpha, members=points)
    for task in {t for p in points for t in p.scores}:
        values = [p.scores[task] for p in points if task in p.scores]
        merged.scores[task] = sum(values) / len(values)
    merged.name = f"{first.method}_lr{first.learning_rate:g}" if first.learning_rate is not None else first.name
    return merged


def item_values(point: Point, task: str, metric: str) -> dict[str, tuple[float, float]] | None:
    """Per item: (value, units) — bits and the count the metric divides by for code length (bytes for a
    ``bits_per_byte`` metric, tokens otherwise), the metric's value and 1 otherwise; None when the point has no
    samples of the task."""
    rows = point.samples.get(task)
    if not rows:
        return None
    per = "bytes" if metric.startswith("bits_per_byte") else "n_tokens"
    items = {}
    for row in rows:
        scores = row.get("scores") or {}
        if "bits" in scores:
            if scores["bits"] is not None:
                items[str(row["doc_id"])] = (float(scores["bits"]), float(scores[per]))
        elif isinstance(scores.get(metric), (int, float)):
            items[str(row["doc_id"])] = (float(scores[metric]), 1.0)
    return items


def item_matrix(sweep: Sweep, points: list[Point], task: str, ids: list[str] | None = None
                ) -> tuple[np.ndarray, list[str]] | None:
    """[seeds, items] values of ``task`` over the items every point has (bits tasks linearised), or None."""
    metric = sweep.metric_names.get(task, "")
    per_point = [item_values(p, task, metric) for p in points]
    if not per_point or any(not v for v in per_point):
        return None
    shared = ids if ids is not None else sorted(set.intersection(*(set(v) for v in per_point)))
    if len(shared) < 2 or any(k not in v for v in per_point for k in shared):
        return None
    values = np.array([[v[k][0] for k in shared] for v in per_point])
    if not sweep.higher_is_better.get(task, True):
        values = stats.ratio_linearized(values, np.array([per_point[0][k][1] for k in shared]))
    return values, shared


def _members(point: Point) -> list[Point]:
    return point.members or [point]


def task_stderr(sweep: Sweep, point: Point, task: str) -> float | None:
    """The error of ``point``'s score on ``task``, training noise included where the point has several seeds."""
    members = _members(point)
    matrix = item_matrix(sweep, members, task)
    if matrix is not None:
        return stats.seed_averaged(matrix[0]).stderr
    errors = [p.stderrs.get(task) for p in members]
    if any(e is None for e in errors):
        return None
    return stats.seed_averaged_from_summaries([p.scores[task] for p in members], errors)[1]


@dataclass(frozen=True)
class Comparison:
    stderr: float
    paired: bool
    n_items: int | None  # the smallest per-task item count behind the comparison (None: unknown, unpaired)


def task_difference(sweep: Sweep, a: Point, b: Point, task: str) -> tuple[float, float, int] | None:
    """``a`` minus ``b`` on one task, paired over the items both have and averaged over each point's seeds
    (:func:`talr.stats.seed_averaged_difference`): (difference in the task's metric units, its error, items); None
    when either point lacks the task's samples."""
    ma, mb = item_matrix(sweep, _members(a), task), item_matrix(sweep, _members(b), task)
    shared = sorted(set(ma[1]) & set(mb[1])) if ma and mb else []
    if len(shared) < 2:
        return None
    ma, mb = item_matrix(sweep, _members(a), task, shared), item_matrix(sweep, _members(b), task, shared)
    if not (ma and mb):
        return None
    difference, stderr = stats.seed_averaged_difference(ma[0], mb[0])
    return difference, stderr, len(shared)


def drift(point: Point, task: str = "general_text") -> tuple[float, float] | None:
    """KL(base || point) per token pooled over the task's texts, averaged over the point's seeds, and its error
    (delta method over texts, training noise included): the drift from the base model; None without samples."""
    per_seed = []
    for member in _members(point):
        per_seed.append({str(r["doc_id"]): (r["scores"]["kl_nats"], r["scores"]["n_tokens"])
                         for r in member.samples.get(task) or []
                         if isinstance((r.get("scores") or {}).get("kl_nats"), (int, float))})
    if not per_seed or any(len(m) < 2 or m.keys() != per_seed[0].keys() for m in per_seed):
        return None
    keys = list(per_seed[0])
    values = stats.ratio_linearized(np.array([[m[k][0] for k in keys] for m in per_seed]),
                                    np.array([per_seed[0][k][1] for k in keys]))
    averaged = stats.seed_averaged(values)
    return averaged.mean, averaged.stderr


def compare(sweep: Sweep, a: Point, b: Point, side: str, kind: str) -> Comparison | None:
    """Error of the difference of one side's axis between two points: per task paired over the shared items (and
    over seeds, :func:`talr.stats.seed_averaged_difference`) when both points have samples, else from the two points'
    own errors (unpaired: larger, it ignores that they share items); tasks taken as independent."""
    tasks = sweep.side_tasks(side, kind)
    paired, errors, sizes = True, [], []
    for task in tasks:
        if (difference := task_difference(sweep, a, b, task)) is not None:
            errors.append(difference[1])
            sizes.append(difference[2])
            continue
        se_a, se_b = task_stderr(sweep, a, task), task_stderr(sweep, b, task)
        if se_a is None or se_b is None:
            return None
        paired = False
        errors.append(math.hypot(se_a, se_b))
    if not errors:
        return None
    return Comparison(math.sqrt(sum(e * e for e in errors)) / len(errors), paired, min(sizes) if paired else None)


def paired_stderr(sweep: Sweep, a: Point, b: Point, side: str, kind: str) -> float | None:
    """The paired error of :func:`compare`, or None where a point lacks per-item samples."""
    result = compare(sweep, a, b, side, kind)
    return result.stderr if result is not None and result.paired else None
