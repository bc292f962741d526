import copy
import json
import math

import pytest
import torch

from talr.evaluation import drift, registry
from talr.evaluation.evaluator import evaluate, samples_path
from talr.evaluation.generation import loglikelihood, response_loglikelihood, response_token_ids
from talr.evaluation.task import ChatChoices, Scored, Task
from talr.evaluation.tasks.general_text import GeneralTextDrift
from talr.models import load_model
from talr.paths import data_dir

TEXTS = [
    {"messages": [{"role": "user", "content": "Name a colour."}], "response": "Blue."},
    {"messages": [{"role": "user", "content": "Say hi in French"}], "response": "Bonjour ! Ça va ?"},
    {"messages": [{"role": "user", "content": "x"}], "response": "a b c d e f g h i j k l m n o p"},
]


def _varied(model, seed):
    """Random weights large enough for peaked, prompt-dependent distributions (the tiny init is nearly uniform)."""
    model = copy.deepcopy(model)
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(std=0.5)
    return model.eval()


@pytest.fixture(scope="module")
def models(tiny_model_dir, tmp_path_factory):
    model, tok = load_model(tiny_model_dir)
    base, tuned = _varied(model, 0), _varied(model, 1)
    folders = {}
    for name, m in (("base", base), ("tuned", tuned)):
        folders[name] = tmp_path_factory.mktemp(name)
        m.save_pretrained(folders[name])
        tok.save_pretrained(folders[name])
    return tok, base, tuned, folders


@torch.no_grad()
def _brute_force(tok, base, model, example):
    """float64, one unpadded sequence: (bits of the response tokens, sum over them of the exact full-vocab KL)."""
    ids, n = response_token_ids(tok, example["messages"], example["response"])
    x = torch.tensor([ids])
    q = torch.log_softmax(copy.deepcopy(model).double()(x).logits[0], -1)[len(ids) - n - 1 : -1]
    p = torch.log_softmax(copy.deepcopy(base).double()(x).logits[0], -1)[len(ids) - n - 1 : -1]
    bits = -sum(float(q[i, ids[len(ids) - n + i]]) for i in range(n)) / math.log(2)
    kl = float((p.exp() * (p - q)).sum())
    return bits, kl, n


def test_bits_and_full_vocabulary_kl_equal_a_float64_brute_force(models):
    tok, base, tuned, _ = models
    vocab = tuned.config.vocab_size
    side = drift.base_side(base, tok, TEXTS, top_k=vocab, batch_size=2)
    got = drift.text_drift(tuned, tok, TEXTS, side, batch_size=2)
    for example, result in zip(TEXTS, got):
        bits, kl, n = _brute_force(tok, base, tuned, example)
        assert result["n_tokens"] == n and result["bytes"] == len(example["response"].encode("utf-8"))
        assert result["bits"] == pytest.approx(bits, rel=1e-5)
        assert kl > 0.1 and result["kl_nats"] == pytest.approx(kl, rel=1e-4)


def test_top_k_kl_is_a_lower_bound_and_a_model_has_no_drift_from_itself(models):
    tok, base, tuned, _ = models
    exact = drift.text_drift(tuned, tok, TEXTS, drift.base_side(base, tok, TEXTS, top_k=10_000), batch_size=3)
    coarse = drift.text_drift(tuned, tok, TEXTS, drift.base_side(base, tok, TEXTS, top_k=8), batch_size=3)
    for e, c in zip(exact, coarse):
        assert 0 < c["kl_nats"] <= e["kl_nats"] + 1e-9
    for k in (8, 10_000):
        same = drift.text_drift(base, tok, TEXTS, drift.base_side(base, tok, TEXTS, top_k=k), batch_size=3)
        assert all(abs(r["kl_nats"]) < 1e-5 for r in same)


class ToyDrift(GeneralTextDrift):
    name = "toy_drift"

    def load_all(self, data_dir):
        return [{"id": i, **t} for i, t in enumerate(TEXTS)]


