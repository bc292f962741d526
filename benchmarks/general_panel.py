"""Cost of the general panel per model: forward tokens each task needs and, from a finished ``talr eval`` run's
results.json, the wall and CPU time each task took, the CPU seconds per 1,000 tokens and the projected cost of the
whole panel at its own Ns.

    talr eval --model smollm2-135m-instruct --dtype float32 --tasks general_panel --out eval_results/panel_base
    python benchmarks/general_panel.py --results eval_results/panel_base/results.json

"Forward tokens" counts what the model runs: for the log-likelihood tasks each distinct context of an item once plus
every choice token but the first (the context's KV cache is shared by its choices, as ``generation.loglikelihood``
computes), and the prompt + response of each ``general_text`` text (its base side, computed once per base and
cached, is not counted).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path


def forward_tokens(task_name: str, limit: int | None, tokenizer) -> tuple[int, int]:
    """``(items, forward tokens)`` of a task at ``limit`` items."""
    from talr.evaluation.generation import encode_pair, response_token_ids
    from talr.evaluation.registry import get_task
    from talr.evaluation.task import Choices
    from talr.paths import data_dir

    task = get_task(task_name)
    docs, _ = task.load(data_dir(), limit)
    total = 0
    for doc in docs:
        request = task.request(doc)
        if isinstance(request, Choices):  # each distinct context once, then every choice token but the first
            encoded = [encode_pair(tokenizer, c, x) for c, x in request.pairs]
            total += sum(len(p) for p in {tuple(ids[: len(ids) - n]) for ids, n in encoded})
            total += sum(n - 1 for _, n in encoded)
        else:
            ids, _ = response_token_ids(tokenizer, request.messages, request.response)
            total += len(ids) - 1
    return len(docs), total


def cpu_kind() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", required=True, help="results.json of a talr eval run of the panel")
    parser.add_argument("--panel", default="general_panel")
    args = parser.parse_args()

    from talr.evaluation.registry import PANELS
    from talr.models import load_tokenizer

    payload = json.loads(Path(args.results).read_text())
    tokenizer = load_tokenizer(payload["config"]["model"])
    timings, samples = payload.get("task_timings", {}), payload.get("n-samples", {})
    print(f"CPU {cpu_kind()} x {os.cpu_count()}; run {payload['config']['model']} ({payload['config']['dtype']}, batch "
          f"{payload['config']['batch_size']}), {payload.get('date', '?')}\n")
    print("| task | panel N | run N | forward tokens (run) | wall s | CPU s | CPU s / 1k tokens "
          "| forward tokens (panel N) | projected CPU min (panel N) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    total_tokens = total_cpu = projected = 0.0
    for task, n in PANELS[args.panel]:
        if task not in timings:
            print(f"| {task} | {n or 'all'} | - | - | - | - | - | - | - |")
            continue
        run_n = samples[task]["effective"]
        _, run_tokens = forward_tokens(task, run_n, tokenizer)
        _, panel_tokens = forward_tokens(task, n, tokenizer)
        t = timings[task]
        cpu = t.get("cpu_seconds")
        rate = cpu / run_tokens * 1000 if cpu and t.get("items_computed") == run_n else None
        minutes = rate * panel_tokens / 1000 / 60 if rate else None
        total_tokens += panel_tokens
        total_cpu += cpu or 0
        projected += minutes or 0
        print(f"| {task} | {n or 'all'} | {run_n} | {run_tokens:,} | {t['seconds']:.0f} | "
              f"{'-' if cpu is None else f'{cpu:.0f}'} | {'-' if rate is None else f'{rate:.1f}'} | "
              f"{panel_tokens:,} | {'-' if minutes is None else f'{minutes:.1f}'} |")
    print(f"\npanel at its own Ns: {total_tokens:,.0f} forward tokens, projected {projected:.1f} CPU minutes at the "
          f"measured rates; this run: {total_cpu / 60:.1f} CPU minutes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
