"""`evaluate.py` end to end: a one-epoch model, ATP vs clinical vs prediction, tables, report."""

from __future__ import annotations

import csv


def test_evaluate_writes_tables_figures_and_report(tiny_checkpoint, tiny_cohorts, tmp_path):
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from atp.config import CONF_DIR
    from evaluate import evaluate

    overrides = ["site=lung", "institution=A", f"ckpt_path={tiny_checkpoint}",
                 "grid_spacing_mm=12.0", "n_patients=3", "max_cases=1", "split=val",
                 "planner.max_iter=30", f"paths.data_dir={tiny_cohorts}", "logger=csv",
                 f"paths.log_dir={tmp_path}"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="evaluate", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "eval")
    summary = evaluate(cfg)
    out = tmp_path / "eval"
    assert summary["cases"] == 1 and summary["institution"] == "A"
    for name in ("endpoints", "atp_vs_comparator", "atp_vs_prediction", "criteria_met",
                 "preference_proxy", "voxel_vs_prediction", "timing", "criteria",
                 "criteria_summary", "doses"):
        assert (out / "tables" / f"{name}.csv").is_file(), name
    rows = list(csv.DictReader(open(out / "tables" / "endpoints.csv")))
    # the synthetic case's reference plan is the clinical plan, made by atp's own engine
    assert {r["plan"] for r in rows} == {"ATP", "clinical", "prediction"}
    doses = list(csv.DictReader(open(out / "tables" / "doses.csv")))
    assert any(d["plan"] == "clinical" and "synthetic reference plan" in d["engine"]
               for d in doses)
    assert not (out / "tables" / "engine_gap.csv").read_text().strip()  # same engine: no fit
    # deliverable by default: the synthetic reference plan was sequenced (tiny_cohorts), so
    # its MU is known; both MU rows are sequenced MU
    mu = {r["plan"]: float(r["value"]) for r in rows if r["metric"] == "MU per fraction"}
    assert set(mu) == {"ATP", "clinical"} and min(mu.values()) > 0
    assert summary["deliverable"] is True
    goal_values = list(csv.DictReader(open(out / "tables" / "goal_values.csv")))
    assert goal_values and all(g["plan"] == "ATP" and g["deliverable"] != ""
                               for g in goal_values)
    assert (out / "tables" / "deliverable.csv").is_file()
    crit = list(csv.DictReader(open(out / "tables" / "criteria_summary.csv")))
    assert {r["criteria"] for r in crit} == {"protocol", "rtog"}  # openkbp_opt: npc only
    assert any(r["metric"].startswith("EQD2 ") for r in rows)
    timing = list(csv.DictReader(open(out / "tables" / "timing.csv")))[0]
    assert float(timing["end_to_end_s"]) >= float(timing["optimization_s"]) > 0
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "clinical acceptability" in html
    assert (out / "figures" / "atp_vs_comparator.png").is_file()
    from atp.evaluation.workflow import read_workflow

    steps = [(r["step"], r["start"]) for r in read_workflow(out).rows]  # Fig. 7 log
    assert steps == [("prediction", ""), ("beams_and_matrix", ""), ("optimization", "cold"),
                     ("sequencing", "")]
    from atp.evaluation.plan_store import load_case_plans

    (plans,) = sorted((out / "plans").glob("*.npz"))  # for the blinded review
    stored = load_case_plans(plans)
    assert set(stored.doses_gy) == {"ATP", "clinical", "prediction"}
    assert stored.comparator == "clinical" and stored.meta["institution"] == "A"
    assert "MU is compared only where it is known" not in html  # the cohort's MU is known
    logged = next((out / "csv").rglob("metrics.csv")).read_text()  # logger=csv got them
    assert "eval/tuning_score" in logged and "eval/mean_end_to_end_s" in logged
    # issue 17: V95 %, Bonferroni's m of the site's endpoints, p values vs the prediction
    assert any(r["metric"] == "V95%(PTV1)" and r["endpoint"] == "True" for r in rows)
    fam = list(csv.DictReader(open(out / "tables" / "bonferroni_m.csv")))
    endpoint_m = {r["comparison"]: int(r["m"]) for r in fam
                  if r["family"] == "endpoint" and r["institution"] == "A"}
    assert set(endpoint_m) == {f"ATP vs {summary['comparator']}", "ATP vs prediction"}
    assert 0 < endpoint_m[f"ATP vs {summary['comparator']}"] <= 10  # lung lists 10
    pred = list(csv.DictReader(open(out / "tables" / "atp_vs_prediction.csv")))
    assert pred and {"p", "p_bonferroni", "m_tests", "flag"} <= set(pred[0])
    assert "Bonferroni m per family" in html


def test_evaluate_from_a_folder_of_predictions(tiny_cohorts, tmp_path):
    """``prediction=<folder>``: no model; every file checked before planning; scored."""
    import numpy as np
    import pytest
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from atp.cases import load_case
    from atp.config import CONF_DIR
    from atp.synth.cohort import read_manifest
    from evaluate import evaluate

    cohort = tiny_cohorts / "synthetic" / "lung" / "A_12mm_seed2020"
    val = [p for p in read_manifest(cohort)["patients"] if p["split"] == "val"][0]
    case = load_case(cohort / val["file"])
    preds = tmp_path / "preds"
    preds.mkdir()
    overrides = ["site=lung", "institution=A", "grid_spacing_mm=12.0", "n_patients=3",
                 "max_cases=1", "split=val", "planner.max_iter=20", f"prediction={preds}",
                 f"paths.data_dir={tiny_cohorts}", f"paths.log_dir={tmp_path}",
                 f"paths.cache_dir={tmp_path / 'cache'}", "dvh_figures=0"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="evaluate", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "eval")
    with pytest.raises(ValueError, match=f"0 files for patient {case.patient_id}"):
        evaluate(cfg)  # refused before any planning: no file for the case
    assert not (tmp_path / "eval" / "report.html").exists()
    np.save(preds / f"{case.patient_id}.npy", 0.9 * case.dose_gy)
    summary = evaluate(cfg)
    # 0.9 x the clinical dose: the dose score is 0.1 x its mean over the scoring mask
    expected = 0.1 * float(case.dose_gy[case.scoring_mask].mean(dtype=np.float64))
    assert summary["prediction_dose_score_gy"] == pytest.approx(expected, rel=1e-5)
