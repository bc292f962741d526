"""talr.reference_stats: the base model's per-token log-probabilities, their disk cache and the side input."""

import numpy as np
import pytest
import torch

from talr import reference_stats
from talr.config import config_from_dict
from talr.data.formats import CausalLMCollator, tokenize_examples
from talr.losses import IGNORE_INDEX
from talr.models import load_model


def _examples(n=9):
    return [{"messages": [{"role": "user", "content": f"Name {i}."},
                          {"role": "assistant", "content": f"It is {i}." + " Yes." * (i % 3)}]} for i in range(n)]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TALR_CACHE_DIR", str(tmp_path / "cache"))


def _config(model_dir, max_length=96):
    return config_from_dict({"model": str(model_dir), "data": {"train": "unused.jsonl", "max_length": max_length}})


def test_token_logprobs_match_a_float64_pass_one_sequence_at_a_time(tiny_model_dir):
    model, tokenizer = load_model(tiny_model_dir)
    features, _ = tokenize_examples(_examples(), tokenizer, 96)
    scored = reference_stats.score_tokens(model, features, tokenizer.pad_token_id, batch_size=4)
    for feature, values in zip(features, scored):
        with torch.no_grad():
            logits = model.double()(input_ids=torch.tensor([feature["input_ids"]])).logits[0, :-1]
        model.float()
        targets = torch.tensor(feature["labels"][1:])
        rows = (targets != IGNORE_INDEX).nonzero()[:, 0]
        expected = torch.log_softmax(logits, dim=-1)[rows, targets[rows]].numpy()
        assert values.dtype == np.float32 and values.shape == expected.shape
        np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-5)


def test_cache_is_hit_by_the_same_key_and_missed_by_another(tiny_model_dir, tmp_path, scoring_passes):
    model, tokenizer = load_model(tiny_model_dir)
    examples = _examples()
    features, _ = tokenize_examples(examples, tokenizer, 96)
    first, path = reference_stats.reference_token_logprobs(model, tokenizer, examples, features,
                                                           _config(tiny_model_dir))
    assert path.parent == tmp_path / "cache" / "reference" and path.suffix == ".safetensors"
    again, same_path = reference_stats.reference_token_logprobs(model, tokenizer, examples, features,
                                                                _config(tiny_model_dir))
    assert len(scoring_passes) == 1 and same_path == path
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)  # float32 in, float32 out: bit-exact
    # a subset of the features (e.g. after a different hold-out) reads its own rows
    subset, _ = reference_stats.reference_token_logprobs(model, tokenizer, examples, features[2:5],
                                                         _config(tiny_model_dir))
    assert len(scoring_passes) == 1 and all(np.array_equal(a, b) for a, b in zip(first[2:5], subset))

    reference_stats.reference_token_logprobs(model, tokenizer, examples, features, _config(tiny_model_dir, 64))
    changed = _examples()
    changed[0]["messages"][1]["content"] = "Other."
    changed_features, _ = tokenize_examples(changed, tokenizer, 96)
    reference_stats.reference_token_logprobs(model, tokenizer, changed, changed_features, _config(tiny_model_dir))
    assert len(scoring_passes) == 3  # max_length and the data are part of the key
    reference_stats.reference_token_logprobs(model, tokenizer, examples, features, _config(tiny_model_dir),
                                             use_cache=False)
    assert len(scoring_passes) == 4


def test_an_unreadable_cache_file_is_recomputed(tiny_model_dir, scoring_passes):
    model, tokenizer = load_model(tiny_model_dir)
    examples = _examples()
    features, _ = tokenize_examples(examples, tokenizer, 96)
    first, path = reference_stats.reference_token_logprobs(model, tokenizer, examples, features,
                                                           _config(tiny_model_dir))
    path.write_bytes(b"not a safetensors file")
    second, _ = reference_stats.reference_token_logprobs(model, tokenizer, examples, features,
                                                         _config(tiny_model_dir))
    assert len(scoring_passes) == 2 and all(np.array_equal(a, b) for a, b in zip(first, second))


def test_sample_mean_losses_reduce_the_token_table():
    table = [np.array([-0.5, -1.5], dtype=np.float32), np.array([-2.0], dtype=np.float32)]
    assert reference_stats.sample_mean_losses(table) == [1.0, 2.0]


def test_side_input_is_aligned_with_the_labels_and_padded_by_the_collator(tiny_model_dir):
    model, tokenizer = load_model(tiny_model_dir)
    features, _ = tokenize_examples(_examples(3), tokenizer, 96)
    table = [np.arange(1, len(v) + 1, dtype=np.float32) * -0.1
             for v in reference_stats.score_tokens(model, features, tokenizer.pad_token_id)]
    fields = reference_stats.attach_token_logprobs(features, table)
    batch = CausalLMCollator(tokenizer.pad_token_id, float_fields=fields)(features)
    side = batch[reference_stats.REFERENCE_LOGP]
    assert side.shape == batch["labels"].shape and side.dtype == torch.float32
    mask = batch["labels"][:, 1:] != IGNORE_INDEX
    for row, values in enumerate(table):
        np.testing.assert_array_equal(side[row, 1:][mask[row]].numpy(), values)
    assert not side[:, 1:][~mask].any() and not side[:, 0].any()
