"""Batched greedy generation (talr.evaluation.generation.generate) vs one prompt at a time with model.generate.

    PYTHONPATH=src python benchmarks/generation.py [--model smollm2-135m-instruct] [--prompts 16] [--batch-size 16]
        [--max-new-tokens N] [--dtype float32|bfloat16] [--threads 2]

Prompts are GSM8K test questions in the gsm8k task's chat format; max_new_tokens defaults to that task's own budget
(256). Both paths decode greedily with the same weights (``--dtype``), max_new_tokens and EOS, and no stop strings;
the table also counts prompts whose outputs differ (batched left padding vs no padding).

The ratio depends on the shape of the work: prefill is compute-bound and costs the same FLOPs batched or not, while
a decode step of 16 sequences costs little more than one of a single sequence, so the more tokens are generated per
prompt token, the larger the speed-up (the prefill share is printed).
Timings are wall clock on a machine whose CPU other processes may share: compare rows of one run, not across runs.
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default: the gsm8k task's budget")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from talr.evaluation.generation import chat_prompt, generate
    from talr.evaluation.registry import get_task
    from talr.models import load_model
    from talr.paths import data_dir

    model, tokenizer = load_model(args.model, dtype=getattr(torch, args.dtype))
    model.eval()
    task = get_task("gsm8k")
    if args.max_new_tokens is None:
        args.max_new_tokens = task.max_new_tokens
    docs, _ = task.load(data_dir(), args.prompts)
    prompts = [chat_prompt(tokenizer, task.request(d).messages) for d in docs]

    start = time.perf_counter()
    single = []
    with torch.inference_mode():
        for text in prompts:
            ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")
            out = model.generate(**ids, max_new_tokens=args.max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
            single.append(tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True))
    single_s = time.perf_counter() - start

    start = time.perf_counter()
    generate(model, tokenizer, prompts, max_new_tokens=1, batch_size=args.batch_size)
    prefill_s = time.perf_counter() - start

    start = time.perf_counter()
    batched = generate(model, tokenizer, prompts, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    batched_s = time.perf_counter() - start

    new_tokens = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in batched)
    differ = sum(a != b for a, b in zip(single, batched))
    print(f"model {args.model}, {len(prompts)} prompts, max_new_tokens {args.max_new_tokens}, "
          f"{args.dtype} weights, torch threads {args.threads}, {new_tokens} new tokens (batched); "
          f"batched prefill alone (max_new_tokens 1) {prefill_s:.1f} s")
    print("| method | batch | seconds | prompts/s | new tokens/s | speed-up |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    print(f"| model.generate, one prompt at a time | 1 | {single_s:.1f} | {len(prompts) / single_s:.2f} | "
          f"{new_tokens / single_s:.1f} | 1.0x |")
    print(f"| talr generate (left padded, length sorted) | {args.batch_size} | {batched_s:.1f} | "
          f"{len(prompts) / batched_s:.2f} | {new_tokens / batched_s:.1f} | {single_s / batched_s:.1f}x |")
    print(f"outputs differing between the two: {differ} of {len(prompts)}")


if __name__ == "__main__":
    main()
