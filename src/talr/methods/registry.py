"""The registries of methods, as lazy ``"module:object"`` entries (imported on first use, like lm-eval's
``api/registry.py``), and the named presets of the comparison as data.

Four independent axes compose into a method:

* loss weighting — how each supervised token's loss is weighted (:class:`talr.methods.base.TokenWeighting`);
* regulariser — a penalty added to the loss (a factory ``(model, config) -> object with .penalty(model)``);
* adapter — which parameters train (``.apply(model, config) -> model`` before training, ``.finish(model, tokenizer,
  run_dir, config)`` after the trained weights are saved);
* averaging — a post-hoc step on the finished weights (``(base, finetuned_dir, out_dir, config) -> out_dir``).

``None`` is the axis' no-op. A new method is one module plus one line here (and a preset if it has a name). This
module imports no torch, so :mod:`talr.config` can validate names without loading any training code.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any


class Registry(Mapping):
    """Names -> ``"module:object"`` paths (or ``None`` for the axis' no-op), imported on first :meth:`load`."""

    def __init__(self, axis: str, entries: dict[str, str | None]):
        self.axis = axis  # the config key it serves, for error messages
        self._entries = dict(entries)
        self._loaded: dict[str, Any] = {}

    def __getitem__(self, name: str) -> str | None:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def register(self, name: str, path: str | None) -> None:
        """Add (or replace) an entry: how a method outside talr's source tree plugs in."""
        self._entries[name] = path
        self._loaded.pop(name, None)

    def load(self, name: str) -> Any:
        """The registered object (``None`` for a no-op entry); ``KeyError`` naming the axis and the known names."""
        if name not in self._entries:
            raise KeyError(f"{self.axis}: unknown value {name!r} (known: {', '.join(self._entries)})")
        if name not in self._loaded:
            path = self._entries[name]
            if path is None:
                self._loaded[name] = None
            else:
                module, _, attribute = path.partition(":")
                self._loaded[name] = getattr(importlib.import_module(module), attribute)
        return self._loaded[name]


LOSS_WEIGHTINGS = Registry("method.loss", {
    "sft": "talr.methods.sft:SftWeighting",
    "talr": "talr.methods.talr:TalrWeighting",
    "dft": "talr.methods.dft:DftWeighting",
    "flow": "talr.methods.flow:FlowWeighting",
    "eaft": "talr.methods.eaft:EaftWeighting",
    "asft": "talr.methods.asft:AsftWeighting",
})

REGULARIZERS = Registry("method.regularizer", {
    "none": None,
    "l2": "talr.regularizers:l2_to_init",
})

ADAPTERS = Registry("method.adapter", {
    "full": None,
    "lora": "talr.adapters:LoraAdapter",
})

# train() applies the averaging at the end of a run (the run's model/ is then the average, finetuned/ what training
# produced); `talr average` and averaging.wise_ft_grid apply it to any pair of models.
AVERAGINGS = Registry("method.averaging", {
    "none": None,
    "wise_ft": "talr.averaging:wise_ft_from_config",
})

AXES: dict[str, Registry] = {"loss": LOSS_WEIGHTINGS, "regularizer": REGULARIZERS, "adapter": ADAPTERS,
                             "averaging": AVERAGINGS}

_AXIS_DEFAULTS = {"loss": "sft", "regularizer": "none", "adapter": "full", "averaging": "none"}


def _preset(sections: dict[str, dict]) -> dict[str, dict]:
    return {**sections, "method": {**_AXIS_DEFAULTS, **sections.get("method", {})}}


# The paper's methods (its five baselines plus TALR and DFT) and named variants, as config sections: `method: NAME`
# in a config (or `grid.methods: [NAME]` in a sweep) applies them; the config's own keys override a preset's.
PRESETS: dict[str, dict[str, dict]] = {
    "sft": _preset({}),
    "talr": _preset({"method": {"loss": "talr"}}),
    "dft": _preset({"method": {"loss": "dft"}}),
    "l2": _preset({"method": {"regularizer": "l2"}}),
    "lora": _preset({"method": {"adapter": "lora"}}),
    "wise_ft": _preset({"method": {"averaging": "wise_ft"}}),
    "flow": _preset({"method": {"loss": "flow"}}),
    "eaft": _preset({"method": {"loss": "eaft"}}),
    # TALR's open choices (docs/methods.md): tau over sequences, a fixed tau of 1, and the other public TALR
    # implementation's (DiSC's) unnormalised weights with its per-sequence tau
    "talr_seq": _preset({"method": {"loss": "talr"}, "talr": {"tau_scope": "sequence"}}),
    "talr_tau1": _preset({"method": {"loss": "talr"}, "talr": {"tau": 1.0}}),
    "talr_disc": _preset({"method": {"loss": "talr"},
                          "talr": {"normalization": "none", "tau_scope": "sequence", "w_min": 0.01}}),
    # weights from the frozen starting model (PriFT, arXiv 2606.09396) and DFT + a KL anchor to it (ASFT, 2509.23753)
    "talr_base": _preset({"method": {"loss": "talr"}, "talr": {"weights_from": "base"}}),
    "dft_base": _preset({"method": {"loss": "dft"}, "dft": {"weights_from": "base"}}),
    "asft": _preset({"method": {"loss": "asft"}, "training": {"loss_head": "reference"}}),
    # the paper's combination: TALR's token weights on a LoRA adapter
    "lora_talr": _preset({"method": {"loss": "talr", "adapter": "lora"}}),
}


def option_sections() -> dict[str, Registry]:
    """Top-level config keys that hold a registered method's options: every registered name except the no-ops
    (``eaft: {alpha: 1.0}`` configures the ``eaft`` weighting), mapped to its registry."""
    return {name: registry for registry in AXES.values() for name, path in registry.items() if path is not None}
