"""FLOW (Sanyal et al. 2025): every supervised token of sample s carries the sample's static weight
``w_s = exp(-f_s / tau)`` from the base model's loss on it, scored once before training (talr.flow)."""

from __future__ import annotations

import torch

from talr import flow
from talr.methods.base import PreparedRun, TokenWeighting


class FlowWeighting(TokenWeighting):
    scope = "labels"  # a per-sample constant: known before the forward
    side_inputs = (flow.SAMPLE_WEIGHT,)

    def prepare(self, run: PreparedRun) -> None:
        # a resumed run trains on the weights it computed when it started (run_dir/flow_weights.json)
        if not (run.resumed and flow.restore_sample_weights(run.features, run.run_dir)):
            flow.add_sample_weights(run.model, run.tokenizer, run.examples, run.features, self.config, run.run_dir)

    def weights(self, logp: torch.Tensor, mask: torch.Tensor, side: dict) -> torch.Tensor:
        if flow.SAMPLE_WEIGHT not in side:
            raise KeyError(
                f"FLOW needs the batch field {flow.SAMPLE_WEIGHT!r}: FlowWeighting.prepare puts it on the features; "
                f"stack it with CausalLMCollator(float_fields=({flow.SAMPLE_WEIGHT!r},))"
            )
        sample_weight = side[flow.SAMPLE_WEIGHT].to(device=logp.device, dtype=logp.dtype)
        return sample_weight[:, None] * mask.to(logp.dtype)
