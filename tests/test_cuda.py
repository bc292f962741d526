"""Checks that need a CUDA GPU (skipped without one): ``python benchmarks/gpu_check.py --out DIR`` runs them.

The fused head against full logits in float32 and under bf16 autocast, step-exact weights, the ``auto`` precision
rule, host-device syncs per training micro-batch, and a short real training run.
"""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from talr import losses
from talr.config import config_from_dict
from talr.data.formats import CausalLMCollator, tokenize_examples, write_jsonl
from talr.loss_head import fused_token_logprobs
from talr.methods.talr import TalrWeighting
from talr.models import load_model
from talr.step_normalizer import step_token_weights
from talr.trainer import TalrTrainer, _StepStats, train, training_arguments

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def _head_inputs(batch=4, seq=300, hidden=64, vocab=5000, seed=0):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    h = torch.randn(batch, seq, hidden, generator=gen, device="cuda").requires_grad_()
    w = (torch.randn(vocab, hidden, generator=gen, device="cuda") / 4).requires_grad_()
    labels = torch.randint(0, vocab, (batch, seq), generator=gen, device="cuda")
    labels[0, :50] = -100  # a prompt
    labels[3, 200:] = -100  # padding
    return h, w, labels


def _loss_and_grads(fn, params):
    for p in params:
        p.grad = None
    loss = fn()
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in params]


@pytest.mark.parametrize("cache_bytes", [0, 2**30], ids=["recompute", "kept_softmax"])
@pytest.mark.parametrize("weighting", ["sft", "talr"])
def test_fused_head_matches_full_logits_float32(weighting, cache_bytes):
    loss_fn = losses.sft_loss if weighting == "sft" else losses.talr_loss
    h, w, labels = _head_inputs()
    ref = _loss_and_grads(lambda: loss_fn(*losses.token_logprobs(torch.nn.functional.linear(h, w), labels)), [h, w])
    got = _loss_and_grads(lambda: loss_fn(*fused_token_logprobs(h, w, labels, chunk_size=97,
                                                                 cache_bytes=cache_bytes)), [h, w])
    assert _rel_err(got[0], ref[0]) <= 1e-5
    for g, r in zip(got[1], ref[1]):
        assert _rel_err(g, r) <= 1e-4  # TF32 may be on for matmuls: looser than the CPU tests' 1e-5


@pytest.mark.parametrize("cache_bytes", [0, 2**30], ids=["recompute", "kept_softmax"])
def test_fused_head_under_bf16_autocast_stays_within_bf16_rounding(cache_bytes):
    """Forward under autocast, backward outside it (as the Trainer does): within bf16 rounding of the straightforward
    autocast path, for both backward paths."""
    h, w, labels = _head_inputs()

    def under_autocast(fn):
        def run():
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return fn()
        return run

    ref = _loss_and_grads(under_autocast(lambda: losses.talr_loss(
        *losses.token_logprobs(torch.nn.functional.linear(h, w), labels))), [h, w])
    got = _loss_and_grads(under_autocast(lambda: losses.talr_loss(
        *fused_token_logprobs(h, w, labels, chunk_size=97, cache_bytes=cache_bytes))), [h, w])
    assert _rel_err(got[0], ref[0]) <= 1e-2
    for g, r in zip(got[1], ref[1]):
        assert _rel_err(g, r) <= 2e-2


def test_step_exact_weights_equal_the_full_batch_weights():
    config = config_from_dict({"data": {"train": "x.jsonl"}, "method": "talr"})
    gen = torch.Generator(device="cuda").manual_seed(0)
    logps = [-torch.rand(2, 17, generator=gen, device="cuda") * 5, -torch.rand(3, 11, generator=gen, device="cuda")]
    masks = [torch.rand(2, 17, generator=gen, device="cuda") > 0.3, torch.rand(3, 11, generator=gen, device="cuda") > 0.3]
    pieces = step_token_weights(TalrWeighting(config), logps, masks)
    full_logp = torch.zeros(5, 17, device="cuda")
    full_mask = torch.zeros(5, 17, dtype=torch.bool, device="cuda")
    full_logp[:2], full_mask[:2] = logps[0], masks[0]
    full_logp[2:, :11], full_mask[2:, :11] = logps[1], masks[1]
    full = TalrWeighting(config).weights(full_logp, full_mask, {})
    torch.testing.assert_close(pieces[0], full[:2])
    torch.testing.assert_close(pieces[1], full[2:, :11])
    assert pieces[0].device.type == "cuda"


