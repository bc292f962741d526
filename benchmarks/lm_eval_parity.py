"""Parity with lm-evaluation-harness: talr's per-item log-likelihoods and accuracies against lm-eval's, on the same
items of the same checkpoint.

lm-eval reads the items through task YAMLs with ``dataset_path: json`` (local files, offline) and lm-eval's own
official templates (``arc_easy``, ``piqa``, ``boolq`` as shipped in ``lm_eval/tasks``), applied to the LLM Foundry rows
converted back to the original datasets' fields (ARC: ``question``, ``choices.text/label``, ``answerKey``; PIQA:
``goal``, ``sol1``, ``sol2``, ``label``; BoolQ: ``passage``, ``question``, ``label``), so the prompt text is
built independently of talr's task code. talr's side is ``talr.evaluation.evaluate`` on the same seeded subset
(``--out`` resumes, so an existing evaluation folder of the same model and subset is reused).

    python benchmarks/lm_eval_parity.py --n 200 --tasks arc_easy,piqa,boolq --out eval_results/parity

Prints one table row per task: items, the largest per-choice log-likelihood difference, items whose acc / acc_norm
prediction differ, and both sides' accuracies, with the machine's facts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # local JSON files only; never wait on an unreachable hub
os.environ.setdefault("HF_HUB_OFFLINE", "1")

LM_EVAL_TEMPLATES = {  # copied from lm_eval/tasks/{arc/arc_easy,piqa/piqa,super_glue/boolq/default}.yaml
    "arc_easy": {"doc_to_text": "Question: {{question}}\nAnswer:",
                 "doc_to_target": "{{choices.label.index(answerKey)}}", "doc_to_choice": "{{choices.text}}",
                 "metrics": ["acc", "acc_norm"]},
    "piqa": {"doc_to_text": "Question: {{goal}}\nAnswer:", "doc_to_target": "label",
             "doc_to_choice": "{{[sol1, sol2]}}", "metrics": ["acc", "acc_norm"]},
    "boolq": {"doc_to_text": "{{passage}}\nQuestion: {{question}}?\nAnswer:", "doc_to_target": "label",
              "doc_to_choice": '["no", "yes"]', "metrics": ["acc"]},
}


def original_fields(task: str, doc: dict) -> dict:
    """A Foundry row in the original dataset's fields (what lm-eval's template reads)."""
    query = doc["query"].strip()
    if task == "arc_easy":
        labels = ["A", "B", "C", "D", "E"][: len(doc["choices"])]
        return {"question": query.removeprefix("Question: "), "choices": {"text": doc["choices"], "label": labels},
                "answerKey": labels[doc["gold"]], "talr_id": doc["id"]}
    if task == "piqa":
        return {"goal": query.removeprefix("Question: "), "sol1": doc["choices"][0], "sol2": doc["choices"][1],
                "label": doc["gold"], "talr_id": doc["id"]}
    if task == "boolq":
        passage, question = query.removeprefix("Passage: ").rsplit("\nQuestion: ", 1)
        return {"passage": passage, "question": question.removesuffix("?"), "label": doc["gold"], "talr_id": doc["id"]}
    raise ValueError(f"no lm-eval template for {task}")


def write_task(folder: Path, task: str, docs: list[dict]) -> str:
    data = folder / f"{task}.jsonl"
    data.write_text("".join(json.dumps(original_fields(task, d)) + "\n" for d in docs))
    t = LM_EVAL_TEMPLATES[task]
    metrics = "".join(f"  - metric: {m}\n    aggregation: mean\n    higher_is_better: true\n" for m in t["metrics"])
    name = f"parity_{task}"
    (folder / f"{name}.yaml").write_text(
        f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\ntest_split: test\n"
        f"output_type: multiple_choice\ndoc_to_text: {json.dumps(t['doc_to_text'])}\n"
        f"doc_to_target: {json.dumps(t['doc_to_target'])}\ndoc_to_choice: {json.dumps(t['doc_to_choice'])}\n"
        f"metric_list:\n{metrics}metadata:\n  version: 1.0\n"
    )
    return name


def run_lm_eval(model_folder: Path, tasks: dict[str, list[dict]], batch_size: int) -> dict[str, dict]:
    """Per task: {talr doc id: {"lls": [...], "acc": 0/1, "acc_norm": 0/1 or None}} from lm-eval's logged samples."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    with tempfile.TemporaryDirectory() as tmp:
        names = {write_task(Path(tmp), task, docs): task for task, docs in tasks.items()}
        out = lm_eval.simple_evaluate(
            model="hf", model_args=f"pretrained={model_folder},dtype=float32,device=cpu", tasks=list(names),
            task_manager=TaskManager(include_path=tmp), batch_size=batch_size, log_samples=True,
        )
    per_task = {}
    for name, task in names.items():
        items = {}
        for sample in out["samples"][name]:
            items[str(sample["doc"]["talr_id"])] = {"lls": [float(r[0]) for r in sample["filtered_resps"]],
                                                    "acc": sample["acc"], "acc_norm": sample.get("acc_norm")}
        per_task[task] = items
    return per_task


