import csv
import json
import math
import statistics

import numpy as np
import pytest
import torch

from talr import analysis
from talr.analysis import ExampleScores
from talr.data.formats import DataFormatError, tokenize_examples, write_jsonl
from talr.models import load_model
from talr.testing import make_tiny_model


def _examples(n=7):
    return [
        {"messages": [{"role": "system", "content": "Be brief." * (i % 3)},
                      {"role": "user", "content": f"What is {i} times {i + 3}?" + " Think." * i},
                      {"role": "assistant", "content": f"{i} x {i + 3} = {i * (i + 3)}." + " Done" * (i % 2)}]}
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_model(tiny_model_dir)


def _brute_force_scores(model, features):
    """Each example alone (no padding), full logits, float64 log-softmax, every supervised label."""
    out = []
    with torch.no_grad():
        for f in features:
            ids = torch.tensor([f["input_ids"]])
            logits = model(input_ids=ids).logits[0].double()
            logprobs = torch.log_softmax(logits, dim=-1)
            positions, values = [], []
            for t in range(1, len(f["labels"])):
                if f["labels"][t] != -100:
                    positions.append(t)
                    values.append(float(logprobs[t - 1, f["labels"][t]]))
            out.append((positions, values))
    return out


@pytest.mark.parametrize("batch_size", [1, 3])
@pytest.mark.parametrize("keep_logits", [True, False])
def test_scores_match_a_brute_force_forward_pass(tiny, batch_size, keep_logits, monkeypatch):
    model, tokenizer = tiny
    if not keep_logits:
        monkeypatch.setattr(analysis, "_accepts_logits_to_keep", lambda model: False)
    features, _ = tokenize_examples(_examples(), tokenizer, 96)
    scores = analysis.score_features(model, features, tokenizer.pad_token_id, batch_size=batch_size)
    reference = _brute_force_scores(model, features)
    assert [s.index for s in scores] == [f["index"] for f in features]
    for s, (positions, values) in zip(scores, reference):
        assert s.positions.tolist() == positions
        np.testing.assert_allclose(s.logp, values, rtol=1e-5, atol=1e-5)
        assert s.token_ids.tolist() == [s.input_ids[p] for p in positions]


def test_scoring_restores_training_mode(tiny):
    model, tokenizer = tiny
    model.train()
    analysis.score_examples(model, tokenizer, _examples(2), 64)
    assert model.training
    model.eval()
    analysis.score_examples(model, tokenizer, _examples(2), 64)
    assert not model.training


def _random_scores(seed=0, n=12, same_ids_as=None):
    rng = np.random.default_rng(seed)
    scores = []
    for i in range(n):
        if same_ids_as is not None:
            ref = same_ids_as[i]
            ids, positions = ref.input_ids, ref.positions
        else:
            length = int(rng.integers(8, 20))
            ids = rng.integers(3, 30, size=length).tolist()
            positions = np.sort(rng.choice(np.arange(1, length), size=int(rng.integers(1, length - 1)), replace=False))
        logp = np.log(rng.uniform(1e-4, 1.0, size=len(positions)))
        scores.append(ExampleScores(index=i, input_ids=ids, positions=positions, logp=logp))
    return scores


def test_hard_token_fractions_count_tokens_below_each_threshold():
    scores = _random_scores()
    flat = [lp for s in scores for lp in s.logp]
    fractions = analysis.hard_token_fractions(analysis.all_logp(scores), (0.1, 0.2, 0.5))
    for t, f in fractions.items():
        assert f == pytest.approx(sum(math.exp(lp) < t for lp in flat) / len(flat))


def test_example_statistics_match_loops():
    scores = _random_scores()
    for s, row in zip(scores, analysis.example_statistics(scores)):
        probs = [math.exp(lp) for lp in s.logp]
        bits = -sum(math.log2(p) for p in probs)
        assert row["tokens"] == len(probs)
        assert row["bits"] == pytest.approx(bits)
        assert row["bits_per_token"] == pytest.approx(bits / len(probs))
        assert row["mean_prob"] == pytest.approx(sum(probs) / len(probs))
        assert row["min_prob"] == pytest.approx(min(probs))
        assert row["hard_frac"] == pytest.approx(sum(p < 0.2 for p in probs) / len(probs))


def test_hardest_tokens_are_the_least_probable_with_their_context(tiny):
    _, tokenizer = tiny
    scores = _random_scores()
    rows = analysis.hardest_tokens(scores, tokenizer, count=5, left=3, right=2)
    flat = sorted((lp, e, k) for e, s in enumerate(scores) for k, lp in enumerate(s.logp))[:5]
    for row, (lp, e, k) in zip(rows, flat):
        ids, pos = scores[e].input_ids, int(scores[e].positions[k])
        assert row["prob"] == pytest.approx(math.exp(lp))
        assert (row["index"], row["position"]) == (e, pos)
        assert row["token"] == tokenizer.decode([ids[pos]])
        assert row["before"] == tokenizer.decode(ids[max(0, pos - 3):pos])
        assert row["after"] == tokenizer.decode(ids[pos + 1:pos + 3])


def test_hard_token_types_count_hard_occurrences(tiny):
    _, tokenizer = tiny
    scores = _random_scores()
    hard, seen = {}, {}
    for s in scores:
        for k, pos in enumerate(s.positions):
            tid = s.input_ids[pos]
            seen[tid] = seen.get(tid, 0) + 1
            if math.exp(s.logp[k]) < 0.2:
                hard[tid] = hard.get(tid, 0) + 1
    rows = analysis.hard_token_types(scores, tokenizer, count=100)
    assert {r["token_id"]: (r["hard"], r["occurrences"]) for r in rows} == {t: (n, seen[t]) for t, n in hard.items()}
    assert [r["hard"] for r in rows] == sorted((r["hard"] for r in rows), reverse=True)


def test_largest_changes_and_change_by_initial_probability():
    import types

    tokenizer = types.SimpleNamespace(decode=lambda ids, skip_special_tokens=False: " ".join(map(str, ids)))
    a = _random_scores(0)
    b = _random_scores(1, same_ids_as=a)
    changes = analysis.largest_changes(a, b, tokenizer, count=3)
    deltas = sorted(b[e].logp[k] - a[e].logp[k] for e in range(len(a)) for k in range(a[e].logp.size))
    assert [r["delta_logp"] for r in changes["fell"]] == pytest.approx(deltas[:3])
    assert [r["delta_logp"] for r in changes["rose"]] == pytest.approx(deltas[::-1][:3])
    la, lb = analysis.all_logp(a), analysis.all_logp(b)
    edges = (0.0, 0.1, 0.5, 1.0)
    rows = analysis.change_by_initial_probability(la, lb, edges)
    for row, low, high in zip(rows, edges[:-1], edges[1:]):
        inside = [(x, y) for x, y in zip(la, lb) if low <= math.exp(x) < high or (high == 1.0 and math.exp(x) == 1.0)]
        assert row["tokens"] == len(inside)
        assert row["mean_delta_logp"] == pytest.approx(sum(y - x for x, y in inside) / len(inside))
    assert sum(r["tokens"] for r in rows) == la.size
    c = _random_scores(2)  # different token ids: not comparable token by token
    with pytest.raises(ValueError, match="tokenise it differently"):
        analysis.largest_changes(a, c, tokenizer)


def _talr_reference(logps, w_min):
    """TALR on one micro-batch, from the paper's formula: softmax(-l / median(l)), floor w_min / N, renormalise,
    times N (mean 1)."""
    losses_ = [-x for lp in logps for x in lp]
    n = len(losses_)
    tau = statistics.median(losses_)
    raw = [math.exp(-l / tau) for l in losses_]
    w = [r / sum(raw) for r in raw]
    w = [max(x, w_min / n) for x in w]
    w = [x / sum(w) * n for x in w]
    out, k = [], 0
    for lp in logps:
        out.append(w[k:k + len(lp)])
        k += len(lp)
    return out


@pytest.mark.parametrize("per_device, accumulation, normalize_over, group_size", [
    (1, 1, "step", 1), (4, 1, "micro_batch", 4), (5, 3, "micro_batch", 5), (2, 2, "step", 4), (5, 1, "step", 5)])
def test_weights_as_trained_match_the_formula_per_normalisation_set(per_device, accumulation, normalize_over,
                                                                     group_size):
    from talr.config import config_from_dict
    from talr.methods.talr import TalrWeighting
    from talr.step_normalizer import weights_as_trained

    config = config_from_dict({"data": {"train": "x.jsonl"}, "talr": {"w_min": 0.2, "normalize_over": normalize_over},
                               "training": {"per_device_batch_size": per_device,
                                            "gradient_accumulation_steps": accumulation}})
    scores = _random_scores(n=11)
    weights = weights_as_trained(TalrWeighting(config), [s.logp for s in scores], config)
    for start in range(0, len(scores), group_size):
        group = scores[start:start + group_size]
        reference = _talr_reference([s.logp.tolist() for s in group], 0.2)
        for got, want in zip(weights[start:start + group_size], reference, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5)  # talr_weights works in float32


def test_compare_code_lengths_uses_paired_differences_in_bits():
    a = _random_scores(0, n=9)
    b = _random_scores(1, n=9, same_ids_as=a)
    b = [s for s in b if s.index != 4]  # model B dropped one example: it is left out of the pairing
    result = analysis.compare_code_lengths(a, b)
    pairs = [(x, y) for x in a for y in b if x.index == y.index]
    bits_a = [-sum(math.log2(math.exp(v)) for v in x.logp) for x, _ in pairs]
    bits_b = [-sum(math.log2(math.exp(v)) for v in y.logp) for _, y in pairs]
    diffs = [q - p for p, q in zip(bits_a, bits_b)]
    assert result["examples"] == 8
    assert result["bits_a"] == pytest.approx(statistics.fmean(bits_a))
    assert result["delta_bits"] == pytest.approx(statistics.fmean(diffs))
    assert result["delta_bits_se"] == pytest.approx(statistics.stdev(diffs) / math.sqrt(8))
    tokens_a = sum(x.logp.size for x, _ in pairs)
    assert result["bits_per_token_b"] == pytest.approx(sum(bits_b) / sum(y.logp.size for _, y in pairs))
    assert result["delta_bits_per_token"] == pytest.approx(sum(diffs) / tokens_a)


def test_load_chat_examples_reads_alpaca_json_and_jsonl(tmp_path):
    rows = [{"instruction": "Name a colour.", "input": "", "output": "Blue."},
            {"instruction": "Translate.", "input": "chat", "output": "cat"}]
    path = tmp_path / "alpaca.json"
    path.write_text(json.dumps(rows))
    examples = analysis.load_chat_examples(path)
    assert examples[0]["messages"] == [{"role": "user", "content": "Name a colour."},
                                       {"role": "assistant", "content": "Blue."}]
    assert examples[1]["messages"][0]["content"] == "Translate.\n\nchat"
    jsonl = write_jsonl(_examples(3), tmp_path / "chat.jsonl")
    assert analysis.load_chat_examples(jsonl) == _examples(3)
    path.write_text(json.dumps([{"instruction": "x"}]))
    with pytest.raises(DataFormatError, match=r"alpaca.json:1: .*'output'"):
        analysis.load_chat_examples(path)


def test_sample_examples_is_seeded_and_keeps_order():
    items = [{"i": i} for i in range(50)]
    first = analysis.sample_examples(items, 10, seed=3)
    assert first == analysis.sample_examples(items, 10, seed=3)
    assert [x["i"] for x in first] == sorted(x["i"] for x in first)
    assert analysis.sample_examples(items, None) == items


@pytest.mark.parametrize("log_scale", [False, True])
def test_histogram_is_written(tmp_path, log_scale):
    rng = np.random.default_rng(0)
    path = analysis.plot_probability_histogram(
        {"base": rng.beta(0.5, 0.3, 2000), "tuned": rng.beta(0.7, 0.2, 2000)}, tmp_path / "h.png", log_scale=log_scale)
    assert path.stat().st_size > 10_000


def test_analyze_and_codelength_commands_end_to_end(tmp_path, tiny_model_dir):
    other = make_tiny_model(tmp_path / "other", seed=1)
    data = write_jsonl(_examples(6), tmp_path / "domain.jsonl")
    general = write_jsonl(_examples(5)[::-1], tmp_path / "general.jsonl")
    summary = analysis.analyze(str(tiny_model_dir), str(data), compare=str(other), out=tmp_path / "out",
                               max_length=256, progress=False, top=4)
    for name in ("summary.json", "tokens.csv", "examples.csv", "histogram.png"):
        assert (tmp_path / "out" / name).is_file()
    with (tmp_path / "out" / "tokens.csv").open(newline="") as handle:
        tokens = list(csv.DictReader(handle))
    assert len(tokens) == summary["tokens"]
    assert list(tokens[0]) == ["example", "position", "token_id", "token", "prob", "logprob", "prob_b",
                               "delta_logprob"]
    assert len(summary["hardest_tokens"]) == 4
    assert summary["compare"]["code_length"]["examples"] == 6
    text = analysis.format_analysis(summary)
    assert "hard-token fraction" in text and "rose most" in text

    result = analysis.codelength(str(tiny_model_dir), str(other), str(data), str(general), max_length=256,
                                 progress=False)
    assert result["domain"]["examples"] == 6 and result["general"]["examples"] == 5
    g, d = result["general"], result["domain"]
    assert result["cost_per_gain"] == pytest.approx(g["delta_bits"] / -d["delta_bits"])
    assert "Delta L(P1) / -Delta L(P2)" in analysis.format_codelength(result)


def test_command_line_data_arguments_name_files_or_sources(tmp_path):
    jsonl = write_jsonl(_examples(2), tmp_path / "d.jsonl")
    assert analysis.dataset_spec(str(jsonl)) == {"path": str(jsonl)}
    assert analysis.dataset_spec("medcalc_bench:train:label") == {
        "source": "medcalc_bench", "split": "train", "format": "label"}
    assert analysis.dataset_spec("gsm8k") == {"source": "gsm8k", "split": "train", "format": None}
    examples, source = analysis.load_examples_arg(str(jsonl), limit=1)
    assert len(examples) == 1 and source == str(jsonl)
