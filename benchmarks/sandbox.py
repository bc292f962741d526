"""Cost of the code sandbox per HumanEval item, printed as a markdown table.

Each canonical HumanEval program (prompt + canonical solution + tests + ``check``) runs, one at a time, through
``talr.evaluation.sandbox.run_python`` and, as the baseline, as a bare ``python -I -S program.py`` subprocess (no
namespaces, jail, privilege drop, limits or guard). Wall time per item is what an evaluation waits; the difference
is what the sandbox adds. On a shared machine the load average (printed) moves both columns.

    PYTHONPATH=src python benchmarks/sandbox.py [--items 40] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from talr.evaluation.registry import get_task
from talr.evaluation.sandbox import run_python
from talr.evaluation.tasks.humaneval import LIMITS, program
from talr.paths import data_dir


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    load = os.getloadavg()
    return (f"{cpu}, {os.cpu_count()} cores, Linux {platform.release()}, Python {platform.python_version()}, "
            f"uid {os.geteuid()}; load average at start {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min)")


def bare_run(source: str) -> bool:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "program.py"
        path.write_text(source, encoding="utf-8")
        return subprocess.run([sys.executable, "-I", "-S", str(path)], cwd=folder, capture_output=True,
                              timeout=LIMITS.timeout_s).returncode == 0


def sandboxed_run(source: str) -> bool:
    return run_python(source, LIMITS).passed


def time_per_item(run, sources: list[str], repeats: int) -> list[float]:
    """Per item, the median over ``repeats`` of its wall time in ms (every run must pass)."""
    per_item = []
    for source in sources:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            if not run(source):
                raise RuntimeError(f"a canonical solution failed under {run.__name__}")
            times.append((time.perf_counter() - start) * 1000)
        per_item.append(statistics.median(times))
    return per_item


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=40, help="first N HumanEval problems (default 40)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per item and mode; the median is kept")
    args = parser.parse_args(argv)
    docs, _ = get_task("humaneval").load(data_dir(), None)
    sources = [program(doc, doc["canonical_solution"]) for doc in docs[: args.items]]
    print(f"Machine: {machine()}")
    print(f"Command: PYTHONPATH=src python benchmarks/sandbox.py {shlex.join(argv or sys.argv[1:])}")
    layers = run_python("pass", LIMITS).isolation  # also warms the page cache for both modes
    print(f"Sandbox layers in force: {', '.join(layers)}\n")
    rows = {}
    for name, run in (("bare python -I -S", bare_run), ("run_python (sandbox)", sandboxed_run)):
        rows[name] = time_per_item(run, sources, args.repeats)
    print("| mode | items | median ms / item | mean ms / item |")
    print("|---|---:|---:|---:|")
    for name, times in rows.items():
        print(f"| {name} | {len(times)} | {statistics.median(times):.0f} | {statistics.mean(times):.0f} |")
    bare, boxed = rows["bare python -I -S"], rows["run_python (sandbox)"]
    added = [b - a for a, b in zip(bare, boxed)]
    print(f"| sandbox cost (difference) | {len(added)} | {statistics.median(added):.0f} | {statistics.mean(added):.0f} |")


if __name__ == "__main__":
    main()
