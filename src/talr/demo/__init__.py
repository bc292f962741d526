"""``talr demo``: a small sweep on the embedded SmolLM2-135M-Instruct, end to end, with its report.

With no benchmark folder the demo makes its own data (see docs/generators.md):

* domain: a synthetic clinical-calculator task in MedCalc-Bench's schema (templated notes; BMI, MAP, anion gap,
  corrected calcium, Cockcroft-Gault, QTc, CHA2DS2-VASc, ...), trained answer-only, scored by MedCalc-Bench's rules,
  plus the code length of its held-out reference answers (the paper's domain Delta L);
* general: IFEval-style verifiable prompts composed from lm-evaluation-harness's instruction registry, and the code
  length of the base model's own greedy answers to a fixed set of general prompts (the paper's general Delta L: data
  the model already models well).

``--data-dir DIR`` swaps in the real sets from a folder laid out like ``../shared/data`` (MedCalc-Bench train subset
and test set, IFEval, Alpaca for general code length). Everything lands in one sweep directory, so rerunning the demo
resumes it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from talr.io import atomic_write_text, write_jsonl
from talr.sweep import EvalConfig, GridConfig, SweepConfig, validate_sweep

logger = logging.getLogger(__name__)

GENERAL_ANSWERS_FILE = Path("general_probes") / "base_answers.jsonl"


@dataclass
class DemoSize:
    """Sizes chosen so the whole demo fits in 15 minutes on 2 CPU cores of either kind, float32 on an AVX2-only CPU
    included (timings: docs/sweep.md, `talr demo`). The same sizes everywhere, so every machine's demo computes the same
    thing."""

    train_rows: int = 32
    eval_rows: int = 12
    ifeval_rows: int = 12
    general_prompts: int = 16
    general_answer_tokens: int = 96
    max_new_tokens: int = 128  # cap on IFEval's 1,280-token budget
    learning_rates: tuple[float, ...] = (2e-6, 5e-5)
    max_length: int = 384
    probe_examples: int = 8  # training-time code-length and hard-token probes (``probes.*_size``)


def write_synthetic_data(root: Path, size: DemoSize, seed: int = 0) -> Path:
    """The demo's own data folder, laid out like ``../shared/data`` (general answers are added later, since they
    need the base model)."""
    from talr.demo.general_probes import generate_ifeval_rows
    from talr.demo.synthetic_medcalc import write_data_folder

    write_data_folder(root, n_train=size.train_rows, n_test=size.eval_rows, seed=seed)
    write_jsonl(generate_ifeval_rows(size.ifeval_rows, seed=seed), root / "ifeval" / "input_data.jsonl")
    return root


def write_general_answers(root: Path, model_spec: str, size: DemoSize) -> Path:
    """The base model's greedy answers to the fixed general prompts: text the model already models well, whose code
    length after fine-tuning measures general damage."""
    from talr.demo.general_probes import general_prompt_rows
    from talr.evaluation.generation import chat_prompt, generate
    from talr.models import load_model
    from talr.precision import resolve_eval_dtype

    path = root / GENERAL_ANSWERS_FILE
    if path.is_file():
        return path
    model, tokenizer = load_model(model_spec, dtype=resolve_eval_dtype("auto"))
    rows = general_prompt_rows()[: size.general_prompts]
    messages = [[{"role": "user", "content": row["prompt"]}] for row in rows]
    answers = generate(model, tokenizer, [chat_prompt(tokenizer, m) for m in messages],
                       max_new_tokens=size.general_answer_tokens, batch_size=16, progress=True)
    return atomic_write_text(path, "".join(
        json.dumps({"id": row["id"], "messages": [*m, {"role": "assistant", "content": answer}]}) + "\n"
        for row, m, answer in zip(rows, messages, answers) if answer.strip()
    ))


def demo_sweep(out_dir: Path, data_dir: Path, real_data: bool, size: DemoSize) -> SweepConfig:
    general = ["ifeval", "codelength_alpaca"] if real_data else ["ifeval", "codelength_general_answers"]
    return SweepConfig(
        name="demo",
        out_dir=str(out_dir),
        keep_models=False,
        grid=GridConfig(methods=["sft", "talr"], learning_rates=list(size.learning_rates), seeds=[0]),
        eval=EvalConfig(domain=["medcalc_label", "codelength_medcalc_label"], general=general,
                        limit=size.eval_rows if real_data else None, batch_size=16, data_dir=str(data_dir),
                        max_new_tokens=size.max_new_tokens),
        train={
            "model": "smollm2-135m-instruct",
            "data": {"train": {"source": "medcalc_bench", "split": "train", "format": "label",
                               "limit": size.train_rows, "data_dir": str(data_dir)},
                     "max_length": size.max_length},
            "training": {"num_epochs": 1, "per_device_batch_size": 4, "logging_steps": 2, "warmup_ratio": 0.1},
            # the general probe reads the base model's own answers (the demo's general data) or, with real data,
            # Alpaca (the default)
            "probes": {"general_size": size.probe_examples, "hard_token_size": size.probe_examples,
                       **({} if real_data else {"general": str(data_dir / GENERAL_ANSWERS_FILE)})},
        },
    )


def run_demo(out_dir: str | Path = "demo", data_dir: str | Path | None = None, size: DemoSize | None = None) -> Path:
    """Run the demo sweep (resuming whatever an earlier run finished) and return the report's path."""
    from talr.report import write_report
    from talr.sweep import run_sweep

    size = size or DemoSize()
    out_dir = Path(out_dir)
    real_data = data_dir is not None
    if real_data:
        data_root = Path(data_dir)
        if not data_root.is_dir():
            raise FileNotFoundError(f"--data-dir {data_root} does not exist")
    else:
        data_root = out_dir / "data"
        write_synthetic_data(data_root, size)
        write_general_answers(data_root, "smollm2-135m-instruct", size)
    sweep = demo_sweep(out_dir, data_root, real_data, size)
    validate_sweep(sweep)
    run_sweep(sweep)
    return write_report(sweep.root)
