"""The training engine: a ``transformers.Trainer`` whose loss is any registered token weighting, and the recipe that
turns a :class:`talr.config.Config` into a finished run directory.

The run directory's layout (``config.yaml``, ``metrics.jsonl``, ``model/``, ``run.json``, ``checkpoints/``, the
method extras ``finetuned/``, ``merged/``, ``flow_weights.json``) is described and named in :mod:`talr.run_dir`. A run
is finished when ``run.json`` has ``"status": "finished"`` (``"diverged"``: stopped by talr.divergence).
"""

from __future__ import annotations

import logging
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments, set_seed

from talr import __version__, losses
from talr.callbacks import DivergenceCallback, build_probes
from talr.checkpoints import prepare_resume, remove_checkpoints, start_fresh
from talr.config import Config, config_to_dict, save_config
from talr.data import load_train_examples
from talr.data.formats import CausalLMCollator, tokenize_examples
from talr.divergence import TrainingDiverged, divergence_rule, record_divergence
from talr.io import append_jsonl, atomic_write_json, read_jsonl_records
from talr.loss_head import CausalLMHead
from talr.methods import ADAPTERS, AVERAGINGS, REGULARIZERS
from talr.methods.base import PreparedRun, TokenWeighting, build_weighting
from talr.model_card import write_run_cards
from talr.models import check_model_spec, load_model
from talr.precision import autocast_name, log_startup, precision_record, resolve_autocast
from talr.run_dir import RunDir
from talr.step_normalizer import STEP_WEIGHTS_KEY, step_token_weights
from talr.token_statistics import statistics_of_logits

logger = logging.getLogger(__name__)


