"""Property tests: whatever a user writes in a config, a `--set` override or a training-data file, talr answers with a
valid result or its own one-line error naming the key or the file and line, never another exception."""

import dataclasses
import json
import re
import typing

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from talr.config import Config, ConfigError, config_from_dict, load_config
from talr.data import load_train_examples
from talr.data.formats import DataFormatError, read_jsonl, tokenize_examples
from talr.testing import make_tiny_tokenizer
from talr.trainer import training_arguments

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _fields(cls, prefix=""):
    """Every dotted key of a config dataclass."""
    hints = typing.get_type_hints(cls)
    keys = []
    for field in dataclasses.fields(cls):
        tp = hints[field.name]
        options = [t for t in typing.get_args(tp) if dataclasses.is_dataclass(t)] or [tp]
        if dataclasses.is_dataclass(options[0]):
            keys += _fields(options[0], f"{prefix}{field.name}.")
        keys.append(f"{prefix}{field.name}")
    return keys


KEYS = _fields(Config)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["median", "sft", "talr", "lora", "l2", "flow", "wise_ft", "none", "bf16", "fused", "step",
                     "token", "cosine", "linear", "alpaca", "1e-6", "-1", "0", "train.jsonl", "all-linear"]),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.sampled_from([k.rsplit(".", 1)[-1] for k in KEYS]) | st.text(max_size=6), inner, max_size=3), max_leaves=8)


@st.composite
def raw_configs(draw):
    """Nested mappings built from talr's own dotted keys (and some that are not), any values."""
    raw: dict = {}
    for key in draw(st.lists(st.sampled_from(KEYS) | st.text(max_size=8), max_size=6)):
        node, parts = raw, key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            node[part] = child if isinstance(child, dict) else {}
            node = node[part]
        node[parts[-1]] = draw(values)
    return raw


def _check_config_error(err: ConfigError):
    message = str(err)
    assert message and "\n" not in message


@SETTINGS
@given(raw=raw_configs())
def test_any_config_mapping_is_valid_or_a_config_error(raw, tmp_path):
    try:
        config = config_from_dict(raw)
    except ConfigError as err:
        _check_config_error(err)
        return
    assert isinstance(config, Config)
    training_arguments(config, tmp_path)  # and the Trainer accepts what the validation accepted


yaml_snippets = st.sampled_from(["[", "{a: 1", "]", ": x", "!!python/object/apply:os.system ['true']", "&a [*a]",
                                 "'unclosed", "\t- tab", "{1: 2}", "[1, 2]", "null", "~", "1e-6", "1.0e-6", "yes",
                                 ".nan", "-.inf", "0x10", "2026-11-27", "!!binary aGk=", "? [a, b]\n: c"])


@SETTINGS
@given(overrides=st.lists(st.tuples(st.sampled_from(KEYS) | st.text(max_size=10),
                                    yaml_snippets | st.text(max_size=10)).map(lambda kv: f"{kv[0]}={kv[1]}")
                          | st.text(max_size=10), max_size=4))
def test_any_set_override_is_valid_or_a_config_error(overrides):
    try:
        config = load_config(None, ["data.train=train.jsonl", *overrides])
    except ConfigError as err:
        _check_config_error(err)
        assert str(err).startswith("<overrides>: ")
        return
    assert isinstance(config, Config)


@SETTINGS
@given(content=st.binary(max_size=60) | yaml_snippets.map(str.encode)
       | st.text(max_size=60).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_any_config_file_is_valid_or_a_config_error_naming_it(content, tmp_path):
    path = tmp_path / "config.yaml"
    path.write_bytes(content)
    try:
        load_config(path, ["data.train=train.jsonl"])
    except ConfigError as err:
        _check_config_error(err)
        assert str(err).startswith(str(path))


example_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    | st.sampled_from(["system", "user", "assistant", "tool", ""]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["messages", "role", "content", "prompt", "completion", "id"]) | st.text(max_size=4), inner,
        max_size=4), max_leaves=10)
