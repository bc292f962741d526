import json

import pytest
import torch

from talr.config import config_from_dict
from talr.data.formats import CausalLMCollator, tokenize_examples
from talr.io import write_jsonl
from talr.models import load_model
from talr.trainer import TalrTrainer, train, training_arguments


def _examples(n=24):
    return [
        {"messages": [{"role": "user", "content": f"Add {i} and {i + 1}."},
                      {"role": "assistant", "content": f"The answer is {2 * i + 1}."}]}
        for i in range(n)
    ]


@pytest.fixture()
def data_file(tmp_path):
    return write_jsonl(_examples(), tmp_path / "train.jsonl")


def _config(tmp_path, tiny_model_dir, data_file, **training):
    return config_from_dict({
        "model": str(tiny_model_dir),
        "output_dir": str(tmp_path / "run"),
        "method": training.pop("method", "sft"),
        "data": {"train": str(data_file), "max_length": 64},
        "training": {"learning_rate": 3e-3, "max_steps": 12, "logging_steps": 4, "autocast": "none",
                     "warmup_ratio": 0.0, "lr_scheduler": "constant", **training},
    })


def _trainer(config, tmp_path, features, tokenizer, model):
    return TalrTrainer(
        model=model, args=training_arguments(config, tmp_path / "run"), train_dataset=features,
        data_collator=CausalLMCollator(tokenizer.pad_token_id), processing_class=tokenizer, run_config=config,
    )


def test_sft_weighting_equals_transformers_causal_lm_loss(tmp_path, tiny_model_dir, data_file):
    config = _config(tmp_path, tiny_model_dir, data_file)
    model, tokenizer = load_model(tiny_model_dir)
    features, _ = tokenize_examples(_examples(4), tokenizer, 64)
    batch = CausalLMCollator(tokenizer.pad_token_id)(features)
    trainer = _trainer(config, tmp_path, features, tokenizer, model)
    ours = trainer.compute_loss(model, dict(batch))
    reference = model(**batch).loss
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", ["sft", "dft"])
def test_gradient_accumulation_gives_the_same_update(tmp_path, tiny_model_dir, data_file, method):
    """1 x 8 and 4 x 2 see the same 8 sequences (of unequal lengths) in one optimizer step."""
    updates = []
    for batch_size, accumulation in [(8, 1), (2, 4)]:
        config = _config(tmp_path, tiny_model_dir, data_file, method=method, max_steps=1, learning_rate=1e-2,
                         per_device_batch_size=batch_size, gradient_accumulation_steps=accumulation,
                         max_grad_norm=0.0)
        model, tokenizer = load_model(tiny_model_dir)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        features, _ = tokenize_examples(_examples(8), tokenizer, 64)
        trainer = _trainer(config, tmp_path, features, tokenizer, model)
        trainer.args.optim = "sgd"  # the update is then exactly lr * gradient
        trainer.train()
        updates.append({k: model.state_dict()[k] - before[k] for k in before})
    for name in updates[0]:
        torch.testing.assert_close(updates[0][name], updates[1][name], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("method", ["sft", "talr"])
def test_training_lowers_the_loss_and_writes_the_run_directory(tmp_path, tiny_model_dir, data_file, method):
    config = _config(tmp_path, tiny_model_dir, data_file, method=method, max_steps=30, logging_steps=5)
    run_dir = train(config)
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [m for m in metrics if "nll" in m]
    assert steps[-1]["nll"] < steps[0]["nll"] - 0.5
    for key in ("loss", "nll", "mean_token_prob", "hard_token_frac", "tau", "ess_frac", "learning_rate",
                "tokens_per_s"):
        assert key in steps[0], key
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "finished" and run["seed"] == 0 and run["versions"]["torch"] == torch.__version__
    assert 0 < run["cpu_time_s"] and run["hardware"]["device"] == "cpu"  # what the report's cost section reads
    assert (run_dir / "config.yaml").is_file() and (run_dir / "model" / "model.safetensors").is_file()
    reloaded, _ = load_model(run_dir)  # a run directory is a model spec
    assert reloaded.config.vocab_size == 259


def test_same_seed_same_loss_curve(tmp_path, tiny_model_dir, data_file):
    curves = []
    for name in ("a", "b"):
        config = _config(tmp_path / name, tiny_model_dir, data_file, method="talr", max_steps=6, logging_steps=1)
        run_dir = train(config)
        curves.append([json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
                       if '"nll"' in line])
    assert curves[0] == curves[1]


@pytest.mark.parametrize("tau_scope", ["token", "sequence"])
def test_talr_weights_and_step_statistics_never_bring_a_value_to_the_host(tau_scope):
    """On a GPU every int()/float()/.item() on a tensor waits for the device (a host sync per micro-batch). Meta
    tensors have shapes but no values, so any such conversion raises: the weights, tau, ESS and the logged step
    statistics must work on them. (tests/test_cuda.py checks the same on CUDA with sync debug mode "error".)"""
    from talr import losses
    from talr.methods.talr import TalrWeighting
    from talr.step_normalizer import step_token_weights
    from talr.trainer import _StepStats

    config = config_from_dict({"data": {"train": "x.jsonl"}, "method": "talr", "talr": {"tau_scope": tau_scope}})
    logp = torch.empty(4, 64, device="meta")
    mask = torch.empty(4, 64, dtype=torch.bool, device="meta")
    weights = TalrWeighting(config).weights(logp, mask, {})
    (step_weights,) = step_token_weights(TalrWeighting(config), [logp], [mask])
    stats = _StepStats()
    stats.add(logp, mask, weights, torch.empty(4, 65, dtype=torch.long, device="meta"), config)
    assert weights.shape == step_weights.shape == logp.shape
    assert losses.effective_sample_fraction(weights, mask).shape == ()
    assert {"tau", "ess", "nll", "hard"} <= set(stats.sums)
