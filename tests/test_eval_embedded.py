"""Evaluation on the real embedded SmolLM2-135M-Instruct (slow)."""

import pytest
import torch

from talr.evaluation.generation import chat_prompt, generate, response_bits
from talr.models import load_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm():
    torch.set_num_threads(1)
    model, tok = load_model("smollm2-135m-instruct")
    return model.eval(), tok


def test_batched_generation_matches_single_prompts_on_the_real_model(smollm):
    model, tok = smollm
    questions = ["What is 2 + 3?", "Name a color.", "Write one word that rhymes with cat, and explain why it rhymes."]
    prompts = [chat_prompt(tok, [{"role": "user", "content": q}]) for q in questions]
    batched = generate(model, tok, prompts, max_new_tokens=16, batch_size=3)
    single = [generate(model, tok, [p], max_new_tokens=16, batch_size=1)[0] for p in prompts]
    assert batched == single
    assert "5" in batched[0]


def test_response_bits_of_a_natural_answer_is_plausible(smollm):
    model, tok = smollm
    examples = [{"messages": [{"role": "user", "content": "What is the capital of France?"}],
                 "response": "The capital of France is Paris."},
                {"messages": [{"role": "user", "content": "What is the capital of France?"}],
                 "response": "Zebra purple quantum the the of."}]
    (good, n_good), (bad, n_bad) = response_bits(model, tok, examples)
    assert 0 < good / n_good < 4 < bad / n_bad


def test_lm_eval_parity_on_a_few_items(smollm, tmp_path):
    """talr's per-choice log-likelihoods and predictions equal lm-evaluation-harness's (its own templates, local
    files) on 3 items each of ARC-Easy, PIQA and BoolQ; benchmarks/lm_eval_parity.py does the same at N=200."""
    import importlib.util
    import json
    from pathlib import Path

    from talr.evaluation.evaluator import evaluate, samples_path
    from talr.evaluation.registry import get_task
    from talr.models import embedded_model_folder
    from talr.paths import data_dir

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "lm_eval_parity.py"
    spec = importlib.util.spec_from_file_location("lm_eval_parity", script)
    parity = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(parity)
    model, tok = smollm
    tasks = ["arc_easy", "piqa", "boolq"]
    docs = {t: get_task(t).load(data_dir(), 3)[0] for t in tasks}
    evaluate(model, tok, tasks, out_dir=tmp_path, limit=3, model_name="smollm2-135m-instruct", progress=False)
    theirs = parity.run_lm_eval(embedded_model_folder(), docs, batch_size=4)
    for task in tasks:
        for line in samples_path(tmp_path, task).read_text().splitlines():
            ours = json.loads(line)
            other = theirs[task][str(ours["doc_id"])]
            assert ours["output"] == pytest.approx(other["lls"], abs=1e-3)
            assert ours["scores"]["acc,none"] == float(other["acc"])
