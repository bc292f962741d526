"""The one registry of evaluation tasks: name -> "module:Class". A new benchmark is one file plus one line here.

Panels are named groups of tasks, each at a fixed N (None: every item), usable wherever a task name is
(``talr eval --tasks``, a sweep's ``eval.general``).

Task modules are imported only when a task is used, so listing or running one task does not import the checkers,
sandboxes and data readers of all the others.
"""

from __future__ import annotations

import importlib

from talr.evaluation.task import Task

TASKS: dict[str, str] = {
    "ifeval": "talr.evaluation.tasks.ifeval:IFEval",
    "gsm8k": "talr.evaluation.tasks.gsm8k:GSM8K",
    "humaneval": "talr.evaluation.tasks.humaneval:HumanEval",
    "arc_easy": "talr.evaluation.tasks.multiple_choice:ARCEasy",
    "arc_challenge": "talr.evaluation.tasks.multiple_choice:ARCChallenge",
    "piqa": "talr.evaluation.tasks.multiple_choice:PIQA",
    "boolq": "talr.evaluation.tasks.multiple_choice:BoolQ",
    "openbookqa": "talr.evaluation.tasks.multiple_choice:OpenBookQA",
    "winogrande": "talr.evaluation.tasks.multiple_choice:WinoGrande",
    "mmlu": "talr.evaluation.tasks.multiple_choice:MMLU",
    "codelength_alpaca": "talr.evaluation.tasks.code_length:AlpacaCodeLength",
    "codelength_alpaca_eval": "talr.evaluation.tasks.code_length:AlpacaEvalCodeLength",
    "codelength_medcalc": "talr.evaluation.tasks.code_length:MedCalcCodeLength",
    "codelength_medcalc_label": "talr.evaluation.tasks.code_length:MedCalcLabelCodeLength",
    "codelength_esci": "talr.evaluation.tasks.code_length:EsciCodeLength",
    "codelength_math": "talr.evaluation.tasks.code_length:MathCodeLength",
    "codelength_general_answers": "talr.evaluation.tasks.code_length:GeneralAnswersCodeLength",
    "medcalc": "talr.evaluation.tasks.medcalc:MedCalc",
    "medcalc_label": "talr.evaluation.tasks.medcalc:MedCalcLabel",
    "esci": "talr.evaluation.tasks.esci:ESCI",
    "esci_ll": "talr.evaluation.tasks.esci:ESCILogLikelihood",
    "general_text": "talr.evaluation.tasks.general_text:GeneralTextDrift",
    "math": "talr.evaluation.tasks.math:Math",
}


# General capabilities with forward passes only (no generation), sized for ~15 CPU-minutes per model on a 2-core
# CPU (measured: 15.3 under load): the multiple-choice tasks the embedded 135M model answers above chance, at an N
# per task chosen for power within that budget, and code length plus drift from the base on 1,000 general texts.
# BoolQ, MMLU, ARC-Challenge, WinoGrande and OpenBookQA stay tasks but are out of the panel: the model is at chance on
# them (one constant answer on BoolQ and MMLU; OpenBookQA's acc below chance), so they cannot show forgetting.
# docs/evaluation.md gives the measured cost and each task's MDE.
PANELS: dict[str, tuple[tuple[str, int | None], ...]] = {
    "general_panel": (("arc_easy", 500), ("piqa", 400), ("general_text", None)),
}


def expand_tasks(names: list[str] | tuple[str, ...], limit: int | None = None) -> list[tuple[str, int | None]]:
    """Task names with panels replaced by their ``(task, N)`` entries (plain tasks get N None, ``task:N`` a task at
    its own N, as a panel entry), each N capped at ``limit``; a task named twice keeps its first entry. Unknown names
    are an error listing the known tasks and panels."""
    out: dict[str, int | None] = {}
    for name in names:
        bare, colon, size = name.partition(":")
        if colon:
            if not size.isdigit() or int(size) < 1:
                raise ValueError(f"task {name!r}: the N after ':' must be a positive whole number of items")
            name = bare
        if name in PANELS and not colon:
            entries = PANELS[name]
        elif name in TASKS:
            entries = ((name, int(size) if colon else None),)
        else:
            raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}; "
                             f"panels: {', '.join(sorted(PANELS))}")
        for task, n in entries:
            out.setdefault(task, n)
    return [(task, n if limit is None else (limit if n is None else min(n, limit))) for task, n in out.items()]


def get_task(name: str) -> Task:
    """A fresh instance of the registered task ``name``; unknown names list the known ones."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    module_name, _, class_name = TASKS[name].partition(":")
    task = getattr(importlib.import_module(module_name), class_name)()
    if task.name != name:
        raise RuntimeError(f"registry entry {name!r} points to task {task.name!r}")
    return task
