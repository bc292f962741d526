"""The GPU check's tiny CPU mode: every part runs and the summary names every target, so the script cannot rot."""

import importlib.util
import json
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", BENCHMARKS / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_mode_runs_every_measuring_part_and_summarises_them(tmp_path):
    gpu_check = _gpu_check()
    out = tmp_path / "out"
    assert gpu_check.main(["--out", str(out), "--tiny", "--parts", "train_step,loss_head,generation"]) == 0
    results = json.loads((out / "results.json").read_text())
    for part in ("train_step", "loss_head", "generation"):
        assert part in results and "error" not in results[part], results.get(part)
    assert len(results["train_step"]) == len(gpu_check.STEP_SETTINGS)
    assert all(r["step_s"] > 0 for r in results["train_step"].values())
    assert {key.split(" | ")[2] for key in results["loss_head"]} == set(gpu_check.HEAD_PATHS)
    assert results["generation"]["float32"]["differ"] == 0  # batched == one at a time in float32
    summary = (out / "summary.md").read_text()
    for target in gpu_check.TARGETS.values():
        assert target in summary
    assert "TALR / SFT" in summary and "talr_fused / ce_chunked" in summary and "speed-up" in summary


def test_an_unknown_part_is_refused(tmp_path, capsys):
    import pytest

    with pytest.raises(SystemExit):
        _gpu_check().main(["--out", str(tmp_path), "--parts", "train_step,warp_drive"])
    assert "unknown warp_drive" in capsys.readouterr().err
