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
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from talr.evaluation import drift, generation
from talr.evaluation.baselines import baseline_warnings
from talr.evaluation.registry import expand_tasks, get_task
from talr.evaluation.results import SampleLog
from talr.evaluation.task import ChatChoices, Choices, Generate, Response, Scored, Task
from talr.io import atomic_write_json, read_json
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


def _split(values: list, sizes: list[int]) -> list[list]:
    """``values`` cut into consecutive runs of ``sizes``."""
    out, at = [], 0
    for size in sizes:
        out.append(values[at : at + size])
        at += size
    return out


def _run_scored_chunks(task, docs, log, model, tokenizer, batch_size, bar):
    """Log-likelihood and code-length tasks: score docs in chunks so finished items are saved as they come."""
    chunk = max(batch_size * 8, 1)
    for start in range(0, len(docs), chunk):
        part = docs[start : start + chunk]
        requests = [task.request(d) for d in part]
        if task.kind == "loglikelihood" and all(isinstance(r, ChatChoices) for r in requests):
            examples = [{"messages": r.messages, "response": x} for r in requests for x in r.responses]
            values = generation.response_loglikelihood(model, tokenizer, examples, batch_size=batch_size)
            results = _split(values, [len(r.responses) for r in requests])
            prompts = [[generation.chat_prompt(tokenizer, r.messages), list(r.responses)] for r in requests]
        elif task.kind == "loglikelihood":
            pairs = [p for r in requests for p in r.pairs]
            values = generation.loglikelihood(model, tokenizer, pairs, batch_size=batch_size)
            results = _split(values, [len(r.pairs) for r in requests])
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


def _drift_base(docs, task, model, tokenizer, model_name: str, base_model: str | None, batch_size: int):
    """The base side of the KL for every selected text, and the name of the base. The base is ``base_model``, else
    the one the model's run directory / WiSE-FT folder records, else the model itself: then the KL is 0 by
    definition and no base side is computed (None). Cached on disk when the base resolves to a local model folder
    (see :func:`drift.cached_base_side`), so the points of a sweep pay for it once."""
    from talr.models import load_model, model_fingerprint, resolve_model_path

    examples = [{"messages": r.messages, "response": r.response} for r in map(task.request, docs)]
    spec = base_model or drift.base_model_spec(model_name) or model_name

    def folder(name: str) -> Path | None:
        try:
            path = Path(resolve_model_path(name))
        except (FileNotFoundError, ValueError):
            return None
        return path.resolve() if path.is_dir() else None

    if spec == model_name or (folder(spec) is not None and folder(spec) == folder(model_name)):
        return None, "self"
    if folder(spec) is None:
        raise ValueError(f"base model {spec!r} of task {task.name} is not a local model folder")
    dtype = next(model.parameters()).dtype
    side = drift.cached_base_side(lambda: load_model(spec, dtype=dtype)[0], model_fingerprint(spec), tokenizer,
                                  examples, batch_size=batch_size)
    return side, spec


def _run_drift(task, docs, todo, log, model, tokenizer, batch_size, bar, base):
    """General-text drift: the base side covers every selected text (one cache entry however the run is resumed);
    the model side is computed in chunks for the texts not yet saved."""
    position = {d["id"]: i for i, d in enumerate(docs)}
    chunk = max(batch_size * 8, 1)
    for start in range(0, len(todo), chunk):
        part = todo[start : start + chunk]
        requests = [task.request(d) for d in part]
        examples = [{"messages": r.messages, "response": r.response} for r in requests]
        picked = [position[d["id"]] for d in part]
        if base is None:  # the model is its own base: KL 0 exactly
            results = [{**r, "kl_nats": 0.0} for r in drift.text_drift(model, tokenizer, examples, None,
                                                                        batch_size=batch_size)]
        else:
            side = drift.BaseSide(*([getattr(base, f)[i] for i in picked] for f in ("ids", "logprobs", "log_rest")))
            results = drift.text_drift(model, tokenizer, examples, side, batch_size=batch_size)
        records = []
        for doc, request, result in zip(part, requests, results):
            scored, error = _score_safely(task, doc, result)
            records.append(_record(task, doc, generation.chat_prompt(tokenizer, request.messages), None, scored, error))
        log.append(records)
        bar.update(len(part))


