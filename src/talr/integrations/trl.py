"""TALR (or any per-token talr weighting) in TRL's ``SFTTrainer``, on TRL's own loss path.

Usage (``pip install "talr[trl]"``)::

    from talr.integrations.trl import TalrSFTTrainer
    trainer = TalrSFTTrainer(model=model, args=SFTConfig(...), train_dataset=dataset, talr="talr")
    trainer.train()

Why it is built this way (checked against trl 1.16.0's source): ``SFTTrainer`` patches the model with a fused LM head
(``trl.trainer.utils.add_fused_lm_head``); ``model(..., fused_lm_head=True)`` returns each token's ``log_probs`` (zero
where the label is ignored) and ``label_mask`` without materialising the ``[tokens, vocab]`` logits, and its chunked
kernel's backward takes any incoming gradient per token, so a reweighted ``sum_i w_i * log_probs_i`` is exact at no
extra matmul. TRL's ``compute_loss`` then reduces ``-sum_i log_probs_i / num_items_in_batch`` and logs its own
metrics (entropy, token accuracy, token count, MoE auxiliary loss). This trainer runs that ``compute_loss`` unchanged,
reads the same forward's log-probabilities, and swaps the token term for ``-sum_i w_i * log_probs_i`` with the same
denominator and scale. Everything talr-specific is :class:`talr.trainer.TalrTrainer`'s: the registered weightings,
the step-exact weights (a no-grad pre-pass over the optimizer step's micro-batches, here through TRL's fused head),
and the logged tau / ess_frac / hard_token_frac. ``compute_loss_func`` (deprecated in TRL: an extra forward) is not
used.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version

from packaging.version import Version

# Tested range (also the `trl` extra in pyproject.toml): the fused-head contract above is trl 1.16's.
TRL_MIN, TRL_BELOW = "1.16", "1.17"


def _check_trl_version() -> str:
    try:
        found = version("trl")
    except PackageNotFoundError:
        raise ImportError(f'talr.integrations.trl needs trl>={TRL_MIN},<{TRL_BELOW}: pip install "talr[trl]"') from None
    if not Version(TRL_MIN) <= Version(found) < Version(TRL_BELOW):
        raise ImportError(
            f'talr.integrations.trl is tested with trl>={TRL_MIN},<{TRL_BELOW}, found trl {found}: '
            f'pip install "talr[trl]" (or "trl>={TRL_MIN},<{TRL_BELOW}")'
        )
    return found


TRL_VERSION = _check_trl_version()

import torch  # noqa: E402
from trl import SFTTrainer  # noqa: E402

from talr.config import Config  # noqa: E402
from talr.integrations import weighting_config  # noqa: E402
from talr.step_normalizer import STEP_WEIGHTS_KEY, step_token_weights  # noqa: E402
from talr.trainer import TalrTrainer  # noqa: E402


def _patched_model(trainer) -> torch.nn.Module:
    """The module whose forward TRL replaced with the fused head (the base model under PEFT)."""
    model = trainer.model
    return model.get_base_model() if hasattr(model, "get_base_model") else model


class _TrlFusedHead:
    """Log-probabilities through TRL's fused head, for TalrTrainer's step pre-pass (same kernel as the loss)."""

    @staticmethod
    def logprobs(model, inputs: dict, labels: torch.Tensor):
        outputs = model(**inputs, labels=labels, use_cache=False, fused_lm_head=True)
        return outputs.log_probs, outputs.label_mask


class TalrSFTTrainer(TalrTrainer, SFTTrainer):
    """TRL ``SFTTrainer`` whose token loss is a talr weighting.

    ``talr``: a loss name (``"talr"``, ``"dft"``, ``"sft"``), a mapping ``{"loss": NAME, **talr_options}`` or a talr
    ``Config`` (see :func:`talr.integrations.weighting_config`). Every other argument is ``SFTTrainer``'s. The loss is
    ``sum_i w_i * l_i / num_items_in_batch`` (the supervised tokens of the whole optimizer step), so ``talr="sft"``
    is TRL's own ``loss_type="nll"`` loss, and with ``normalize_over: step`` (the default) TALR's weights are computed
    over the whole optimizer step. Evaluation losses use the same weighting, per evaluation batch.
    """

    def __init__(self, *args, talr: Config | Mapping | str = "talr", **kwargs):
        config = weighting_config(talr)
        # TalrTrainer would probe talr's own fused head on the model; TRL's head computes the log-probabilities here.
        config = dataclasses.replace(config, training=dataclasses.replace(config.training, loss_head="reference"))
        self._fused_outputs: list = []
        super().__init__(*args, run_config=config, **kwargs)
        self._reject_unsupported()
        self.head = _TrlFusedHead()
        _patched_model(self).register_forward_hook(self._keep_fused_outputs, with_kwargs=True)

    def _reject_unsupported(self) -> None:
        args = self.args
        reasons = {
            "loss_type": args.loss_type != "nll" and f"loss_type={args.loss_type!r} (the talr weighting replaces it; "
                                                     "use talr='dft' for DFT)",
            "compute_loss_func": self.compute_loss_func is not None and "a compute_loss_func",
            "label_smoothing_factor": args.label_smoothing_factor > 0 and "label smoothing",
        }
        parallelism = getattr(self.accelerator, "parallelism_config", None)
        if parallelism is not None and getattr(parallelism, "sp_enabled", False):
            reasons["parallelism_config"] = "sequence parallelism (the loss is then the model's own)"
        for key, reason in reasons.items():
            if reason:
                raise ValueError(f"TalrSFTTrainer: {key}: {reason} is not supported with a talr weighting")

    def _keep_fused_outputs(self, module, args, kwargs, output) -> None:
        if kwargs.get("fused_lm_head"):
            self._fused_outputs.append(output)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        step_weights = inputs.pop(STEP_WEIGHTS_KEY, None)
        self._fused_outputs.clear()
        result = SFTTrainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)
        loss, outputs = result if return_outputs else (result, None)
        if len(self._fused_outputs) != 1:
            raise RuntimeError(f"TRL's compute_loss ran the fused head {len(self._fused_outputs)} times, expected once")
        fused = self._fused_outputs.pop()
        logp, mask = fused.log_probs, fused.label_mask
        if step_weights is not None:
            weights = step_weights.to(logp.dtype)
        elif model.training and self._weights_over_step():
            (weights,) = step_token_weights(self.token_weighting, [logp], [mask])
        else:
            weights = self.token_weighting.weights(logp, mask, {}).detach()
        # TRL's token term is -sum_i logp_i / D * scale; adding -sum_i (w_i - 1) logp_i / D * scale makes it the
        # weighted one while its metrics and auxiliary loss stay as TRL computed them. (SFT's weights are exactly 1.)
        denominator = torch.as_tensor(mask.sum() if num_items_in_batch is None else num_items_in_batch).clamp(min=1)
        scale = 1
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            scale = self.accelerator.num_processes // self.get_tp_size()
        loss = loss - ((weights - mask.to(weights.dtype)) * logp).sum() / denominator * scale
        if model.training:
            self._stats.add(logp, mask, weights, inputs.get("attention_mask"), self.run_config)
        return (loss, outputs) if return_outputs else loss
