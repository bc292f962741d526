"""Adapters: which parameters train. ``full`` trains every weight; ``lora`` trains a PEFT LoRA adapter.

A LoRA run directory holds the adapter in ``model/`` (``adapter_config.json`` + ``adapter_model.safetensors`` +
tokenizer; :func:`talr.models.load_model` loads it on its base and merges) and, with ``lora.save_merged``, the merged
weights in ``merged/``, a plain model folder for tools that do not read PEFT adapters.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

logger = logging.getLogger(__name__)


def portable_base(spec: str) -> str:
    """The base model as an adapter should record it: the spec itself for an embedded model or a hub id (valid on
    any machine), an absolute path for a local folder or run directory (valid from any working directory)."""
    from talr.models import EMBEDDED_MODELS, resolve_model_path

    if str(spec) in EMBEDDED_MODELS or not Path(spec).expanduser().is_dir():
        return str(spec)
    return str(Path(resolve_model_path(spec)).resolve())


def apply_lora(model: torch.nn.Module, config) -> torch.nn.Module:
    """Wrap ``model`` in a PEFT LoRA adapter configured by ``config.lora``; only the adapter trains."""
    from peft import LoraConfig, get_peft_model

    lora = config.lora
    peft_config = LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, peft_config)
    # get_peft_model records the resolved folder (a cache path for the embedded model); keep the portable spec
    peft_model.peft_config["default"].base_model_name_or_path = portable_base(config.model)
    trainable, total = peft_model.get_nb_trainable_parameters()
    logger.info("LoRA: %d of %d parameters train (%.2f%%)", trainable, total, 100 * trainable / total)
    return peft_model


def save_merged(peft_model: torch.nn.Module, tokenizer, out: str | os.PathLike) -> Path:
    """Merge the adapter into its base weights (in place: call it when training is over) and save a plain model
    folder with the tokenizer."""
    out = Path(out)
    merged = peft_model.merge_and_unload()
    merged.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


class LoraAdapter:
    """The ``lora`` adapter as the trainer uses it (``talr.methods.registry.ADAPTERS``): wrap the model before
    training, and once the adapter is saved in model/, also write the merged model (``lora.save_merged``)."""

    apply = staticmethod(apply_lora)

    @staticmethod
    def finish(model: torch.nn.Module, tokenizer, run, config) -> None:
        """After training saved the adapter in ``run`` (a :class:`talr.run_dir.RunDir`)."""
        if config.lora.save_merged:
            save_merged(model, tokenizer, run.merged_dir)
