"""The run configuration: the schema of a run's YAML file (one dataclass per section, each with its own ``check()``
next to its fields), validated before anything heavy loads.

Unknown keys and wrong types fail with the dotted key named (``training.learning_rate: expected a finite number, got
'fast'``; talr.typed_yaml). ``--set key.sub=value`` overrides are parsed as YAML scalars and validated the same way.
This module imports no training code (no torch): method names are checked against the lazy registries of
:mod:`talr.methods.registry`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from talr.methods.registry import AXES, PRESETS, option_sections
from talr.typed_yaml import ConfigError, build_dataclass, checked_section, parse_override, read_yaml_mapping


def _positive(section, *names: str) -> None:
    for name in names:
        if not getattr(section, name) > 0:
            raise ConfigError(f"{name}: must be positive, got {getattr(section, name)}")


def _non_negative(section, *names: str) -> None:
    for name in names:
        if getattr(section, name) < 0:
            raise ConfigError(f"{name}: must be >= 0, got {getattr(section, name)}")


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

    def check(self) -> None:
        if (self.path is None) == (self.source is None):
            raise ConfigError("path: give either a JSONL path or a data source (`source:`), not both or neither")
        if self.limit is not None and self.limit <= 0:
            raise ConfigError("limit: must be positive")
        if self.source is not None:
            from talr.data.sources import SOURCES

            module = SOURCES.get(self.source)
            if module is None:
                raise ConfigError(f"source: unknown data source {self.source!r} (known: {', '.join(SOURCES)})")
            if self.split not in module.SPLITS:
                raise ConfigError(f"split: {self.source} has no split {self.split!r} "
                                  f"(known: {', '.join(module.SPLITS)})")
            if self.format is not None and self.format not in module.FORMATS:
                raise ConfigError(f"format: {self.source} has no format {self.format!r} "
                                  f"(known: {', '.join(module.FORMATS)})")


@dataclass
class DataConfig:
    train: DatasetSpec = field(default_factory=DatasetSpec)
    max_length: int = 512  # tokens per example (prompt + answer); longer examples are truncated from the left

    def check(self) -> None:
        _positive(self, "max_length")
        checked_section("train", self.train)


@dataclass
class MethodConfig:
    """The method as independent axes (talr.methods.registry); ``method: NAME`` in YAML applies a preset."""

    loss: str = "sft"
    regularizer: str = "none"
    adapter: str = "full"
    averaging: str = "none"

    def check(self) -> None:
        for axis, registry in AXES.items():
            value = getattr(self, axis)
            if value not in registry:
                raise ConfigError(f"{axis}: unknown value {value!r} (known: {', '.join(registry)})")


@dataclass
class TalrConfig:
    """TALR's settings (talr.losses documents each choice and where it comes from)."""

    # "median": the batch's median token loss (tau_scope: token) or median per-sequence mean loss (sequence); or a
    # fixed positive number.
    tau: float | Literal["median"] = "median"
    tau_scope: Literal["token", "sequence"] = "token"
    # The paper floors the weights but does not publish the value; in mean-normalised units (uniform weights are 1).
    w_min: float = 0.01
    tau_min: float = 1e-3  # a dynamic tau never goes below this (a perfectly predicted batch would divide by 0)
    # "simplex": softmax(-l / tau) over the batch's tokens, floored at w_min in mean units (a uniform weight is 1) and
    # renormalised (talr.losses.talr_weights). "none": max(p ** (1 / tau), w_min), no normaliser, w_min absolute: the
    # other public TALR implementation's (DiSC; talr.losses.unnormalized_talr_weights). docs/methods.md.
    normalization: Literal["simplex", "none"] = "simplex"
    # "step": softmax normaliser and tau over the whole optimizer step (all accumulation micro-batches and processes;
    # a no-grad pre-pass when gradient_accumulation_steps > 1). "micro_batch": over each micro-batch (cheaper; the
    # update then depends on how the batch is split).
    normalize_over: Literal["step", "micro_batch"] = "step"
    # "current": the weights (and a median tau) come from the model being trained; "base": from the frozen starting
    # model's token log-probabilities, computed once before training and cached (talr.reference_stats; PriFT,
    # arXiv 2606.09396), so they do not feed back on training.
    weights_from: Literal["current", "base"] = "current"

    def check(self) -> None:
        if self.tau != "median" and not self.tau > 0:
            raise ConfigError(f"tau: a fixed tau must be positive, got {self.tau}")
        _non_negative(self, "w_min")
        _positive(self, "tau_min")


