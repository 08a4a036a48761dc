"""Train the OpenKBP CPU preset and score it against the distance-to-target baseline.

Usage::

    python -m atp.bench.openkbp_training [--openkbp-dir DIR] [--experiment openkbp_cpu]
                                         [--override KEY=VALUE ...] [--ckpt CKPT]
                                         [--baseline-cases N] [--out DIR]

1. reads the training and validation patients into the compact-case cache of the preset
   (timed on its own: a later run skips it), then trains ``python train.py
   experiment=<experiment> paths.openkbp_dir=DIR`` on the folder's ``train-pats``
   (skipped with ``--ckpt``);
2. fits `atp.baselines.DistanceBaseline` on the same training patients (all of them, or
   the first ``--baseline-cases``);
3. predicts the held-out ``validation-pats`` with both and prints the OpenKBP challenge's
   dose and DVH scores side by side: the model with the study's post-processing (the
   prescribed dose inside the targets, as `predict.py` and the planner use it) and without
   it, the baseline, the model's own prior where it has one, and the reference dose
   itself taken to the model's grid and back (the floor its resolution sets).

Patient folders missing a file are skipped with a warning; ``test-pats`` is never read.
Sets ``OMP_WAIT_POLICY=PASSIVE`` (unless set): on a shared machine busy-waiting OpenMP
threads made a training step 5-20x slower. A command, not a test: about 30 minutes of
training plus the scoring (reading each held-out patient and the baseline's training
patients) on 2 cores.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from atp.sites import REPO_ROOT  # noqa: E402

DEFAULT_OPENKBP_DIR = REPO_ROOT.parent / "shared" / "data" / "openkbp-sample"


def fill_cache(overrides: list[str]) -> None:
    """Read every case the training run will use into its compact-case disk cache."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from omegaconf import OmegaConf
    from tqdm.auto import tqdm

    from atp.config import CONF_DIR, register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    if not cfg.data.get("cache_dir"):
        return
    t0 = time.perf_counter()
    data = instantiate(cfg.data, site=OmegaConf.to_container(cfg.site, resolve=True),
                       _convert_="all")
    data.setup("fit")
    n_val = cfg.trainer.get("limit_val_batches")
    for split, n in (("train", None), ("val", n_val if isinstance(n_val, int) else None)):
        ds = data.dataset(split)
        for i in tqdm(range(min(len(ds), n or len(ds))), desc=f"cache {split}"):
            ds.load(i)
    print(f"cases read and cached in {(time.perf_counter() - t0) / 60:.1f} min, load "
          f"average {os.getloadavg()}", flush=True)


def train(openkbp_dir: Path, experiment: str, overrides: list[str], out: Path) -> Path:
    """Fill the case cache, then run train.py in a subprocess; returns its last checkpoint."""
    run_dir = out / "train"
    args = [f"experiment={experiment}", f"paths.openkbp_dir={openkbp_dir}", *overrides]
    fill_cache(args)
    cmd = [sys.executable, str(REPO_ROOT / "train.py"), *args, f"hydra.run.dir={run_dir}"]
    print("training:", " ".join(cmd[1:]), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO_ROOT)
    print(f"training took {(time.perf_counter() - t0) / 60:.1f} min, load average "
          f"{os.getloadavg()}", flush=True)
    return run_dir / "checkpoints" / "last.ckpt"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--openkbp-dir", type=Path, default=DEFAULT_OPENKBP_DIR)
    parser.add_argument("--experiment", default="openkbp_cpu")
    parser.add_argument("--override", action="append", default=[],
                        help="extra train.py override (repeatable)")
    parser.add_argument("--ckpt", type=Path, help="score this checkpoint, do not train")
    parser.add_argument("--baseline-cases", type=int, default=None,
                        help="fit the baseline on the first N training patients (default all)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default logs/bench/openkbp_training/<time>)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from atp.baselines import DistanceBaseline
    from atp.data.channels import postprocess_dose
    from atp.data.datamodule import complete_folders
    from atp.dosimetry import case_scores, challenge_scores
    from atp.io.loading import load_any_case
    from atp.io.openkbp import patient_folders
    from atp.models.predict import load_module, predict_case

    torch.set_num_threads(args.threads)
    out = args.out or REPO_ROOT / "logs" / "bench" / "openkbp_training" / time.strftime(
        "%Y-%m-%d_%H-%M-%S")
    out.mkdir(parents=True, exist_ok=True)
    print(f"OpenKBP {args.openkbp_dir}; load average {os.getloadavg()}; "
          f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}", flush=True)
    folders = complete_folders(patient_folders(args.openkbp_dir))
    train_f = [f for f in folders if f.parent.name == "train-pats"]
    held_out = [f for f in folders if f.parent.name == "validation-pats"]
    if not train_f or not held_out:
        raise SystemExit(f"{args.openkbp_dir}: need train-pats and validation-pats patients")
    ckpt = args.ckpt or train(args.openkbp_dir, args.experiment, args.override, out)
    module = load_module(ckpt)

    t0 = time.perf_counter()
    base_f = train_f[: args.baseline_cases or None]
    baseline = DistanceBaseline.fit(load_any_case(f) for f in base_f)
    print(f"baseline fitted on {len(base_f)} training patients in "
          f"{time.perf_counter() - t0:.0f} s", flush=True)
    rows: dict[str, list] = {"model": [], "model_raw": [], "baseline": [], "prior": [],
                             "floor": []}
    layout = module.layout
    t0 = time.perf_counter()
    for f in held_out:
        case = load_any_case(f)
        raw = predict_case(module, case, postprocess=False)
        rows["model"].append(case_scores(case, postprocess_dose(raw, case)))
        rows["model_raw"].append(case_scores(case, raw))
        rows["baseline"].append(case_scores(case, baseline.predict(case)))
        if isinstance(layout.prior, dict):
            rows["prior"].append(case_scores(case, layout.prior_map(case)
                                             * layout.reference_rx_gy))
        if layout.downsample > 1:
            cc = layout.compact(case)
            back = layout.to_case_grid(cc.dose, cc, case=case) * layout.reference_rx_gy
            rows["floor"].append(case_scores(case, np.where(case.body_mask, back, 0.0)))
    per_case_s = (time.perf_counter() - t0) / len(held_out)
    labels = {"model": "CAD-UNet, study post-processing",
              "model_raw": "CAD-UNet, network output only",
              "baseline": f"distance baseline ({len(base_f)} training patients)",
              "prior": "the model's prior (fitted in training)",
              "floor": f"reference dose on the model's grid (1/{layout.downsample}) and back"}
    scores = {k: challenge_scores(v) for k, v in rows.items() if v}
    print(f"\n{len(held_out)} held-out patients (validation-pats), {len(train_f)} training "
          f"patients; checkpoint {ckpt}; scoring {per_case_s:.1f} s per patient")
    print(f"{'prediction':<48} {'dose score (Gy)':>15} {'DVH score (Gy)':>15}")
    for k, s in scores.items():
        print(f"{labels[k]:<48} {s['dose_score']:15.3f} {s['dvh_score']:15.3f}")
    b = scores["baseline"]
    for k in ("model", "model_raw"):
        s = scores[k]
        beats = s["dose_score"] < b["dose_score"] and s["dvh_score"] < b["dvh_score"]
        print(f"{labels[k]} beats the baseline on both scores: {beats}")
    print(f"load average {os.getloadavg()}")
    (out / "scores.json").write_text(json.dumps(
        {"checkpoint": str(ckpt), "held_out": [f.name for f in held_out],
         "n_train": len(train_f), "scores": scores}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
