"""ATP on real OpenKBP plans: criteria met against the clinical plan, scores, time.

Usage::

    python -m atp.bench.openkbp_pipeline [--openkbp-dir DIR] [--ckpt CKPT]
        [--predictions DIR] [--max-cases N] [--out DIR]

For the validation patients of an OpenKBP folder (the shared sample's 4 by default) it
runs ``evaluate.py data=openkbp site=npc institution=A`` (the 9 coplanar fields at 0, 40,
..., 320 degrees of the reference plans, the case's native grid, the clinical plan as the
comparator) once with ``prediction=reference`` (the reference dose as a perfect
prediction: phase 2 alone) and, when given, with the model ``--ckpt`` or a folder of
challenge predictions. It prints the share of the ten OpenKBP-Opt criteria met by ATP and
by the clinical plan, the mean ATP - clinical difference per criterion, the prediction's
dose and DVH scores, and the time per patient. A command, not a test.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections import defaultdict
from pathlib import Path

from atp.sites import REPO_ROOT

DEFAULT_OPENKBP_DIR = REPO_ROOT.parent / "shared" / "data" / "openkbp-sample"


def _evaluate(overrides: list[str], out: Path) -> tuple[dict, float]:
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from atp.config import CONF_DIR, register_resolvers
    from evaluate import evaluate

    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="evaluate", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    t0 = time.perf_counter()
    summary = evaluate(cfg)
    return summary, time.perf_counter() - t0


def _read(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def report(name: str, out: Path, summary: dict, wall_s: float) -> None:
    """Print the criteria shares, per-criterion differences and scores of one run."""
    rows = [r for r in _read(out / "tables" / "criteria.csv") if r["criteria"] == "openkbp_opt"]
    share = {plan: (sum(r["met"] == "True" for r in rows if r["plan"] == plan),
                    sum(r["plan"] == plan for r in rows)) for plan in ("ATP", "clinical")}
    print(f"\n== ATP from {name}: {summary['cases']} patients, "
          f"{wall_s / max(summary['cases'], 1):.1f} s per patient ==")
    for plan, (met, total) in share.items():
        print(f"  OpenKBP-Opt criteria met by {plan:8s}: {met} of {total} "
              f"({100.0 * met / max(total, 1):.1f} %)")
    diffs: dict[str, list[float]] = defaultdict(list)
    by_key = {(r["case"], r["criterion"], r["plan"]): float(r["value"]) for r in rows}
    for (case, crit, plan), value in by_key.items():
        if plan == "ATP" and (case, crit, "clinical") in by_key:
            metric = crit.split(" ")[0]
            diffs[metric].append(value - by_key[(case, crit, "clinical")])
    print("  mean ATP - clinical per criterion (Gy):")
    for metric, values in sorted(diffs.items()):
        print(f"    {metric:22s} {sum(values) / len(values):+7.2f}  (n={len(values)})")
    if "prediction_dose_score_gy" in summary and name != "the reference dose":
        print(f"  prediction vs clinical dose: dose score "
              f"{summary['prediction_dose_score_gy']:.3f} Gy, DVH score "
              f"{summary['prediction_dvh_score_gy']:.3f} Gy")
    gap = _read(out / "tables" / "engine_gap.csv")
    if gap:
        mean = sum(float(g["mean_abs_diff_pct_rx"]) for g in gap) / len(gap)
        print(f"  engine difference (atp's beamlets fitted to the clinical dose): mean "
              f"|difference| {mean:.2f} % of Rx in the body")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--openkbp-dir", type=Path, default=DEFAULT_OPENKBP_DIR)
    parser.add_argument("--ckpt", type=Path, default=None)
    parser.add_argument("--predictions", type=Path, default=None)
    parser.add_argument("--max-cases", type=int, default=None)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "outputs" / "bench_openkbp")
    args = parser.parse_args(argv)
    base = ["site=npc", "institution=A", "data=openkbp", "split=val",
            f"paths.openkbp_dir={args.openkbp_dir.resolve()}", "comparator=clinical",
            "criteria=[openkbp_opt]", "~criteria/rtog", "dvh_figures=0",
            # OpenKBP's clinical doses are fluence plans (CERR): compare like with like
            "deliverable=false",
            f"paths.cache_dir={args.out.resolve() / 'cache'}"]
    if args.max_cases:
        base.append(f"max_cases={args.max_cases}")
    runs = [("the reference dose", "reference", ["prediction=reference"])]
    if args.ckpt is not None:
        runs.append(("the model", "model", ["prediction=model",
                                            f"ckpt_path={args.ckpt.resolve()}"]))
    if args.predictions is not None:
        runs.append(("the predictions folder", "folder",
                     [f"prediction={args.predictions.resolve()}"]))
    for name, key, extra in runs:
        out = args.out.resolve() / key
        summary, wall = _evaluate(base + extra, out)
        report(name, out, summary, wall)
    return 0


if __name__ == "__main__":
    sys.exit(main())
