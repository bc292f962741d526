"""The run configuration: a YAML file validated against dataclasses before anything heavy loads.

Unknown keys and wrong types fail with the dotted key named (``training.learning_rate: expected a finite number, got
'fast'``). ``--set key.sub=value`` overrides are parsed as YAML scalars and validated the same way.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from talr.methods import ADAPTERS, AVERAGINGS, LOSS_WEIGHTINGS, PRESETS, REGULARIZERS


class ConfigError(ValueError):
    """The configuration is invalid; the message names the offending key."""


@dataclass
class DatasetSpec:
    """Either a file (``path``: JSONL, parquet or a ``save_to_disk`` folder; see talr.data.tables) or a registered
    data source (``source`` + ``split`` + ``format``)."""

    path: str | None = None
    source: str | None = None
    split: str = "train"
    format: str | None = None
    limit: int | None = None
    data_dir: str | None = None  # a folder laid out like ../shared/data (default: talr.paths.data_dir())


@dataclass
class DataConfig:
    train: DatasetSpec = field(default_factory=DatasetSpec)
    max_length: int = 512


@dataclass
class MethodConfig:
    """The method as independent axes; ``method: NAME`` in YAML picks a preset from ``talr.methods.PRESETS``."""

    loss: str = "sft"
    regularizer: str = "none"
    adapter: str = "full"
    averaging: str = "none"


@dataclass
class TalrConfig:
    tau: float | Literal["median"] = "median"
    tau_scope: Literal["token", "sequence"] = "token"
    w_min: float = 0.01
    tau_min: float = 1e-3
    # "step": softmax normaliser and tau over the whole optimizer step (all accumulation micro-batches and processes;
    # a no-grad pre-pass when gradient_accumulation_steps > 1). "micro_batch": over each micro-batch (cheaper; the
    # update then depends on how the batch is split).
    normalize_over: Literal["step", "micro_batch"] = "step"


@dataclass
class L2Config:
    """L2-to-init: ``weight * sum_j (theta_j - theta0_j)^2 / P`` over the P trainable parameters (docs/methods.md)."""

    # lambda = 1e-3: REGULARIZATION_LAMBDA of FLOW's reference launch script (Sanyal et al. 2025,
    # language/scripts/launch_ft_arithmetic.slurm), whose trainer also divides by P.
    weight: float = 1e-3


@dataclass
class LoraConfig:
    # r = 16 with alpha = 2r on all linear layers: the math setting of Biderman et al. 2024 ("LoRA Learns Less and
    # Forgets Less"); dropout 0.05 is PEFT's example value (FLOW's code uses r = alpha = 64, dropout 0).
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"
    save_merged: bool = True  # also write run_dir/merged/ (a plain model folder) next to the adapter in model/


@dataclass
class FlowConfig:
    """FLOW (Sanyal et al. 2025): static sample weights ``exp(-f_s / tau)`` from the base model's losses."""

    tau: float | Literal["median"] = "median"
    batch_size: int = 8  # of the no-grad scoring pass before training
    cache: bool = True  # reuse the base model's token log-probabilities (talr.reference_stats' disk cache)


@dataclass
class WiseFtConfig:
    # alpha = 0.5: the mixing coefficient WiSE-FT (Wortsman et al. 2022) recommends when no held-out data picks one.
    alpha: float = 0.5


