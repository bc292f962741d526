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
