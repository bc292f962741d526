"""talr's token weightings inside training scripts that do not use ``talr train``.

* :mod:`talr.integrations.trl` — ``TalrSFTTrainer``, TRL's ``SFTTrainer`` with a talr weighting (needs ``talr[trl]``);
* :class:`talr.trainer.TalrTrainer` — a plain ``transformers.Trainer`` subclass (step-exact, talr's fused head);
* :mod:`talr.integrations.hf_trainer` — a ``compute_loss_func`` for an existing ``transformers.Trainer``.

All three take the weighting as :func:`weighting_config` describes it. See docs/integrations.md.
"""

from __future__ import annotations

from collections.abc import Mapping

from talr.config import Config, ConfigError, config_from_dict
from talr.methods import LOSS_WEIGHTINGS

# What a training script hands to the trainer instead of talr's data section: the config then only describes the loss.
EXTERNAL_DATA = "<the trainer's train_dataset>"


def _per_token(name: str) -> bool:
    """Whether a registered weighting needs nothing but the tokens' log-probabilities (FLOW also needs per-sample
    weights scored before training, which only ``talr train`` prepares; ASFT the full logits and a reference model)."""
    weighting = LOSS_WEIGHTINGS.load(name)
    return not weighting.side_inputs and not weighting.needs_logits


def supported_losses() -> list[str]:
    return [name for name in LOSS_WEIGHTINGS if _per_token(name)]


def weighting_config(spec: Config | Mapping | str = "talr") -> Config:
    """A talr :class:`~talr.config.Config` describing only a token weighting.

    ``spec`` is a loss name (``"talr"``, ``"dft"``, ``"sft"``), a mapping ``{"loss": NAME, **talr_options}`` whose
    other keys are those of the config's ``talr:`` section (``tau``, ``tau_scope``, ``w_min``, ``tau_min``,
    ``normalize_over``), or a whole talr ``Config`` (its ``method.loss`` and ``talr`` section are used). Errors name
    the offending key, as ``talr train``'s config errors do.
    """
    if isinstance(spec, Config):
        config = spec
    else:
        options = {"loss": spec} if isinstance(spec, str) else dict(spec)
        loss = options.pop("loss", "talr")
        if not isinstance(loss, str):
            raise ConfigError(f"loss: expected a string, got {loss!r}")
        if loss not in LOSS_WEIGHTINGS:
            raise ConfigError(f"loss: unknown value {loss!r} (known: {', '.join(supported_losses())})")
        config = config_from_dict({"method": {"loss": loss}, "talr": options, "data": {"train": EXTERNAL_DATA}})
    from talr.methods.base import build_weighting

    if not _per_token(config.method.loss) or build_weighting(config).side_inputs:  # e.g. talr.weights_from: base
        raise ConfigError(
            f"method.loss: {config.method.loss!r} with these settings needs what only `talr train` prepares (side "
            f"inputs scored before training, or full logits and a reference model); outside it use one of "
            f"{', '.join(supported_losses())} with the trained model's own weights"
        )
    return config
