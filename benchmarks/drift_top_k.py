"""How much KL the base side's top-k cache misses: ``general_text``'s KL(base || model) with the base's k most
probable tokens kept (plus one bucket for the rest) against the exact full-vocabulary KL, on the embedded model and a
perturbed copy of it standing in for a fine-tuned model (every weight matrix plus Gaussian noise of ``--noise`` times
its own standard deviation), over the first ``--texts`` texts of ``general_text``.

    python benchmarks/drift_top_k.py --texts 20 --noise 0.02

Prints, per k: the KL (nats per token), its ratio to the exact KL, the base's mean probability mass outside its top
k, and the cache size per 1,000 texts.
"""

from __future__ import annotations

import argparse
import copy
import os

import torch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=20)
    parser.add_argument("--noise", type=float, default=0.02)
    parser.add_argument("--top-k", default="16,64,256,1024")
    args = parser.parse_args()

    from talr.evaluation import drift
    from talr.evaluation.tasks.general_text import GeneralTextDrift
    from talr.models import load_model
    from talr.paths import data_dir

    docs = GeneralTextDrift().load_all(data_dir())[: args.texts]
    examples = [{"messages": d["messages"], "response": d["response"]} for d in docs]
    base, tokenizer = load_model("smollm2-135m-instruct", dtype=torch.float32)
    tuned = copy.deepcopy(base)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in tuned.parameters():
            if p.dim() > 1:
                p.add_(torch.randn_like(p) * p.std() * args.noise)
    vocab = base.config.vocab_size
    exact = drift.text_drift(tuned, tokenizer, examples, drift.base_side(base, tokenizer, examples, top_k=vocab))
    tokens = sum(r["n_tokens"] for r in exact)
    exact_kl = sum(r["kl_nats"] for r in exact) / tokens
    print(f"\n{args.texts} general_text texts ({tokens} scored tokens), model = embedded SmolLM2-135M-Instruct + "
          f"N(0, ({args.noise} x weight std)^2) noise; exact KL {exact_kl:.5f} nats/token; CPU x {os.cpu_count()}\n")
    print("| top k | KL (nats/token) | KL / exact | base mass outside top k (mean) | cache MB per 1,000 texts |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for k in [int(x) for x in args.top_k.split(",")]:
        side = drift.base_side(base, tokenizer, examples, top_k=k)
        kl = sum(r["kl_nats"] for r in drift.text_drift(tuned, tokenizer, examples, side)) / tokens
        rest = torch.cat([x.double().exp() for x in side.log_rest]).mean()
        megabytes = tokens * k * 8 / 1e6 * 1000 / args.texts
        print(f"| {k} | {kl:.5f} | {kl / exact_kl:.4f} | {float(rest):.4f} | {megabytes:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