def cpu_kind() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="items per task (talr's seeded subset)")
    parser.add_argument("--tasks", default="arc_easy,piqa,boolq")
    parser.add_argument("--out", default="eval_results/lm_eval_parity", help="talr evaluation folder (resumed)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()

    import torch

    from talr.evaluation.evaluator import evaluate, samples_path
    from talr.evaluation.registry import get_task
    from talr.models import embedded_model_folder, load_model
    from talr.paths import data_dir

    if args.threads:
        torch.set_num_threads(args.threads)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    docs = {t: get_task(t).load(data_dir(), args.n)[0] for t in tasks}
    started, cpu = time.time(), time.process_time()
    model, tokenizer = load_model("smollm2-135m-instruct", dtype=torch.float32)
    evaluate(model, tokenizer, tasks, out_dir=args.out, limit=args.n, batch_size=args.batch_size,
             model_name="smollm2-135m-instruct", progress=False)
    del model
    talr_seconds, talr_cpu = time.time() - started, time.process_time() - cpu
    started, cpu = time.time(), time.process_time()
    theirs = run_lm_eval(embedded_model_folder(), docs, args.batch_size)
    lm_seconds, lm_cpu = time.time() - started, time.process_time() - cpu

    print(f"\nSmolLM2-135M-Instruct (embedded Q4_1 GGUF de-quantised to float32, {embedded_model_folder()}), float32, "
          f"CPU {cpu_kind()} x {os.cpu_count()}, {torch.get_num_threads()} torch threads, "
          f"load {os.getloadavg()[0]:.1f}; talr {talr_seconds:.0f} s wall / {talr_cpu:.0f} s CPU (resumed items "
          f"free), lm-eval {lm_seconds:.0f} s wall / {lm_cpu:.0f} s CPU\n")
    print("| task | items | max abs log-lik difference | acc predictions differing | acc_norm predictions differing "
          "| talr acc | lm-eval acc | talr acc_norm | lm-eval acc_norm |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    worst = 0.0
    for task in tasks:
        ours = {}
        for line in samples_path(Path(args.out), task).read_text().splitlines():
            record = json.loads(line)
            ours[str(record["doc_id"])] = record
        ids = [str(d["id"]) for d in docs[task]]
        diff = max(abs(a - b) for i in ids for a, b in zip(ours[i]["output"], theirs[task][i]["lls"]))
        worst = max(worst, diff)
        acc_ours = [ours[i]["scores"]["acc,none"] for i in ids]
        acc_theirs = [float(theirs[task][i]["acc"]) for i in ids]
        has_norm = "acc_norm,none" in ours[ids[0]]["scores"]
        norm_ours = [ours[i]["scores"]["acc_norm,none"] for i in ids] if has_norm else None
        norm_theirs = [float(theirs[task][i]["acc_norm"]) for i in ids] if has_norm else None

        def mean(values):
            return "-" if values is None else f"{sum(values) / len(values):.4f}"

        differ_norm = "-" if not has_norm else str(sum(a != b for a, b in zip(norm_ours, norm_theirs)))
        print(f"| {task} | {len(ids)} | {diff:.2e} | {sum(a != b for a, b in zip(acc_ours, acc_theirs))} | "
              f"{differ_norm} | {mean(acc_ours)} | {mean(acc_theirs)} | {mean(norm_ours)} | {mean(norm_theirs)} |")
    print(f"\nlargest per-choice log-likelihood difference: {worst:.2e} nats")
    return 0


if __name__ == "__main__":
    sys.exit(main())
