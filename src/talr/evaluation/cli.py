"""``talr eval``: evaluate a model on registered tasks (wired into talr.cli by the lead).

    talr eval --model MODEL --tasks a,b,c [--limit N] [--out DIR] [--batch-size B] [--dtype D] [--data-dir DIR]
              [--allow-unsandboxed] [--base-model B] [--list]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from talr.run_dir import RunDir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", "-m", help="run directory, local model folder, hub id or 'smollm2-135m-instruct'")
    parser.add_argument("--tasks", "-t", help="comma-separated task names (see --list)")
    parser.add_argument("--limit", type=int, default=None,
                        help="evaluate a seeded random subset of N items per task (default: all)")
    parser.add_argument("--out", "-o", default=None,
                        help="output folder (default: <run dir>/eval for a run directory, else eval_results/<model>); "
                             "rerunning into it resumes")
    parser.add_argument("--batch-size", "-b", type=int, default=16, help="prompts per forward pass (default 16)")
    parser.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default="auto",
                        help="weight dtype for evaluation. auto (default): bfloat16 where the hardware computes it "
                             "natively (CUDA since Ampere, CPUs with AVX512-BF16/AMX), float32 elsewhere (an AVX2 "
                             "CPU runs bf16 matmuls ~50x slower). Greedy outputs can differ between the two at "
                             "near-ties, so compare models evaluated in the same dtype")
    parser.add_argument("--data-dir", default=None, help="benchmark data folder (default: TALR_DATA_DIR or ../shared/data)")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="cap every generation task's token budget (default: each benchmark's own)")
    parser.add_argument("--allow-unsandboxed", action="store_true",
                        help="run model-written code (humaneval) even where the sandbox lacks a layer (no root, no "
                             "user namespaces); results.json records the layers in force")
    parser.add_argument("--base-model", default=None,
                        help="model the KL of drift tasks (general_text) is taken against (default: the base recorded "
                             "in the model's run directory, else the model itself)")
    parser.add_argument("--list", action="store_true", help="list the available tasks and exit")


def default_out_dir(model: str) -> Path:
    run = RunDir(model)
    if run.is_run():
        return run.eval_dir
    return Path("eval_results") / re.sub(r"[^A-Za-z0-9._-]+", "_", model.strip("/"))


def list_tasks() -> str:
    from talr.evaluation.registry import PANELS, TASKS, get_task

    lines = []
    for name in TASKS:
        task = get_task(name)
        lines.append(f"{name:<24} {task.kind:<14} {task.description}")
    for name, entries in PANELS.items():
        members = ", ".join(f"{task} ({'all' if n is None else n})" for task, n in entries)
        lines.append(f"{name:<24} {'panel':<14} {members}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.list:
        print(list_tasks())
        return 0
    if not args.model or not args.tasks:
        print("talr eval: error: --model and --tasks are required (or --list)", file=sys.stderr)
        return 2
    from talr.evaluation.evaluator import evaluate, format_table
    from talr.evaluation.registry import expand_tasks, get_task
    from talr.evaluation.sandbox import ALLOW_ENV, sandbox_layers

    names = [n.strip() for n in args.tasks.split(",") if n.strip()]
    if args.allow_unsandboxed:
        os.environ[ALLOW_ENV] = "1"
    try:
        for name, _ in expand_tasks(names):  # unknown task names fail before the model loads,
            if getattr(get_task(name), "runs_code", False):
                sandbox_layers()  # and so does a sandbox missing a layer
    except ValueError as e:
        print(f"talr eval: error: {e}", file=sys.stderr)
        return 2
    from talr.models import load_model
    from talr.precision import log_startup, resolve_eval_dtype

    dtype = resolve_eval_dtype(args.dtype)
    log_startup("eval", str(dtype).removeprefix("torch."))
    model, tokenizer = load_model(args.model, dtype=dtype)
    out_dir = Path(args.out) if args.out else default_out_dir(args.model)
    try:
        results = evaluate(model, tokenizer, names, out_dir=out_dir, limit=args.limit, batch_size=args.batch_size,
                           max_new_tokens=args.max_new_tokens, base_model=args.base_model,
                           model_name=str(args.model), data_dir=args.data_dir, dtype_requested=args.dtype)
    except (ValueError, FileNotFoundError) as e:
        print(f"talr eval: error: {e}", file=sys.stderr)
        return 2
    print(format_table(results))
    print(f"\nresults: {out_dir / 'results.json'}")
    run = RunDir(args.model)
    if run.record_file.is_file() and out_dir.resolve() == run.eval_dir.resolve():
        from talr.model_card import write_run_cards

        write_run_cards(run.path)  # the run's model cards now quote these results
    return 0
