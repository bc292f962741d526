"""The sweep report on hand-made results: the guideline sentences state the numbers, the cheap-signal agreement is
Spearman's rho, the Pareto front is the non-dominated set, and the figures are written."""

import json
from itertools import product

import numpy as np
import pytest
import yaml

from talr import report

GENERAL_SCORES = {  # name -> (domain accuracy, ifeval accuracy, alpaca bits/token)
    "base": (0.10, 0.50, 2.00),
    "sft_lr2e-06_seed0": (0.30, 0.48, 2.02),
    "sft_lr5e-05_seed0": (0.60, 0.30, 2.40),
    "talr_lr2e-06_seed0": (0.25, 0.49, 2.01),
    "talr_lr5e-05_seed0": (0.50, 0.40, 2.20),
}


def _results(domain: float, ifeval: float, bits: float, n: int = 100) -> dict:
    def acc(p):
        return {"acc,none": p, "acc_stderr,none": (p * (1 - p) / (n - 1)) ** 0.5}

    return {
        "results": {"medcalc_label": acc(domain), "ifeval": acc(ifeval),
                    "codelength_alpaca": {"bits_per_token,none": bits, "bits_per_token_stderr,none": 0.01}},
        "higher_is_better": {"medcalc_label": {"acc": True}, "ifeval": {"acc": True},
                             "codelength_alpaca": {"bits_per_token": False}},
    }


@pytest.fixture()
def sweep_dir(tmp_path):
    root = tmp_path / "demo"
    (root / "runs").mkdir(parents=True)
    (root / "sweep.yaml").write_text(yaml.safe_dump({
        "name": "demo", "eval": {"domain": ["medcalc_label"], "general": ["ifeval", "codelength_alpaca"], "limit": 100},
        "train": {"model": "tiny"},
    }))
    for name, values in GENERAL_SCORES.items():
        directory = root / name if name == "base" else root / "runs" / name
        (directory / "eval").mkdir(parents=True)
        (directory / "eval" / "results.json").write_text(json.dumps(_results(*values)))
        if name != "base":
            method, lr, _ = name.split("_")
            (directory / "point.json").write_text(json.dumps(
                {"name": name, "method": method, "learning_rate": float(lr[2:]), "seed": 0, "alpha": None}))
    return root


def test_guidelines_state_the_measured_changes(sweep_dir):
    lines = "\n".join(report.guidelines(report.load_sweep(sweep_dir)))
    # sft: general -2.0 points at the small lr, -20.0 at the large one; domain +20.0 and +50.0
    assert "**sft, learning rate**: at lr 2e-06 the general side changed -2.0 points (domain +20.0)" in lines
    # unpaired error of the sft difference: sqrt(.48 * .52 / 99 + .3 * .7 / 99) = 6.81 points; z = 18 / 6.81 = 2.64,
    # p = 0.0083; MDE 2.80 * 6.81 = 19.1; Holm over the five comparisons of the family (two learning-rate tests, two
    # TALR-vs-SFT tests at equal learning rate, the matched-gain test): 5 * 0.0083 = 0.041
    assert ("at lr 5e-05 it changed -20.0 (domain +50.0); small minus large, unpaired: difference +18.0 ± 6.8 points, "
            "MDE 19.1, p = 0.008, Holm p = 0.041: consistent with guideline 1") in lines
    # talr: 9 points apart, error sqrt(.49 * .51 / 99 + .4 * .6 / 99) = 7.03 points: p = 0.201, Holm 3 * 0.201
    assert "difference +9.0 ± 7.0 points, MDE 19.7, p = 0.201, Holm p = 0.602: no measurable difference" in lines
    # TALR vs SFT at lr 5e-05: general -10 vs -20, error sqrt(.4 * .6 / 99 + .3 * .7 / 99) = 6.74: p = 0.138,
    # MDE 2.80 * 6.74 = 18.9, Holm 4 * 0.138 = 0.552; at 2e-06: +1.0 ± 7.1, p = 0.888, Holm 1.000 (step-down max)
    assert ("**TALR vs SFT at lr 5e-05** (equal learning rate, not equal domain gain): the general side changed -10.0 "
            "points under TALR (domain +40.0) and -20.0 under SFT (domain +50.0); TALR minus SFT, unpaired: difference "
            "+10.0 ± 6.7 points, MDE 18.9, p = 0.138, Holm p = 0.552: no measurable difference") in lines
    assert "difference +1.0 ± 7.1 points, MDE 19.9, p = 0.888, Holm p = 1.000" in lines
    # matched gain: TALR reaches +40 domain points at a general cost of 10; SFT's curve (0, 0) - (20, 2) - (50, 20)
    # read at 40 gives 2 + (20 / 30) * 18 = 14
    assert ("**TALR vs SFT at matched domain gain** +40.0 points (the largest both reach, read off each method's "
            "learning-rate curve through the base model): general cost TALR +10.0 ± 7.3, SFT +14.0 ± 5.7; SFT's cost "
            "minus TALR's: difference +4.0 ± 9.3 points") in lines
    assert "p = 0.668, Holm p = 1.000: no measurable difference at matched gain" in lines  # 2 * 0.668, capped
    assert "*Measured on general / domain code length" not in lines  # no domain code-length task: no bits verdicts


