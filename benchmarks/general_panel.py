"""Cost of the general panel per model: forward tokens each task needs and, from a finished ``talr eval`` run's
results.json, the wall and CPU time each task took, the CPU seconds per 1,000 tokens and the projected cost of the
whole panel at its own Ns.

    talr eval --model smollm2-135m-instruct --dtype float32 --tasks general_panel --out eval_results/panel_base
    python benchmarks/general_panel.py --results eval_results/panel_base/results.json
    OMP_NUM_THREADS=1 python benchmarks/general_panel.py --sharing 64   # contexts shared vs run once per choice

"Forward tokens" counts what the model runs: the positions of every distinct (input row, scored length) of the
log-likelihood tasks (rows shared by one-token answers to one context are counted once, as computed) and the prompt +
response of each ``general_text`` text (its base side, computed once per base and cached, is not counted).

``--sharing ITEMS`` measures the alternative of running each question's context once and copying its KV cache to the
choices (``generation._shared_prefix_logprobs``, what ``esci_ll`` does for its 200-token prompts): fewer tokens, but
on a CPU not less time for the multiple-choice tasks' short contexts (docs/evaluation.md).
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
        if isinstance(request, Choices):
            rows = {(tuple(ids[:-1]), n) for ids, n in (encode_pair(tokenizer, c, x) for c, x in request.pairs)}
            total += sum(len(row) for row, _ in rows)
        else:
            ids, _ = response_token_ids(tokenizer, request.messages, request.response)
            total += len(ids) - 1
    return len(docs), total


def sharing_cost(task_name: str, items: int, batch_size: int, repeats: int) -> tuple[float, float, float]:
    """CPU seconds (this process, all threads) to score ``items`` items of a multiple-choice task with each choice's
    context run once per choice (``loglikelihood``) and once per item (``_shared_prefix_logprobs``), alternating
    ``repeats`` times; the minimum of each, and the largest log-likelihood difference between the two."""
    import time

    from talr.evaluation.generation import _pad_id, _shared_prefix_logprobs, encode_pair, loglikelihood
    from talr.evaluation.registry import get_task
    from talr.models import load_model
    from talr.paths import data_dir

    model, tokenizer = load_model("smollm2-135m-instruct")  # float32
    docs, _ = get_task(task_name).load(data_dir(), items)
    pairs = [pair for doc in docs for pair in get_task(task_name).request(doc).pairs]
    sequences = [encode_pair(tokenizer, c, x) for c, x in pairs]
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, (ids, n) in enumerate(sequences):
        groups.setdefault(tuple(ids[: len(ids) - n]), []).append(i)
    prefixes = list(groups)
    flat, shared, worst = [], [], 0.0
    for _ in range(repeats):
        t = time.process_time()
        a = loglikelihood(model, tokenizer, pairs, batch_size=batch_size)
        flat.append(time.process_time() - t)
        t = time.process_time()
        values = _shared_prefix_logprobs(
            model, [(list(p), [sequences[i][0][len(p):] for i in groups[p]]) for p in prefixes], _pad_id(tokenizer),
            batch_size)
        b = [0.0] * len(sequences)
        for prefix, group_values in zip(prefixes, values):
            for i, value in zip(groups[prefix], group_values):
                b[i] = value
        shared.append(time.process_time() - t)
        worst = max(worst, max(abs(x - y) for x, y in zip(a, b)))
    return min(flat), min(shared), worst


def cpu_kind() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", help="results.json of a talr eval run of the panel")
    parser.add_argument("--panel", default="general_panel")
    parser.add_argument("--sharing", type=int, metavar="ITEMS",
                        help="instead: CPU time of ITEMS items per multiple-choice task of the panel scored with and "
                             "without shared contexts")
    args = parser.parse_args()
    if args.sharing:
        from talr.evaluation.registry import PANELS, get_task

        print(f"CPU {cpu_kind()} x {os.cpu_count()}; torch threads {__import__('torch').get_num_threads()}; "
              f"load {os.getloadavg()[0]:.1f}\n")
        print("| task | items | CPU s, context per choice | CPU s, context once | speed-up | largest difference (nats) |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for task, _ in PANELS[args.panel]:
            if get_task(task).kind != "loglikelihood":
                continue
            flat, shared, worst = sharing_cost(task, args.sharing, 16, 2)
            print(f"| {task} | {args.sharing} | {flat:.1f} | {shared:.1f} | {flat / shared:.2f}x | {worst:.1e} |")
        return 0
    if not args.results:
        parser.error("--results is required (or --sharing)")

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