@dataclass
class L2Config:
    """L2-to-init: ``weight * sum_j (theta_j - theta0_j)^2 / P`` over the P trainable parameters (docs/methods.md)."""

    # lambda = 1e-3: REGULARIZATION_LAMBDA of FLOW's reference launch script (Sanyal et al. 2025,
    # language/scripts/launch_ft_arithmetic.slurm), whose trainer also divides by P.
    weight: float = 1e-3

    def check(self) -> None:
        _non_negative(self, "weight")


@dataclass
class LoraConfig:
    # r = 16 with alpha = 2r on all linear layers: the math setting of Biderman et al. 2024 ("LoRA Learns Less and
    # Forgets Less"); dropout 0.05 is PEFT's example value (FLOW's code uses r = alpha = 64, dropout 0).
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"
    save_merged: bool = True  # also write run_dir/merged/ (a plain model folder) next to the adapter in model/

    def check(self) -> None:
        _positive(self, "r", "alpha")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout: must be in [0, 1), got {self.dropout}")


@dataclass
class FlowConfig:
    """FLOW (Sanyal et al. 2025): static sample weights ``exp(-f_s / tau)`` from the base model's losses."""

    tau: float | Literal["median"] = "median"
    batch_size: int = 8  # of the no-grad scoring pass before training
    cache: bool = True  # reuse the base model's token log-probabilities (talr.reference_stats' disk cache)

    def check(self) -> None:
        if self.tau != "median" and not self.tau > 0:
            raise ConfigError(f"tau: a fixed tau must be positive, got {self.tau}")
        _positive(self, "batch_size")


@dataclass
class WiseFtConfig:
    """WiSE-FT of one run: its model/ is ``(1 - alpha) * base + alpha * trained`` (talr.averaging)."""

    # alpha = 0.5: the mixing coefficient WiSE-FT (Wortsman et al. 2022) recommends when no held-out data picks one.
    alpha: float = 0.5

    def check(self) -> None:
        if not 0 <= self.alpha <= 1:
            raise ConfigError(f"alpha: must be in [0, 1], got {self.alpha}")
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

    def check(self) -> None:
        _positive(self, "learning_rate", "per_device_batch_size", "gradient_accumulation_steps", "logging_steps")
        if self.max_steps <= 0 and not self.num_epochs > 0:
            raise ConfigError("num_epochs: set num_epochs > 0 or max_steps > 0")
        from transformers.trainer_utils import SchedulerType

        schedulers = [s.value for s in SchedulerType]
        if self.lr_scheduler not in schedulers:
            raise ConfigError(f"lr_scheduler: unknown scheduler {self.lr_scheduler!r} (known: {', '.join(schedulers)})")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"warmup_ratio: must be in [0, 1), got {self.warmup_ratio}")
        _non_negative(self, "weight_decay", "max_grad_norm", "save_steps", "save_total_limit", "loss_head_cache_mib")
        if self.torch_threads is not None:
            _positive(self, "torch_threads")
        _non_negative(self, "divergence_margin")
        _positive(self, "divergence_patience")
        report_to = [self.report_to] if isinstance(self.report_to, str) else self.report_to
        if set(report_to) - {"none", "all"}:
            from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

            unknown = [name for name in report_to if name not in {"none", "all", *INTEGRATION_TO_CALLBACK}]
            if unknown:
                raise ConfigError(f"report_to: unknown {unknown[0]!r} "
                                  f"(known: none, all, {', '.join(INTEGRATION_TO_CALLBACK)})")


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

    def check(self) -> None:
        if self.domain is not None:
            checked_section("domain", self.domain)
        _positive(self, "every_n_steps", "batch_size")
        _non_negative(self, "general_size", "domain_size", "hard_token_size")


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
    # The registered methods' own settings, by method name (a top-level YAML key each, e.g. `eaft: {alpha: 1.0}`),
    # validated against the method class's Options dataclass; see options_for.
    method_options: dict = field(default_factory=dict)

    def options_for(self, name: str):
        """The settings of the registered method ``name`` (its ``Options`` dataclass, defaults where the config
        gives none), or None for a method without options."""
        if name not in self.method_options:
            options = _options_class(name)
            self.method_options[name] = options() if options is not None else None
        return self.method_options[name]

    def check(self) -> None:
        for name in ("data", "method", "talr", "l2", "lora", "flow", "wise_ft", "training", "probes"):
            checked_section(name, getattr(self, name))
        if self.method.averaging != "none" and not self.training.save_model:
            raise ConfigError(f"method.averaging: {self.method.averaging} averages the saved model; "
                              "set training.save_model: true")
        for name, options in self.method_options.items():
            if hasattr(options, "check"):  # an Options dataclass may define its own checks
                checked_section(name, options)


