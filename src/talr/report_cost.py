"""The report's cost section: what a sweep took, in CPU time, from the facts its record keeps — each run's
``run.json`` facts (training) and each evaluation's ``task_timings`` (``cpu_seconds`` per task, all threads of the
process). Times from a run or an evaluation that was stopped and resumed cover only the part after the resume; they
are scaled to the whole (training by its steps, an evaluation task by its items) and marked."""

from __future__ import annotations

import statistics
from typing import NamedTuple

from talr.report_data import Point, Sweep


class CpuTime(NamedTuple):
    seconds: float
    scaled: bool = False  # scaled up from the part after a resume
    from_wall: bool = False  # wall time x torch threads (no CPU time recorded): an upper bound on shared cores


def training_cpu_seconds(run: dict) -> CpuTime | None:
    """CPU time of a whole training run: ``cpu_time_s`` when run.json has it, else training wall time x torch
    threads (a run.json from before cpu_time_s); a resumed run's time covers its steps since the checkpoint and is
    scaled to all steps. None without run facts."""
    from_wall = run.get("cpu_time_s") is None
    if not from_wall:
        seconds = float(run["cpu_time_s"])
    elif run.get("train_runtime_s") is not None:
        seconds = float(run["train_runtime_s"]) * int(run.get("torch_threads") or 1)
    else:
        return None
    steps, resumed = run.get("global_steps") or 0, run.get("resumed_from_step") or 0
    if 0 < resumed < steps:
        return CpuTime(seconds * steps / (steps - resumed), True, from_wall)
    return CpuTime(seconds, False, from_wall)


def task_rates(points: list[Point]) -> dict[str, float]:
    """Median CPU seconds per item of each task over the evaluations that computed items of it."""
    rates: dict[str, list[float]] = {}
    for point in points:
        for task, timing in point.timings.items():
            if timing.get("items_computed") and timing.get("cpu_seconds") is not None:
                rates.setdefault(task, []).append(timing["cpu_seconds"] / timing["items_computed"])
    return {task: statistics.median(values) for task, values in rates.items()}


def evaluation_cpu_seconds(point: Point, rates: dict[str, float]) -> CpuTime | None:
    """CPU seconds of a point's whole evaluation and whether any task was scaled: each task's own per-item rate
    times its items, or the median rate of the other evaluations when every item of it was computed by an earlier,
    interrupted call (its own timing then measured nothing). None without timings."""
    total, scaled = 0.0, False
    for task, timing in point.timings.items():
        items, computed = point.n_items.get(task), timing.get("items_computed") or 0
        if items is None or timing.get("cpu_seconds") is None:
            return None
        if computed:
            rate = timing["cpu_seconds"] / computed
        elif task in rates:
            rate = rates[task]
        else:
            return None
        scaled |= computed != items
        total += rate * items
    return CpuTime(total, scaled) if point.timings else None


def _minutes(value: CpuTime | None) -> str:
    if value is None:
        return "—"
    return f"{value.seconds / 60:.1f}{'*' if value.scaled else ''}{'~' if value.from_wall else ''}"


def cost_lines(sweep: Sweep) -> list[str]:
    """A table of each point's training and evaluation CPU minutes, the per-task evaluation cost and the total."""
    points = [p for p in (sweep.base, *sweep.points) if p is not None]
    rates = task_rates(points)
    if not rates and not any(p.run for p in points):
        return []
    costs = {p.name: (training_cpu_seconds(p.run), evaluation_cpu_seconds(p, rates)) for p in points}
    rows, measured = [], []
    for point in points:
        train, evaluation = costs[point.name]
        parts = [t for t in (train, evaluation) if t is not None]
        both = CpuTime(sum(t.seconds for t in parts), any(t.scaled for t in parts),
                       any(t.from_wall for t in parts)) if parts else None
        measured += parts
        rows.append(f"| {point.name} | {_minutes(train)} | {_minutes(evaluation)} | {_minutes(both)} |")
    machines = sorted({m for p in points if (m := _machine(p))})
    threads = sorted({t for p in points if (t := p.run.get("torch_threads"))})
    items = {task: n for p in points for task, n in p.n_items.items()}
    lines = [f"Measured on {'; '.join(machines) or 'an unrecorded machine'}"
             + (f", training with {', '.join(map(str, threads))} torch thread(s) per process" if threads else "")
             + ". CPU minutes, all threads of the process:", "",
             "| point | training | evaluation | both |", "|---|---|---|---|", *rows, "",
             "Evaluation per task, median over the evaluations that computed it: " + ", ".join(
                 f"{task} {rates[task] * items.get(task, 0) / 60:.1f} CPU-min ({items.get(task, 0)} items, "
                 f"{rates[task]:.2f} s/item)" for task in rates) + "."]
    trained = [t.seconds for p in sweep.points if (t := costs[p.name][0]) is not None]
    lines.append((f"Training, median over {len(trained)} trained points: {statistics.median(trained) / 60:.1f} "
                  "CPU-min. " if trained else "") + f"Total: {sum(t.seconds for t in measured) / 3600:.1f} CPU-hours.")
    untimed = [p.name for p in sweep.points if p.alpha is None and costs[p.name][0] is None]
    if untimed:
        lines.append(f"The training time of {len(untimed)} trained point(s) is not in this record (run.json facts "
                     "came into records later): the total leaves it out.")
    if any(t.scaled for t in measured):
        lines.append("`*`: resumed, scaled to the whole (a training run by its steps, an evaluation task by its "
                     "items).")
    if any(t.from_wall for t in measured):
        lines.append("`~`: training wall time x torch threads (the run recorded no CPU time): an upper bound where "
                     "the process shared its cores.")
    return lines


def _machine(point: Point) -> str | None:
    hardware = point.run.get("hardware") or point.hardware
    if not hardware:
        return None
    capability = hardware.get("cpu_capability")
    return (f"{hardware.get('device_name')} ({hardware.get('device')}"
            + (f", CPU capability {capability}" if capability else "")
            + (f", {hardware['cpu_cores']} cores" if hardware.get("cpu_cores") else "") + ")")