@dataclass
class TrainingConfig:
    learning_rate: float = 5e-6
    num_epochs: float = 1.0
    max_steps: int = -1
    per_device_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    logging_steps: int = 5
    # Mixed precision over float32 master weights (pure bf16 weights barely learn at small lr). "auto": bf16 where the
    # hardware computes it natively (CUDA since Ampere, CPUs with AVX512-BF16/AMX), float32 elsewhere: on an AVX2 CPU
    # a bf16 matmul is ~50x slower than float32 (talr.precision).
    autocast: Literal["auto", "bf16", "fp16", "none"] = "auto"
    save_model: bool = True
    torch_threads: int | None = None
    # "fused": chunked LM head that never materialises [tokens, vocab] logits (falls back to "reference" for heads it
    # does not cover); "reference": full logits then talr.losses.token_logprobs.
    loss_head: Literal["fused", "reference"] = "fused"
    # The fused head keeps the step's float32 softmax between forward and backward when it fits this many MiB (then
    # TALR costs what cross-entropy costs) and recomputes it otherwise; 0 always recomputes (least memory).
    loss_head_cache_mib: int = 256
    # Checkpoints (talr.checkpoints): every save_steps optimizer steps (0: none) into run_dir/checkpoints/, keeping
    # the last save_total_limit (0: all), removed once the run finishes unless keep_checkpoints. 500 is the Trainer's
    # own default; a multiple of logging_steps keeps a resumed run's metrics.jsonl identical to an uninterrupted one.
    save_steps: int = 500
    save_total_limit: int = 1
    keep_checkpoints: bool = False
    # Divergence (talr.divergence): a non-finite logged loss or gradient norm stops the run at once; a logged loss
    # above the first logged loss + divergence_margin (nats) for divergence_patience consecutive logs stops it too.
    divergence_check: bool = True
    divergence_margin: float = 3.0
    divergence_patience: int = 3
    # Trainer logging integrations: "none", "tensorboard" (talr[tensorboard]; events under RUN_DIR/checkpoints/runs/),
    # "wandb", ... or a list; metrics.jsonl is written either way.
    report_to: str | list[str] = "none"


@dataclass
class ProbesConfig:
    """Cheap training-time probes (``talr.callbacks``), written to ``probes.jsonl`` in the run directory.

    ``domain``: a separate domain probe set; when unset, ``domain_size`` training examples (at most a tenth) are held
    out of training for it, whether or not the probes are enabled. ``general``: ``alpaca`` (the data folder's Alpaca
    subset, skipped with a warning when absent), a JSONL file of chat examples, or null for none.
    """

    enabled: bool = True
    every_n_steps: int = 50
    general: str | None = "alpaca"
    general_size: int = 32
    domain: DatasetSpec | None = None
    domain_size: int = 32
    hard_token_size: int = 32
    batch_size: int = 8


