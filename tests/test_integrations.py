"""TALR where users already train: TRL's SFTTrainer (talr.integrations.trl), a plain transformers.Trainer with
talr's compute_loss_func (talr.integrations.hf_trainer) and `talr train`'s own TalrTrainer give the same loss and
gradients on one fixed batch, and the same optimizer update under gradient accumulation.

SGD without clipping at learning rate 1 makes an update exactly minus the step's gradient, so a wrong normaliser
cannot hide behind Adam's scale invariance (as in test_exact_accumulation.py).
"""

import pytest
import torch

pytest.importorskip("trl")
from datasets import Dataset  # noqa: E402
from transformers import Trainer, TrainingArguments  # noqa: E402
from trl import SFTConfig  # noqa: E402

from talr.config import ConfigError, config_from_dict  # noqa: E402
from talr.data.formats import CausalLMCollator, tokenize_examples  # noqa: E402
from talr.integrations import weighting_config  # noqa: E402
from talr.integrations.hf_trainer import token_weighted_loss  # noqa: E402
from talr.integrations.trl import TalrSFTTrainer  # noqa: E402
from talr.models import load_model  # noqa: E402
from talr.trainer import TalrTrainer, training_arguments  # noqa: E402

SCHEDULE = {"learning_rate": 1.0, "max_steps": 1, "lr_scheduler_type": "constant", "warmup_steps": 0,
            "max_grad_norm": 0.0, "optim": "sgd", "seed": 0, "data_seed": 0, "use_cpu": True, "report_to": "none",
            "logging_steps": 1, "disable_tqdm": True}


def _examples():
    # unequal lengths, so micro-batches pad differently from the whole batch
    return [
        {"messages": [{"role": "user", "content": f"Add {i} and {i * 7 + 1}." + " Please." * (i % 3)},
                      {"role": "assistant", "content": f"The answer is {i * 8 + 1}." + " Yes!" * (i % 4)}]}
        for i in range(4)
    ]


def _model(model_dir, lora=False):
    model, tokenizer = load_model(model_dir)
    with torch.no_grad():  # a random tiny model predicts nearly uniformly; sharper logits make TALR's weights uneven
        model.get_output_embeddings().weight.mul_(30)
    if lora:
        from peft import LoraConfig, get_peft_model

        torch.manual_seed(0)  # the same adapter initialisation for every trainer
        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    return model, tokenizer


def _features(tokenizer):
    features, _ = tokenize_examples(_examples(), tokenizer, 128)
    return features


def _talr_trainer(model_dir, tmp_path, method, batch_size=4, accumulation=1, normalize_over="step", lora=False):
    config = config_from_dict({
        "model": str(model_dir), "output_dir": str(tmp_path / "run"), "method": method,
        "data": {"train": "unused.jsonl"}, "talr": {"normalize_over": normalize_over},
        "training": {"learning_rate": 1.0, "max_steps": 1, "autocast": "none", "warmup_ratio": 0.0,
                     "lr_scheduler": "constant", "max_grad_norm": 0.0, "per_device_batch_size": batch_size,
                     "gradient_accumulation_steps": accumulation, "logging_steps": 1},
    })
    model, tokenizer = _model(model_dir, lora)
    trainer = TalrTrainer(
        model=model, args=training_arguments(config, tmp_path / "run"), train_dataset=_features(tokenizer),
        data_collator=CausalLMCollator(tokenizer.pad_token_id), processing_class=tokenizer, run_config=config,
    )
    trainer.args.optim = "sgd"
    return trainer


def _trl_trainer(model_dir, tmp_path, method, batch_size=4, accumulation=1, lora=False):
    model, tokenizer = _model(model_dir, lora)
    rows = [{"input_ids": f["input_ids"], "labels": f["labels"]} for f in _features(tokenizer)]
    args = SFTConfig(output_dir=str(tmp_path / "trl"), per_device_train_batch_size=batch_size,
                     gradient_accumulation_steps=accumulation, bf16=False, gradient_checkpointing=False,
                     dataset_kwargs={"skip_prepare_dataset": True}, **SCHEDULE)
    return TalrSFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                          talr=method)


def _hook_trainer(model_dir, tmp_path, method, batch_size=4, accumulation=1):
    model, tokenizer = _model(model_dir)
    args = TrainingArguments(output_dir=str(tmp_path / "hf"), per_device_train_batch_size=batch_size,
                             gradient_accumulation_steps=accumulation, remove_unused_columns=False, **SCHEDULE)
    return Trainer(model=model, args=args, train_dataset=_features(tokenizer),
                   data_collator=CausalLMCollator(tokenizer.pad_token_id), processing_class=tokenizer,
                   compute_loss_func=token_weighted_loss(method))