def _check_requests(task: Task) -> None:
    expected = {"generate": Generate, "loglikelihood": (Choices, ChatChoices), "response_bits": Response,
                "response_drift": Response}
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
    base_model: str | None = None,
) -> dict:
    """Evaluate ``tasks`` (registry names), writing samples and results.json under ``out_dir``; returns the results.

    ``tasks`` may name panels (``registry.PANELS``), which stand for their tasks, each at the panel's N (a smaller
    ``limit`` still caps it). ``limit`` evaluates a seeded random subset of that many items per task (see
    ``talr.sampling.seeded_subset``). ``base_model`` is the model the KL of drift tasks is taken against (default: the base
    the model's run directory records, else the model itself). After each task, a score below chance or predictions
    collapsed onto one label are reported on stderr (:func:`baselines.baseline_warnings`).
    ``max_new_tokens`` caps every generation task's budget (the benchmarks' own budgets, e.g. IFEval's 1,280 tokens,
    are slow on a CPU); a capped run is not comparable to published numbers, and results.json records the cap.
    ``dtype_requested`` (e.g. ``auto``) is recorded beside the model's actual dtype and the hardware facts.
    """
    planned = expand_tasks(tasks, limit)  # unknown names fail before any work
    task_objs = [get_task(name) for name, _ in planned]
    task_limits = dict(planned)
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
        "task_limits": task_limits,
        "max_new_tokens_cap": max_new_tokens,
        "data_dir": str(data_root),
    }
    started = time.time()
    for task in task_objs:
        _check_requests(task)
        t0, cpu0 = time.time(), time.process_time()
        docs, n_total = task.load(data_root, task_limits[task.name])
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
        base_name, base_seconds = None, None
        if task.kind == "response_drift" and todo:
            t_base = time.time()
            base, base_name = _drift_base(docs, task, model, tokenizer, model_name, base_model, batch_size)
            base_seconds = round(time.time() - t_base, 3)
        elif task.kind == "response_drift":
            base_name = payload["configs"].get(task.name, {}).get("base_model")
        if todo:
            if task.kind == "generate":
                _run_generate(task, todo, log, model, tokenizer, batch_size, bar)
            elif task.kind == "response_drift":
                _run_drift(task, docs, todo, log, model, tokenizer, batch_size, bar, base)
            else:
                _run_scored_chunks(task, todo, log, model, tokenizer, batch_size, bar)
        bar.close()
        records = [log.records[i] for i in ids]
        seconds = time.time() - t0
        payload["results"][task.name] = {"alias": task.name, **task.aggregate(records)}
        for line in baseline_warnings(task.name, payload["results"][task.name]):
            print(f"talr eval: warning: {line}", file=sys.stderr)
        payload["configs"][task.name] = task.config()
        if base_name is not None:
            payload["configs"][task.name]["base_model"] = base_name
        payload["versions"][task.name] = task.version
        payload["n-shot"][task.name] = task.n_shot
        payload["higher_is_better"][task.name] = {k.split(",")[0]: v for k, v in task.metrics.items()}
        payload["n-samples"][task.name] = {"original": n_total, "effective": len(docs)}
        payload["task_timings"][task.name] = {
            "seconds": round(seconds, 3),
            "cpu_seconds": round(time.process_time() - cpu0, 3),  # all threads of this process
            "items_computed": len(todo),
            "items_per_second": round(len(todo) / seconds, 3) if todo and seconds > 0 else None,
            "errors": sum(1 for r in records if "error" in r),
        }
        if base_seconds is not None:  # loading or computing the base model's side of the KL (cached on disk)
            payload["task_timings"][task.name]["base_side_seconds"] = base_seconds
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
