"""The trade-off study: methods x learning rates x seeds, each trained and evaluated once, resumable at any point.

Layout under ``<out_dir>/<name>/``::

    sweep.yaml                      the resolved sweep config
    base/eval/results.json          the base model, evaluated once
    runs/<point>/                   a talr run directory (config.yaml, metrics.jsonl, model/, run.json) ...
    runs/<point>/eval/results.json  ... and its evaluation
    runs/<point>_wise_ft<alpha>/    WiSE-FT averages of a finished run: eval/ only (weights are rebuilt on demand)

A grid point is finished when its ``run.json`` says so and its ``eval/results.json`` holds every task. Both files
are written atomically (temp file + rename), so a kill at any moment leaves either a finished point, which is
skipped on the next run, or an unfinished one, which is redone (a training run from scratch; an evaluation from
the samples already written).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from talr.config import Config, ConfigError, build_dataclass, apply_overrides, config_from_dict
from talr.methods import PRESETS

logger = logging.getLogger(__name__)


@dataclass
class GridConfig:
    methods: list[str | dict] = field(default_factory=lambda: ["sft", "talr"])
    learning_rates: list[float] = field(default_factory=lambda: [1e-6, 5e-6, 2e-5])
    seeds: list[int] = field(default_factory=lambda: [0])


@dataclass
class EvalConfig:
    domain: list[str] = field(default_factory=list)
    general: list[str] = field(default_factory=list)
    limit: int | None = None
    batch_size: int = 16
    data_dir: str | None = None
    max_new_tokens: int | None = None  # cap on every generation task's budget (CPU-sized sweeps)


@dataclass
class WiseFTConfig:
    alphas: list[float] = field(default_factory=list)
    methods: list[str] = field(default_factory=lambda: ["sft"])  # grid methods whose runs get averaged


@dataclass
class SweepConfig:
    name: str = "sweep"
    out_dir: str = "sweeps"
    keep_models: bool = True
    grid: GridConfig = field(default_factory=GridConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    wise_ft: WiseFTConfig = field(default_factory=WiseFTConfig)
    train: dict = field(default_factory=dict)  # a `talr train` config shared by every grid point

    @property
    def root(self) -> Path:
        return Path(self.out_dir) / self.name

    @property
    def tasks(self) -> list[str]:
        return [*self.eval.domain, *self.eval.general]


@dataclass
class GridPoint:
    name: str
    method: str
    learning_rate: float
    seed: int
    config: Config


def _method_name(method: str | dict) -> str:
    if isinstance(method, str):
        return method
    return "+".join(f"{k}={v}" for k, v in sorted(method.items()) if v not in ("none", "full"))


def load_sweep_config(path: str | Path, overrides: list[str] | None = None) -> SweepConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sweep config {path} does not exist")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the sweep config must be a mapping")
    raw = apply_overrides(raw, overrides or [])
    try:
        train = raw.pop("train", {}) or {}
        sweep = build_dataclass(SweepConfig, raw)
        if not isinstance(train, dict):
            raise ConfigError("train: expected a mapping (a `talr train` config)")
        sweep.train = train
        validate_sweep(sweep)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    return sweep


def grid_points(sweep: SweepConfig) -> list[GridPoint]:
    """Every grid point with its fully validated training config (raises ConfigError before any work)."""
    points = []
    for method in sweep.grid.methods:
        for lr in sweep.grid.learning_rates:
            for seed in sweep.grid.seeds:
                name = f"{_method_name(method)}_lr{lr:g}_seed{seed}"
                raw = copy.deepcopy(sweep.train)
                raw.update(method=method, seed=seed, output_dir=str(sweep.root / "runs" / name))
                raw.setdefault("training", {})["learning_rate"] = lr
                try:
                    config = config_from_dict(raw)
                except ConfigError as err:
                    raise ConfigError(f"grid point {name}: {err}") from None
                points.append(GridPoint(name, _method_name(method), lr, seed, config))
    return points


def validate_sweep(sweep: SweepConfig) -> None:
    grid = sweep.grid
    if not grid.methods or not grid.learning_rates or not grid.seeds:
        raise ConfigError("grid: methods, learning_rates and seeds must each be non-empty")
    for lr in grid.learning_rates:
        if not lr > 0:
            raise ConfigError(f"grid.learning_rates: {lr} is not positive")
    for method in grid.methods:
        if isinstance(method, str) and method not in PRESETS:
            raise ConfigError(f"grid.methods: unknown method {method!r} (known presets: {', '.join(PRESETS)})")
    for alpha in sweep.wise_ft.alphas:
        if not 0 <= alpha <= 1:
            raise ConfigError(f"wise_ft.alphas: {alpha} is outside [0, 1]")
    if not sweep.tasks:
        raise ConfigError("eval: name at least one domain or general task")
    from talr.evaluation.registry import PANELS, TASKS

    unknown = [t for t in sweep.tasks if t not in TASKS and t not in PANELS]
    if unknown:
        raise ConfigError(f"eval: unknown task(s) {', '.join(unknown)} (known: {', '.join(sorted(TASKS))}; "
                          f"panels: {', '.join(sorted(PANELS))})")
    points = grid_points(sweep)
    # load the training data once now, so a missing file fails before hours of training
    from talr.data import load_train_examples

    load_train_examples(points[0].config.data.train, seed=points[0].seed)


def _run_finished(run_dir: Path) -> bool:
    from talr.evaluation.results import read_json

    path = run_dir / "run.json"
    try:
        return path.is_file() and read_json(path).get("status") == "finished"
    except ValueError:
        return False


def _eval_finished(eval_dir: Path, tasks: list[str]) -> bool:
    from talr.evaluation.registry import expand_tasks
    from talr.evaluation.results import read_json

    path = eval_dir / "results.json"
    try:
        return path.is_file() and all(t in read_json(path).get("results", {}) for t, _ in expand_tasks(tasks))
    except ValueError:
        return False


def _evaluate(model_spec: str | Path, eval_dir: Path, sweep: SweepConfig) -> None:
    if _eval_finished(eval_dir, sweep.tasks):
        return
    from talr.evaluation.evaluator import evaluate
    from talr.models import load_model

    model, tokenizer = load_model(model_spec, trust_remote_code=bool(sweep.train.get("trust_remote_code", False)))
    evaluate(
        model, tokenizer, sweep.tasks, out_dir=eval_dir, limit=sweep.eval.limit, batch_size=sweep.eval.batch_size,
        model_name=str(model_spec), data_dir=sweep.eval.data_dir, max_new_tokens=sweep.eval.max_new_tokens,
    )


def plan_sweep(sweep: SweepConfig) -> list[str]:
    """Write every unfinished point's resolved ``config.yaml`` and return one ``accelerate launch`` command per
    point, for spreading the training over GPUs or machines; rerunning ``talr sweep`` afterwards evaluates the runs."""
    from talr.config import save_config

    commands = []
    for point in grid_points(sweep):
        run_dir = Path(point.config.output_dir)
        if _run_finished(run_dir):
            continue
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(point.config, run_dir / "config.yaml")
        commands.append(f"accelerate launch -m talr.cli train --config {run_dir / 'config.yaml'}")
    return commands


def run_sweep(sweep: SweepConfig) -> Path:
    """Run (or resume) every grid point; returns the sweep directory."""
    from talr.trainer import train

    points = grid_points(sweep)
    root = sweep.root
    root.mkdir(parents=True, exist_ok=True)
    (root / "sweep.yaml").write_text(yaml.safe_dump({**dataclasses.asdict(sweep), "train": sweep.train},
                                                    sort_keys=False))
    base_model = points[0].config.model
    logger.info("Sweep %s: %d grid points, tasks %s", sweep.name, len(points), ", ".join(sweep.tasks))
    _evaluate(base_model, root / "base" / "eval", sweep)
    for number, point in enumerate(points, start=1):
        run_dir = Path(point.config.output_dir)
        logger.info("[%d/%d] %s", number, len(points), point.name)
        if not _run_finished(run_dir):
            if run_dir.exists():  # a half-written run: start it again from scratch
                shutil.rmtree(run_dir)
            train(point.config)
        _write_point(run_dir, point)
        _evaluate(run_dir, run_dir / "eval", sweep)
        if sweep.wise_ft.alphas and point.method in sweep.wise_ft.methods:
            _wise_ft_points(point, run_dir, base_model, sweep)
        if not sweep.keep_models and (run_dir / "model").exists():
            shutil.rmtree(run_dir / "model")
    return root


def _wise_ft_points(point: GridPoint, run_dir: Path, base_model: str, sweep: SweepConfig) -> None:
    from talr.averaging import wise_ft

    for alpha in sweep.wise_ft.alphas:
        out = run_dir.parent / f"{point.name}_wise_ft{alpha:g}"
        if _eval_finished(out / "eval", sweep.tasks):
            continue
        _write_point(out, point, method=f"{point.method}+wise_ft", alpha=alpha, source_run=run_dir.name)
        model_dir = out / "model"
        if model_dir.exists():  # possibly half-written by a killed run; averaging is deterministic and cheap
            shutil.rmtree(model_dir)
        wise_ft(base_model, run_dir, alpha, model_dir)
        _evaluate(model_dir, out / "eval", sweep)
        shutil.rmtree(model_dir)


def _write_point(directory: Path, point: GridPoint, **extra) -> None:
    from talr.evaluation.results import atomic_write_json

    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_json(directory / "point.json", {
        "name": directory.name, "method": point.method, "learning_rate": point.learning_rate, "seed": point.seed,
        "alpha": None, "source_run": None, **extra,
    })
