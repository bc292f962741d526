"""The dataset registry: lookup, seeded limits, formats, on small generated files and on the real data."""

import csv
import json

import pytest

from talr import paths
from talr.data import esci, math, medcalc, sources


@pytest.fixture()
def data_dir(tmp_path):
    """Tiny files laid out like shared/data: 6 GSM8K rows, 4 MedCalc rows, 10 ESCI rows."""
    gsm = tmp_path / math.FILES["train"]
    gsm.parent.mkdir(parents=True)
    gsm.write_text("".join(json.dumps({"question": f"q{i}", "answer": f"{i}+1 = <<{i}+1={i + 1}>>{i + 1}\n#### {i + 1}"}) + "\n"
                           for i in range(6)))
    (tmp_path / math.FILES["test"]).write_text(gsm.read_text())
    calc = tmp_path / medcalc.FILES["train"]
    calc.parent.mkdir(parents=True)
    with calc.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=medcalc.COLUMNS)
        writer.writeheader()
        for i in range(4):
            writer.writerow({**{c: "x" for c in medcalc.COLUMNS}, "Row Number": str(i + 1), "Calculator ID": "4",
                             "Ground Truth Answer": str(i), "Ground Truth Explanation": f"Score is {i}."})
    shop = tmp_path / esci.FILE
    shop.parent.mkdir(parents=True)
    shop.write_text("".join(json.dumps({"query_id": i // 2, "query": f"q{i // 2}", "product_id": f"P{i}",
                                        "esci_label": "ESCI"[i % 4], "product_title": f"t{i}"}) + "\n" for i in range(10)))
    return tmp_path


def test_registry_names_and_unknown_source():
    assert set(sources.SOURCES) == {"medcalc_bench", "esci", "gsm8k"}
    assert sources.SOURCES["gsm8k"] is math
    with pytest.raises(ValueError, match="known: medcalc_bench, esci, gsm8k"):
        sources.get_source("metamathqa")


def test_every_source_has_the_contract():
    for module in sources.SOURCES.values():
        for name in ("load_rows", "to_sft_example", "eval_messages", "score", "aggregate"):
            assert callable(getattr(module, name))
        assert module.DEFAULT_FORMAT in module.FORMATS and "train" in module.SPLITS and "test" in module.SPLITS


def test_load_sft_examples_defaults_and_formats(data_dir):
    examples = sources.load_sft_examples("gsm8k", data_dir=data_dir)
    assert [e["id"] for e in examples] == [f"train-{i}" for i in range(6)]  # no limit: file order
    assert examples[0]["messages"][-1]["content"].endswith("#### 1\nThe answer is: 1")
    assert examples[0]["meta"] == {"source": "gsm8k", "format": "reasoning"}
    label = sources.load_sft_examples("medcalc_bench", fmt="label", data_dir=data_dir)
    assert json.loads(label[2]["messages"][-1]["content"]) == {"answer": "2"}
    assert sources.load_sft_examples("esci", data_dir=data_dir)[0]["messages"][-1]["content"] in esci.LABEL_WORDS.values()
    with pytest.raises(ValueError, match="known: label, reasoning"):
        sources.load_sft_examples("medcalc_bench", fmt="cot", data_dir=data_dir)
    with pytest.raises(ValueError, match="no rationale"):
        sources.load_sft_examples("esci", fmt="reasoning", data_dir=data_dir)


def test_limit_is_a_seeded_subset(data_dir):
    first = sources.load_sft_examples("gsm8k", limit=3, seed=1, data_dir=data_dir)
    again = sources.load_sft_examples("gsm8k", limit=3, seed=1, data_dir=data_dir)
    larger = sources.load_sft_examples("gsm8k", limit=5, seed=1, data_dir=data_dir)
    assert first == again and len(first) == 3
    assert [e["id"] for e in larger[:3]] == [e["id"] for e in first]
    orders = {tuple(e["id"] for e in sources.load_sft_examples("gsm8k", limit=6, seed=s, data_dir=data_dir))
              for s in range(5)}
    assert len(orders) > 1 and all(sorted(o) == sorted(f"train-{i}" for i in range(6)) for o in orders)
    assert sources.load_sft_examples("gsm8k", limit=0, data_dir=data_dir) == []
    with pytest.raises(ValueError, match="limit must be >= 0"):
        sources.load_sft_examples("gsm8k", limit=-1, data_dir=data_dir)


def test_load_eval_rows(data_dir):
    rows = sources.load_eval_rows("esci", data_dir=data_dir)
    train = sources.load_eval_rows("esci", split="train", data_dir=data_dir)
    assert len(rows) + len(train) == 10 and not {r["query_id"] for r in rows} & {r["query_id"] for r in train}
    assert [r["id"] for r in sources.load_eval_rows("gsm8k", limit=2, seed=3, data_dir=data_dir)] == \
           [r["id"] for r in sources.load_eval_rows("gsm8k", limit=2, seed=3, data_dir=data_dir)]


@pytest.mark.skipif(not (paths.data_dir() / medcalc.FILES["test"]).is_file(), reason="shared data folder not found")
def test_real_data_through_the_registry():
    counts = {name: len(sources.load_sft_examples(name)) for name in sources.SOURCES}
    assert counts == {"medcalc_bench": 1006, "esci": len(esci.load_rows("train")), "gsm8k": 7473}
    assert len(sources.load_eval_rows("medcalc_bench")) == 1047
    assert len(sources.load_eval_rows("gsm8k", limit=100)) == 100
