"""Hugging Face-style model cards (``README.md`` with YAML front matter) for every model folder talr saves.

A run directory's ``model/``, ``merged/`` and ``finetuned/`` get a card saying how the weights were trained (method,
learning rate, steps, seed, talr version) and, once ``talr eval`` has written ``eval/results.json`` into the run
directory, the evaluation results; a WiSE-FT average gets one naming its two endpoints and alpha. The front matter
holds the Hub's metadata keys (``base_model``, ``library_name``, ``tags``, ``datasets`` where known), so a folder
uploads to the Hub as is. Cards are rewritten whole each time (atomically), never edited in place.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from talr import __version__
from talr.io import atomic_write_text, read_json
from talr.run_dir import MODEL_FOLDERS, RunDir

CARD = "README.md"
# talr's embedded model is this hub model's Q4_1 GGUF, de-quantised to float32 (talr.models)
EMBEDDED_HUB_IDS = {"smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct"}
# Hub copies of the data sources (talr.data.sources) where one exists under the upstream authors' or owners' name
SOURCE_HUB_IDS = {"gsm8k": "openai/gsm8k", "medcalc_bench": "ncbi/MedCalc-Bench-v1.0"}


class ModelCardError(ValueError):
    """A README.md's front matter is missing or not a YAML mapping; the message names the file."""


def render_card(metadata: dict, body: str) -> str:
    front = yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True)
    return f"---\n{front}---\n\n{body.strip()}\n"


def parse_card(text: str, source: str = "<card>") -> tuple[dict, str]:
    """``(metadata, body)`` of a card written by :func:`render_card` (or any Hub card)."""
    if not text.startswith("---\n"):
        raise ModelCardError(f"{source}: no YAML front matter (the file must start with '---')")
    front, sep, body = text[4:].partition("\n---\n")
    if not sep:
        raise ModelCardError(f"{source}: the YAML front matter is not closed by a '---' line")
    try:
        metadata = yaml.safe_load(front)
    except yaml.YAMLError as err:
        raise ModelCardError(f"{source}: invalid YAML front matter: {err}") from None
    if not isinstance(metadata, dict):
        raise ModelCardError(f"{source}: the front matter is not a YAML mapping")
    return metadata, body.strip()


def read_card(folder: str | os.PathLike) -> tuple[dict, str]:
    path = Path(folder) / CARD
    return parse_card(path.read_text(encoding="utf-8"), str(path))


def write_card(folder: str | os.PathLike, metadata: dict, body: str) -> Path:
    path = Path(folder) / CARD
    return atomic_write_text(path, render_card(metadata, body))


def hub_base_model(spec: str) -> str | None:
    """The Hub id a model spec descends from: the embedded model's, a talr run's base (followed through its
    config.yaml), a local folder's own card's ``base_model``, or the spec itself when it is a Hub id."""
    if spec in EMBEDDED_HUB_IDS:
        return EMBEDDED_HUB_IDS[spec]
    path = Path(spec).expanduser()
    if path.is_dir():
        if RunDir(path).config_file.is_file():
            model = RunDir(path).read_config().get("model")
            return hub_base_model(model) if isinstance(model, str) and model != spec else None
        if (path / CARD).is_file():
            try:
                base = read_card(path)[0].get("base_model")
            except ModelCardError:
                return None
            return base if isinstance(base, str) else None
        return None
    parts = spec.split("/")
    return spec if len(parts) == 2 and all(parts) and not spec.startswith((".", "~")) else None


def _table(rows: list[tuple[str, object]]) -> str:
    lines = ["| | |", "| --- | --- |"]
    lines += [f"| {key} | {value} |" for key, value in rows if value is not None]
    return "\n".join(lines)


def _metadata(base_spec: str, method_tags: list[str], library: str, datasets: list[str]) -> dict:
    metadata: dict = {}
    base = hub_base_model(base_spec)
    if base:
        metadata["base_model"] = base
    metadata["library_name"] = library
    metadata["tags"] = list(dict.fromkeys(["talr", *method_tags]))  # "talr" is the library's tag and TALR's
    if datasets:
        metadata["datasets"] = datasets
    return metadata


def _eval_section(results_path: Path) -> str:
    if not results_path.is_file():
        return "## Evaluation\n\nNot evaluated yet (`talr eval --model RUN_DIR --tasks ...` adds the results here)."
    from talr.evaluation.evaluator import format_table

    results = read_json(results_path)
    config = results.get("config", {})
    limit = f", limit {config['limit']} items per task" if config.get("limit") else ""
    return (f"## Evaluation\n\n`talr eval` results ({results.get('date', 'date unknown')}, "
            f"{config.get('dtype', 'float32')}{limit}; full file: `eval/results.json`):\n\n"
            f"{format_table(results)}")


