"""Training-time callbacks: the divergence check (rule in talr.divergence) and the probes, cheap measurements on
small fixed example sets appended to ``probes.jsonl`` in the run directory (one JSON object per line, ``"probe"``
says which).

* ``hard_tokens`` (at the start and at the end of every epoch): on a fixed slice of the training set, the fraction of
  hard tokens (p < 0.2), and the TALR weights of the tokens that were hard at the start. TALR gives hard tokens little
  weight; as training makes them easier they regain weight (the paper's implicit curriculum), and this probe shows it.
* ``codelength`` (at the start, every ``every_n_steps`` optimizer steps, and at the end): code length of a general
  probe set (P1, default: Alpaca reference responses) and a domain probe set (P2, default: training examples held out
  of training) and Delta L against the starting model, with paired standard errors. Rising general Delta L is general
  damage building up, visible without running a generation benchmark.

Probes score in eval mode without gradients and restore training mode; every process scores (so sharded models
work) and only the main process writes.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from transformers import TrainerCallback

from talr import losses, scoring, stats, token_stats
from talr.data import chat
from talr.data.formats import DataFormatError, tokenize_examples
from talr.divergence import DivergenceRule, TrainingDiverged
from talr.io import append_jsonl, read_jsonl_records
from talr.plots import save_figure
from talr.run_dir import RunDir
from talr.sampling import seeded_indices, seeded_subset
from talr.methods.talr import TalrWeighting
from talr.step_normalizer import weights_as_trained

logger = logging.getLogger(__name__)

WEIGHT_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


class ProbeLog:
    """Writes probe records to a JSONL file line by line, from the main process only. The first write replaces any
    earlier file and starts with the ``header`` record (what the probes measure on)."""

    def __init__(self, path: Path, header: dict | None = None):
        self.path = Path(path)
        self.header = header
        self.started = False

    def write(self, state, record: dict) -> None:
        if not state.is_world_process_zero:
            return
        if not self.started:
            self.path.write_text("")  # a log restarts with its run
        append_jsonl(self.path, [self.header, record] if not self.started and self.header is not None else [record])
        self.started = True


def curriculum_record(initial: list[scoring.ExampleScores], current: list[scoring.ExampleScores],
                      weights: list[np.ndarray], threshold: float = losses.HARD_TOKEN_PROB) -> dict:
    """Hard-token statistics of ``current`` scores, and the TALR ``weights`` of the tokens that were hard in
    ``initial`` (the same examples scored by the starting model) against those of the other tokens."""
    logp0 = token_stats.all_logp(initial)
    logp = token_stats.all_logp(current)
    w = np.concatenate(weights)
    if not (logp0.shape == logp.shape == w.shape):
        raise ValueError("initial scores, current scores and weights must align token for token")
    hard0 = np.exp(logp0) < threshold
    record = {
        "tokens": int(logp.size),
        **{f"hard_frac_{t:g}": f for t, f in token_stats.hard_token_fractions(logp).items()},
        "initially_hard": int(hard0.sum()),
    }
    if hard0.any():
        record["initially_hard_still_hard"] = float((np.exp(logp[hard0]) < threshold).mean())
        record["initially_hard_mean_prob"] = float(np.exp(logp[hard0]).mean())
        record["initially_hard_weight_mean"] = float(w[hard0].mean())
        for q in WEIGHT_QUANTILES:
            record[f"initially_hard_weight_q{int(q * 100)}"] = float(np.quantile(w[hard0], q))
    if (~hard0).any():
        record["initially_easy_weight_mean"] = float(w[~hard0].mean())
    return record


class HardTokenProbe(TrainerCallback):
    """The ``hard_tokens`` probe on tokenised training ``features``. Its TALR weights are the ones training computes
    (talr.step_normalizer.weights_as_trained: the run's TALR settings, normalised over what training normalises
    over, an optimizer step by default), also for non-TALR runs: the weights TALR would have given."""

    def __init__(self, features: list[dict], pad_token_id: int, log: ProbeLog, config, batch_size: int = 8):
        self.features = features
        self.pad_token_id = pad_token_id
        self.log = log
        self.config = config
        self.talr = TalrWeighting(config)
        self.batch_size = batch_size
        self.initial: list[scoring.ExampleScores] | None = None
        self.last_step: int | None = None

    def _measure(self, model, state) -> None:
        scores = scoring.score_features(model, self.features, self.pad_token_id, self.batch_size)
        if self.initial is None:
            self.initial = scores
        record = curriculum_record(self.initial, scores, self.token_weights(scores))
        self.log.write(state, {"probe": "hard_tokens", "step": state.global_step, "epoch": state.epoch or 0.0,
                               "examples": len(scores), **record})
        self.last_step = state.global_step

    def token_weights(self, scores: list[scoring.ExampleScores]) -> list[np.ndarray]:
        """The TALR weight of each scored token, as training computes it for these examples in this order (from the
        starting model's scores, the probe's first, when the run's TALR weights come from the base model)."""
        source = self.initial if self.talr.weights_logp_field is not None else scores
        return weights_as_trained(self.talr, [s.logp for s in source], self.config)

    def resume(self, model, step: int) -> None:
        """Continue a run resumed at ``step``: ``model`` (the starting model, before the checkpoint's weights load)
        gives the baseline again; nothing is written until training moves past ``step``."""
        self.initial = scoring.score_features(model, self.features, self.pad_token_id, self.batch_size)
        self.last_step = step
        self.log.started = True

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.initial is None:  # else resumed: the start was measured by the interrupted run
            self._measure(model, state)

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        if state.global_step != self.last_step:
            self._measure(model, state)


class CodeLengthProbe(TrainerCallback):
    """The ``codelength`` probe on named sets of tokenised features (``general``, ``domain``)."""

    def __init__(self, sets: dict[str, list[dict]], pad_token_id: int, log: ProbeLog, every_n_steps: int,
                 batch_size: int = 8):
        if not sets:
            raise ValueError("CodeLengthProbe needs at least one probe set")
        self.sets = sets
        self.pad_token_id = pad_token_id
        self.log = log
        self.every_n_steps = every_n_steps
        self.batch_size = batch_size
        self.initial: dict[str, list[scoring.ExampleScores]] = {}
        self.last_step: int | None = None

    def _measure(self, model, state) -> None:
        record = {"probe": "codelength", "step": state.global_step, "epoch": state.epoch or 0.0}
        for name, features in self.sets.items():
            scores = scoring.score_features(model, features, self.pad_token_id, self.batch_size)
            self.initial.setdefault(name, scores)
            compared = token_stats.compare_code_lengths(self.initial[name], scores)
            record.update({
                f"{name}_examples": compared["examples"],
                f"{name}_bits": compared["bits_b"],
                f"{name}_bits_per_token": compared["bits_per_token_b"],
                f"{name}_delta_bits": compared["delta_bits"], f"{name}_delta_bits_se": compared["delta_bits_se"],
                f"{name}_delta_bits_per_token": compared["delta_bits_per_token"],
                f"{name}_delta_bits_per_token_se": compared["delta_bits_per_token_se"],
            })
        if "general" in self.sets and "domain" in self.sets and record["domain_delta_bits"] != 0:
            record["cost_per_gain"], record["cost_per_gain_se"] = stats.cost_per_gain(
                record["general_delta_bits"], record["general_delta_bits_se"],
                record["domain_delta_bits"], record["domain_delta_bits_se"])
        self.log.write(state, record)
        self.last_step = state.global_step

    def resume(self, model, step: int) -> None:
        """As :meth:`HardTokenProbe.resume`."""
        self.initial = {name: scoring.score_features(model, features, self.pad_token_id, self.batch_size)
                        for name, features in self.sets.items()}
        self.last_step = step
        self.log.started = True

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if not self.initial:  # else resumed: the start was measured by the interrupted run
            self._measure(model, state)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every_n_steps == 0 and state.global_step != self.last_step:
            self._measure(model, state)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if state.global_step != self.last_step:
            self._measure(model, state)


class DivergenceCallback(TrainerCallback):
    """Applies a :class:`talr.divergence.DivergenceRule` to every training log: raises TrainingDiverged out of
    ``Trainer.train`` when it fires, and holds back checkpoints while the loss is above the margin."""

    def __init__(self, rule: DivergenceRule):
        self.rule = rule

    def on_train_begin(self, args, state, control, **kwargs):
        # A resumed run's log history (restored from the checkpoint) sets the reference and any current streak.
        for logs in state.log_history:
            if "loss" in logs:
                self.rule.observe(int(logs.get("step", 0)), logs)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "loss" not in logs:
            return
        reason = self.rule.observe(state.global_step, logs)
        if reason is not None:
            raise TrainingDiverged(state.global_step, reason, self.rule.last_good_step)
        if self.rule.above:
            control.should_save = False  # never checkpoint a model the rule already doubts


def hold_out(examples: list[dict], count: int, seed: int) -> tuple[list[dict], list[dict], list[int]]:
    """Split off ``count`` seeded-random examples: ``(kept, held_out, held_out_indices)``, both in original order."""
    chosen = seeded_indices(len(examples), count, seed)
    taken = set(chosen)
    return [ex for i, ex in enumerate(examples) if i not in taken], [examples[i] for i in chosen], chosen


def domain_holdout_size(config, n_examples: int) -> int:
    """How many training examples the domain probe takes out of training: ``probes.domain_size``, at most a tenth
    of the data, and none when ``probes.domain`` names a separate set."""
    if config.probes.domain is not None:
        return 0
    return min(config.probes.domain_size, n_examples // 10)


def _probe_features(examples: list[dict], tokenizer, max_length: int, source: str) -> list[dict]:
    """Tokenised probe examples, or none: a probe is a diagnostic, so a set that ``max_length`` empties (long Alpaca
    answers under a short domain ``max_length``) is skipped with a warning instead of stopping the training run."""
    try:
        features, _ = tokenize_examples(examples, tokenizer, max_length, source=source)
    except DataFormatError as error:
        logger.warning("Probes: %s; this probe is skipped", error)
        return []
    return features


def build_probes(config, examples: list[dict], tokenizer, run_dir: Path) -> tuple[list[dict], list[TrainerCallback]]:
    """The training examples left after the domain hold-out, and the probe callbacks for ``config.probes``.

    The hold-out depends on ``probes.domain`` and ``probes.domain_size`` only, never on ``probes.enabled``, so turning
    the probes off does not change what a run trains on.
    """
    p = config.probes
    max_length = config.data.max_length
    holdout = domain_holdout_size(config, len(examples))
    examples, held_out, held_out_indices = hold_out(examples, holdout, config.seed)
    if holdout:
        logger.info("Probes: %d training examples held out as the domain probe set (probes.domain_size)", holdout)
    if not p.enabled:
        return examples, []
    log = ProbeLog(RunDir(run_dir).probes_file)
    callbacks: list[TrainerCallback] = []
    pad = tokenizer.pad_token_id

    sets: dict[str, list[dict]] = {}
    general = p.general
    if general == "alpaca" and chat.default_general_probe() is None:
        logger.warning("Probes: no Alpaca file in the data folder, so no general code-length probe "
                       "(set probes.general to a JSONL file of chat examples)")
        general = None
    if general is not None and p.general_size > 0:
        general_examples = seeded_subset(chat.load_chat_examples(general), p.general_size, config.seed)
        sets["general"] = _probe_features(general_examples, tokenizer, max_length, f"probe {general}")
    if p.domain is not None:
        from talr.data import load_train_examples

        domain_examples, source = load_train_examples(p.domain, seed=config.seed)
        domain_examples = seeded_subset(domain_examples, p.domain_size, config.seed)
    else:
        domain_examples, source = held_out, "held-out training examples"
    if domain_examples:
        sets["domain"] = _probe_features(domain_examples, tokenizer, max_length, f"probe {source}")
    sets = {name: features for name, features in sets.items() if features}
    if sets:
        callbacks.append(CodeLengthProbe(sets, pad, log, p.every_n_steps, p.batch_size))

    hard_features: list[dict] = []
    if p.hard_token_size > 0:
        slice_ = seeded_subset(examples, p.hard_token_size, config.seed)
        hard_features = _probe_features(slice_, tokenizer, max_length, "hard-token probe slice")
    if hard_features:
        callbacks.append(HardTokenProbe(hard_features, pad, log, config, p.batch_size))
    log.header = {"probe": "setup", "domain_source": source if domain_examples else None,
                  "domain_held_out_indices": held_out_indices, "sets": {name: len(f) for name, f in sets.items()},
                  "hard_token_examples": len(hard_features)}
    return examples, callbacks


def read_probes(run_dir: str | Path) -> list[dict]:
    path = RunDir(run_dir).probes_file
    if not path.is_file():
        return []
    return read_jsonl_records(path)


def plot_probes(run_dirs: dict[str, str | Path], path: str | Path) -> Path:
    """One figure of the probes of several runs (label -> run dir): general and domain Delta L against step (with
    standard-error bands), and the TALR weight of initially hard tokens against epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for label, run_dir in run_dirs.items():
        records = read_probes(run_dir)
        code = [r for r in records if r["probe"] == "codelength"]
        hard = [r for r in records if r["probe"] == "hard_tokens"]
        for ax, name in zip(axes[:2], ("general", "domain")):
            rows = [r for r in code if f"{name}_delta_bits" in r]
            if rows:
                steps = np.array([r["step"] for r in rows])
                delta = np.array([r[f"{name}_delta_bits"] for r in rows])
                se = np.nan_to_num(np.array([r[f"{name}_delta_bits_se"] for r in rows]))
                (line,) = ax.plot(steps, delta, marker="o", markersize=3, label=label)
                ax.fill_between(steps, delta - se, delta + se, color=line.get_color(), alpha=0.2)
        rows = [r for r in hard if "initially_hard_weight_q50" in r]
        if rows:
            epochs = np.array([r["epoch"] for r in rows])
            (line,) = axes[2].plot(epochs, [r["initially_hard_weight_mean"] for r in rows], marker="o",
                                   markersize=3, label=f"{label} (mean; band q25-q75)")
            axes[2].fill_between(epochs, [r["initially_hard_weight_q25"] for r in rows],
                                 [r["initially_hard_weight_q75"] for r in rows], color=line.get_color(), alpha=0.2)
    titles = ("general probe: Delta L vs start (bits/response)", "domain probe: Delta L vs start (bits/response)",
              "TALR weight of initially hard tokens (1 = SFT)")
    for ax, title, xlabel in zip(axes, titles, ("optimizer step", "optimizer step", "epoch")):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.axhline(0 if xlabel != "epoch" else 1, color="grey", linewidth=0.8, linestyle=":")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    return save_figure(fig, path, dpi=110)
