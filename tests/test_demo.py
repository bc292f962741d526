import json

from talr.data.sources import load_sft_examples
from talr.demo import GENERAL_ANSWERS_FILE, DemoSize, demo_sweep, write_synthetic_data
from talr.evaluation.registry import get_task
from talr.sweep import grid_points, validate_sweep


def test_synthetic_data_folder_feeds_the_real_loaders_and_tasks(tmp_path):
    size = DemoSize(train_rows=12, eval_rows=6, ifeval_rows=5)
    root = write_synthetic_data(tmp_path / "data", size)
    train = load_sft_examples("medcalc_bench", split="train", fmt="label", data_dir=root)
    assert len(train) == 12 and train[0]["messages"][-1]["role"] == "assistant"
    docs, total = get_task("medcalc_label").load(root, None)
    assert total == 6 and len(docs) == 6
    ifeval_docs, _ = get_task("ifeval").load(root, None)
    assert len(ifeval_docs) == 5

    answers = root / GENERAL_ANSWERS_FILE
    answers.parent.mkdir(parents=True)
    answers.write_text(json.dumps({"id": "g1", "messages": [{"role": "user", "content": "Hi?"},
                                                             {"role": "assistant", "content": "Hello."}]}) + "\n")
    docs, _ = get_task("codelength_general_answers").load(root, None)
    assert docs == [{"id": "g1", "messages": [{"role": "user", "content": "Hi?"}], "response": "Hello."}]

    sweep = demo_sweep(tmp_path / "out", root, real_data=False, size=size)
    validate_sweep(sweep)
    points = grid_points(sweep)
    assert {p.method for p in points} == {"sft", "talr"} and len(points) == 2 * len(size.learning_rates)
