"""The prediction step of the OpenKBP tour: read, store, predict with a baseline, score.

``python -m atp.demo --openkbp-dir ../shared/data/openkbp-sample --out outputs/demo``

1. reads every patient (broken folders are skipped with a warning) and stores each as an
   atp case file;
2. fits the distance-to-target baseline on ``train-pats`` and predicts ``validation-pats``,
   written in the challenge's submission format (``<out>/predictions/pt_N.csv``);
3. prints the OpenKBP dose and DVH scores of the baseline and writes per-patient DVH
   endpoints of the reference plans (CSV) and a DVH figure (PNG).

``make demo-openkbp`` then plans every validation patient from these predictions and
judges the plans against the clinical ones (``evaluate.py data=openkbp
prediction=<out>/predictions``).
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import sys
from pathlib import Path

import numpy as np

from atp.baselines import DistanceBaseline
from atp.cases import PatientCase, save_case
from atp.dosimetry import (
    cohort_scores,
    dose_at_volume_percent,
    dose_score,
    mean_dose,
    near_max_dose,
    openkbp_dvh_metrics,
)
from atp.io.atomic import atomic_write_text
from atp.io.openkbp import load_openkbp_dataset, write_openkbp_dose
from atp.viz import plot_dvh_overlay, save_figure


def endpoints(case: PatientCase) -> list[dict]:
    """Reference-plan DVH endpoints per ROI (targets: D98/D95/D2; organs: Dmean/D0.03cc)."""
    rows = []
    for name, roi in case.rois.items():
        if roi.role == "external":
            continue
        row = {"patient": case.patient_id, "roi": name, "role": roi.role,
               "volume_cc": float(roi.mask.sum(dtype=np.float64) * case.voxel_volume_cc),
               "dmean_gy": mean_dose(case.dose_gy, roi.mask)}
        if roi.role == "target":
            for p in (98, 95, 2):
                row[f"d{p}_gy"] = dose_at_volume_percent(case.dose_gy, roi.mask, percent=p)
        else:
            row["d0.03cc_gy"] = near_max_dose(case.dose_gy, roi.mask, spacing_mm=case.spacing_mm)
        rows.append(row)
    return rows


def write_csv(rows: list[dict], path: Path) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write_text(path, buf.getvalue())


def run(openkbp_dir: Path, out: Path) -> dict[str, float]:
    report = load_openkbp_dataset(openkbp_dir)
    if not report.cases:
        raise SystemExit(f"no readable OpenKBP patient under {openkbp_dir}")
    for case in report.cases:
        save_case(case, out / "cases" / "openkbp" / f"{case.patient_id}.npz")
    train = [c for c in report.cases if "train-pats" in c.metadata["folder"]]
    test = [c for c in report.cases if c not in train] or train
    baseline = DistanceBaseline.fit(train)
    dose_scores, ref_metrics, pred_metrics = [], [], []
    for case in test:
        pred = baseline.predict(case)
        write_openkbp_dose(pred, out / "predictions" / f"{case.patient_id}.csv")
        dose_scores.append(dose_score(case.dose_gy, pred, case.dose_mask))
        kw = {"spacing_mm": case.spacing_mm, "target_names": set(case.targets)}
        rois = {n: r.mask for n, r in case.rois.items() if r.role != "external"}
        ref_metrics.append(openkbp_dvh_metrics(case.dose_gy, rois, **kw))
        pred_metrics.append(openkbp_dvh_metrics(pred, rois, **kw))
    scores = cohort_scores(dose_scores, ref_metrics, pred_metrics)
    write_csv([r for c in report.cases for r in endpoints(c)], out / "reference_endpoints.csv")
    first = test[0]
    fig = plot_dvh_overlay(first, {"reference plan": first.dose_gy,
                                   "distance baseline": baseline.predict(first)},
                           title=f"OpenKBP {first.patient_id}: reference vs distance baseline")
    save_figure(fig, out / f"dvh_{first.patient_id}.png")
    return {"n_cases": len(report.cases), "n_skipped": len(report.skipped),
            "n_scored": len(test), "dose_score_gy": scores["dose_score"],
            "dvh_score_gy": scores["dvh_score"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--openkbp-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    s = run(args.openkbp_dir, args.out)
    print(f"read {s['n_cases']} OpenKBP patients ({s['n_skipped']} skipped); "
          f"cases in {args.out / 'cases'}")
    print(f"distance-to-target baseline on {s['n_scored']} validation patients: "
          f"dose score {s['dose_score_gy']:.3f} Gy, DVH score {s['dvh_score_gy']:.3f} Gy "
          "(lower is better; the challenge's test-set winner: 2.43 / 1.48 Gy on other patients)")
    print(f"reference endpoints: {args.out / 'reference_endpoints.csv'}; "
          f"DVH figure and predictions in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
