import json

import numpy as np
import pytest

from talr import analysis, callbacks
from talr.analysis import ExampleScores
from talr.config import ConfigError, config_from_dict
from talr.data.formats import write_jsonl
from talr.models import load_model
from talr.trainer import train


def _examples(n, offset=0):
    return [
        {"messages": [{"role": "user", "content": f"Add {i} and {i + 1}."},
                      {"role": "assistant", "content": f"The answer is {2 * i + 1}."}]}
        for i in range(offset, offset + n)
    ]


def _scores(logps):
    return [ExampleScores(index=i, input_ids=list(range(len(lp) + 1)), positions=np.arange(1, len(lp) + 1),
                          logp=np.log(np.array(lp, dtype=float))) for i, lp in enumerate(logps)]


def test_curriculum_record_follows_the_initially_hard_tokens():
    initial = _scores([[0.05, 0.9, 0.15], [0.6, 0.1]])
    current = _scores([[0.5, 0.95, 0.1], [0.7, 0.3]])
    weights = [np.array([1.5, 0.5, 0.2]), np.array([1.0, 0.8])]
    record = callbacks.curriculum_record(initial, current, weights)
    # initially hard (p < 0.2): tokens (0,0), (0,2), (1,1); now 0.5, 0.1, 0.3 -> one of three still hard
    assert record["tokens"] == 5 and record["initially_hard"] == 3
    assert record["hard_frac_0.2"] == pytest.approx(1 / 5)
    assert record["initially_hard_still_hard"] == pytest.approx(1 / 3)
    assert record["initially_hard_mean_prob"] == pytest.approx((0.5 + 0.1 + 0.3) / 3)
    assert record["initially_hard_weight_mean"] == pytest.approx((1.5 + 0.2 + 0.8) / 3)
    assert record["initially_hard_weight_q50"] == pytest.approx(0.8)
    assert record["initially_easy_weight_mean"] == pytest.approx((0.5 + 1.0) / 2)
    with pytest.raises(ValueError, match="align"):
        callbacks.curriculum_record(initial, current, weights[:1])


def test_hold_out_is_seeded_and_disjoint():
    items = [{"i": i} for i in range(40)]
    kept, held, indices = callbacks.hold_out(items, 5, seed=1)
    assert len(kept) == 35 and len(held) == 5
    assert sorted(x["i"] for x in kept + held) == list(range(40))
    assert [x["i"] for x in held] == indices
    assert callbacks.hold_out(items, 5, seed=1)[2] == indices


def _config(tmp_path, tiny_model_dir, data, general, **probes):
    return config_from_dict({
        "model": str(tiny_model_dir), "output_dir": str(tmp_path / "run"),
        "method": "talr",
        "data": {"train": str(data), "max_length": 64},
        "training": {"learning_rate": 3e-3, "max_steps": 12, "num_epochs": 1, "logging_steps": 4, "autocast": "none",
                     "warmup_ratio": 0.0, "lr_scheduler": "constant", "per_device_batch_size": 4},
        "probes": {"every_n_steps": 5, "general": general and str(general), "general_size": 6, "domain_size": 8,
                   "hard_token_size": 8, **probes},
    })


@pytest.fixture()
def files(tmp_path):
    return write_jsonl(_examples(80), tmp_path / "train.jsonl"), write_jsonl(_examples(10, 500), tmp_path / "g.jsonl")


