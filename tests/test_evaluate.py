"""`evaluate.py` end to end: a one-epoch model, ATP vs MNL vs prediction, tables, report."""

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
    for name in ("endpoints", "atp_vs_mnl", "atp_vs_prediction", "criteria_met",
                 "preference_proxy", "voxel_vs_prediction", "timing"):
        assert (out / "tables" / f"{name}.csv").is_file(), name
    rows = list(csv.DictReader(open(out / "tables" / "endpoints.csv")))
    assert {r["plan"] for r in rows} == {"ATP", "MNL", "prediction"}
    assert any(r["metric"].startswith("EQD2 ") for r in rows)
    timing = list(csv.DictReader(open(out / "tables" / "timing.csv")))[0]
    assert float(timing["end_to_end_s"]) >= float(timing["optimization_s"]) > 0
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "clinical acceptability" in html
    assert (out / "figures" / "atp_vs_mnl.png").is_file()
    logged = next((out / "csv").rglob("metrics.csv")).read_text()  # logger=csv got them
    assert "eval/tuning_score" in logged and "eval/mean_end_to_end_s" in logged
