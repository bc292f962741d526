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


def _clock(device: torch.device) -> float:
    if device.type == "cuda":  # kernels run asynchronously: time what has finished
        torch.cuda.synchronize(device)
    return time.perf_counter()


def compare(model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int) -> dict:
    """Time one-prompt-at-a-time ``model.generate`` against talr's batched ``generate`` on the same prompts.

    Returns ``{name: {"batch", "prefill_s", "total_s", "tokens", "outputs"}}`` for the two paths plus ``"differ"``,
    the number of prompts whose outputs differ. Works on any device the model is on (CUDA timings synchronise).
    """
    from talr.evaluation.generation import generate

    device = next(model.parameters()).device

    def one_at_a_time(budget):
        outputs = []
        with torch.inference_mode():
            for text in prompts:
                ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").to(device)
                out = model.generate(**ids, max_new_tokens=budget, do_sample=False,
                                     pad_token_id=tokenizer.pad_token_id)
                outputs.append(tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True))
        return outputs

    def batched(budget):
        return generate(model, tokenizer, prompts, max_new_tokens=budget, batch_size=batch_size)

    rows = {}
    for name, batch, run in (("model.generate, one prompt at a time", 1, one_at_a_time),
                             ("talr generate (left padded, length sorted)", batch_size, batched)):
        start = _clock(device)
        run(1)  # the prefill alone (and the first token)
        prefill_s = _clock(device) - start
        start = _clock(device)
        outputs = run(max_new_tokens)
        total_s = _clock(device) - start
        tokens = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in outputs)
        rows[name] = {"batch": batch, "prefill_s": prefill_s, "total_s": total_s, "tokens": tokens,
                      "outputs": outputs}
    single, batched_row = rows.values()
    rows["differ"] = sum(a != b for a, b in zip(single["outputs"], batched_row["outputs"]))
    return rows


def table(rows: dict) -> str:
    """The markdown table of :func:`compare`'s rows (the first row is the one-at-a-time baseline)."""
    first = next(iter(rows.values()))
    single_decode = first["total_s"] - first["prefill_s"]
    lines = ["| method | batch | prefill s (max_new_tokens 1) | total s | new tokens | new tokens/s | speed-up | "
             "decode s (total - prefill) | decode tokens/s | decode speed-up |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in rows.items():
        decode_s = max(r["total_s"] - r["prefill_s"], 1e-9)
        lines.append(f"| {name} | {r['batch']} | {r['prefill_s']:.2f} | {r['total_s']:.2f} | {r['tokens']} | "
                     f"{r['tokens'] / r['total_s']:.1f} | {first['total_s'] / r['total_s']:.1f}x | {decode_s:.2f} | "
                     f"{r['tokens'] / decode_s:.1f} | {single_decode / decode_s:.1f}x |")
    return "\n".join(lines)


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

    from talr.evaluation.generation import chat_prompt
    from talr.evaluation.registry import get_task
    from talr.models import load_model
    from talr.paths import data_dir
    from talr.precision import hardware, resolve_eval_dtype

    dtype = resolve_eval_dtype(args.dtype)
    model, tokenizer = load_model(args.model, dtype=dtype)
    model.to("cuda" if torch.cuda.is_available() else "cpu").eval()
    task = get_task("gsm8k")
    if args.max_new_tokens is None:
        args.max_new_tokens = task.max_new_tokens
    docs, _ = task.load(data_dir(), args.prompts)
    prompts = [chat_prompt(tokenizer, task.request(d).messages) for d in docs]

    rows = compare(model, tokenizer, prompts, args.max_new_tokens, args.batch_size)
    differ = rows.pop("differ")
    print(f"model {args.model}, {len(prompts)} GSM8K prompts, max_new_tokens {args.max_new_tokens}, "
          f"{str(dtype).removeprefix('torch.')} weights (--dtype {args.dtype}), torch threads {args.threads}; "
          f"{hardware().describe()}")
    print(table(rows))
    print(f"outputs differing between the two: {differ} of {len(prompts)}")


if __name__ == "__main__":
    main()
