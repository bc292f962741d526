"""The fused head against the straightforward path (full logits, then talr.losses)."""

import pytest
import torch

from talr import losses
from talr.config import TalrConfig
from talr.loss_head import DEFAULT_CACHE_BYTES, CausalLMHead, fused_token_logprobs, fused_weighted_nll
from talr.models import load_model

WEIGHTINGS = {
    "sft": losses.sft_loss,
    "talr": losses.talr_loss,
    "talr_sequence_tau1": lambda logp, mask: losses.talr_loss(logp, mask, TalrConfig(tau=1.0, tau_scope="sequence")),
    "dft": losses.dft_loss,
}


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def _inputs(dtype=torch.float32, batch=3, seq=23, hidden=16, vocab=97, bias=False, seed=0):
    gen = torch.Generator().manual_seed(seed)
    h = torch.randn(batch, seq, hidden, generator=gen, dtype=dtype).requires_grad_()
    w = (torch.randn(vocab, hidden, generator=gen, dtype=dtype) / 2).requires_grad_()
    b = torch.randn(vocab, generator=gen, dtype=dtype).requires_grad_() if bias else None
    labels = torch.randint(0, vocab, (batch, seq), generator=gen)
    labels[0, :6] = -100  # a prompt
    labels[2, 15:] = -100  # padding
    return h, w, b, labels


def _grads(loss_fn, params):
    for p in params:
        p.grad = None
    loss = loss_fn()
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in params]


def _reference(h, w, b, labels, weighting):
    logits = torch.nn.functional.linear(h, w, b)
    return WEIGHTINGS[weighting](*losses.token_logprobs(logits, labels))


@pytest.mark.parametrize("weighting", list(WEIGHTINGS))
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("cache_bytes", [0, DEFAULT_CACHE_BYTES], ids=["recompute", "kept_softmax"])
def test_two_phase_head_matches_full_logits_float32(weighting, bias, cache_bytes):
    h, w, b, labels = _inputs(bias=bias)
    params = [p for p in (h, w, b) if p is not None]
    ref_loss, ref_grads = _grads(lambda: _reference(h, w, b, labels, weighting), params)
    # chunk of 7 does not divide the 47 supervised tokens: the last chunk is short
    loss, grads = _grads(lambda: WEIGHTINGS[weighting](*fused_token_logprobs(
        h, w, labels, b, chunk_size=7, cache_bytes=cache_bytes)), params)
    assert rel_err(loss, ref_loss) <= 1e-6
    for g, r in zip(grads, ref_grads):
        assert rel_err(g, r) <= 1e-5


