"""docs/reliability.md is the tests' own catalogue: regenerated from their markers, it must equal the file, and it
must hold every case issue 9 names."""

from __future__ import annotations

import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
import reliability_catalogue  # noqa: E402

# Each case the issue lists, as words its catalogue row must contain (case-insensitive).
REQUIRED_BAD_INPUTS = [
    "empty WAV", "truncated WAV", "corrupt WAV", "MP3", "8-bit", "24-bit", "32-bit", "float", "stereo",
    "multichannel", "22.05", "44.1", "48 kHz", "NaN", "clipped", "silence", "multi-hour", "unknown channel",
    "zero frames", "different skeleton", "unmatched pair", "missing weights", "truncated weights",
    "does not match the tensors", ".pt", "pickle", "out-of-range", "wrong-type", "unknown or malformed launch argument",
    "absent from its URDF", "URDF joint without limits",
]
REQUIRED_FAULTS = ["no input device", "disappear", "slower than real time", "subscriber", "killed", "NaN",
                   "SIGINT", "SIGTERM"]


@pytest.fixture(scope="module")
def entries():
    return reliability_catalogue.collect()


def test_the_catalogue_document_matches_the_tests(entries):
    """What `scripts/reliability_catalogue.py --check` checks, on the entries collected once for this module."""
    assert reliability_catalogue.DOC.read_text(encoding="utf-8") == reliability_catalogue.render(entries), (
        "docs/reliability.md is out of date; regenerate it with 'python scripts/reliability_catalogue.py'")


def test_the_catalogue_holds_at_least_30_bad_inputs_and_every_case_the_issue_names(entries):
    bad = {(e["case"], e["test"].split("[")[0]) for e in entries if e["kind"] == "bad input"}
    assert len(bad) >= 30, len(bad)
    cases = " | ".join(case for case, _ in bad).lower()
    missing = [word for word in REQUIRED_BAD_INPUTS if word.lower() not in cases]
    assert not missing, missing


def test_the_catalogue_holds_every_fault_the_issue_names(entries):
    cases = " | ".join(e["case"] for e in entries if e["kind"] == "fault").lower()
    missing = [word for word in REQUIRED_FAULTS if word.lower() not in cases]
    assert not missing, missing


def test_every_catalogue_row_is_rendered_with_its_test(entries):
    text = reliability_catalogue.render(entries)
    for entry in entries:
        assert f"`{entry['test'].split('[')[0]}`" in text
        if entry["variant"]:
            assert f"`{entry['variant']}`" in text