def test_a_rate_beaten_on_both_sides_by_a_smaller_one_is_left_off_its_method_curve(sweep_dir):
    """An SFT rate with less domain gain and more general cost than a smaller SFT rate (past the useful range) is left
    off SFT's curve: sorted in by its gain it would put SFT's cost at +40 between it and the rate below, on a path SFT
    never takes. A small rate that a larger one beats stays: the path from the base goes through it."""
    from talr.report_verdicts import method_curve

    def add(name, lr, domain, ifeval):
        directory = sweep_dir / "runs" / name
        (directory / "eval").mkdir(parents=True)
        (directory / "eval" / "results.json").write_text(json.dumps(_results(domain, ifeval, 2.60)))
        (directory / "point.json").write_text(json.dumps(
            {"name": name, "method": "sft", "learning_rate": lr, "seed": 0, "alpha": None}))

    add("sft_lr2e-04_seed0", 2e-4, 0.45, 0.20)  # gain 35, cost 30: beaten by 5e-05 (gain 50, cost 20)
    add("sft_lr1e-06_seed0", 1e-6, 0.20, 0.40)  # gain 10, cost 10: beaten by 2e-06 (gain 20, cost 2), a larger rate
    sweep = report.load_sweep(sweep_dir)
    curve = method_curve(sweep, "sft", "score")
    assert curve.names == ["sft_lr1e-06_seed0", "sft_lr2e-06_seed0", "sft_lr5e-05_seed0"]
    assert curve.dominated == ["sft_lr2e-04_seed0"]
    assert [c for p in curve.points for c in (p.gain, p.cost)] == pytest.approx([0, 0, 10, 10, 20, 2, 50, 20])
    lines = "\n".join(report.guidelines(sweep))
    # as in test_guidelines_state_the_measured_changes: 2 + (20 / 30) * 18 = 14, not 30 - (5 / 15) * 10 = 26.7
    # read between 2e-04 (gain 35) and 5e-05 (gain 50)
    assert ("read off each method's learning-rate curve through the base model; left out as beaten on both sides by "
            "the base or a smaller rate: sft_lr2e-04_seed0): general cost TALR +10.0 ± 7.3, SFT +14.0 ± 5.7") in lines


