"""The GPU study's tiny CPU mode runs end to end (every method, LoRA's own rate, WiSE-FT, the panel, the report), so
benchmarks/gpu_study.py cannot rot."""

import gzip
import importlib.util
import json
from pathlib import Path

import pytest

from talr.paths import data_dir

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
needs_data = pytest.mark.skipif(not all((data_dir() / d).is_dir() for d in ("esci", "alpaca", "mmlu", "arc_easy")),
                                reason="benchmark data folder not found")


def _gpu_study():
    spec = importlib.util.spec_from_file_location("gpu_study", BENCHMARKS / "gpu_study.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_data
def test_tiny_mode_writes_a_record_that_talr_report_reproduces(tmp_path, monkeypatch):
    monkeypatch.setenv("TALR_CACHE_DIR", str(tmp_path / "cache"))  # the drift and FLOW caches of the tiny model
    gpu_study = _gpu_study()
    out = tmp_path / "out"
    assert gpu_study.main(["--out", str(out), "--tiny"]) == 0

    record = out / "record"
    results = json.loads((record / "results.json").read_text())
    trained = [f"{method}_lr{lr:g}_seed0" for method in gpu_study.METHODS
               for lr in (gpu_study.TINY_LORA_LEARNING_RATES if method == "lora" else gpu_study.TINY_LEARNING_RATES)]
    wise_ft = [f"sft_lr{lr:g}_seed0_wise_ft{a:g}" for lr in gpu_study.TINY_LEARNING_RATES
               for a in gpu_study.TINY_WISE_FT_ALPHAS]
    assert sorted(results) == sorted(["base", *trained, *wise_ft])
    from talr.evaluation.registry import expand_tasks

    panel = {task for task, _ in expand_tasks(["general_panel"])}
    for name, entry in results.items():
        tasks = entry["results"]["results"]
        assert set(tasks) == {"esci_ll", *panel}, name
        assert 0 <= tasks["esci_ll"]["acc,none"] <= 1 and "macro_f1,none" in tasks["esci_ll"], name
    with gzip.open(record / "samples.jsonl.gz", "rt") as handle:
        samples = [json.loads(line) for line in handle]
    assert {(s["point"], s["task"]) for s in samples} == {(p, t) for p in results for t in {"esci_ll", *panel}}

    study = json.loads((out / "study.json").read_text())
    assert study["versions"]["hardware"]["device"] == "cpu"
    assert len(study["grid_points"]) == len(trained) and study["wise_ft_points"] == len(wise_ft)

    from talr.report import write_report

    written = (record / "report.md").read_text()
    assert "esci_ll" in written and "general_text" in written
    write_report(record)  # `talr report` on the record folder alone
    assert (record / "report.md").read_text() == written