def _talr_trainer_own_args(model_dir, tmp_path, method, batch_size=4, accumulation=1):
    """TalrTrainer as a plain-Trainer user builds it: their TrainingArguments, a weighting-only talr config."""
    model, tokenizer = _model(model_dir)
    args = TrainingArguments(output_dir=str(tmp_path / "own"), per_device_train_batch_size=batch_size,
                             gradient_accumulation_steps=accumulation, remove_unused_columns=False, **SCHEDULE)
    return TalrTrainer(model=model, args=args, train_dataset=_features(tokenizer),
                       data_collator=CausalLMCollator(tokenizer.pad_token_id), processing_class=tokenizer,
                       run_config=weighting_config(method))


BUILDERS = {"talr_trainer": _talr_trainer, "trl": _trl_trainer, "hf_compute_loss_func": _hook_trainer,
            "talr_trainer_own_args": _talr_trainer_own_args}


def _loss_and_grads(trainer):
    model = trainer.model
    model.train()
    tokenizer = trainer.processing_class
    batch = CausalLMCollator(tokenizer.pad_token_id)(_features(tokenizer))
    batch = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "labels")}
    model.zero_grad()
    loss = trainer.compute_loss(model, batch)
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("method", ["sft", "talr", "dft"])
def test_one_batch_same_loss_and_gradients(tiny_model_dir, tmp_path, method):
    reference_loss, reference_grads = _loss_and_grads(_talr_trainer(tiny_model_dir, tmp_path, method))
    for kind in ("trl", "hf_compute_loss_func", "talr_trainer_own_args"):
        loss, grads = _loss_and_grads(BUILDERS[kind](tiny_model_dir, tmp_path, method))
        torch.testing.assert_close(loss, reference_loss, rtol=1e-5, atol=1e-6, msg=kind)
        for name, grad in grads.items():
            torch.testing.assert_close(grad, reference_grads[name], rtol=1e-4, atol=1e-6, msg=f"{kind} {name}")


def _update(trainer):
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    after = trainer.model.state_dict()
    return torch.cat([(after[k] - before[k]).flatten() for k in sorted(before)])


def _rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.fixture(scope="module")
def reference_updates(tiny_model_dir, tmp_path_factory):
    """TalrTrainer's update with the 4 sequences in one micro-batch, per method."""
    return {method: _update(_talr_trainer(tiny_model_dir, tmp_path_factory.mktemp(method), method))
            for method in ("sft", "talr")}


@pytest.mark.parametrize("method", ["sft", "talr"])
@pytest.mark.parametrize("kind,batch_size,accumulation", [
    ("trl", 4, 1), ("trl", 2, 2), ("trl", 1, 4), ("talr_trainer", 2, 2), ("talr_trainer", 1, 4),
    ("talr_trainer_own_args", 2, 2),
])
def test_step_exact_update_under_gradient_accumulation(tiny_model_dir, tmp_path, reference_updates, method, kind,
                                                       batch_size, accumulation):
    update = _update(BUILDERS[kind](tiny_model_dir, tmp_path, method, batch_size, accumulation))
    assert _rel(update, reference_updates[method]) <= 1e-5


def test_compute_loss_func_normalises_per_micro_batch(tiny_model_dir, tmp_path, reference_updates):
    """A compute_loss_func sees one micro-batch at a time: under accumulation it is TalrTrainer's micro_batch mode
    (SFT's weights do not depend on the batch, so it is step-exact there)."""
    hook = _update(_hook_trainer(tiny_model_dir, tmp_path, "talr", 2, 2))
    micro = _update(_talr_trainer(tiny_model_dir, tmp_path, "talr", 2, 2, normalize_over="micro_batch"))
    assert _rel(hook, micro) <= 1e-5
    assert _rel(hook, reference_updates["talr"]) > 1e-4
    sft = _update(_hook_trainer(tiny_model_dir, tmp_path, "sft", 2, 2))
    assert _rel(sft, reference_updates["sft"]) <= 1e-5


def test_trl_trainer_logs_talr_metrics(tiny_model_dir, tmp_path):
    trainer = _trl_trainer(tiny_model_dir, tmp_path, {"loss": "talr", "tau_scope": "sequence"}, 2, 2)
    trainer.train()
    logged = next(entry for entry in trainer.state.log_history if "loss" in entry)
    for key in ("tau", "ess_frac", "hard_token_frac", "nll", "entropy", "mean_token_accuracy"):  # talr's and TRL's
        assert key in logged, key
    assert 0 < logged["ess_frac"] < 1


def test_weighting_config_errors_name_the_key():
    assert weighting_config("dft").method.loss == "dft"
    assert weighting_config({"loss": "talr", "w_min": 0.1}).talr.w_min == 0.1
    with pytest.raises(ConfigError, match="talr.tua: unknown key"):
        weighting_config({"loss": "talr", "tua": 1.0})
    with pytest.raises(ConfigError, match="loss: unknown value 'tarl'"):
        weighting_config("tarl")
    # what only `talr train` prepares: FLOW's sample weights, the base model's log-probabilities, ASFT's reference
    for spec in ("flow", {"loss": "talr", "weights_from": "base"}, "asft"):
        with pytest.raises(ConfigError, match="with these settings needs what only `talr train` prepares"):
            weighting_config(spec)


