"""The learning-rate advisor: before a real run, measure what fine-tuning on this data does at a few learning rates.

1. Hard-token statistics of the data under the model (fraction of supervised tokens with p < 0.1 / 0.2 / 0.5, the
   hardest tokens, and the weight TALR would give the hard ones): TALR only changes anything where there are hard
   tokens.
2. A short probe: for each candidate learning rate and loss weighting, a real ``talr train`` run of a few optimizer
   steps on a small slice of the data (constant learning rate, the given config's other settings), then the code
   length of a general set (P1) and of held-out domain examples (P2) against the starting model. Domain gain
   ``G = -Delta L(P2)`` and general cost ``C = Delta L(P1)`` are in bits per response; ``C / G`` is the general cost
   per unit of domain gain.
3. The rule (documented in docs/analysis.md): among runs whose domain gain is significant (``G > 2 se``), take the one
   with the lowest cost per gain as the reference; every run whose cost per gain is within ``tolerance`` of it
   (relative, plus two standard errors of its own ratio) is "efficient"; recommend the efficient run with the largest
   domain gain — the fastest learning rate that does not yet pay more general damage per unit of domain progress.
   TALR is recommended when that run is a TALR run.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from talr import analysis, losses, stats
from talr.callbacks import hold_out, read_probes
from talr.config import Config, DatasetSpec, ProbesConfig
from talr.data.formats import write_jsonl
from talr.methods.talr import TalrWeighting
from talr.step_normalizer import weights_as_trained

logger = logging.getLogger(__name__)

DEFAULT_LEARNING_RATES = (1e-6, 5e-6, 2e-5)
TOLERANCE = 0.25
SIGNIFICANCE = 2.0


def probe_config(config: Config, method: str, learning_rate: float, steps: int, train_file: Path,
                 domain_file: Path, general_file: Path | None, probe_size: int, output_dir: Path) -> Config:
    """The short probe run: ``config`` with this loss weighting and constant learning rate, ``steps`` optimizer
    steps on the training slice, no saved model, and code-length probes only at the start and at the end."""
    run = copy.deepcopy(config)
    run.output_dir = str(output_dir)
    run.method.loss = method
    run.data.train = DatasetSpec(path=str(train_file))
    t = run.training
    t.learning_rate, t.max_steps, t.lr_scheduler, t.warmup_ratio = learning_rate, steps, "constant", 0.0
    t.logging_steps, t.save_model = steps, False
    run.probes = ProbesConfig(
        enabled=True, every_n_steps=steps, general=str(general_file) if general_file else None,
        general_size=probe_size, domain=DatasetSpec(path=str(domain_file)), domain_size=probe_size,
        hard_token_size=0, batch_size=config.probes.batch_size,
    )
    return run


def summarize_probe_run(records: list[dict]) -> dict:
    """Domain gain, general cost and cost per gain from a probe run's ``probes.jsonl`` records (the last one)."""
    final = [r for r in records if r["probe"] == "codelength"][-1]
    out = {"steps": final["step"], "domain_gain": -final["domain_delta_bits"],
           "domain_gain_se": final["domain_delta_bits_se"],
           "domain_gain_per_token": -final["domain_delta_bits_per_token"]}
    if "general_delta_bits" in final:
        out.update({"general_cost": final["general_delta_bits"], "general_cost_se": final["general_delta_bits_se"],
                    "general_cost_per_token": final["general_delta_bits_per_token"]})
        out["cost_per_gain"], out["cost_per_gain_se"] = stats.cost_per_gain(
            final["general_delta_bits"], final["general_delta_bits_se"], final["domain_delta_bits"],
            final["domain_delta_bits_se"])
    return out


