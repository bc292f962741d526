import copy
import math

import pytest
import torch

from talr.evaluation.generation import (
    chat_prompt,
    encode_pair,
    generate,
    loglikelihood,
    response_bits,
    response_token_ids,
    truncate_at_stop,
)
from talr.models import load_model
from talr.testing import make_tiny_tokenizer

PROMPTS = [
    [{"role": "user", "content": "hi"}],
    [{"role": "user", "content": "what is the capital of the country that has the most lakes in the world?"}],
    [{"role": "system", "content": "be brief"}, {"role": "user", "content": "2 + 2 = ?"}],
    [{"role": "user", "content": "the the the"}],
    [{"role": "user", "content": "x"}],
]


@pytest.fixture(scope="module")
def tok_model(tiny_model_dir):
    model, tok = load_model(tiny_model_dir)
    return tok, model.eval()


@pytest.fixture(scope="module")
def tok_varied_model(tok_model):
    """The tiny model's init repeats one token whatever the prompt; larger random weights give varied rows."""
    tok, model = tok_model
    model = copy.deepcopy(model)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(std=0.5)
    return tok, model


def test_batched_generation_equals_one_prompt_at_a_time(tok_varied_model):
    tok, model = tok_varied_model
    texts = [chat_prompt(tok, m) for m in PROMPTS]
    batched = generate(model, tok, texts, max_new_tokens=12, batch_size=4)
    single = [generate(model, tok, [t], max_new_tokens=12, batch_size=1)[0] for t in texts]
    assert batched == single
    assert len(set(single)) == len(single)  # the rows really differ
    # And against plain transformers greedy decoding with no padding at all.
    for text, out in zip(texts, single):
        ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
        ref = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False)
        assert out == tok.decode(ref[0, ids.shape[1] :], skip_special_tokens=True)


def test_generation_reports_batches_in_callback_and_keeps_input_order(tok_model):
    tok, model = tok_model
    texts = [chat_prompt(tok, m) for m in PROMPTS]
    seen = {}
    outs = generate(model, tok, texts, max_new_tokens=4, batch_size=2, on_batch=lambda idx, o: seen.update(zip(idx, o)))
    assert seen == dict(enumerate(outs))


def test_stop_strings_truncate_and_end_the_batch_early(tok_model):
    tok, model = tok_model
    texts = [chat_prompt(tok, m) for m in PROMPTS]
    free = generate(model, tok, texts, max_new_tokens=30, batch_size=8)
    # Pick a stop string that occurs in every free-running output: each output is cut right before it.
    stops = [o[3:5] for o in free]
    calls = []
    hook = model.register_forward_hook(lambda *args: calls.append(1))
    try:
        out = generate(model, tok, texts, max_new_tokens=30, batch_size=8, stop=stops)
    finally:
        hook.remove()
    for f, o in zip(free, out):
        assert o == truncate_at_stop(f, stops)
        assert len(o) < len(f)
    assert len(calls) < 30  # one forward per new token: the batch ended before max_new_tokens


def test_finished_rows_leave_the_batch(tok_varied_model):
    tok, model = tok_varied_model
    texts = [chat_prompt(tok, m) for m in PROMPTS]
    free = generate(model, tok, texts, max_new_tokens=30, batch_size=8)
    stops = [free[0][3], free[2][10]]  # rows end at different steps

    def forward_batch_sizes(prompts):
        sizes = []
        hook = model.register_forward_hook(lambda module, args, kwargs, out: sizes.append(kwargs["input_ids"].shape[0]),
                                           with_kwargs=True)
        try:
            outputs = generate(model, tok, prompts, max_new_tokens=30, batch_size=8, stop=stops)
        finally:
            hook.remove()
        return outputs, sizes

    batched, sizes = forward_batch_sizes(texts)
    singles = [forward_batch_sizes([t]) for t in texts]
    assert batched == [out[0] for out, _ in singles]
    # forward j of the batch runs exactly the rows that, alone, needed more than j forwards
    lengths = [len(s) for _, s in singles]
    assert sizes == [sum(n > j for n in lengths) for j in range(max(lengths))]
    assert len(set(lengths)) > 1 and sizes[-1] < sizes[0]


def test_truncate_at_stop_uses_earliest_match():
    assert truncate_at_stop("abc\nQuestion: x ```", ["```", "Question:"]) == "abc\n"
    assert truncate_at_stop("nothing here", ["```"]) == "nothing here"
    assert truncate_at_stop("", ["a", ""]) == ""


@torch.no_grad()
def _brute_force_logprob(model, ids, n):
    logits = model(torch.tensor([ids])).logits[0].double()
    logprobs = torch.log_softmax(logits, -1)
    return sum(float(logprobs[t - 1, ids[t]]) for t in range(len(ids) - n, len(ids)))


def test_loglikelihood_matches_unpadded_brute_force(tok_model):
    tok, model = tok_model
    requests = [("Question: the sky is\nAnswer:", " blue"), ("a", " b c d e f"), ("the", "the"), ("", "hello")]
    got = loglikelihood(model, tok, requests, batch_size=3)
    for (context, continuation), value in zip(requests, got):
        ids, n = encode_pair(tok, context, continuation)
        assert value == pytest.approx(_brute_force_logprob(model, ids, n), abs=1e-4)


def test_encode_pair_moves_trailing_space_to_continuation():
    tok = make_tiny_tokenizer()
    ids, n = encode_pair(tok, "Answer: ", "yes")
    assert tok.decode(ids[-n:]) == " yes"
    assert tok.decode(ids) == "Answer: yes"


def test_response_bits_scores_only_the_response_through_end_of_turn(tok_model):
    tok, model = tok_model
    examples = [
        {"messages": PROMPTS[0], "response": "hello there"},
        {"messages": PROMPTS[2], "response": "4"},
    ]
    got = response_bits(model, tok, examples, batch_size=2)
    for ex, (bits, n) in zip(examples, got):
        ids, n_ref = response_token_ids(tok, ex["messages"], ex["response"])
        assert n == n_ref == len(tok(ex["response"], add_special_tokens=False)["input_ids"]) + 1  # + <|im_end|>
        assert ids[-1] == tok.eos_token_id
        assert bits == pytest.approx(-_brute_force_logprob(model, ids, n) / math.log(2), abs=1e-4)


def test_chat_prompt_requires_a_chat_template():
    tok = make_tiny_tokenizer()
    tok.chat_template = None
    with pytest.raises(ValueError, match="chat_template"):
        chat_prompt(tok, PROMPTS[0])


def test_a_response_longer_than_the_context_window_is_reported_not_fatal(tok_model):
    tok, model = tok_model
    too_long_text = "x" * (model.config.max_position_embeddings + 10)  # one byte-level token per character
    examples = [{"messages": PROMPTS[0], "response": too_long_text}, {"messages": PROMPTS[0], "response": "ok"}]
    (too_long, n_long), (fits, _) = response_bits(model, tok, examples, batch_size=2)
    assert too_long is None and n_long > model.config.max_position_embeddings
    assert fits is not None and fits > 0
