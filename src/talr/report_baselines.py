"""The sanity baselines of a classification task in ``talr report``: chance, majority class, macro-F1, the
predicted-label distribution and whether the predictions collapsed onto one label, for one point."""

from __future__ import annotations

from dataclasses import dataclass

from talr import stats
from talr.report_data import Point, Sweep

MAX_LABELS = 10  # a task whose targets take at most this many values (and fewer than half the items) is a label task
NO_LABEL = "(no label extracted)"  # what a collapse onto None predictions is reported as


@dataclass
class Baseline:
    """A classification task's sanity numbers for one point (from results.json when the evaluator wrote them,
    else computed from the per-item samples)."""

    chance: float | None
    majority: float | None
    majority_label: object
    macro_f1: float | None
    distribution: dict
    collapsed: object  # the label >= COLLAPSE_THRESHOLD of the predictions share, or None
    guess_macro_f1: float | None = None  # macro-F1's chance level: a uniform random guess (from the samples' gold)
    majority_macro_f1: float | None = None  # macro-F1 of answering the majority label for every item


def _prediction(row: dict, metric: str):
    extracted = row.get("extracted")
    if isinstance(extracted, dict):  # multiple choice: the chosen index per metric
        return extracted.get(metric.partition(",")[0])
    return extracted


def baseline(sweep: Sweep, point: Point, task: str) -> Baseline | None:
    """Chance, majority class, macro-F1 and predicted-label distribution of a classification task: the evaluator's
    own numbers when results.json has them, else computed from the samples (multiple choice: chance 1 / number of
    choices; label tasks, at most MAX_LABELS distinct targets: chance 1 / labels seen). None for other tasks or
    without either source."""
    metrics = point.results.get(task, {})
    rows = point.samples.get(task) or []
    metric = sweep.metric_names.get(task, "")
    preds = [_prediction(r, metric) for r in rows]
    gold = [r.get("target") for r in rows]
    hashable = rows and all(isinstance(g, (str, int)) for g in gold)
    multiple_choice = hashable and all(isinstance(r.get("extracted"), dict) for r in rows)
    labels = sorted({str(g) for g in gold}) if hashable else []
    label_task = hashable and not multiple_choice and len(labels) <= min(MAX_LABELS, len(rows) / 2)
    if "majority,none" in metrics:
        distribution = metrics.get("pred_distribution") or (stats.label_distribution(preds) if rows else {})
        return Baseline(metrics.get("chance,none"), metrics["majority,none"], metrics.get("majority_label"),
                        metrics.get("macro_f1,none"), distribution, _collapsed_label(distribution),
                        *_macro_f1_baselines(gold, preds, metrics.get("majority_label")) if hashable else ())
    if not (multiple_choice or label_task):
        return None
    if multiple_choice:
        chance = stats.mean([stats.chance_rate(r["n_choices"]) for r in rows]) if all(
            r.get("n_choices") for r in rows) else None
    else:
        chance = stats.chance_rate(len(set(labels) | {str(p) for p in preds if p is not None}))
    label, rate = stats.majority_rate(gold)
    f1 = metrics.get("macro_f1,none")
    if f1 is None and label_task:
        f1 = stats.macro_f1(gold, preds)
    distribution = stats.label_distribution(preds)
    return Baseline(chance, rate, label, f1, distribution, _collapsed_label(distribution),
                    *_macro_f1_baselines(gold, preds, label))


def _macro_f1_baselines(gold: list, preds: list, majority_label) -> tuple[float, float | None]:
    """Macro-F1 of a uniform random guess and of always answering the majority label, over the labels the point's
    macro-F1 counts (gold and predicted: sklearn's union)."""
    labels = stats.scored_labels(gold, preds)
    always = None
    if majority_label in labels:
        always = stats.macro_f1(gold, [majority_label] * len(gold), labels)
    return stats.uniform_guess_macro_f1(gold, labels), always


def _collapsed_label(distribution: dict):
    """:func:`talr.stats.collapsed_label`, with a collapse onto "nothing extracted" shown as NO_LABEL."""
    label = stats.collapsed_label(distribution)
    return NO_LABEL if label == stats.NO_LABEL else label
