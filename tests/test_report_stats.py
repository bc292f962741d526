"""The report's statistics on a synthetic sweep with per-item samples: seed-averaged errors, sanity baselines and
collapse flags, points kept off the Pareto front, matched gain along probes, the committed-record round trip, and
the sweep's power warning."""

import gzip
import json
import shutil

import numpy as np
import pytest
import yaml

from talr import report, stats
from talr.report_baselines import NO_LABEL, baseline
from talr.report_data import grouped_points, item_matrix, task_stderr
from talr.sweep_record import write_record

GOLD = ["Irrelevant"] * 8 + ["Exact"] * 6 + ["Substitute"] * 4 + ["Complement"] * 2  # majority: 8 / 20
ARC_GOLD = [i % 4 for i in range(20)]
RNG = np.random.default_rng(7)


def _esci_predictions(correct: int, offset: int = 0) -> list[str]:
    """``correct`` right answers (rotating which items), the rest shifted to the next label."""
    labels = ["Exact", "Substitute", "Complement", "Irrelevant"]
    order = [(i + offset) % 20 for i in range(20)]
    preds = list(GOLD)
    for i in order[correct:]:
        preds[i] = labels[(labels.index(GOLD[i]) + 1) % 4]
    return preds


POINTS = {  # name -> (esci predictions, arc correct count, general code-length factor)
    "base": (_esci_predictions(2), 10, 1.0),
    "sft_lr2e-06_seed0": (_esci_predictions(8, 1), 10, 1.01),
    "sft_lr2e-06_seed1": (_esci_predictions(9, 2), 9, 1.01),
    "sft_lr5e-05_seed0": (["Irrelevant"] * 20, 7, 1.05),  # collapsed: 40 % = the majority baseline
    "sft_lr5e-05_seed1": (["Irrelevant"] * 19 + ["Exact"], 6, 1.06),
    "talr_lr2e-06_seed0": (_esci_predictions(6, 3), 10, 1.0),
    "talr_lr2e-06_seed1": (_esci_predictions(7, 4), 10, 1.005),
    "talr_lr5e-05_seed0": (_esci_predictions(12, 5), 9, 1.02),
    "talr_lr5e-05_seed1": (_esci_predictions(11, 6), 7, 1.03),
}
TOKENS = RNG.integers(20, 80, size=20)
BASE_BITS = TOKENS * RNG.uniform(2.0, 4.0, size=20)


