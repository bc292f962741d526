import json

import pytest
import torch

from talr.data.formats import (
    CausalLMCollator,
    DataFormatError,
    read_jsonl,
    render_segments,
    tokenize_example,
    tokenize_examples,
)
from talr.models import load_tokenizer


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return load_tokenizer(tiny_model_dir)


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_read_jsonl_accepts_both_forms(tmp_path):
    path = _write(tmp_path / "d.jsonl", [
        json.dumps({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}),
        "",
        json.dumps({"prompt": "p", "completion": "c", "id": "x"}),
    ])
    examples = read_jsonl(path)
    assert len(examples) == 2 and examples[1]["id"] == "x"


@pytest.mark.parametrize("line, message", [
    ("{not json", "invalid JSON"),
    (json.dumps({"prompt": "p"}), "'completion' is missing"),
    (json.dumps({"messages": [{"role": "robot", "content": "x"}]}), "role 'robot'"),
    (json.dumps({"messages": [{"role": "user", "content": "x"}]}), "no assistant message"),
    (json.dumps({"text": "x"}), "expected a 'messages' list"),
])
def test_malformed_lines_name_file_and_line(tmp_path, line, message):
    good = json.dumps({"prompt": "p", "completion": "c"})
    path = _write(tmp_path / "bad.jsonl", [good, good, line])
    with pytest.raises(DataFormatError, match=rf"bad\.jsonl:3: .*{message}"):
        read_jsonl(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        read_jsonl(tmp_path / "nope.jsonl")


def test_only_assistant_tokens_are_supervised(tokenizer):
    messages = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "question"},
        {"role": "assistant", "content": "first"},
        {"role": "user", "content": "again"},
        {"role": "assistant", "content": "second"},
    ]
    feature, truncated = tokenize_example(tokenizer, messages, max_length=1000)
    assert not truncated
    supervised = tokenizer.decode([t for t, lab in zip(feature["input_ids"], feature["labels"]) if lab != -100])
    assert supervised == "first<|im_end|>\nsecond<|im_end|>\n"
    whole = tokenizer.apply_chat_template(messages, tokenize=False)
    assert tokenizer.decode(feature["input_ids"]) == whole


def test_prompt_completion_uses_the_chat_template(tokenizer):
    segments = render_segments(tokenizer, [{"role": "user", "content": "p"}, {"role": "assistant", "content": "c"}])
    assert segments[-1] == ("c<|im_end|>\n", True)
    assert "".join(text for text, _ in segments).startswith("<|im_start|>user\np")


def test_truncation_is_counted_and_empty_examples_dropped(tokenizer):
    long_prompt = {"prompt": "x" * 200, "completion": "answer"}
    fits = {"prompt": "short", "completion": "answer that is long enough to be cut" * 3}
    features, stats = tokenize_examples([long_prompt, fits], tokenizer, max_length=60)
    assert stats.truncated == 2
    assert stats.dropped_no_supervised_tokens == 1
    assert stats.kept == 1 and [f["index"] for f in features] == [1]
    assert len(features[0]["input_ids"]) == 60
    with pytest.raises(DataFormatError, match="every example was dropped"):
        tokenize_examples([long_prompt], tokenizer, max_length=60)


def test_collator_pads_right_and_masks_padding(tokenizer):
    collate = CausalLMCollator(pad_token_id=tokenizer.pad_token_id, float_fields=("sample_weight",))
    batch = collate([
        {"input_ids": [1, 2, 3], "labels": [-100, 2, 3], "sample_weight": 0.5},
        {"input_ids": [4], "labels": [4], "sample_weight": 2.0},
    ])
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, tokenizer.pad_token_id, tokenizer.pad_token_id]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 2, 3], [4, -100, -100]]
    torch.testing.assert_close(batch["sample_weight"], torch.tensor([0.5, 2.0]))