def recommend(runs: Sequence[dict], tolerance: float = TOLERANCE, significance: float = SIGNIFICANCE) -> dict:
    """Apply the advisor's rule (module docstring) to probe results ``{method, learning_rate, domain_gain,
    domain_gain_se, cost_per_gain, cost_per_gain_se, ...}``; returns the choice and the reason, with each run's
    verdict."""
    verdicts = []
    learning = [r for r in runs if r["domain_gain"] > significance * r["domain_gain_se"] and "cost_per_gain" in r]
    if not learning:
        return {"choice": None, "verdicts": [],
                "reason": "no probe run made significant domain progress: use more --steps or larger learning rates"}
    best = min(learning, key=lambda r: r["cost_per_gain"])
    threshold = best["cost_per_gain"] + tolerance * abs(best["cost_per_gain"])
    efficient = []
    for r in runs:
        if r not in learning:
            verdict = "no significant domain gain"
        elif r["cost_per_gain"] <= threshold + significance * r["cost_per_gain_se"]:
            verdict = "efficient"
            efficient.append(r)
        else:
            verdict = "pays more general cost per unit of domain gain"
        verdicts.append({"method": r["method"], "learning_rate": r["learning_rate"], "verdict": verdict})
    choice = max(efficient, key=lambda r: r["domain_gain"])
    reason = (f"largest domain gain ({choice['domain_gain']:.2f} bits/response) among runs within {tolerance:.0%} "
              f"(+{significance:g} se) of the best cost per gain ({best['cost_per_gain']:.3f}, "
              f"{best['method']} at lr {best['learning_rate']:g})")
    return {"choice": {"method": choice["method"], "learning_rate": choice["learning_rate"]},
            "reason": reason, "verdicts": verdicts}


def hard_token_evidence(scores: list[analysis.ExampleScores], tokenizer, config: Config, top: int = 10) -> dict:
    """Hard-token statistics of the data, and what TALR would do with them at the start of training."""
    summary = analysis.probability_summary(scores)
    weights = np.concatenate(weights_as_trained(TalrWeighting(config), [s.logp for s in scores], config))
    hard = np.exp(analysis.all_logp(scores)) < losses.HARD_TOKEN_PROB
    return {
        **summary,
        "talr_weight_hard_mean": float(weights[hard].mean()) if hard.any() else None,
        "talr_weight_easy_mean": float(weights[~hard].mean()) if (~hard).any() else None,
        "talr_effective_fraction": float(1.0 / (weights.size * np.square(weights / weights.sum()).sum())),
        "hardest_tokens": analysis.hardest_tokens(scores, tokenizer, top),
        "hard_token_types": analysis.hard_token_types(scores, tokenizer, count=top),
    }