def test_auto_precision_on_this_gpu():
    from talr.precision import hardware, resolve_autocast, resolve_eval_dtype

    hw = hardware()
    assert hw.device == "cuda" and hw.device_name == torch.cuda.get_device_name()
    native = torch.cuda.is_bf16_supported(including_emulation=False)
    assert hw.native_bf16 == native
    assert resolve_autocast("auto") == ("bf16" if native else "none")
    assert resolve_eval_dtype("auto") == (torch.bfloat16 if native else torch.float32)


def test_talr_weights_and_step_statistics_never_sync_the_host():
    """TALR's tau, weights, effective sample size and the logged step statistics stay on the device: no CUDA call in
    them waits for the GPU (sync debug mode "error" raises on any that would)."""
    config = config_from_dict({"data": {"train": "x.jsonl"}, "method": "talr"})
    gen = torch.Generator(device="cuda").manual_seed(0)
    logp = -torch.rand(4, 64, generator=gen, device="cuda") * 5
    mask = torch.rand(4, 64, generator=gen, device="cuda") > 0.2
    attention = torch.ones(4, 65, dtype=torch.long, device="cuda")
    stats = _StepStats()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for scope in ("token", "sequence"):
            config.talr.tau_scope = scope
            weights = TalrWeighting(config).weights(logp, mask, {})
            step_token_weights(TalrWeighting(config), [logp], [mask])
            stats.add(logp, mask, weights, attention, config)
        losses.effective_sample_fraction(weights, mask)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert set(stats.flush()) >= {"tau", "ess_frac", "nll", "hard_token_frac"}


def _count_syncs(fn) -> int:
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fn()
            torch.cuda.synchronize()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum("synchronizing" in str(w.message) for w in caught)


def test_a_talr_micro_batch_syncs_no_more_than_an_sft_one(tmp_path, tiny_model_dir, capsys):
    """A training micro-batch's syncs come from the fused head (it compacts the supervised tokens, whose count the
    host needs to chunk them) and the finiteness check, the same for every method: TALR adds none."""
    model, tokenizer = load_model(tiny_model_dir)
    examples = [{"messages": [{"role": "user", "content": f"Add {i} and 1."},
                              {"role": "assistant", "content": f"The answer is {i + 1}."}]} for i in range(8)]
    features, _ = tokenize_examples(examples, tokenizer, 64)
    batch = CausalLMCollator(tokenizer.pad_token_id)(features[:4])
    counts = {}
    for method in ("sft", "talr"):
        config = config_from_dict({"model": str(tiny_model_dir), "output_dir": str(tmp_path / method),
                                   "method": method, "data": {"train": "x.jsonl"},
                                   "training": {"autocast": "auto", "save_model": False}})
        trainer = TalrTrainer(model=model, args=training_arguments(config, tmp_path / method), run_config=config,
                              train_dataset=features, data_collator=CausalLMCollator(tokenizer.pad_token_id))
        inputs = trainer._prepare_inputs(dict(batch))
        trainer.model.train()

        def micro_batch():
            trainer.compute_loss(trainer.model, dict(inputs), num_items_in_batch=inputs["labels"][:, 1:].ne(-100)
                                 .sum()).backward()

        micro_batch()  # warm-up: first-call allocations and lazy initialisation
        counts[method] = _count_syncs(micro_batch)
    with capsys.disabled():
        print(f"\nhost syncs per training micro-batch: {counts}")
    assert counts["talr"] <= counts["sft"]


def test_a_short_training_run_on_the_gpu_learns_and_records_the_hardware(tmp_path, tiny_model_dir):
    examples = [{"messages": [{"role": "user", "content": f"Add {i} and {i + 1}."},
                              {"role": "assistant", "content": f"The answer is {2 * i + 1}."}]} for i in range(24)]
    data = write_jsonl(examples, tmp_path / "train.jsonl")
    config = config_from_dict({
        "model": str(tiny_model_dir), "output_dir": str(tmp_path / "run"), "method": "talr",
        "data": {"train": str(data), "max_length": 64},
        "training": {"learning_rate": 3e-3, "max_steps": 12, "logging_steps": 4, "warmup_ratio": 0.0,
                     "lr_scheduler": "constant"},
        "probes": {"enabled": False},
    })
    run_dir = train(config)
    run = json.loads((run_dir / "run.json").read_text())
    assert run["hardware"]["device"] == "cuda"
    assert run["precision"]["requested"] == "auto"
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    nll = [m["nll"] for m in metrics if "nll" in m]
    assert nll[-1] < nll[0]