def test_paired_stderr_uses_per_item_differences(sweep_dir):
    """With samples files, the noise of a difference is the spread of per-item differences on the shared items."""
    ifeval_a, ifeval_b = [1, 1, 0, 1, 0, 1], [1, 0, 0, 1, 0, 0]
    bits_a, bits_b, tokens = [10.0, 20.0, 30.0], [11.0, 23.0, 30.5], [5, 10, 10]
    for name, scores, bits in (("sft_lr2e-06_seed0", ifeval_a, bits_a), ("sft_lr5e-05_seed0", ifeval_b, bits_b)):
        eval_dir = sweep_dir / "runs" / name / "eval"
        (eval_dir / "samples_ifeval.jsonl").write_text("".join(
            json.dumps({"doc_id": i, "scores": {"acc,none": float(v)}}) + "\n" for i, v in enumerate(scores)))
        (eval_dir / "samples_codelength_alpaca.jsonl").write_text("".join(
            json.dumps({"doc_id": i, "scores": {"bits": b, "n_tokens": n}}) + "\n"
            for i, (b, n) in enumerate(zip(bits, tokens))))
    sweep = report.load_sweep(sweep_dir)
    a, b = (next(p for p in sweep.points if p.name == n) for n in ("sft_lr2e-06_seed0", "sft_lr5e-05_seed0"))
    diff = np.array(ifeval_a, float) - np.array(ifeval_b, float)
    assert report.paired_stderr(sweep, a, b, "general", "score") == pytest.approx(diff.std(ddof=1) / np.sqrt(6))
    # code length: sum(d) / sum(n) with the delta-method error of a ratio of sums over items
    d, n = np.array(bits_a) - np.array(bits_b), np.array(tokens, float)
    ratio = d.sum() / n.sum()
    expected = np.sqrt(((d - ratio * n) ** 2).sum() / (3 * 2)) / n.mean()
    assert report.paired_stderr(sweep, a, b, "general", "bits") == pytest.approx(expected)
    assert "small minus large, paired: difference" in "\n".join(report.guidelines(sweep))
    # two points with identical outcomes on every item: no difference, never "beyond two standard errors"
    (sweep_dir / "runs" / "sft_lr5e-05_seed0" / "eval" / "samples_ifeval.jsonl").write_text(
        (sweep_dir / "runs" / "sft_lr2e-06_seed0" / "eval" / "samples_ifeval.jsonl").read_text())
    sweep = report.load_sweep(sweep_dir)
    a, b = (next(p for p in sweep.points if p.name == n) for n in ("sft_lr2e-06_seed0", "sft_lr5e-05_seed0"))
    assert report.paired_stderr(sweep, a, b, "general", "score") == 0.0


def test_signal_agreement_is_spearman_over_the_points(sweep_dir):
    from scipy import stats

    sweep = report.load_sweep(sweep_dir)
    lines = report.signal_agreement(sweep)
    minus_delta_l = [2.00 - bits for _, _, bits in GENERAL_SCORES.values()]
    ifeval = [score for _, score, _ in GENERAL_SCORES.values()]
    rho = stats.spearmanr(minus_delta_l, ifeval).statistic
    assert rho == pytest.approx(1.0)
    assert f"- general average: Spearman rho = {rho:+.2f} over 5 points" in "\n".join(lines)


def test_pareto_front_is_the_non_dominated_set():
    points = [(x, y) for x, y in product([0.0, 1.0, 2.0], [0.0, 1.0, 2.0]) if x + y <= 2]
    assert [points[i] for i in report.pareto_front(points)] == [(0.0, 2.0), (1.0, 1.0), (2.0, 0.0)]
    assert report.pareto_front([(1.0, 1.0), (1.0, 1.0)]) == [0, 1]  # ties dominate neither


def test_report_is_written_with_its_figure(sweep_dir):
    text = report.write_report(sweep_dir).read_text()
    assert "## Does the cheap code-length signal track the general scores?" in text
    assert "![trade-off](tradeoff_accuracy.png)" in text
    assert (sweep_dir / "tradeoff_accuracy.png").stat().st_size > 10_000
    # every point trades domain for general here, so all four are on the front, by increasing domain score
    assert ("Pareto front (accuracy): `talr_lr2e-06_seed0`, `sft_lr2e-06_seed0`, `talr_lr5e-05_seed0`, "
            "`sft_lr5e-05_seed0`.") in text