def test_trl_trainer_rejects_trl_own_dft(tiny_model_dir, tmp_path):
    model, tokenizer = _model(tiny_model_dir)
    rows = [{"input_ids": f["input_ids"], "labels": f["labels"]} for f in _features(tokenizer)]
    args = SFTConfig(output_dir=str(tmp_path), loss_type="dft", bf16=False, use_cpu=True, report_to="none",
                     dataset_kwargs={"skip_prepare_dataset": True})
    with pytest.raises(ValueError, match="loss_type='dft'"):
        TalrSFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)


@pytest.mark.parametrize("found", ["1.15.0", "1.17.0", "2.0.0"])
def test_trl_outside_the_tested_range_is_a_one_line_import_error(monkeypatch, found):
    import talr.integrations.trl as integration

    monkeypatch.setattr(integration, "version", lambda name: found)
    with pytest.raises(ImportError, match=rf"tested with trl>=1.16,<1.17, found trl {found}: pip install") as err:
        integration._check_trl_version()
    assert "\n" not in str(err.value)


def _readme_block(heading: str) -> str:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split(f"### {heading}\n", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_readme_trl_lines_run_on_a_conversational_dataset(tiny_model_dir, tmp_path):
    """The README's usage lines, executed as written, on a dataset TRL prepares itself (prompt-completion chats)."""
    code = _readme_block("Use TALR in your own TRL script")
    assert len(code.strip().splitlines()) <= 3
    model, tokenizer = _model(tiny_model_dir)
    model.config.pad_token_id = tokenizer.pad_token_id
    dataset = Dataset.from_list([
        {"prompt": [{"role": "user", "content": f"Add {i} and {i + 1}."}],
         "completion": [{"role": "assistant", "content": f"The answer is {2 * i + 1}."}]} for i in range(8)
    ])
    args = SFTConfig(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=2,
                     gradient_accumulation_steps=2, bf16=False, gradient_checkpointing=False, use_cpu=True,
                     report_to="none", logging_steps=1, disable_tqdm=True)
    namespace = {"model": model, "args": args, "dataset": dataset}
    exec(compile(code, "README.md", "exec"), namespace)
    trainer = namespace["trainer"]
    assert isinstance(trainer, TalrSFTTrainer) and trainer.state.global_step == 2
    logged = [entry for entry in trainer.state.log_history if "tau" in entry]
    assert len(logged) == 2 and all(entry["tau"] > 0 and 0 < entry["ess_frac"] <= 1 for entry in logged)


@pytest.mark.slow
def test_real_trl_steps_on_the_embedded_model_lower_the_talr_objective(tmp_path):
    """Three SFTTrainer steps with TALR on SmolLM2-135M (float32, 4 short chats TRL prepares itself, 2x2 step-exact)."""
    import time

    started = time.perf_counter()
    model, tokenizer = load_model("smollm2-135m-instruct")
    dataset = Dataset.from_list([
        {"prompt": [{"role": "system", "content": "Add."}, {"role": "user", "content": f"{i} + {i + 3}"}],
         "completion": [{"role": "assistant", "content": f"{2 * i + 3}"}]} for i in range(4)
    ])
    args = SFTConfig(output_dir=str(tmp_path), max_steps=3, learning_rate=1e-4, lr_scheduler_type="constant",
                     per_device_train_batch_size=2, gradient_accumulation_steps=2, max_length=32, bf16=False,
                     gradient_checkpointing=False, use_cpu=True, report_to="none", logging_steps=1,
                     disable_tqdm=True, seed=0)
    trainer = TalrSFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer, talr="talr")
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])

    def objective():  # TALR's loss on the 4 examples at the current weights (tau and weights from this batch)
        model.eval()
        with torch.no_grad():
            return float(trainer.compute_loss(model, dict(batch)))

    before = objective()
    trainer.train()
    after = objective()
    assert after < 0.8 * before, (before, after)
    assert all("tau" in entry for entry in trainer.state.log_history if "loss" in entry and "train_loss" not in entry)
    print(f"TALR objective {before:.3f} -> {after:.3f} in {time.perf_counter() - started:.0f} s")


def test_trl_with_a_lora_model_matches_talr_trainer(tiny_model_dir, tmp_path):
    """Under PEFT, TRL patches the base model's forward; the talr weighting still reads that forward's log-probs."""
    reference_loss, reference_grads = _loss_and_grads(_talr_trainer(tiny_model_dir, tmp_path, "talr", lora=True))
    loss, grads = _loss_and_grads(_trl_trainer(tiny_model_dir, tmp_path, "talr", lora=True))
    torch.testing.assert_close(loss, reference_loss, rtol=1e-5, atol=1e-6)
    assert set(grads) == set(reference_grads) and all("lora_" in name for name in grads)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, reference_grads[name], rtol=1e-4, atol=1e-6, msg=name)
