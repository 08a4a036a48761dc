"""OpenKBP as an evaluation cohort: ATP from the reference dose against the clinical plan.

Issue acceptance on one validation patient of the shared sample (pt_201, 9 fields at 0,
40, ..., 320 degrees as the reference plans; the reference dose as a perfect prediction):
ATP meets at least as many OpenKBP-Opt criteria as the clinical plan, every PTV D99 is
within 1.5 Gy of the clinical plan's or above it, and the mean OAR doses are at or below
the clinical plan's. Both are fluence plans here (``deliverable=false``): OpenKBP's
reference doses come from fluence maps, not leaf sequences. The 4-patient figures come
from `python -m atp.bench.openkbp_pipeline`.
"""

from __future__ import annotations

import csv

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from atp.config import CONF_DIR, register_resolvers


@pytest.fixture(scope="module")
def evaluated(openkbp_dir, tmp_path_factory):
    from evaluate import evaluate

    out = tmp_path_factory.mktemp("openkbp_eval")
    register_resolvers()
    overrides = ["site=npc", "institution=A", "data=openkbp", "split=val", "max_cases=1",
                 f"paths.openkbp_dir={openkbp_dir}", "prediction=reference",
                 "criteria=[openkbp_opt]", "~criteria/rtog", "engine_gap=false",
                 "dvh_figures=0", f"paths.cache_dir={out / 'cache'}",
                 # the clinical dose is OpenKBP's fluence-map dose (CERR influence
                 # matrices, no leaf sequence): ATP's fluence plan is its like
                 "deliverable=false"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="evaluate", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    summary = evaluate(cfg)
    with open(out / "tables" / "criteria.csv", newline="") as fh:
        return summary, list(csv.DictReader(fh))


def _values(rows, plan, prefix):
    return {r["roi"]: float(r["value"]) for r in rows
            if r["plan"] == plan and r["criterion"].startswith(prefix)}


def test_atp_meets_as_many_openkbp_opt_criteria_as_the_clinical_plan(evaluated):
    summary, rows = evaluated
    assert summary["comparator"] == "clinical" and summary["cases"] == 1
    met = {p: sum(r["met"] == "True" for r in rows if r["plan"] == p)
           for p in ("ATP", "clinical")}
    assert sum(r["plan"] == "ATP" for r in rows) == 10  # the ten criteria, all ROIs present
    assert met["ATP"] >= met["clinical"], met


def test_atp_keeps_coverage_and_spares_organs_like_the_clinical_plan(evaluated):
    _, rows = evaluated
    atp, clinical = _values(rows, "ATP", "D99%"), _values(rows, "clinical", "D99%")
    assert set(atp) == {"ptv_5600", "ptv_6300", "ptv_7000"}
    for roi in atp:
        assert atp[roi] >= clinical[roi] - 1.5, (roi, atp[roi], clinical[roi])
    atp_mean, clin_mean = _values(rows, "ATP", "Dmean"), _values(rows, "clinical", "Dmean")
    assert len(atp_mean) == 4  # both parotids, esophagus, larynx
    for roi in atp_mean:
        assert atp_mean[roi] <= clin_mean[roi] + 1e-6, (roi, atp_mean[roi], clin_mean[roi])
