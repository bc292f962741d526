import copy
import json

import pytest
import torch

from talr.evaluation import registry
from talr.evaluation.evaluator import evaluate, format_table, samples_path
from talr.evaluation.results import SampleLog
from talr.evaluation.task import Choices, Generate, Scored, Task
from talr.models import load_model


class ToyGenerate(Task):
    """Counts output characters; doc 3's scorer crashes."""

    name = "toy_generate"
    version = "1"
    kind = "generate"
    max_new_tokens = 5
    metrics = {"long,none": True}

    def load_all(self, data_dir):
        return [{"id": i, "text": "word " * (i + 1)} for i in range(6)]

    def request(self, doc):
        return Generate(messages=[{"role": "user", "content": doc["text"]}])

    def score(self, doc, output):
        if doc["id"] == 3:
            raise RuntimeError("scorer bug")
        return Scored(extracted=len(output), target=1, scores={"long,none": float(len(output) >= 1)})


class ToyChoices(Task):
    name = "toy_choices"
    kind = "loglikelihood"
    metrics = {"acc,none": True}

    def load_all(self, data_dir):
        return [{"id": f"q{i}", "gold": i % 2} for i in range(5)]

    def request(self, doc):
        return Choices(pairs=[("Question: pick\nAnswer:", " yes"), ("Question: pick\nAnswer:", " no")])

    def score(self, doc, lls):
        pred = max(range(len(lls)), key=lambda i: lls[i])
        return Scored(extracted=pred, target=doc["gold"], scores={"acc,none": float(pred == doc["gold"])})


@pytest.fixture
def toy_registry(monkeypatch):
    monkeypatch.setitem(registry.TASKS, "toy_generate", "test_eval_evaluator:ToyGenerate")
    monkeypatch.setitem(registry.TASKS, "toy_choices", "test_eval_evaluator:ToyChoices")


@pytest.fixture(scope="module")
def tok_model(tiny_model_dir):
    model, tok = load_model(tiny_model_dir)
    return tok, model.eval()


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_results_and_samples_are_lm_eval_shaped(tmp_path, toy_registry, tok_model):
    tok, model = tok_model
    out = evaluate(model, tok, ["toy_generate", "toy_choices"], out_dir=tmp_path, batch_size=4, progress=False)
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(out))
    res = on_disk["results"]["toy_generate"]
    samples = _lines(samples_path(tmp_path, "toy_generate"))
    assert len(samples) == 6
    values = [s["scores"]["long,none"] for s in samples]
    assert res["long,none"] == pytest.approx(sum(values) / 6)
    assert res["long,none"] <= 5 / 6  # the crashed item counts as wrong
    crashed = [s for s in samples if s["doc_id"] == 3][0]
    assert "scorer bug" in crashed["error"] and crashed["scores"] == {"long,none": 0.0}
    assert {"prompt", "output", "extracted", "target", "scores"} <= set(samples[0])
    assert samples[0]["prompt"].startswith("<|im_start|>user\n")
    assert on_disk["n-samples"]["toy_generate"] == {"original": 6, "effective": 6}
    assert on_disk["task_timings"]["toy_generate"]["errors"] == 1
    assert on_disk["versions"] == {"toy_generate": "1", "toy_choices": "1"}
    assert "acc_stderr,none" in on_disk["results"]["toy_choices"]
    assert "toy_choices" in format_table(on_disk)


def test_resume_skips_saved_items_and_survives_a_truncated_last_line(tmp_path, toy_registry, tok_model):
    tok, model = tok_model
    full = evaluate(model, tok, ["toy_generate"], out_dir=tmp_path / "a", progress=False)
    # Simulate a crash: keep two complete records and half of the third.
    path = samples_path(tmp_path / "b", "toy_generate")
    path.parent.mkdir()
    lines = samples_path(tmp_path / "a", "toy_generate").read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:2]) + lines[2][: len(lines[2]) // 2])
    resumed = evaluate(model, tok, ["toy_generate"], out_dir=tmp_path / "b", progress=False)
    records = _lines(path)
    assert sorted(r["doc_id"] for r in records) == list(range(6))
    assert resumed["results"] == full["results"]
    assert resumed["task_timings"]["toy_generate"]["items_computed"] == 4
    again = evaluate(model, tok, ["toy_generate"], out_dir=tmp_path / "b", progress=False)
    assert again["task_timings"]["toy_generate"]["items_computed"] == 0


def test_results_accumulate_across_runs_and_refuse_another_model(tmp_path, toy_registry, tok_model):
    tok, model = tok_model
    evaluate(model, tok, ["toy_choices"], out_dir=tmp_path, progress=False, model_name="m")
    out = evaluate(model, tok, ["toy_generate"], out_dir=tmp_path, progress=False, model_name="m", limit=2)
    assert set(out["results"]) == {"toy_choices", "toy_generate"}
    assert out["n-samples"]["toy_generate"] == {"original": 6, "effective": 2}
    with pytest.raises(ValueError, match="another --out folder"):
        evaluate(model, tok, ["toy_choices"], out_dir=tmp_path, progress=False, model_name="other")


def test_resume_refuses_another_dtype(tmp_path, toy_registry, tok_model):
    # greedy outputs of bf16 and fp32 weights can differ, so samples of the two must not mix in one results file
    tok, model = tok_model
    evaluate(model, tok, ["toy_choices"], out_dir=tmp_path, progress=False, model_name="m")
    with pytest.raises(ValueError, match="computed in torch.float32, not torch.bfloat16"):
        evaluate(copy.deepcopy(model).to(torch.bfloat16), tok, ["toy_generate"], out_dir=tmp_path, progress=False,
                 model_name="m")
    assert "toy_generate" not in json.loads((tmp_path / "results.json").read_text())["results"]


def test_unknown_task_lists_known_ones(tmp_path, tok_model):
    tok, model = tok_model
    with pytest.raises(ValueError, match="known tasks: .*gsm8k.*ifeval"):
        evaluate(model, tok, ["ifeval", "nope"], out_dir=tmp_path, progress=False)
    assert not (tmp_path / "results.json").exists()


def test_missing_data_file_is_named(tmp_path, tok_model):
    tok, model = tok_model
    with pytest.raises(FileNotFoundError, match="ifeval/input_data.jsonl"):
        evaluate(model, tok, ["ifeval"], out_dir=tmp_path / "out", data_dir=tmp_path, progress=False)


def test_sample_log_rejects_corruption_in_the_middle(tmp_path):
    path = tmp_path / "samples_x.jsonl"
    path.write_text('{"doc_id": 1}\nnot json\n{"doc_id": 2}\n')
    with pytest.raises(ValueError, match=r"samples_x.jsonl:2"):
        SampleLog(path)


def test_sample_log_drops_an_unterminated_or_broken_last_line(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"doc_id": 1}\n{"doc_id": 2, "x": [1,')
    log = SampleLog(path)
    assert list(log.records) == ["1"]
    log.append([{"doc_id": 3}])
    assert path.read_text() == '{"doc_id": 1}\n{"doc_id": 3}\n'
    path.write_text('{"doc_id": 1}\n{"doc_id": 2, "x"\n')
    assert list(SampleLog(path).records) == ["1"]


