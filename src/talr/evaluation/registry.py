"""The one registry of evaluation tasks: name -> "module:Class". A new benchmark is one file plus one line here.

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
    "codelength_general_answers": "talr.evaluation.tasks.code_length:GeneralAnswersCodeLength",
    "medcalc": "talr.evaluation.tasks.medcalc:MedCalc",
    "medcalc_label": "talr.evaluation.tasks.medcalc:MedCalcLabel",
    "esci": "talr.evaluation.tasks.esci:ESCI",
    "math": "talr.evaluation.tasks.math:Math",
}


def get_task(name: str) -> Task:
    """A fresh instance of the registered task ``name``; unknown names list the known ones."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    module_name, _, class_name = TASKS[name].partition(":")
    task = getattr(importlib.import_module(module_name), class_name)()
    if task.name != name:
        raise RuntimeError(f"registry entry {name!r} points to task {task.name!r}")
    return task
