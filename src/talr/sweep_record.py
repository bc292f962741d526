"""A sweep's committable record: ``results.json`` (every point's evaluation results, its grid coordinates, its
code-length probe records and its training run's cost and machine facts) and ``samples.jsonl.gz`` (every point's
per-item samples: doc id, target, prediction, scores), written into the sweep folder by ``talr sweep`` after each
point. With ``sweep.yaml`` (and the report and figures) they are what a record under ``docs/results/`` holds:
``talr report`` on such a folder recomputes every paired error, baseline and collapse check from them, without the
run directories or model weights.
"""

from __future__ import annotations

import gzip
import io
import json
import shutil
from pathlib import Path

from talr.io import atomic_write_bytes, atomic_write_json, read_json
from talr.run_dir import RunDir
from talr.report_data import RECORD_RESULTS, RECORD_SAMPLES, read_run_dir


def write_record(root: str | Path, out: str | Path | None = None) -> tuple[Path, Path]:
    """Bundle the sweep at ``root`` into ``out`` (default: ``root``); returns the two files' paths."""
    root, out = Path(root), Path(out) if out is not None else Path(root)
    info: dict = {"higher": {}, "names": {}, "budgets": {}}
    entries = {"base": (root / "base", {"name": "base", "method": "base"})}
    for point_json in sorted((root / "runs").glob("*/point.json")):
        entries[point_json.parent.name] = (point_json.parent, read_json(point_json))
    results, lines = {}, []
    for name, (directory, meta) in entries.items():
        path = RunDir(directory).results_file
        if not path.is_file():
            continue
        point = read_run_dir(directory, meta, info)
        results[name] = {"point": meta, "results": read_json(path), "probes": point.probes,
                         **({"run": point.run} if point.run else {})}
        for task, rows in point.samples.items():
            lines += [json.dumps({"point": name, "task": task, **row}, ensure_ascii=False) for row in rows]
    buffer = io.BytesIO()
    # mtime 0: the same samples give the same bytes, so a rerun does not show up as a change in git
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as handle:
        handle.write(("\n".join(lines) + "\n" if lines else "").encode("utf-8"))
    atomic_write_json(out / RECORD_RESULTS, results)
    return out / RECORD_RESULTS, atomic_write_bytes(out / RECORD_SAMPLES, buffer.getvalue())


# figures a record cannot redraw: drawn from the runs' metrics.jsonl and probes.jsonl (the hard-token probes too),
# which a record does not hold
RUN_LOG_FIGURES = ("training_curves.png", "probes.png")


def make_record(sweep_dir: str | Path, out: str | Path) -> Path:
    """``talr report SWEEP --record OUT``: bundle a sweep folder into a record folder ``out`` to commit — sweep.yaml,
    results.json, samples.jsonl.gz and the figures only the run logs can draw — and write its report there, from the
    record alone (what anyone who clones it reproduces). Returns the record's report.md."""
    from talr.report import write_report

    sweep_dir, out = Path(sweep_dir), Path(out)
    if not (sweep_dir / "runs").is_dir():
        raise FileNotFoundError(f"{sweep_dir / 'runs'} not found: --record bundles a sweep folder made by talr sweep")
    if out.resolve() == sweep_dir.resolve():
        raise FileExistsError(f"--record {out} is the sweep folder itself: the record goes into another folder")
    write_report(sweep_dir)  # draws every figure from the run logs
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(sweep_dir / "sweep.yaml", out / "sweep.yaml")
    write_record(sweep_dir, out)
    for name in RUN_LOG_FIGURES:
        if (sweep_dir / name).is_file():
            shutil.copy2(sweep_dir / name, out / name)
    return write_report(out)
