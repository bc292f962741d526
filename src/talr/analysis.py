"""The ``talr analyze`` and ``talr codelength`` commands: how probable each supervised target token is under a
model, and what that says about the data and about what fine-tuning did.

The work is done elsewhere: examples are loaded by :mod:`talr.data.chat`, scored by :mod:`talr.scoring`, summarised
by :mod:`talr.token_stats` (hard tokens, code length and Delta L) and drawn by :mod:`talr.plots`; this
module runs them, writes the files and formats the console report. (What TALR would weigh each scored token, for
the hard-token probe and ``talr advise``, is :func:`talr.step_normalizer.weights_as_trained`.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from talr import losses
from talr.data.chat import load_examples_arg
from talr.io import atomic_write_json
from talr.plots import plot_probability_histogram
from talr.scoring import ExampleScores, score_examples
from talr.stats import cost_per_gain, format_with_se
from talr.token_stats import (all_logp, change_by_initial_probability, check_aligned, compare_code_lengths,
                              example_statistics, hard_token_types, hardest_tokens, largest_changes,
                              probability_summary, token_rows)


def _write_csv(rows: list[dict], path: Path) -> None:
    import csv

    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def analyze(model: str, data: str, compare: str | None = None, out: str | Path | None = None, *,
            max_length: int = 512, batch_size: int = 8, limit: int | None = None, seed: int = 0,
            log_scale: bool = False, top: int = 20, progress: bool = True) -> dict:
    """Token-level analysis of ``data`` under ``model`` (and ``compare``), written to ``out``.

    Files: ``summary.json`` (hard-token fractions, hardest tokens in context, hard token types; with ``compare``
    the largest changes and the change by initial probability), ``tokens.csv`` (every supervised token),
    ``examples.csv`` (per-example statistics), ``histogram.png``. Returns the summary.
    """
    from talr.models import load_model

    examples, source = load_examples_arg(data, limit, seed)
    out = Path(out) if out is not None else Path(f"analysis_{Path(source).stem.replace(':', '_')}")
    out.mkdir(parents=True, exist_ok=True)
    model_a, tokenizer = load_model(model)
    scores, stats = score_examples(model_a, tokenizer, examples, max_length, batch_size, progress, source)
    del model_a
    summary = {"model": model, "data": source, "max_length": max_length, "tokenize": stats.as_dict(),
               **probability_summary(scores),
               "hardest_tokens": hardest_tokens(scores, tokenizer, top),
               "hard_token_types": hard_token_types(scores, tokenizer, count=top)}
    probs = {Path(model).name or model: np.exp(all_logp(scores))}
    scores_b = None
    if compare is not None:
        model_b, tokenizer_b = load_model(compare)
        scores_b, _ = score_examples(model_b, tokenizer_b, examples, max_length, batch_size, progress, source)
        del model_b
        check_aligned(scores, scores_b)
        summary["compare"] = {
            "model": compare, **probability_summary(scores_b),
            "code_length": compare_code_lengths(scores, scores_b),
            "change_by_initial_prob": change_by_initial_probability(all_logp(scores), all_logp(scores_b)),
            **largest_changes(scores, scores_b, tokenizer, top),
        }
        probs[Path(compare).name or compare] = np.exp(all_logp(scores_b))
    per_example = example_statistics(scores)
    if scores_b is not None:
        for row, b in zip(per_example, scores_b):
            row["bits_b"] = b.bits
            row["hard_frac_b"] = float((np.exp(b.logp) < losses.HARD_TOKEN_PROB).mean())
    _write_csv(per_example, out / "examples.csv")
    _write_csv(token_rows(scores, tokenizer, scores_b), out / "tokens.csv")
    plot_probability_histogram(probs, out / "histogram.png", log_scale=log_scale)
    atomic_write_json(out / "summary.json", summary)
    summary["out"] = str(out)
    return summary


def _show_token(row: dict) -> str:
    def clean(text: str) -> str:
        return text.replace("\n", "\\n")

    return f"...{clean(row['before'])}[[{clean(row['token'])}]]{clean(row['after'])}..."


def format_analysis(summary: dict) -> str:
    lines = [f"{summary['model']} on {summary['data']}: {summary['examples']} examples, {summary['tokens']} "
             f"supervised tokens (max_length {summary['max_length']}; {summary['tokenize']['truncated']} truncated, "
             f"{summary['tokenize']['dropped_no_supervised_tokens']} dropped)",
             "hard-token fraction: " + ", ".join(f"p<{t}: {f:.3f}" for t, f in summary["hard_frac"].items()),
             f"mean token probability {summary['mean_prob']:.3f}, median {summary['median_prob']:.3f}, "
             f"{format_with_se(summary['bits_per_token'], summary['bits_per_token_se'])} bits/token",
             "", "hardest tokens:"]
    lines += [f"  p={row['prob']:.2e}  ex {row['index']:>4}  {_show_token(row)}" for row in summary["hardest_tokens"]]
    lines += ["", "most often hard (hard / occurrences):"]
    lines += ["  " + ", ".join(f"{r['token']!r} {r['hard']}/{r['occurrences']}" for r in summary["hard_token_types"])]
    if "compare" in summary:
        c = summary["compare"]
        cl = c["code_length"]
        lines += ["", f"compared with {c['model']}: hard-token fraction "
                  + ", ".join(f"p<{t}: {f:.3f}" for t, f in c["hard_frac"].items()),
                  f"Delta L = {format_with_se(cl['delta_bits'], cl['delta_bits_se'], '+.2f')} bits/response "
                  f"({format_with_se(cl['delta_bits_per_token'], cl['delta_bits_per_token_se'], '+.4f')} bits/token)",
                  "mean change of log p by probability under the first model:"]
        lines += [f"  p in [{r['low']}, {r['high']}): {r['tokens']:>6} tokens, "
                  + (f"{r['mean_delta_logp']:+.3f}" if r["tokens"] else "-") for r in c["change_by_initial_prob"]]
        for key in ("rose", "fell"):
            lines += ["", f"tokens whose probability {key} most:"]
            lines += [f"  {r['prob_a']:.2e} -> {r['prob_b']:.2e}  ex {r['index']:>4}  {_show_token(r)}"
                      for r in c[key]]
    lines += ["", f"written to {summary['out']}/ (summary.json, tokens.csv, examples.csv, histogram.png)"]
    return "\n".join(lines)


def codelength(model_a: str, model_b: str, domain: str, general: str | None = "alpaca", *, max_length: int = 512,
               batch_size: int = 8, limit: int | None = 200, seed: int = 0, progress: bool = True) -> dict:
    """Code length of a general set (P1) and a domain set (P2) under two models, Delta L on each with standard
    errors, and the general cost per unit of domain gain ``Delta L(P1) / -Delta L(P2)``."""
    from talr.models import load_model

    sets = {"domain": load_examples_arg(domain, limit, seed)}
    if general is not None:
        sets["general"] = load_examples_arg(general, limit, seed)
    scores: dict[str, dict[str, list[ExampleScores]]] = {name: {} for name in sets}
    for which, spec in (("a", model_a), ("b", model_b)):
        model, tokenizer = load_model(spec)
        for name, (examples, source) in sets.items():
            scores[name][which], _ = score_examples(model, tokenizer, examples, max_length, batch_size, progress,
                                                    source)
        del model
    result = {"model_a": model_a, "model_b": model_b, "max_length": max_length}
    for name, (_, source) in sets.items():
        result[name] = {"data": source, **compare_code_lengths(scores[name]["a"], scores[name]["b"])}
    if "general" in result:
        g, d = result["general"], result["domain"]
        ratio, se = cost_per_gain(g["delta_bits"], g["delta_bits_se"], d["delta_bits"], d["delta_bits_se"])
        result["cost_per_gain"], result["cost_per_gain_se"] = ratio, se
    return result


def format_codelength(result: dict) -> str:
    lines = [f"A = {result['model_a']}", f"B = {result['model_b']}", "",
             f"{'set':<8} {'n':>5} {'bits/token A':>16} {'bits/token B':>16} {'Delta L bits/resp':>20} "
             f"{'Delta L bits/token':>22}"]
    for name in ("general", "domain"):
        if name not in result:
            continue
        r = result[name]
        lines.append(
            f"{name:<8} {r['examples']:>5} "
            + " ".join(format_with_se(r[key], r[f"{key}_se"], spec, sep=" +-") for key, spec in (
                ("bits_per_token_a", ">8.4f"), ("bits_per_token_b", ">8.4f"), ("delta_bits", ">+11.3f"),
                ("delta_bits_per_token", ">+12.5f")))
        )
    if "cost_per_gain" in result:
        d = result["domain"]
        gain_z = -d["delta_bits"] / d["delta_bits_se"] if d["delta_bits_se"] > 0 else float("nan")
        lines += ["", f"general cost per unit of domain gain  Delta L(P1) / -Delta L(P2) = "
                  f"{format_with_se(result['cost_per_gain'], result['cost_per_gain_se'])}  "
                  f"(domain gain = {gain_z:.1f} standard errors" + ("; too small for a reliable ratio)" if
                                                                     gain_z < 3 else ")")]
    return "\n".join(lines)