def advise(config: Config, data: str, general: str | None = "alpaca",
           learning_rates: Sequence[float] = DEFAULT_LEARNING_RATES, steps: int = 16, train_size: int = 128,
           probe_size: int = 48, methods: Sequence[str] = ("sft", "talr"), workdir: str | Path | None = None,
           tolerance: float = TOLERANCE) -> dict:
    """Hard-token statistics and the learning-rate probe for ``config.model`` on ``data``; returns the evidence and
    the recommendation. Probe runs go to ``workdir`` (a temporary folder when None)."""
    from talr.models import load_model
    from talr.trainer import train

    if steps <= 0 or train_size <= 0 or probe_size <= 1:
        raise ValueError("steps and train_size must be positive and probe_size at least 2")
    examples, source = analysis.load_examples_arg(data, seed=config.seed)
    rest, domain_probe, _ = hold_out(examples, min(probe_size, len(examples) // 4), config.seed)
    train_slice = analysis.sample_examples(rest, train_size, config.seed)
    general_probe = None
    if general is not None:
        general_probe = analysis.sample_examples(analysis.load_chat_examples(general), probe_size, config.seed)

    model, tokenizer = load_model(config.model, trust_remote_code=config.trust_remote_code)
    scores, stats = analysis.score_examples(model, tokenizer, train_slice, config.data.max_length,
                                            config.probes.batch_size, progress=True, source=source)
    del model
    evidence = {"model": config.model, "data": source, "train_examples": len(train_slice),
                "domain_probe_examples": len(domain_probe),
                "general_probe_examples": len(general_probe) if general_probe else 0,
                "steps": steps, "batch_size": config.training.per_device_batch_size
                * config.training.gradient_accumulation_steps,
                "hard_tokens": {**hard_token_evidence(scores, tokenizer, config), "tokenize": stats.as_dict()}}

    with tempfile.TemporaryDirectory(prefix="talr-advise-") as tmp:
        root = Path(workdir) if workdir is not None else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        train_file = write_jsonl(train_slice, root / "train.jsonl")
        domain_file = write_jsonl(domain_probe, root / "domain_probe.jsonl")
        general_file = write_jsonl(general_probe, root / "general_probe.jsonl") if general_probe else None
        runs = []
        for method in methods:
            for lr in learning_rates:
                name = f"{method}_lr{lr:g}"
                logger.info("Advisor probe run %s (%d steps)", name, steps)
                run_dir = train(probe_config(config, method, lr, steps, train_file, domain_file, general_file,
                                             probe_size, root / name))
                runs.append({"method": method, "learning_rate": lr, **summarize_probe_run(read_probes(run_dir))})
    evidence["runs"] = runs
    evidence["recommendation"] = recommend(runs, tolerance) if general_probe else {
        "choice": None, "verdicts": [], "reason": "no general probe set, so no general cost to weigh"}
    return evidence


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def format_advice(advice: dict) -> str:
    h = advice["hard_tokens"]
    lines = [f"{advice['model']} on {advice['data']}",
             f"hard tokens ({h['examples']} examples, {h['tokens']} supervised tokens): "
             + ", ".join(f"p<{t}: {f:.1%}" for t, f in h["hard_frac"].items()),
             f"  TALR at the start: mean weight of hard tokens {_num(h['talr_weight_hard_mean'])}, of the others "
             f"{_num(h['talr_weight_easy_mean'])} (1 = SFT); effective token fraction "
             f"{h['talr_effective_fraction']:.2f}",
             "  most often hard: " + ", ".join(f"{r['token']!r} {r['hard']}/{r['occurrences']}"
                                               for r in h["hard_token_types"][:10]),
             "",
             f"probe: {advice['steps']} steps x {advice['batch_size']} examples from {advice['train_examples']}; "
             f"Delta L vs the start on {advice['domain_probe_examples']} held-out domain and "
             f"{advice['general_probe_examples']} general responses (bits/response, +- se)",
             f"{'method':<6} {'lr':>8} {'domain gain':>16} {'general cost':>16} {'cost per gain':>17}  verdict"]
    verdicts = {(v["method"], v["learning_rate"]): v["verdict"] for v in advice["recommendation"]["verdicts"]}
    for r in advice["runs"]:
        cost = (f"{r['general_cost']:>+8.3f} +-{r['general_cost_se']:.3f}" if "general_cost" in r else "-")
        ratio = (f"{r['cost_per_gain']:>+8.3f} +-{r['cost_per_gain_se']:.3f}"
                 if "cost_per_gain" in r and math.isfinite(r["cost_per_gain"]) else "-")
        lines.append(f"{r['method']:<6} {r['learning_rate']:>8.0e} {r['domain_gain']:>+8.3f} +-{r['domain_gain_se']:.3f} "
                     f"{cost:>16} {ratio:>17}  {verdicts.get((r['method'], r['learning_rate']), '')}")
    rec = advice["recommendation"]
    lines.append("")
    if rec["choice"] is None:
        lines.append(f"no recommendation: {rec['reason']}")
    else:
        c = rec["choice"]
        lines.append(f"recommendation: learning rate {c['learning_rate']:g} with "
                     f"{'TALR' if c['method'] == 'talr' else c['method'].upper()} — {rec['reason']}")
        lines.append("TALR " + ("is" if c["method"] == "talr" else "is not") + " worth enabling on this evidence.")
    return "\n".join(lines)


def save_advice(advice: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(advice, indent=2, ensure_ascii=False) + "\n")
