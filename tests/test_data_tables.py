"""Parquet files and datasets' save_to_disk folders as training data: same columns, same supervision, same errors."""

import pytest

pytest.importorskip("pyarrow")
datasets = pytest.importorskip("datasets")
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from talr.config import DatasetSpec  # noqa: E402
from talr.data import load_train_examples  # noqa: E402
from talr.data.formats import DataFormatError, read_jsonl, tokenize_examples  # noqa: E402
from talr.io import write_jsonl  # noqa: E402
from talr.data.tables import read_examples  # noqa: E402
from talr.testing import make_tiny_tokenizer  # noqa: E402

CHATS = [
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"Add {i} and 1."},
                  {"role": "assistant", "content": f"{i + 1}"}], "id": f"ex-{i}"}
    for i in range(3)
]
PAIRS = [{"prompt": f"Double {i}.", "completion": f"{2 * i}"} for i in range(3)]


def _parquet(rows, path):
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def _saved(rows, path):
    datasets.Dataset.from_list(rows).save_to_disk(str(path))
    return path


@pytest.mark.parametrize("rows", [CHATS, PAIRS], ids=["messages", "prompt_completion"])
@pytest.mark.parametrize("writer", [_parquet, _saved], ids=["parquet", "save_to_disk"])
def test_tables_give_the_jsonl_examples_and_features(tmp_path, rows, writer):
    name = "train.parquet" if writer is _parquet else "train_ds"
    table_examples = read_examples(writer(rows, tmp_path / name))
    jsonl_examples = read_jsonl(write_jsonl(rows, tmp_path / "train.jsonl"))
    assert table_examples == jsonl_examples
    tokenizer = make_tiny_tokenizer()
    assert tokenize_examples(table_examples, tokenizer, 64)[0] == tokenize_examples(jsonl_examples, tokenizer, 64)[0]


def test_dataset_dict_folder_reads_its_train_split(tmp_path):
    path = tmp_path / "dd"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(PAIRS),
                          "test": datasets.Dataset.from_list(PAIRS[:1])}).save_to_disk(str(path))
    assert read_examples(path) == PAIRS
    datasets.DatasetDict({"test": datasets.Dataset.from_list(PAIRS)}).save_to_disk(str(tmp_path / "no_train"))
    with pytest.raises(DataFormatError, match="without a 'train' split"):
        read_examples(tmp_path / "no_train")


def test_malformed_parquet_row_names_file_and_row(tmp_path):
    rows = [CHATS[0], {**CHATS[1], "messages": [{"role": "robot", "content": "hi"}]}, CHATS[2]]
    path = _parquet(rows, tmp_path / "bad.parquet")
    with pytest.raises(DataFormatError, match=r"bad.parquet:row 2: messages\[0\] has role 'robot'"):
        read_examples(path)


def test_malformed_saved_row_names_folder_and_row(tmp_path):
    rows = [*PAIRS, {"prompt": "No answer.", "completion": None}]
    path = _saved(rows, tmp_path / "bad_ds")
    with pytest.raises(DataFormatError, match="bad_ds:row 4: 'completion' is missing or not a string"):
        read_examples(path)


def test_unreadable_inputs(tmp_path):
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(DataFormatError, match="junk.parquet: not a readable parquet file"):
        read_examples(tmp_path / "junk.parquet")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(DataFormatError, match="empty_dir: not a folder written by datasets' save_to_disk"):
        read_examples(tmp_path / "empty_dir")
    with pytest.raises(FileNotFoundError, match="missing.parquet does not exist"):
        read_examples(tmp_path / "missing.parquet")


def test_config_path_may_be_a_table(tmp_path):
    path = _parquet(PAIRS * 4, tmp_path / "train.parquet")
    examples, source = load_train_examples(DatasetSpec(path=str(path), limit=5), seed=0)
    assert len(examples) == 5 and source == str(path) and all(e in PAIRS for e in examples)