def _options_class(name: str):
    """The ``Options`` dataclass of the registered method ``name`` (imports its module), or None."""
    registry = option_sections()[name]
    return getattr(registry.load(name), "Options", None)


def _normalise(raw: dict) -> dict:
    """Accept the YAML shorthands: ``method: NAME`` (a preset: its sections, under the config's own keys) and
    ``data.train: PATH``."""
    raw = dict(raw)
    method = raw.get("method")
    if isinstance(method, str):
        if method not in PRESETS:
            raise ConfigError(f"method: unknown preset {method!r} (known: {', '.join(PRESETS)})")
        for section, values in PRESETS[method].items():
            own = raw.get(section) if section != "method" else None
            raw[section] = {**values, **own} if isinstance(own, dict) else (dict(values) if own is None else own)
    data = raw.get("data")
    if isinstance(data, dict) and isinstance(data.get("train"), str):
        raw["data"] = {**data, "train": {"path": data["train"]}}
    return raw


def _split_method_options(raw: dict) -> tuple[dict, dict]:
    """``(the config's own sections, {method name: its options mapping})``: a top-level key that is not a Config
    field but names a registered method holds that method's options."""
    fields = {f.name for f in dataclasses.fields(Config)} - {"method_options"}
    methods = option_sections()
    own, options = {}, {}
    for key, value in raw.items():
        if key == "method_options":
            raise ConfigError(f"method_options: unknown key (a method's options go under its name, e.g. "
                              f"{next(iter(methods))}:)")
        if key not in fields and key in methods:
            options[key] = value
        else:
            own[key] = value
    return own, options


def _build_method_options(config: Config, raw_options: dict) -> None:
    used = {getattr(config.method, axis) for axis in AXES}
    for name in sorted(used | set(raw_options)):
        if name not in option_sections():
            continue  # an axis' no-op ("none", "full")
        options = _options_class(name)
        if options is None:
            if name in raw_options:
                raise ConfigError(f"{name}: this method takes no options")
            continue
        config.method_options[name] = build_dataclass(options, raw_options.get(name) or {}, name)


def validate(config: Config) -> Config:
    """Every section's own checks (``check()`` next to its fields), then the checks across sections."""
    config.check()
    return config


def config_from_dict(raw: dict | None) -> Config:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("the configuration must be a mapping at the top level")
    own, raw_options = _split_method_options(_normalise(raw))
    config = build_dataclass(Config, own)
    _build_method_options(config, raw_options)
    return validate(config)


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
    """The config as YAML-ready data; the methods' options go back to their top-level keys."""
    data = dataclasses.asdict(config)
    options = data.pop("method_options")
    return {**data, **{name: values for name, values in options.items() if values is not None}}


def save_config(config: Config, path: str | Path) -> None:
    from talr.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config_to_dict(config), sort_keys=False))
