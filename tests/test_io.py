import json

import pytest

from talr.io import append_jsonl, atomic_write_json, read_jsonl_records, write_jsonl


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    atomic_write_json(tmp_path / "r.json", {"a": 1})
    atomic_write_json(tmp_path / "r.json", {"a": 2})
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_jsonl_round_trip_keeps_non_ascii(tmp_path):
    rows = [{"text": "déjà vu", "n": 1}, {"text": "日本", "n": 2}]
    path = write_jsonl(rows, tmp_path / "sub" / "rows.jsonl")
    assert "déjà" in path.read_text(encoding="utf-8")
    assert read_jsonl_records(path) == rows


def test_appended_log_drops_only_a_cut_off_last_line(tmp_path):
    path = tmp_path / "log.jsonl"
    append_jsonl(path, [{"step": 1}, {"step": 2}])
    with path.open("a") as handle:
        handle.write('{"step": 3, "lo')  # a kill mid-append
    assert read_jsonl_records(path) == [{"step": 1}, {"step": 2}]
    path.write_text('{"step": 1}\nnot json\n{"step": 3}\n')
    with pytest.raises(ValueError, match="log.jsonl:2"):
        read_jsonl_records(path)