def _write_point(directory, preds, arc_correct, factor, seed_noise):
    eval_dir = directory / "eval"
    eval_dir.mkdir(parents=True)
    esci_rows = [{"doc_id": f"e{i}", "prompt": "q", "target": g, "extracted": p,
                  "scores": {"acc,none": float(g == p)}} for i, (g, p) in enumerate(zip(GOLD, preds))]
    arc_rows = [{"doc_id": f"a{i}", "prompt": [["q", c] for c in "abcd"], "target": g,
                 "extracted": {"acc": g if i < arc_correct else (g + 1) % 4, "acc_norm": g},
                 "scores": {"acc,none": float(i < arc_correct), "acc_norm,none": 1.0}} for i, g in enumerate(ARC_GOLD)]
    bits = BASE_BITS * factor + seed_noise
    code_rows = [{"doc_id": f"c{i}", "prompt": "p", "target": None, "extracted": None,
                  "scores": {"bits": float(b), "n_tokens": int(n)}} for i, (b, n) in enumerate(zip(bits, TOKENS))]
    for task, rows in (("esci", esci_rows), ("arc_easy", arc_rows), ("codelength_alpaca", code_rows)):
        (eval_dir / f"samples_{task}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    acc = [r["scores"]["acc,none"] for r in esci_rows]
    arc = [r["scores"]["acc,none"] for r in arc_rows]
    bpt, bpt_se = stats.ratio_of_sums_with_se(bits, TOKENS)
    results = {
        "results": {
            "esci": {"acc,none": stats.mean(acc), "acc_stderr,none": stats.mean_stderr(acc),
                     "macro_f1,none": stats.macro_f1(GOLD, preds)},
            "arc_easy": {"acc,none": stats.mean(arc), "acc_stderr,none": stats.mean_stderr(arc)},
            "codelength_alpaca": {"bits_per_token,none": bpt, "bits_per_token_stderr,none": bpt_se},
        },
        "configs": {"esci": {"generation_kwargs": {"max_new_tokens": 16}}},
        "higher_is_better": {"esci": {"acc": True, "macro_f1": True}, "arc_easy": {"acc": True},
                             "codelength_alpaca": {"bits_per_token": False}},
    }
    (eval_dir / "results.json").write_text(json.dumps(results))


@pytest.fixture()
def esci_sweep(tmp_path):
    root = tmp_path / "esci"
    (root / "runs").mkdir(parents=True)
    (root / "sweep.yaml").write_text(yaml.safe_dump({
        "name": "esci", "eval": {"domain": ["esci"], "general": ["arc_easy", "codelength_alpaca"], "limit": 20,
                                 "max_new_tokens": 16},
        "train": {"model": "tiny"},
    }))
    for k, (name, (preds, arc, factor)) in enumerate(POINTS.items()):
        directory = root / name if name == "base" else root / "runs" / name
        _write_point(directory, preds, arc, factor, seed_noise=0.0 if name == "base" else 0.3 * (k % 2))
        if name != "base":
            method, lr, seed = name.split("_")
            (directory / "point.json").write_text(json.dumps(
                {"name": name, "method": method, "learning_rate": float(lr[2:]), "seed": int(seed[4:]),
                 "alpha": None}))
    return root


def _group(sweep, method, lr):
    return next(p for p in grouped_points(sweep) if p.method == method and p.learning_rate == lr)


def test_seed_averaged_error_is_the_variance_components_error(esci_sweep):
    sweep = report.load_sweep(esci_sweep)
    point = _group(sweep, "talr", 5e-5)
    assert point.seed == 2 and point.scores["arc_easy"] == pytest.approx((0.45 + 0.35) / 2)
    matrix, _ = item_matrix(sweep, point.members, "arc_easy")
    # seeds disagree on items 7 and 8 only: rows [1]*9 + [0]*11 and [1]*7 + [0]*13
    assert matrix.sum(axis=1).tolist() == [9.0, 7.0]
    expected = stats.seed_averaged(matrix)
    assert task_stderr(sweep, point, "arc_easy") == pytest.approx(expected.stderr)
    assert expected.seed_variance > 0  # the spread between the seeds adds to the item error
    assert expected.stderr > expected.item_stderr
    # code length enters linearised: its seed mean is the pooled bits per token of each seed, averaged
    bits = item_matrix(sweep, point.members, "codelength_alpaca")[0]
    assert bits.mean() == pytest.approx(point.scores["codelength_alpaca"])


def test_baselines_flag_the_collapsed_point_at_the_majority_rate(esci_sweep):
    sweep = report.load_sweep(esci_sweep)
    collapsed = next(p for p in sweep.points if p.name == "sft_lr5e-05_seed0")
    b = baseline(sweep, collapsed, "esci")
    assert (b.chance, b.majority, b.majority_label, b.collapsed) == (0.25, 0.4, "Irrelevant", "Irrelevant")
    assert b.macro_f1 == pytest.approx(stats.macro_f1(GOLD, ["Irrelevant"] * 20))
    assert baseline(sweep, collapsed, "arc_easy").chance == 0.25  # four choices per item
    assert baseline(sweep, collapsed, "codelength_alpaca") is None
    text = "\n".join(report.baseline_lines(sweep))
    # macro-F1's chance level, 2 n_c / (N + K n_c) averaged over the four labels, and always answering the majority
    assert b.guess_macro_f1 == pytest.approx(np.mean([2 * n / (20 + 4 * n) for n in (8, 6, 4, 2)]))
    assert b.majority_macro_f1 == pytest.approx(b.macro_f1)  # this point does answer the majority every time
    assert ("**esci** (20 items): chance 25.0 %, majority class 'Irrelevant' 40.0 %; macro-F1 of a uniform random "
            "guess 0.236, always 'Irrelevant' 0.143.") in text
    assert ("| sft_lr5e-05_seed0 | 40.0 | 0.143 | Irrelevant: 20 | collapsed onto 'Irrelevant'; ≤ majority; "
            "macro-F1 ≤ random guess |") in text
    # 19 of 20 is 95 %: collapsed too, and 40 % is still not above the majority rate
    assert "| sft_lr5e-05_seed1 | 40.0 |" in text and "Irrelevant: 19, Exact: 1 | collapsed onto 'Irrelevant'" in text


def test_evaluator_baselines_in_results_json_are_used(esci_sweep):
    path = esci_sweep / "runs" / "talr_lr5e-05_seed0" / "eval" / "results.json"
    results = json.loads(path.read_text())
    # the evaluator's keys, even listed first, are not mistaken for the task's primary metric
    results["results"]["esci"] = {"chance,none": 0.25, "majority,none": 0.5, "majority_label": "Exact",
                                  "pred_distribution": {"Exact": 19, "Irrelevant": 1}, **results["results"]["esci"]}
    path.write_text(json.dumps(results))
    sweep = report.load_sweep(esci_sweep)
    point = next(p for p in sweep.points if p.name == "talr_lr5e-05_seed0")
    assert sweep.metric_names["esci"] == "acc,none" and point.scores["esci"] == 0.6
    b = baseline(sweep, point, "esci")
    assert (b.chance, b.majority, b.majority_label, b.collapsed) == (0.25, 0.5, "Exact", "Exact")
    # a model that answers nothing usable has collapsed too: onto "no label"
    results["results"]["esci"]["pred_distribution"] = {"Exact": 1, "none": 19}  # as the evaluator writes it
    path.write_text(json.dumps(results))
    sweep = report.load_sweep(esci_sweep)
    assert baseline(sweep, next(p for p in sweep.points if p.name == point.name), "esci").collapsed == NO_LABEL


def test_no_gain_points_are_kept_off_the_front_and_out_of_the_matched_gain(esci_sweep):
    text = report.write_report(esci_sweep).read_text()
    assert ("Kept off the front: `sft_lr5e-05` (esci: sft_lr5e-05_seed0 collapsed onto 'Irrelevant'; esci: "
            "sft_lr5e-05_seed1 collapsed onto 'Irrelevant'; esci: 40.0 % ≤ majority baseline 40.0 %)") in text
    # the mean of sft at 2e-6 (42.5 %) is above the majority rate although one seed (40 %) is not
    assert "Kept off the front: `sft_lr2e-06`" not in text
    assert "`sft_lr5e-05`" not in text.split("Pareto front (accuracy):")[1].split("\n")[0]
    assert "| sft | 2 | 40.0 ± " in text and "† |" in text  # the table marks its domain change
    assert "left out as no gain: talr_lr2e-06, sft_lr5e-05" in text
    assert "Seeds per point: 2." in text
    assert "Generation budgets (new tokens): esci 16 (the benchmark's own: 32;" in text
    assert "Holm p = " in text and "MDE " in text
    assert "## Sanity baselines" in text


def test_record_round_trip_recomputes_the_same_numbers(esci_sweep, tmp_path):
    (esci_sweep / "runs" / "talr_lr5e-05_seed0" / "probes.jsonl").write_text(_probes([0, 1, 2], [0, 0.01, 0.02]))
    (esci_sweep / "runs" / "sft_lr5e-05_seed0" / "probes.jsonl").write_text(_probes([0, 1.5, 3], [0, 0.03, 0.06]))
    record = tmp_path / "record"
    record.mkdir()
    shutil.copy(esci_sweep / "sweep.yaml", record)
    write_record(esci_sweep, record)
    with gzip.open(record / "samples.jsonl.gz", "rt") as handle:
        first = json.loads(handle.readline())
    assert first["point"] == "base" and "prompt" not in first and {"doc_id", "target", "extracted"} <= set(first)
    original, copied = report.load_sweep(esci_sweep), report.load_sweep(record)
    assert copied.layout == "record" and copied.has_samples
    assert report.baseline_lines(copied) == report.baseline_lines(original)
    assert report.guidelines(copied) == report.guidelines(original)
    assert report.tables(copied) == report.tables(original)
    assert report.matched_gain_lines(copied) == report.matched_gain_lines(original) != []
    # the same bytes for the same samples (no timestamp in the gzip header)
    before = (record / "samples.jsonl.gz").read_bytes()
    write_record(esci_sweep, record)
    assert (record / "samples.jsonl.gz").read_bytes() == before
    assert "## Training curves" not in report.write_report(record).read_text()  # no run logs in a record


def test_make_record_bundles_a_sweep_into_a_folder_whose_report_needs_nothing_else(esci_sweep, tmp_path):
    from talr.sweep_record import make_record

    (esci_sweep / "runs" / "sft_lr5e-05_seed0" / "metrics.jsonl").write_text(
        json.dumps({"step": 1, "nll": 1.0, "hard_token_frac": 0.2, "tau": 0.5}) + "\n")
    (esci_sweep / "runs" / "sft_lr5e-05_seed0" / "probes.jsonl").write_text(_probes([0, 1.5, 3], [0, 0.03, 0.06]))
    record = tmp_path / "record"
    report_path = make_record(esci_sweep, record)
    assert report_path == record / "report.md"
    assert {"sweep.yaml", "results.json", "samples.jsonl.gz", "training_curves.png", "probes.png"} <= {
        p.name for p in record.iterdir()}
    shutil.rmtree(esci_sweep)  # the record stands alone
    assert report.write_report(record).read_text() == report_path.read_text()
    assert "## Training curves" in report_path.read_text()  # drawn from the run logs, kept as a figure
    assert "## Training-time probes" in report_path.read_text()
    with pytest.raises(FileNotFoundError, match="bundles a sweep folder made by talr sweep"):
        make_record(record, tmp_path / "again")


def test_report_record_flag_on_the_command_line(esci_sweep, tmp_path, capsys):
    from talr.cli import main

    assert main(["report", str(esci_sweep), "--record", str(tmp_path / "record")]) == 0
    assert f"Record: {tmp_path / 'record'}" in capsys.readouterr().out
    assert (tmp_path / "record" / "report.md").is_file()
    assert main(["report", str(tmp_path / "record"), "--record", str(tmp_path / "again")]) == 2  # one-line error


def test_a_bad_record_line_is_named(esci_sweep, tmp_path):
    record = tmp_path / "record"
    record.mkdir()
    shutil.copy(esci_sweep / "sweep.yaml", record)
    write_record(esci_sweep, record)
    with gzip.open(record / "samples.jsonl.gz", "at") as handle:
        handle.write('{"task": "esci"}\n')  # no point
    lines = gzip.open(record / "samples.jsonl.gz", "rt").read().count("\n")
    with pytest.raises(ValueError, match=f"samples.jsonl.gz: line {lines}: 'point'"):
        report.load_sweep(record)


def test_a_record_without_samples_says_so(esci_sweep, tmp_path):
    record = tmp_path / "record"
    record.mkdir()
    shutil.copy(esci_sweep / "sweep.yaml", record)
    write_record(esci_sweep, record)
    (record / "samples.jsonl.gz").unlink()
    text = report.write_report(record).read_text()
    assert "**Per-item samples are not in this record**" in text
    assert "unpaired: difference" in text and "paired: difference" not in text.replace("unpaired: difference", "")


def _probes(gains, costs):
    """probes.jsonl lines of a run whose probes measured these domain gains and general costs (bits/token)."""
    return "".join(json.dumps({"probe": "codelength", "step": 10 * i, "domain_delta_bits_per_token": -g,
                               "domain_delta_bits_per_token_se": 0.01, "general_delta_bits_per_token": c,
                               "general_delta_bits_per_token_se": 0.002}) + "\n"
                   for i, (g, c) in enumerate(zip(gains, costs)))


def test_matched_gain_along_the_probes(esci_sweep):
    probes = _probes
    (esci_sweep / "runs" / "talr_lr5e-05_seed0" / "probes.jsonl").write_text(probes([0, 1, 2], [0, 0.01, 0.02]))
    (esci_sweep / "runs" / "sft_lr5e-05_seed0" / "probes.jsonl").write_text(probes([0, 1.5, 3], [0, 0.03, 0.06]))
    lines = "\n".join(report.matched_gain_lines(report.load_sweep(esci_sweep)))
    # at gain 2 (TALR's last probe): TALR +0.02; SFT's line 0.02 per unit gain gives +0.04
    assert "- lr 5e-05, seed 0: at domain gain 2.000 bits/token" in lines
    assert "rose +0.0200 ± 0.0020 under TALR and +0.0400 ± " in lines
    assert "TALR minus SFT -0.0200 ± " in lines


@pytest.mark.skipif(not (__import__("talr.paths").paths.data_dir() / "esci").is_dir(), reason="no benchmark data")
def test_sweep_warns_when_the_planned_items_cannot_detect_the_difference_that_matters(tmp_path, caplog):
    from talr.sweep import EvalConfig, SweepConfig, power_warnings

    sweep = SweepConfig(eval=EvalConfig(domain=["esci", "codelength_esci"], general=["arc_easy"], limit=24,
                                        min_difference=0.05))
    lines = power_warnings(sweep)
    # 24 items, per-item difference SD 0.5: MDE 2.8016 * 0.5 / sqrt(24) = 28.6 points; 5 points need
    # 24 * (28.6 / 5)^2 = 785 items. Code length is not a proportion and is not checked.
    assert lines == [
        f"{task}: 24 items detect a paired difference of 28.6 points (80 % power, alpha 0.05, points disagreeing on "
        "25% of items), not the 5.0 points of eval.min_difference: about 785 items would" for task in ("esci",
                                                                                                       "arc_easy")]
    sweep.eval.limit = None  # ARC-Easy's 2,376 test items: MDE 2.9 points, enough
    assert not any(line.startswith("arc_easy") for line in power_warnings(sweep))
    # a panel stands for its tasks, each at its own N capped by eval.limit; general_text is code length
    sweep.eval.general, sweep.eval.limit = ["general_panel"], 40
    assert [line.split(":")[0] for line in power_warnings(sweep)] == ["esci", "arc_easy", "piqa"]
    assert all(" 40 items " in line for line in power_warnings(sweep))
    sweep.eval.min_difference = None
    assert power_warnings(sweep) == []


def test_matched_gain_is_not_tested_when_the_gains_do_not_overlap(esci_sweep):
    """Every TALR and SFT point below the majority rate: no curve beyond the base model, so no matched-gain verdict."""
    for name in ("talr_lr5e-05_seed0", "talr_lr5e-05_seed1"):
        shutil.rmtree(esci_sweep / "runs" / name / "eval")
        _write_point(esci_sweep / "runs" / name, ["Irrelevant"] * 20, 9, 1.02, 0.0)
    lines = report.guidelines(report.load_sweep(esci_sweep))
    assert ("- **TALR vs SFT at matched domain gain**: not tested — the two methods' domain gains do not overlap, "
            "or are no gains.") in lines
    assert not any("general cost TALR" in line for line in lines)


def _text_sweep(root, general, factor=1.05):
    """A base and one point evaluated on arc_easy, openbookqa (in the panel when the sweep ran) and general_text."""
    (root / "runs").mkdir(parents=True)
    (root / "sweep.yaml").write_text(yaml.safe_dump({"name": "t", "eval": {"domain": ["esci"], "general": general},
                                                     "train": {"model": "tiny"}}))
    bytes_ = RNG.integers(100, 400, size=20)
    for name, factor in (("base", 1.0), ("sft_lr0.0001_seed0", factor)):
        directory = root / name if name == "base" else root / "runs" / name
        eval_dir = directory / "eval"
        eval_dir.mkdir(parents=True)
        bits = BASE_BITS * factor
        kl = 0.0 if name == "base" else 0.05
        rows = {"general_text": [{"doc_id": i, "scores": {"bits": float(b), "n_tokens": int(t), "bytes": int(n),
                                                          "kl_nats": kl * int(t)}}
                                 for i, (b, t, n) in enumerate(zip(bits, TOKENS, bytes_))],
                "esci": [{"doc_id": i, "target": g, "extracted": g, "scores": {"acc,none": 1.0}}
                         for i, g in enumerate(GOLD)]}
        rows["arc_easy"] = rows["openbookqa"] = [{"doc_id": i, "scores": {"acc,none": float(i % 2)}} for i in range(20)]
        for task, task_rows in rows.items():
            (eval_dir / f"samples_{task}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in task_rows))
        results = {task: {"acc,none": 0.5, "acc_stderr,none": 0.1} for task in ("esci", "arc_easy", "openbookqa")}
        results["general_text"] = {"bits_per_byte,none": float(bits.sum() / bytes_.sum()),
                                   "bits_per_byte_stderr,none": 0.01}
        (eval_dir / "results.json").write_text(json.dumps({"results": results}))
        if name != "base":
            (directory / "point.json").write_text(json.dumps(
                {"name": name, "method": "sft", "learning_rate": 1e-4, "seed": 0, "alpha": None}))
    return bits, bytes_


def test_code_length_per_byte_gets_its_error_per_byte(tmp_path):
    from talr.report_data import load_sweep

    bits, bytes_ = _text_sweep(tmp_path / "s", ["general_text"])
    sweep = load_sweep(tmp_path / "s")
    point = next(p for p in sweep.points)
    assert task_stderr(sweep, point, "general_text") == pytest.approx(stats.ratio_of_sums_with_se(bits, bytes_)[1])


def test_a_panel_stands_for_the_tasks_the_record_evaluated_under_it(tmp_path):
    from talr.report_data import load_sweep

    _text_sweep(tmp_path / "s", ["general_panel"])  # openbookqa was in the panel then; it is not now
    sweep = load_sweep(tmp_path / "s")
    assert sweep.domain == ["esci"] and sweep.general == ["arc_easy", "openbookqa", "general_text"]


@pytest.mark.parametrize("factor, regime", [(1.05, True), (1.0, False)])
def test_the_report_says_whether_the_largest_rate_forgets(tmp_path, factor, regime):
    from talr.report_data import load_sweep
    from talr.report_verdicts import forgetting_lines

    bits, bytes_ = _text_sweep(tmp_path / "s", ["arc_easy", "general_text"], factor)
    text = "\n".join(forgetting_lines(load_sweep(tmp_path / "s")))
    assert "| sft lr 0.0001 | 1 | +0.0 ± 0.0 |" in text  # arc_easy: the same answers as the base
    assert "| 0.0500 ± 0.0000 |" in text  # KL(base || model) per token, pooled over the texts
    expected = (bits.sum() - bits.sum() / factor) / bytes_.sum()
    assert f"{expected:+.4f}" in text
    assert ("the grid reaches a regime where forgetting happens" in text) is regime
    assert ("does not reach a regime where forgetting happens" in text) is not regime


def test_the_verdicts_say_what_each_finding_comes_to(esci_sweep, monkeypatch):
    from talr import report_verdicts

    def verdicts():
        return report.write_report(esci_sweep).read_text().split("## Verdicts on the paper's two findings")[1]

    text = verdicts()
    # SFT's largest rate collapsed onto the majority label: no gain, so no comparison at similar gain
    assert "SFT at lr 5e-05 left out of finding 1 (accuracy)" in text
    assert "fewer than two SFT rates with a domain gain: **cannot be told**" in text
    # TALR vs SFT at the largest gain both curves reach (the guidelines' matched gain, as a 95 % interval)
    assert ("SFT's cost minus TALR's: -4.3 points, 95 % CI [-15.8, +7.1]: **cannot be told at this N** (the data "
            "exclude an effect in the predicted direction larger than 7.1 points)") in text
    # LoRA and TALR on LoRA at one rate (copies of the sft and talr runs at 5e-5): sft's collapsed, so no trade-off
    for method, source in (("lora", "sft"), ("lora_talr", "talr")):
        for seed in (0, 1):
            target = esci_sweep / "runs" / f"{method}_lr5e-05_seed{seed}"
            shutil.copytree(esci_sweep / "runs" / f"{source}_lr5e-05_seed{seed}", target)
            point = json.loads((target / "point.json").read_text())
            (target / "point.json").write_text(json.dumps({**point, "name": target.name, "method": method}))
    text = verdicts()
    assert "Finding 2 on LoRA (accuracy, lr 5e-05, equal rate)" in text
    assert "; but lora learnt no domain gain (see Sanity baselines), so this is no trade-off: **cannot be told**" in text
    # no gain anywhere: nothing on either curve to match
    monkeypatch.setattr(report_verdicts, "no_gain_reasons", lambda sweep, point: ["no gain"])
    assert "no domain gain on TALR's or SFT's learning-rate curve to match: **cannot be told**" in verdicts()
    # counted as a gain, the large rate's general accuracy fell 17.5 points against 2.5 at the small rate
    monkeypatch.setattr(report_verdicts, "no_gain_reasons", lambda sweep, point: [])
    text = verdicts()
    assert ("SFT at lr 2e-06 changed the domain side +32.5 points and the general side -2.5 points; at lr 5e-05, "
            "+30.0 and -17.5. General side, small minus large: +15.0 points, 95 % CI [+0.6, +29.4]: **holds**") in text


def test_a_verdict_is_the_side_of_zero_its_interval_is_on():
    from talr.report_verdicts import _verdict

    assert _verdict(3.0, 1.0, "{:+.1f}", "points").endswith("**holds**")
    assert "**does not hold** (the opposite is measured)" in _verdict(-3.0, 1.0, "{:+.1f}", "points")
    assert "**cannot be told at this N**" in _verdict(1.0, 1.0, "{:+.1f}", "points")
    assert "**cannot be told**" in _verdict(1.0, None, "{:+.1f}", "points")


def test_a_domain_read_by_code_length_is_set_against_general_accuracy(esci_sweep):
    """The math study's shape: the domain has only a code-length task (a small model solves ~0 of GSM8K), the
    general side has accuracies: one axis pairs the domain's −ΔL with the general average."""
    from talr.report_data import load_sweep

    config = yaml.safe_load((esci_sweep / "sweep.yaml").read_text())
    config["eval"].update(domain=["codelength_alpaca"], general=["arc_easy"])
    (esci_sweep / "sweep.yaml").write_text(yaml.safe_dump(config))
    sweep = load_sweep(esci_sweep)
    assert sweep.kinds() == ["bits_score"]
    sft = _group(sweep, "sft", 5e-05)
    assert sweep.change(sft, "general", "bits_score") == pytest.approx(100 * (0.325 - 0.5))  # arc: 6.5 of 20 vs 10
    assert sweep.change(sft, "domain", "bits_score") == sweep.axis(sft, "domain", "bits")  # −ΔL, bits
    text = report.write_report(esci_sweep).read_text()
    assert "*Measured on domain code length, general accuracy (domain change in bits/token, general in points):*" in text
    assert "| general avg (%) | Δ general avg (pts) | −ΔL domain |" in text
    assert (esci_sweep / "tradeoff_codelength_accuracy.png").stat().st_size > 10_000


def test_without_samples_the_forgetting_check_says_it_cannot_tell(tmp_path):
    from talr.report_data import load_sweep
    from talr.report_verdicts import forgetting_lines

    _text_sweep(tmp_path / "s", ["arc_easy", "general_text"])
    for path in (tmp_path / "s").rglob("samples_*.jsonl"):
        path.unlink()
    text = "\n".join(forgetting_lines(load_sweep(tmp_path / "s")))
    assert "Not checked: this record has no per-item samples" in text
    assert "does not reach a regime" not in text
