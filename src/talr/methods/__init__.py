"""talr's methods: the registries (:mod:`talr.methods.registry`, no torch) and one module per loss weighting
(:mod:`talr.methods.sft`, :mod:`~talr.methods.talr`, :mod:`~talr.methods.dft`, :mod:`~talr.methods.flow`), each a
:class:`talr.methods.base.TokenWeighting`. Regularisers, adapters and averagings live in talr.regularizers,
talr.adapters and talr.averaging and are registered here too."""

from talr.methods.registry import ADAPTERS, AVERAGINGS, AXES, LOSS_WEIGHTINGS, PRESETS, REGULARIZERS, Registry

__all__ = ["ADAPTERS", "AVERAGINGS", "AXES", "LOSS_WEIGHTINGS", "PRESETS", "REGULARIZERS", "Registry"]