def run_card(run_dir: str | os.PathLike, folder: str) -> tuple[dict, str]:
    """Metadata and body of the card of ``run_dir/folder`` (one of ``talr.run_dir.MODEL_FOLDERS``), from the run's
    config.yaml, run.json and eval/results.json."""
    run_dir = RunDir(run_dir)
    config = run_dir.read_config()
    run = run_dir.read_record()
    method, training, train_data = config["method"], config["training"], config["data"]["train"]
    adapter = method["adapter"] == "lora" and folder in ("model", "finetuned")
    averaged = method["averaging"] != "none" and folder == "model"
    tags = [method["loss"], *(axis for axis in (method["regularizer"], method["adapter"], method["averaging"])
                              if axis not in ("none", "full"))]
    source = train_data.get("source")
    datasets = [SOURCE_HUB_IDS[source]] if source in SOURCE_HUB_IDS else []
    data = (f"`{source}` ({train_data['split']}, format {train_data.get('format') or 'default'}"
            f"{', limit ' + str(train_data['limit']) if train_data.get('limit') else ''})"
            if source else f"`{Path(train_data['path']).name}` (JSONL)")
    what = {"model": "the run's final model", "merged": "the LoRA adapter merged into the base weights",
            "finetuned": "the trained weights before averaging"}[folder]
    if adapter:
        what += " (a PEFT LoRA adapter)"
    if averaged:
        what += f" (WiSE-FT: {1 - config['wise_ft']['alpha']:g} x base + {config['wise_ft']['alpha']:g} x trained)"
    talr_version = run.get("versions", {}).get("talr", __version__)
    embedded = ""
    if config["model"] in EMBEDDED_HUB_IDS:
        embedded = ("\n\nThe base is talr's embedded SmolLM2-135M-Instruct: the Q4_1 GGUF of the Hub model, "
                    "de-quantised to float32, not the original bf16 weights.")
    loss_options = config["talr"] if method["loss"] == "talr" else None
    rows = [
        ("base model", f"`{config['model']}`"),
        ("method", ", ".join(f"{k}: `{v}`" for k, v in method.items())),
        ("TALR options", loss_options and ", ".join(f"{k}: {v}" for k, v in loss_options.items())),
        ("training data", data),
        ("learning rate", training["learning_rate"]),
        ("schedule", f"{training['lr_scheduler']}, warmup ratio {training['warmup_ratio']}"),
        ("steps", run.get("global_steps", "unfinished run")),
        ("batch", f"{training['per_device_batch_size']} per device x {training['gradient_accumulation_steps']} "
                  "accumulation"),
        ("max length", config["data"]["max_length"]),
        ("autocast", training["autocast"]),
        ("seed", config["seed"]),
        ("talr version", talr_version),
        ("git commit", run.get("git")),
        ("final training loss", run.get("final_train_loss")),
    ]
    body = (f"# {run_dir.path.name}/{folder}\n\nThis folder is {what}, trained with talr "
            f"(method `{'+'.join(tags)}`).{embedded}\n\n## Training\n\n{_table(rows)}\n\n"
            "The run directory's `config.yaml` (fully resolved), `metrics.jsonl` and `run.json` record it; "
            "`talr train -c config.yaml` reruns it.\n\n" + _eval_section(run_dir.results_file))
    return _metadata(config["model"], tags, "peft" if adapter else "transformers", datasets), body


def write_run_cards(run_dir: str | os.PathLike) -> list[Path]:
    """(Re)write the card of every model folder of a run directory; returns the cards written."""
    run = RunDir(run_dir)
    written = []
    for folder in MODEL_FOLDERS:
        if run.folder(folder).is_dir():
            written.append(write_card(run.folder(folder), *run_card(run.path, folder)))
    return written


def average_card(base: str, finetuned: str, alpha: float) -> tuple[dict, str]:
    """Card of a WiSE-FT average ``(1 - alpha) * base + alpha * finetuned`` written by ``talr average``."""
    finetuned_path = Path(finetuned)
    tags = ["wise_ft"]
    if RunDir(finetuned_path).config_file.is_file():  # a talr run: its method is part of what was averaged
        method = RunDir(finetuned_path).read_config().get("method", {})
        tags = [method.get("loss", "sft"), *tags]
    rows = [("base", f"`{base}`"), ("fine-tuned", f"`{finetuned}`"), ("alpha", alpha),
            ("talr version", __version__)]
    body = (f"# WiSE-FT average\n\n`(1 - alpha) x base + alpha x fine-tuned` weights (Wortsman et al. 2022), "
            f"written by `talr average`.\n\n{_table(rows)}")
    return _metadata(base, tags, "transformers", []), body
