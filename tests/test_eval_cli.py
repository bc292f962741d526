import argparse
import json

import pytest
import torch

from talr.evaluation import cli
from talr.paths import data_dir


def _run(argv):
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(argv))


def test_list_prints_every_task(capsys):
    assert _run(["--list"]) == 0
    out = capsys.readouterr().out
    for name in ("ifeval", "gsm8k", "humaneval", "mmlu", "codelength_alpaca", "medcalc", "esci"):
        assert name in out


def test_unknown_task_is_an_error_listing_known_tasks(capsys, tiny_model_dir):
    assert _run(["--model", str(tiny_model_dir), "--tasks", "gsm8k,bogus"]) == 2
    assert "known tasks:" in capsys.readouterr().err


def test_missing_arguments(capsys):
    assert _run(["--tasks", "gsm8k"]) == 2


@pytest.mark.skipif(not (data_dir() / "gsm8k").is_dir(), reason="shared benchmark data not present")
def test_eval_writes_results_and_samples(tmp_path, tiny_model_dir, capsys):
    out = tmp_path / "out"
    assert _run(["--model", str(tiny_model_dir), "--tasks", "gsm8k,boolq", "--limit", "2", "--out", str(out),
                 "--batch-size", "2"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["results"]) == {"gsm8k", "boolq"}
    assert results["n-samples"]["gsm8k"] == {"original": 1319, "effective": 2}
    assert len((out / "samples_gsm8k.jsonl").read_text().splitlines()) == 2
    assert "exact_match" in capsys.readouterr().out


def test_default_out_dir_for_a_run_directory(tmp_path):
    (tmp_path / "model").mkdir()
    assert cli.default_out_dir(str(tmp_path)) == tmp_path / "eval"
    assert str(cli.default_out_dir("HuggingFaceTB/SmolLM2-135M")) == "eval_results/HuggingFaceTB_SmolLM2-135M"


@pytest.mark.skipif(not (data_dir() / "boolq").is_dir(), reason="shared benchmark data not present")
def test_dtype_is_recorded_and_a_resume_in_another_dtype_is_refused(tmp_path, tiny_model_dir, capsys):
    out = tmp_path / "out"
    args = ["--model", str(tiny_model_dir), "--tasks", "boolq", "--limit", "2", "--out", str(out)]
    assert _run([*args, "--dtype", "bfloat16"]) == 0
    config = json.loads((out / "results.json").read_text())["config"]
    assert config["dtype"] == "torch.bfloat16"
    assert config["precision"] == {"requested": "bfloat16", "resolved": "bfloat16"}
    assert config["hardware"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    capsys.readouterr()
    assert _run([*args, "--dtype", "float32"]) == 2
    assert "computed in torch.bfloat16, not torch.float32" in capsys.readouterr().err
