"""Evaluation: the task registry, the evaluator (resumable, lm-eval-shaped results) and the model calls it uses.

See docs/evaluation.md. ``TASKS`` maps each task name to its class; ``evaluate(model, tokenizer, tasks, out_dir=...)``
runs them.
"""

from talr.evaluation.evaluator import evaluate
from talr.evaluation.registry import TASKS, get_task

__all__ = ["TASKS", "evaluate", "get_task"]