def test_evaluate_drift_against_a_cached_base(models, tmp_path, monkeypatch):
    tok, _, tuned, folders = models
    monkeypatch.setenv("TALR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setitem(registry.TASKS, "toy_drift", "test_eval_panel:ToyDrift")
    results = evaluate(tuned, tok, ["toy_drift"], out_dir=tmp_path / "a", model_name=str(folders["tuned"]),
                       base_model=str(folders["base"]), progress=False)
    entry = results["results"]["toy_drift"]
    assert results["configs"]["toy_drift"]["base_model"] == str(folders["base"])
    assert len(list((tmp_path / "cache" / "drift").glob("*.pt"))) == 1
    bits = [json.loads(line)["scores"] for line in samples_path(tmp_path / "a", "toy_drift").read_text().splitlines()]
    assert entry["bits_per_byte,none"] == pytest.approx(sum(s["bits"] for s in bits) / sum(s["bytes"] for s in bits))
    assert entry["kl_base,none"] > 0.1
    again = evaluate(tuned, tok, ["toy_drift"], out_dir=tmp_path / "b", model_name=str(folders["tuned"]),
                     base_model=str(folders["base"]), progress=False)  # the base side comes from the cache
    assert again["results"]["toy_drift"]["kl_base,none"] == pytest.approx(entry["kl_base,none"], rel=1e-6)
    itself = evaluate(tuned, tok, ["toy_drift"], out_dir=tmp_path / "c", model_name=str(folders["tuned"]),
                      progress=False)
    assert itself["configs"]["toy_drift"]["base_model"] == "self"
    assert itself["results"]["toy_drift"]["kl_base,none"] == 0.0  # its own base: no base pass, KL 0 by definition
    assert itself["results"]["toy_drift"]["bits_per_byte,none"] == pytest.approx(
        again["results"]["toy_drift"]["bits_per_byte,none"], rel=1e-6)
    assert len(list((tmp_path / "cache" / "drift").glob("*.pt"))) == 1  # nothing cached for a model on its own


def test_loglikelihood_shares_one_forward_between_answers_to_one_context(models):
    tok, base, _, _ = models
    context = "Question: is it?\nAnswer:"
    calls = []
    hook = base.register_forward_hook(lambda module, args, kwargs_out: calls.append(1))
    try:
        shared = loglikelihood(base, tok, [(context, " y"), (context, " n")], batch_size=4)
    finally:
        hook.remove()
    assert len(calls) == 1
    alone = [loglikelihood(base, tok, [(context, answer)])[0] for answer in (" y", " n")]
    assert shared == pytest.approx(alone, abs=1e-5)


class ToyLabels(Task):
    """Two labels as whole assistant answers; gold alternates."""

    name = "toy_labels"
    kind = "loglikelihood"
    metrics = {"acc,none": True}

    def load_all(self, data_dir):
        return [{"id": i, "gold": i % 2} for i in range(4)]

    def request(self, doc):
        return ChatChoices(messages=[{"role": "user", "content": f"item {doc['id']}"}], responses=["Yes", "No!"])

    def score(self, doc, lls):
        pred = max(range(2), key=lambda i: lls[i])
        return Scored(extracted=pred, target=doc["gold"], scores={"acc,none": float(pred == doc["gold"])})


def test_chat_choices_score_whole_assistant_turns(models, tmp_path, monkeypatch):
    tok, base, _, _ = models
    monkeypatch.setitem(registry.TASKS, "toy_labels", "test_eval_panel:ToyLabels")
    evaluate(base, tok, ["toy_labels"], out_dir=tmp_path, progress=False)
    for line in samples_path(tmp_path, "toy_labels").read_text().splitlines():
        record = json.loads(line)
        messages = [{"role": "user", "content": f"item {record['doc_id']}"}]
        expected = [_brute_force(tok, base, base, {"messages": messages, "response": r})[0] * -math.log(2)
                    for r in ("Yes", "No!")]
        assert record["output"] == pytest.approx(expected, rel=1e-5)
        assert record["output"] == pytest.approx(
            response_loglikelihood(base, tok, [{"messages": messages, "response": r} for r in ("Yes", "No!")]))


@pytest.mark.skipif(not (data_dir() / "esci").is_dir(), reason="shared benchmark data not present")
def test_esci_ll_scores_the_four_label_words_on_every_test_row(models, tmp_path):
    tok, base, _, _ = models
    task = registry.get_task("esci_ll")
    docs, total = task.load(data_dir(), None)
    assert len(docs) == total == len(registry.get_task("esci").load(data_dir(), None)[0])
    request = task.request(docs[0])
    assert request.responses == ["Exact", "Substitute", "Complement", "Irrelevant"]
    results = evaluate(base, tok, ["esci_ll"], out_dir=tmp_path, limit=6, progress=False)
    entry = results["results"]["esci_ll"]
    records = [json.loads(line) for line in samples_path(tmp_path, "esci_ll").read_text().splitlines()]
    for record in records:
        assert record["extracted"] == "ESCI"[max(range(4), key=lambda i: record["output"][i])]
    assert entry["acc,none"] == pytest.approx(sum(r["extracted"] == r["target"] for r in records) / 6)
    assert sum(entry["pred_distribution"].values()) == 6 and entry["chance,none"] == 0.25
    assert {"majority,none", "majority_label", "macro_f1,none", "macro_f1_stderr,none"} <= set(entry)


def test_general_panel_is_registered_with_its_sizes():
    panel = dict(registry.expand_tasks(["general_panel"]))
    assert panel == {"arc_easy": 500, "piqa": 400, "general_text": None}
    # out of the panel (the 135M model is at chance on them), still tasks of their own
    assert not {"arc_challenge", "boolq", "winogrande", "mmlu"} & set(panel)
    assert {"arc_challenge", "boolq", "winogrande", "mmlu"} <= set(registry.TASKS)
    assert all(name in registry.TASKS for name in panel)
    assert registry.expand_tasks(["piqa", "general_panel"])[0] == ("piqa", None)  # first mention wins
    with pytest.raises(ValueError, match="panels: general_panel"):
        registry.expand_tasks(["no_such_panel"])


def test_a_task_can_name_its_own_size():
    assert registry.expand_tasks(["codelength_math:300", "general_panel"]) == [
        ("codelength_math", 300), ("arc_easy", 500), ("piqa", 400), ("general_text", None)]
    assert registry.expand_tasks(["codelength_math:300", "piqa"], limit=200) == [
        ("codelength_math", 200), ("piqa", 200)]
    for bad in ("piqa:0", "piqa:x", "piqa:"):
        with pytest.raises(ValueError, match="positive whole number"):
            registry.expand_tasks([bad])
    with pytest.raises(ValueError, match="unknown task 'general_panel'"):  # a panel has its own sizes
        registry.expand_tasks(["general_panel:10"])


def test_a_panel_runs_each_task_at_its_size_capped_by_limit(models, tmp_path, monkeypatch):
    tok, base, _, _ = models
    monkeypatch.setitem(registry.TASKS, "toy_labels", "test_eval_panel:ToyLabels")
    monkeypatch.setitem(registry.PANELS, "toy_panel", (("toy_labels", 3),))
    results = evaluate(base, tok, ["toy_panel"], out_dir=tmp_path / "a", progress=False)
    assert results["n-samples"]["toy_labels"] == {"original": 4, "effective": 3}
    results = evaluate(base, tok, ["toy_panel"], out_dir=tmp_path / "b", limit=2, progress=False)
    assert results["n-samples"]["toy_labels"]["effective"] == 2


def test_sweep_accepts_a_panel_and_knows_when_it_is_evaluated(tmp_path):
    from talr.io import atomic_write_json
    from talr.sweep import _eval_finished

    atomic_write_json(tmp_path / "results.json", {"results": {t: {} for t, _ in registry.PANELS["general_panel"]}})
    assert _eval_finished(tmp_path, ["general_panel"])
    assert not _eval_finished(tmp_path, ["general_panel", "esci"])


def test_generation_benchmarks_keep_their_official_budgets_unless_capped(tmp_path):
    assert registry.get_task("ifeval").config()["generation_kwargs"]["max_new_tokens"] == 1280
    assert registry.get_task("humaneval").config()["generation_kwargs"]["max_new_tokens"] == 1024


def test_prompts_sharing_their_instructions_score_as_if_each_ran_alone(models):
    """ESCI-style prompts: one long shared instruction, then an item of its own of varied length; the shared tokens
    run once and every batch continues from their cache (left padding sits between them and the item)."""
    tok, base, _, _ = models
    from talr.evaluation.generation import _common_prefix_length, response_bits

    instructions = "Judge the pair with one of four labels. Exact, Substitute, Complement or Irrelevant.\n"
    items = ["q", "a much longer query about shoes and socks", "mid length one", "lamp", "x y z w v u t s"]
    examples = [{"messages": [{"role": "user", "content": instructions + item}], "response": label}
                for item in items for label in ("Exact", "Irrelevant", "")]
    shared = response_loglikelihood(_varied(base, 3), tok, examples, batch_size=2)
    alone = [-bits * math.log(2) for bits, _ in response_bits(_varied(base, 3), tok, examples, batch_size=1)]
    assert shared == pytest.approx(alone, abs=1e-4)
    assert _common_prefix_length([[1, 2, 3, 4], [1, 2, 5], [1, 2, 3]]) == 2
    assert _common_prefix_length([[7, 8], [7, 8]]) == 1  # each row keeps a token of its own
    assert _common_prefix_length([[1], [2, 3]]) == 0


def test_shared_prompt_scoring_equals_scoring_each_answer_alone(models):
    tok, base, _, _ = models
    from talr.evaluation.generation import response_bits

    examples = [{"messages": t["messages"], "response": r} for t in TEXTS for r in ("Yes", "", "No, not at all.")]
    examples.append({"messages": [{"role": "user", "content": "one answer only, longer prompt here"}],
                     "response": "ok"})
    shared = response_loglikelihood(base, tok, examples, batch_size=2)
    alone = [-bits * math.log(2) for bits, _ in response_bits(base, tok, examples, batch_size=1)]
    assert shared == pytest.approx(alone, abs=1e-4)
