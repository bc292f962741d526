import json

import pytest

from talr import advisor, scoring, stats, token_stats
from talr.config import config_from_dict
from talr.io import write_jsonl
from talr.models import load_model


def _run(method, lr, gain, gain_se, ratio, ratio_se=0.01):
    return {"method": method, "learning_rate": lr, "domain_gain": gain, "domain_gain_se": gain_se,
            "cost_per_gain": ratio, "cost_per_gain_se": ratio_se}


def test_recommend_takes_the_fastest_efficient_run():
    runs = [_run("sft", 1e-6, 0.5, 0.4, 0.01),  # not significant: cheapest ratio must not count
            _run("sft", 5e-6, 3.0, 0.5, 0.20),  # the best significant ratio
            _run("sft", 2e-5, 12.0, 1.0, 0.24),  # within 25% (+2 se): efficient, and the largest gain
            _run("sft", 1e-4, 30.0, 2.0, 0.60),  # more general damage per unit of gain
            _run("talr", 2e-5, 9.0, 1.0, 0.22)]
    rec = advisor.recommend(runs, tolerance=0.25)
    assert rec["choice"] == {"method": "sft", "learning_rate": 2e-5}
    verdicts = {(v["method"], v["learning_rate"]): v["verdict"] for v in rec["verdicts"]}
    assert verdicts[("sft", 1e-6)] == "no significant domain gain"
    assert verdicts[("sft", 1e-4)].startswith("pays more")
    assert verdicts[("talr", 2e-5)] == "efficient"
    # TALR wins once it reaches the largest gain among the efficient runs
    runs.append(_run("talr", 1e-4, 25.0, 2.0, 0.22))
    assert advisor.recommend(runs, tolerance=0.25)["choice"] == {"method": "talr", "learning_rate": 1e-4}


def test_recommend_counts_general_improvement_as_free_and_needs_a_significant_gain():
    runs = [_run("sft", 1e-6, 2.0, 0.5, -0.05), _run("sft", 1e-5, 8.0, 0.5, 0.10)]
    assert advisor.recommend(runs)["choice"] == {"method": "sft", "learning_rate": 1e-6}
    none = advisor.recommend([_run("sft", 1e-6, 0.1, 0.2, 0.5)])
    assert none["choice"] is None and "no probe run" in none["reason"]


def test_summarize_probe_run_reads_the_final_record():
    records = [{"probe": "setup"},
               {"probe": "codelength", "step": 0, "domain_delta_bits": 0.0, "domain_delta_bits_se": 0.0},
               {"probe": "codelength", "step": 8, "domain_delta_bits": -4.0, "domain_delta_bits_se": 0.5,
                "domain_delta_bits_per_token": -0.1, "general_delta_bits": 1.0, "general_delta_bits_se": 0.2,
                "general_delta_bits_per_token": 0.01}]
    out = advisor.summarize_probe_run(records)
    assert out["steps"] == 8 and out["domain_gain"] == 4.0 and out["general_cost"] == 1.0
    assert out["cost_per_gain"] == pytest.approx(0.25)
    assert out["cost_per_gain_se"] == pytest.approx(stats.cost_per_gain(1.0, 0.2, -4.0, 0.5)[1])


def _examples(n, offset=0):
    return [{"messages": [{"role": "user", "content": f"Double {i}."},
                          {"role": "assistant", "content": f"{i} doubled is {2 * i}."}]}
            for i in range(offset, offset + n)]


def test_advise_end_to_end(tmp_path, tiny_model_dir):
    data = write_jsonl(_examples(60), tmp_path / "data.jsonl")
    general = write_jsonl(_examples(12, 700), tmp_path / "general.jsonl")
    config = config_from_dict({"model": str(tiny_model_dir), "data": {"train": "unused.jsonl", "max_length": 64},
                               "training": {"per_device_batch_size": 4, "autocast": "none"}})
    advice = advisor.advise(config, str(data), general=str(general), learning_rates=[1e-4, 3e-3], steps=4,
                            train_size=24, probe_size=8, methods=["sft"], workdir=tmp_path / "work")
    assert [(r["method"], r["learning_rate"]) for r in advice["runs"]] == [("sft", 1e-4), ("sft", 3e-3)]
    for r in advice["runs"]:
        assert r["steps"] == 4
        run_config = (tmp_path / "work" / f"{r['method']}_lr{r['learning_rate']:g}" / "config.yaml").read_text()
        assert "lr_scheduler: constant" in run_config
    by = {(r["method"], r["learning_rate"]): r for r in advice["runs"]}
    assert by[("sft", 3e-3)]["domain_gain"] > by[("sft", 1e-4)]["domain_gain"] > 0
    # the hard-token statistics are those of the training slice the probe runs trained on
    model, tokenizer = load_model(tiny_model_dir)
    train_slice = [json.loads(line) for line in (tmp_path / "work" / "train.jsonl").read_text().splitlines()]
    scores, _ = scoring.score_examples(model, tokenizer, train_slice, 64)
    assert advice["hard_tokens"]["hard_frac"] == {
        str(t): f for t, f in token_stats.hard_token_fractions(token_stats.all_logp(scores)).items()}
    text = advisor.format_advice(advice)
    print(text)
    assert "cost per gain" in text and ("recommendation" in text)