valid_examples = st.one_of(
    st.builds(lambda p, c: {"prompt": p, "completion": c}, st.text(max_size=20), st.text(max_size=20)),
    st.lists(st.builds(lambda r, c: {"role": r, "content": c}, st.sampled_from(["system", "user", "assistant"]),
                       st.text(max_size=20)), min_size=1, max_size=4).map(lambda m: {"messages": m}),
)
lines = st.one_of(
    valid_examples.map(json.dumps), example_values.map(json.dumps),
    st.text(max_size=30).map(lambda t: t.replace("\n", " ")),
    st.just('{"prompt": "\\ud800", "completion": "x"}'),  # a lone surrogate: valid JSON, not valid text
    st.just("[" * 5000),
).map(lambda line: line.encode("utf-8", "surrogatepass")) | st.binary(max_size=20).filter(lambda b: b"\n" not in b)

TOKENIZER = make_tiny_tokenizer()


def _check_data_error(err: Exception, path):
    assert isinstance(err, DataFormatError), f"{type(err).__name__}: {err}"
    assert str(err).startswith(str(path)) and "\n" not in str(err)


@SETTINGS
@given(file_lines=st.lists(lines, max_size=6), limit=st.none() | st.integers(min_value=1, max_value=5))
def test_any_jsonl_file_gives_examples_or_a_data_error_naming_file_and_line(file_lines, limit, tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_bytes(b"\n".join(file_lines))
    try:
        examples = read_jsonl(path)
        tokenize_examples(examples, TOKENIZER, max_length=32, source=str(path))
        from talr.config import DatasetSpec

        assert len(load_train_examples(DatasetSpec(path=str(path), limit=limit))[0]) == min(limit or 10**9,
                                                                                            len(examples))
    except Exception as err:  # noqa: BLE001 - the property is about which exceptions escape
        _check_data_error(err, path)


@pytest.mark.parametrize("bad, message", [
    (b"\xff\xfe", "not UTF-8 text"),
    ('{"prompt": "\\ud800", "completion": "x"}'.encode(), "'prompt' is not valid Unicode"),
    (b"[" * 5000, "JSON nested too deeply"),
])
def test_a_data_error_names_the_line(tmp_path, bad, message):
    path = tmp_path / "train.jsonl"
    path.write_bytes(b'{"prompt": "a", "completion": "b"}\n\n' + bad + b"\n")
    with pytest.raises(DataFormatError, match=f"^{re.escape(str(path))}:3: {message}"):
        read_jsonl(path)


field_values = st.one_of(st.text(max_size=12), st.integers(), st.none(), st.sampled_from(["E", "S", "C", "I", "#### 4",
                                                                                          "x\n#### 12", "2", "69"]))


def _json_rows(fields):
    row = st.fixed_dictionaries({}, optional={name: field_values for name in fields})
    return st.lists(row.map(json.dumps).map(str.encode) | lines, max_size=6).map(b"\n".join)


def _csv_rows(columns):
    header = ",".join(f'"{c}"' for c in columns).encode()
    cell = st.text(max_size=8).map(lambda t: '"' + t.replace('"', '""') + '"') | st.sampled_from(['"2"', '"', ""])
    row = st.lists(cell, min_size=len(columns) - 1, max_size=len(columns) + 1).map(",".join).map(str.encode)
    return st.lists(row | st.binary(max_size=12), max_size=5).map(lambda rows: b"\n".join([header, *rows])) \
        | st.binary(max_size=40)


def _source_files():
    from talr.data import esci, math, medcalc

    return st.one_of(
        _json_rows(esci.FIELDS).map(lambda b: ("esci", esci.FILE, b)),
        _json_rows(("question", "answer")).map(lambda b: ("gsm8k", math.FILES["train"], b)),
        _csv_rows(medcalc.COLUMNS).map(lambda b: ("medcalc_bench", medcalc.FILES["train"], b)),
    )


@SETTINGS
@given(case=_source_files())
def test_any_source_file_gives_examples_or_a_data_error_naming_it(case, tmp_path_factory):
    from talr.config import DatasetSpec

    source, relative, content = case
    data_dir = tmp_path_factory.mktemp("data")
    path = data_dir / relative
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    try:
        examples, _ = load_train_examples(DatasetSpec(source=source, split="train", data_dir=str(data_dir)))
    except Exception as err:  # noqa: BLE001 - the property is about which exceptions escape
        _check_data_error(err, path)
        return
    for example in examples:
        assert example["messages"][-1]["role"] == "assistant"
