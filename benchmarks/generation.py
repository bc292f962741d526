"""Batched greedy generation (talr.evaluation.generation.generate) vs one prompt at a time with model.generate.

    PYTHONPATH=src python benchmarks/generation.py [--model smollm2-135m-instruct] [--prompts 16] [--batch-size 16]
        [--max-new-tokens N] [--dtype auto|float32|bfloat16] [--threads 2]

Prompts are GSM8K test questions in the gsm8k task's chat format; max_new_tokens defaults to that task's own budget
(256). Both paths decode greedily with the same weights (``--dtype``), max_new_tokens and EOS, and no stop strings;
the table also counts prompts whose outputs differ (batched left padding vs no padding).

The first run of each path has max_new_tokens 1: its time is the prefill (plus one token); the rest of the full
run's time is the decode phase, whose speed-up is printed separately. The end-to-end ratio depends on the shape of
the work: prefill is compute-bound and costs the same FLOPs batched or not, while a decode step of 16 sequences costs
less than 16 single-sequence steps, and rows that finish early stay in the batch until its longest row is done.
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
    parser.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default="auto")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from talr.evaluation.generation import chat_prompt, generate
    from talr.evaluation.registry import get_task
    from talr.models import load_model
    from talr.paths import data_dir

    from talr.precision import hardware, resolve_eval_dtype

    dtype = resolve_eval_dtype(args.dtype)
    model, tokenizer = load_model(args.model, dtype=dtype)
    model.eval()
    task = get_task("gsm8k")
    if args.max_new_tokens is None:
        args.max_new_tokens = task.max_new_tokens
    docs, _ = task.load(data_dir(), args.prompts)
    prompts = [chat_prompt(tokenizer, task.request(d).messages) for d in docs]

    def one_at_a_time(max_new_tokens):
        outputs = []
        with torch.inference_mode():
            for text in prompts:
                ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")
                out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                                     pad_token_id=tokenizer.pad_token_id)
                outputs.append(tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True))
        return outputs

    def batched(max_new_tokens):
        return generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=args.batch_size)

    rows = {}
    for name, batch, run in (("model.generate, one prompt at a time", 1, one_at_a_time),
                             ("talr generate (left padded, length sorted)", args.batch_size, batched)):
        start = time.perf_counter()
        run(1)  # the prefill alone (and the first token)
        prefill_s = time.perf_counter() - start
        start = time.perf_counter()
        outputs = run(args.max_new_tokens)
        total_s = time.perf_counter() - start
        tokens = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in outputs)
        rows[name] = (batch, prefill_s, total_s, tokens, outputs)

    (_, loop_prefill, loop_total, _, single_out), (*_, batched_out) = rows.values()
    single_decode = loop_total - loop_prefill
    differ = sum(a != b for a, b in zip(single_out, batched_out))
    print(f"model {args.model}, {len(prompts)} GSM8K prompts, max_new_tokens {args.max_new_tokens}, "
          f"{str(dtype).removeprefix('torch.')} weights (--dtype {args.dtype}), torch threads {args.threads}; "
          f"{hardware().describe()}")
    print("| method | batch | prefill s (max_new_tokens 1) | total s | new tokens | new tokens/s | speed-up | "
          "decode s (total - prefill) | decode tokens/s | decode speed-up |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, (batch, prefill_s, total_s, tokens, _) in rows.items():
        decode_s = total_s - prefill_s
        print(f"| {name} | {batch} | {prefill_s:.1f} | {total_s:.1f} | {tokens} | {tokens / total_s:.1f} | "
              f"{loop_total / total_s:.1f}x | {decode_s:.1f} | {tokens / decode_s:.1f} | "
              f"{single_decode / decode_s:.1f}x |")
    print(f"outputs differing between the two: {differ} of {len(prompts)}")


if __name__ == "__main__":
    main()
