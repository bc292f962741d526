"""Regularisers: penalties on the weights added to the training loss.

L2-to-init pulls the trainable parameters towards their values before fine-tuning::

    penalty = lambda * sum_j (theta_j - theta0_j)^2 / P

with P the number of trainable parameters, the normalisation of FLOW's reference trainer (Sanyal et al. 2025). The
copy theta0 holds one more set of the trainable weights (for full fine-tuning, parameter memory doubles); it is kept in
plain tensors outside the module, so it is in neither the optimizer nor ``state_dict()`` nor any saved checkpoint.
"""

from __future__ import annotations

import torch


def _wide(t: torch.Tensor) -> torch.Tensor:
    """At least float32 (bf16/fp16 weights are summed in float32; float64 stays float64)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


class _SquaredDistance(torch.autograd.Function):
    """``sum((param - ref)^2)`` whose backward recomputes ``param - ref`` instead of keeping it from the forward: plain
    autograd would hold the difference of every tensor until backward, one more copy of the trainable weights."""

    @staticmethod
    def forward(ctx, param: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(param, ref)  # already alive: saving them costs no memory
        return (_wide(param.detach()) - _wide(ref)).pow(2).sum()

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        param, ref = ctx.saved_tensors
        return (2 * grad_output * (_wide(param) - _wide(ref))).to(param.dtype), None


class L2ToInit:
    """``weight * ||theta - theta0||^2 / P`` over the parameters that require gradients when it is built.

    Build it after the adapter is applied (so P counts what actually trains) and before the first optimizer step.
    """

    def __init__(self, model: torch.nn.Module, weight: float):
        if weight < 0:
            raise ValueError(f"the L2 weight must be >= 0, got {weight}")
        self.weight = float(weight)
        self.reference = [p.detach().clone() for p in model.parameters() if p.requires_grad]
        if not self.reference:
            raise ValueError("L2-to-init: the model has no trainable parameter")
        self.count = sum(t.numel() for t in self.reference)

    def penalty(self, model: torch.nn.Module) -> torch.Tensor:
        # model.parameters() yields the same tensors in the same order under DDP or a device move; the references
        # follow the parameters to their device once (the Trainer moves the model after this object is built).
        trainable = [p for p in model.parameters() if p.requires_grad]
        if len(trainable) != len(self.reference):
            raise RuntimeError(
                f"L2-to-init was built over {len(self.reference)} trainable tensors but the model now has "
                f"{len(trainable)}; build the regulariser after the adapter and before training."
            )
        total = None
        for k, (param, ref) in enumerate(zip(trainable, self.reference)):
            if ref.device != param.device:
                ref = self.reference[k] = ref.to(param.device)
            term = _SquaredDistance.apply(param, ref)
            total = term if total is None else total + term
        return self.weight * total / self.count


def l2_to_init(model: torch.nn.Module, config) -> L2ToInit:
    return L2ToInit(model, config.l2.weight)
