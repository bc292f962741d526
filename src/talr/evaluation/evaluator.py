"""Run tasks on a (model, tokenizer): samples are saved as they finish, results.json after each task.

Layout of ``out_dir``::

    results.json              lm-eval-shaped: results[task]["metric,filter"], "metric_stderr,filter", configs, ...
    samples_<task>.jsonl      one record per item: prompt, raw output, extracted answer, target, scores, error

Rerunning into the same folder resumes: items whose ``doc_id`` is in the samples file are not recomputed, and the
metrics are always aggregated from the samples file (old and new items alike).
"""

from __future__ import annotations

import datetime as _dt
import json
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from talr.evaluation import generation
from talr.evaluation.registry import get_task
from talr.evaluation.results import SampleLog, atomic_write_json, read_json
from talr.evaluation.task import Choices, Generate, Response, Scored, Task
from talr.paths import data_dir as default_data_dir
from talr.precision import precision_record

RESULTS_FILE = "results.json"


def samples_path(out_dir: Path, task_name: str) -> Path:
    return Path(out_dir) / f"samples_{task_name}.jsonl"


def _score_safely(task: Task, doc: dict, result: Any) -> tuple[Scored, str | None]:
    """The task's scores, or all-wrong scores plus the error text when the scorer raises (the run goes on)."""
    try:
        return task.score(doc, result), None
    except Exception as e:  # noqa: BLE001 - any scorer failure is recorded on the item, never fatal
        error = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}"
        return Scored(extracted=None, target=None, scores=task.failed_scores(doc)), error


def _record(task: Task, doc: dict, prompt: Any, output: Any, scored: Scored, error: str | None) -> dict:
    record = {
        "doc_id": doc["id"],
        "task_version": task.version,
        "prompt": prompt,
        "output": output,
        "extracted": scored.extracted,
        "target": scored.target,
        "scores": scored.scores,
    }
    if scored.details:
        record["details"] = scored.details
    if error is not None:
        record["error"] = error
    return record


def _run_generate(task, docs, log, model, tokenizer, batch_size, bar):
    requests = [task.request(d) for d in docs]
    for d, r in zip(docs, requests):
        if not isinstance(r, Generate):
            raise TypeError(f"task {task.name}: a generate task returned {type(r).__name__} for doc {d['id']}")
    prompts = [generation.chat_prompt(tokenizer, r.messages, r.prefix) for r in requests]

    def save(indices: list[int], outputs: list[str]) -> None:
        records = []
        for i, output in zip(indices, outputs):
            scored, error = _score_safely(task, docs[i], output)
            records.append(_record(task, docs[i], prompts[i], output, scored, error))
        log.append(records)
        bar.update(len(indices))

    generation.generate(
        model, tokenizer, prompts, max_new_tokens=task.max_new_tokens, stop=task.stop, batch_size=batch_size,
        on_batch=save,
    )


def _run_scored_chunks(task, docs, log, model, tokenizer, batch_size, bar):
    """Log-likelihood and code-length tasks: score docs in chunks so finished items are saved as they come."""
    chunk = max(batch_size * 8, 1)
    for start in range(0, len(docs), chunk):
        part = docs[start : start + chunk]
        requests = [task.request(d) for d in part]
        if task.kind == "loglikelihood":
            pairs = [p for r in requests for p in r.pairs]
            values = generation.loglikelihood(model, tokenizer, pairs, batch_size=batch_size)
            results, at = [], 0
            for r in requests:
                results.append(values[at : at + len(r.pairs)])
                at += len(r.pairs)
            prompts = [[list(p) for p in r.pairs] for r in requests]
        else:
            examples = [{"messages": r.messages, "response": r.response} for r in requests]
            results = generation.response_bits(model, tokenizer, examples, batch_size=batch_size)
            prompts = [generation.chat_prompt(tokenizer, r.messages) for r in requests]
        records = []
        for doc, prompt, result in zip(part, prompts, results):
            scored, error = _score_safely(task, doc, result)
            records.append(_record(task, doc, prompt, result, scored, error))
        log.append(records)
        bar.update(len(part))


def _check_requests(task: Task) -> None:
    expected = {"generate": Generate, "loglikelihood": Choices, "response_bits": Response}
    if task.kind not in expected:
        raise ValueError(f"task {task.name} has unknown kind {task.kind!r}; expected one of {sorted(expected)}")


def _model_name(model) -> str:
    return str(getattr(model.config, "_name_or_path", "") or type(model).__name__)


