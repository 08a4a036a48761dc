"""Shared fixtures. Heavy data (the OpenKBP sample) is read once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
OPENKBP_SAMPLE = REPO_ROOT.parent / "shared" / "data" / "openkbp-sample"


@pytest.fixture(scope="session")
def openkbp_dir() -> Path:
    if not OPENKBP_SAMPLE.is_dir():
        pytest.skip(f"OpenKBP sample not found at {OPENKBP_SAMPLE}")
    return OPENKBP_SAMPLE


@pytest.fixture(scope="session")
def openkbp_cases(openkbp_dir):
    from atp.io.openkbp import load_openkbp_dataset

    report = load_openkbp_dataset(openkbp_dir, progress=False)
    assert not report.skipped, report.skipped
    return report.cases
