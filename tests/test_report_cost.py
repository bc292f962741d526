"""The report's cost section: CPU time per point from run.json facts and task timings, scaled where a run or an
evaluation was resumed, carried through a committed record."""

import json
import shutil

import pytest
import yaml

from talr import report
from talr.report_cost import CpuTime, cost_lines, evaluation_cpu_seconds, task_rates, training_cpu_seconds
from talr.report_data import Point, load_sweep
from talr.sweep_record import write_record

HARDWARE = {"device": "cpu", "device_name": "AMD EPYC", "cpu_capability": "AVX2", "cpu_cores": 2}


def test_training_cpu_time_prefers_cpu_time_and_scales_a_resumed_run():
    assert training_cpu_seconds({"cpu_time_s": 600.0, "train_runtime_s": 900.0, "global_steps": 36}) == CpuTime(600.0)
    # resumed at step 18 of 36: the recorded time covers 18 steps
    assert training_cpu_seconds({"cpu_time_s": 300.0, "global_steps": 36, "resumed_from_step": 18}) == CpuTime(
        600.0, scaled=True)
    # an older run.json: training wall time x threads, marked
    assert training_cpu_seconds({"train_runtime_s": 100.0, "torch_threads": 2, "global_steps": 10}) == CpuTime(
        200.0, from_wall=True)
    assert training_cpu_seconds({}) is None


def _point(name, timings, n_items):
    return Point(name, "sft", 1e-4, 0, None, timings=timings, n_items=n_items)


def test_evaluation_cpu_time_uses_each_tasks_own_rate_or_the_median():
    full = _point("a", {"arc": {"cpu_seconds": 50.0, "items_computed": 100}}, {"arc": 100})
    other = _point("b", {"arc": {"cpu_seconds": 70.0, "items_computed": 100}}, {"arc": 100})
    half = _point("c", {"arc": {"cpu_seconds": 30.0, "items_computed": 50}}, {"arc": 100})  # resumed half-way
    none = _point("d", {"arc": {"cpu_seconds": 0.1, "items_computed": 0}}, {"arc": 100})  # all done earlier
    rates = task_rates([full, other, half, none])
    assert rates == {"arc": pytest.approx(0.6)}  # median of 0.5, 0.7, 0.6
    assert evaluation_cpu_seconds(full, rates) == CpuTime(50.0)
    assert evaluation_cpu_seconds(half, rates) == CpuTime(pytest.approx(60.0), scaled=True)
    assert evaluation_cpu_seconds(none, rates) == CpuTime(pytest.approx(60.0), scaled=True)
    assert evaluation_cpu_seconds(_point("e", {}, {}), rates) is None


@pytest.fixture()
def costed_sweep(tmp_path):
    root = tmp_path / "sweep"
    (root / "sweep.yaml").parent.mkdir()
    (root / "sweep.yaml").write_text(yaml.safe_dump({"name": "s", "eval": {"domain": ["arc_easy"], "general": []},
                                                     "train": {"model": "tiny"}}))
    for name, cpu in (("base", None), ("sft_lr1e-04_seed0", 1200.0)):
        directory = root / name if name == "base" else root / "runs" / name
        (directory / "eval").mkdir(parents=True)
        (directory / "eval" / "results.json").write_text(json.dumps({
            "results": {"arc_easy": {"acc,none": 0.5, "acc_stderr,none": 0.05}},
            "n-samples": {"arc_easy": {"original": 2376, "effective": 500}},
            "task_timings": {"arc_easy": {"seconds": 220.0, "cpu_seconds": 210.0, "items_computed": 500}},
            "config": {"hardware": HARDWARE}}))
        if cpu is not None:
            (directory / "point.json").write_text(json.dumps(
                {"name": name, "method": "sft", "learning_rate": 1e-4, "seed": 0, "alpha": None}))
            (directory / "run.json").write_text(json.dumps(
                {"status": "finished", "cpu_time_s": cpu, "global_steps": 36, "torch_threads": 1,
                 "hardware": HARDWARE, "config": {"not": "kept"}}))
    return root


def test_cost_section_totals_training_and_evaluation_and_survives_the_record(costed_sweep, tmp_path):
    lines = cost_lines(load_sweep(costed_sweep))
    text = "\n".join(lines)
    assert "Measured on AMD EPYC (cpu, CPU capability AVX2, 2 cores), training with 1 torch thread(s)" in text
    assert "| base | — | 3.5 | 3.5 |" in text and "| sft_lr1e-04_seed0 | 20.0 | 3.5 | 23.5 |" in text
    assert "arc_easy 3.5 CPU-min (500 items, 0.42 s/item)" in text
    assert "Training, median over 1 trained points: 20.0 CPU-min. Total: 0.5 CPU-hours." in text  # 27 min
    record = tmp_path / "record"
    record.mkdir()
    shutil.copy(costed_sweep / "sweep.yaml", record)
    write_record(costed_sweep, record)
    kept = json.loads((record / "results.json").read_text())["sft_lr1e-04_seed0"]["run"]
    assert kept["cpu_time_s"] == 1200.0 and "config" not in kept and "status" not in kept
    assert cost_lines(load_sweep(record)) == lines
    assert "## Cost" in report.write_report(record).read_text()