def evaluate(
    model,
    tokenizer,
    tasks: Sequence[str],
    *,
    out_dir: str | Path,
    limit: int | None = None,
    batch_size: int = 16,
    model_name: str | None = None,
    data_dir: str | Path | None = None,
    progress: bool = True,
    max_new_tokens: int | None = None,
    dtype_requested: str | None = None,
) -> dict:
    """Evaluate ``tasks`` (registry names), writing samples and results.json under ``out_dir``; returns the results.

    ``limit`` evaluates a seeded random subset of that many items per task (see ``task.seeded_subset``).
    ``max_new_tokens`` caps every generation task's budget (the benchmarks' own budgets, e.g. IFEval's 1,280 tokens,
    are slow on a CPU); a capped run is not comparable to published numbers, and results.json records the cap.
    ``dtype_requested`` (e.g. ``auto``) is recorded beside the model's actual dtype and the hardware facts.
    """
    task_objs = [get_task(name) for name in tasks]  # unknown names fail before any work
    if max_new_tokens is not None:
        # a budget cap for slow hardware: results.json's generation_kwargs record the value actually used
        for task in task_objs:
            task.max_new_tokens = min(task.max_new_tokens, max_new_tokens)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data_root = Path(data_dir) if data_dir is not None else default_data_dir()
    model_name = model_name or _model_name(model)
    results_path = out_dir / RESULTS_FILE
    payload = read_json(results_path) if results_path.exists() else {}
    previous_model = payload.get("config", {}).get("model")
    if previous_model is not None and previous_model != model_name:
        raise ValueError(
            f"{results_path} holds results of model {previous_model!r}, not {model_name!r}: use another --out folder"
        )
    dtype = str(next(model.parameters()).dtype)
    previous_dtype = payload.get("config", {}).get("dtype")
    if previous_dtype is not None and previous_dtype != dtype:
        raise ValueError(
            f"{results_path} holds results computed in {previous_dtype}, not {dtype}: use another --out folder"
        )
    for key in ("results", "configs", "versions", "n-shot", "higher_is_better", "n-samples", "task_timings"):
        payload.setdefault(key, {})
    payload["config"] = {
        "model": model_name,
        "model_class": type(model).__name__,
        "dtype": dtype,
        "device": str(next(model.parameters()).device),
        # what hardware produced the timings below, and the dtype asked for (e.g. auto) beside the one used
        **precision_record(dtype_requested or dtype.removeprefix("torch."), dtype.removeprefix("torch.")),
        "batch_size": batch_size,
        "limit": limit,
        "max_new_tokens_cap": max_new_tokens,
        "data_dir": str(data_root),
    }
    started = time.time()
    for task in task_objs:
        _check_requests(task)
        t0 = time.time()
        docs, n_total = task.load(data_root, limit)
        ids = [str(d["id"]) for d in docs]
        if len(set(ids)) != len(ids):
            raise ValueError(f"task {task.name}: duplicate document ids")
        log = SampleLog(samples_path(out_dir, task.name))
        stale = [i for i in ids if i in log.records and log.records[i].get("task_version") != task.version]
        if stale:
            raise ValueError(
                f"{log.path} holds samples of another version of task {task.name} (e.g. doc {stale[0]}); "
                "delete it or use another --out folder"
            )
        todo = [d for d in docs if d["id"] not in log]
        bar = tqdm(total=len(docs), initial=len(docs) - len(todo), unit="item", desc=task.name, disable=not progress)
        if todo:
            if task.kind == "generate":
                _run_generate(task, todo, log, model, tokenizer, batch_size, bar)
            else:
                _run_scored_chunks(task, todo, log, model, tokenizer, batch_size, bar)
        bar.close()
        records = [log.records[i] for i in ids]
        seconds = time.time() - t0
        payload["results"][task.name] = {"alias": task.name, **task.aggregate(records)}
        payload["configs"][task.name] = task.config()
        payload["versions"][task.name] = task.version
        payload["n-shot"][task.name] = task.n_shot
        payload["higher_is_better"][task.name] = {k.split(",")[0]: v for k, v in task.metrics.items()}
        payload["n-samples"][task.name] = {"original": n_total, "effective": len(docs)}
        payload["task_timings"][task.name] = {
            "seconds": round(seconds, 3),
            "items_computed": len(todo),
            "items_per_second": round(len(todo) / seconds, 3) if todo and seconds > 0 else None,
            "errors": sum(1 for r in records if "error" in r),
        }
        payload["date"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        payload["total_evaluation_time_seconds"] = str(round(time.time() - started, 3))
        atomic_write_json(results_path, payload)
    return payload


def format_table(results: dict) -> str:
    """Markdown table of every metric in a results.json payload (lm-eval's layout)."""
    lines = ["| task | version | metric | filter | value | stderr |", "| --- | --- | --- | --- | ---: | ---: |"]
    for task, metrics in results["results"].items():
        for key, value in metrics.items():
            if key == "alias" or "_stderr" in key.split(",")[0]:
                continue
            metric, _, filter_name = key.partition(",")
            err = metrics.get(f"{metric}_stderr,{filter_name}" if filter_name else f"{metric}_stderr", "N/A")
            shown = f"{value:.4f}" if isinstance(value, float) else json.dumps(value)
            err_shown = f"{err:.4f}" if isinstance(err, float) else str(err)
            version = results.get("versions", {}).get(task, "")
            lines.append(f"| {task} | {version} | {metric} | {filter_name or '-'} | {shown} | {err_shown} |")
    return "\n".join(lines)
