"""Every committed record (docs/results/*/) reproduces its report.md with `talr report`, from the folder alone.

A change to the report's code that changes what a committed record says fails here: regenerate the record's report
(`talr report docs/results/NAME`) and read the difference before committing it.
"""

import shutil
from pathlib import Path

import pytest

from talr import report

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"
RECORDS = sorted(p.name for p in RESULTS.iterdir() if (p / "results.json").is_file())


def test_the_committed_records_are_found():
    assert {"esci_smollm2", "esci_smollm2_small", "study_math_smollm2", "study_esci_smollm2"} <= set(RECORDS)


@pytest.mark.parametrize("name", RECORDS)
def test_a_committed_record_reproduces_its_report(name, tmp_path):
    record = tmp_path / name
    shutil.copytree(RESULTS / name, record)
    (record / "report.md").unlink()
    written = report.write_report(record).read_text(encoding="utf-8")
    assert written == (RESULTS / name / "report.md").read_text(encoding="utf-8")
