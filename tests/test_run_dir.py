import json

import yaml

from talr.run_dir import MODEL_FOLDERS, RunDir


def _old_run(root):
    """A run directory as talr wrote them before RunDir existed (names spelled out here on purpose)."""
    (root / "model").mkdir(parents=True)
    (root / "finetuned").mkdir()
    (root / "eval").mkdir()
    (root / "config.yaml").write_text(yaml.safe_dump({"model": "smollm2-135m-instruct", "seed": 3}))
    (root / "run.json").write_text(json.dumps({"status": "finished", "global_steps": 8}))
    (root / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n')
    (root / "eval" / "results.json").write_text("{}")
    return root


def test_an_old_run_directory_reads_through_run_dir(tmp_path):
    run = RunDir(_old_run(tmp_path / "run"))
    assert run.is_run() and run.status() == "finished"
    assert run.read_config() == {"model": "smollm2-135m-instruct", "seed": 3}
    assert run.read_record()["global_steps"] == 8
    assert run.metrics_file.is_file() and run.results_file.is_file() and run.model_dir.is_dir()
    assert run.samples_file("ifeval") == tmp_path / "run" / "eval" / "samples_ifeval.jsonl"
    assert [name for name in MODEL_FOLDERS if run.folder(name).is_dir()] == ["model", "finetuned"]


def test_unfinished_and_foreign_folders(tmp_path):
    assert not RunDir(tmp_path / "missing").is_run()
    plain = tmp_path / "hf_model"
    plain.mkdir()
    assert not RunDir(plain).is_run() and RunDir(plain).read_config() == {} and RunDir(plain).status() is None
    cut_off = tmp_path / "cut_off"
    (cut_off / "model").mkdir(parents=True)  # killed after saving the model, before run.json
    assert RunDir(cut_off).is_run() and RunDir(cut_off).status() is None
    (cut_off / "run.json").write_text('{"status": "fini')  # a record cut off mid-write
    assert RunDir(cut_off).status() is None