def test_kept_softmax_is_used_only_within_the_budget_and_a_second_backward_recomputes(monkeypatch):
    from talr import loss_head

    h, w, _, labels = _inputs()
    n_tokens = int((labels[:, 1:] != -100).sum())
    budget = n_tokens * w.shape[0] * 4
    _, ref_grads = _grads(lambda: _reference(h, w, None, labels, "talr"), [h, w])
    logits_calls = []
    original = loss_head._Head.logits
    monkeypatch.setattr(loss_head._Head, "logits", lambda self, x: logits_calls.append(1) or original(self, x))
    chunks = -(-n_tokens // 7)
    for cache_bytes in (budget, budget - 1):  # kept at exactly the budget, recomputed one byte below
        loss = losses.talr_loss(*fused_token_logprobs(h, w, labels, chunk_size=7, cache_bytes=cache_bytes))
        for p in (h, w):
            p.grad = None
        logits_calls.clear()
        loss.backward(retain_graph=True)
        assert len(logits_calls) == (0 if cache_bytes == budget else chunks)
        first = [h.grad.clone(), w.grad.clone()]
        loss.backward()  # a kept softmax was consumed: this one recomputes, and must add the same gradient
        for g1, g2, r in zip(first, (h.grad, w.grad), ref_grads):
            assert rel_err(g1, r) <= 1e-5 and rel_err(g2, 2 * r) <= 1e-5


@pytest.mark.parametrize("weighting", ["sft", "talr"])
def test_one_pass_head_with_known_weights_matches_full_logits(weighting):
    h, w, b, labels = _inputs(bias=True)
    params = [h, w, b]
    ref_loss, ref_grads = _grads(lambda: _reference(h, w, b, labels, weighting), params)
    with torch.no_grad():
        logp, mask = losses.token_logprobs(torch.nn.functional.linear(h, w, b), labels)
        weights = (losses.talr_weights(logp, mask) if weighting == "talr" else mask / mask.sum())
    loss, grads = _grads(lambda: fused_weighted_nll(h, w, labels, weights, b, chunk_size=5)[0], params)
    assert rel_err(loss, ref_loss) <= 1e-6
    for g, r in zip(grads, ref_grads):
        assert rel_err(g, r) <= 1e-5


@pytest.mark.parametrize("one_pass", [False, True])
def test_frozen_projection_gets_no_gradient_and_hidden_gradient_is_exact(one_pass):
    h, w, _, labels = _inputs()
    w.requires_grad_(False)
    ref_loss, (ref_grad,) = _grads(lambda: _reference(h, w, None, labels, "talr"), [h])
    if one_pass:
        with torch.no_grad():
            weights = losses.talr_weights(*losses.token_logprobs(h @ w.T, labels))
        loss_fn = lambda: fused_weighted_nll(h, w, labels, weights, chunk_size=9)[0]  # noqa: E731
    else:
        loss_fn = lambda: losses.talr_loss(*fused_token_logprobs(h, w, labels, chunk_size=9))  # noqa: E731
    loss, (grad,) = _grads(loss_fn, [h])
    assert w.grad is None
    assert rel_err(loss, ref_loss) <= 1e-6 and rel_err(grad, ref_grad) <= 1e-5


def test_bf16_autocast_stays_within_documented_tolerance():
    """Under bf16 autocast both paths round the logits' matmul to bf16; they differ by bf16 rounding (~1e-2)."""
    h, w, _, labels = _inputs(hidden=64, vocab=301)
    ref64_loss, ref64_grads = _grads(lambda: _reference(h.double(), w.double(), None, labels, "talr"), [h, w])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref_loss, ref_grads = _grads(lambda: _reference(h, w, None, labels, "talr"), [h, w])
        loss, grads = _grads(lambda: losses.talr_loss(*fused_token_logprobs(h, w, labels, chunk_size=8)), [h, w])
    assert grads[0].dtype == torch.float32 and grads[1].dtype == torch.float32
    assert rel_err(loss, ref_loss) <= 2e-3
    for g, r, r64 in zip(grads, ref_grads, ref64_grads):
        assert rel_err(g, r) <= 2e-2
        # and no further from the exact float64 gradient than the straightforward bf16 path is (with slack)
        assert rel_err(g, r64) <= 2 * rel_err(r, r64) + 1e-3


def test_bf16_backward_uses_the_forward_compute_dtype():
    """The Trainer runs backward outside autocast (accelerate applies it to the forward only): recomputed logits must
    still be the forward's bf16 ones, else they disagree with the saved log-sum-exps, and the gradient matmuls run in
    bf16 as lm_head's own backward would. So the recomputing and the softmax-keeping backward agree, and both stay
    as close to the straightforward autocast path as the kept softmax does."""
    h, w, _, labels = _inputs(hidden=64, vocab=301)

    def forward_under_autocast(loss_fn):
        def run():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return loss_fn()
        return run

    _, ref_grads = _grads(forward_under_autocast(lambda: _reference(h, w, None, labels, "talr")), [h, w])
    runs = [_grads(forward_under_autocast(lambda c=cache: losses.talr_loss(
        *fused_token_logprobs(h, w, labels, chunk_size=8, cache_bytes=c))), [h, w]) for cache in (0, 2**30)]
    (loss_recomputed, grads_recomputed), (loss_kept, grads_kept) = runs
    assert loss_recomputed == loss_kept
    for g, k, r in zip(grads_recomputed, grads_kept, ref_grads):
        assert rel_err(g, k) <= 1e-6
        assert rel_err(k, r) <= 1e-2


def test_no_grad_forward_matches_and_nonfinite_logits_raise():
    h, w, _, labels = _inputs()
    with torch.no_grad():
        ref, mask = losses.token_logprobs(h @ w.T, labels)
        logp, fused_mask = fused_token_logprobs(h, w, labels, chunk_size=4)
    assert torch.equal(mask, fused_mask) and rel_err(logp, ref) <= 1e-6
    h.data[1, 3, 0] = float("nan")
    with pytest.raises(FloatingPointError):
        fused_token_logprobs(h, w, labels)


def _batch(tokenizer, n=3):
    texts = ["Hello there, general.", "The answer is 42.", "Tied embeddings share one matrix."][:n]
    ids = [tokenizer(t)["input_ids"] for t in texts]
    length = max(map(len, ids))
    input_ids = torch.full((n, length), tokenizer.pad_token_id)
    labels = torch.full((n, length), -100)
    attention = torch.zeros(n, length, dtype=torch.long)
    for i, row in enumerate(ids):
        input_ids[i, : len(row)] = torch.tensor(row)
        labels[i, 2 : len(row)] = torch.tensor(row[2:])  # first two tokens act as the prompt
        attention[i, : len(row)] = 1
    return {"input_ids": input_ids, "attention_mask": attention}, labels


def _model_grads(model, fn):
    model.zero_grad()
    fn().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_causal_lm_head_on_a_tied_embedding_model_matches_full_logits(tiny_model_dir):
    model, tokenizer = load_model(tiny_model_dir)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    inputs, labels = _batch(tokenizer)
    head = CausalLMHead(model, fused=True, chunk_size=11)
    assert head.fused
    ref = _model_grads(model, lambda: losses.talr_loss(*losses.token_logprobs(model(**inputs).logits, labels)))
    fused = _model_grads(model, lambda: losses.talr_loss(*head.logprobs(model, inputs, labels)))
    assert ref.keys() == fused.keys()
    for name in ref:
        assert rel_err(fused[name], ref[name]) <= 1e-5, name


def test_causal_lm_head_under_lora_freezes_the_projection(tiny_model_dir):
    from peft import LoraConfig, get_peft_model

    model, tokenizer = load_model(tiny_model_dir)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(0)
    for name, p in model.named_parameters():
        if "lora_B" in name:  # non-zero, so the LoRA A matrices get gradients too
            torch.nn.init.normal_(p, std=0.1)
    inputs, labels = _batch(tokenizer)
    head = CausalLMHead(model, fused=True)
    assert head.fused
    ref = _model_grads(model, lambda: losses.talr_loss(*losses.token_logprobs(model(**inputs).logits, labels)))
    fused = _model_grads(model, lambda: losses.talr_loss(*head.logprobs(model, inputs, labels)))
    assert ref.keys() == fused.keys() and all("lora_" in name for name in ref)
    for name in ref:
        assert rel_err(fused[name], ref[name]) <= 1e-5, name


def test_causal_lm_head_falls_back_when_logits_are_post_processed(tiny_model_dir, caplog):
    model, _ = load_model(tiny_model_dir)
    model.config.final_logit_softcapping = 30.0
    assert not CausalLMHead(model, fused=True).fused
    assert "soft" in caplog.text