class TalrTrainer(Trainer):
    """``Trainer`` with talr's losses.

    The loss of a micro-batch is ``sum_i w_i * l_i / num_items_in_batch`` where ``num_items_in_batch`` is the number
    of supervised tokens in the whole optimizer step (all accumulation steps, all processes when
    ``average_tokens_across_devices``), exactly as transformers normalises its own causal-LM loss; the loss is then
    already scaled for gradient accumulation (``loss_is_scaled_for_ga``) and is multiplied by the number of processes
    because DDP averages gradients. Plain SFT weights (all 1) reproduce transformers' default loss.
    """

    loss_is_scaled_for_ga = True

    def __init__(self, *args, run_config: Config, regularizer=None, weighting: TokenWeighting | None = None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.run_config = run_config
        self.token_weighting = weighting if weighting is not None else build_weighting(run_config)
        self.regularizer = regularizer
        self.side_fields = tuple(self.token_weighting.side_inputs)
        # Always count the step's supervised tokens (transformers only does when it thinks the model computes the
        # loss); compute_loss below never passes num_items_in_batch into the model.
        self.model_accepts_loss_kwargs = True
        self._stats = _StepStats()
        # Fused (chunked) head and step-exact batch weights: see talr.loss_head, talr.step_normalizer and
        # docs/performance.md.
        # Sharded engines (FSDP, DeepSpeed ZeRO) gather lm_head's weight only inside the model's forward.
        sharded = self.is_fsdp_enabled or self.is_deepspeed_enabled
        self.head = CausalLMHead(self.model, fused=run_config.training.loss_head == "fused" and not sharded,
                                 cache_bytes=run_config.training.loss_head_cache_mib * 2**20)
        self.weighting_scope = self.token_weighting.scope

    def _weights_over_step(self) -> bool:
        return self.weighting_scope == "batch" and self.run_config.talr.normalize_over == "step"

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        batch_samples, num_items_in_batch = super().get_batch_samples(epoch_iterator, num_batches, device)
        # weights read from side inputs are known before any forward, so the step's are computed here even for one
        # micro-batch; the trained model's need a pre-pass only when a later micro-batch has not run yet
        from_side = self.token_weighting.weights_logp_field is not None
        if self._weights_over_step() and (len(batch_samples) > 1 or from_side):
            self._attach_step_weights(batch_samples)
        return batch_samples, num_items_in_batch

    @torch.no_grad()
    def _attach_step_weights(self, batch_samples: list[dict]) -> None:
        """The weights of each micro-batch over the whole step, before its backward: from the side inputs the
        weighting reads, or from a no-grad pre-pass of the trained model over the step's micro-batches."""
        model = self.model_wrapped
        model.train()
        logps, masks, statistics = [], [], []
        for batch in batch_samples:
            inputs = self._prepare_inputs(dict(batch))
            labels = inputs.pop("labels")
            side = {name: inputs.pop(name) for name in self.side_fields if name in inputs}
            mask = labels[:, 1:] != losses.IGNORE_INDEX
            logp, stats = self.token_weighting.weights_logp(None, mask, side), {}
            if logp is None:  # not read from side inputs: the trained model's, from a no-grad pass
                logp, mask, stats = self._logprobs(model, inputs, labels)
            logps.append(logp)
            masks.append(mask)
            statistics.append(stats)
        for batch, weights in zip(batch_samples, step_token_weights(self.token_weighting, logps, masks,
                                                                    statistics=statistics)):
            batch[STEP_WEIGHTS_KEY] = weights

    def _logprobs(self, model, inputs, labels):
        """``(logp, mask, statistics)``: the head's log-probabilities and the per-token statistics the weighting asks
        for (``token_statistics``; an empty dict for most weightings), both heads alike."""
        return self.head.logprobs(model, inputs, labels, statistics=self.token_weighting.token_statistics)

    def _weighted_nll(self, model, inputs, labels, side):
        """``(sum_i w_i * l_i, logp, mask, weights)`` through the cheapest exact path for this weighting."""
        weights = inputs.pop(STEP_WEIGHTS_KEY, None)
        if weights is None:
            mask = labels[:, 1:] != losses.IGNORE_INDEX
            known = self.token_weighting.weights_logp(None, mask, side)  # read from side inputs
            if known is None and self.weighting_scope == "labels":
                known = torch.zeros(mask.shape, device=mask.device)
            if known is not None:
                weights = self.token_weighting.weights(known, mask, side)
        if weights is not None:  # known before the forward: one-pass head
            nll, logp, mask = self.head.weighted_nll(model, inputs, labels, weights.detach())
            return nll, logp, mask, weights.detach()
        logp, mask, stats = self._logprobs(model, inputs, labels)
        if model.training and self._weights_over_step():
            (weights,) = step_token_weights(self.token_weighting, [logp], [mask], statistics=[stats])
        else:
            weights = self.token_weighting.weights(logp, mask, {**side, **stats}).detach()
        return losses.weighted_nll(logp, weights), logp, mask, weights

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        side = {name: inputs.pop(name) for name in self.side_fields if name in inputs}
        # The penalty is built before the forward so backward reaches it last: built after, its gradients (one per
        # trainable tensor) would all be computed first and wait for the model's, adding a full gradient's memory
        # at the activation peak.
        penalty = self.regularizer.penalty(model) if self.regularizer is not None else None
        if return_outputs or self.token_weighting.needs_logits:  # the caller or the weighting wants the logits
            step_weights = inputs.pop(STEP_WEIGHTS_KEY, None)
            outputs = model(**inputs)
            logp, mask = losses.token_logprobs(outputs.logits, labels)
            if step_weights is not None and model.training:
                weights = step_weights
            else:
                side.update(statistics_of_logits(outputs.logits, labels, self.token_weighting.token_statistics))
                weights = self.token_weighting.weights(
                    self.token_weighting.weights_logp(logp, mask, side), mask, side).detach()
            nll = losses.weighted_nll(logp, weights)
            extra = self.token_weighting.auxiliary_loss(model, inputs, outputs.logits, mask)
            if extra is not None:
                nll = nll + extra
            outputs = outputs if return_outputs else None
        else:
            outputs = extra = None
            nll, logp, mask, weights = self._weighted_nll(model, inputs, labels, side)
        denominator = num_items_in_batch if num_items_in_batch is not None else mask.sum()
        loss = nll / denominator
        if num_items_in_batch is not None and self.args.average_tokens_across_devices:
            loss = loss * self.accelerator.num_processes
        if penalty is not None:
            # added once per optimizer step in total, whatever the accumulation
            loss = loss + penalty / getattr(self, "current_gradient_accumulation_steps", 1)
        if model.training:
            self._stats.add(logp, mask, weights, inputs.get("attention_mask"), self.run_config, extra)
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # a training log: add what the steps since the last one measured
            logs.update(self._stats.flush())
        super().log(logs, start_time)


class _StepStats:
    """Sums over the micro-batches since the last log, kept as tensors so logging never syncs a device per step."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.batches = 0
        self.started = time.perf_counter()

    def _add(self, name: str, value: torch.Tensor) -> None:
        value = value.detach().float()
        self.sums[name] = self.sums[name] + value if name in self.sums else value

    @torch.no_grad()
    def add(self, logp, mask, weights, attention_mask, config: Config, auxiliary=None) -> None:
        probs = logp.exp()
        if auxiliary is not None:  # the weighting's extra term (e.g. ASFT's alpha * KL), summed over these tokens
            self._add("auxiliary", auxiliary)
        self._add("tokens", mask.sum())
        self._add("nll", -(logp * mask).sum())
        self._add("p", (probs * mask).sum())
        self._add("hard", ((probs < losses.HARD_TOKEN_PROB) & mask).sum())
        self._add("input_tokens", attention_mask.sum() if attention_mask is not None else torch.tensor(logp.numel()))
        tau = losses.talr_tau(logp, mask, config.talr)
        self._add("tau", tau)
        self._add("ess", losses.effective_sample_fraction(weights, mask))
        self.batches += 1

    def flush(self) -> dict[str, float]:
        if not self.batches:
            return {}
        s = {k: float(v) for k, v in self.sums.items()}
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        out = {
            "nll": s["nll"] / s["tokens"],
            "mean_token_prob": s["p"] / s["tokens"],
            "hard_token_frac": s["hard"] / s["tokens"],
            "tau": s["tau"] / self.batches,
            "ess_frac": s["ess"] / self.batches,
            "tokens_per_s": s["input_tokens"] / elapsed,
            **({"auxiliary_loss": s["auxiliary"] / s["tokens"]} if "auxiliary" in s else {}),
        }
        self.reset()
        return out


class MetricsFileCallback(TrainerCallback):
    """Appends every log to ``metrics.jsonl`` (main process only), flushed line by line so nothing is lost."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            record = {"step": state.global_step, **{k: v for k, v in logs.items() if isinstance(v, (int, float))}}
            append_jsonl(self.path, [record])


def _git_hash() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _versions() -> dict[str, str]:
    import accelerate
    import peft
    import transformers

    return {
        "talr": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
        "accelerate": accelerate.__version__, "peft": peft.__version__, "python": platform.python_version(),
    }


def _peak_rss_mib() -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def training_arguments(config: Config, run_dir: Path) -> TrainingArguments:
    t = config.training
    use_cuda = torch.cuda.is_available()
    autocast = resolve_autocast(t.autocast)
    return TrainingArguments(
        output_dir=str(RunDir(run_dir).checkpoints_dir),
        learning_rate=t.learning_rate,
        num_train_epochs=t.num_epochs,
        max_steps=t.max_steps,
        per_device_train_batch_size=t.per_device_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup_ratio,  # transformers 5.x: a float < 1 is a ratio of the total steps
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        logging_steps=t.logging_steps,
        logging_first_step=True,
        save_strategy="steps" if t.save_steps else "no",
        save_steps=t.save_steps or None,
        save_total_limit=t.save_total_limit or None,
        logging_nan_inf_filter=False,  # a non-finite loss must reach the log (talr.divergence), not be averaged away
        report_to=t.report_to,
        seed=config.seed,
        data_seed=config.seed,
        bf16=autocast == "bf16",
        fp16=autocast == "fp16",
        use_cpu=not use_cuda,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        disable_tqdm=False,
    )


def _run_trainer(trainer: TalrTrainer, checkpoint, rule, config: Config):
    """``trainer.train()``, from ``checkpoint`` when there is one; a divergence is recorded (talr.divergence) and
    raised again."""
    try:
        try:
            return trainer.train(resume_from_checkpoint=str(checkpoint.path) if checkpoint else None)
        except FloatingPointError as error:  # talr.losses met a non-finite log-probability in a forward
            step = trainer.state.global_step
            raise TrainingDiverged(step + 1, str(error), rule.last_good_step if rule else step) from None
    except TrainingDiverged as error:
        if trainer.is_world_process_zero():
            record_divergence(Path(config.output_dir), error, {
                "seed": config.seed, "versions": _versions(), "git": _git_hash(), "config": config_to_dict(config)})
        raise


def train(config: Config, callbacks: Sequence[TrainerCallback] = (), resume: bool = False) -> Path:
    """Train one run described by ``config`` and return its run directory; ``callbacks`` are added to the
    Trainer's (e.g. a benchmark's step timer). ``resume``: continue from the run directory's last complete
    checkpoint (talr.checkpoints; from step 0 when there is none). Raises TrainingDiverged (talr.divergence) after
    marking the run diverged."""
    started, cpu_started = time.time(), time.process_time()
    check_model_spec(config.model)  # an unknown model fails before anything is written or loaded
    run_dir = Path(config.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    main_process = os.environ.get("RANK", "0") == "0"  # under accelerate/torchrun only rank 0 edits the folder
    checkpoint = prepare_resume(config_to_dict(config), run_dir, edit=main_process) if resume else None
    if checkpoint is None and main_process:
        start_fresh(run_dir)
    if config.training.save_steps % config.training.logging_steps:
        logger.warning("training.save_steps (%d) is not a multiple of training.logging_steps (%d): after a resume "
                       "the first metrics.jsonl row averages only the steps since the checkpoint",
                       config.training.save_steps, config.training.logging_steps)
    run = RunDir(run_dir)
    save_config(config, run.config_file)
    metrics_path = run.metrics_file
    if config.training.torch_threads:
        torch.set_num_threads(config.training.torch_threads)
    set_seed(config.seed)
    autocast = resolve_autocast(config.training.autocast)
    log_startup("train", autocast_name(autocast))

    model, tokenizer = load_model(config.model, trust_remote_code=config.trust_remote_code)
    examples, source = load_train_examples(config.data.train, seed=config.seed)
    examples, probe_callbacks = build_probes(config, examples, tokenizer, run_dir)
    features, token_stats = tokenize_examples(examples, tokenizer, config.data.max_length, source=source)
    logger.info("Training on %d examples (%d supervised tokens)", len(features), token_stats.supervised_tokens)

    weighting = build_weighting(config)
    # one-time work of the weighting (FLOW scores the base model) on the starting model, before any adapter
    weighting.prepare(PreparedRun(model, tokenizer, examples, features, run_dir, resumed=checkpoint is not None))
    adapter = ADAPTERS.load(config.method.adapter)
    model = adapter.apply(model, config) if adapter else model
    make_regularizer = REGULARIZERS.load(config.method.regularizer)
    regularizer = make_regularizer(model, config) if make_regularizer else None
    args = training_arguments(config, run_dir)
    rule = divergence_rule(config)
    trainer = TalrTrainer(
        model=model,
        args=args,
        train_dataset=features,
        data_collator=CausalLMCollator(pad_token_id=tokenizer.pad_token_id, float_fields=weighting.side_inputs),
        processing_class=tokenizer,
        callbacks=[MetricsFileCallback(metrics_path), *([DivergenceCallback(rule)] if rule else []),
                   *probe_callbacks, *callbacks],
        run_config=config,
        regularizer=regularizer,
        weighting=weighting,
    )
    if checkpoint is not None:
        for probe in probe_callbacks:  # baselines from the starting model, before the checkpoint's weights load
            probe.resume(trainer.model, checkpoint.step)
    result = _run_trainer(trainer, checkpoint, rule, config)

    averaging = AVERAGINGS.load(config.method.averaging)
    if config.training.save_model and trainer.is_world_process_zero():
        # model/ always holds the method's final model: the average when there is one, training's own weights
        # (a LoRA adapter for lora runs) then kept in finetuned/
        trained_dir = run.finetuned_dir if averaging else run.model_dir
        trainer.save_model(str(trained_dir))
        if averaging:
            averaging(config.model, trained_dir, run.model_dir, config)
        if adapter:
            adapter.finish(trainer.model, tokenizer, run, config)
    if trainer.is_world_process_zero():
        steps = read_jsonl_records(metrics_path)
        throughput = [s["tokens_per_s"] for s in steps if "tokens_per_s" in s]
        atomic_write_json(run.record_file, {
            "status": "finished",
            "versions": _versions(),
            "seed": config.seed,
            "git": _git_hash(),
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)",
            **precision_record(config.training.autocast, autocast),
            "torch_threads": torch.get_num_threads(),
            "wall_time_s": round(time.time() - started, 2),
            "cpu_time_s": round(time.process_time() - cpu_started, 2),  # all threads; since the resume, if one
            "train_runtime_s": result.metrics.get("train_runtime"),
            "global_steps": result.global_step,
            "resumed_from_step": checkpoint.step if checkpoint else None,
            "final_train_loss": result.training_loss,
            "mean_tokens_per_s": sum(throughput) / len(throughput) if throughput else None,
            "peak_rss_mib": round(_peak_rss_mib(), 1),
            "data": {"source": source, **token_stats.as_dict()},
            "config": config_to_dict(config),
        })
        if not config.training.keep_checkpoints:
            remove_checkpoints(run_dir)
        write_run_cards(run_dir)  # after run.json: the cards quote its steps and versions
    return run_dir
