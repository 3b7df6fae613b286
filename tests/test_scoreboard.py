"""docs/experiments/scoreboard.json is read by people and by scripts comparing runs: every record must keep the
issue's fields, with values a script can compare, and the folders its note cites must exist in the repository."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCOREBOARD = ROOT / "docs" / "experiments" / "scoreboard.json"
FIELDS = ("set", "tasks", "score", "pass_n", "train_s", "total_s", "device", "commit", "command")
RECORDS = json.loads(SCOREBOARD.read_text())


def fraction_or_unknown(value: object) -> bool:
    """Scores are fractions; null marks a number the run did not record (older runs), never a guess."""
    return value is None or (isinstance(value, (int, float)) and 0.0 <= value <= 1.0)


def seconds_or_unknown(value: object) -> bool:
    return value is None or (isinstance(value, (int, float)) and value >= 0.0)


@pytest.mark.parametrize("index", range(len(RECORDS)))
def test_every_record_has_the_fields_with_comparable_values(index):
    record = RECORDS[index]
    assert [f for f in FIELDS if f not in record] == []
    assert record["set"] in {"arc-agi-1-evaluation", "arc-agi-2-evaluation", "heldout-arc-like"}
    assert isinstance(record["tasks"], int) and record["tasks"] > 0
    assert isinstance(record["score"], (int, float)) and 0.0 <= record["score"] <= 1.0
    assert fraction_or_unknown(record["pass_n"])
    assert seconds_or_unknown(record["train_s"]) and seconds_or_unknown(record["total_s"])
    if record["train_s"] is not None and record["total_s"] is not None:
        assert record["train_s"] <= record["total_s"]
    assert re.fullmatch(r"[0-9a-f]{7,40}", record["commit"])
    assert record["device"] and record["command"].strip()


def test_the_folders_that_notes_cite_exist():
    cited = {m for r in RECORDS for m in re.findall(r"docs/experiments/[\w./-]+", r.get("note", ""))}
    missing = sorted(c for c in cited if not (ROOT / c.rstrip(".,;)")).exists())
    assert cited and missing == []