def test_probes_during_training(tmp_path, tiny_model_dir, files):
    data, general = files
    config = _config(tmp_path, tiny_model_dir, data, general)
    run_dir = train(config)
    records = callbacks.read_probes(run_dir)
    setup = records[0]
    assert setup["probe"] == "setup" and setup["sets"] == {"general": 6, "domain": 8}
    held = setup["domain_held_out_indices"]
    assert len(held) == 8
    run = json.loads((run_dir / "run.json").read_text())
    assert run["data"]["examples"] == 72  # the held-out examples are not trained on

    code = [r for r in records if r["probe"] == "codelength"]
    assert [r["step"] for r in code] == [0, 5, 10, 12]
    assert code[0]["general_delta_bits"] == 0 and code[0]["domain_delta_bits"] == 0
    assert code[-1]["domain_delta_bits"] < -3 * code[-1]["domain_delta_bits_se"]  # the domain got cheaper to encode
    assert code[-1]["cost_per_gain"] == pytest.approx(code[-1]["general_delta_bits"] / -code[-1]["domain_delta_bits"])

    # the last probe is exactly a scoring of the saved model on the held-out examples
    model, tokenizer = load_model(run_dir)
    examples = [json.loads(line) for line in data.read_text().splitlines()]
    scores, _ = analysis.score_examples(model, tokenizer, [examples[i] for i in held], 64)
    bits, tokens = analysis.code_lengths(scores)
    assert code[-1]["domain_bits"] == pytest.approx(bits.mean(), rel=1e-4)
    assert code[-1]["domain_bits_per_token"] == pytest.approx(bits.sum() / tokens.sum(), rel=1e-4)

    hard = [r for r in records if r["probe"] == "hard_tokens"]
    assert [r["step"] for r in hard] == [0, 12]  # start, and the end of the (only, cut short) epoch
    assert hard[0]["initially_hard_still_hard"] == 1.0
    # a random tiny model finds every token hard, so they hold all the weight: mean 1 by TALR's normalisation
    assert hard[0]["hard_frac_0.2"] == 1.0 and "initially_easy_weight_mean" not in hard[0]
    assert hard[0]["initially_hard_weight_mean"] == pytest.approx(1.0)
    assert hard[-1]["initially_hard_mean_prob"] > 2 * hard[0]["initially_hard_mean_prob"]

    png = callbacks.plot_probes({"talr": run_dir}, tmp_path / "probes.png")
    assert png.stat().st_size > 10_000


def test_disabled_probes_write_nothing_but_keep_the_same_training_set(tmp_path, tiny_model_dir, files):
    data, general = files
    config = _config(tmp_path, tiny_model_dir, data, general, enabled=False)
    config.training.max_steps = 1
    run_dir = train(config)
    assert not (run_dir / callbacks.PROBES_FILE).exists()
    assert json.loads((run_dir / "run.json").read_text())["data"]["examples"] == 72


def test_a_separate_domain_set_holds_nothing_out(tmp_path, tiny_model_dir, files):
    data, general = files
    domain = write_jsonl(_examples(5, 900), tmp_path / "domain.jsonl")
    config = _config(tmp_path, tiny_model_dir, data, None, domain={"path": str(domain)})
    model, tokenizer = load_model(tiny_model_dir)
    examples = [json.loads(line) for line in data.read_text().splitlines()]
    kept, probes = callbacks.build_probes(config, examples, tokenizer, tmp_path)
    assert kept == examples
    code = [p for p in probes if isinstance(p, callbacks.CodeLengthProbe)]
    assert list(code[0].sets) == ["domain"] and len(code[0].sets["domain"]) == 5


def test_a_probe_set_emptied_by_max_length_is_skipped_not_fatal(tmp_path, tiny_model_dir, files, caplog):
    data, _ = files
    long_prompts = [{"messages": [{"role": "user", "content": "Tell a long story. " * 8},
                                  {"role": "assistant", "content": "Once."}]}] * 4
    general = write_jsonl(long_prompts, tmp_path / "long.jsonl")
    config = _config(tmp_path, tiny_model_dir, data, general)  # max_length 64 cuts each answer off after its long prompt
    model, tokenizer = load_model(tiny_model_dir)
    examples = [json.loads(line) for line in data.read_text().splitlines()]
    with caplog.at_level("WARNING", logger="talr.callbacks"):
        _, probes = callbacks.build_probes(config, examples, tokenizer, tmp_path)
    code = [p for p in probes if isinstance(p, callbacks.CodeLengthProbe)]
    assert list(code[0].sets) == ["domain"]
    assert "this probe is skipped" in caplog.text and "long.jsonl" in caplog.text