@dataclass
class Config:
    model: str = "smollm2-135m-instruct"
    trust_remote_code: bool = False
    output_dir: str = "runs/default"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    talr: TalrConfig = field(default_factory=TalrConfig)
    l2: L2Config = field(default_factory=L2Config)
    lora: LoraConfig = field(default_factory=LoraConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    wise_ft: WiseFtConfig = field(default_factory=WiseFtConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    probes: ProbesConfig = field(default_factory=ProbesConfig)


def _type_name(tp: Any) -> str:
    if tp in (int, float, str, bool):
        return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}[tp]
    return str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(tp):
            if option is type(None):
                if value is None:
                    return None
                continue
            try:
                return _coerce(value, option, key)
            except ConfigError as err:
                errors.append(str(err).split(": ", 1)[-1])
        raise ConfigError(f"{key}: expected {' or '.join(errors) or 'null'}")
    if origin is Literal:
        if value not in typing.get_args(tp):
            choices = ", ".join(repr(c) for c in typing.get_args(tp))
            raise ConfigError(f"{key}: expected one of {choices}, got {value!r}")
        return value
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return build_dataclass(tp, value, key)
    if tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        number = None
        if isinstance(value, str):  # YAML reads 1e-6 (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                pass
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:  # an integer beyond float range
                pass
        if number is None or not math.isfinite(number):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return number
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {_type_name(tp)}")


def build_dataclass(cls: type, data: dict, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in known:
            raise ConfigError(f"{dotted}: unknown key (known: {', '.join(sorted(known))})")
        kwargs[key] = _coerce(value, hints[key], dotted)
    return cls(**kwargs)


def _normalise(raw: dict) -> dict:
    """Accept the YAML shorthands: ``method: NAME`` (a preset) and ``data.train: PATH``."""
    raw = dict(raw)
    method = raw.get("method")
    if isinstance(method, str):
        if method not in PRESETS:
            raise ConfigError(f"method: unknown preset {method!r} (known: {', '.join(PRESETS)})")
        raw["method"] = dict(PRESETS[method])
    data = raw.get("data")
    if isinstance(data, dict) and isinstance(data.get("train"), str):
        raw["data"] = {**data, "train": {"path": data["train"]}}
    return raw


def _check_source(key: str, spec: DatasetSpec) -> None:
    from talr.data.sources import SOURCES

    module = SOURCES.get(spec.source)
    if module is None:
        raise ConfigError(f"{key}.source: unknown data source {spec.source!r} (known: {', '.join(SOURCES)})")
    if spec.split not in module.SPLITS:
        raise ConfigError(f"{key}.split: {spec.source} has no split {spec.split!r} (known: {', '.join(module.SPLITS)})")
    if spec.format is not None and spec.format not in module.FORMATS:
        raise ConfigError(f"{key}.format: {spec.source} has no format {spec.format!r} "
                          f"(known: {', '.join(module.FORMATS)})")


def validate(config: Config) -> Config:
    """Cross-field checks that the types alone cannot express."""
    axes = {
        "method.loss": (config.method.loss, LOSS_WEIGHTINGS),
        "method.regularizer": (config.method.regularizer, REGULARIZERS),
        "method.adapter": (config.method.adapter, ADAPTERS),
        "method.averaging": (config.method.averaging, AVERAGINGS),
    }
    for key, (value, registry) in axes.items():
        if value not in registry:
            raise ConfigError(f"{key}: unknown value {value!r} (known: {', '.join(registry)})")
    spec = config.data.train
    if (spec.path is None) == (spec.source is None):
        raise ConfigError("data.train: give either a JSONL path or a data source (`source:`), not both or neither")
    if spec.limit is not None and spec.limit <= 0:
        raise ConfigError("data.train.limit: must be positive")
    positive = {
        "training.learning_rate": config.training.learning_rate,
        "training.per_device_batch_size": config.training.per_device_batch_size,
        "training.gradient_accumulation_steps": config.training.gradient_accumulation_steps,
        "training.logging_steps": config.training.logging_steps,
        "data.max_length": config.data.max_length,
    }
    for key, value in positive.items():
        if not value > 0:
            raise ConfigError(f"{key}: must be positive, got {value}")
    if config.training.max_steps <= 0 and not config.training.num_epochs > 0:
        raise ConfigError("training: set num_epochs > 0 or max_steps > 0")
    from transformers.trainer_utils import SchedulerType

    schedulers = [s.value for s in SchedulerType]
    if config.training.lr_scheduler not in schedulers:
        raise ConfigError(f"training.lr_scheduler: unknown scheduler {config.training.lr_scheduler!r} "
                          f"(known: {', '.join(schedulers)})")
    if not 0 <= config.training.warmup_ratio < 1:
        raise ConfigError(f"training.warmup_ratio: must be in [0, 1), got {config.training.warmup_ratio}")
    for key in ("weight_decay", "max_grad_norm"):
        if getattr(config.training, key) < 0:
            raise ConfigError(f"training.{key}: must be >= 0, got {getattr(config.training, key)}")
    if config.training.torch_threads is not None and config.training.torch_threads <= 0:
        raise ConfigError(f"training.torch_threads: must be positive, got {config.training.torch_threads}")
    for key in ("save_steps", "save_total_limit"):
        if getattr(config.training, key) < 0:
            raise ConfigError(f"training.{key}: must be >= 0, got {getattr(config.training, key)}")
    if not config.training.divergence_margin >= 0 or config.training.divergence_patience <= 0:
        raise ConfigError("training: divergence_margin must be >= 0 and divergence_patience positive")
    if config.training.loss_head_cache_mib < 0:
        raise ConfigError(f"training.loss_head_cache_mib: must be >= 0, got {config.training.loss_head_cache_mib}")
    report_to = [config.training.report_to] if isinstance(config.training.report_to, str) else config.training.report_to
    if set(report_to) - {"none", "all"}:
        from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

        unknown = [name for name in report_to if name not in {"none", "all", *INTEGRATION_TO_CALLBACK}]
        if unknown:
            raise ConfigError(f"training.report_to: unknown {unknown[0]!r} "
                              f"(known: none, all, {', '.join(INTEGRATION_TO_CALLBACK)})")
    if config.talr.tau != "median" and not config.talr.tau > 0:
        raise ConfigError(f"talr.tau: a fixed tau must be positive, got {config.talr.tau}")
    if config.talr.w_min < 0 or config.talr.tau_min <= 0:
        raise ConfigError("talr: w_min must be >= 0 and tau_min > 0")
    if config.l2.weight < 0:
        raise ConfigError(f"l2.weight: must be >= 0, got {config.l2.weight}")
    if config.lora.r <= 0 or config.lora.alpha <= 0 or not 0 <= config.lora.dropout < 1:
        raise ConfigError("lora: r and alpha must be positive and dropout in [0, 1)")
    if config.flow.tau != "median" and not config.flow.tau > 0:
        raise ConfigError(f"flow.tau: a fixed tau must be positive, got {config.flow.tau}")
    if config.flow.batch_size <= 0:
        raise ConfigError(f"flow.batch_size: must be positive, got {config.flow.batch_size}")
    if not 0 <= config.wise_ft.alpha <= 1:
        raise ConfigError(f"wise_ft.alpha: must be in [0, 1], got {config.wise_ft.alpha}")
    if config.method.averaging != "none" and not config.training.save_model:
        raise ConfigError(f"method.averaging: {config.method.averaging} averages the saved model; "
                          "set training.save_model: true")
    domain = config.probes.domain
    if domain is not None and (domain.path is None) == (domain.source is None):
        raise ConfigError("probes.domain: give either a JSONL path or a data source (`source:`), not both or neither")
    for key, dataset in (("data.train", spec), ("probes.domain", domain)):
        if dataset is not None and dataset.source is not None:
            _check_source(key, dataset)
    for key in ("every_n_steps", "batch_size"):
        if not getattr(config.probes, key) > 0:
            raise ConfigError(f"probes.{key}: must be positive, got {getattr(config.probes, key)}")
    for key in ("general_size", "domain_size", "hard_token_size"):
        if getattr(config.probes, key) < 0:
            raise ConfigError(f"probes.{key}: must be >= 0, got {getattr(config.probes, key)}")
    return config


def config_from_dict(raw: dict | None) -> Config:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("the configuration must be a mapping at the top level")
    return validate(build_dataclass(Config, _normalise(raw)))


def _yaml_error(where: str, err: yaml.YAMLError) -> ConfigError:
    """One line: where, line and column, and what YAML objects to."""
    mark = getattr(err, "problem_mark", None)
    at = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    return ConfigError(f"{where}{at}: invalid YAML ({problem})")


def read_yaml_mapping(path: Path, what: str = "config") -> dict:
    """A YAML file that must hold a mapping (an empty file is an empty one); errors name the file (and line)."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise _yaml_error(str(path), err) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the {what} must be a mapping at the top level, got {type(raw).__name__}")
    return raw


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key=value")
    key, value = text.split("=", 1)
    try:
        return key.strip().split("."), yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError as err:
        raise _yaml_error(f"--set {text!r}", err) from None


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    raw = _normalise(raw or {})  # so `--set method.adapter=lora` refines a preset given by name
    for text in overrides:
        path, value = parse_override(text)
        node = raw
        for part in path[:-1]:
            child = node.get(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {text}: {part} is not a mapping")
            node[part] = dict(child)
            node = node[part]
        node[path[-1]] = value
    return raw


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    raw: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        raw = read_yaml_mapping(path)
    try:
        return config_from_dict(apply_overrides(raw, overrides or []))
    except ConfigError as err:
        raise ConfigError(f"{path or '<overrides>'}: {err}") from None


def config_to_dict(config: Config) -> dict:
    return dataclasses.asdict(config)


def save_config(config: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))
