"""The trade-off study: methods x learning rates x seeds, each trained and evaluated once, resumable at any point.

Layout under ``<out_dir>/<name>/``::

    sweep.yaml                      the resolved sweep config
    base/eval/results.json          the base model, evaluated once
    runs/<point>/                   a talr run directory (config.yaml, metrics.jsonl, model/, run.json) ...
    runs/<point>/eval/results.json  ... and its evaluation
    results.json, samples.jsonl.gz  every point's results and per-item samples (talr.sweep_record): the record to commit
    runs/<point>_wise_ft<alpha>/    WiSE-FT averages of a finished run: eval/ only (weights are rebuilt on demand)

A grid point is finished when its ``run.json`` says so and its ``eval/results.json`` holds every task. Both files
are written atomically (temp file + rename), so a kill at any moment leaves either a finished point, which is
skipped on the next run, or an unfinished one, which is resumed (training from its last checkpoint, see
talr.checkpoints; an evaluation from the samples already written). A point whose training diverged
(talr.divergence) is recorded as such in ``run.json`` and ``point.json``, not evaluated, and skipped by later runs.
One process works in a sweep folder at a time (``sweep.lock``, talr.locks).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from talr.config import Config, ConfigError, apply_overrides, config_from_dict
from talr.typed_yaml import build_dataclass, read_yaml_mapping
from talr.io import atomic_write_text
from talr.locks import FolderLock
from talr.methods import PRESETS
from talr.run_dir import RunDir

logger = logging.getLogger(__name__)

LOCK_FILE = "sweep.lock"  # in the sweep folder while a `talr sweep` works there


@dataclass
class MethodAxes:
    """One grid method's own learning rates and/or seeds, replacing the grid's (None keeps the grid's)."""

    learning_rates: list[float] | None = None
    seeds: list[int] | None = None


@dataclass
class Replicates:
    """More seeds of one grid method at one learning rate (a study's seeds where they matter most: e.g. three at the
    rate that forgets, one elsewhere); points the grid already has are not repeated."""

    method: str = ""
    learning_rate: float = 0.0
    seeds: list[int] = field(default_factory=list)


@dataclass
class GridConfig:
    methods: list[str | dict] = field(default_factory=lambda: ["sft", "talr"])
    learning_rates: list[float] = field(default_factory=lambda: [1e-6, 5e-6, 2e-5])
    seeds: list[int] = field(default_factory=lambda: [0])
    # method name (as in the point names: a preset, or an axis mapping's "k=v+k=v") -> MethodAxes: LoRA learns at
    # about 10x full fine-tuning's rates, and a study can give its baselines fewer seeds than the methods it compares
    by_method: dict = field(default_factory=dict)
    replicates: list[Replicates] = field(default_factory=list)  # run after the grid

    def axes(self, method: str) -> tuple[list[float], list[int]]:
        """The learning rates and seeds of one grid method."""
        own = self.by_method.get(method) or MethodAxes()
        return (self.learning_rates if own.learning_rates is None else own.learning_rates,
                self.seeds if own.seeds is None else own.seeds)


@dataclass
class EvalConfig:
    domain: list[str] = field(default_factory=list)
    general: list[str] = field(default_factory=list)
    limit: int | None = None
    batch_size: int = 16
    data_dir: str | None = None
    max_new_tokens: int | None = None  # cap on every generation task's budget (CPU-sized sweeps)
    # weight dtype of every evaluation: auto = bfloat16 where the hardware computes it natively, float32 elsewhere
    # (talr.precision); every point of a sweep is evaluated in the same dtype
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    # the accuracy difference that matters (a fraction: 0.05 = 5 points); `talr sweep` warns when the planned number
    # of items cannot detect it (see power_warnings)
    min_difference: float | None = None


@dataclass
class WiseFtGrid:
    """The sweep's ``wise_ft`` section: which finished grid runs get WiSE-FT averaged, at which alphas. (A training
    run's own averaging is :class:`talr.config.WiseFtConfig`.)"""

    alphas: list[float] = field(default_factory=list)
    methods: list[str] = field(default_factory=lambda: ["sft"])  # grid methods whose runs get averaged
    seeds: list[int] | None = None  # the seeds whose runs get averaged (None: every seed)
    learning_rates: list[float] | None = None  # the rates whose runs get averaged (None: every rate)

    def averages(self, point: GridPoint) -> bool:
        """Whether this finished grid run gets WiSE-FT averages."""
        return bool(self.alphas) and point.method in self.methods and (
            self.seeds is None or point.seed in self.seeds) and (
            self.learning_rates is None or any(math.isclose(point.learning_rate, lr) for lr in self.learning_rates))


@dataclass
class SweepConfig:
    name: str = "sweep"
    out_dir: str = "sweeps"
    keep_models: bool = True
    grid: GridConfig = field(default_factory=GridConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    wise_ft: WiseFtGrid = field(default_factory=WiseFtGrid)
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


def load_sweep_config(path: str | Path, overrides: list[str] | None = None, *,
                      check_model: bool = True) -> SweepConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sweep config {path} does not exist")
    raw = read_yaml_mapping(path, "sweep config")
    try:
        raw = apply_overrides(raw, overrides or [])
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    try:
        train = raw.pop("train", {}) or {}
        sweep = build_dataclass(SweepConfig, raw)
        if not isinstance(train, dict):
            raise ConfigError("train: expected a mapping (a `talr train` config)")
        sweep.train = train
        validate_sweep(sweep, check_model=check_model)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    return sweep


def grid_points(sweep: SweepConfig) -> list[GridPoint]:
    """Every grid point with its fully validated training config (raises ConfigError before any work): the grid's
    methods x learning rates x seeds, then ``grid.replicates``."""
    planned = []
    for method in sweep.grid.methods:
        learning_rates, seeds = sweep.grid.axes(_method_name(method))
        planned += [(method, lr, seed) for lr in learning_rates for seed in seeds]
    methods = {_method_name(m): m for m in sweep.grid.methods}
    planned += [(methods[r.method], r.learning_rate, seed) for r in sweep.grid.replicates for seed in r.seeds]
    points, names = [], set()
    for method, lr, seed in planned:
        name = f"{_method_name(method)}_lr{lr:g}_seed{seed}"
        if name in names:
            continue
        names.add(name)
        raw = copy.deepcopy(sweep.train)
        raw.update(method=method, seed=seed, output_dir=str(sweep.root / "runs" / name))
        raw.setdefault("training", {})["learning_rate"] = lr
        try:
            config = config_from_dict(raw)
        except ConfigError as err:
            raise ConfigError(f"grid point {name}: {err}") from None
        points.append(GridPoint(name, _method_name(method), lr, seed, config))
    return points


def _check_axes(key: str, learning_rates: list[float], seeds: list[int]) -> None:
    if not learning_rates or not seeds:
        raise ConfigError(f"{key}: learning_rates and seeds must each be non-empty")
    for lr in learning_rates:
        if not lr > 0:
            raise ConfigError(f"{key}.learning_rates: {lr} is not positive")


def validate_sweep(sweep: SweepConfig, *, check_model: bool = True) -> None:
    """Every config error, before any work. ``check_model=False`` (``talr sweep --plan``) leaves out the check that
    the model loads here: the planned commands load it where they run, and a hub id not in this machine's cache
    would need the network."""
    grid = sweep.grid
    if not grid.methods or not grid.learning_rates or not grid.seeds:
        raise ConfigError("grid: methods, learning_rates and seeds must each be non-empty")
    _check_axes("grid", grid.learning_rates, grid.seeds)
    for method in grid.methods:
        if isinstance(method, str) and method not in PRESETS:
            raise ConfigError(f"grid.methods: unknown method {method!r} (known presets: {', '.join(PRESETS)})")
    names = [_method_name(m) for m in grid.methods]
    for method, axes in grid.by_method.items():
        key = f"grid.by_method.{method}"
        if method not in names:
            raise ConfigError(f"{key}: {method!r} is not a grid method (grid methods: {', '.join(names)})")
        if not isinstance(axes, MethodAxes):
            if not isinstance(axes, dict):
                raise ConfigError(f"{key}: expected a mapping with learning_rates and/or seeds, got {axes!r}")
            grid.by_method[method] = axes = build_dataclass(MethodAxes, axes, key)
        _check_axes(key, *grid.axes(method))
    for i, replicate in enumerate(grid.replicates):
        key = f"grid.replicates[{i}]"
        if replicate.method not in names:
            raise ConfigError(f"{key}.method: {replicate.method!r} is not a grid method (grid methods: "
                              f"{', '.join(names)})")
        _check_axes(key, [replicate.learning_rate], replicate.seeds)
    if sweep.eval.min_difference is not None and not 0 < sweep.eval.min_difference < 1:
        raise ConfigError(f"eval.min_difference: {sweep.eval.min_difference} is not a fraction in (0, 1)")
    for alpha in sweep.wise_ft.alphas:
        if not 0 <= alpha <= 1:
            raise ConfigError(f"wise_ft.alphas: {alpha} is outside [0, 1]")
    if not sweep.tasks:
        raise ConfigError("eval: name at least one domain or general task")
    from talr.evaluation.registry import expand_tasks

    try:
        expand_tasks(sweep.tasks)
    except ValueError as err:
        raise ConfigError(f"eval: {err}") from None
    points = grid_points(sweep)
    if check_model:
        from talr.models import check_model_spec

        check_model_spec(points[0].config.model)
    # load the training data once now, so a missing file fails before hours of training
    from talr.data import load_train_examples

    load_train_examples(points[0].config.data.train, seed=points[0].seed)


def _run_status(run_dir: Path) -> str | None:
    """``run.json``'s status ("finished", "diverged"), or None for a run not done (or never started)."""
    return RunDir(run_dir).status()


def _run_finished(run_dir: Path) -> bool:
    return _run_status(run_dir) == "finished"


def _eval_finished(eval_dir: Path, tasks: list[str]) -> bool:
    from talr.evaluation.evaluator import RESULTS_FILE
    from talr.evaluation.registry import expand_tasks
    from talr.io import read_json

    path = eval_dir / RESULTS_FILE
    try:
        return path.is_file() and all(t in read_json(path).get("results", {}) for t, _ in expand_tasks(tasks))
    except ValueError:
        return False


def _evaluate(model_spec: str | Path, eval_dir: Path, sweep: SweepConfig) -> None:
    if _eval_finished(eval_dir, sweep.tasks):
        return
    from talr.evaluation.evaluator import evaluate
    from talr.models import load_model
    from talr.precision import resolve_eval_dtype

    model, tokenizer = load_model(model_spec, dtype=resolve_eval_dtype(sweep.eval.dtype),
                                  trust_remote_code=bool(sweep.train.get("trust_remote_code", False)))
    evaluate(
        model, tokenizer, sweep.tasks, out_dir=eval_dir, limit=sweep.eval.limit, batch_size=sweep.eval.batch_size,
        model_name=str(model_spec), data_dir=sweep.eval.data_dir, max_new_tokens=sweep.eval.max_new_tokens,
        dtype_requested=sweep.eval.dtype,
    )


def plan_sweep(sweep: SweepConfig) -> list[str]:
    """Write every unfinished point's resolved ``config.yaml`` and return one ``accelerate launch`` command per
    point, for spreading the training over GPUs or machines; rerunning ``talr sweep`` afterwards evaluates the runs."""
    from talr.config import save_config

    commands = []
    with FolderLock(sweep.root / LOCK_FILE, "another talr sweep"):
        for point in grid_points(sweep):
            run_dir = Path(point.config.output_dir)
            if _run_status(run_dir) is not None:  # finished or diverged
                continue
            run_dir.mkdir(parents=True, exist_ok=True)
            save_config(point.config, RunDir(run_dir).config_file)
            commands.append(f"accelerate launch -m talr.cli train --resume --config {RunDir(run_dir).config_file}")
    return commands


# Planning assumption for power_warnings: two fine-tuned variants of one model disagree on a quarter of the items,
# so a per-item paired difference (-1, 0 or +1) has SD sqrt(0.25) = 0.5. Points that disagree more need more items.
ASSUMED_DISCORDANCE = 0.25


def power_warnings(sweep: SweepConfig) -> list[str]:
    """One line per accuracy task whose planned item count cannot detect ``eval.min_difference`` between two points
    (paired, two-sided alpha 0.05, 80 % power; :func:`talr.stats.mde_proportions` at ASSUMED_DISCORDANCE)."""
    from talr import stats
    from talr.evaluation.registry import expand_tasks, get_task
    from talr.paths import data_dir

    if sweep.eval.min_difference is None:
        return []
    wanted, lines = sweep.eval.min_difference, []
    for name, limit in expand_tasks(sweep.tasks, sweep.eval.limit):  # panels as their tasks, each at its N
        task = get_task(name)
        if not next(iter(task.metrics.values())):  # code length (lower is better): not a proportion
            continue
        try:
            n = len(task.load(Path(sweep.eval.data_dir) if sweep.eval.data_dir else data_dir(), limit)[0])
        except (OSError, ValueError) as error:  # no data here: the evaluation will say so; nothing to plan with
            logger.debug("power check skipped for %s: %s", name, error)
            continue
        mde = stats.mde_proportions(n, 0.5, discordance=ASSUMED_DISCORDANCE)
        if mde > wanted:
            needed = math.ceil(n * (mde / wanted) ** 2)
            lines.append(f"{name}: {n} items detect a paired difference of {100 * mde:.1f} points (80 % power, alpha "
                         f"0.05, points disagreeing on {ASSUMED_DISCORDANCE:.0%} of items), not the "
                         f"{100 * wanted:.1f} points of eval.min_difference: about {needed} items would")
    return lines


def run_sweep(sweep: SweepConfig) -> Path:
    """Run (or resume) every grid point; returns the sweep directory. Refuses (talr.locks.FolderLockedError) a
    sweep folder another live process is working in."""
    with FolderLock(sweep.root / LOCK_FILE, "another talr sweep"):
        return _run_sweep(sweep)


def _train_point(point: GridPoint, run_dir: Path) -> bool:
    """Train (or resume) a point; False when it diverged (recorded in run.json and point.json)."""
    from talr.checkpoints import ResumeError
    from talr.divergence import TrainingDiverged
    from talr.trainer import train

    status = _run_status(run_dir)
    try:
        if status is None:
            try:
                train(point.config, resume=True)
            except ResumeError as err:  # the sweep's config changed since this point started
                logger.warning("%s; training %s from step 0", err, point.name)
                train(point.config)
        elif status != "finished":
            logger.warning("%s: %s earlier (run.json); skipped", point.name, status)
            return False
    except TrainingDiverged as err:
        logger.warning("%s: %s; the sweep goes on without it", point.name, err)
        _write_point(run_dir, point, status="diverged", diverged_at_step=err.step)
        return False
    return True


def _run_sweep(sweep: SweepConfig) -> Path:
    from talr.sweep_record import write_record

    for line in power_warnings(sweep):
        logger.warning("Underpowered: %s", line)

    points = grid_points(sweep)
    root = sweep.root
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(root / "sweep.yaml", yaml.safe_dump({**dataclasses.asdict(sweep), "train": sweep.train},
                                                    sort_keys=False))
    base_model = points[0].config.model
    from talr.precision import autocast_name, log_startup, resolve_autocast, resolve_eval_dtype

    log_startup("sweep", f"training {autocast_name(resolve_autocast(points[0].config.training.autocast))}, "
                f"evaluation {str(resolve_eval_dtype(sweep.eval.dtype)).removeprefix('torch.')}")
    logger.info("Sweep %s: %d grid points, tasks %s", sweep.name, len(points), ", ".join(sweep.tasks))
    _evaluate(base_model, RunDir(root / "base").eval_dir, sweep)
    write_record(root)
    for number, point in enumerate(points, start=1):
        run_dir = Path(point.config.output_dir)
        logger.info("[%d/%d] %s", number, len(points), point.name)
        if not _train_point(point, run_dir):
            continue
        _write_point(run_dir, point)
        _evaluate(run_dir, RunDir(run_dir).eval_dir, sweep)
        if sweep.wise_ft.averages(point):
            _wise_ft_points(point, run_dir, base_model, sweep)
        write_record(root)
        if not sweep.keep_models and RunDir(run_dir).model_dir.exists():
            shutil.rmtree(RunDir(run_dir).model_dir)
    return root


def _wise_ft_points(point: GridPoint, run_dir: Path, base_model: str, sweep: SweepConfig) -> None:
    from talr.averaging import wise_ft

    for alpha in sweep.wise_ft.alphas:
        out = RunDir(run_dir.parent / f"{point.name}_wise_ft{alpha:g}")
        if _eval_finished(out.eval_dir, sweep.tasks):
            continue
        if not RunDir(run_dir).model_dir.exists():  # keep_models: false deleted it when an earlier sweep ran
            logger.warning("%s: WiSE-FT alpha %g skipped: the run's model/ is gone (deleted after its evaluation by an "
                           "earlier sweep without this average); average a run the sweep has not finished yet, or "
                           "delete the run to train it again", point.name, alpha)
            continue
        _write_point(out.path, point, method=f"{point.method}+wise_ft", alpha=alpha, source_run=run_dir.name)
        model_dir = out.model_dir
        if model_dir.exists():  # possibly half-written by a killed run; averaging is deterministic and cheap
            shutil.rmtree(model_dir)
        wise_ft(base_model, run_dir, alpha, model_dir)
        _evaluate(model_dir, out.eval_dir, sweep)
        shutil.rmtree(model_dir)


def _write_point(directory: Path, point: GridPoint, **extra) -> None:
    from talr.io import atomic_write_json

    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_json(directory / "point.json", {
        "name": directory.name, "method": point.method, "learning_rate": point.learning_rate, "seed": point.seed,
        "alpha": None, "source_run": None, **extra,
    })