def test_probe_config_is_validated():
    with pytest.raises(ConfigError, match="probes.every_n_steps"):
        config_from_dict({"data": {"train": "x.jsonl"}, "probes": {"every_n_steps": 0}})
    with pytest.raises(ConfigError, match="probes.domain"):
        config_from_dict({"data": {"train": "x.jsonl"}, "probes": {"domain": {"split": "dev"}}})
    config = config_from_dict({"data": {"train": "x.jsonl"}, "probes": {"domain": {"source": "medcalc_bench"}}})
    assert config.probes.domain.source == "medcalc_bench" and config.probes.enabled


@pytest.mark.parametrize("normalize_over", ["step", "micro_batch"])
def test_hard_token_probe_weights_are_the_ones_training_uses_under_accumulation(tmp_path, tiny_model_dir,
                                                                                 normalize_over):
    """Two micro-batches of two examples per optimizer step: the probe's TALR weights equal the weights the trainer
    attaches to those examples (its step pre-pass), not weights normalised over each micro-batch alone."""
    import torch

    from talr.data.formats import CausalLMCollator, tokenize_examples
    from talr.step_normalizer import STEP_WEIGHTS_KEY
    from talr.trainer import TalrTrainer, training_arguments

    config = config_from_dict({
        "model": str(tiny_model_dir), "output_dir": str(tmp_path / "run"), "method": "talr",
        "data": {"train": "unused.jsonl", "max_length": 64}, "talr": {"normalize_over": normalize_over, "tau": 0.01},  # a sharp tau: the sets matter
        "training": {"per_device_batch_size": 2, "gradient_accumulation_steps": 2, "autocast": "none"}})
    model, tokenizer = load_model(tiny_model_dir)
    features, _ = tokenize_examples(_examples(4), tokenizer, 64)
    collate = CausalLMCollator(tokenizer.pad_token_id)
    trainer = TalrTrainer(model=model, args=training_arguments(config, tmp_path / "run"), train_dataset=features,
                          data_collator=collate, processing_class=tokenizer, run_config=config)
    micro_batches = [collate(features[:2]), collate(features[2:])]
    if normalize_over == "step":
        trainer._attach_step_weights(micro_batches)
        trained = [b[STEP_WEIGHTS_KEY] for b in micro_batches]
    else:  # per micro-batch: the weighting on each micro-batch's own tokens
        trained = []
        for batch in micro_batches:
            logp, mask = trainer.head.logprobs(model, {k: v for k, v in batch.items() if k != "labels"},
                                               batch["labels"])
            trained.append(trainer.token_weighting.weights(logp.detach(), mask, {}))
    per_token = []  # the trained weights of each example's supervised tokens, in order
    for batch, weights in zip(micro_batches, trained):
        supervised = batch["labels"][:, 1:] != -100
        per_token += [weights[r][supervised[r]].double().numpy() for r in range(len(weights))]

    probe = callbacks.HardTokenProbe(features, tokenizer.pad_token_id, callbacks.ProbeLog(tmp_path / "p.jsonl"),
                                     config)
    scores = analysis.score_features(model, features, tokenizer.pad_token_id)
    for got, want in zip(probe.token_weights(scores), per_token, strict=True):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-6)
    if normalize_over == "step":  # the old probe's per-micro-batch weights are measurably different
        per_batch = [torch.from_numpy(np.concatenate([s.logp for s in scores[i:i + 2]]))[None] for i in (0, 2)]
        old = np.concatenate([trainer.token_weighting.weights(lp, torch.ones_like(lp, dtype=torch.bool), {})[0]
                              .numpy() for lp in per_batch])
        assert not np.allclose(old, np.concatenate(per_token), rtol=0.05)
